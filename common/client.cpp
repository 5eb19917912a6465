#include "client.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

#include "run_dir.h"
#include "system_error.h"

namespace kv {

Client Client::connect(const std::string& path)
{
    check_socket_path_length(path);
    UniqueFd fd(check(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "unable to create socket for", path));
    sockaddr_un address {};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path.data(), path.size());
    check(::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), "unable to connect to", path);
    return Client(std::move(fd), path);
}

void Client::send_raw(std::string_view bytes)
{
    while (!bytes.empty()) {
        auto sent = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (sent == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EPIPE || errno == ECONNRESET)
                throw ConnectionClosed("connection to " + path_ + " closed before the request was sent");
            throw SystemError("unable to send to", path_, errno);
        }
        bytes.remove_prefix(static_cast<std::size_t>(sent));
    }
}

resp::Value Client::read_reply()
{
    for (;;) {
        resp::Value value;
        std::size_t consumed = 0;
        auto result = resp::parse_value(buffer_, consumed, value);
        if (result == resp::ParseResult::complete) {
            buffer_.erase(0, consumed);
            return value;
        }
        if (result == resp::ParseResult::invalid)
            throw std::runtime_error("unable to read reply from " + path_ + ": malformed RESP");
        char chunk[16 * 1024];
        auto received = ::recv(fd_.get(), chunk, sizeof chunk, 0);
        if (received == 0)
            throw ConnectionClosed("connection to " + path_ + " closed before the reply");
        if (received == -1) {
            if (errno == EINTR)
                continue;
            if (errno == ECONNRESET)
                throw ConnectionClosed("connection to " + path_ + " reset before the reply");
            throw SystemError("unable to receive from", path_, errno);
        }
        buffer_.append(chunk, static_cast<std::size_t>(received));
    }
}

resp::Value Client::call(const std::vector<std::string>& arguments)
{
    try {
        send_raw(resp::encode_command(arguments));
    } catch (const ConnectionClosed&) {
        // A server that refuses a client (permission, connection limit) says
        // why in one line and closes, possibly before our request got there:
        // the reason is still waiting in our receive buffer.
        return read_reply();
    }
    return read_reply();
}

} // namespace kv
