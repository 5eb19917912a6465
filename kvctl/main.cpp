// kvctl: the command-line client for registryd and its buckets.
#include <locale.h>
#include <unistd.h>
#include <wchar.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>
#include <optional>
#include <type_traits>
#include <unordered_set>
#include <vector>

#include <CLI/CLI.hpp>

#include "bucket_name.h"
#include "bucket_record.h"
#include "log.h"
#include "client.h"
#include "error_code.h"
#include "exit_record.h"
#include "instance_record.h"
#include "name_table.h"
#include "password_file.h"
#include "restart_policy.h"
#include "shared_table.h"
#include "run_dir.h"
#include "system_error.h"

namespace {

// Exit codes, as documented in --help and the README.
enum ExitCode {
    exit_ok = 0,
    exit_not_found = 1,
    exit_usage = 2,
    exit_unreachable = 3,
    exit_refused = 4,
    exit_failed = 5,
    exit_timed_out = 6,
};

constexpr const char* exit_code_help = "Exit codes: 0 ok; 1 not found (bucket or key, or the bucket is gone); "
                                       "2 usage; 3 registryd not reachable; 4 refused (invalid name, limit "
                                       "reached, bucket full, permission denied, another node's bucket without "
                                       "--password-file or with a wrong password); 5 failed (e.g. a bucket could "
                                       "not start, or a bucket's socket is served by another user); 6 timed out "
                                       "(--timeout).";

// In the footer of every command's --help: CLI11 reads a word that begins
// with - as an option, wherever it stands, unless it comes after --.
constexpr const char* dash_help = "Arguments that begin with - (a key, a value) go after --, which ends the options: "
                                  "kvctl put NAME -- -KEY VALUE.";

// "create, lookup, ...": every command kvctl has, in the order --help lists them.
std::string command_names(CLI::App& app)
{
    std::string names;
    for (const CLI::App* command : app.get_subcommands([](const CLI::App*) { return true; }))
        names += (names.empty() ? "" : ", ") + command->get_name();
    return names;
}

// The line for a command line CLI11 refused. CLI11 2.1 says "A subcommand is
// required" both when none is given and when the first word is no command
// (which it keeps among the words it did not use): say which it was, and
// what the commands are.
std::string usage_error(CLI::App& app, const CLI::ParseError& error)
{
    if (app.get_subcommands().empty()) {
        const auto unused = app.remaining();
        if (!unused.empty() && !unused.front().empty() && unused.front()[0] != '-')
            return "unknown command " + kv::printable(unused.front()) + " (commands: " + command_names(app) + ")";
        if (unused.empty())
            return "a command is required (commands: " + command_names(app) + "; see kvctl --help)";
    }
    return std::string(error.what()) + " (see kvctl --help)";
}

// A failure to report: one line on stderr, then this exit code.
struct Failure {
    ExitCode code;
    std::string message;
};

// The bucket record in a CREATE or LOOKUP reply (bucket_record.h).
kv::BucketRecord decoded(const kv::resp::Value& reply, const std::string& what, const char* verb)
{
    auto record = kv::decode_bucket_record(reply);
    if (!record)
        throw Failure { exit_failed, what + ": registryd sent a " + verb + " reply kvctl cannot read" };
    return *record;
}

kv::resp::Value checked(const kv::resp::Value& reply, const std::string& what)
{
    if (reply.is_error()) {
        // The reply's code word says which exit code (common/resp/error_code.h).
        const auto code = static_cast<ExitCode>(kv::kvctl_exit_code(kv::error_code_of(reply.text)));
        const std::string message(kv::error_message(reply.text));
        // "no bucket named shopping" reads best alone; other errors say what
        // failed first, unless the reply already does (registryd's CREATE
        // errors say "unable to create bucket two: ...", as a redis-cli user
        // needs them to), so no line says it twice.
        const bool says_what = message.compare(0, what.size(), what) == 0;
        throw Failure { code, code == exit_not_found || says_what ? message : what + ": " + message };
    }
    return reply;
}

// What `put NAME KEY -` reads from stdin at most: Redis's own ceiling for one
// value (proto-max-bulk-len's largest default). The bucket's limit
// (registryd --max-bulk-length, 32 MiB by default) is usually lower; the
// bucket says so if the value is over it.
constexpr std::size_t longest_stdin_value = 512 * 1024 * 1024;

// Every byte of stdin, as it is (NUL, CR, LF and a last newline included).
std::string read_stdin_value()
{
    std::string value;
    char chunk[65536];
    for (;;) {
        ssize_t got = ::read(STDIN_FILENO, chunk, sizeof chunk);
        if (got == 0)
            return value;
        if (got < 0) {
            if (errno == EINTR)
                continue;
            throw Failure { exit_failed, std::string("unable to read the value from stdin: ") + std::strerror(errno) };
        }
        if (value.size() + static_cast<std::size_t>(got) > longest_stdin_value)
            throw Failure { exit_refused, "unable to read the value from stdin: longer than "
                    + std::to_string(longest_stdin_value) + " bytes" };
        value.append(chunk, static_cast<std::size_t>(got));
    }
}

// EACCES is no sign that registryd is down: it runs, and the run directory
// or the socket (0700, 0600 unless --allow-uid/--allow-gid) is not ours to
// use. That is a refusal (exit 4), with what to do about it.
Failure unreachable(const std::string& registry_socket, const kv::SystemError& error)
{
    if (error.error() == EACCES)
        return Failure { exit_refused, "unable to reach registryd at " + registry_socket + ": " + std::strerror(error.error())
                + " (uid " + std::to_string(::getuid()) + " may not use this run dir: use a run dir of your own, or ask "
                "its owner to start registryd with --allow-uid or --allow-gid)" };
    return Failure { exit_unreachable, "unable to reach registryd at " + registry_socket + ": " + std::strerror(error.error())
            + " (is registryd running with this run dir?)" };
}

// What kvctl talks to, and how far it trusts it: the run directory must be
// ours (or root's), and every socket, segment and record in it must belong to
// the directory's owner (SO_PEERCRED for sockets, the owner for files), so
// another user can neither answer in registryd's place nor receive our data.
class Session {
public:
    // `password`: --password-file's, for a bucket on another node of a
    // cluster (README "Cluster"); none: such a bucket is refused.
    Session(const std::string& run_dir, std::optional<std::chrono::steady_clock::time_point> deadline,
        std::optional<std::string> password)
        : dir_(open_run_dir(run_dir))
        , connect_options_ { dir_.owner(), deadline, {} }
        , timeout_text_(deadline ? " (see --timeout)" : "")
        , password_(std::move(password))
    {
    }

    kv::resp::Value registry_call(const std::vector<std::string>& request, const std::string& what)
    {
        std::string path = kv::registry_socket_path(dir_.path());
        try {
            if (!registry_)
                registry_.emplace(kv::Client::connect(path, connect_options_));
            return checked(registry_->call(request), what);
        } catch (const kv::UntrustedPeer& error) {
            throw Failure { exit_unreachable, what + ": " + error.what() };
        } catch (const kv::TimedOut& error) {
            throw Failure { exit_timed_out, what + ": " + error.what() + timeout_text_ };
        } catch (const kv::SystemError& error) {
            throw unreachable(path, error);
        } catch (const kv::ConnectionClosed&) {
            throw Failure { exit_unreachable, what + ": registryd closed the connection before replying" };
        }
    }

    // Where a bucket is: from the name table registryd publishes in shared
    // memory when it has the name (no round trip), else LOOKUP on the socket.
    // A name missing from the table is not proof that there is no bucket:
    // the table holds ready buckets only, and a bucket being restarted
    // (registryd/supervision.h) is out of it from its exit until its new
    // process is ready. LOOKUP waits through that, and answers NOTFOUND
    // for a name that is really gone.
    kv::BucketRecord lookup(const std::string& name, const std::string& what)
    {
        if (!names_tried_) {
            names_tried_ = true;
            if (auto record = kv::read_instance_record(dir_))
                names_ = kv::NameTableReader::open(record->names_segment, dir_.owner());
        }
        kv::BucketRecord record;
        if (names_ && names_->lookup(name, record) == kv::NameTableReader::Result::found)
            return record;
        return decoded(registry_call({ "LOOKUP", name }, what), what, "LOOKUP");
    }

    // One call to the bucket's own socket.
    kv::resp::Value bucket_call(const std::string& name, const std::vector<std::string>& request, const std::string& what)
    {
        return bucket_call(lookup(name, what), name, request, what);
    }

    kv::resp::Value bucket_call(const kv::BucketRecord& bucket, const std::string& name,
        const std::vector<std::string>& request, const std::string& what)
    {
        return with_bucket(bucket, name, what, [&](kv::Client& client) { return checked(client.call(request), what); });
    }

    // Every key of bucket `name` that matches glob `pattern`, each once, in
    // the order SCAN first gave it: one connection, SCAN until its cursor
    // comes back to 0. Every key present for the whole walk is in it (SCAN's
    // guarantee); a key added or removed meanwhile may or may not be.
    std::vector<std::string> keys(const std::string& name, const std::string& pattern, const std::string& what)
    {
        return with_bucket(lookup(name, what), name, what, [&](kv::Client& client) {
            std::vector<std::string> found;
            std::unordered_set<std::string> seen;
            std::string cursor = "0";
            do {
                auto reply = checked(client.call({ "SCAN", cursor, "MATCH", pattern, "COUNT", "1000" }), what);
                if (reply.type != kv::resp::Value::Type::array || reply.elements.size() != 2)
                    throw Failure { exit_failed, what + ": the bucket sent a SCAN reply kvctl cannot read" };
                cursor = reply.elements[0].text;
                for (auto& key : reply.elements[1].elements) {
                    if (seen.insert(key.text).second)
                        found.push_back(std::move(key.text));
                }
            } while (cursor != "0");
            return found;
        });
    }

    // Runs `use` on a new connection to `bucket`, mapping what can go wrong
    // on the way to kvctl's failures.
    template <typename Use>
    std::invoke_result_t<Use, kv::Client&> with_bucket(const kv::BucketRecord& bucket, const std::string& name,
        const std::string& what, Use use)
    {
        if (on_another_node(bucket))
            return with_remote_bucket(bucket, name, what, use);
        try {
            auto client = kv::Client::connect(bucket.socket, connect_options_);
            return use(client);
        } catch (const kv::UntrustedPeer& error) {
            throw Failure { exit_failed, what + ": " + error.what() };
        } catch (const kv::TimedOut& error) {
            throw Failure { exit_timed_out, what + ": " + error.what() + timeout_text_ };
        } catch (const kv::SystemError& error) {
            if (error.error() == EACCES) // the socket is there, and not ours to use: not gone
                throw Failure { exit_refused, what + ": " + bucket.socket + ": " + std::strerror(EACCES) };
            throw Failure { exit_not_found, what + ": bucket " + kv::printable(name) + " is gone (its process exited)" };
        } catch (const kv::ConnectionClosed&) {
            throw Failure { exit_not_found, what + ": bucket " + kv::printable(name) + " exited before replying" };
        }
    }

    // GET straight from the bucket's segment when it can answer; else over
    // its socket (or, on another node, its TCP address).
    std::optional<std::string> get(const std::string& name, const std::string& key, const std::string& what)
    {
        auto bucket = lookup(name, what);
        if (on_another_node(bucket)) {
            // nothing of it is mapped here: ask it
        } else if (auto table = kv::SharedTableReader::open(bucket.segment, kv::TableKind::bucket, dir_.owner())) {
            std::string value;
            switch (table->get(key, value)) {
            case kv::SharedTableReader::Result::found: return value;
            case kv::SharedTableReader::Result::missing: return std::nullopt;
            default: break; // gone or busy: the socket will say
            }
        }
        auto reply = bucket_call(bucket, name, { "GET", key }, what);
        if (reply.type == kv::resp::Value::Type::null)
            return std::nullopt;
        return reply.text;
    }

private:
    // A bucket another node of the cluster runs: LOOKUP gives its node and
    // TCP address, and no socket or segment here (bucket_record.h).
    static bool on_another_node(const kv::BucketRecord& bucket) { return bucket.socket.empty() && !bucket.node.empty(); }

    // with_bucket for a bucket on another node: over TCP to its address,
    // AUTH with --password-file's password first (its node serves it to
    // clients that AUTH, as Redis's requirepass). The peer's uid cannot be
    // checked over TCP: the password is the trust, both ways.
    template <typename Use>
    std::invoke_result_t<Use, kv::Client&> with_remote_bucket(const kv::BucketRecord& bucket, const std::string& name,
        const std::string& what, Use use)
    {
        const std::string where = "bucket " + kv::printable(name) + " on node " + kv::printable(bucket.node);
        if (bucket.address.empty())
            throw Failure { exit_failed, what + ": " + where + " has no TCP address (node " + kv::printable(bucket.node)
                    + "'s registryd runs without --listen-tcp)" };
        if (!password_)
            throw Failure { exit_refused, what + ": " + where + " is reached over TCP at " + bucket.address
                    + ", which needs the cluster's password: give kvctl --password-file FILE" };
        kv::ConnectOptions options;
        options.deadline = connect_options_.deadline;
        options.password = password_;
        try {
            auto client = kv::Client::connect_tcp(bucket.address, options);
            return use(client);
        } catch (const kv::AuthenticationFailed& error) {
            throw Failure { exit_refused, what + ": " + error.what() };
        } catch (const kv::TimedOut& error) {
            throw Failure { exit_timed_out, what + ": " + error.what() + timeout_text_ };
        } catch (const kv::SystemError& error) {
            if (error.error() == ECONNREFUSED) // nobody listens at its port: the bucket exited (or its node is down)
                throw Failure { exit_not_found, what + ": " + where + " is gone (" + error.what() + ")" };
            throw Failure { exit_failed, what + ": " + error.what() };
        } catch (const kv::ConnectionClosed&) {
            throw Failure { exit_not_found, what + ": " + where + " exited before replying" };
        } catch (const std::invalid_argument& error) {
            throw Failure { exit_failed, what + ": registryd gave an address kvctl cannot use: " + error.what() };
        }
    }

    static kv::RunDir open_run_dir(const std::string& path)
    {
        try {
            return kv::RunDir::open_trusted(path);
        } catch (const kv::SystemError& error) {
            throw unreachable(kv::registry_socket_path(path), error);
        } catch (const std::exception& error) {
            throw Failure { exit_unreachable, error.what() };
        }
    }

    kv::RunDir dir_;
    kv::ConnectOptions connect_options_;
    std::string timeout_text_;
    std::optional<kv::Client> registry_;
    bool names_tried_ = false;
    std::unique_ptr<kv::NameTableReader> names_;
    std::optional<std::string> password_;
};

std::string json_string(const std::string& bytes)
{
    std::string out = "\"";
    for (unsigned char c : bytes) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < 0x20 || c == 0x7f) {
            char escaped[8];
            std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
            out += escaped;
        } else {
            out += static_cast<char>(c);
        }
    }
    return out + "\"";
}

// Columns `text` takes on a terminal: wcwidth of each character (2 for most
// CJK, 0 for a combining mark), decoded as UTF-8 whatever the user's locale,
// since names are UTF-8 (bucket_name.h). Debian's libc-bin always ships the
// C.UTF-8 locale, with glibc's Unicode width tables; without it, each byte
// counts one column (a misaligned table, nothing worse).
std::size_t display_width(const std::string& text)
{
    static const locale_t utf8 = ::newlocale(LC_CTYPE_MASK, "C.UTF-8", locale_t {});
    const locale_t previous = utf8 ? ::uselocale(utf8) : locale_t {};
    std::size_t width = 0;
    std::mbstate_t state {};
    for (std::size_t at = 0; at < text.size();) {
        wchar_t character;
        const std::size_t length = std::mbrtowc(&character, text.data() + at, text.size() - at, &state);
        if (length == 0 || length > text.size() - at) { // NUL, or not UTF-8: a byte, a column
            state = {};
            ++width;
            ++at;
            continue;
        }
        const int columns = ::wcwidth(character);
        width += columns < 0 ? 1 : static_cast<std::size_t>(columns);
        at += length;
    }
    if (utf8)
        ::uselocale(previous);
    return width;
}

// `text` and the spaces that make it `columns` wide on a terminal (printf's
// %-20s counts bytes, and a name of two CJK characters is 6 bytes, 4 columns).
std::string padded(const std::string& text, std::size_t columns)
{
    const std::size_t width = display_width(text);
    return text + std::string(width < columns ? columns - width : 0, ' ');
}

// The schema of `kvctl list --json` (README "kvctl"): an object with its
// version, so a script can tell a change from a bug; version 1 is this one.
constexpr int list_json_version = 1;

void print_list(const kv::resp::Value& reply, bool json)
{
    std::vector<std::pair<kv::BucketRecord, kv::BucketStats>> buckets;
    for (const auto& entry : reply.elements) {
        kv::BucketStats stats;
        auto record = kv::decode_bucket_record(entry, &stats);
        if (!record)
            throw Failure { exit_failed, "unable to list buckets: registryd sent a LIST entry kvctl cannot read" };
        buckets.emplace_back(std::move(*record), std::move(stats));
    }
    if (json) {
        std::cout << "{\n  \"version\": " << list_json_version << ",\n  \"buckets\": [";
        bool first = true;
        for (const auto& [record, stats] : buckets) {
            std::cout << (first ? "" : ",") << "\n    {\"name\": " << json_string(record.name) << ", \"pid\": " << record.pid
                      << ", \"id\": " << record.id << ", \"state\": " << json_string(stats.state)
                      << ", \"socket\": " << json_string(record.socket) << ", \"segment\": " << json_string(record.segment)
                      << ", \"uptime_ms\": " << stats.uptime_ms << ", \"keys\": " << stats.keys << ", \"bytes\": " << stats.bytes
                      << ", \"monitors\": " << stats.monitors << ", \"restart\": " << json_string(stats.restart) << ", \"keep\": " << (stats.keep ? "true" : "false")
                      << ", \"restarts\": " << stats.restarts << ", \"last_exit\": " << json_string(stats.last_exit) << "}";
            first = false;
        }
        std::cout << (first ? "]\n}\n" : "\n  ]\n}\n");
        return;
    }
    // LAST_EXIT last: it has spaces ("killed by SIGKILL"), so every column
    // before it stays one word for awk. "-" for what a bucket does not have:
    // a process (pid -1 and no socket while it waits to restart, and so no
    // uptime), or a last exit (never restarted).
    std::printf("%-20s %8s %6s %-10s %-14s %8s %10s %8s %10s %s %s\n", "NAME", "PID", "ID", "STATE", "RESTART", "RESTARTS",
        "UPTIME_S", "KEYS", "BYTES", "SOCKET", "LAST_EXIT");
    for (const auto& [record, stats] : buckets) {
        const bool running = record.pid > 0;
        char uptime[32] = "-";
        if (running)
            std::snprintf(uptime, sizeof uptime, "%.1f", static_cast<double>(stats.uptime_ms) / 1000.0);
        const std::string restart = stats.restart + (stats.keep ? "+keep" : "");
        std::printf("%s %8s %6llu %-10s %-14s %8llu %10s %8llu %10llu %s %s\n", padded(kv::printable(record.name), 20).c_str(),
            running ? std::to_string(record.pid).c_str() : "-", record.id, stats.state.c_str(), restart.c_str(),
            static_cast<unsigned long long>(stats.restarts), uptime, static_cast<unsigned long long>(stats.keys),
            static_cast<unsigned long long>(stats.bytes), record.socket.empty() ? "-" : record.socket.c_str(),
            stats.last_exit.empty() ? "-" : stats.last_exit.c_str());
    }
}

// A Unix time in milliseconds as RFC 3339 UTC: "2026-11-27T18:20:01.123Z".
std::string rfc3339(long long unix_ms)
{
    const std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
    std::tm utc {};
    ::gmtime_r(&seconds, &utc);
    char text[64];
    const std::size_t length = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
    std::snprintf(text + length, sizeof text - length, ".%03lldZ", unix_ms % 1000);
    return text;
}

// `kvctl info`: INFO's registry section (README "Protocol"), one field a
// line with a label a person reads; fields this kvctl does not know are
// printed as registryd names them. --json: one object, numbers as numbers.
void print_info(const kv::resp::Value& reply, bool json)
{
    std::vector<std::pair<std::string, std::string>> fields;
    std::size_t start = 0;
    const std::string& text = reply.text;
    while (start < text.size()) {
        std::size_t end = text.find("\r\n", start);
        if (end == std::string::npos)
            end = text.size();
        const std::string line = text.substr(start, end - start);
        start = end + 2;
        const auto colon = line.find(':');
        if (line.empty() || line[0] == '#' || colon == std::string::npos)
            continue;
        fields.emplace_back(line.substr(0, colon), line.substr(colon + 1));
    }
    if (fields.empty())
        throw Failure { exit_failed, "unable to read registryd's status: its INFO reply has no registry section" };
    auto is_number = [](const std::string& value) {
        return !value.empty() && value.find_first_not_of("0123456789") == std::string::npos;
    };
    if (json) {
        std::cout << "{";
        bool first = true;
        for (const auto& [field, value] : fields) {
            std::cout << (first ? "\n  " : ",\n  ") << json_string(field) << ": " << (is_number(value) ? value : json_string(value));
            first = false;
        }
        std::cout << "\n}\n";
        return;
    }
    static const std::pair<const char*, const char*> labels[] = {
        { "kv_version", "kv version" },
        { "process_id", "pid" },
        { "uptime_in_seconds", "uptime (s)" },
        { "run_dir", "run dir" },
        { "buckets", "buckets now" },
        { "buckets_created", "buckets created" },
        { "bucket_exits", "bucket exits" },
        { "bucket_exits_status_zero", "  exited with status 0" },
        { "bucket_exits_status_nonzero", "  exited with another status" },
        { "bucket_exits_signal", "  killed by a signal" },
        { "bucket_exits_stopped", "  of which stopped on request" },
        { "bucket_exits_before_ready", "  of which never ready" },
        { "bucket_restarts", "bucket restarts" },
        { "buckets_given_up", "buckets given up" },
        { "connected_clients", "clients connected" },
        { "history_entries", "exits in history" },
        { "history_size", "history size" },
    };
    for (const auto& [field, value] : fields) {
        std::string label = field;
        for (const auto& [known, readable] : labels) {
            if (field == known)
                label = readable;
        }
        std::printf("%-30s %s\n", (label + ":").c_str(), value.c_str());
    }
}

// `kvctl history`: HISTORY's entries, newest first (exit_record.h).
void print_history(const kv::resp::Value& reply, bool json)
{
    std::vector<kv::ExitRecord> exits;
    for (const auto& entry : reply.elements) {
        auto record = kv::decode_exit_record(entry);
        if (!record)
            throw Failure { exit_failed, "unable to read the exit history: registryd sent a HISTORY entry kvctl cannot read" };
        exits.push_back(std::move(*record));
    }
    if (json) {
        std::cout << "[";
        bool first = true;
        for (const auto& exit : exits) {
            std::cout << (first ? "" : ",") << "\n  {\"name\": " << json_string(exit.name) << ", \"pid\": " << exit.pid
                      << ", \"id\": " << exit.id << ", \"reason\": " << json_string(exit.reason)
                      << ", \"started_ms\": " << exit.started_ms << ", \"ended_ms\": " << exit.ended_ms
                      << ", \"started\": " << json_string(rfc3339(exit.started_ms))
                      << ", \"ended\": " << json_string(rfc3339(exit.ended_ms)) << ", \"restart\": " << json_string(exit.restart)
                      << ", \"restarts\": " << exit.restarts << ", \"outcome\": " << json_string(exit.outcome) << "}";
            first = false;
        }
        std::cout << (first ? "]\n" : "\n]\n");
        return;
    }
    // REASON and OUTCOME both have spaces ("killed by SIGKILL", "gave up
    // after 4 restarts in 5 s"): REASON is padded to the longest one shown,
    // so OUTCOME starts in one column.
    std::size_t reason_width = std::strlen("REASON");
    for (const auto& exit : exits)
        reason_width = std::max(reason_width, display_width(exit.reason));
    std::printf("%-24s %-20s %8s %6s %10s %-9s %8s %s %s\n", "ENDED (UTC)", "NAME", "PID", "ID", "LIVED_S", "RESTART", "RESTARTS",
        padded("REASON", reason_width).c_str(), "OUTCOME");
    for (const auto& exit : exits) {
        std::printf("%-24s %s %8d %6llu %10.1f %-9s %8llu %s %s\n", rfc3339(exit.ended_ms).c_str(),
            padded(kv::printable(exit.name), 20).c_str(), static_cast<int>(exit.pid), exit.id,
            static_cast<double>(exit.ended_ms - exit.started_ms) / 1000.0, exit.restart.c_str(), exit.restarts,
            padded(exit.reason, reason_width).c_str(), exit.outcome.c_str());
    }
}

} // namespace

int main(int argc, char** argv)
{
    // SIGPIPE kills nothing of kv's: a reader of our output that hangs up
    // (`kvctl keys b | head -1`) leaves writes failing quietly, and kvctl
    // finishes its request and exits as it would have.
    std::signal(SIGPIPE, SIG_IGN);
    CLI::App app { "kvctl: talk to registryd and its buckets.", "kvctl" };
    app.footer(std::string(dash_help) + "\n\n" + exit_code_help);
    app.require_subcommand(1);
    std::string run_dir_flag;
    app.add_option("--run-dir", run_dir_flag, "Run directory (default: $KV_RUN_DIR, $XDG_RUNTIME_DIR/kv, /run/kv for root, /run/user/UID/kv, ~/.kv, /tmp/kv-UID)")
;
    app.fallthrough(); // lets --run-dir come after the subcommand too (subcommands inherit this)
    app.set_version_flag("--version", "kvctl " KV_VERSION, "Print the version and exit");
    std::string name, key, value;
    bool json = false, raw = false, socket_path = false;
    std::string password_file;
    app.add_option("--password-file", password_file,
        "For a bucket on another node of a cluster (reached over TCP): the password to AUTH with, the first line of "
        "FILE, which must be ours (or root's) with mode 0600 or stricter, as registryd's --password-file")
        ->type_name("FILE");
    double timeout_seconds = 10;
    auto* timeout = app.add_option("--timeout", timeout_seconds,
                           "Give up after this many seconds (0: wait forever); monitor waits forever unless given one")
                        ->capture_default_str()
                        ->check(CLI::Range(0.0, 86400.0));

    auto* create = app.add_subcommand("create", "Create a bucket (or find the existing one); prints its pid");
    create->add_option("NAME", name)->required();
    // The words and their case rule are registryd's (restart_policy.h); the
    // check's text, "{temporary,transient,permanent}" in --help, is also
    // where the bash completion finds them.
    std::string restart_policy;
    create->add_option("--restart", restart_policy,
              "Restart policy: temporary (never restarted), transient (after a crash or a non-zero exit status), "
              "permanent (after any exit but a stop); registryd's --restart when not given")
        ->check(CLI::Validator(
            [](std::string& word) {
                auto policy = kv::parse_restart_policy(word);
                if (!policy)
                    return "invalid restart policy " + kv::printable(word) + ": expected " + kv::restart_policy_choices;
                word = kv::to_string(*policy);
                return std::string();
            },
            "{temporary,transient,permanent}", "restart policy"))
        ->type_name("POLICY");
    bool keep = false;
    create->add_flag("--keep", keep,
        "Keep the bucket's data across a restart when it is provably intact (needs --restart transient or permanent)");
    auto* lookup = app.add_subcommand("lookup", "Print the pid of a bucket (--socket: its socket's path)");
    lookup->add_option("NAME", name)->required();
    lookup->add_flag("--socket", socket_path, "Print the path of the bucket's socket instead of its pid");
    auto* list = app.add_subcommand("list", "List every bucket");
    list->add_flag("--json", json, "Print JSON");
    auto* stop = app.add_subcommand("stop", "Stop a bucket (SIGTERM, then SIGKILL after the grace period)");
    stop->add_option("NAME", name)->required();
    auto* monitor = app.add_subcommand("monitor", "Wait until a bucket exits and print why");
    monitor->add_option("NAME", name)->required();
    auto* put = app.add_subcommand("put", "Set KEY to VALUE in a bucket (VALUE - reads it from stdin, binary-safe)");
    put->add_option("NAME", name)->required();
    put->add_option("KEY", key)->required();
    put->add_option("VALUE", value, "the value, or - to read it from stdin")->required();
    auto* keys = app.add_subcommand("keys", "Print the keys of a bucket that match PATTERN (a glob; * by default), one a line");
    keys->add_option("NAME", name)->required();
    std::string pattern = "*";
    keys->add_option("PATTERN", pattern, "glob, as Redis's KEYS and SCAN MATCH take it");
    auto* get = app.add_subcommand("get", "Print the value of KEY in a bucket, byte for byte, and a newline");
    get->add_option("NAME", name)->required();
    get->add_option("KEY", key)->required();
    get->add_flag("--raw", raw, "Print the value's bytes only, with no newline added");
    auto* remove = app.add_subcommand("delete", "Delete KEY from a bucket");
    remove->add_option("NAME", name)->required();
    remove->add_option("KEY", key)->required();
    auto* info = app.add_subcommand("info", "Print registryd's status: version, pid, uptime, buckets, exits by reason, clients");
    info->add_flag("--json", json, "Print JSON");
    auto* history = app.add_subcommand("history", "Print the last bucket exits, newest first (all that registryd keeps, or COUNT)");
    history->add_flag("--json", json, "Print JSON");
    std::size_t history_count = 0;
    // Checked as text first: a size_t would take "-1" as 2^64 - 1.
    auto* history_count_option = history->add_option("COUNT", history_count, "how many of the newest exits")
                                     ->check(CLI::Validator(
                                         [](std::string& text) -> std::string {
                                             return !text.empty() && text.find_first_not_of("0123456789") == std::string::npos
                                                 ? std::string()
                                                 : "not a count of exits (digits, 0 or more): " + text;
                                         },
                                         "COUNT"));

    for (CLI::App* command : app.get_subcommands([](const CLI::App*) { return true; }))
        command->footer(dash_help);

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& help) {
        return app.exit(help);
    } catch (const CLI::CallForAllHelp& help) {
        return app.exit(help);
    } catch (const CLI::CallForVersion& version) {
        return app.exit(version);
    } catch (const CLI::ParseError& error) {
        std::cerr << "kvctl: " << usage_error(app, error) << "\n";
        return exit_usage;
    }

    const std::string shown = kv::shown_bucket_name(name);
    try {
        std::optional<std::chrono::steady_clock::time_point> deadline;
        if (timeout_seconds > 0 && (!*monitor || timeout->count() > 0))
            deadline = std::chrono::steady_clock::now()
                + std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(timeout_seconds));
        std::optional<std::string> password;
        if (!password_file.empty()) {
            try {
                password = kv::read_password_file(password_file);
            } catch (const std::exception& error) {
                throw Failure { exit_refused, std::string("unable to use --password-file: ") + error.what() };
            }
        }
        Session session(kv::resolve_run_dir(run_dir_flag), deadline, std::move(password));
        if (*create) {
            std::vector<std::string> request { "CREATE", name };
            if (!restart_policy.empty())
                request.insert(request.end(), { "RESTART", restart_policy });
            if (keep)
                request.push_back("KEEP");
            auto reply = session.registry_call(request, "unable to create bucket " + shown);
            std::cout << decoded(reply, "unable to create bucket " + shown, "CREATE").pid << "\n";
        } else if (*lookup) {
            auto record = session.lookup(name, "unable to look up bucket " + shown);
            if (socket_path)
                std::cout << record.socket << "\n";
            else
                std::cout << record.pid << "\n";
        } else if (*list) {
            print_list(session.registry_call({ "LIST" }, "unable to list buckets"), json);
        } else if (*stop) {
            session.registry_call({ "STOP", name }, "unable to stop bucket " + shown);
        } else if (*monitor) {
            auto reply = session.registry_call({ "MONITOR", name }, "unable to monitor bucket " + shown);
            std::cout << "bucket " << shown << " " << reply.text << "\n";
        } else if (*put) {
            if (value == "-")
                value = read_stdin_value();
            session.bucket_call(name, { "SET", key, value }, "unable to put " + kv::printable(key) + " in bucket " + shown);
        } else if (*keys) {
            // One key a line: control bytes (a newline in a key, a terminal
            // escape) and backslashes are escaped as in kvctl's messages.
            for (const auto& key : session.keys(name, pattern, "unable to list the keys of bucket " + shown))
                std::cout << kv::printable(key) << "\n";
        } else if (*get) {
            auto value = session.get(name, key, "unable to get " + kv::printable(key) + " from bucket " + shown);
            if (!value)
                throw Failure { exit_not_found, "no key " + kv::printable(key) + " in bucket " + shown };
            // The bytes as they are (a binary value too); --raw adds no newline.
            std::cout.write(value->data(), static_cast<std::streamsize>(value->size()));
            if (!raw)
                std::cout << "\n";
        } else if (*remove) {
            auto reply = session.bucket_call(name, { "DEL", key }, "unable to delete " + kv::printable(key) + " from bucket " + shown);
            if (reply.integer == 0)
                throw Failure { exit_not_found, "no key " + kv::printable(key) + " in bucket " + shown };
        } else if (*info) {
            print_info(session.registry_call({ "INFO", "registry" }, "unable to read registryd's status"), json);
        } else if (*history) {
            std::vector<std::string> request { "HISTORY" };
            if (history_count_option->count() > 0)
                request.push_back(std::to_string(history_count));
            print_history(session.registry_call(request, "unable to read the exit history"), json);
        }
        return exit_ok;
    } catch (const Failure& failure) {
        std::cerr << "kvctl: " << failure.message << "\n";
        return failure.code;
    } catch (const std::exception& error) {
        std::cerr << "kvctl: " << error.what() << "\n";
        return exit_failed;
    }
}
