// RespServer: a Unix-socket listener whose connections speak RESP.
//
// bytes -> RequestParser -> Request -> handler -> reply. Requests on one
// connection are answered strictly in order; pipelined requests that are
// answered at once are written back in one write. A handler may answer
// later (CREATE waits for readiness, MONITOR for an exit): the connection
// then reads nothing more until that reply is given, which is the
// backpressure of "every request is a call".
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "asio.h"
#include "resp.h"
#include "server_config.h"
#include "unique_fd.h"

namespace kv {

class RespConnection;

// A reply owed for later: exactly one must be sent through it. Copyable; a
// reply to a closed connection is dropped.
class Responder {
public:
    explicit Responder(std::weak_ptr<RespConnection> connection) : connection_(std::move(connection)) {}
    void send(std::string reply) const;

private:
    std::weak_ptr<RespConnection> connection_;
};

// Given to a handler with each request: answer now by appending one reply
// to now(), or take defer() and answer through the Responder later. The
// immediate path costs no allocation of its own: it is how buckets answer.
class ReplySink {
public:
    ReplySink(std::string& output, std::weak_ptr<RespConnection> connection)
        : output_(output)
        , connection_(std::move(connection))
    {
    }
    std::string& now() { return output_; }
    Responder defer()
    {
        deferred_ = true;
        return Responder(connection_);
    }
    bool deferred() const { return deferred_; }

private:
    std::string& output_;
    std::weak_ptr<RespConnection> connection_;
    bool deferred_ = false;
};

using RequestHandler = std::function<void(resp::Request& request, ReplySink& reply)>;

class RespServer {
public:
    // Binds `path` (removing a stale socket file first), mode 0600 (0666 if
    // the config admits other users: SO_PEERCRED is then the gate), and
    // starts accepting. Throws SystemError naming the path on failure.
    RespServer(asio::io_context& io, std::string path, RequestHandler handler, ServerConfig config = {});
    ~RespServer();

    // Stops accepting, closes every connection and removes the socket file.
    void close();

    std::size_t connection_count() const { return *connection_count_; }

private:
    void accept_next();
    void refuse(asio::local::stream_protocol::socket& socket, const std::string& reason);

    asio::io_context& io_;
    std::string path_;
    RequestHandler handler_;
    ServerConfig config_;
    asio::local::stream_protocol::acceptor acceptor_;
    std::shared_ptr<std::size_t> connection_count_ = std::make_shared<std::size_t>(0);
    std::shared_ptr<std::size_t> refusal_count_ = std::make_shared<std::size_t>(0);
    std::vector<std::weak_ptr<RespConnection>> connections_;
    bool closed_ = false;
};

} // namespace kv
