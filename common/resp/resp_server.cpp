#include "resp_server.h"

#include <fcntl.h>
#include <sys/socket.h>

#include <array>
#include <atomic>
#include <stdexcept>

#include "error_code.h"
#include "log.h"
#include "peer_credentials.h"
#include "resp_connection.h"
#include "system_error.h"

namespace kv {

namespace {

// Asio creates descriptors without FD_CLOEXEC. Spawning happens only on the
// loop's own thread, so marking them right after creation closes the window.
void set_close_on_exec(int fd)
{
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
}

// AF_UNIX, AF_INET or AF_INET6 (SO_DOMAIN); AF_UNIX if `fd` is no socket,
// so that the assign below reports the error.
int socket_family(int fd)
{
    int family = AF_UNIX;
    socklen_t length = sizeof family;
    if (fd < 0 || ::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &length) == -1)
        return AF_UNIX;
    return family;
}

// Connection ids of every server in the process: never reused, so a waiter
// keyed by one cannot be mistaken for a later connection's.
std::atomic<std::uint64_t> next_connection_id { 1 };

// A refused client: it is told why in one line, then its socket is drained
// until it hangs up (or the stall timeout passes) before it is closed, so a
// client that sent its request first reads the reason instead of a reset.
// Counted in ServerShared::lingering_refusals while it lives.
class Refusal : public std::enable_shared_from_this<Refusal> {
public:
    Refusal(asio::generic::stream_protocol::socket socket, std::string reply, std::shared_ptr<ServerShared> server)
        : socket_(std::move(socket))
        , reply_(std::move(reply))
        , timer_(socket_.get_executor())
        , server_(std::move(server))
    {
        ++server_->lingering_refusals;
    }
    ~Refusal() { --server_->lingering_refusals; }

    void start(std::chrono::milliseconds timeout)
    {
        timer_.expires_after(timeout);
        timer_.async_wait([self = shared_from_this()](const boost::system::error_code& error) {
            if (!error)
                self->close();
        });
        asio::async_write(socket_, asio::buffer(reply_),
            [self = shared_from_this()](const boost::system::error_code& error, std::size_t) {
                boost::system::error_code ignored;
                if (error)
                    return self->close();
                self->socket_.shutdown(asio::socket_base::shutdown_send, ignored);
                self->discard();
            });
    }

private:
    void discard()
    {
        socket_.async_read_some(asio::buffer(sink_), [self = shared_from_this()](const boost::system::error_code& error, std::size_t) {
            if (error)
                return self->close();
            self->discard();
        });
    }

    void close()
    {
        boost::system::error_code ignored;
        timer_.cancel();
        socket_.close(ignored);
    }

    asio::generic::stream_protocol::socket socket_;
    std::string reply_;
    asio::steady_timer timer_;
    const std::shared_ptr<ServerShared> server_;
    std::array<char, 4096> sink_;
};

// Refused clients drained at once; past this they are closed straight away.
constexpr std::size_t max_lingering_refusals = 64;

} // namespace

RespServer::RespServer(asio::io_context& io, UniqueFd listening_socket, std::string where, RequestHandler handler,
    ServerConfig config, ServerRole role, std::optional<std::string> password)
    : io_(io)
    , shared_(std::make_shared<ServerShared>(std::move(handler), std::move(role), std::move(config), std::move(where),
          socket_family(listening_socket.get()) != AF_UNIX, std::move(password)))
    , acceptor_(io)
{
    if (!listening_socket)
        throw SystemError("unable to serve socket", shared_->where, EBADF);
    if (shared_->tcp && !shared_->password)
        throw std::invalid_argument("refusing to serve " + shared_->where + " without a password: a TCP port is reachable by anyone");
    set_close_on_exec(listening_socket.get());
    boost::system::error_code error;
    acceptor_.assign(asio::generic::stream_protocol(socket_family(listening_socket.get()), 0), listening_socket.get(), error);
    if (error)
        throw SystemError("unable to serve socket", shared_->where, error.value());
    listening_socket.release(); // the acceptor closes it now
    accept_next();
}

RespServer::~RespServer() { close(); }

std::size_t RespServer::connection_count() const { return shared_->open.size(); }

std::size_t RespServer::client_count() const { return shared_->role.clients->size(); }

void RespServer::close()
{
    if (shared_->closed)
        return;
    shared_->closed = true;
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    // Each close() below leaves shared_->open and may run an owner's callback:
    // walk a list of our own.
    auto open = std::move(shared_->open);
    shared_->open.clear();
    for (auto& [id, weak] : open) {
        if (auto connection = weak.lock())
            connection->close();
    }
}

void RespServer::refuse(asio::generic::stream_protocol::socket& socket, const std::string& reason)
{
    peer_event_log().log(LogLevel::warning, "refused a client of " + shared_->where + ": " + reason + " (" + describe_peer(socket.native_handle()) + ")");
    std::string reply;
    resp::append_error(reply, reason);
    if (shared_->lingering_refusals >= max_lingering_refusals) {
        [[maybe_unused]] auto sent = ::send(socket.native_handle(), reply.data(), reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        return;
    }
    std::make_shared<Refusal>(std::move(socket), std::move(reply), shared_)->start(shared_->config.stall_timeout);
}

// The completions below may run after the server is gone (its destructor
// cancels them; they complete on a later turn): each holds `shared` and
// touches `this` only once shared->closed says the server is still there.
void RespServer::accept_next()
{
    acceptor_.async_accept([this, shared = shared_](const boost::system::error_code& error, asio::generic::stream_protocol::socket socket) {
        if (shared->closed || error == asio::error::operation_aborted)
            return;
        if (error) {
            // Out of descriptors (EMFILE/ENFILE) or a transient failure: keep
            // serving the clients we have and try again shortly, rather than
            // spinning on an accept that cannot succeed.
            log_line(LogLevel::error, "unable to accept a client on " + shared->where + ": " + error.message());
            retry_accept_later();
            return;
        }
        set_close_on_exec(socket.native_handle());
        // A TCP client has no SO_PEERCRED (its uid, if any, is another
        // machine's to say): it is held to the password instead (AUTH).
        if (auto refusal = shared->tcp ? std::nullopt : shared->config.refusal_for_peer(socket.native_handle())) {
            refuse(socket, *refusal);
        } else if (shared->open.size() >= shared->config.max_connections) {
            refuse(socket, error_text(ErrorCode::error, "max connections reached (" + std::to_string(shared->config.max_connections) + "); try again later"));
        } else {
            const std::uint64_t id = next_connection_id++;
            ++shared->connections_received;
            // Not make_shared: see RespConnection.
            std::shared_ptr<RespConnection> connection(new RespConnection(std::move(socket), shared, id));
            shared->open.emplace(id, connection);
            shared->role.clients->emplace(id, connection);
            connection->start();
        }
        accept_next();
    });
}

void RespServer::retry_accept_later()
{
    auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(50));
    timer->async_wait([this, shared = shared_, timer](const boost::system::error_code& error) {
        if (!error && !shared->closed)
            accept_next();
    });
}

} // namespace kv
