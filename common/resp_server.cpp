#include "resp_server.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>

#include "log.h"
#include "run_dir.h"
#include "system_error.h"

namespace kv {

namespace {

// Asio creates descriptors without FD_CLOEXEC. Spawning happens only on the
// loop's own thread, so marking them right after creation closes the window.
void set_close_on_exec(int fd)
{
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
}

} // namespace

// Replies queued past this make the connection stop reading and running
// requests until the client has taken them: backpressure, not a limit.
constexpr std::size_t output_soft_limit = 1024 * 1024;

class RespConnection : public std::enable_shared_from_this<RespConnection> {
public:
    RespConnection(asio::local::stream_protocol::socket socket, const RequestHandler& handler,
        const ServerConfig& config, std::shared_ptr<std::size_t> count, const std::string& where)
        : socket_(std::move(socket))
        , handler_(handler)
        , config_(config)
        , parser_(config.protocol)
        , count_(std::move(count))
        , stall_timer_(socket_.get_executor())
        , where_(where)
    {
        ++*count_;
        // Our own writes must never block the loop (see flush()).
        boost::system::error_code ignored;
        socket_.non_blocking(true, ignored);
    }
    ~RespConnection() { --*count_; }

    void start() { process(); }

    void deliver(std::string reply)
    {
        output_ += reply;
        awaiting_reply_ = false;
        process();
    }

    void close()
    {
        if (closed_)
            return;
        closed_ = true;
        boost::system::error_code ignored;
        stall_timer_.cancel();
        socket_.close(ignored);
    }

private:
    // Answers every complete request until one must wait for its reply, then
    // writes what was answered and reads more if there is room.
    void process()
    {
        // Repeats while replies filled the output and all of them went out at once.
        for (;;) {
            const bool more_waiting = answer_requests();
            const bool all_sent = flush();
            if (closed_ || !more_waiting || !all_sent)
                break;
        }
        if (closed_)
            return;
        if (!reading_ && !close_after_write_ && output_.size() < output_soft_limit)
            read_more();
        watch_for_stall();
    }

    // Runs every complete request it may; true if it stopped only because
    // the output reached its soft limit (more requests may be waiting).
    bool answer_requests()
    {
        if (in_process_ || closed_)
            return false;
        in_process_ = true;
        while (!awaiting_reply_ && !close_after_write_ && output_.size() < output_soft_limit) {
            std::string error;
            auto status = parser_.next(request_, error);
            if (status == resp::RequestParser::Status::need_more)
                break;
            if (status == resp::RequestParser::Status::protocol_error) {
                resp::append_error(output_, "ERR " + error);
                close_after_write_ = true;
                break;
            }
            awaiting_reply_ = true;
            const std::size_t before = output_.size();
            ReplySink reply(output_, weak_from_this());
            try {
                handler_(request_, reply);
                if (!reply.deferred())
                    awaiting_reply_ = false;
            } catch (const std::exception& error) {
                // The catch-all clause: a request that makes a handler throw
                // gets an error reply and is forgotten; the process goes on.
                if (!reply.deferred() || awaiting_reply_) {
                    output_.resize(before);
                    resp::append_error(output_, std::string("ERR internal error: ") + error.what());
                    awaiting_reply_ = false;
                }
            }
        }
        in_process_ = false;
        const bool output_full = output_.size() >= output_soft_limit;
        if (parser_.buffered() > config_.max_client_buffer && !close_after_write_) {
            resp::append_error(output_, "ERR request larger than the client buffer limit of "
                + std::to_string(config_.max_client_buffer) + " bytes");
            close_after_write_ = true;
        }
        if (output_.size() + in_flight_.size() > config_.max_client_buffer) {
            drop("its unread replies passed the client buffer limit");
            return false;
        }
        return output_full && !close_after_write_;
    }

    void read_more()
    {
        reading_ = true;
        socket_.async_read_some(asio::buffer(read_buffer_),
            [self = shared_from_this()](const boost::system::error_code& error, std::size_t size) {
                self->reading_ = false;
                if (error) {
                    // The client hung up or the socket failed: forget it. A
                    // reply still owed to it is dropped when it arrives.
                    self->close();
                    return;
                }
                self->progress_ = true;
                self->parser_.feed(self->read_buffer_.data(), size);
                self->process();
            });
    }

    // Sends what is queued. Most replies fit the socket's buffer: they are
    // written at once, without a trip through Asio's completion queue; only
    // what does not fit waits for an asynchronous write. True if everything
    // queued went out now.
    bool flush()
    {
        if (writing_ || closed_)
            return false;
        if (output_.empty())
            return true;
        boost::system::error_code error;
        std::size_t written = socket_.write_some(asio::buffer(output_), error); // non-blocking socket
        if (error && error != asio::error::would_block && error != asio::error::try_again) {
            close();
            return false;
        }
        if (written > 0)
            progress_ = true;
        if (written == output_.size()) {
            output_.clear();
            if (close_after_write_) {
                close();
                return false;
            }
            return true;
        }
        output_.erase(0, written);
        writing_ = true;
        in_flight_.swap(output_);
        output_.clear();
        asio::async_write(socket_, asio::buffer(in_flight_),
            [self = shared_from_this()](const boost::system::error_code& error, std::size_t) {
                self->writing_ = false;
                self->in_flight_.clear();
                self->progress_ = true;
                if (error || (self->close_after_write_ && self->output_.empty())) {
                    self->close();
                    return;
                }
                self->process();
            });
        return false;
    }

    // The client owes us something: the rest of a request, or reading its replies.
    bool waiting_on_client() const
    {
        return writing_ || (!awaiting_reply_ && parser_.buffered() > 0);
    }

    void watch_for_stall()
    {
        if (closed_ || stall_timer_armed_ || !waiting_on_client())
            return;
        stall_timer_armed_ = true;
        progress_ = false;
        stall_timer_.expires_after(config_.stall_timeout);
        stall_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& error) {
            self->stall_timer_armed_ = false;
            if (error || self->closed_)
                return;
            if (!self->progress_ && self->waiting_on_client()) {
                self->drop(self->writing_ ? "it stopped reading its replies" : "it stopped in the middle of a request");
                return;
            }
            self->watch_for_stall();
        });
    }

    void drop(const std::string& why)
    {
        log_line("dropped a client of " + where_ + ": " + why);
        close();
    }

    asio::local::stream_protocol::socket socket_;
    const RequestHandler& handler_;
    const ServerConfig& config_;
    resp::RequestParser parser_;
    resp::Request request_; // reused: its storage outlives each request
    std::shared_ptr<std::size_t> count_;
    asio::steady_timer stall_timer_;
    std::string where_;
    std::array<char, 16 * 1024> read_buffer_;
    std::string output_;
    std::string in_flight_;
    bool reading_ = false;
    bool writing_ = false;
    bool awaiting_reply_ = false;
    bool close_after_write_ = false;
    bool in_process_ = false;
    bool closed_ = false;
    bool stall_timer_armed_ = false;
    bool progress_ = false;
};

void Responder::send(std::string reply) const
{
    if (auto connection = connection_.lock())
        connection->deliver(std::move(reply));
}

RespServer::RespServer(asio::io_context& io, std::string path, RequestHandler handler, ServerConfig config)
    : io_(io)
    , path_(std::move(path))
    , handler_(std::move(handler))
    , config_(std::move(config))
    , acceptor_(io)
{
    check_socket_path_length(path_);
    if (::unlink(path_.c_str()) == -1 && errno != ENOENT)
        throw SystemError("unable to remove stale socket", path_, errno);
    boost::system::error_code error;
    acceptor_.open(asio::local::stream_protocol(), error);
    if (error)
        throw SystemError("unable to create socket", path_, error.value());
    set_close_on_exec(acceptor_.native_handle());
    acceptor_.bind(asio::local::stream_protocol::endpoint(path_), error);
    if (error)
        throw SystemError("unable to bind socket", path_, error.value());
    check(::chmod(path_.c_str(), config_.admits_others() ? 0666 : 0600), "unable to set the mode of socket", path_);
    acceptor_.listen(SOMAXCONN, error);
    if (error)
        throw SystemError("unable to listen on socket", path_, error.value());
    accept_next();
}

RespServer::~RespServer() { close(); }

void RespServer::close()
{
    if (closed_)
        return;
    closed_ = true;
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    ::unlink(path_.c_str());
    for (auto& weak : connections_) {
        if (auto connection = weak.lock())
            connection->close();
    }
    connections_.clear();
}

namespace {

// A refused client: it is told why in one line, then its socket is drained
// until it hangs up (or the stall timeout passes) before it is closed, so a
// client that sent its request first reads the reason instead of a reset.
class Refusal : public std::enable_shared_from_this<Refusal> {
public:
    Refusal(asio::local::stream_protocol::socket socket, std::string reply, std::shared_ptr<std::size_t> count)
        : socket_(std::move(socket))
        , reply_(std::move(reply))
        , timer_(socket_.get_executor())
        , count_(std::move(count))
    {
        ++*count_;
    }
    ~Refusal() { --*count_; }

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

    asio::local::stream_protocol::socket socket_;
    std::string reply_;
    asio::steady_timer timer_;
    std::shared_ptr<std::size_t> count_;
    std::array<char, 4096> sink_;
};

// Refused clients drained at once; past this they are closed straight away.
constexpr std::size_t max_lingering_refusals = 64;

} // namespace

void RespServer::refuse(asio::local::stream_protocol::socket& socket, const std::string& reason)
{
    log_line("refused a client of " + path_ + ": " + reason);
    std::string reply;
    resp::append_error(reply, reason);
    if (*refusal_count_ >= max_lingering_refusals) {
        [[maybe_unused]] auto sent = ::send(socket.native_handle(), reply.data(), reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        return;
    }
    std::make_shared<Refusal>(std::move(socket), std::move(reply), refusal_count_)->start(config_.stall_timeout);
}

void RespServer::accept_next()
{
    acceptor_.async_accept([this](const boost::system::error_code& error, asio::local::stream_protocol::socket socket) {
        if (closed_ || error == asio::error::operation_aborted)
            return;
        if (error) {
            // Out of descriptors (EMFILE/ENFILE) or a transient failure: keep
            // serving the clients we have and try again shortly, rather than
            // spinning on an accept that cannot succeed.
            log_line("unable to accept a client on " + path_ + ": " + error.message());
            auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(50));
            timer->async_wait([this, timer](const boost::system::error_code& wait_error) {
                if (!wait_error && !closed_)
                    accept_next();
            });
            return;
        }
        set_close_on_exec(socket.native_handle());
        if (auto refusal = config_.refusal_for_peer(socket.native_handle())) {
            refuse(socket, *refusal);
        } else if (*connection_count_ >= config_.max_connections) {
            refuse(socket, "ERR max connections reached (" + std::to_string(config_.max_connections) + "); try again later");
        } else {
            auto connection = std::make_shared<RespConnection>(std::move(socket), handler_, config_, connection_count_, path_);
            // Forget connections that have gone, so the list stays as long as the live ones.
            std::erase_if(connections_, [](const auto& weak) { return weak.expired(); });
            connections_.push_back(connection);
            connection->start();
        }
        accept_next();
    });
}

} // namespace kv
