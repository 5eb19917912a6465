#include "data_commands.h"

#include <strings.h>
#include <time.h>

#include <cctype>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>

#include "command_table.h"
#include "error_code.h"
#include "glob.h"

namespace kv::data_commands {

namespace {

// Redis's limit on one string (proto-max-bulk-len, 512 MB by default), which
// APPEND and SETRANGE check before they build a longer one.
constexpr long long longest_string = 512LL * 1024 * 1024;

// Every null reply goes through here, in the request's protocol (`$-1`, or RESP3's `_`).
void null_reply(const BucketContext& context, std::string& out) { resp::append_null(out, context.protocol); }

void error_reply(std::string& out, std::string_view message) { append_error(out, ErrorCode::error, message); }
void syntax_error(std::string& out) { error_reply(out, "syntax error"); }
void not_an_integer(std::string& out) { error_reply(out, "value is not an integer or out of range"); }

// Redis's string2ll (util.c): a decimal long long with no sign but '-', no
// leading zero, no space, at most 20 bytes; anything else is not a number.
bool parse_integer(std::string_view text, long long& value)
{
    if (text.empty() || text.size() >= 21)
        return false;
    if (text.size() == 1 && text[0] == '0') {
        value = 0;
        return true;
    }
    std::size_t i = 0;
    bool negative = false;
    if (text[0] == '-') {
        negative = true;
        if (++i == text.size())
            return false;
    }
    if (text[i] < '1' || text[i] > '9')
        return false;
    unsigned long long v = static_cast<unsigned long long>(text[i++] - '0');
    for (; i < text.size(); ++i) {
        if (text[i] < '0' || text[i] > '9')
            return false;
        if (v > ULLONG_MAX / 10)
            return false;
        v *= 10;
        const unsigned digit = static_cast<unsigned>(text[i] - '0');
        if (v > ULLONG_MAX - digit)
            return false;
        v += digit;
    }
    if (negative) {
        if (v > static_cast<unsigned long long>(-(LLONG_MIN + 1)) + 1)
            return false;
        value = static_cast<long long>(-v);
    } else {
        if (v > static_cast<unsigned long long>(LLONG_MAX))
            return false;
        value = static_cast<long long>(v);
    }
    return true;
}

// Redis's string2ld (util.c): strtold over the whole text, no leading space,
// no NaN, no overflow to infinity, no underflow to zero.
bool parse_long_double(std::string_view text, long double& value)
{
    constexpr std::size_t longest = 5 * 1024; // MAX_LONG_DOUBLE_CHARS
    if (text.empty() || text.size() >= longest)
        return false;
    std::string buffer(text); // NUL-terminated; an embedded NUL ends strtold early, so it fails below
    char* end = nullptr;
    errno = 0;
    const long double parsed = std::strtold(buffer.c_str(), &end);
    if (std::isspace(static_cast<unsigned char>(buffer[0])) || *end != '\0'
        || static_cast<std::size_t>(end - buffer.c_str()) != text.size()
        || (errno == ERANGE && (parsed == HUGE_VALL || parsed == -HUGE_VALL || std::fpclassify(parsed) == FP_ZERO))
        || errno == EINVAL || std::isnan(parsed))
        return false;
    value = parsed;
    return true;
}

// Redis's ld2string in LD_STR_HUMAN mode (util.c), as INCRBYFLOAT stores its
// result: "%.17Lf" with the trailing zeros (and a bare '.') removed, "-0" as "0".
std::string format_long_double(long double value)
{
    char buffer[5 * 1024];
    int length = std::snprintf(buffer, sizeof buffer, "%.17Lf", value);
    if (length < 0 || static_cast<std::size_t>(length) >= sizeof buffer)
        return {};
    std::size_t size = static_cast<std::size_t>(length);
    if (std::memchr(buffer, '.', size)) {
        while (buffer[size - 1] == '0')
            --size;
        if (buffer[size - 1] == '.')
            --size;
    }
    if (size == 2 && buffer[0] == '-' && buffer[1] == '0')
        return "0";
    return std::string(buffer, size);
}

// A change that did not fit: the map is as it was before the command.
bool stored(std::string& out, BucketMap::SetResult result, std::size_t bytes)
{
    if (result == BucketMap::SetResult::stored)
        return true;
    append_full(out, bytes);
    return false;
}

// Redis's checkStringLength for APPEND and SETRANGE, then kv's own bound: no
// string longer than the bucket's segment is even built.
bool fits(BucketContext& context, std::string& out, long long size, long long appended)
{
    const unsigned long long total = static_cast<unsigned long long>(size) + static_cast<unsigned long long>(appended);
    if (total > static_cast<unsigned long long>(longest_string)) {
        error_reply(out, "string exceeds maximum allowed size (proto-max-bulk-len)");
        return false;
    }
    if (total > context.map.segment_size()) {
        append_full(out, static_cast<std::size_t>(total));
        return false;
    }
    return true;
}

void incr_decr(BucketContext& context, std::string_view key, long long increment, std::string& out)
{
    long long value = 0;
    if (auto old = context.map.get(key); old && !parse_integer(*old, value)) {
        not_an_integer(out);
        return;
    }
    if ((increment < 0 && value < 0 && increment < LLONG_MIN - value)
        || (increment > 0 && value > 0 && increment > LLONG_MAX - value)) {
        error_reply(out, "increment or decrement would overflow");
        return;
    }
    value += increment;
    const std::string text = std::to_string(value);
    if (stored(out, context.map.set(key, text), key.size() + text.size()))
        resp::append_integer(out, value);
}

// Sets every pair of request[1..] in one batch: true once all are visible,
// false (a FULL reply in `out`, none of them set) if they do not all fit.
bool mset_pairs(BucketContext& context, const resp::Request& request, std::string& out)
{
    std::size_t bytes = 0;
    for (std::size_t i = 1; i < request.size(); ++i)
        bytes += request[i].size();
    auto batch = context.map.begin_batch();
    for (std::size_t i = 1; i < request.size(); i += 2) {
        if (context.map.set(request[i], request[i + 1]) != BucketMap::SetResult::stored) {
            append_full(out, bytes); // the batch goes uncommitted: none of it happened
            return false;
        }
    }
    batch.commit();
    return true;
}

enum class RenameMode { replace, only_if_new };

void rename_key(BucketContext& context, const resp::Request& request, std::string& out, RenameMode mode)
{
    const bool only_if_new = mode == RenameMode::only_if_new;
    const std::string& from = request[1];
    const std::string& to = request[2];
    auto value = context.map.get(from);
    if (!value) {
        error_reply(out, "no such key");
        return;
    }
    if (from == to) {
        only_if_new ? resp::append_integer(out, 0) : resp::append_simple(out, "OK");
        return;
    }
    if (only_if_new && context.map.contains(to)) {
        resp::append_integer(out, 0);
        return;
    }
    const std::string copy(*value); // a view into the table may move as it changes
    auto batch = context.map.begin_batch();
    if (!stored(out, context.map.set(to, copy), to.size() + copy.size()))
        return;
    context.map.erase(from);
    batch.commit();
    only_if_new ? resp::append_integer(out, 1) : resp::append_simple(out, "OK");
}

} // namespace

void append_full(std::string& out, std::size_t bytes)
{
    append_error(out, ErrorCode::full, "bucket is full: no room for " + std::to_string(bytes)
        + " more bytes (registryd --bucket-size sets the room per bucket)");
}

// SET key value [NX | XX] [GET] [KEEPTTL] [EX s | PX ms | EXAT ts | PXAT ms-ts]
void set(BucketContext& context, const resp::Request& request, std::string& out)
{
    const std::string& key = request[1];
    const std::string& value = request[2];
    if (request.size() == 3) { // the common path, first
        if (stored(out, context.map.set(key, value), key.size() + value.size()))
            resp::append_simple(out, "OK");
        return;
    }
    // Options as Redis's parseExtendedStringArgumentsOrReply reads them:
    // each may repeat, conflicting ones are a syntax error, an expiry needs a value.
    bool nx = false, xx = false, get = false, keepttl = false;
    const std::string* expiry = nullptr;
    std::string_view expiry_unit;
    for (std::size_t i = 3; i < request.size(); ++i) {
        const std::string& option = request[i];
        const bool has_next = i + 1 < request.size();
        if (same_word(option, "NX") && !xx) {
            nx = true;
        } else if (same_word(option, "XX") && !nx) {
            xx = true;
        } else if (same_word(option, "GET")) {
            get = true;
        } else if (same_word(option, "KEEPTTL") && !expiry) {
            keepttl = true;
        } else if ((same_word(option, "EX") || same_word(option, "PX") || same_word(option, "EXAT") || same_word(option, "PXAT"))
            && !keepttl && (!expiry || same_word(expiry_unit, option)) && has_next) {
            expiry_unit = option;
            expiry = &request[++i];
        } else {
            syntax_error(out);
            return;
        }
    }
    if (expiry) {
        long long amount = 0;
        if (!parse_integer(*expiry, amount)) {
            not_an_integer(out);
            return;
        }
        const bool seconds = same_word(expiry_unit, "EX") || same_word(expiry_unit, "EXAT");
        if (amount <= 0 || (seconds && amount > LLONG_MAX / 1000)) {
            error_reply(out, "invalid expire time in 'set' command");
            return;
        }
        error_reply(out, "expiry is not supported yet (EX, PX, EXAT, PXAT): keys in a bucket do not expire");
        return;
    }
    (void)keepttl; // no key has a TTL, so there is none to keep
    auto old = context.map.get(key);
    const std::size_t reply_start = out.size();
    if (get) {
        if (old)
            resp::append_bulk(out, *old);
        else
            null_reply(context, out);
    }
    if ((nx && old) || (xx && !old)) {
        if (!get)
            null_reply(context, out);
        return;
    }
    if (context.map.set(key, value) == BucketMap::SetResult::stored) {
        if (!get)
            resp::append_simple(out, "OK");
    } else {
        out.resize(reply_start); // the error replaces the old value GET put there
        append_full(out, key.size() + value.size());
    }
}

void setnx(BucketContext& context, const resp::Request& request, std::string& out)
{
    if (context.map.contains(request[1])) {
        resp::append_integer(out, 0);
        return;
    }
    if (stored(out, context.map.set(request[1], request[2]), request[1].size() + request[2].size()))
        resp::append_integer(out, 1);
}

void getset(BucketContext& context, const resp::Request& request, std::string& out)
{
    std::optional<std::string> old;
    if (auto value = context.map.get(request[1]))
        old.emplace(*value);
    if (!stored(out, context.map.set(request[1], request[2]), request[1].size() + request[2].size()))
        return;
    if (old)
        resp::append_bulk(out, *old);
    else
        null_reply(context, out);
}

void getdel(BucketContext& context, const resp::Request& request, std::string& out)
{
    auto value = context.map.get(request[1]);
    if (!value) {
        null_reply(context, out);
        return;
    }
    resp::append_bulk(out, *value); // before the erase frees it
    context.map.erase(request[1]);
}

void mget(BucketContext& context, const resp::Request& request, std::string& out)
{
    resp::append_array_header(out, request.size() - 1);
    for (std::size_t i = 1; i < request.size(); ++i) {
        if (auto value = context.map.get(request[i]))
            resp::append_bulk(out, *value);
        else
            null_reply(context, out);
    }
}

void mset(BucketContext& context, const resp::Request& request, std::string& out)
{
    if (request.size() % 2 == 0) {
        error_reply(out, "wrong number of arguments for 'mset' command");
        return;
    }
    if (mset_pairs(context, request, out))
        resp::append_simple(out, "OK");
}

void msetnx(BucketContext& context, const resp::Request& request, std::string& out)
{
    if (request.size() % 2 == 0) {
        error_reply(out, "wrong number of arguments for 'msetnx' command");
        return;
    }
    for (std::size_t i = 1; i < request.size(); i += 2) {
        if (context.map.contains(request[i])) {
            resp::append_integer(out, 0);
            return;
        }
    }
    if (mset_pairs(context, request, out))
        resp::append_integer(out, 1);
}

void incr(BucketContext& context, const resp::Request& request, std::string& out) { incr_decr(context, request[1], 1, out); }

void decr(BucketContext& context, const resp::Request& request, std::string& out) { incr_decr(context, request[1], -1, out); }

void incrby(BucketContext& context, const resp::Request& request, std::string& out)
{
    long long increment = 0;
    if (!parse_integer(request[2], increment)) {
        not_an_integer(out);
        return;
    }
    incr_decr(context, request[1], increment, out);
}

void decrby(BucketContext& context, const resp::Request& request, std::string& out)
{
    long long decrement = 0;
    if (!parse_integer(request[2], decrement)) {
        not_an_integer(out);
        return;
    }
    if (decrement == LLONG_MIN) {
        error_reply(out, "decrement would overflow");
        return;
    }
    incr_decr(context, request[1], -decrement, out);
}

void incrbyfloat(BucketContext& context, const resp::Request& request, std::string& out)
{
    long double value = 0, increment = 0;
    auto old = context.map.get(request[1]);
    if ((old && !parse_long_double(*old, value)) || !parse_long_double(request[2], increment)) {
        error_reply(out, "value is not a valid float");
        return;
    }
    value += increment;
    if (std::isnan(value) || std::isinf(value)) {
        error_reply(out, "increment would produce NaN or Infinity");
        return;
    }
    const std::string text = format_long_double(value);
    if (stored(out, context.map.set(request[1], text), request[1].size() + text.size()))
        resp::append_bulk(out, text);
}

void append(BucketContext& context, const resp::Request& request, std::string& out)
{
    const std::string& key = request[1];
    const std::string& tail = request[2];
    auto old = context.map.get(key);
    if (!old) {
        if (stored(out, context.map.set(key, tail), key.size() + tail.size()))
            resp::append_integer(out, static_cast<long long>(tail.size()));
        return;
    }
    if (!fits(context, out, static_cast<long long>(old->size()), static_cast<long long>(tail.size())))
        return;
    std::string value;
    value.reserve(old->size() + tail.size());
    value.append(*old).append(tail);
    if (stored(out, context.map.set(key, value), tail.size()))
        resp::append_integer(out, static_cast<long long>(value.size()));
}

void strlen(BucketContext& context, const resp::Request& request, std::string& out)
{
    auto value = context.map.get(request[1]);
    resp::append_integer(out, value ? static_cast<long long>(value->size()) : 0);
}

void getrange(BucketContext& context, const resp::Request& request, std::string& out)
{
    long long start = 0, end = 0;
    if (!parse_integer(request[2], start) || !parse_integer(request[3], end)) {
        not_an_integer(out);
        return;
    }
    auto value = context.map.get(request[1]);
    if (!value || (start < 0 && end < 0 && start > end)) {
        resp::append_bulk(out, "");
        return;
    }
    const long long length = static_cast<long long>(value->size());
    if (start < 0)
        start = length + start;
    if (end < 0)
        end = length + end;
    if (start < 0)
        start = 0;
    if (end < 0)
        end = 0;
    if (end >= length)
        end = length - 1;
    if (start > end || length == 0)
        resp::append_bulk(out, "");
    else
        resp::append_bulk(out, value->substr(static_cast<std::size_t>(start), static_cast<std::size_t>(end - start + 1)));
}

void setrange(BucketContext& context, const resp::Request& request, std::string& out)
{
    const std::string& key = request[1];
    const std::string& patch = request[3];
    long long offset = 0;
    if (!parse_integer(request[2], offset)) {
        not_an_integer(out);
        return;
    }
    if (offset < 0) {
        error_reply(out, "offset is out of range");
        return;
    }
    auto old = context.map.get(key);
    if (patch.empty()) {
        resp::append_integer(out, old ? static_cast<long long>(old->size()) : 0);
        return;
    }
    if (!fits(context, out, offset, static_cast<long long>(patch.size())))
        return;
    std::string value(old ? *old : std::string_view());
    const std::size_t end = static_cast<std::size_t>(offset) + patch.size();
    if (value.size() < end)
        value.resize(end, '\0');
    value.replace(static_cast<std::size_t>(offset), patch.size(), patch);
    if (stored(out, context.map.set(key, value), key.size() + value.size()))
        resp::append_integer(out, static_cast<long long>(value.size()));
}

void unlink(BucketContext& context, const resp::Request& request, std::string& out)
{
    long long removed = 0;
    for (std::size_t i = 1; i < request.size(); ++i)
        removed += context.map.erase(request[i]);
    resp::append_integer(out, removed);
}

void type(BucketContext& context, const resp::Request& request, std::string& out)
{
    resp::append_simple(out, context.map.contains(request[1]) ? "string" : "none");
}

void rename(BucketContext& context, const resp::Request& request, std::string& out) { rename_key(context, request, out, RenameMode::replace); }

void renamenx(BucketContext& context, const resp::Request& request, std::string& out) { rename_key(context, request, out, RenameMode::only_if_new); }

void randomkey(BucketContext& context, const resp::Request&, std::string& out)
{
    static std::mt19937_64 random { std::random_device {}() };
    if (auto key = context.map.random_key(random()))
        resp::append_bulk(out, *key);
    else
        null_reply(context, out);
}

// FLUSHDB [ASYNC | SYNC], and FLUSHALL likewise (a bucket is one database).
// Either way the pairs are gone in one short window and freed at once.
void flushdb(BucketContext& context, const resp::Request& request, std::string& out)
{
    if (request.size() > 2 || (request.size() == 2 && !same_word(request[1], "SYNC") && !same_word(request[1], "ASYNC"))) {
        syntax_error(out);
        return;
    }
    context.map.clear();
    resp::append_simple(out, "OK");
}

void time(BucketContext&, const resp::Request&, std::string& out)
{
    struct timespec now;
    ::clock_gettime(CLOCK_REALTIME, &now);
    resp::append_array_header(out, 2);
    resp::append_bulk(out, std::to_string(now.tv_sec));
    resp::append_bulk(out, std::to_string(now.tv_nsec / 1000));
}

// SCAN cursor [MATCH pattern] [COUNT n] [TYPE type], as Redis's
// scanGenericCommand: up to COUNT keys, at most 10 x COUNT home slots per
// call; MATCH and TYPE filter after the walk (so a call may return nothing
// and a cursor that is not 0).
void scan(BucketContext& context, const resp::Request& request, std::string& out)
{
    // Redis reads the cursor with strtoul: no leading space, all digits, in range.
    const std::string& text = request[1];
    char* end = nullptr;
    errno = 0;
    const unsigned long long parsed = std::strtoull(text.c_str(), &end, 10);
    // (An empty cursor is 0, and bytes after a NUL are ignored, as there.)
    if ((!text.empty() && std::isspace(static_cast<unsigned char>(text[0]))) || *end != '\0' || errno == ERANGE) {
        error_reply(out, "invalid cursor");
        return;
    }
    std::uint64_t cursor = parsed;
    long long count = 10;
    const std::string* pattern = nullptr;
    const std::string* type = nullptr;
    for (std::size_t i = 2; i < request.size(); i += 2) {
        const bool has_value = i + 1 < request.size();
        if (same_word(request[i], "COUNT") && has_value) {
            if (!parse_integer(request[i + 1], count)) {
                not_an_integer(out);
                return;
            }
            if (count < 1) {
                syntax_error(out);
                return;
            }
        } else if (same_word(request[i], "MATCH") && has_value) {
            pattern = request[i + 1] == "*" ? nullptr : &request[i + 1];
        } else if (same_word(request[i], "TYPE") && has_value) {
            type = &request[i + 1];
        } else {
            syntax_error(out);
            return;
        }
    }
    // The same bounds as KEYS (bucket_commands.cpp): a pattern of at most
    // 1 MiB, at most 200 million comparisons for one call.
    if (pattern && pattern->size() > (1 << 20)) {
        error_reply(out, "SCAN pattern too long (" + std::to_string(pattern->size()) + " bytes; at most 1048576)");
        return;
    }
    std::optional<GlobPattern> glob;
    if (pattern)
        glob.emplace(*pattern);
    GlobBudget budget(200'000'000);
    const bool wanted_type = !type || ::strcasecmp(type->c_str(), "string") == 0;
    std::string keys;
    long long visited = 0, found = 0; // COUNT bounds the keys visited, before filtering, as in Redis
    bool too_costly = false;
    // COUNT may be as large as a long long: its tenfold must not overflow.
    long long steps_left = count > LLONG_MAX / 10 ? LLONG_MAX : count * 10;
    do {
        cursor = context.map.scan_step(cursor, [&](std::string_view key) {
            ++visited;
            if (!wanted_type || too_costly)
                return;
            if (glob) {
                switch (glob->match(key, budget)) {
                case GlobResult::match:
                    break;
                case GlobResult::no_match:
                    return;
                case GlobResult::too_costly:
                    too_costly = true;
                    return;
                }
            }
            resp::append_bulk(keys, key);
            ++found;
        });
    } while (cursor != 0 && steps_left-- > 0 && visited < count && !too_costly);
    if (too_costly) {
        error_reply(out, "SCAN pattern too costly for this bucket (more than 200000000 comparisons); use a simpler pattern");
        return;
    }
    resp::append_array_header(out, 2);
    resp::append_bulk(out, std::to_string(cursor));
    resp::append_array_header(out, static_cast<std::size_t>(found));
    out += keys;
}

} // namespace kv::data_commands
