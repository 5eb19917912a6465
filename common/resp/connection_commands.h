// The connection commands: what every kv socket answers the same way, the
// registry's and each bucket's, before the daemon's own table is consulted
// (AUTH, HELLO, CLIENT, SELECT, QUIT, RESET, ECHO, COMMAND, INFO, and MULTI, EXEC,
// DISCARD, WATCH and UNWATCH where the daemon takes part in transactions). Replies and
// error texts are Redis 7.0's (src/networking.c, src/server.c, src/multi.c),
// so client libraries handshake with kv as they do with Redis.
//
// RespConnection calls run_connection_command() for every request; a
// request it does not answer goes to the daemon's handler. So each daemon's
// table stays about its own commands, and what it must tell these commands
// (its table for COMMAND, its key count for INFO) it says in a ServerRole.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "command_table.h"
#include "key_watchers.h"
#include "resp.h"
#include "session.h"

namespace kv {

struct ServerShared;
class RespConnection;

// Every open connection of one daemon, by id, over all the sockets it serves
// (its Unix socket and its --listen-tcp port): Redis's one list of clients,
// which CLIENT LIST and INFO's connected_clients read. Each connection adds
// itself when accepted and removes itself when it closes.
using ClientList = std::unordered_map<std::uint64_t, std::weak_ptr<RespConnection>>;

// What a daemon does with MULTI ... EXEC.
enum class Transactions {
    unsupported, // MULTI, EXEC and DISCARD are the daemon's to answer (unknown commands)
    refused,     // MULTI opens a block in which nothing runs: each command is refused, EXEC answers EXECABORT
    queued,      // Redis's MULTI: commands are checked and queued (+QUEUED), EXEC runs them all
                 // at once (ServerRole::run_atomically), WATCH and UNWATCH are served
};

// What the connection commands know of the daemon behind a socket.
struct ServerRole {
    std::string_view name = "server";  // "bucket", "registry": in messages ("the registry does not run transactions")
    std::vector<CommandInfo> commands; // the daemon's own table (describe_commands), for COMMAND and MULTI's checks
    Transactions transactions = Transactions::unsupported;
    // queued only. The keyspace's watchers (WATCH): outlives the server.
    KeyWatchers* watchers = nullptr;
    // queued only. Runs EXEC's body (every queued command) so that all of
    // its changes are seen together or not at all (a bucket: one batch, one
    // write window of its table); the body itself never throws.
    std::function<void(const std::function<void()>& body)> run_atomically;
    // INFO keyspace: how many keys db 0 holds; none: the daemon holds no keys.
    std::function<std::size_t()> key_count;
    // INFO keyspace's `expires=` (keys with an expiry time) and INFO stats'
    // expired_keys (keys deleted because they expired); none: 0.
    std::function<std::size_t()> expiring_count;
    std::function<std::size_t()> expired_count;
    // INFO: one more section of the daemon's own ("Registry"), its lines
    // appended to `out` ("buckets:3\r\n"). None: no such section.
    std::string extra_section;
    std::function<void(std::string& out)> extra_section_lines;
    // INFO server's tcp_port, as Redis's: the daemon's TCP port
    // (--listen-tcp), 0 if it serves none.
    unsigned tcp_port = 0;
    // The daemon's clients: servers given copies of one role share the list,
    // so a daemon gives all its servers the same role.
    std::shared_ptr<ClientList> clients = std::make_shared<ClientList>();
};

// The Redis release whose replies kv follows: HELLO's and INFO's version,
// so that clients which gate features by server version choose Redis 7.0's.
inline constexpr std::string_view redis_version = "7.0.15";

// If `request` is a connection command (or a command the daemon refuses
// inside MULTI), answers it in `out` in the session's protocol and returns
// true; else returns false and writes nothing. Allocation-free for a request
// it does not answer outside MULTI, which is every data command.
bool run_connection_command(ServerShared& server, Session& session, const resp::Request& request, std::string& out);

// A connection closes: its session stops watching keys (a client that WATCHes
// and hangs up leaves nothing behind).
void forget_session(ServerShared& server, Session& session);

} // namespace kv
