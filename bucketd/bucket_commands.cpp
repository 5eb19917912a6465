#include "bucket_commands.h"

#include <unistd.h>

#include <charconv>
#include <csignal>
#include <cstdint>

#include "command_table.h"
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

void set(BucketContext& context, const resp::Request& request, std::string& out)
{
    if (context.map.set(request[1], request[2]) == BucketMap::SetResult::stored)
        resp::append_simple(out, "OK");
    else
        append_error(out, ErrorCode::full, "bucket is full: no room for " + std::to_string(request[1].size() + request[2].size())
            + " more bytes (registryd --bucket-size sets the room per bucket)");
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

const BucketCommand commands[] = {
    { "GET", 2, get, 0, { "readonly fast", 1, 1, 1, "Get the value of a key", "string", "@read @string @fast" } },
    { "SET", 3, set, 0, { "write denyoom", 1, 1, 1, "Set the string value of a key", "string", "@write @string @slow" } },
    { "DEL", -2, del, 0, { "write", 1, -1, 1, "Delete a key", "generic", "@keyspace @write @slow" } },
    { "EXISTS", -2, exists, 0, { "readonly fast", 1, -1, 1, "Determine if a key exists", "generic", "@keyspace @read @fast", "1.0.0" } },
    { "DBSIZE", 1, dbsize, 0, { "readonly fast", 0, 0, 0, "Return the number of keys in the selected database", "server", "@keyspace @read @fast" } },
    { "KEYS", 2, keys, 0, { "readonly", 0, 0, 0, "Find all keys matching the given pattern", "generic", "@keyspace @read @slow @dangerous" } },
    { "PING", -1, ping, 2, { "fast", 0, 0, 0, "Ping the server", "connection", "@fast @connection" } },
    { "CONFIG", -2, config, 0, { "", 0, 0, 0, "A container for server configuration commands (here: GET save, appendonly)", "server", "", "2.0.0" } },
    { "DEBUG", -2, debug, 0, { "admin noscript loading stale", 0, 0, 0, "A container for debugging commands (here: SEGFAULT, EXIT)", "server", "@admin @slow @dangerous" } },
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
