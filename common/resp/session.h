// Session: what a server knows of one client connection beyond its bytes,
// as Redis's `client` struct holds it: its id, the protocol it speaks (RESP2
// until HELLO 3), its name and library (CLIENT SETNAME, CLIENT SETINFO), when
// it came and last spoke, its last command, its database (always 0) and its
// transaction state. RespConnection holds one; handlers reach it through
// ReplySink::session(); CLIENT LIST enumerates them through ServerShared.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "resp.h"

namespace kv {

// Between MULTI and EXEC or DISCARD (Redis's mstate and its CLIENT_MULTI,
// CLIENT_DIRTY_EXEC and CLIENT_DIRTY_CAS flags, and its watched_keys). Kept
// per connection so that every daemon's dispatch (connection_commands.h) can
// use it: the registry refuses whole blocks with it; buckets queue into
// `queued` and run it at EXEC.
struct Transaction {
    bool active = false;                   // MULTI was sent, EXEC or DISCARD not yet
    std::vector<resp::Request> queued;     // what EXEC would run, in order
    std::size_t queued_bytes = 0;          // their arguments' bytes (CLIENT LIST's multi-mem)
    bool queued_command_malformed = false; // a command in the block was refused: EXEC answers EXECABORT
    bool watched_key_changed = false;      // a WATCHed key changed: EXEC answers a null array
    // The keys this session WATCHes. Only KeyWatchers (key_watchers.h)
    // changes it, since its index points back at the session.
    std::vector<std::string> watched;

    // Back to no transaction (EXEC, DISCARD, RESET); `watched` is left to
    // KeyWatchers::unwatch_all, which they call too.
    void clear();
};

class Session {
public:
    using Clock = std::chrono::steady_clock;

    // `fd` is the connection's socket (CLIENT LIST's fd=); `id` its
    // connection id (CLIENT ID, unique in the process, never reused).
    Session(std::uint64_t id, int fd);

    std::uint64_t id() const { return id_; }
    int fd() const { return fd_; }

    resp::Protocol protocol = resp::Protocol::resp2;
    std::string name;        // CLIENT SETNAME, HELLO SETNAME; empty: none
    std::string lib_name;    // CLIENT SETINFO LIB-NAME
    std::string lib_version; // CLIENT SETINFO LIB-VER
    int db = 0;              // SELECT: a bucket has one keyspace, db 0
    Transaction transaction;
    // AUTH (or HELLO ... AUTH) succeeded, or the socket asks no password
    // (a Unix socket): until then only AUTH, HELLO, QUIT and RESET run
    // (connection_commands.cpp). Set by RespConnection when it starts.
    bool authenticated = true;
    // Set by QUIT: once this request's reply is written, the connection closes.
    bool close_after_reply = false;

    Clock::time_point created() const { return created_; }
    Clock::time_point last_interaction() const { return last_interaction_; }
    // The client sent or was sent something now (CLIENT LIST's idle=).
    void note_interaction(Clock::time_point now) { last_interaction_ = now; }

    // Remembers the request's command for CLIENT LIST's cmd=: its verb in
    // lower case, with "|subcommand" for the container commands (CLIENT,
    // COMMAND, CONFIG), as Redis names them ("client|list"). Copies at most
    // a few bytes into a fixed buffer: no allocation on the request path.
    void note_command(const resp::Request& request);
    // "NULL" before the first command, as Redis prints it.
    std::string_view last_command() const;

    // RESET: the state of a new connection (RESP2, no name, db 0, no
    // transaction); its id and times stay. `authenticated` is the caller's
    // (RESET logs a client out where a password is asked, as Redis does).
    void reset();

private:
    std::uint64_t id_;
    int fd_;
    Clock::time_point created_;
    Clock::time_point last_interaction_;
    std::array<char, 40> last_command_ {};
    std::size_t last_command_size_ = 0;
};

} // namespace kv
