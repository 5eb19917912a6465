// RespServer: serves RESP on an already-listening Unix socket.
//
// bytes -> RequestParser -> Request -> handler -> reply. Requests on one
// connection are answered strictly in order; pipelined requests that are
// answered at once are written back in one write. A handler may answer
// later (CREATE waits for readiness, MONITOR for an exit): the connection
// then runs nothing more until that reply is given, and reads ahead only a
// little, which is the backpressure of "every request is a call".
//
// RespServer never touches the filesystem: whoever binds the socket names
// it, sets its mode and removes it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "asio.h"
#include "resp.h"
#include "server_config.h"
#include "unique_fd.h"

namespace kv {

class RespConnection;

// A reply owed for later: exactly one must be sent through it; a second is
// ignored, and so is a reply to a connection that has closed. Copyable and
// small: it pins no connection, only its id and a shared_ptr control block.
// Use it on the loop's thread only.
class Responder {
public:
    Responder(std::weak_ptr<RespConnection> connection, std::uint64_t connection_id)
        : connection_(std::move(connection))
        , connection_id_(connection_id)
    {
    }

    // Queues the reply. Runs nothing of the owner's before it returns (no
    // handler, no hangup callback): the connection writes it and goes on
    // with the requests behind it on a later turn of the loop.
    void send(std::string reply) const;

    // Calls `forget` (once, on the loop's thread) if the connection closes
    // before send() is called; never after send(). The owner of a stored
    // Responder erases it there, so a client that hangs up leaves nothing
    // behind. A connection holds one such callback: a later call replaces an
    // earlier one. If the connection has already closed, `forget` runs before
    // this returns: store the Responder first, then call this.
    void on_hangup(std::function<void()> forget) const;

    // Unique per connection for the life of the process (never reused, also
    // across servers): a key for waiters, stable after the connection closes.
    std::uint64_t connection_id() const { return connection_id_; }

private:
    std::weak_ptr<RespConnection> connection_;
    std::uint64_t connection_id_;
};

// Given to a handler with each request: answer now by appending one reply
// to now(), or take defer() and answer through the Responder later. The
// immediate path costs no allocation of its own: it is how buckets answer.
class ReplySink {
public:
    ReplySink(std::string& output, std::weak_ptr<RespConnection> connection, std::uint64_t connection_id)
        : output_(output)
        , connection_(std::move(connection))
        , connection_id_(connection_id)
    {
    }
    std::string& now() { return output_; }
    Responder defer()
    {
        deferred_ = true;
        return Responder(connection_, connection_id_);
    }
    bool deferred() const { return deferred_; }

private:
    std::string& output_;
    std::weak_ptr<RespConnection> connection_;
    std::uint64_t connection_id_;
    bool deferred_ = false;
};

using RequestHandler = std::function<void(resp::Request& request, ReplySink& reply)>;

class RespServer {
public:
    // Serves `listening_socket`: a bound, listening AF_UNIX stream socket
    // (made close-on-exec here too, in case it was not). `where` names it in
    // log lines (usually its path). Throws SystemError naming `where` if the
    // descriptor cannot be taken over.
    RespServer(asio::io_context& io, UniqueFd listening_socket, std::string where, RequestHandler handler,
        ServerConfig config = {});
    ~RespServer();
    RespServer(const RespServer&) = delete;
    RespServer& operator=(const RespServer&) = delete;

    // Stops accepting and closes every connection (their on_hangup callbacks
    // run now). Unlinks nothing: the socket file is its binder's.
    void close();

    // Connections open now; a closed one stops counting at once.
    std::size_t connection_count() const;

    // What the server and its connections share. A connection may outlive
    // the server by a turn of the loop (its cancelled operations complete),
    // so this lives as long as either.
    struct Shared;

private:
    void accept_next();
    void refuse(asio::local::stream_protocol::socket& socket, const std::string& reason);

    asio::io_context& io_;
    std::shared_ptr<Shared> shared_;
    asio::local::stream_protocol::acceptor acceptor_;
    std::shared_ptr<std::size_t> refusal_count_ = std::make_shared<std::size_t>(0);
    bool closed_ = false;
};

} // namespace kv
