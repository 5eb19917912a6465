#include "reference_redis.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <stdexcept>

#include "require.h"
#include "resp.h"
#include "system_error.h"

extern char** environ;

namespace kv::test {

ReferenceRedis::ReferenceRedis()
    : socket_(directory_.path() + "/redis.sock")
{
    const std::string program = find_program("redis-server");
    if (program.empty())
        throw std::runtime_error("redis-server is not on PATH");
    int pipe_ends[2];
    if (::pipe2(pipe_ends, O_CLOEXEC) == -1)
        throw SystemError("unable to create", "a pipe for redis-server", errno);
    UniqueFd read_end(pipe_ends[0]);
    UniqueFd write_end(pipe_ends[1]);
    std::vector<std::string> arguments { program, "--port", "0", "--unixsocket", socket_, "--save", "", "--appendonly", "no",
        "--dir", directory_.path(), "--daemonize", "no" };
    std::vector<char*> argv;
    for (auto& argument : arguments)
        argv.push_back(argument.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, write_end.get(), 1);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    const int error = ::posix_spawn(&pid_, program.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (error)
        throw SystemError("unable to spawn", program, error);
    write_end.reset();
    // Its log goes to stdout; it listens before it writes "ready to accept
    // connections" (7.0: "The server is now ready to accept connections at
    // <socket>"). A constructor that throws runs no destructor: stop it here.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    std::string log;
    while (log.find("ready to accept connections") == std::string::npos) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        pollfd entry { read_end.get(), POLLIN, 0 };
        if (left.count() <= 0 || ::poll(&entry, 1, static_cast<int>(left.count())) <= 0) {
            stop();
            throw std::runtime_error("redis-server did not start within 10 s: " + log);
        }
        char buffer[4096];
        const auto n = ::read(read_end.get(), buffer, sizeof buffer);
        if (n <= 0) {
            stop();
            throw std::runtime_error("redis-server exited before it was ready: " + log);
        }
        log.append(buffer, static_cast<std::size_t>(n));
    }
}

ReferenceRedis::~ReferenceRedis() { stop(); }

void ReferenceRedis::stop()
{
    if (pid_ > 1) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }
}

UniqueFd connect_raw(const std::string& path)
{
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un address {};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == -1)
        throw SystemError("unable to connect to", path, errno);
    timeval timeout { 20, 0 };
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    return fd;
}

std::string raw_call(int fd, const std::vector<std::string>& request)
{
    const std::string bytes = resp::encode_command(request);
    if (::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(bytes.size()))
        throw SystemError("unable to send", request[0], errno);
    std::string reply;
    for (;;) {
        resp::Value value;
        std::size_t consumed = 0;
        if (!reply.empty() && resp::parse_value(reply, consumed, value) == resp::ParseResult::complete)
            return reply;
        char buffer[65536];
        const auto n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n <= 0)
            return reply + "<closed>";
        reply.append(buffer, static_cast<std::size_t>(n));
    }
}

} // namespace kv::test
