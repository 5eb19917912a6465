#include "bucket_commands.h"

#include <unistd.h>

#include <charconv>
#include <csignal>
#include <cstdint>

#include "command_table.h"
#include "data_commands.h"
#include "error_code.h"
#include "glob.h"
#include "table_layout.h"

namespace kv {

namespace {

using BucketCommand = CommandEntry<void (*)(BucketContext&, const resp::Request&, std::string&)>;

void get(BucketContext& context, const resp::Request& request, std::string& out)
{
    if (auto value = context.map.get(request[1]))
        resp::append_bulk(out, *value);
    else
        resp::append_null(out, context.protocol);
}

void del(BucketContext& context, const resp::Request& request, std::string& out)
{
    long long removed = 0;
    for (std::size_t i = 1; i < request.size(); ++i)
        removed += context.map.erase(request[i]);
    resp::append_integer(out, removed);
}

void exists(BucketContext& context, const resp::Request& request, std::string& out)
{
    long long found = 0;
    for (std::size_t i = 1; i < request.size(); ++i)
        found += context.map.contains(request[i]);
    resp::append_integer(out, found);
}

void dbsize(BucketContext& context, const resp::Request&, std::string& out)
{
    resp::append_integer(out, static_cast<long long>(context.map.size()));
}

// What one KEYS may spend matching its pattern, in GlobBudget comparisons.
// The costliest ones measured (a set token; a memmem call re-run at each
// candidate) take about 1 ns on the 2-core EPYC of BENCHMARKS.md, so a KEYS
// refused at this limit has held the bucket's one thread for about 0.2 s, and
// would for under a second on a machine four times slower. Linear patterns
// (`prefix*`, `*x*`, `a*b*c`) spend about one per key byte plus a few per
// key: they are refused only past some 200 MB of keys.
constexpr std::uint64_t keys_comparison_budget = 200'000'000;

// Compiling a pattern takes about 11 bytes per pattern byte, before any
// budget applies: a pattern is refused past this length (the attack patterns
// of CVE-2022-36021 are far shorter; no real pattern comes close).
constexpr std::size_t keys_longest_pattern = 1 << 20;

void keys(BucketContext& context, const resp::Request& request, std::string& out)
{
    if (request[1].size() > keys_longest_pattern) {
        append_error(out, ErrorCode::error, "KEYS pattern too long (" + std::to_string(request[1].size()) + " bytes; at most "
            + std::to_string(keys_longest_pattern) + ")");
        return;
    }
    const GlobPattern pattern(request[1]); // compiled once, matched against every key
    GlobBudget budget(keys_comparison_budget);
    std::string body;
    std::size_t count = 0;
    bool too_costly = false;
    context.map.for_each_key([&](std::string_view key) {
        if (too_costly)
            return;
        switch (pattern.match(key, budget)) {
        case GlobResult::match:
            resp::append_bulk(body, key);
            ++count;
            break;
        case GlobResult::no_match:
            break;
        case GlobResult::too_costly:
            too_costly = true;
            break;
        }
    });
    if (too_costly) {
        append_error(out, ErrorCode::error, "KEYS pattern too costly for this bucket (more than "
            + std::to_string(keys_comparison_budget) + " comparisons); use a simpler pattern");
        return;
    }
    resp::append_array_header(out, count);
    out += body;
}

void ping(BucketContext&, const resp::Request& request, std::string& out) { answer_ping(request, out); }

// redis-benchmark asks for CONFIG GET save / appendonly before it starts.
// A bucket persists nothing, and says so in Redis's words.
void config(BucketContext& context, const resp::Request& request, std::string& out)
{
    if (!same_word(request[1], "GET") || request.size() != 3) {
        append_error(out, ErrorCode::error, "CONFIG supports only GET <pattern> here");
        return;
    }
    static const std::pair<std::string_view, std::string_view> settings[] = { { "save", "" }, { "appendonly", "no" } };
    std::string body;
    std::size_t count = 0;
    for (const auto& [name, value] : settings) {
        if (glob_match(request[2], name)) {
            resp::append_bulk(body, name);
            resp::append_bulk(body, value);
            ++count;
        }
    }
    resp::append_map_header(out, count, context.protocol);
    out += body;
}

// MEMORY USAGE key [SAMPLES count] and MEMORY HELP, with Redis 7.0's
// replies and errors (object.c, memoryCommand); redis-cli --memkeys sends
// MEMORY USAGE for every key it scans. SAMPLES is checked as Redis checks
// it and then has nothing to sample: every value is one string.
//
// The usage is what the pair takes in the bucket's segment (table_layout.h):
// its 64-byte slot, plus, for a key and value over 46 bytes together or a
// pair with an expiry time, the heap entry that holds them (a 16-byte
// header, the key, the value). The allocator's own bookkeeping (some 16
// bytes a block) is not counted, as Redis counts its allocator's size
// classes but not jemalloc's metadata.
std::uint64_t pair_usage(std::string_view key, const SharedTableWriter::Pair& pair)
{
    std::uint64_t usage = sizeof(layout::Slot);
    if (key.size() + pair.value.size() > layout::inline_capacity || pair.expires_at != layout::never_expires)
        usage += sizeof(layout::Entry) + key.size() + pair.value.size();
    return usage;
}

void memory_usage(BucketContext& context, const resp::Request& request, std::string& out)
{
    // Every option is checked before the key is looked up, as in Redis.
    for (std::size_t j = 3; j < request.size(); ++j) {
        if (!same_word(request[j], "SAMPLES") || j + 1 >= request.size()) {
            append_error(out, ErrorCode::error, "syntax error");
            return;
        }
        long long samples = 0;
        if (!parse_long_long(request[j + 1], samples)) {
            append_error(out, ErrorCode::error, "value is not an integer or out of range");
            return;
        }
        if (samples < 0) {
            append_error(out, ErrorCode::error, "syntax error");
            return;
        }
        ++j;
    }
    if (auto pair = context.map.find(request[2])) // an expired key is deleted first, and is null here
        resp::append_integer(out, static_cast<long long>(pair_usage(request[2], *pair)));
    else
        resp::append_null(out, context.protocol);
}

// MEMORY's subcommands, with Redis's arities; also checked inside MULTI
// before MEMORY is queued. DOCTOR, STATS, MALLOC-STATS and PURGE are
// Redis's allocator reports: a bucket does not know them.
constexpr SubcommandArity memory_subcommands[] = { { "USAGE", -3 }, { "HELP", 2 } };

void memory(BucketContext& context, const resp::Request& request, std::string& out)
{
    const SubcommandArity* subcommand = find_subcommand(memory_subcommands, request, out);
    if (!subcommand)
        return;
    if (subcommand->name == "USAGE") {
        memory_usage(context, request, out);
    } else {
        // addReplyHelp: the lines as simple strings, HELP's own last.
        static const std::string_view lines[] = {
            "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "USAGE <key> [SAMPLES <count>]",
            "    Return memory in bytes used by <key> and its value. Nested values are",
            "    sampled up to <count> times (default: 5, 0 means sample all).",
            "HELP",
            "    Prints this help.",
        };
        resp::append_array_header(out, std::size(lines));
        for (std::string_view line : lines)
            resp::append_simple(out, line);
    }
}

// Not checked by UBSan in a sanitizer build (README "Tests"): the store to
// address 0 below is the point, and must end the bucket with SIGSEGV, not
// with UBSan's report of a null store.
[[gnu::no_sanitize_undefined]] void debug(BucketContext& context, const resp::Request& request, std::string& out)
{
    if (!context.debug_command_enabled) {
        append_error(out, ErrorCode::error, "DEBUG is disabled; start registryd with --enable-debug-command");
        return;
    }
    if (same_word(request[1], "SEGFAULT")) {
        std::signal(SIGSEGV, SIG_DFL);
        *static_cast<volatile int*>(nullptr) = 0;
    }
    if (same_word(request[1], "EXIT") && request.size() == 3) {
        int code = 0;
        auto [end, error] = std::from_chars(request[2].data(), request[2].data() + request[2].size(), code);
        if (error == std::errc() && end == request[2].data() + request[2].size() && code >= 0 && code <= 255)
            ::_exit(code);
    }
    append_error(out, ErrorCode::error, "DEBUG supports SEGFAULT and EXIT <0-255>");
}

// Names in lower case, as Redis writes them in its arity error
// ("wrong number of arguments for 'get' command"); verbs match in any case.
const BucketCommand commands[] = {
    { "get", 2, get, 0, { "readonly fast", 1, 1, 1, "Get the value of a key", "string", "@read @string @fast" } },
    { "set", -3, data_commands::set, 0, { "write denyoom", 1, 1, 1, "Set the string value of a key", "string", "@write @string @slow" } },
    { "del", -2, del, 0, { "write", 1, -1, 1, "Delete a key", "generic", "@keyspace @write @slow" } },
    { "exists", -2, exists, 0, { "readonly fast", 1, -1, 1, "Determine if a key exists", "generic", "@keyspace @read @fast", "1.0.0" } },
    { "dbsize", 1, dbsize, 0, { "readonly fast", 0, 0, 0, "Return the number of keys in the selected database", "server", "@keyspace @read @fast" } },
    { "keys", 2, keys, 0, { "readonly", 0, 0, 0, "Find all keys matching the given pattern", "generic", "@keyspace @read @slow @dangerous" } },
    { "ping", -1, ping, 2, { "fast", 0, 0, 0, "Ping the server", "connection", "@fast @connection" } },
    { "config", -2, config, 0, { "", 0, 0, 0, "A container for server configuration commands (here: GET save, appendonly)", "server", "@slow", "2.0.0" } },
    { "memory", -2, memory, 0,
        { "", 0, 0, 0, "A container for memory diagnostics commands (here: USAGE, HELP)", "server", "@slow", "4.0.0",
            memory_subcommands } },
    { "debug", -2, debug, 0, { "admin noscript loading stale", 0, 0, 0, "A container for debugging commands (here: SEGFAULT, EXIT)", "server", "@admin @slow @dangerous" } },
    // Strings and the keyspace (data_commands.h).
    { "setnx", 3, data_commands::setnx, 0,
        { "write denyoom fast", 1, 1, 1, "Set the value of a key, only if the key does not exist", "string", "@write @string @fast", "1.0.0" } },
    { "getset", 3, data_commands::getset, 0,
        { "write denyoom fast", 1, 1, 1, "Set the string value of a key and return its old value", "string", "@write @string @fast", "1.0.0" } },
    { "getdel", 2, data_commands::getdel, 0,
        { "write fast", 1, 1, 1, "Get the value of a key and delete the key", "string", "@write @string @fast", "6.2.0" } },
    { "mget", -2, data_commands::mget, 0,
        { "readonly fast", 1, -1, 1, "Get the values of all the given keys", "string", "@read @string @fast", "1.0.0" } },
    { "mset", -3, data_commands::mset, 0,
        { "write denyoom", 1, -1, 2, "Set multiple keys to multiple values", "string", "@write @string @slow", "1.0.1" } },
    { "msetnx", -3, data_commands::msetnx, 0,
        { "write denyoom", 1, -1, 2, "Set multiple keys to multiple values, only if none of the keys exist", "string", "@write @string @slow", "1.0.1" } },
    { "incr", 2, data_commands::incr, 0,
        { "write denyoom fast", 1, 1, 1, "Increment the integer value of a key by one", "string", "@write @string @fast", "1.0.0" } },
    { "decr", 2, data_commands::decr, 0,
        { "write denyoom fast", 1, 1, 1, "Decrement the integer value of a key by one", "string", "@write @string @fast", "1.0.0" } },
    { "incrby", 3, data_commands::incrby, 0,
        { "write denyoom fast", 1, 1, 1, "Increment the integer value of a key by the given amount", "string", "@write @string @fast", "1.0.0" } },
    { "decrby", 3, data_commands::decrby, 0,
        { "write denyoom fast", 1, 1, 1, "Decrement the integer value of a key by the given number", "string", "@write @string @fast", "1.0.0" } },
    { "incrbyfloat", 3, data_commands::incrbyfloat, 0,
        { "write denyoom fast", 1, 1, 1, "Increment the float value of a key by the given amount", "string", "@write @string @fast", "2.6.0" } },
    { "append", 3, data_commands::append, 0,
        { "write denyoom fast", 1, 1, 1, "Append a value to a key", "string", "@write @string @fast", "2.0.0" } },
    { "strlen", 2, data_commands::strlen, 0,
        { "readonly fast", 1, 1, 1, "Get the length of the value stored in a key", "string", "@read @string @fast", "2.2.0" } },
    { "getrange", 4, data_commands::getrange, 0,
        { "readonly", 1, 1, 1, "Get a substring of the string stored at a key", "string", "@read @string @slow", "2.4.0" } },
    { "setrange", 4, data_commands::setrange, 0,
        { "write denyoom", 1, 1, 1, "Overwrite part of a string at key starting at the specified offset", "string", "@write @string @slow", "2.2.0" } },
    { "unlink", -2, data_commands::unlink, 0,
        { "write fast", 1, -1, 1, "Delete a key asynchronously in another thread. Otherwise it is just as DEL, but non blocking.", "generic", "@keyspace @write @fast", "4.0.0" } },
    { "type", 2, data_commands::type, 0,
        { "readonly fast", 1, 1, 1, "Determine the type stored at key", "generic", "@keyspace @read @fast", "1.0.0" } },
    { "rename", 3, data_commands::rename, 0,
        { "write", 1, 2, 1, "Rename a key", "generic", "@keyspace @write @slow", "1.0.0" } },
    { "renamenx", 3, data_commands::renamenx, 0,
        { "write fast", 1, 2, 1, "Rename a key, only if the new key does not exist", "generic", "@keyspace @write @fast", "1.0.0" } },
    { "randomkey", 1, data_commands::randomkey, 0,
        { "readonly", 0, 0, 0, "Return a random key from the keyspace", "generic", "@keyspace @read @slow", "1.0.0" } },
    { "flushdb", -1, data_commands::flushdb, 0,
        { "write", 0, 0, 0, "Remove all keys from the current database", "server", "@keyspace @write @slow @dangerous", "1.0.0" } },
    { "flushall", -1, data_commands::flushdb, 0,
        { "write", 0, 0, 0, "Remove all keys from all databases", "server", "@keyspace @write @slow @dangerous", "1.0.0" } },
    { "time", 1, data_commands::time, 0,
        { "loading stale fast", 0, 0, 0, "Return the current server time", "server", "@fast", "2.6.0" } },
    { "scan", -2, data_commands::scan, 0,
        { "readonly", 0, 0, 0, "Incrementally iterate the keys space", "generic", "@keyspace @read @slow", "2.8.0" } },
    // Expiry.
    { "setex", 4, data_commands::setex, 0,
        { "write denyoom", 1, 1, 1, "Set the value and expiration of a key", "string", "@write @string @slow", "2.0.0" } },
    { "psetex", 4, data_commands::psetex, 0,
        { "write denyoom", 1, 1, 1, "Set the value and expiration in milliseconds of a key", "string", "@write @string @slow", "2.6.0" } },
    { "getex", -2, data_commands::getex, 0,
        { "write fast", 1, 1, 1, "Get the value of a key and optionally set its expiration", "string", "@write @string @fast", "6.2.0" } },
    { "expire", -3, data_commands::expire, 0,
        { "write fast", 1, 1, 1, "Set a key's time to live in seconds", "generic", "@keyspace @write @fast", "1.0.0" } },
    { "pexpire", -3, data_commands::pexpire, 0,
        { "write fast", 1, 1, 1, "Set a key's time to live in milliseconds", "generic", "@keyspace @write @fast", "2.6.0" } },
    { "expireat", -3, data_commands::expireat, 0,
        { "write fast", 1, 1, 1, "Set the expiration for a key as a UNIX timestamp", "generic", "@keyspace @write @fast", "1.2.0" } },
    { "pexpireat", -3, data_commands::pexpireat, 0,
        { "write fast", 1, 1, 1, "Set the expiration for a key as a UNIX timestamp specified in milliseconds", "generic",
            "@keyspace @write @fast", "2.6.0" } },
    { "ttl", 2, data_commands::ttl, 0,
        { "readonly fast", 1, 1, 1, "Get the time to live for a key in seconds", "generic", "@keyspace @read @fast", "1.0.0" } },
    { "pttl", 2, data_commands::pttl, 0,
        { "readonly fast", 1, 1, 1, "Get the time to live for a key in milliseconds", "generic", "@keyspace @read @fast", "2.6.0" } },
    { "expiretime", 2, data_commands::expiretime, 0,
        { "readonly fast", 1, 1, 1, "Get the expiration Unix timestamp for a key", "generic", "@keyspace @read @fast", "7.0.0" } },
    { "pexpiretime", 2, data_commands::pexpiretime, 0,
        { "readonly fast", 1, 1, 1, "Get the expiration Unix timestamp for a key in milliseconds", "generic", "@keyspace @read @fast",
            "7.0.0" } },
    { "persist", 2, data_commands::persist, 0,
        { "write fast", 1, 1, 1, "Remove the expiration from a key", "generic", "@keyspace @write @fast", "2.2.0" } },
    { "touch", -2, data_commands::touch, 0,
        { "readonly fast", 1, -1, 1, "Alters the last access time of a key(s). Returns the number of existing keys specified.", "generic",
            "@keyspace @read @fast", "3.2.1" } },
};

} // namespace

void run_bucket_command(BucketContext& context, const resp::Request& request, ReplySink& reply)
{
    context.protocol = reply.session().protocol;
    std::string& out = reply.now();
    const BucketCommand* command = find_command<commands>(request, out);
    if (!command)
        return;
    // Cluster mode's fence: once its node's claim of the name may have
    // ended, no write is acknowledged here (another node may own the name).
    if (command->doc.flags.substr(0, 5) == "write" && context.map.writes_fenced()) {
        append_error(out, ErrorCode::cluster_down,
            "this bucket's node lost its cluster lease: writes are refused until registryd renews its claim (reads are served)");
        return;
    }
    BucketMap::FrozenClock one_instant(context.map); // one instant for the whole command: MGET k k agrees with itself
    command->run(context, request, out);
}

std::vector<CommandInfo> bucket_command_infos() { return describe_commands(commands); }

} // namespace kv
