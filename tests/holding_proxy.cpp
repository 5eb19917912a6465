#include "holding_proxy.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>
#include <strings.h>

#include "system_error.h"

namespace kv::test {

namespace {

UniqueFd connect_loopback(unsigned port)
{
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in address {};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == -1)
        return UniqueFd();
    return fd;
}

// Waits until `fd` is readable or the proxy stops (`wake` readable): true
// for the first.
bool readable(int fd, int wake)
{
    pollfd fds[2] = { { fd, POLLIN, 0 }, { wake, POLLIN, 0 } };
    while (::poll(fds, 2, -1) == -1)
        if (errno != EINTR)
            return false;
    return fds[1].revents == 0;
}

bool write_all(int fd, const char* data, std::size_t size)
{
    while (size > 0) {
        const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
        if (n <= 0)
            return false;
        data += n;
        size -= static_cast<std::size_t>(n);
    }
    return true;
}

// The request is whole once its headers and Content-Length body are in.
bool request_complete(const std::string& text)
{
    const std::size_t end = text.find("\r\n\r\n");
    if (end == std::string::npos)
        return false;
    std::size_t length = 0;
    for (std::size_t line = text.find("\r\n") + 2; line < end;) {
        const std::size_t next = text.find("\r\n", line);
        const std::string header = text.substr(line, next - line);
        if (header.size() > 15 && ::strncasecmp(header.c_str(), "content-length:", 15) == 0)
            length = std::stoul(header.substr(15));
        line = next + 2;
    }
    return text.size() >= end + 4 + length;
}

} // namespace

HoldingProxy::HoldingProxy(const std::string& upstream)
{
    upstream_port_ = static_cast<unsigned>(std::stoul(upstream.substr(upstream.rfind(':') + 1)));
    listener_ = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in address {};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t size = sizeof address;
    if (!listener_ || ::bind(listener_.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == -1
        || ::listen(listener_.get(), 128) == -1 || ::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&address), &size) == -1)
        throw SystemError("unable to listen", "the holding proxy's port", errno);
    port_ = ntohs(address.sin_port);
    int wake[2];
    if (::pipe2(wake, O_CLOEXEC) == -1)
        throw SystemError("unable to make", "the holding proxy's pipe", errno);
    wake_read_ = UniqueFd(wake[0]);
    wake_write_ = UniqueFd(wake[1]);
    accept_thread_ = std::thread([this] { accept_loop(); });
}

HoldingProxy::~HoldingProxy()
{
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    changed_.notify_all();
    [[maybe_unused]] auto n = ::write(wake_write_.get(), "x", 1);
    accept_thread_.join();
    for (auto& thread : connections_) // the accept loop has ended: no more are added
        thread.join();
}

void HoldingProxy::hold_if(std::function<bool(const std::string&)> hold)
{
    std::lock_guard lock(mutex_);
    hold_ = std::move(hold);
}

void HoldingProxy::release_held()
{
    {
        std::lock_guard lock(mutex_);
        ++releases_;
    }
    changed_.notify_all();
}

void HoldingProxy::forget_seen()
{
    std::lock_guard lock(mutex_);
    requests_.clear();
}

bool HoldingProxy::seen(const std::function<bool(const std::string&)>& match) const
{
    std::lock_guard lock(mutex_);
    for (const auto& request : requests_)
        if (match(request))
            return true;
    return false;
}

bool HoldingProxy::wait_for(const std::function<bool(const std::string&)>& match, std::chrono::milliseconds deadline)
{
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, deadline, [&] {
        for (const auto& request : requests_)
            if (match(request))
                return true;
        return false;
    });
}

void HoldingProxy::accept_loop()
{
    while (readable(listener_.get(), wake_read_.get())) {
        UniqueFd client(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!client)
            continue;
        std::lock_guard lock(mutex_);
        connections_.emplace_back([this, fd = std::make_shared<UniqueFd>(std::move(client))] { serve(std::move(*fd)); });
    }
}

void HoldingProxy::serve(UniqueFd client)
{
    std::string request;
    char buffer[65536];
    while (!request_complete(request)) {
        if (!readable(client.get(), wake_read_.get()))
            return;
        const ssize_t n = ::recv(client.get(), buffer, sizeof buffer, 0);
        if (n <= 0)
            return;
        request.append(buffer, static_cast<std::size_t>(n));
    }
    {
        std::unique_lock lock(mutex_);
        requests_.push_back(request);
        changed_.notify_all();
        if (hold_ && hold_(request)) {
            const unsigned long long releases = releases_;
            changed_.wait(lock, [&] { return stopping_ || releases_ != releases; });
            if (stopping_)
                return;
        }
    }
    UniqueFd upstream = connect_loopback(upstream_port_);
    if (!upstream || !write_all(upstream.get(), request.data(), request.size()))
        return;
    // Both ways until either side closes (or the proxy stops).
    pollfd fds[3] = { { client.get(), POLLIN, 0 }, { upstream.get(), POLLIN, 0 }, { wake_read_.get(), POLLIN, 0 } };
    for (;;) {
        if (::poll(fds, 3, -1) == -1) {
            if (errno == EINTR)
                continue;
            return;
        }
        if (fds[2].revents)
            return;
        for (int side = 0; side < 2; ++side) {
            if (!fds[side].revents)
                continue;
            const ssize_t n = ::recv(fds[side].fd, buffer, sizeof buffer, 0);
            if (n <= 0 || !write_all(fds[1 - side].fd, buffer, static_cast<std::size_t>(n)))
                return;
        }
    }
}

} // namespace kv::test
