#include "data_commands.h"

#include <strings.h>
#include <time.h>

#include <cctype>
#include <charconv>
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
// Redis's addReplyErrorExpireTime, with the command's name in lower case.
void invalid_expire_time(std::string& out, std::string_view command)
{
    error_reply(out, "invalid expire time in '" + lower_case(command) + "' command");
}

// Redis's string2ll: the one parse every daemon uses (command_table.h).
bool parse_integer(std::string_view text, long long& value) { return parse_long_long(text, value); }

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

// The expiry time a pair found keeps when its value is replaced (Redis's
// dbOverwrite: APPEND, SETRANGE, INCR... keep a key's TTL).
std::uint64_t expiry_of(const std::optional<SharedTableWriter::Pair>& pair)
{
    return pair ? pair->expires_at : BucketMap::never_expires;
}

// SET's and GETEX's options, as Redis's parseExtendedStringArgumentsOrReply
// reads them: each may repeat, conflicting ones are a syntax error, an
// expiry needs a value.
enum class ExpiryUnit { none, ex, px, exat, pxat };
struct StringOptions {
    bool nx = false, xx = false, get = false, keepttl = false, persist = false;
    ExpiryUnit unit = ExpiryUnit::none;
    const std::string* expiry = nullptr; // the unit's argument
};
enum class OptionsOf { set, getex };

ExpiryUnit expiry_unit(std::string_view option)
{
    if (same_word(option, "EX"))
        return ExpiryUnit::ex;
    if (same_word(option, "PX"))
        return ExpiryUnit::px;
    if (same_word(option, "EXAT"))
        return ExpiryUnit::exat;
    if (same_word(option, "PXAT"))
        return ExpiryUnit::pxat;
    return ExpiryUnit::none;
}

bool parse_string_options(const resp::Request& request, OptionsOf command, StringOptions& options, std::string& out)
{
    const bool of_set = command == OptionsOf::set;
    for (std::size_t i = of_set ? 3 : 2; i < request.size(); ++i) {
        const std::string& option = request[i];
        const bool has_next = i + 1 < request.size();
        const bool no_expiry = options.unit == ExpiryUnit::none;
        const ExpiryUnit unit = expiry_unit(option);
        if (of_set && same_word(option, "NX") && !options.xx) {
            options.nx = true;
        } else if (of_set && same_word(option, "XX") && !options.nx) {
            options.xx = true;
        } else if (of_set && same_word(option, "GET")) {
            options.get = true;
        } else if (of_set && same_word(option, "KEEPTTL") && no_expiry) {
            options.keepttl = true;
        } else if (!of_set && same_word(option, "PERSIST") && no_expiry) {
            options.persist = true;
        } else if (unit != ExpiryUnit::none && !options.keepttl && !options.persist && (no_expiry || options.unit == unit)
            && has_next) {
            options.unit = unit;
            options.expiry = &request[++i];
        } else {
            syntax_error(out);
            return false;
        }
    }
    return true;
}

// An expiry option's argument as an expiry time, as Redis's
// getExpireMillisecondsOrReply: a positive integer, seconds or
// milliseconds, from now (EX, PX) or from the epoch (EXAT, PXAT), that
// overflows nothing. False, with Redis's error in `out`, if it is not one.
bool expiry_time(const std::string& text, ExpiryUnit unit, std::string_view command, std::uint64_t& at, std::string& out)
{
    long long amount = 0;
    if (!parse_integer(text, amount)) {
        not_an_integer(out);
        return false;
    }
    const bool seconds = unit == ExpiryUnit::ex || unit == ExpiryUnit::exat;
    if (amount <= 0 || (seconds && amount > LLONG_MAX / 1000)) {
        invalid_expire_time(out, command);
        return false;
    }
    if (seconds)
        amount *= 1000;
    if (unit == ExpiryUnit::ex || unit == ExpiryUnit::px) {
        const auto now = static_cast<long long>(BucketMap::now());
        if (amount > LLONG_MAX - now) {
            invalid_expire_time(out, command);
            return false;
        }
        amount += now;
    }
    at = static_cast<std::uint64_t>(amount);
    return true;
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
    const auto old = context.map.find(key);
    if (old && !parse_integer(old->value, value)) {
        not_an_integer(out);
        return;
    }
    if ((increment < 0 && value < 0 && increment < LLONG_MIN - value)
        || (increment > 0 && value > 0 && increment > LLONG_MAX - value)) {
        error_reply(out, "increment or decrement would overflow");
        return;
    }
    value += increment;
    char digits[24]; // LLONG_MIN has 20 characters
    const std::string_view text(digits, static_cast<std::size_t>(std::to_chars(digits, digits + sizeof digits, value).ptr - digits));
    // As Redis's dbOverwrite: the key keeps its expiry time.
    if (stored(out, context.map.set(key, text, expiry_of(old)), key.size() + text.size()))
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
    const auto value = context.map.find(from);
    if (!value) {
        error_reply(out, "no such key");
        return;
    }
    if (from == to) {
        only_if_new ? resp::append_integer(out, 0) : resp::append_simple(out, "OK");
        return;
    }
    // Copied before anything else may change the table (contains() below
    // may delete an expired `to`).
    const std::string copy(value->value);
    const std::uint64_t expires_at = value->expires_at;
    if (only_if_new && context.map.contains(to)) {
        resp::append_integer(out, 0);
        return;
    }
    auto batch = context.map.begin_batch();
    // The expiry time goes with the key, as Redis's RENAME.
    if (!stored(out, context.map.set(to, copy, expires_at), to.size() + copy.size()))
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

// SET key value [NX | XX] [GET] [KEEPTTL | EX s | PX ms | EXAT ts | PXAT ms-ts]
void set(BucketContext& context, const resp::Request& request, std::string& out)
{
    const std::string& key = request[1];
    const std::string& value = request[2];
    if (request.size() == 3) { // the common path, first
        if (stored(out, context.map.set(key, value), key.size() + value.size()))
            resp::append_simple(out, "OK");
        return;
    }
    StringOptions options;
    if (!parse_string_options(request, OptionsOf::set, options, out))
        return;
    std::uint64_t expires_at = BucketMap::never_expires;
    if (options.expiry && !expiry_time(*options.expiry, options.unit, request[0], expires_at, out))
        return;
    const auto old = context.map.find(key);
    const std::size_t reply_start = out.size();
    if (options.get) {
        if (old)
            resp::append_bulk(out, old->value);
        else
            null_reply(context, out);
    }
    if ((options.nx && old) || (options.xx && !old)) {
        if (!options.get)
            null_reply(context, out);
        return;
    }
    // Any expiry time the key had goes, unless KEEPTTL keeps it. (An EXAT
    // or PXAT in the past is stored as Redis 7.0 stores it: the key is
    // then gone at once for every reader, and deleted at its next lookup.)
    if (options.keepttl)
        expires_at = expiry_of(old);
    if (context.map.set(key, value, expires_at) == BucketMap::SetResult::stored) {
        if (!options.get)
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
    const auto old = context.map.find(request[1]);
    if ((old && !parse_long_double(old->value, value)) || !parse_long_double(request[2], increment)) {
        error_reply(out, "value is not a valid float");
        return;
    }
    value += increment;
    if (std::isnan(value) || std::isinf(value)) {
        error_reply(out, "increment would produce NaN or Infinity");
        return;
    }
    const std::string text = format_long_double(value);
    if (stored(out, context.map.set(request[1], text, expiry_of(old)), request[1].size() + text.size()))
        resp::append_bulk(out, text);
}

void append(BucketContext& context, const resp::Request& request, std::string& out)
{
    const std::string& key = request[1];
    const std::string& tail = request[2];
    const auto old = context.map.find(key);
    if (!old) {
        if (stored(out, context.map.set(key, tail), key.size() + tail.size()))
            resp::append_integer(out, static_cast<long long>(tail.size()));
        return;
    }
    if (!fits(context, out, static_cast<long long>(old->value.size()), static_cast<long long>(tail.size())))
        return;
    std::string value;
    value.reserve(old->value.size() + tail.size());
    value.append(old->value).append(tail);
    if (stored(out, context.map.set(key, value, old->expires_at), tail.size()))
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
    const auto old = context.map.find(key);
    if (patch.empty()) {
        resp::append_integer(out, old ? static_cast<long long>(old->value.size()) : 0);
        return;
    }
    if (!fits(context, out, offset, static_cast<long long>(patch.size())))
        return;
    std::string value(old ? old->value : std::string_view());
    const std::size_t end = static_cast<std::size_t>(offset) + patch.size();
    if (value.size() < end)
        value.resize(end, '\0');
    value.replace(static_cast<std::size_t>(offset), patch.size(), patch);
    if (stored(out, context.map.set(key, value, expiry_of(old)), key.size() + value.size()))
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

namespace {

// SETEX key seconds value, PSETEX key milliseconds value: SET with EX or PX.
void setex_in(BucketContext& context, const resp::Request& request, std::string& out, ExpiryUnit unit)
{
    std::uint64_t expires_at = 0;
    if (!expiry_time(request[2], unit, request[0], expires_at, out))
        return;
    if (stored(out, context.map.set(request[1], request[3], expires_at), request[1].size() + request[3].size()))
        resp::append_simple(out, "OK");
}

} // namespace

void setex(BucketContext& context, const resp::Request& request, std::string& out) { setex_in(context, request, out, ExpiryUnit::ex); }

void psetex(BucketContext& context, const resp::Request& request, std::string& out) { setex_in(context, request, out, ExpiryUnit::px); }

// GETEX key [EX s | PX ms | EXAT ts | PXAT ms-ts | PERSIST], as Redis's
// getexCommand: the value, and its expiry time changed; an absolute time
// already past deletes the key.
void getex(BucketContext& context, const resp::Request& request, std::string& out)
{
    StringOptions options;
    if (!parse_string_options(request, OptionsOf::getex, options, out))
        return;
    const std::string& key = request[1];
    const auto old = context.map.find(key);
    if (!old) {
        null_reply(context, out);
        return;
    }
    std::uint64_t expires_at = 0;
    if (options.expiry && !expiry_time(*options.expiry, options.unit, request[0], expires_at, out))
        return;
    // The reply first: the changes below may move or free the value.
    const std::size_t reply_start = out.size();
    const std::size_t bytes = key.size() + old->value.size();
    resp::append_bulk(out, old->value);
    const bool absolute = options.unit == ExpiryUnit::exat || options.unit == ExpiryUnit::pxat;
    if (options.expiry && absolute && expires_at <= BucketMap::now()) {
        context.map.erase(key);
    } else if (options.expiry || (options.persist && old->expires_at != BucketMap::never_expires)) {
        if (context.map.set_expiry(key, options.expiry ? expires_at : BucketMap::never_expires) != BucketMap::SetResult::stored) {
            out.resize(reply_start); // the error replaces the value
            append_full(out, bytes);
        }
    }
}

namespace {

// EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT key time [NX | XX | GT | LT], as
// Redis's expireGenericCommand: `relative` adds now, `seconds` multiplies by
// 1000. A time already past deletes the key (and answers 1). Setting a time
// on a small pair moves it from its slot to a heap entry, which may not fit
// in a full bucket (FULL; Redis never refuses this).
void expire_in(BucketContext& context, const resp::Request& request, std::string& out, bool relative, bool seconds)
{
    bool nx = false, xx = false, gt = false, lt = false;
    for (std::size_t i = 3; i < request.size(); ++i) {
        const std::string& option = request[i];
        if (same_word(option, "NX")) {
            nx = true;
        } else if (same_word(option, "XX")) {
            xx = true;
        } else if (same_word(option, "GT")) {
            gt = true;
        } else if (same_word(option, "LT")) {
            lt = true;
        } else {
            error_reply(out, "Unsupported option " + redis_error_piece(option, option.size()));
            return;
        }
    }
    if (nx && (xx || gt || lt)) {
        error_reply(out, "NX and XX, GT or LT options at the same time are not compatible");
        return;
    }
    if (gt && lt) {
        error_reply(out, "GT and LT options at the same time are not compatible");
        return;
    }
    long long when = 0;
    if (!parse_integer(request[2], when)) {
        not_an_integer(out);
        return;
    }
    // Negative times are allowed (the key goes at once); overflows are not.
    if (seconds) {
        if (when > LLONG_MAX / 1000 || when < LLONG_MIN / 1000) {
            invalid_expire_time(out, request[0]);
            return;
        }
        when *= 1000;
    }
    const auto now = static_cast<long long>(BucketMap::now());
    const long long base = relative ? now : 0;
    if (when > LLONG_MAX - base) {
        invalid_expire_time(out, request[0]);
        return;
    }
    when += base;
    const std::string& key = request[1];
    const auto old = context.map.find(key);
    if (!old) {
        resp::append_integer(out, 0);
        return;
    }
    const long long current = old->expires_at == BucketMap::never_expires ? -1 : static_cast<long long>(old->expires_at);
    if ((nx && current != -1) || (xx && current == -1) || (gt && (current == -1 || when <= current))
        || (lt && current != -1 && when >= current)) {
        resp::append_integer(out, 0);
        return;
    }
    if (when <= now) {
        context.map.erase(key);
        resp::append_integer(out, 1);
        return;
    }
    if (stored(out, context.map.set_expiry(key, static_cast<std::uint64_t>(when)), key.size() + old->value.size()))
        resp::append_integer(out, 1);
}

// TTL, PTTL, EXPIRETIME, PEXPIRETIME key, as Redis's ttlGenericCommand: -2
// for no key, -1 for no expiry time, else what is left (rounded to the
// nearest second) or the time itself.
void ttl_in(BucketContext& context, const resp::Request& request, std::string& out, bool milliseconds, bool absolute)
{
    const auto pair = context.map.find(request[1]);
    if (!pair) {
        resp::append_integer(out, -2);
        return;
    }
    if (pair->expires_at == BucketMap::never_expires) {
        resp::append_integer(out, -1);
        return;
    }
    long long ttl = static_cast<long long>(pair->expires_at);
    if (!absolute)
        ttl -= static_cast<long long>(BucketMap::now());
    if (ttl < 0)
        ttl = 0;
    // Rounded to the nearest second as Redis's (ttl + 500) / 1000, which
    // would overflow for a time near the largest PXAT.
    resp::append_integer(out, milliseconds ? ttl : ttl / 1000 + (ttl % 1000 >= 500));
}

} // namespace

void expire(BucketContext& context, const resp::Request& request, std::string& out) { expire_in(context, request, out, true, true); }

void pexpire(BucketContext& context, const resp::Request& request, std::string& out) { expire_in(context, request, out, true, false); }

void expireat(BucketContext& context, const resp::Request& request, std::string& out) { expire_in(context, request, out, false, true); }

void pexpireat(BucketContext& context, const resp::Request& request, std::string& out) { expire_in(context, request, out, false, false); }

void ttl(BucketContext& context, const resp::Request& request, std::string& out) { ttl_in(context, request, out, false, false); }

void pttl(BucketContext& context, const resp::Request& request, std::string& out) { ttl_in(context, request, out, true, false); }

void expiretime(BucketContext& context, const resp::Request& request, std::string& out) { ttl_in(context, request, out, false, true); }

void pexpiretime(BucketContext& context, const resp::Request& request, std::string& out) { ttl_in(context, request, out, true, true); }

// PERSIST key: 1 if the key had an expiry time and no longer has.
void persist(BucketContext& context, const resp::Request& request, std::string& out)
{
    const std::string& key = request[1];
    const auto pair = context.map.find(key);
    if (!pair || pair->expires_at == BucketMap::never_expires) {
        resp::append_integer(out, 0);
        return;
    }
    if (stored(out, context.map.set_expiry(key, BucketMap::never_expires), key.size() + pair->value.size()))
        resp::append_integer(out, 1);
}

// TOUCH key [key ...]: how many exist (kv keeps no access times to update).
void touch(BucketContext& context, const resp::Request& request, std::string& out)
{
    long long found = 0;
    for (std::size_t i = 1; i < request.size(); ++i)
        found += context.map.contains(request[i]);
    resp::append_integer(out, found);
}

} // namespace kv::data_commands
