// A blocking RESP client over a Unix socket or TCP: what kvctl and the tests
// use to make calls to registryd and to buckets, and kvctl and textd to reach
// a bucket on another node of a cluster (at the address LOOKUP gives, with
// AUTH: README "TCP access").
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "resp.h"
#include "unique_fd.h"

namespace kv {

// The server closed the connection before it replied (a bucket that crashed
// mid-request, a registryd that exited).
class ConnectionClosed : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The socket is served by a process of another user than the one expected:
// "unable to trust /run/kv/registry.sock: it is served by uid 1001, not uid 1000".
class UntrustedPeer : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The deadline passed first: "timed out waiting for /run/kv/registry.sock".
class TimedOut : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// A TCP server refused our password, or wants one we did not give:
// "unable to authenticate to 127.0.0.1:6400: the password was refused
// (WRONGPASS invalid username-password pair or user is disabled.)".
class AuthenticationFailed : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct ConnectOptions {
    // Unix sockets: the uid the server must run as (by SO_PEERCRED: whoever
    // called listen()); else connect() throws UntrustedPeer before sending
    // anything. A TCP peer has no uid to check: there the password is the trust.
    std::optional<uid_t> expected_peer_uid;
    // connect() and every later send and receive give up at this instant
    // with TimedOut. None: they wait as long as it takes.
    std::optional<std::chrono::steady_clock::time_point> deadline;
    // TCP: sent as AUTH right after connecting (Redis's requirepass), before
    // connect_tcp() returns. Ignored by connect() (a Unix socket asks none).
    std::optional<std::string> password;
};

class Client {
public:
    // Connects to the socket at `path`; throws SystemError naming the path
    // (ENOENT, ECONNREFUSED: nobody is listening there), TimedOut if the
    // listener's backlog stays full past the deadline, UntrustedPeer.
    static Client connect(const std::string& path, const ConnectOptions& options = {});

    // Connects over TCP to `address`, "HOST:PORT" or "[IPv6]:PORT" with HOST
    // a numeric address (as LOOKUP's address field and --listen-tcp's bound
    // address are: no name lookup, which no deadline could bound), then
    // AUTHs with options.password if given. Throws std::invalid_argument for
    // an address of another form, SystemError naming the address
    // (ECONNREFUSED: nobody listens there), TimedOut, AuthenticationFailed.
    // Once connected, the client's call() turns a NOAUTH reply (the server
    // wants a password we did not give) into AuthenticationFailed.
    static Client connect_tcp(const std::string& address, const ConnectOptions& options = {});

    // AUTH `password` (the default user's, as Redis's requirepass). Throws
    // AuthenticationFailed, with the server's reason, if it is refused.
    void authenticate(const std::string& password);

    // Replaces the deadline for the sends and receives that follow.
    void set_deadline(std::optional<std::chrono::steady_clock::time_point> deadline) { deadline_ = deadline; }

    // Sends one request and waits for its reply. Throws ConnectionClosed if
    // the peer hangs up first, TimedOut past the deadline, SystemError on a
    // socket error, and over TCP AuthenticationFailed for a NOAUTH reply.
    resp::Value call(const std::vector<std::string>& arguments);

    // Sends bytes as they are (for tests of malformed input).
    void send_raw(std::string_view bytes);
    // Waits for the next reply.
    resp::Value read_reply();

    int fd() const { return fd_.get(); }

private:
    Client(UniqueFd fd, std::string path, std::optional<std::chrono::steady_clock::time_point> deadline)
        : fd_(std::move(fd))
        , path_(std::move(path))
        , deadline_(deadline)
    {
    }

    // With a deadline: waits until the socket is ready for `events` or throws
    // TimedOut. Without one: returns at once (the call that follows blocks).
    void wait_until_ready(short events) const;
    int io_flags() const;

    enum class Transport { unix_socket, tcp };

    UniqueFd fd_;
    std::string path_; // or the TCP address, in messages
    Transport transport_ = Transport::unix_socket;
    std::string buffer_;
    std::optional<std::chrono::steady_clock::time_point> deadline_;
};

} // namespace kv
