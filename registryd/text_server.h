// TextServer: registryd's supervisor of textd, the guide's text server
// (--text-listen). The TCP socket is bound here, once, and handed to each
// textd registryd starts: while textd is being restarted, clients queue in
// the socket's backlog instead of being refused.
//
// textd is a permanent child in OTP's words: restarted after any exit but the
// one registryd asks for at its shutdown. It is monitored, not linked, as a
// bucket is (pidfd readable, then its process group killed, then waitid), so
// nothing it does reaches the registry or a bucket. It is never given up:
// within --max-restarts in --max-seconds a restart is immediate (after
// --restart-delay-ms, doubled as a bucket's is); past that, a crash loop, the
// next start waits --max-seconds, and each is logged.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "asio.h"
#include "spawn.h"
#include "supervision.h"
#include "tcp_listener.h"
#include "unique_fd.h"

namespace kv {

struct TextServerOptions {
    std::string textd_path;
    std::string run_dir;
    std::string instance;
    ServerConfig server;
    LogLevel log_level = LogLevel::info;
    SupervisionOptions supervision;   // its intensity and delay (its policy is always permanent)
    std::chrono::milliseconds stop_grace { 2000 };
    // --password-file's ("": none): handed to textd as buckets get it, in a
    // sealed memfd (password_file.h), for the buckets of other nodes it
    // reaches over TCP with AUTH.
    std::string password;
};

class TextServer {
public:
    TextServer(asio::io_context& io, TcpListener listener, TextServerOptions options);
    // Kills and reaps textd (and its handlers) if it still runs.
    ~TextServer();

    void start();
    // Stops textd (SIGTERM, SIGKILL after the stop grace) and its handlers,
    // reaps it, then calls `done`; no restart follows.
    void stop(std::function<void()> done);

    const std::string& address() const { return address_; }
    pid_t pid() const { return pid_; } // -1 while none runs
    std::uint64_t restarts() const { return restarts_; }

private:
    void spawn();
    void on_readable_pipe();
    void on_exit();
    void kill_group();
    std::string describe() const;

    asio::io_context& io_;
    UniqueFd listener_;
    UniqueFd password_; // the memfd each textd is handed, when there is a password
    std::string address_;
    TextServerOptions options_;
    pid_t pid_ = -1;
    std::unique_ptr<asio::posix::stream_descriptor> pidfd_;
    std::unique_ptr<asio::posix::stream_descriptor> ready_pipe_;
    std::string ready_text_;
    asio::steady_timer timer_; // the next start, or the stop grace
    RestartIntensity intensity_;
    std::uint64_t restarts_ = 0;
    bool stopping_ = false;
    std::function<void()> stopped_;
};

} // namespace kv
