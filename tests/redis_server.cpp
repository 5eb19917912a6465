#include "redis_server.h"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>

#include "system_error.h"

extern char** environ;

namespace kv::test {

namespace {

// How long redis-server may take to say READY=1 (it takes milliseconds; a
// loaded CI machine, or a sanitizer build of the test, may be far slower).
constexpr auto ready_timeout = 30s;

UniqueFd bound_datagram_socket(const std::string& path)
{
    UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!fd)
        throw SystemError("unable to create the notify socket", path, errno);
    sockaddr_un address {};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0)
        throw SystemError("unable to bind the notify socket", path, errno);
    return fd;
}

} // namespace

RedisServer::RedisServer(std::vector<std::string> extra_arguments)
    : socket_(directory_.path() + "/redis.sock")
{
    const std::string notify_path = directory_.path() + "/notify.sock";
    UniqueFd notify = bound_datagram_socket(notify_path);
    std::vector<std::string> arguments = { program(), "--port", "0", "--unixsocket", socket_, "--unixsocketperm", "700",
        "--save", "", "--appendonly", "no", "--daemonize", "no", "--supervised", "systemd", "--dir", directory_.path(),
        "--logfile", directory_.path() + "/redis.log" };
    arguments.insert(arguments.end(), extra_arguments.begin(), extra_arguments.end());
    std::vector<std::string> environment_strings;
    for (char** entry = environ; *entry; ++entry) {
        if (std::strncmp(*entry, "NOTIFY_SOCKET=", 14) != 0)
            environment_strings.emplace_back(*entry);
    }
    environment_strings.push_back("NOTIFY_SOCKET=" + notify_path);
    std::vector<char*> c_arguments, c_environment;
    for (auto& argument : arguments)
        c_arguments.push_back(argument.data());
    c_arguments.push_back(nullptr);
    for (auto& entry : environment_strings)
        c_environment.push_back(entry.data());
    c_environment.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    int error = ::posix_spawn(&pid_, arguments[0].c_str(), &actions, nullptr, c_arguments.data(), c_environment.data());
    posix_spawn_file_actions_destroy(&actions);
    if (error)
        throw SystemError("unable to spawn", arguments[0], error);
    pidfd_ = open_pidfd(pid_);
    try {
        wait_until_ready(notify.get());
    } catch (...) {
        stop();
        throw;
    }
}

void RedisServer::wait_until_ready(int notify)
{
    // READY=1 comes in its own datagram (STATUS= lines come before it); the
    // pidfd turning readable means it exited instead.
    const auto deadline = std::chrono::steady_clock::now() + ready_timeout;
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        pollfd fds[2] = { { notify, POLLIN, 0 }, { pidfd_.get(), POLLIN, 0 } };
        if (left.count() <= 0 || ::poll(fds, 2, static_cast<int>(left.count())) <= 0)
            throw std::runtime_error("redis-server did not say READY=1 within " + std::to_string(ready_timeout.count()) + " s");
        if (fds[1].revents)
            throw std::runtime_error("redis-server exited before it was ready; see " + directory_.path() + "/redis.log");
        char message[4096];
        auto n = ::recv(notify, message, sizeof message, 0);
        if (n > 0 && std::string_view(message, static_cast<std::size_t>(n)).find("READY=1") != std::string_view::npos)
            return;
    }
}

RedisServer::~RedisServer() { stop(); }

void RedisServer::stop()
{
    if (pid_ <= 0)
        return;
    kill_process(pid_, SIGTERM);
    if (!wait_readable(pidfd_.get(), 30s))
        kill_process(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
}

} // namespace kv::test
