// A real redis-server (Debian's, found on PATH) started by a test on a Unix
// socket in a temporary directory, with nothing persisted: the reference kv's
// replies are compared with byte for byte. Tests state the prerequisite with
// KV_REQUIRE(!find_program("redis-server").empty(), "redis-server on PATH").
#pragma once

#include <sys/types.h>

#include <string>

#include "daemon_fixture.h"
#include "unique_fd.h"

namespace kv::test {

class ReferenceRedis {
public:
    // Starts redis-server --port 0 --unixsocket <temp>/redis.sock --save ''
    // --appendonly no and returns once it says it accepts connections (it
    // listens before it says so). Throws if it does not within 10 s.
    ReferenceRedis();
    // SIGKILL and reap.
    ~ReferenceRedis();
    ReferenceRedis(const ReferenceRedis&) = delete;
    ReferenceRedis& operator=(const ReferenceRedis&) = delete;

    const std::string& socket() const { return socket_; }

private:
    void stop();

    TemporaryDirectory directory_;
    std::string socket_;
    pid_t pid_ = -1;
};

// One request on an open connection, and the bytes of its whole reply as
// they came (read until parse_value() finds one complete reply).
std::string raw_call(int fd, const std::vector<std::string>& request);

// A raw connection to a Unix socket, with a receive timeout.
UniqueFd connect_raw(const std::string& path);

} // namespace kv::test
