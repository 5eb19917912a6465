// The connection commands: what every kv socket answers the same way, the
// registry's and each bucket's, before the daemon's own table is consulted
// (HELLO, CLIENT, SELECT, QUIT, RESET, ECHO, COMMAND, INFO, and MULTI, EXEC
// and DISCARD where the daemon takes part in transactions). Replies and
// error texts are Redis 7.0's (src/networking.c, src/server.c, src/multi.c),
// so client libraries handshake with kv as they do with Redis.
//
// RespConnection calls run_connection_command() for every request; a
// request it does not answer goes to the daemon's handler. So each daemon's
// table stays about its own commands, and what it must tell these commands
// (its table for COMMAND, its key count for INFO) it says in a ServerRole.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "command_table.h"
#include "resp.h"
#include "session.h"

namespace kv {

struct ServerShared;

// What a daemon does with MULTI ... EXEC.
enum class Transactions {
    unsupported, // MULTI, EXEC and DISCARD are the daemon's to answer (unknown, for now, in a bucket)
    refused,     // MULTI opens a block in which nothing runs: each command is refused, EXEC answers EXECABORT
};

// What the connection commands know of the daemon behind a socket.
struct ServerRole {
    std::string_view name = "server";  // "bucket", "registry": in messages ("the registry does not run transactions")
    std::vector<CommandInfo> commands; // the daemon's own table (describe_commands), for COMMAND and MULTI's checks
    Transactions transactions = Transactions::unsupported;
    // INFO keyspace: how many keys db 0 holds; none: the daemon holds no keys.
    std::function<std::size_t()> key_count;
    // INFO: one more section of the daemon's own ("Registry"), its lines
    // appended to `out` ("buckets:3\r\n"). None: no such section.
    std::string extra_section;
    std::function<void(std::string& out)> extra_section_lines;
};

// The Redis release whose replies kv follows: HELLO's and INFO's version,
// so that clients which gate features by server version choose Redis 7.0's.
inline constexpr std::string_view redis_version = "7.0.15";

// If `request` is a connection command (or a command the daemon refuses
// inside MULTI), answers it in `out` in the session's protocol and returns
// true; else returns false and writes nothing. Allocation-free for a request
// it does not answer outside MULTI, which is every data command.
bool run_connection_command(ServerShared& server, Session& session, const resp::Request& request, std::string& out);

} // namespace kv
