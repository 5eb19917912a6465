// A blocking RESP client over a Unix socket: what kvctl and the tests use to
// make calls to registryd and to buckets.
#pragma once

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

class Client {
public:
    // Connects to the socket at `path`; throws SystemError naming the path
    // (ENOENT, ECONNREFUSED: nobody is listening there).
    static Client connect(const std::string& path);

    // Sends one request and waits for its reply. Throws ConnectionClosed if
    // the peer hangs up first, SystemError on a socket error.
    resp::Value call(const std::vector<std::string>& arguments);

    // Sends bytes as they are (for tests of malformed input).
    void send_raw(std::string_view bytes);
    // Waits for the next reply.
    resp::Value read_reply();

    int fd() const { return fd_.get(); }

private:
    explicit Client(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}

    UniqueFd fd_;
    std::string path_;
    std::string buffer_;
};

} // namespace kv
