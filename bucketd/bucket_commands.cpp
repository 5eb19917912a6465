#include "bucket_commands.h"

#include <unistd.h>

#include <charconv>
#include <csignal>
#include <cstdint>

#include "command_table.h"
#include "data_commands.h"
#include "error_code.h"
#include "glob.h"

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

void debug(BucketContext& context, const resp::Request& request, std::string& out)
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
    { "config", -2, config, 0, { "", 0, 0, 0, "A container for server configuration commands (here: GET save, appendonly)", "server", "", "2.0.0" } },
    { "debug", -2, debug, 0, { "admin noscript loading stale", 0, 0, 0, "A container for debugging commands (here: SEGFAULT, EXIT)", "server", "@admin @slow @dangerous" } },
    // Strings and the keyspace (data_commands.h).
    { "setnx", 3, data_commands::setnx },
    { "getset", 3, data_commands::getset },
    { "getdel", 2, data_commands::getdel },
    { "mget", -2, data_commands::mget },
    { "mset", -3, data_commands::mset },
    { "msetnx", -3, data_commands::msetnx },
    { "incr", 2, data_commands::incr },
    { "decr", 2, data_commands::decr },
    { "incrby", 3, data_commands::incrby },
    { "decrby", 3, data_commands::decrby },
    { "incrbyfloat", 3, data_commands::incrbyfloat },
    { "append", 3, data_commands::append },
    { "strlen", 2, data_commands::strlen },
    { "getrange", 4, data_commands::getrange },
    { "setrange", 4, data_commands::setrange },
    { "unlink", -2, data_commands::unlink },
    { "type", 2, data_commands::type },
    { "rename", 3, data_commands::rename },
    { "renamenx", 3, data_commands::renamenx },
    { "randomkey", 1, data_commands::randomkey },
    { "flushdb", -1, data_commands::flushdb },
    { "flushall", -1, data_commands::flushdb },
    { "time", 1, data_commands::time },
    { "scan", -2, data_commands::scan },
};

} // namespace

void run_bucket_command(BucketContext& context, const resp::Request& request, ReplySink& reply)
{
    context.protocol = reply.session().protocol;
    std::string& out = reply.now();
    const BucketCommand* command = find_command(commands, request, out);
    if (command)
        command->run(context, request, out);
}

std::vector<CommandInfo> bucket_command_infos() { return describe_commands(commands); }

} // namespace kv
