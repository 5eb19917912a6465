#include "connection_commands.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <optional>

#include "error_code.h"
#include "resp_connection.h"
#include "small_file.h"

namespace kv {

namespace {

using resp::Protocol;

// What one connection command runs with.
struct Call {
    ServerShared& server;
    Session& session;
    const resp::Request& request;
    std::string& out;

    Protocol protocol() const { return session.protocol; }
    void error(std::string_view text) const { resp::append_error(out, text); }
};

using ConnectionCommand = CommandEntry<void (*)(const Call&)>;

const std::string_view not_an_integer = "ERR value is not an integer or out of range";

// Redis's rule for client names and library attributes (validateClientAttr):
// printable ASCII without spaces, so CLIENT LIST splits on spaces.
bool valid_client_attribute(std::string_view value)
{
    for (char c : value) {
        if (c < '!' || c > '~')
            return false;
    }
    return true;
}

std::string upper(std::string_view text)
{
    std::string out(text);
    for (char& c : out)
        c = (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
    return out;
}

std::string lower(std::string_view text)
{
    std::string out(text);
    for (char& c : out)
        c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    return out;
}

// Redis's errors for a container command (CLIENT, COMMAND): its subcommand
// unknown, or given the wrong number of arguments (named "client|setname").
void unknown_subcommand(const Call& call)
{
    call.error("ERR unknown subcommand '" + redis_error_piece(call.request[1], 128) + "'. Try "
        + upper(call.request[0]) + " HELP.");
}

void wrong_arity(const Call& call, std::string_view full_name)
{
    call.error("ERR wrong number of arguments for '" + std::string(full_name) + "' command");
}

// A subcommand of a container command: its name and arity (counting the
// command and the subcommand, as Redis's do).
struct Subcommand {
    std::string_view name;
    int arity;
    void (*run)(const Call&);
};

// Finds request[1] among `subcommands` and runs it, or answers Redis's error.
template <std::size_t N>
void run_subcommand(const Call& call, const Subcommand (&subcommands)[N])
{
    for (const Subcommand& subcommand : subcommands) {
        if (!same_word(subcommand.name, call.request[1]))
            continue;
        if (!arity_accepts(subcommand.arity, 0, call.request.size())) {
            wrong_arity(call, lower(call.request[0]) + "|" + lower(subcommand.name));
            return;
        }
        subcommand.run(call);
        return;
    }
    unknown_subcommand(call);
}

// addReplyHelp: "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
// then the lines, then HELP, as simple strings.
void reply_help(const Call& call, std::initializer_list<std::string_view> lines)
{
    resp::append_array_header(call.out, lines.size() + 3);
    resp::append_simple(call.out, upper(call.request[0]) + " <subcommand> [<arg> [value] [opt] ...]. Subcommands are:");
    for (std::string_view line : lines)
        resp::append_simple(call.out, line);
    resp::append_simple(call.out, "HELP");
    resp::append_simple(call.out, "    Prints this help.");
}

// ---- AUTH, HELLO, SELECT, ECHO, QUIT, RESET ----

// The password check, in time independent of where the two differ: every
// byte of the longer is looked at, and nothing returns early, so how long
// a wrong guess takes tells nothing of how much of it was right.
bool same_password(std::string_view given, std::string_view expected)
{
    const std::size_t length = std::max(given.size(), expected.size());
    unsigned difference = given.size() == expected.size() ? 0U : 1U;
    for (std::size_t i = 0; i < length; ++i) {
        const unsigned char a = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
        const unsigned char b = i < expected.size() ? static_cast<unsigned char>(expected[i]) : 0;
        difference |= static_cast<unsigned>(a ^ b);
    }
    return difference == 0;
}

const std::string_view wrong_password = "WRONGPASS invalid username-password pair or user is disabled.";

// Redis's ACLAuthenticateUser for kv's one user, "default": with no
// password asked (a Unix socket) it has nopass, and any password is right
// for it; else only the socket's password is. Success authenticates the
// session; a failure leaves it as it was (an authenticated client stays so).
bool authenticate(const Call& call, std::string_view user, std::string_view password)
{
    if (user != "default")
        return false;
    if (call.server.password && !same_password(password, *call.server.password))
        return false;
    call.session.authenticated = true;
    return true;
}

// AUTH [username] password: Redis 7.0's authCommand, texts and all.
void auth(const Call& call)
{
    const auto& request = call.request;
    if (request.size() > 3) {
        call.error("ERR syntax error");
        return;
    }
    if (request.size() == 2 && !call.server.password) {
        call.error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?");
        return;
    }
    const bool ok = request.size() == 2 ? authenticate(call, "default", request[1]) : authenticate(call, request[1], request[2]);
    if (ok)
        resp::append_simple(call.out, "OK");
    else
        call.error(wrong_password);
}

// HELLO [protover [AUTH username password] [SETNAME clientname]]
void hello(const Call& call)
{
    const auto& request = call.request;
    long long version = 0;
    std::size_t next = 1;
    if (request.size() >= 2) {
        if (!parse_long_long(request[next++], version)) {
            call.error("ERR Protocol version is not an integer or out of range");
            return;
        }
        if (version < 2 || version > 3) {
            call.error("NOPROTO unsupported protocol version");
            return;
        }
    }
    // As Redis 7.0's helloCommand: each option takes effect as it is read
    // (an AUTH authenticates at once, a SETNAME names the client even if
    // HELLO then fails), and only an authenticated client gets the reply
    // and its protocol.
    for (std::size_t j = next; j < request.size(); ++j) {
        const std::size_t more = request.size() - 1 - j;
        if (same_word(request[j], "AUTH") && more >= 2) {
            if (!authenticate(call, request[j + 1], request[j + 2])) {
                call.error(wrong_password);
                return;
            }
            j += 2;
        } else if (same_word(request[j], "SETNAME") && more >= 1) {
            if (!valid_client_attribute(request[j + 1])) {
                call.error("ERR Client names cannot contain spaces, newlines or special characters.");
                return;
            }
            call.session.name = request[j + 1];
            ++j;
        } else {
            call.error("ERR Syntax error in HELLO option '" + redis_error_piece(request[j]) + "'");
            return;
        }
    }
    if (!call.session.authenticated) {
        call.error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option "
                   "can be used to authenticate the client and select the RESP protocol version at the same time");
        return;
    }
    if (version != 0)
        call.session.protocol = static_cast<Protocol>(version);
    std::string& out = call.out;
    resp::append_map_header(out, 7, call.protocol());
    resp::append_bulk(out, "server");
    resp::append_bulk(out, "redis");
    resp::append_bulk(out, "version");
    resp::append_bulk(out, redis_version);
    resp::append_bulk(out, "proto");
    resp::append_integer(out, static_cast<int>(call.protocol()));
    resp::append_bulk(out, "id");
    resp::append_integer(out, static_cast<long long>(call.session.id()));
    resp::append_bulk(out, "mode");
    resp::append_bulk(out, "standalone");
    resp::append_bulk(out, "role");
    resp::append_bulk(out, "master");
    resp::append_bulk(out, "modules");
    resp::append_array_header(out, 0);
}

// SELECT index: a bucket has one keyspace, db 0.
void select(const Call& call)
{
    long long index = 0;
    if (!parse_long_long(call.request[1], index) || index < INT32_MIN || index > INT32_MAX) {
        call.error(not_an_integer);
        return;
    }
    if (index != 0) {
        call.error("ERR DB index is out of range");
        return;
    }
    call.session.db = 0;
    resp::append_simple(call.out, "OK");
}

void echo(const Call& call) { resp::append_bulk(call.out, call.request[1]); }

// QUIT: +OK, and the connection closes once that is written.
void quit(const Call& call)
{
    resp::append_simple(call.out, "OK");
    call.session.close_after_reply = true;
}

void end_transaction(ServerShared& server, Session& session);

void reset(const Call& call)
{
    end_transaction(call.server, call.session);
    call.session.reset();
    call.session.authenticated = !call.server.password; // as Redis: RESET logs out where a password is asked
    resp::append_simple(call.out, "RESET");
}

// ---- CLIENT ----

// One line of CLIENT LIST / CLIENT INFO, in Redis 7.0's field order
// (catClientInfoString), with 7.2's lib-name and lib-ver at its end. Figures
// about Redis's own buffers are kv's nearest truth: qbuf is the input not yet
// run, omem the replies not yet taken, rbs the read buffer.
void append_client_line(std::string& out, const ServerShared& server, const RespConnection& connection,
    Session::Clock::time_point now)
{
    const Session& session = connection.session();
    const auto seconds = [now](Session::Clock::time_point since) {
        return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(now - since).count());
    };
    const bool in_multi = session.transaction.active;
    const std::size_t qbuf = connection.unparsed_bytes();
    const std::size_t omem = connection.unsent_bytes();
    const std::size_t read_buffer = 16 * 1024;
    out += "id=" + std::to_string(session.id());
    out += " addr=" + connection.peer_address();
    out += " laddr=" + connection.local_address();
    out += " fd=" + std::to_string(session.fd());
    out += " name=" + session.name;
    out += " age=" + seconds(session.created());
    out += " idle=" + seconds(session.last_interaction());
    out += in_multi ? " flags=xU" : " flags=U";
    out += " db=" + std::to_string(session.db);
    out += " sub=0 psub=0 ssub=0";
    out += " multi=" + std::to_string(in_multi ? static_cast<long long>(session.transaction.queued.size()) : -1LL);
    out += " qbuf=" + std::to_string(qbuf);
    out += " qbuf-free=0";
    out += " argv-mem=0";
    out += " multi-mem=" + std::to_string(session.transaction.queued_bytes);
    out += " rbs=" + std::to_string(read_buffer);
    out += " rbp=0 obl=0 oll=0";
    out += " omem=" + std::to_string(omem);
    out += " tot-mem=" + std::to_string(qbuf + omem + read_buffer + session.transaction.queued_bytes);
    out += " events=r";
    out += " cmd=";
    out += session.last_command();
    out += " user=default redir=-1";
    out += " resp=" + std::to_string(static_cast<int>(session.protocol));
    out += " lib-name=" + session.lib_name;
    out += " lib-ver=" + session.lib_version;
    out += '\n';
}

const RespConnection* connection_of(const ServerShared& server, std::uint64_t id)
{
    auto found = server.role.clients->find(id);
    if (found == server.role.clients->end())
        return nullptr;
    return found->second.lock().get(); // the server's list holds only open connections, each owned elsewhere
}

void client_id(const Call& call) { resp::append_integer(call.out, static_cast<long long>(call.session.id())); }

void client_info(const Call& call)
{
    std::string text;
    if (const RespConnection* self = connection_of(call.server, call.session.id()))
        append_client_line(text, call.server, *self, Session::Clock::now());
    resp::append_verbatim(call.out, text, call.protocol());
}

// CLIENT LIST [TYPE NORMAL|MASTER|REPLICA|PUBSUB] [ID id [id ...]]
void client_list(const Call& call)
{
    const auto& request = call.request;
    std::vector<std::uint64_t> ids;
    bool only_ids = false;
    bool none = false; // TYPE master, replica or pubsub: kv has no such clients
    if (request.size() == 4 && same_word(request[2], "TYPE")) {
        const std::string& type = request[3];
        if (same_word(type, "NORMAL")) {
        } else if (same_word(type, "MASTER") || same_word(type, "REPLICA") || same_word(type, "SLAVE")
            || same_word(type, "PUBSUB")) {
            none = true;
        } else {
            call.error("ERR Unknown client type '" + redis_error_piece(type) + "'");
            return;
        }
    } else if (request.size() > 3 && same_word(request[2], "ID")) {
        only_ids = true;
        for (std::size_t j = 3; j < request.size(); ++j) {
            long long id = 0;
            if (!parse_long_long(request[j], id)) {
                call.error("ERR Invalid client ID");
                return;
            }
            if (id >= 1) // as in Redis, 0 and below are integers that name no client
                ids.push_back(static_cast<std::uint64_t>(id));
        }
    } else if (request.size() != 2) {
        call.error("ERR syntax error");
        return;
    }
    std::string text;
    const auto now = Session::Clock::now();
    if (only_ids) {
        for (std::uint64_t id : ids) {
            if (const RespConnection* connection = connection_of(call.server, id))
                append_client_line(text, call.server, *connection, now);
        }
    } else if (!none) {
        // In id order, as Redis lists its clients in the order they came.
        std::vector<std::uint64_t> open;
        for (const auto& [id, connection] : *call.server.role.clients)
            open.push_back(id);
        std::sort(open.begin(), open.end());
        for (std::uint64_t id : open) {
            if (const RespConnection* connection = connection_of(call.server, id))
                append_client_line(text, call.server, *connection, now);
        }
    }
    resp::append_verbatim(call.out, text, call.protocol());
}

void client_setname(const Call& call)
{
    if (!valid_client_attribute(call.request[2])) {
        call.error("ERR Client names cannot contain spaces, newlines or special characters.");
        return;
    }
    call.session.name = call.request[2];
    resp::append_simple(call.out, "OK");
}

void client_getname(const Call& call)
{
    if (call.session.name.empty())
        resp::append_null(call.out, call.protocol());
    else
        resp::append_bulk(call.out, call.session.name);
}

// CLIENT SETINFO LIB-NAME|LIB-VER value: Redis 7.2's, which client libraries
// send at connect (and ignore an error from, for older servers).
void client_setinfo(const Call& call)
{
    const std::string& attribute = call.request[2];
    std::string* destination = nullptr;
    if (same_word(attribute, "LIB-NAME"))
        destination = &call.session.lib_name;
    else if (same_word(attribute, "LIB-VER"))
        destination = &call.session.lib_version;
    else {
        call.error("ERR Unrecognized option '" + redis_error_piece(attribute) + "'");
        return;
    }
    if (!valid_client_attribute(call.request[3])) {
        call.error("ERR " + redis_error_piece(attribute) + " cannot contain spaces, newlines or special characters.");
        return;
    }
    *destination = call.request[3];
    resp::append_simple(call.out, "OK");
}

void client_help(const Call& call)
{
    reply_help(call, {
        "GETNAME",
        "    Return the name of the current connection.",
        "ID",
        "    Return the ID of the current connection.",
        "INFO",
        "    Return information about the current client connection.",
        "LIST [options ...]",
        "    Return information about client connections. Options:",
        "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
        "      Return clients of specified type.",
        "    * ID <id> [<id> ...]",
        "      Return clients with the given ids.",
        "SETINFO <LIB-NAME|LIB-VER> <value>",
        "    Set the name or version of the client library.",
        "SETNAME <name>",
        "    Assign the name <name> to the current connection.",
    });
}

const Subcommand client_subcommands[] = {
    { "ID", 2, client_id },
    { "INFO", 2, client_info },
    { "LIST", -2, client_list },
    { "SETNAME", 3, client_setname },
    { "GETNAME", 2, client_getname },
    { "SETINFO", 4, client_setinfo },
    { "HELP", 2, client_help },
};

void client(const Call& call) { run_subcommand(call, client_subcommands); }

// ---- COMMAND ----

void for_each_command(const ServerShared& server, const std::function<void(const CommandInfo&)>& visit);

void append_words_as_set(std::string& out, std::string_view words, Protocol protocol)
{
    std::vector<std::string_view> items;
    while (!words.empty()) {
        auto space = words.find(' ');
        if (space != 0)
            items.push_back(words.substr(0, space));
        if (space == std::string_view::npos)
            break;
        words.remove_prefix(space + 1);
    }
    resp::append_set_header(out, items.size(), protocol);
    for (std::string_view item : items)
        resp::append_simple(out, item);
}

// One command's COMMAND INFO entry (addReplyCommandInfo): name, arity,
// flags, first key, last key, step, ACL categories, tips, key
// specifications, subcommands. kv gives no tips, key specifications or
// subcommands.
void append_command_info(std::string& out, const CommandInfo& info, Protocol protocol)
{
    resp::append_array_header(out, 10);
    resp::append_bulk(out, lower(info.name));
    resp::append_integer(out, info.arity);
    append_words_as_set(out, info.doc.flags, protocol);
    resp::append_integer(out, info.doc.first_key);
    resp::append_integer(out, info.doc.last_key);
    resp::append_integer(out, info.doc.step);
    append_words_as_set(out, info.doc.categories, protocol);
    resp::append_set_header(out, 0, protocol);
    resp::append_array_header(out, 0);
    resp::append_array_header(out, 0);
}

// One command's COMMAND DOCS entry (addReplyCommandDocs): summary, since,
// group; kv lists no arguments.
void append_command_docs(std::string& out, const CommandInfo& info, Protocol protocol)
{
    resp::append_bulk(out, lower(info.name));
    resp::append_map_header(out, 3, protocol);
    resp::append_bulk(out, "summary");
    resp::append_bulk(out, info.doc.summary);
    resp::append_bulk(out, "since");
    resp::append_bulk(out, info.doc.since);
    resp::append_bulk(out, "group");
    resp::append_bulk(out, info.doc.group.empty() ? std::string_view("server") : info.doc.group);
}

// A copy: for_each_command() hands out the connection commands' entries as
// temporaries.
std::optional<CommandInfo> find_info(const ServerShared& server, std::string_view name)
{
    std::optional<CommandInfo> found;
    for_each_command(server, [&](const CommandInfo& info) {
        if (!found && same_word(info.name, name))
            found = info;
    });
    return found;
}

std::size_t command_count(const ServerShared& server)
{
    std::size_t count = 0;
    for_each_command(server, [&](const CommandInfo&) { ++count; });
    return count;
}

void command_list_all(const Call& call)
{
    resp::append_array_header(call.out, command_count(call.server));
    for_each_command(call.server, [&](const CommandInfo& info) { append_command_info(call.out, info, call.protocol()); });
}

void command_count_reply(const Call& call) { resp::append_integer(call.out, static_cast<long long>(command_count(call.server))); }

void command_info(const Call& call)
{
    if (call.request.size() == 2) {
        command_list_all(call);
        return;
    }
    resp::append_array_header(call.out, call.request.size() - 2);
    for (std::size_t j = 2; j < call.request.size(); ++j) {
        if (const auto info = find_info(call.server, call.request[j]))
            append_command_info(call.out, *info, call.protocol());
        else
            resp::append_null(call.out, call.protocol());
    }
}

void command_docs(const Call& call)
{
    std::string body;
    std::size_t count = 0;
    if (call.request.size() == 2) {
        for_each_command(call.server, [&](const CommandInfo& info) {
            append_command_docs(body, info, call.protocol());
            ++count;
        });
    } else {
        for (std::size_t j = 2; j < call.request.size(); ++j) {
            if (const auto info = find_info(call.server, call.request[j])) {
                append_command_docs(body, *info, call.protocol());
                ++count;
            }
        }
    }
    resp::append_map_header(call.out, count, call.protocol());
    call.out += body;
}

void command_help(const Call& call)
{
    reply_help(call, {
        "(no subcommand)",
        "    Return details about all commands.",
        "COUNT",
        "    Return the total number of commands in this server.",
        "DOCS [<command-name> ...]",
        "    Return documentation details about multiple commands.",
        "    If no command names are given, documentation details for all",
        "    commands are returned.",
        "INFO [<command-name> ...]",
        "    Return details about multiple commands.",
        "    If no command names are given, documentation details for all",
        "    commands are returned.",
    });
}

const Subcommand command_subcommands[] = {
    { "COUNT", 2, command_count_reply },
    { "INFO", -2, command_info },
    { "DOCS", -2, command_docs },
    { "HELP", 2, command_help },
};

void command(const Call& call)
{
    if (call.request.size() == 1)
        command_list_all(call);
    else
        run_subcommand(call, command_subcommands);
}

// ---- INFO ----

// bytesToHuman: 1023B, 1.00K, 2.50M, ...
std::string bytes_to_human(unsigned long long bytes)
{
    char text[64];
    const double value = static_cast<double>(bytes);
    if (bytes < 1024)
        std::snprintf(text, sizeof text, "%lluB", bytes);
    else if (bytes < 1024ULL * 1024)
        std::snprintf(text, sizeof text, "%.2fK", value / 1024);
    else if (bytes < 1024ULL * 1024 * 1024)
        std::snprintf(text, sizeof text, "%.2fM", value / (1024.0 * 1024));
    else
        std::snprintf(text, sizeof text, "%.2fG", value / (1024.0 * 1024 * 1024));
    return text;
}

// The process's resident memory, from /proc/self/statm (its second field, in
// pages); 0 if it cannot be read. Read with read(2), not a stream: a stream
// would link the C++ locale into bucketd (server_config.cpp says why not).
unsigned long long resident_bytes()
{
    int error = 0;
    const auto text = read_small_file("/proc/self/statm", 128, error);
    if (!text)
        return 0;
    const std::string_view fields(*text);
    const std::size_t second = fields.find(' ');
    unsigned long long resident = 0;
    if (second == std::string_view::npos
        || std::from_chars(fields.data() + second + 1, fields.data() + fields.size(), resident).ec != std::errc())
        return 0;
    return resident * static_cast<unsigned long long>(::sysconf(_SC_PAGESIZE));
}

void line(std::string& out, std::string_view field, std::string_view value)
{
    out += field;
    out += ':';
    out += value;
    out += "\r\n";
}

void line(std::string& out, std::string_view field, unsigned long long value) { line(out, field, std::to_string(value)); }

void info_server(std::string& out, const ServerShared& server)
{
    static const utsname name = [] {
        utsname result {};
        ::uname(&result);
        return result;
    }();
    const auto uptime = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - server.started).count();
    out += "# Server\r\n";
    line(out, "redis_version", redis_version);
    line(out, "redis_mode", "standalone");
    line(out, "kv_version", KV_VERSION);
    line(out, "os", std::string(name.sysname) + " " + name.release + " " + name.machine);
    line(out, "arch_bits", sizeof(void*) * 8);
    line(out, "multiplexing_api", "epoll");
    line(out, "process_id", static_cast<unsigned long long>(::getpid()));
    line(out, "tcp_port", static_cast<unsigned long long>(server.role.tcp_port));
    line(out, "uptime_in_seconds", static_cast<unsigned long long>(uptime));
    line(out, "uptime_in_days", static_cast<unsigned long long>(uptime / (3600 * 24)));
}

void info_clients(std::string& out, const ServerShared& server)
{
    out += "# Clients\r\n";
    line(out, "connected_clients", server.role.clients->size()); // over every socket of the daemon
    line(out, "maxclients", server.config.max_connections);
    line(out, "blocked_clients", 0ULL);
    // Redis 7.4's: connections with a WATCH in place, and keys watched by any.
    if (const KeyWatchers* watchers = server.role.watchers) {
        unsigned long long watching = 0;
        for (const auto& [id, weak] : *server.role.clients) {
            if (const auto connection = weak.lock(); connection && !connection->session().transaction.watched.empty())
                ++watching;
        }
        line(out, "watching_clients", watching);
        line(out, "total_watched_keys", watchers->watched_keys());
    }
}

// used_memory is the process's resident memory (RSS): a bucket's keys live
// in its shared-memory segment, whose touched pages count there once mapped.
void info_memory(std::string& out, const ServerShared&)
{
    const auto rss = resident_bytes();
    out += "# Memory\r\n";
    line(out, "used_memory", rss);
    line(out, "used_memory_human", bytes_to_human(rss));
    line(out, "used_memory_rss", rss);
    line(out, "used_memory_rss_human", bytes_to_human(rss));
}

// Nothing is persisted, nothing is ever loaded.
void info_persistence(std::string& out, const ServerShared&)
{
    out += "# Persistence\r\n";
    line(out, "loading", 0ULL);
    line(out, "async_loading", 0ULL);
    line(out, "rdb_changes_since_last_save", 0ULL);
    line(out, "rdb_bgsave_in_progress", 0ULL);
    line(out, "rdb_last_bgsave_status", "ok");
    line(out, "aof_enabled", 0ULL);
    line(out, "aof_rewrite_in_progress", 0ULL);
}

void info_stats(std::string& out, const ServerShared& server)
{
    out += "# Stats\r\n";
    line(out, "total_connections_received", server.connections_received);
    line(out, "total_commands_processed", server.commands_processed);
    line(out, "expired_keys", static_cast<unsigned long long>(server.role.expired_count ? server.role.expired_count() : 0));
}

void info_replication(std::string& out, const ServerShared&)
{
    out += "# Replication\r\n";
    line(out, "role", "master");
    line(out, "connected_slaves", 0ULL);
}

void info_keyspace(std::string& out, const ServerShared& server)
{
    out += "# Keyspace\r\n";
    const std::size_t keys = server.role.key_count ? server.role.key_count() : 0;
    if (keys > 0)
        out += "db0:keys=" + std::to_string(keys) + ",expires="
            + std::to_string(server.role.expiring_count ? server.role.expiring_count() : 0) + ",avg_ttl=0\r\n";
}

struct InfoSection {
    std::string_view name;
    void (*write)(std::string&, const ServerShared&);
};

// In Redis's order; all of them are in its default set.
const InfoSection info_sections[] = {
    { "server", info_server },
    { "clients", info_clients },
    { "memory", info_memory },
    { "persistence", info_persistence },
    { "stats", info_stats },
    { "replication", info_replication },
    { "keyspace", info_keyspace },
};

// INFO [section ...]: Redis's text; "default", "all" and "everything" (or
// none) give every section; a section kv does not have gives nothing.
void info(const Call& call)
{
    const auto& request = call.request;
    bool all = request.size() == 1;
    auto wanted = [&](std::string_view name) {
        if (all)
            return true;
        for (std::size_t j = 1; j < request.size(); ++j) {
            if (same_word(request[j], name) || same_word(request[j], "default") || same_word(request[j], "all")
                || same_word(request[j], "everything"))
                return true;
        }
        return false;
    };
    std::string text;
    int sections = 0;
    for (const InfoSection& section : info_sections) {
        if (!wanted(section.name))
            continue;
        if (sections++)
            text += "\r\n";
        section.write(text, call.server);
    }
    const ServerRole& role = call.server.role;
    if (!role.extra_section.empty() && role.extra_section_lines && wanted(role.extra_section)) {
        if (sections++)
            text += "\r\n";
        text += "# ";
        text += role.extra_section;
        text += "\r\n";
        role.extra_section_lines(text);
    }
    resp::append_verbatim(call.out, text, call.protocol());
}

// ---- MULTI, EXEC, DISCARD, WATCH, UNWATCH (Redis's multi.c) ----

// Redis's discardTransaction: out of the block, its flags cleared, no key
// watched any more (EXEC, DISCARD, RESET).
void end_transaction(ServerShared& server, Session& session)
{
    session.transaction.clear();
    if (server.role.watchers)
        server.role.watchers->unwatch_all(session);
}

void multi(const Call& call)
{
    if (call.session.transaction.active) {
        call.error("ERR MULTI calls can not be nested"); // the block goes on, unflagged, as in Redis
        return;
    }
    call.session.transaction.active = true;
    resp::append_simple(call.out, "OK");
}

// One queued request, run as if it had come alone: a connection command,
// else the daemon's handler, which must answer at once (a bucket's always
// does). Its reply, an error included, is one element of EXEC's array.
void run_queued(ServerShared& server, Session& session, resp::Request& request, std::string& out)
{
    const std::size_t before = out.size();
    try {
        if (run_connection_command(server, session, request, out))
            return;
        ReplySink sink(out, session, {}, session.id(), 0);
        server.handler(request, sink);
        if (sink.deferred()) {
            out.resize(before);
            append_error(out, ErrorCode::error, upper(request[0]) + " cannot answer inside a transaction");
        }
    } catch (const std::exception& error) {
        // As RespConnection's catch-all: this command's reply is an error,
        // the rest of the transaction still runs.
        out.resize(before);
        append_error(out, ErrorCode::error, std::string("internal error: ") + error.what());
    }
}

void exec(const Call& call)
{
    Transaction& transaction = call.session.transaction;
    if (!transaction.active) {
        call.error("ERR EXEC without MULTI");
        return;
    }
    if (transaction.queued_command_malformed) {
        end_transaction(call.server, call.session);
        call.error("EXECABORT Transaction discarded because of previous errors.");
        return;
    }
    // A watched key that has expired since WATCH is a change (Redis's isWatchedKeyExpired).
    if (!transaction.watched_key_changed && call.server.role.watchers)
        call.server.role.watchers->expire_watched(call.session);
    if (transaction.watched_key_changed) {
        end_transaction(call.server, call.session);
        resp::append_null_array(call.out, call.protocol());
        return;
    }
    // Out of the block and unwatched before the body runs (as Redis): the
    // body's own writes mark other sessions, never this one.
    std::vector<resp::Request> body = std::move(transaction.queued);
    end_transaction(call.server, call.session);
    resp::append_array_header(call.out, body.size());
    auto run_body = [&] {
        for (resp::Request& request : body)
            run_queued(call.server, call.session, request, call.out);
    };
    if (call.server.role.run_atomically)
        call.server.role.run_atomically(run_body);
    else
        run_body();
}

void discard(const Call& call)
{
    if (!call.session.transaction.active) {
        call.error("ERR DISCARD without MULTI");
        return;
    }
    end_transaction(call.server, call.session);
    resp::append_simple(call.out, "OK");
}

// WATCH key [key ...]
void watch(const Call& call)
{
    if (call.session.transaction.active) {
        call.error("ERR WATCH inside MULTI is not allowed");
        return;
    }
    // Once a watched key changed, EXEC fails anyway: nothing more to watch.
    if (!call.session.transaction.watched_key_changed && call.server.role.watchers) {
        for (std::size_t j = 1; j < call.request.size(); ++j)
            call.server.role.watchers->watch(call.session, call.request[j]);
    }
    resp::append_simple(call.out, "OK");
}

void unwatch(const Call& call)
{
    if (call.server.role.watchers)
        call.server.role.watchers->unwatch_all(call.session);
    call.session.transaction.watched_key_changed = false;
    resp::append_simple(call.out, "OK");
}

// The connection commands, with what COMMAND tells of them.
const ConnectionCommand connection_commands[] = {
    { "AUTH", -2, auth, 0,
        { "noscript loading stale fast no_auth allow_busy", 0, 0, 0, "Authenticate to the server", "connection", "@fast @connection", "1.0.0" } },
    { "HELLO", -1, hello, 0,
        { "noscript loading stale fast no_auth allow_busy", 0, 0, 0, "Handshake with Redis", "connection", "@fast @connection", "6.0.0" } },
    { "CLIENT", -2, client, 0, { "", 0, 0, 0, "A container for client connection commands", "connection", "@slow", "2.4.0" } },
    { "SELECT", 2, select, 0,
        { "loading stale fast", 0, 0, 0, "Change the selected database for the current connection", "connection", "@fast @connection", "1.0.0" } },
    { "QUIT", -1, quit, 0,
        { "noscript loading stale fast no_auth allow_busy", 0, 0, 0, "Close the connection", "connection", "@fast @connection", "1.0.0" } },
    { "RESET", 1, reset, 0,
        { "noscript loading stale fast no_auth allow_busy", 0, 0, 0, "Reset the connection", "connection", "@fast @connection", "6.2.0" } },
    { "ECHO", 2, echo, 0, { "loading stale fast", 0, 0, 0, "Echo the given string", "connection", "@fast @connection", "1.0.0" } },
    { "COMMAND", -1, command, 0,
        { "loading stale", 0, 0, 0, "Get array of Redis command details", "server", "@slow @connection", "2.8.13" } },
    { "INFO", -1, info, 0,
        { "loading stale", 0, 0, 0, "Get information and statistics about the server", "server", "@slow @dangerous", "1.0.0" } },
    { "MULTI", 1, multi, 0,
        { "noscript loading stale fast allow_busy", 0, 0, 0, "Mark the start of a transaction block", "transactions", "@fast @transaction", "1.2.0" } },
    { "EXEC", 1, exec, 0,
        { "noscript loading stale skip_slowlog", 0, 0, 0, "Execute all commands issued after MULTI", "transactions", "@slow @transaction", "1.2.0" } },
    { "DISCARD", 1, discard, 0,
        { "noscript loading stale fast allow_busy", 0, 0, 0, "Discard all commands issued after MULTI", "transactions", "@fast @transaction", "2.0.0" } },
    { "WATCH", -2, watch, 0,
        { "noscript loading stale fast allow_busy", 1, -1, 1, "Monitor changes to keys to determine execution of a MULTI/EXEC block", "transactions", "@fast @transaction", "2.2.0" } },
    { "UNWATCH", 1, unwatch, 0,
        { "noscript loading stale fast allow_busy", 0, 0, 0, "Forget about all watched keys", "transactions", "@fast @transaction", "2.2.0" } },
};

// The connection commands this server serves: MULTI, EXEC and DISCARD only
// where the daemon takes part in transactions, WATCH and UNWATCH only where
// it runs them.
bool serves(const ServerShared& server, const ConnectionCommand& command)
{
    if (command.run == watch || command.run == unwatch)
        return server.role.transactions == Transactions::queued;
    if (command.run == multi || command.run == exec || command.run == discard)
        return server.role.transactions != Transactions::unsupported;
    return true;
}

const ConnectionCommand* find_connection_command(const ServerShared& server, std::string_view verb)
{
    const ConnectionCommand* command = VerbIndex<connection_commands>::find(verb);
    return command && serves(server, *command) ? command : nullptr;
}

void for_each_command(const ServerShared& server, const std::function<void(const CommandInfo&)>& visit)
{
    for (const ConnectionCommand& command : connection_commands) {
        if (serves(server, command))
            visit(CommandInfo { command.name, command.arity, command.max_arity, command.doc });
    }
    for (const CommandInfo& info : server.role.commands)
        visit(info);
}

// Commands that run even inside MULTI, as in Redis (processCommand): the
// ones that end or leave the block, and MULTI and WATCH themselves (to say
// they are not allowed there).
bool runs_inside_multi(const ServerShared& server, std::string_view verb)
{
    static constexpr std::string_view always[] = { "EXEC", "DISCARD", "MULTI", "QUIT", "RESET" }; // no strlen per call
    for (std::string_view name : always) {
        if (same_word(name, verb))
            return true;
    }
    return server.role.transactions == Transactions::queued && same_word(verb, "WATCH");
}

// The subcommand tables of the container commands, for the checks at queue time.
template <std::size_t N>
bool subcommand_accepts(const Subcommand (&subcommands)[N], const resp::Request& request, std::string& out)
{
    for (const Subcommand& subcommand : subcommands) {
        if (!same_word(subcommand.name, request[1]))
            continue;
        if (arity_accepts(subcommand.arity, 0, request.size()))
            return true;
        resp::append_error(out, "ERR wrong number of arguments for '" + lower(request[0]) + "|" + lower(subcommand.name) + "' command");
        return false;
    }
    resp::append_error(out, "ERR unknown subcommand '" + redis_error_piece(request[1], 128) + "'. Try " + upper(request[0]) + " HELP.");
    return false;
}

// What Redis checks before it queues a command (processCommand): that it
// exists, its arity, and a container command's subcommand and its arity.
// False, with Redis's error in `out`, if the command cannot be queued.
bool queueable(const ServerShared& server, const resp::Request& request, std::string& out)
{
    const auto info = find_info(server, request[0]);
    if (!info) {
        append_error(out, ErrorCode::error, unknown_command_text(request)); // unknown here, whatever the table holds
        return false;
    }
    if (!arity_accepts(info->arity, info->max_arity, request.size())) {
        append_error(out, ErrorCode::error, "wrong number of arguments for '" + lower(info->name) + "' command");
        return false;
    }
    if (request.size() >= 2 && same_word(request[0], "CLIENT"))
        return subcommand_accepts(client_subcommands, request, out);
    if (request.size() >= 2 && same_word(request[0], "COMMAND"))
        return subcommand_accepts(command_subcommands, request, out);
    if (request.size() >= 2 && !info->doc.subcommands.empty())
        return find_subcommand(info->doc.subcommands, request, out) != nullptr; // the daemon's own (MEMORY)
    return true;
}

// Inside MULTI on a daemon that refuses transactions: nothing runs, each
// command gets an error (Redis's own for an unknown verb, a wrong arity or a
// bad subcommand), and the block is flagged so that EXEC answers EXECABORT.
void refuse_inside_multi(const ServerShared& server, Session& session, const resp::Request& request, std::string& out)
{
    session.transaction.queued_command_malformed = true;
    // Redis's checks at queue time first, each with Redis's own error: a
    // command unknown here (even one the table has, as WATCH on a daemon
    // that does not serve it), a wrong arity, a bad subcommand.
    if (!queueable(server, request, out))
        return;
    append_error(out, ErrorCode::error, upper(find_info(server, request[0])->name) + " inside MULTI: the "
        + std::string(server.role.name) + " does not run transactions; nothing in this block will run");
}

// What a queued request holds in memory, its arguments' bytes and their
// strings' own size: what the queue limit counts (CLIENT LIST's multi-mem).
std::size_t queued_cost(const resp::Request& request)
{
    std::size_t bytes = sizeof(resp::Request);
    for (const std::string& argument : request)
        bytes += sizeof(std::string) + argument.size();
    return bytes;
}

// Inside MULTI on a daemon that queues: Redis's checks, then +QUEUED. A
// command that fails them is answered with its error and flags the block
// (EXEC answers EXECABORT). The queue is bounded by the client buffer limit:
// a command that would take it past that is refused and flags the block, so
// an endless MULTI cannot pin unbounded memory. As in Redis, a block already
// bound to fail stores nothing more, yet answers +QUEUED.
void queue_inside_multi(const ServerShared& server, Session& session, const resp::Request& request, std::string& out)
{
    Transaction& transaction = session.transaction;
    if (!queueable(server, request, out)) {
        transaction.queued_command_malformed = true;
        return;
    }
    if (!transaction.queued_command_malformed && !transaction.watched_key_changed) {
        const std::size_t cost = queued_cost(request);
        const std::size_t limit = server.config.max_client_buffer;
        if (transaction.queued_bytes + cost > limit) {
            transaction.queued_command_malformed = true;
            transaction.queued.clear();
            transaction.queued_bytes = 0;
            append_error(out, ErrorCode::error, "transaction too large: its queued commands would take more than the client buffer limit of "
                + std::to_string(limit) + " bytes; EXEC will discard it");
            return;
        }
        transaction.queued.push_back(request);
        transaction.queued_bytes += cost;
    }
    resp::append_simple(out, "QUEUED");
}


// Redis's processCommand with requirepass: a command that exists and has
// the right arity, other than the four a client may send first, is refused
// until the client authenticates (an unknown command or a wrong arity gets
// its usual error, as in Redis).
bool refused_before_auth(const ServerShared& server, const resp::Request& request, std::string& out)
{
    static constexpr std::string_view first[] = { "AUTH", "HELLO", "QUIT", "RESET" }; // no strlen per call
    for (std::string_view name : first) {
        if (same_word(name, request[0]))
            return false;
    }
    const auto info = find_info(server, request[0]);
    if (!info || !arity_accepts(info->arity, info->max_arity, request.size()))
        return false;
    // Redis's rejectCommand: on EXEC itself the refusal is said after
    // EXECABORT, as for any reason EXEC cannot run.
    if (same_word(request[0], "EXEC"))
        resp::append_error(out, "EXECABORT Transaction discarded because of: NOAUTH Authentication required.");
    else
        resp::append_error(out, "NOAUTH Authentication required.");
    return true;
}

} // namespace

void forget_session(ServerShared& server, Session& session)
{
    if (server.role.watchers)
        server.role.watchers->unwatch_all(session);
}

bool run_connection_command(ServerShared& server, Session& session, const resp::Request& request, std::string& out)
{
    if (request.empty())
        return false;
    if (!session.authenticated && refused_before_auth(server, request, out))
        return true;
    if (session.transaction.active && !runs_inside_multi(server, request[0])) {
        if (server.role.transactions == Transactions::refused) {
            refuse_inside_multi(server, session, request, out);
            return true;
        }
        if (server.role.transactions == Transactions::queued) {
            queue_inside_multi(server, session, request, out);
            return true;
        }
    }
    const ConnectionCommand* command = find_connection_command(server, request[0]);
    if (!command)
        return false;
    if (!arity_accepts(command->arity, command->max_arity, request.size())) {
        const std::string error = "wrong number of arguments for '" + lower(command->name) + "' command";
        if (command->run == exec) {
            // Redis's rejectCommand on EXEC itself: the transaction is
            // discarded (if any), and the reason said after EXECABORT.
            end_transaction(server, session);
            resp::append_error(out, "EXECABORT Transaction discarded because of: " + error);
            return true;
        }
        if (session.transaction.active)
            session.transaction.queued_command_malformed = true; // MULTI x, DISCARD x, WATCH: the block fails
        resp::append_error(out, "ERR " + error);
        return true;
    }
    command->run(Call { server, session, request, out });
    return true;
}

} // namespace kv
