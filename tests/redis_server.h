// RedisServer: a real redis-server (Debian's), the reference kv's replies are
// compared with, started by a test on a Unix socket in a directory of its own
// and stopped with it. Persistence is off, as a bucket has none.
//
// It is ready when it says so: it runs with `--supervised systemd` and a
// NOTIFY_SOCKET of the test's own (redis-server sends READY=1 once it
// accepts connections, as sd_notify does), so nothing polls or sleeps.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "daemon_fixture.h"
#include "unique_fd.h"

namespace kv::test {

class RedisServer {
public:
    // The path of redis-server on PATH, or "" (KV_REQUIRE it in SetUp).
    static std::string program() { return find_program("redis-server"); }

    // Starts it with these extra arguments (`--maxmemory 1mb` ...) and waits
    // for its READY=1; throws std::runtime_error if it exits or stays silent.
    explicit RedisServer(std::vector<std::string> extra_arguments = {});
    // SIGTERM, then waits for the exit.
    ~RedisServer();
    RedisServer(const RedisServer&) = delete;
    RedisServer& operator=(const RedisServer&) = delete;

    const std::string& socket() const { return socket_; }
    pid_t pid() const { return pid_; }
    Client connect() const { return Client::connect(socket_); }

private:
    void wait_until_ready(int notify);
    void stop();

    TemporaryDirectory directory_;
    std::string socket_;
    pid_t pid_ = -1;
    UniqueFd pidfd_;
};

} // namespace kv::test
