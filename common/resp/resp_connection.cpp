// The states of a connection and what moves them: three small enums, each
// saying one thing, so that no two facts about the connection can contradict.
//
// Life: what the connection still does.
//   open       reads, runs requests, writes replies
//   closing    its last reply is an error or QUIT's +OK: no request runs and
//              no read starts any more; once the replies queued are written,
//              it closes
//   closed     socket closed, out of the server's list; completions still to
//              come, send() and on_hangup() do nothing more (on_hangup runs
//              its callback at once)
//
//   from       event                                                  to
//   open       protocol error, or with no reply owed an unfinished     closing
//              request over max_client_buffer: the error reply is
//              queued; or QUIT answered (Session::close_after_reply)
//   closing    the last queued byte is written                         closed
//   open,      end of file or error on a read, a write error, the      closed
//   closing    hang-up watch firing, drop() (stall timeout),
//              RespServer::close()
//
// Call: the request being answered. Requests run only in `none` while open,
// one at a time, so replies go out in the order the requests came.
//   none       no request is waiting for its reply
//   running    its handler is on the stack, no reply given yet
//   answered   its handler is on the stack and has answered through send()
//   owed       its handler returned having taken defer(): the reply is owed
//
//   from       event                                                  to
//   none       a complete request is parsed; it is number ++calls_     running
//   running    the handler returns; it answered in now()               none
//   running    the handler returns having taken defer()                owed
//   running    send() from inside the handler: reply queued            answered
//   running    the handler throws: an error reply instead, and the     none
//              on_hangup callback runs (the request is answered)
//   answered   the handler returns (or throws: the reply stands)       none
//   owed       send() from outside: reply queued; what follows runs    none
//              on a later turn of the loop (posted), never inside send()
//   running,   the connection closes: the on_hangup callback runs      (closed)
//   owed
//   Only running and owed accept send() and keep an on_hangup callback, and
//   only from the Responder of that request (calls_ numbers them); any other
//   send() is a second one, and ignored. So the callback runs at most once,
//   and never after send().
//
// Stall: the stall timer, armed while the client owes us something: reading
// the rest of a write, the rest of a half-written request, or patience with
// requests it queued behind an owed reply.
//   idle       not armed
//   armed      armed, and nothing has moved since
//   moved      armed, and since then bytes were written, input that can
//              run was read, or an owed reply was given
//
//   from       event                                                  to
//   idle       process() finds the client owing us something           armed
//   armed      any progress (above)                                    moved
//   armed      the timer fires and the client still owes us: dropped   idle
//   moved      the timer fires (re-armed if the client still owes us)  idle
//   any        close() cancels the timer; it completes                 idle
//
// Outstanding operations, each holding a shared_ptr to the connection: a
// read (reading_; only while open, at most read_room() bytes), a write
// (writing(): in_flight_ holds its rest), a hang-up watch (watching_hangup_;
// armed whenever process() leaves no read outstanding), the stall timer
// (stall_ not idle) and a posted process(). Any combination may be
// outstanding; the connection object goes when the last completes.
#include "resp_connection.h"

#include <poll.h>

#include <algorithm>

#include "error_code.h"
#include "log.h"
#include "peer_credentials.h"
#include "tcp_peer.h"

namespace kv {

namespace {

// Replies not yet taken by the client (queued, or in a write in progress)
// past this make the connection stop reading and running requests until the
// client has taken them: backpressure, not a limit (see backlog_limit()).
constexpr std::size_t output_soft_limit = 1024 * 1024;

// Unparsed input read ahead while a reply is owed. Enough to notice at
// once that the client hung up (a read is outstanding while less than this
// is buffered) and to hold the few requests a well-behaved client pipelines
// behind a CREATE or MONITOR; small enough that 1024 connections doing it
// cost 64 MiB at most. Past it we stop reading: the kernel's socket buffer
// fills and the client's writes block, which is real backpressure instead
// of our memory growing with what it sends.
constexpr std::size_t read_ahead_while_pending = 64 * 1024;

} // namespace

void Responder::send(std::string reply) const
{
    if (auto connection = connection_.lock())
        connection->deliver(call_, std::move(reply));
}

void Responder::on_hangup(std::function<void()> forget) const
{
    if (auto connection = connection_.lock())
        connection->on_hangup(call_, std::move(forget));
    else
        forget();
}

RespConnection::RespConnection(asio::generic::stream_protocol::socket socket, std::shared_ptr<ServerShared> server,
    std::uint64_t id)
    : socket_(std::move(socket))
    , server_(std::move(server))
    , id_(id)
    , session_(id, socket_.native_handle())
    , parser_(server_->config.protocol)
    , stall_timer_(socket_.get_executor())
{
    session_.authenticated = !server_->password; // TCP: AUTH first
    if (server_->tcp) {
        peer_address_ = kv::peer_address(socket_.native_handle());
        local_address_ = kv::local_address(socket_.native_handle());
    } else {
        peer_address_ = local_address_ = server_->where + ":0";
    }
    // Our own writes must never block the loop (see flush()).
    boost::system::error_code ignored;
    socket_.non_blocking(true, ignored);
}

RespConnection::~RespConnection()
{
    // Only reached while open if the loop itself is torn down.
    if (life_ != Life::closed) {
        server_->open.erase(id_);
        server_->role.clients->erase(id_);
    }
}

void RespConnection::deliver(std::uint64_t call, std::string reply)
{
    if (life_ == Life::closed || !owes(call))
        return;
    forget_on_hangup_ = nullptr;
    const std::size_t before = output_.size();
    output_ += reply;
    cap_reply(before);
    note_progress(); // input queued behind the reply can move again
    if (call_ == Call::running) {
        call_ = Call::answered; // answer_requests() goes on, flushes, and run_handler() logs it
        return;
    }
    log_if_refusal(std::string_view(output_).substr(before));
    call_ = Call::none;
    // Answered from elsewhere (another connection's request, an exit, a
    // timer): write it and run what follows on a later turn of the loop,
    // so that send() never re-enters its caller through our next request
    // or a hangup callback while the caller may be walking its waiters.
    asio::post(socket_.get_executor(), [self = shared_from_this()] { self->process(); });
}

void RespConnection::on_hangup(std::uint64_t call, std::function<void()> forget)
{
    if (life_ == Life::closed) {
        forget();
        return;
    }
    if (owes(call))
        forget_on_hangup_ = std::move(forget);
}

void RespConnection::close()
{
    if (life_ == Life::closed)
        return;
    life_ = Life::closed;
    server_->open.erase(id_);
    server_->role.clients->erase(id_);
    forget_session(*server_, session_);
    boost::system::error_code ignored;
    stall_timer_.cancel();
    socket_.close(ignored);
    run_forget();
}

void RespConnection::run_forget()
{
    if (!forget_on_hangup_)
        return;
    auto forget = std::move(forget_on_hangup_);
    forget_on_hangup_ = nullptr;
    forget();
}

// Answers every complete request until one must wait for its reply, then
// writes what was answered and reads more if there is room.
void RespConnection::process()
{
    // Repeats while replies filled the output and all of them went out at once.
    for (;;) {
        const bool more_waiting = answer_requests();
        const bool all_sent = flush();
        if (life_ == Life::closed)
            return;
        if (!more_waiting || !all_sent)
            break;
    }
    const std::size_t room = read_room();
    if (!reading_ && life_ == Life::open && unsent_bytes() < backlog_limit() && room > 0)
        read_more(room);
    if (!reading_)
        watch_for_hangup();
    watch_for_stall();
}

// While nothing is read (input queued behind an owed reply, or replies the
// client has not taken), a hang-up would go unseen until the reply or the
// stall timeout: the peer closing an AF_UNIX stream socket raises EPOLLHUP,
// which completes a wait for errors. A client that hangs up is forgotten at
// once, whatever it left unread.
void RespConnection::watch_for_hangup()
{
    if (watching_hangup_ || life_ == Life::closed)
        return;
    watching_hangup_ = true;
    socket_.async_wait(asio::socket_base::wait_error, [self = shared_from_this()](const boost::system::error_code& error) {
        self->watching_hangup_ = false;
        if (error || self->life_ == Life::closed)
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

// How much the next read may take: a whole buffer, or while a reply is owed
// what is left of the read-ahead (never past the client buffer limit, so
// input queued behind a reply cannot reach that limit).
std::size_t RespConnection::read_room() const
{
    if (call_ != Call::owed)
        return read_buffer_.size();
    const std::size_t bound = std::max<std::size_t>(1, std::min(read_ahead_while_pending, server_->config.max_client_buffer));
    const std::size_t buffered = parser_.buffered();
    return buffered >= bound ? 0 : std::min(bound - buffered, read_buffer_.size());
}

// Runs every complete request it may; true if it stopped only because the
// replies not yet taken reached backlog_limit() (more requests may be
// waiting).
bool RespConnection::answer_requests()
{
    // Never re-entered from a handler (send() there only queues).
    if (call_ == Call::running || call_ == Call::answered || life_ == Life::closed)
        return false;
    while (life_ == Life::open && call_ == Call::none && unsent_bytes() < backlog_limit()) {
        std::string error;
        parser_.set_authenticated(session_.authenticated); // an AUTH just run lifts the limits for what follows
        const auto status = parser_.next(request_, error);
        if (status == resp::RequestParser::Status::need_more) {
            refuse_oversized_request(); // what is left is one unfinished request
            break;
        }
        if (status == resp::RequestParser::Status::protocol_error) {
            peer_event_log().log(LogLevel::warning, "protocol error from a client of " + server_->where + ": " + error
                + " (" + describe_peer(socket_.native_handle()) + "); closing the connection");
            append_error(output_, ErrorCode::error, error);
            life_ = Life::closing;
            break;
        }
        run_handler();
    }
    if (life_ == Life::closed)
        return false;
    return unsent_bytes() >= backlog_limit() && life_ == Life::open;
}

// The backlog of replies not yet taken past which a connection stops reading
// and running requests: output_soft_limit, or the client buffer limit if
// that is less.
std::size_t RespConnection::backlog_limit() const
{
    return std::min(output_soft_limit, server_->config.max_client_buffer);
}

// A reply (what follows `before` in output_) larger than the client buffer
// limit could never be held for the client within it: it is replaced by an
// error, in its place and in its turn, and its memory given back. The command
// itself ran (for EXEC, every command of the block).
void RespConnection::cap_reply(std::size_t before)
{
    const std::size_t limit = server_->config.max_client_buffer;
    const std::size_t size = output_.size() - before;
    if (size <= limit)
        return;
    output_.resize(before);
    output_.shrink_to_fit();
    append_error(output_, ErrorCode::error, "reply of " + std::to_string(size)
        + " bytes is larger than the client buffer limit of " + std::to_string(limit) + " bytes");
}

// One request through the connection commands (connection_commands.h),
// else the daemon's handler: Call goes none -> running -> none or owed.
void RespConnection::run_handler()
{
    call_ = Call::running;
    ++calls_;
    ++server_->commands_processed;
    session_.note_command(request_);
    const std::size_t before = output_.size();
    ReplySink reply(output_, session_, weak_from_this(), id_, calls_);
    try {
        if (!run_connection_command(*server_, session_, request_, output_))
            server_->handler(request_, reply);
    } catch (const std::exception& error) {
        // The catch-all clause: a request that makes a handler throw gets an
        // error reply and is forgotten; the process goes on.
        if (life_ != Life::closed && call_ == Call::running) {
            output_.resize(before);
            append_error(output_, ErrorCode::error, std::string("internal error: ") + error.what());
            call_ = Call::answered;
            // The request is answered: whoever stored its Responder must let go.
            run_forget();
        }
    }
    cap_reply(before);
    if (output_.size() > before)
        log_if_refusal(std::string_view(output_).substr(before));
    call_ = call_ == Call::running && reply.deferred() ? Call::owed : Call::none;
    if (session_.close_after_reply && life_ == Life::open)
        life_ = Life::closing; // QUIT: its +OK is the last reply
}

// max_client_buffer bounds the one request and the one reply a connection
// holds (cap_reply). An unfinished request past it (what the parser keeps
// once every complete request before it has run) is answered with an error
// in its turn, and the connection closes after it. So a connection holds at
// most backlog_limit() plus one reply of replies, one unfinished request and
// one read of input; a client that stops reading stops its requests (the
// backlog) and is dropped after the stall timeout.
void RespConnection::refuse_oversized_request()
{
    const std::size_t limit = server_->config.max_client_buffer;
    if (life_ == Life::open && call_ == Call::none && parser_.buffered() > limit) {
        append_error(output_, ErrorCode::error, "request larger than the client buffer limit of "
            + std::to_string(limit) + " bytes");
        life_ = Life::closing;
    }
}

void RespConnection::read_more(std::size_t room)
{
    reading_ = true;
    socket_.async_read_some(asio::buffer(read_buffer_.data(), room),
        [self = shared_from_this()](const boost::system::error_code& error, std::size_t size) {
            self->reading_ = false;
            if (self->life_ == Life::closed)
                return;
            if (error) {
                // The client hung up or the socket failed: forget it. A reply
                // still owed to it is dropped, and its owner told.
                self->close();
                return;
            }
            // Input that only queues behind an owed reply is no progress: it
            // cannot be run until that reply is given.
            if (self->call_ != Call::owed)
                self->note_progress();
            self->session_.note_interaction(Session::Clock::now());
            self->parser_.feed(self->read_buffer_.data(), size);
            self->process();
        });
}

// Sends what is queued. Most replies fit the socket's buffer: they are
// written at once, without a trip through Asio's completion queue; only what
// does not fit waits for an asynchronous write. True if everything queued
// went out now.
bool RespConnection::flush()
{
    if (writing() || life_ == Life::closed)
        return false;
    if (output_.empty())
        return true;
    boost::system::error_code error;
    const std::size_t written = socket_.write_some(asio::buffer(output_), error); // non-blocking socket
    if (error && error != asio::error::would_block && error != asio::error::try_again) {
        close();
        return false;
    }
    if (written > 0)
        note_progress();
    if (written == output_.size()) {
        output_.clear();
        if (life_ == Life::closing) {
            close();
            return false;
        }
        return true;
    }
    output_.erase(0, written);
    in_flight_.swap(output_); // in_flight_ was empty: output_ is now
    write_rest();
    return false;
}

// Writes in_flight_ (not empty) asynchronously; what is answered meanwhile
// queues in output_.
void RespConnection::write_rest()
{
    asio::async_write(socket_, asio::buffer(in_flight_),
        [self = shared_from_this()](const boost::system::error_code& error, std::size_t) {
            self->in_flight_.clear();
            if (self->life_ == Life::closed)
                return;
            self->note_progress();
            if (error || (self->life_ == Life::closing && self->output_.empty())) {
                self->close();
                return;
            }
            self->process();
        });
}

// The client owes us something: reading its replies, the rest of a request,
// or patience with input it queued behind an owed reply.
bool RespConnection::waiting_on_client() const { return writing() || parser_.buffered() > 0; }

void RespConnection::note_progress()
{
    if (stall_ == Stall::armed)
        stall_ = Stall::moved;
}

void RespConnection::watch_for_stall()
{
    if (life_ == Life::closed || stall_ != Stall::idle || !waiting_on_client())
        return;
    stall_ = Stall::armed;
    stall_timer_.expires_after(server_->config.stall_timeout);
    stall_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& error) {
        const bool moved = self->stall_ == Stall::moved;
        self->stall_ = Stall::idle;
        if (error || self->life_ == Life::closed)
            return;
        if (!moved && self->waiting_on_client()) {
            if (self->writing())
                self->drop("it stopped reading its replies");
            else if (self->call_ == Call::owed)
                self->drop("it kept sending requests behind a reply that is still pending");
            else
                self->drop("it stopped in the middle of a request");
            return;
        }
        self->watch_for_stall();
    });
}

void RespConnection::drop(const std::string& why)
{
    peer_event_log().log(LogLevel::warning, "dropped a client of " + server_->where + ": " + why + " (" + describe_peer(socket_.native_handle()) + ")");
    close();
}

void RespConnection::log_if_refusal(std::string_view reply)
{
    // Only the refusals a client's own behaviour or identity brings about;
    // FULL, NOTFOUND and the rest are answers, not events. Most replies are
    // no error at all: one byte says so.
    if (reply.empty() || reply[0] != '-')
        return;
    for (ErrorCode code : { ErrorCode::limit, ErrorCode::denied }) {
        const std::string_view word = wire_word(code);
        if (reply.size() > word.size() + 1 && reply.substr(1, word.size()) == word && reply[word.size() + 1] == ' ') {
            const std::size_t end = reply.find("\r\n");
            const std::string_view text = reply.substr(1, end == std::string_view::npos ? end : end - 1);
            peer_event_log().log(LogLevel::warning, "refused a request of a client of " + server_->where + ": " + printable(text)
                + " (" + describe_peer(socket_.native_handle()) + ")");
            return;
        }
    }
}

} // namespace kv
