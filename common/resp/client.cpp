#include "client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "run_dir.h"
#include "system_error.h"

namespace kv {

namespace {

using Clock = std::chrono::steady_clock;

TimedOut timed_out(const std::string& path) { return TimedOut("timed out waiting for " + path); }

// SO_SNDTIMEO also bounds how long connect() on a Unix socket waits for room
// in the listener's backlog. 0 means "no limit" to the kernel, so a positive
// time is rounded up to at least a microsecond.
void set_send_timeout(int fd, std::chrono::microseconds timeout, const std::string& path)
{
    timeval value { static_cast<time_t>(timeout.count() / 1000000), static_cast<suseconds_t>(timeout.count() % 1000000) };
    check(::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &value, sizeof value), "unable to set a send timeout on socket for", path);
}

} // namespace

Client Client::connect(const std::string& path, const ConnectOptions& options)
{
    check_socket_path_length(path);
    UniqueFd fd(check(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "unable to create socket for", path));
    sockaddr_un address {};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path.data(), path.size());
    // A Unix-socket connect blocks while the listener's backlog is full, and
    // a non-blocking one fails with EAGAIN and leaves nothing to poll for: so
    // it stays blocking, bounded by SO_SNDTIMEO, and is retried on EINTR
    // (a failed Unix connect leaves the socket unconnected).
    for (;;) {
        if (options.deadline) {
            auto left = std::chrono::ceil<std::chrono::microseconds>(*options.deadline - Clock::now());
            if (left.count() <= 0)
                throw timed_out(path);
            set_send_timeout(fd.get(), left, path);
        }
        if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0)
            break;
        if (errno == EINTR || (errno == EAGAIN && options.deadline))
            continue; // the deadline is checked above
        throw SystemError("unable to connect to", path, errno);
    }
    if (options.deadline)
        set_send_timeout(fd.get(), std::chrono::microseconds(0), path); // later sends poll instead
    if (options.expected_peer_uid) {
        ucred peer {};
        socklen_t size = sizeof peer;
        check(::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &peer, &size), "unable to read the peer credentials of", path);
        if (peer.uid != *options.expected_peer_uid)
            throw UntrustedPeer("unable to trust " + path + ": it is served by uid " + std::to_string(peer.uid)
                + ", not uid " + std::to_string(*options.expected_peer_uid));
    }
    return Client(std::move(fd), path, options.deadline);
}

void Client::wait_until_ready(short events) const
{
    if (!deadline_)
        return;
    for (;;) {
        auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline_ - Clock::now());
        if (left.count() <= 0)
            throw timed_out(path_);
        pollfd entry { fd_.get(), events, 0 };
        int ready = ::poll(&entry, 1, static_cast<int>(std::min<long long>(left.count(), INT_MAX)));
        if (ready > 0)
            return; // ready, or POLLHUP/POLLERR: the call that follows says which
        if (ready == -1 && errno != EINTR)
            throw SystemError("unable to wait for", path_, errno);
    }
}

// With a deadline every send and receive is non-blocking (after poll said
// ready); without one they block as they always did, SO_RCVTIMEO included.
int Client::io_flags() const { return deadline_ ? MSG_DONTWAIT : 0; }

void Client::send_raw(std::string_view bytes)
{
    while (!bytes.empty()) {
        wait_until_ready(POLLOUT);
        auto sent = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL | io_flags());
        if (sent == -1) {
            if (errno == EINTR || ((errno == EAGAIN || errno == EWOULDBLOCK) && deadline_))
                continue;
            if (errno == EPIPE || errno == ECONNRESET)
                throw ConnectionClosed("connection to " + path_ + " closed before the request was sent");
            throw SystemError("unable to send to", path_, errno);
        }
        bytes.remove_prefix(static_cast<std::size_t>(sent));
    }
}

resp::Value Client::read_reply()
{
    for (;;) {
        resp::Value value;
        std::size_t consumed = 0;
        auto result = resp::parse_value(buffer_, consumed, value);
        if (result == resp::ParseResult::complete) {
            buffer_.erase(0, consumed);
            return value;
        }
        if (result == resp::ParseResult::invalid)
            throw std::runtime_error("unable to read reply from " + path_ + ": malformed RESP");
        wait_until_ready(POLLIN);
        char chunk[16 * 1024];
        auto received = ::recv(fd_.get(), chunk, sizeof chunk, io_flags());
        if (received == 0)
            throw ConnectionClosed("connection to " + path_ + " closed before the reply");
        if (received == -1) {
            if (errno == EINTR || ((errno == EAGAIN || errno == EWOULDBLOCK) && deadline_))
                continue;
            if (errno == ECONNRESET)
                throw ConnectionClosed("connection to " + path_ + " reset before the reply");
            throw SystemError("unable to receive from", path_, errno);
        }
        buffer_.append(chunk, static_cast<std::size_t>(received));
    }
}

resp::Value Client::call(const std::vector<std::string>& arguments)
{
    try {
        send_raw(resp::encode_command(arguments));
    } catch (const ConnectionClosed&) {
        // A server that refuses a client (permission, connection limit) says
        // why in one line and closes, possibly before our request got there:
        // the reason is still waiting in our receive buffer.
        return read_reply();
    }
    return read_reply();
}

} // namespace kv
