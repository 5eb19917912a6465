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
#include "unique_fd.h"

namespace kv {

class RespConnection;

// Given to a handler with each request; exactly one reply must be sent
// through it, now or later. Copyable; a reply to a closed connection is
// dropped.
class Responder {
public:
    explicit Responder(std::weak_ptr<RespConnection> connection) : connection_(std::move(connection)) {}
    void send(std::string reply) const;

private:
    std::weak_ptr<RespConnection> connection_;
};

using RequestHandler = std::function<void(resp::Request& request, const Responder& responder)>;

struct ServerLimits {
    resp::Limits protocol;
    std::size_t max_connections = 1024;
    // Bytes of replies queued for a client that does not read them before
    // the server stops reading that client's requests.
    std::size_t max_pending_output = 4 * 1024 * 1024;
};

class RespServer {
public:
    // Binds `path` (removing a stale socket file first), mode 0600, and starts
    // accepting. Throws SystemError naming the path on failure.
    RespServer(asio::io_context& io, std::string path, RequestHandler handler, ServerLimits limits = {});
    ~RespServer();

    // Stops accepting, closes every connection and removes the socket file.
    void close();

    std::size_t connection_count() const { return *connection_count_; }

private:
    void accept_next();

    asio::io_context& io_;
    std::string path_;
    RequestHandler handler_;
    ServerLimits limits_;
    asio::local::stream_protocol::acceptor acceptor_;
    std::shared_ptr<std::size_t> connection_count_ = std::make_shared<std::size_t>(0);
    std::vector<std::weak_ptr<RespConnection>> connections_;
    bool closed_ = false;
};

} // namespace kv
