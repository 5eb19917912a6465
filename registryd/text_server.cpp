#include "text_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "bucket.h"
#include "log.h"
#include "password_file.h"
#include "pidfd.h"
#include "system_error.h"
#include "tcp_peer.h"

namespace kv {

TextServer::TextServer(asio::io_context& io, TcpListener listener, TextServerOptions options)
    : io_(io)
    , listener_(std::move(listener.fd))
    , address_(std::move(listener.address))
    , options_(std::move(options))
    , timer_(io)
{
    if (!options_.password.empty())
        password_ = password_descriptor(std::exchange(options_.password, {}));
}

TextServer::~TextServer()
{
    if (!pidfd_)
        return;
    kill_group();
    siginfo_t info {};
    ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_->native_handle()), &info, WEXITED);
}

std::string TextServer::describe() const { return "text server on " + address_ + " (textd pid " + std::to_string(pid_) + ")"; }

void TextServer::start() { spawn(); }

void TextServer::spawn()
{
    TextServerLaunch launch;
    launch.textd_path = options_.textd_path;
    launch.address = address_;
    launch.environment.instance = options_.instance;
    launch.environment.listen_fd = listener_.get();
    launch.environment.run_dir = options_.run_dir;
    launch.environment.server_config = options_.server;
    launch.environment.log_level = options_.log_level;
    launch.environment.password_fd = password_ ? password_.get() : -1;
    SpawnedProcess spawned;
    try {
        spawned = spawn_text_server(launch);
    } catch (const std::exception& error) {
        // As for a crash: try again later, and say so.
        log_line(LogLevel::error, "unable to start the text server on " + address_ + ": " + error.what() + "; trying again in "
                + std::to_string(options_.supervision.max_seconds.count()) + " s");
        timer_.expires_after(options_.supervision.max_seconds);
        timer_.async_wait([this](const boost::system::error_code& error) {
            if (!error && !stopping_)
                spawn();
        });
        return;
    }
    pid_ = spawned.pid;
    ready_text_.clear();
    pidfd_ = std::make_unique<asio::posix::stream_descriptor>(io_, spawned.pidfd.release());
    ready_pipe_ = std::make_unique<asio::posix::stream_descriptor>(io_, spawned.ready_pipe.release());
    ready_pipe_->async_wait(asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& error) {
        if (!error)
            on_readable_pipe();
    });
    pidfd_->async_wait(asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& error) {
        if (!error)
            on_exit();
    });
    // Edge-triggered reactor: an exit before the arming above would be missed.
    siginfo_t info {};
    if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_->native_handle()), &info, WEXITED | WNOHANG | WNOWAIT) == 0
        && info.si_pid != 0)
        asio::post(io_, [this, pid = pid_] {
            if (pid_ == pid && pidfd_)
                on_exit();
        });
}

void TextServer::on_readable_pipe()
{
    if (!ready_pipe_)
        return;
    std::string why;
    switch (read_readiness(ready_pipe_->native_handle(), ready_text_, why)) {
    case Readiness::waiting:
        ready_pipe_->async_wait(asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& error) {
            if (!error)
                on_readable_pipe();
        });
        return;
    case Readiness::ready: log_line(LogLevel::notice, describe() + " ready"); break;
    case Readiness::failed: log_line(LogLevel::error, describe() + " could not start: " + why); break;
    case Readiness::closed: break; // its exit says the rest
    }
    ready_pipe_.reset();
}

void TextServer::kill_group()
{
    // Its handlers share its process group (they are its children, forked
    // without a session of their own); the pidfd reaches textd even if it
    // left the group.
    if (pid_ > 1 && ::kill(-pid_, SIGKILL) == -1 && errno != ESRCH)
        log_line(LogLevel::error, describe() + ": unable to kill its process group: " + std::strerror(errno));
    if (pidfd_ && ::pidfd_send_signal(pidfd_->native_handle(), SIGKILL, nullptr, 0) == -1 && errno != ESRCH)
        log_line(LogLevel::error, describe() + ": unable to send SIGKILL: " + std::strerror(errno));
}

void TextServer::on_exit()
{
    siginfo_t info {};
    if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_->native_handle()), &info, WEXITED | WNOHANG | WNOWAIT) == -1
        || info.si_pid == 0) {
        pidfd_->async_wait(asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& error) {
            if (!error)
                on_exit();
        });
        return;
    }
    // Unreaped, it keeps its pid and so its group's id: kill the group
    // (the handlers still serving), then reap.
    const ExitReason reason { info.si_code, info.si_status };
    if (ready_pipe_)
        on_readable_pipe(); // its last words, if it could not start
    ready_pipe_.reset();
    kill_group();
    ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_->native_handle()), &info, WEXITED | WNOHANG);
    const std::string who = describe();
    pidfd_.reset();
    pid_ = -1;
    if (stopping_) {
        timer_.cancel();
        log_line(LogLevel::info, who + " stopped");
        if (auto done = std::exchange(stopped_, nullptr))
            done();
        return;
    }
    ++restarts_;
    std::chrono::milliseconds delay { 0 };
    if (intensity_.admit(std::chrono::steady_clock::now(), options_.supervision)) {
        delay = intensity_.delay(options_.supervision);
        log_line(LogLevel::warning, who + " " + reason.describe() + "; restarting" + (delay.count() > 0 ? " in " + std::to_string(delay.count()) + " ms" : ""));
    } else {
        delay = options_.supervision.max_seconds;
        log_line(LogLevel::error, who + " " + reason.describe() + "; it ended " + std::to_string(intensity_.recent()) + " times in "
                + std::to_string(options_.supervision.max_seconds.count()) + " s, restarting in " + std::to_string(options_.supervision.max_seconds.count()) + " s");
    }
    if (delay.count() == 0) {
        spawn();
        return;
    }
    timer_.expires_after(delay);
    timer_.async_wait([this](const boost::system::error_code& error) {
        if (!error && !stopping_)
            spawn();
    });
}

void TextServer::stop(std::function<void()> done)
{
    stopping_ = true;
    timer_.cancel();
    if (!pidfd_) {
        done();
        return;
    }
    stopped_ = std::move(done);
    if (::pidfd_send_signal(pidfd_->native_handle(), SIGTERM, nullptr, 0) == -1 && errno != ESRCH)
        log_line(LogLevel::error, describe() + ": unable to send SIGTERM: " + std::strerror(errno));
    timer_.expires_after(options_.stop_grace);
    timer_.async_wait([this](const boost::system::error_code& error) {
        if (!error && pidfd_) {
            log_line(LogLevel::warning, describe() + " still running " + std::to_string(options_.stop_grace.count()) + " ms after SIGTERM; SIGKILL");
            kill_group();
        }
    });
}

} // namespace kv
