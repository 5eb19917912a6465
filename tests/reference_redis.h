// The reference kv's replies are compared with, byte for byte: a real
// redis-server (Debian's 7.0, found on PATH) started by a test on a Unix
// socket in a temporary directory, persisting nothing; and a raw connection
// that hands back each reply's exact bytes. Tests state the prerequisite
// with KV_REQUIRE(!find_program("redis-server").empty(), ...).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "daemon_fixture.h"
#include "unique_fd.h"

namespace kv::test {

class ReferenceRedis {
public:
    // Starts redis-server --port 0 --unixsocket <temp>/redis.sock --save ''
    // --appendonly no --databases 1, ready once this returns: it runs as a systemd service
    // would (--supervised systemd) and says READY=1 on a datagram socket of
    // the test's own (NOTIFY_SOCKET), after its listening socket is open.
    // Throws if it is not ready within 10 s (and then stops it).
    // `extra_arguments` go last ("--requirepass", "pw").
    explicit ReferenceRedis(std::vector<std::string> extra_arguments = {});
    // SIGKILL and reap: nothing of it outlives the test.
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

// One connection that hands back each reply's exact bytes.
class RawConnection {
public:
    // Connects to the Unix socket at `path` (its server is ready), with a
    // 20 s receive timeout so a missing reply fails instead of hanging.
    explicit RawConnection(const std::string& path);
    // Connects over TCP to `address`, "127.0.0.1:PORT" (IPv4).
    static RawConnection tcp(const std::string& address);

    // Sends one request and returns the bytes of its whole reply (read until
    // parse_value() finds one complete reply). Throws if the server closes
    // the connection or the timeout passes first.
    std::string call(const std::vector<std::string>& request);

    int fd() const { return fd_.get(); }

private:
    explicit RawConnection(UniqueFd connected);

    UniqueFd fd_;
    std::string buffer_;
};

} // namespace kv::test
