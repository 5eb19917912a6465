// How a RespServer's handler answers a request: at once through ReplySink,
// or later through a Responder (CREATE waits for readiness, MONITOR for an
// exit). The connection behind both is RespConnection (resp_connection.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "resp.h"
#include "session.h"

namespace kv {

class RespConnection;

// A reply owed for later: exactly one must be sent through it; a second is
// ignored, and so is a reply to a connection that has closed. It answers the
// one request it was made for: once that is answered, it can neither answer
// nor take over a later request on the same connection. Copyable and small:
// it pins no connection, only ids and a shared_ptr control block, so it may
// outlive the connection and the server (then it does nothing). Use it on
// the loop's thread only.
class Responder {
public:
    // `call` numbers the request on its connection (see RespConnection).
    // `protocol`: what the connection spoke when the request came, which
    // the reply must be written in.
    Responder(std::weak_ptr<RespConnection> connection, std::uint64_t connection_id, std::uint64_t call,
        resp::Protocol protocol = resp::Protocol::resp2)
        : connection_(std::move(connection))
        , connection_id_(connection_id)
        , call_(call)
        , protocol_(protocol)
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
    // this returns: store the Responder first, then call this. Once its
    // request is answered, `forget` is dropped (unless the connection has
    // closed: then it still runs at once, as above).
    void on_hangup(std::function<void()> forget) const;

    // Unique per connection for the life of the process (never reused, also
    // across servers): a key for waiters, stable after the connection closes.
    std::uint64_t connection_id() const { return connection_id_; }

    // The protocol to write the reply in (a request runs before the next
    // one can change it, so it is the connection's for this reply).
    resp::Protocol protocol() const { return protocol_; }

private:
    std::weak_ptr<RespConnection> connection_;
    std::uint64_t connection_id_;
    std::uint64_t call_;
    resp::Protocol protocol_;
};

// Given to a handler with each request: answer now by appending one reply
// to now(), or take defer() and answer through the Responder later. The
// immediate path costs no allocation of its own: it is how buckets answer.
// It lives on the connection's stack for one handler call only, so it may
// refer to the connection's output and session; keep the Responder, never
// the sink. Write the reply in session().protocol.
class ReplySink {
public:
    ReplySink(std::string& output, Session& session, std::weak_ptr<RespConnection> connection,
        std::uint64_t connection_id, std::uint64_t call)
        : output_(output)
        , session_(session)
        , connection_(std::move(connection))
        , connection_id_(connection_id)
        , call_(call)
    {
    }
    ReplySink(const ReplySink&) = delete;
    ReplySink& operator=(const ReplySink&) = delete;

    std::string& now() { return output_; }
    Responder defer()
    {
        deferred_ = true;
        return Responder(connection_, connection_id_, call_, session_.protocol);
    }
    bool deferred() const { return deferred_; }
    Session& session() { return session_; }

private:
    std::string& output_;
    Session& session_;
    std::weak_ptr<RespConnection> connection_;
    std::uint64_t connection_id_;
    std::uint64_t call_;
    bool deferred_ = false;
};

using RequestHandler = std::function<void(resp::Request& request, ReplySink& reply)>;

} // namespace kv
