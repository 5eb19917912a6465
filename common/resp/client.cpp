#include "client.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <memory>

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

Client Client::connect_tcp(const std::string& address, const ConnectOptions& options)
{
    const auto invalid = [&address](const std::string& why) { return std::invalid_argument("unable to connect to " + address + ": " + why); };
    const auto colon = address.rfind(':');
    if (colon == std::string::npos)
        throw invalid("expected HOST:PORT or [IPv6]:PORT");
    std::string host = address.substr(0, colon);
    const std::string port = address.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    else if (host.find(':') != std::string::npos)
        throw invalid("an IPv6 address goes in brackets, [IPv6]:PORT");
    if (host.empty() || port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos
        || std::stoul(port) == 0 || std::stoul(port) > 65535)
        throw invalid("expected HOST:PORT or [IPv6]:PORT, with PORT a number from 1 to 65535");
    // Numeric only: getaddrinfo then parses and never asks DNS, which could
    // block past any deadline.
    addrinfo hints {};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    if (const int error = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found); error != 0)
        throw invalid(error == EAI_NONAME ? "HOST is not a numeric IPv4 or IPv6 address" : ::gai_strerror(error));
    const std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> results(found, &::freeaddrinfo);

    // Non-blocking, so that the handshake can be waited for with poll()
    // until the deadline (a TCP connect, unlike a Unix one, reports
    // EINPROGRESS and then POLLOUT, and its outcome in SO_ERROR).
    UniqueFd fd(check(::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), "unable to create socket for", address));
    if (::connect(fd.get(), found->ai_addr, found->ai_addrlen) == -1) {
        // EINTR: the handshake goes on regardless, as after EINPROGRESS.
        if (errno != EINPROGRESS && errno != EINTR)
            throw SystemError("unable to connect to", address, errno);
        for (;;) {
            int timeout_ms = -1;
            if (options.deadline) {
                auto left = std::chrono::ceil<std::chrono::milliseconds>(*options.deadline - Clock::now());
                if (left.count() <= 0)
                    throw timed_out(address);
                timeout_ms = static_cast<int>(std::min<long long>(left.count(), INT_MAX));
            }
            pollfd entry { fd.get(), POLLOUT, 0 };
            const int ready = ::poll(&entry, 1, timeout_ms);
            if (ready > 0)
                break;
            if (ready == -1 && errno != EINTR)
                throw SystemError("unable to wait for", address, errno);
        }
        int error = 0;
        socklen_t size = sizeof error;
        check(::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &size), "unable to read the connection state of", address);
        if (error != 0)
            throw SystemError("unable to connect to", address, error);
    }
    // Blocking again, as a Unix client's socket is: with a deadline every
    // call polls first and passes MSG_DONTWAIT; without one it blocks.
    const int flags = check(::fcntl(fd.get(), F_GETFL), "unable to configure socket for", address);
    check(::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK), "unable to configure socket for", address);
    // A request is one send and waits for its reply: Nagle would only
    // delay the rare request that takes two.
    const int one = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    Client client(std::move(fd), address, options.deadline);
    client.transport_ = Transport::tcp;
    if (options.password)
        client.authenticate(*options.password);
    return client;
}

void Client::authenticate(const std::string& password)
{
    const resp::Value reply = call({ "AUTH", password });
    if (!reply.is_error())
        return;
    const bool wrong = reply.text.rfind("WRONGPASS", 0) == 0;
    throw AuthenticationFailed("unable to authenticate to " + path_ + ": " + (wrong ? "the password was refused (" + reply.text + ")" : reply.text));
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
    }
    resp::Value reply = read_reply();
    // A TCP server with a password answers every command but AUTH and HELLO
    // with NOAUTH until the client authenticates (Redis's requirepass).
    if (transport_ == Transport::tcp && reply.is_error() && reply.text.rfind("NOAUTH", 0) == 0)
        throw AuthenticationFailed("unable to use " + path_ + ": it asks for a password, and none was given (" + reply.text + ")");
    return reply;
}

} // namespace kv
