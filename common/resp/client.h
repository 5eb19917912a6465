// A blocking RESP client over a Unix socket: what kvctl and the tests use to
// make calls to registryd and to buckets.
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

struct ConnectOptions {
    // The uid the server must run as (by SO_PEERCRED: whoever called
    // listen()); else connect() throws UntrustedPeer before sending anything.
    std::optional<uid_t> expected_peer_uid;
    // connect() and every later send and receive give up at this instant
    // with TimedOut. None: they wait as long as it takes.
    std::optional<std::chrono::steady_clock::time_point> deadline;
};

class Client {
public:
    // Connects to the socket at `path`; throws SystemError naming the path
    // (ENOENT, ECONNREFUSED: nobody is listening there), TimedOut if the
    // listener's backlog stays full past the deadline, UntrustedPeer.
    static Client connect(const std::string& path, const ConnectOptions& options = {});

    // Replaces the deadline for the sends and receives that follow.
    void set_deadline(std::optional<std::chrono::steady_clock::time_point> deadline) { deadline_ = deadline; }

    // Sends one request and waits for its reply. Throws ConnectionClosed if
    // the peer hangs up first, TimedOut past the deadline, SystemError on a
    // socket error.
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

    UniqueFd fd_;
    std::string path_;
    std::string buffer_;
    std::optional<std::chrono::steady_clock::time_point> deadline_;
};

} // namespace kv
