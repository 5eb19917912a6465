// RespConnection: one client of a RespServer, from its accept to its close.
//
// bytes -> RequestParser -> Request -> handler -> reply, in order: a request
// runs only once the one before it is answered, and replies are written in
// the order the requests came. Its states and their transitions are written
// at the top of resp_connection.cpp.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "asio.h"
#include "connection_commands.h"
#include "resp.h"
#include "responder.h"
#include "server_config.h"
#include "session.h"

namespace kv {

// What a RespServer shares with its connections and refused clients.
//
// The ownership rule: the server, each connection and each refusal hold
// this through a shared_ptr, and none of them keeps a reference or pointer to
// the RespServer object (nor to each other, beyond the weak_ptrs of `open`).
// A connection outlives its server by at least the turn of the loop in which
// its cancelled operations complete, and a Responder may outlive both; with
// this rule whichever goes last, nothing it touches has gone. The server's
// own completions (an accept, its retry timer) hold this too, and touch the
// RespServer only while `closed` is unset (so while it still exists).
//
// The handler, role, config and `where` are set once by the server and never
// change. The handler and the role's functions are never called once the
// server is closed (a closed connection runs nothing), so they may refer to
// what outlives the server object. The rest changes on the loop's thread only.
struct ServerShared {
    ServerShared(RequestHandler handler, ServerRole role, ServerConfig config, std::string where, bool tcp,
        std::optional<std::string> password)
        : handler(std::move(handler))
        , role(std::move(role))
        , config(std::move(config))
        , where(std::move(where))
        , tcp(tcp)
        , password(std::move(password))
    {
    }

    const RequestHandler handler;
    const ServerRole role; // what the connection commands know of the daemon
    const ServerConfig config;
    const std::string where; // names the socket in log lines; its path (CLIENT LIST's addr)
    // A TCP listener: its clients have no SO_PEERCRED to check, and must
    // AUTH with `password` (Redis's requirepass) before anything else runs.
    const bool tcp;
    // Set: Redis's requirepass (connection_commands.cpp, AUTH). Unset: the
    // default user has no password, as a Redis without requirepass.
    const std::optional<std::string> password;
    const std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

    // INFO's stats: clients accepted and requests run since the server started.
    std::uint64_t connections_received = 0;
    std::uint64_t commands_processed = 0;

    // Exactly the open connections: each removes itself when it closes, so
    // this never holds a dead entry and its size is exact.
    std::unordered_map<std::uint64_t, std::weak_ptr<RespConnection>> open;
    // Refused clients still being told why (see RespServer::refuse).
    std::size_t lingering_refusals = 0;
    // Set by RespServer::close(), which its destructor calls: a completion
    // that finds it set returns without touching the RespServer.
    bool closed = false;
};

// One client. Owned by its outstanding operations (a read, a write, a
// hang-up watch, the stall timer, a posted turn) through shared_ptr; the
// server's list and every Responder hold only weak_ptrs. Create it with
// shared_ptr<RespConnection>(new RespConnection(...)), not make_shared, so
// that such a weak_ptr pins only the control block, never the object with
// its buffers.
class RespConnection : public std::enable_shared_from_this<RespConnection> {
public:
    RespConnection(asio::generic::stream_protocol::socket socket, std::shared_ptr<ServerShared> server,
        std::uint64_t id);
    ~RespConnection();
    RespConnection(const RespConnection&) = delete;
    RespConnection& operator=(const RespConnection&) = delete;

    // Runs what the client sent so far and starts reading. Once, after the
    // connection is in the server's list.
    void start() { process(); }

    // Responder::send: the deferred reply to request number `call`. Ignored
    // once closed, and unless that request is the one waiting for its reply
    // (a second send through one Responder must not answer a later request).
    void deliver(std::uint64_t call, std::string reply);

    // Responder::on_hangup, for request number `call`.
    void on_hangup(std::uint64_t call, std::function<void()> forget);

    // The client's session (CLIENT LIST reads every open connection's).
    const Session& session() const { return session_; }
    // CLIENT LIST's addr and laddr, as Redis shows them: a TCP client's
    // address and port and the one it connected to ("127.0.0.1:53422",
    // "127.0.0.1:6379"); a Unix socket client's, the socket's path and port 0.
    // Read once, at accept, as Redis does: a peer gone since keeps its address.
    const std::string& peer_address() const { return peer_address_; }
    const std::string& local_address() const { return local_address_; }
    // Input received and not yet run, and replies not yet taken by the
    // client: CLIENT LIST's qbuf and omem.
    std::size_t unparsed_bytes() const { return parser_.buffered(); }
    std::size_t unsent_bytes() const { return output_.size() + in_flight_.size(); }

    // Closes the socket, leaves the server's list and runs the hang-up
    // callback of a reply still owed. The object itself goes once its
    // cancelled operations complete, on a later turn of the loop.
    void close();

private:
    // Where the connection is in its life (see the table in the .cpp).
    enum class Life : unsigned char { open, closing, closed };
    // The request being answered, if any.
    enum class Call : unsigned char { none, running, answered, owed };
    // The stall timer, and whether the connection moved since it was armed.
    enum class Stall : unsigned char { idle, armed, moved };

    void process();
    bool answer_requests();
    void run_handler();
    std::size_t backlog_limit() const;
    void cap_reply(std::size_t before);
    void refuse_oversized_request();
    std::size_t read_room() const;
    void read_more(std::size_t room);
    bool flush();
    void write_rest();
    void watch_for_hangup();
    void watch_for_stall();
    bool waiting_on_client() const;
    void note_progress();
    void drop(const std::string& why);
    // Logs (rate-limited, with the peer's pid and uid) a reply that refuses
    // the client something: LIMIT or DENIED.
    void log_if_refusal(std::string_view reply);
    void run_forget();

    bool writing() const { return !in_flight_.empty(); }
    // Whether request number `call` is the one waiting for its reply.
    bool owes(std::uint64_t call) const
    {
        return call == calls_ && (call_ == Call::running || call_ == Call::owed);
    }

    asio::generic::stream_protocol::socket socket_;
    const std::shared_ptr<ServerShared> server_;
    const std::uint64_t id_;
    std::string peer_address_;
    std::string local_address_;
    Session session_;
    resp::RequestParser parser_;
    resp::Request request_; // reused: its storage outlives each request
    asio::steady_timer stall_timer_;
    std::function<void()> forget_on_hangup_; // set only while call_ is running or owed
    std::array<char, 16 * 1024> read_buffer_;
    std::string output_;    // replies not yet handed to the socket
    std::string in_flight_; // the rest of a write in progress; empty when none is

    Life life_ = Life::open;
    Call call_ = Call::none;
    std::uint64_t calls_ = 0; // requests run so far: the number of the latest
    Stall stall_ = Stall::idle;
    // Operations outstanding on the socket besides a write (writing()):
    // each holds a shared_ptr to us and clears its flag when it completes.
    // Any combination may be outstanding; after close() they complete with
    // an error and do nothing more.
    bool reading_ = false;
    bool watching_hangup_ = false;
};

} // namespace kv
