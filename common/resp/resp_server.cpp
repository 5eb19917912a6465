#include "resp_server.h"

#include "error_code.h"
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <unordered_map>

#include "log.h"
#include "system_error.h"

namespace kv {

namespace {

// Asio creates descriptors without FD_CLOEXEC. Spawning happens only on the
// loop's own thread, so marking them right after creation closes the window.
void set_close_on_exec(int fd)
{
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
}

// Connection ids of every server in the process: never reused, so a waiter
// keyed by one cannot be mistaken for a later connection's.
std::atomic<std::uint64_t> next_connection_id { 1 };

} // namespace

// Replies queued past this make the connection stop reading and running
// requests until the client has taken them: backpressure, not a limit.
constexpr std::size_t output_soft_limit = 1024 * 1024;

// Unparsed input read ahead while a reply is pending. Enough to notice at
// once that the client hung up (a read is outstanding while less than this
// is buffered) and to hold the few requests a well-behaved client pipelines
// behind a CREATE or MONITOR; small enough that 1024 connections doing it
// cost 64 MiB at most. Past it we stop reading: the kernel's socket buffer
// fills and the client's writes block, which is real backpressure instead
// of our memory growing with what it sends.
constexpr std::size_t read_ahead_while_pending = 64 * 1024;

struct RespServer::Shared {
    RequestHandler handler;
    ServerConfig config;
    std::string where;
    // Exactly the open connections: each removes itself when it closes, so
    // this never holds a dead entry and the count is exact.
    std::unordered_map<std::uint64_t, std::weak_ptr<RespConnection>> open;
};

// One client. Owned by its outstanding operations (a read, a write, the stall
// timer) through shared_ptr; a Responder holds only a weak_ptr. Connections
// are created with shared_ptr<T>(new T), not make_shared, so such a weak_ptr
// pins only the control block and never the object with its buffers.
class RespConnection : public std::enable_shared_from_this<RespConnection> {
public:
    RespConnection(asio::local::stream_protocol::socket socket, std::shared_ptr<RespServer::Shared> server,
        std::uint64_t id)
        : socket_(std::move(socket))
        , server_(std::move(server))
        , id_(id)
        , parser_(server_->config.protocol)
        , stall_timer_(socket_.get_executor())
    {
        // Our own writes must never block the loop (see flush()).
        boost::system::error_code ignored;
        socket_.non_blocking(true, ignored);
    }
    ~RespConnection()
    {
        // Only reached without close() if the loop itself is torn down.
        if (!closed_)
            server_->open.erase(id_);
    }

    void start() { process(); }

    // The deferred reply. Ignored once closed, and when none is owed (a
    // second send through the same Responder must not answer a later request).
    void deliver(std::string reply)
    {
        if (closed_ || !awaiting_reply_)
            return;
        forget_on_hangup_ = nullptr;
        output_ += reply;
        awaiting_reply_ = false;
        progress_ = true; // input queued behind the reply can move again
        if (in_process_)
            return; // answered from inside our own handler: answer_requests() goes on and flushes
        // Answered from elsewhere (another connection's request, an exit, a
        // timer): write it and run what follows on a later turn of the loop,
        // so that send() never re-enters its caller through our next request
        // or a hangup callback while the caller may be walking its waiters.
        asio::post(socket_.get_executor(), [self = shared_from_this()] { self->process(); });
    }

    void on_hangup(std::function<void()> forget)
    {
        if (closed_) {
            forget();
            return;
        }
        if (awaiting_reply_)
            forget_on_hangup_ = std::move(forget);
    }

    // Closes the socket, leaves the server's list and tells the owner of a
    // pending reply to forget it. The object itself goes as soon as its
    // cancelled operations complete, on the loop's next turn.
    void close()
    {
        if (closed_)
            return;
        closed_ = true;
        server_->open.erase(id_);
        boost::system::error_code ignored;
        stall_timer_.cancel();
        socket_.close(ignored);
        fire_forget();
    }

private:
    void fire_forget()
    {
        if (!forget_on_hangup_)
            return;
        auto forget = std::move(forget_on_hangup_);
        forget_on_hangup_ = nullptr;
        forget();
    }

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
        const std::size_t room = read_room();
        if (!reading_ && !close_after_write_ && output_.size() < output_soft_limit && room > 0)
            read_more(room);
        if (!reading_)
            watch_for_hangup();
        watch_for_stall();
    }

    // While nothing is read (input queued behind a pending reply, or replies
    // the client has not taken), a hang-up would go unseen until the reply
    // or the stall timeout: the peer closing an AF_UNIX stream socket raises
    // EPOLLHUP, which completes a wait for errors. A client that hangs up is
    // forgotten at once, whatever it left unread.
    void watch_for_hangup()
    {
        if (watching_hangup_ || closed_)
            return;
        watching_hangup_ = true;
        socket_.async_wait(asio::socket_base::wait_error, [self = shared_from_this()](const boost::system::error_code& error) {
            self->watching_hangup_ = false;
            if (error || self->closed_)
                return;
            pollfd entry { self->socket_.native_handle(), POLLRDHUP, 0 };
            if (::poll(&entry, 1, 0) == 1 && (entry.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
                self->close();
                return;
            }
            // Woken for something else: look again only when process() next
            // finds the connection not reading (no busy loop on a stray event).
        });
    }

    // How much the next read may take: a whole buffer, or while a reply is
    // pending what is left of the read-ahead (never past the client buffer
    // limit, so input queued behind a reply cannot reach that limit).
    std::size_t read_room() const
    {
        if (!awaiting_reply_)
            return read_buffer_.size();
        const std::size_t bound = std::max<std::size_t>(1, std::min(read_ahead_while_pending, server_->config.max_client_buffer));
        const std::size_t buffered = parser_.buffered();
        return buffered >= bound ? 0 : std::min(bound - buffered, read_buffer_.size());
    }

    // Runs every complete request it may; true if it stopped only because
    // the output reached its soft limit (more requests may be waiting).
    bool answer_requests()
    {
        if (in_process_ || closed_)
            return false;
        in_process_ = true;
        while (!closed_ && !awaiting_reply_ && !close_after_write_ && output_.size() < output_soft_limit) {
            std::string error;
            auto status = parser_.next(request_, error);
            if (status == resp::RequestParser::Status::need_more)
                break;
            if (status == resp::RequestParser::Status::protocol_error) {
                append_error(output_, ErrorCode::error, error);
                close_after_write_ = true;
                break;
            }
            awaiting_reply_ = true;
            const std::size_t before = output_.size();
            ReplySink reply(output_, weak_from_this(), id_);
            try {
                server_->handler(request_, reply);
                if (!reply.deferred())
                    awaiting_reply_ = false;
            } catch (const std::exception& error) {
                // The catch-all clause: a request that makes a handler throw
                // gets an error reply and is forgotten; the process goes on.
                if (!closed_ && (!reply.deferred() || awaiting_reply_)) {
                    output_.resize(before);
                    append_error(output_, ErrorCode::error, std::string("internal error: ") + error.what());
                    awaiting_reply_ = false;
                    // The request is answered: whoever stored its Responder must let go.
                    fire_forget();
                }
            }
        }
        in_process_ = false;
        if (closed_ || !enforce_buffer_limit())
            return false;
        return output_.size() >= output_soft_limit && !close_after_write_;
    }

    // max_client_buffer bounds what one connection holds: its unparsed input
    // plus its unread replies. A request too large for it is answered with an
    // error in its turn; past it otherwise the client is dropped. False if so.
    bool enforce_buffer_limit()
    {
        const std::size_t limit = server_->config.max_client_buffer;
        // Behind a pending reply an error cannot be answered in order; reading
        // ahead there stops within the limit anyway (see read_room()).
        if (!close_after_write_ && !awaiting_reply_ && parser_.buffered() > limit) {
            append_error(output_, ErrorCode::error, "request larger than the client buffer limit of "
                + std::to_string(limit) + " bytes");
            close_after_write_ = true;
        }
        const std::size_t input = close_after_write_ ? 0 : parser_.buffered(); // dead input once refused
        const std::size_t replies = output_.size() + in_flight_.size();
        if (replies > limit) {
            drop("its unread replies passed the client buffer limit");
            return false;
        }
        if (input + replies > limit) {
            drop("its unparsed requests and unread replies passed the client buffer limit");
            return false;
        }
        return true;
    }

    void read_more(std::size_t room)
    {
        reading_ = true;
        socket_.async_read_some(asio::buffer(read_buffer_.data(), room),
            [self = shared_from_this()](const boost::system::error_code& error, std::size_t size) {
                self->reading_ = false;
                if (self->closed_)
                    return;
                if (error) {
                    // The client hung up or the socket failed: forget it. A
                    // reply still owed to it is dropped, and its owner told.
                    self->close();
                    return;
                }
                // Input that only queues behind a pending reply is no progress:
                // it cannot be run until that reply is given.
                if (!self->awaiting_reply_)
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
                if (self->closed_)
                    return;
                self->progress_ = true;
                if (error || (self->close_after_write_ && self->output_.empty())) {
                    self->close();
                    return;
                }
                self->process();
            });
        return false;
    }

    // The client owes us something: reading its replies, the rest of a
    // request, or patience with input it queued behind a pending reply.
    bool waiting_on_client() const { return writing_ || parser_.buffered() > 0; }

    void watch_for_stall()
    {
        if (closed_ || stall_timer_armed_ || !waiting_on_client())
            return;
        stall_timer_armed_ = true;
        progress_ = false;
        stall_timer_.expires_after(server_->config.stall_timeout);
        stall_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& error) {
            self->stall_timer_armed_ = false;
            if (error || self->closed_)
                return;
            if (!self->progress_ && self->waiting_on_client()) {
                if (self->writing_)
                    self->drop("it stopped reading its replies");
                else if (self->awaiting_reply_)
                    self->drop("it kept sending requests behind a reply that is still pending");
                else
                    self->drop("it stopped in the middle of a request");
                return;
            }
            self->watch_for_stall();
        });
    }

    void drop(const std::string& why)
    {
        log_line("dropped a client of " + server_->where + ": " + why);
        close();
    }

    asio::local::stream_protocol::socket socket_;
    std::shared_ptr<RespServer::Shared> server_;
    std::uint64_t id_;
    resp::RequestParser parser_;
    resp::Request request_; // reused: its storage outlives each request
    asio::steady_timer stall_timer_;
    std::function<void()> forget_on_hangup_; // set only while a reply is pending
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
    bool watching_hangup_ = false;
    bool progress_ = false;
};

void Responder::send(std::string reply) const
{
    if (auto connection = connection_.lock())
        connection->deliver(std::move(reply));
}

void Responder::on_hangup(std::function<void()> forget) const
{
    if (auto connection = connection_.lock())
        connection->on_hangup(std::move(forget));
    else
        forget();
}

RespServer::RespServer(asio::io_context& io, UniqueFd listening_socket, std::string where, RequestHandler handler,
    ServerConfig config)
    : io_(io)
    , shared_(std::make_shared<Shared>(Shared { std::move(handler), std::move(config), std::move(where), {} }))
    , acceptor_(io)
{
    if (!listening_socket)
        throw SystemError("unable to serve socket", shared_->where, EBADF);
    set_close_on_exec(listening_socket.get());
    boost::system::error_code error;
    acceptor_.assign(asio::local::stream_protocol(), listening_socket.get(), error);
    if (error)
        throw SystemError("unable to serve socket", shared_->where, error.value());
    listening_socket.release(); // the acceptor closes it now
    accept_next();
}

RespServer::~RespServer() { close(); }

std::size_t RespServer::connection_count() const { return shared_->open.size(); }

void RespServer::close()
{
    if (closed_)
        return;
    closed_ = true;
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
    log_line("refused a client of " + shared_->where + ": " + reason);
    std::string reply;
    resp::append_error(reply, reason);
    if (*refusal_count_ >= max_lingering_refusals) {
        [[maybe_unused]] auto sent = ::send(socket.native_handle(), reply.data(), reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        return;
    }
    std::make_shared<Refusal>(std::move(socket), std::move(reply), refusal_count_)->start(shared_->config.stall_timeout);
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
            log_line("unable to accept a client on " + shared_->where + ": " + error.message());
            auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(50));
            timer->async_wait([this, timer](const boost::system::error_code& wait_error) {
                if (!wait_error && !closed_)
                    accept_next();
            });
            return;
        }
        set_close_on_exec(socket.native_handle());
        if (auto refusal = shared_->config.refusal_for_peer(socket.native_handle())) {
            refuse(socket, *refusal);
        } else if (shared_->open.size() >= shared_->config.max_connections) {
            refuse(socket, error_text(ErrorCode::error, "max connections reached (" + std::to_string(shared_->config.max_connections) + "); try again later"));
        } else {
            const std::uint64_t id = next_connection_id++;
            // Not make_shared: see RespConnection.
            std::shared_ptr<RespConnection> connection(new RespConnection(std::move(socket), shared_, id));
            shared_->open.emplace(id, connection);
            connection->start();
        }
        accept_next();
    });
}

} // namespace kv
