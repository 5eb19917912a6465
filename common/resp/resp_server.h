// RespServer: serves RESP on an already-listening Unix or TCP socket.
//
// It accepts clients, refuses those it may not serve (SO_PEERCRED on a Unix
// socket, the connection limit), makes TCP clients AUTH first (a TCP
// listener is only ever served with a password: no open port), keeps the list of open connections and closes them all
// on close(). Each client is a RespConnection (resp_connection.h): requests
// on one connection are answered strictly in order; pipelined requests that
// are answered at once are written back in one write. A handler may answer
// later (CREATE waits for readiness, MONITOR for an exit) through a
// Responder (responder.h): the connection then runs nothing more until that
// reply is given, and reads ahead only a little, which is the backpressure
// of "every request is a call".
//
// RespServer never touches the filesystem: whoever binds the socket names
// it, sets its mode and removes it.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include "asio.h"
#include "connection_commands.h"
#include "responder.h"
#include "server_config.h"
#include "unique_fd.h"

namespace kv {

struct ServerShared;

class RespServer {
public:
    // Serves `listening_socket`: a bound, listening AF_UNIX, AF_INET or
    // AF_INET6 stream socket (made close-on-exec here too, in case it was
    // not). `where` names it in log lines (its path or address). `role`
    // tells the connection commands every socket serves (HELLO, CLIENT,
    // INFO, COMMAND ...) about the daemon behind it. `password`: clients
    // must AUTH with it first (Redis's requirepass); a TCP socket needs one,
    // a Unix socket's clients are checked by SO_PEERCRED instead. Throws
    // SystemError naming `where` if the descriptor cannot be taken over, and
    // std::invalid_argument for a TCP socket without a password.
    RespServer(asio::io_context& io, UniqueFd listening_socket, std::string where, RequestHandler handler,
        ServerConfig config = {}, ServerRole role = {}, std::optional<std::string> password = {});
    // Closes (see close()). Connections, Responders and completions still
    // queued may outlive the object: they hold nothing of it but ServerShared.
    ~RespServer();
    RespServer(const RespServer&) = delete;
    RespServer& operator=(const RespServer&) = delete;

    // Stops accepting and closes every connection (their on_hangup callbacks
    // run now). The handler is never called after this. Unlinks nothing: the
    // socket file is its binder's.
    void close();

    // Connections open now on this server's socket; a closed one stops
    // counting at once.
    std::size_t connection_count() const;
    // Connections open now on every socket of the daemon (every server given
    // the same ServerRole: see ServerRole::clients).
    std::size_t client_count() const;

private:
    void accept_next();
    void retry_accept_later();
    void refuse(asio::generic::stream_protocol::socket& socket, const std::string& reason);

    asio::io_context& io_;
    // What connections and refusals share with the server: the one thing of
    // the server they may hold (see ServerShared).
    const std::shared_ptr<ServerShared> shared_;
    asio::basic_socket_acceptor<asio::generic::stream_protocol> acceptor_;
};

} // namespace kv
