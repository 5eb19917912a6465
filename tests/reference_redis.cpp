#include "reference_redis.h"

#include <signal.h>
#include <spawn.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>
#include <string_view>

#include "require.h"
#include "resp.h"

extern char** environ;

namespace kv::test {

namespace {

sockaddr_un unix_address(const std::string& path)
{
    sockaddr_un address {};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
    return address;
}

} // namespace

ReferenceRedis::ReferenceRedis(std::vector<std::string> extra_arguments)
    : socket_(directory_.path() + "/redis.sock")
{
    const std::string program = find_program("redis-server");
    if (program.empty())
        throw std::runtime_error("redis-server is not on PATH");
    const std::string directory = directory_.path();
    const std::string notify_path = directory + "/notify.sock";
    UniqueFd notify(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_un address = unix_address(notify_path);
    if (::bind(notify.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0)
        throw std::runtime_error("unable to bind " + notify_path + ": " + std::strerror(errno));
    std::vector<std::string> arguments = { program, "--port", "0", "--unixsocket", socket_, "--unixsocketperm", "700",
        "--save", "", "--appendonly", "no", "--dir", directory, "--daemonize", "no", "--supervised", "systemd",
        "--logfile", directory + "/redis.log",
        // One database, as a bucket has: SELECT 1 is then out of range for both.
        "--databases", "1" };
    arguments.insert(arguments.end(), extra_arguments.begin(), extra_arguments.end());
    std::vector<char*> argv;
    for (auto& argument : arguments)
        argv.push_back(argument.data());
    argv.push_back(nullptr);
    std::vector<std::string> environment = { "NOTIFY_SOCKET=" + notify_path };
    for (char** entry = environ; *entry; ++entry)
        if (std::strncmp(*entry, "NOTIFY_SOCKET=", 14) != 0)
            environment.emplace_back(*entry);
    std::vector<char*> envp;
    for (auto& entry : environment)
        envp.push_back(entry.data());
    envp.push_back(nullptr);
    if (::posix_spawn(&pid_, program.c_str(), nullptr, nullptr, argv.data(), envp.data()) != 0)
        throw std::runtime_error("unable to start " + program);
    // A constructor that throws runs no destructor: stop it here first.
    for (;;) {
        if (!wait_readable(notify.get(), 10s)) {
            stop();
            throw std::runtime_error(program + " not ready within 10 s (see " + directory + "/redis.log)");
        }
        char message[4096];
        const ssize_t n = ::recv(notify.get(), message, sizeof message, 0);
        if (n > 0 && std::string_view(message, static_cast<std::size_t>(n)).find("READY=1") != std::string_view::npos)
            break;
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

RawConnection::RawConnection(const std::string& path)
    : fd_(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0))
{
    sockaddr_un address = unix_address(path);
    if (::connect(fd_.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0)
        throw std::runtime_error("unable to connect to " + path + ": " + std::strerror(errno));
    timeval timeout { 20, 0 };
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
}

RawConnection::RawConnection(UniqueFd connected)
    : fd_(std::move(connected))
{
    timeval timeout { 20, 0 };
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
}

RawConnection RawConnection::tcp(const std::string& address)
{
    const auto colon = address.rfind(':');
    sockaddr_in peer {};
    peer.sin_family = AF_INET;
    peer.sin_port = htons(static_cast<std::uint16_t>(std::stoul(address.substr(colon + 1))));
    if (colon == std::string::npos || ::inet_pton(AF_INET, address.substr(0, colon).c_str(), &peer.sin_addr) != 1)
        throw std::runtime_error("not an IPv4 address and port: " + address);
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&peer), sizeof peer) != 0)
        throw std::runtime_error("unable to connect to " + address + ": " + std::strerror(errno));
    return RawConnection(std::move(fd));
}

std::string RawConnection::call(const std::vector<std::string>& request)
{
    const std::string bytes = resp::encode_command(request);
    for (std::size_t sent = 0; sent < bytes.size();) {
        const ssize_t n = ::send(fd_.get(), bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
        if (n <= 0)
            throw std::runtime_error("send failed");
        sent += static_cast<std::size_t>(n);
    }
    for (;;) {
        std::size_t consumed = 0;
        resp::Value value;
        if (resp::parse_value(buffer_, consumed, value) == resp::ParseResult::complete) {
            std::string reply = buffer_.substr(0, consumed);
            buffer_.erase(0, consumed);
            return reply;
        }
        char chunk[65536];
        const ssize_t n = ::recv(fd_.get(), chunk, sizeof chunk, 0);
        if (n <= 0)
            throw std::runtime_error("connection closed or timed out waiting for a reply");
        buffer_.append(chunk, static_cast<std::size_t>(n));
    }
}

} // namespace kv::test
