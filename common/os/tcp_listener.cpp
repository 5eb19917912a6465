#include "tcp_listener.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "tcp_peer.h"

namespace kv {

TcpListener listen_tcp(const std::string& address)
{
    const auto fail = [&address](const std::string& why) { return std::runtime_error("unable to listen on " + address + ": " + why); };
    std::string host = "127.0.0.1";
    std::string port = address;
    if (const auto colon = address.rfind(':'); colon != std::string::npos) {
        host = address.substr(0, colon);
        port = address.substr(colon + 1);
        if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
            host = host.substr(1, host.size() - 2);
        if (host.empty())
            host = "127.0.0.1";
    }
    if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos || std::stoul(port) > 65535)
        throw fail("expected HOST:PORT or PORT, with PORT a number from 0 to 65535");
    addrinfo hints {};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* found = nullptr;
    if (const int error = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found); error != 0)
        throw fail(error == EAI_SYSTEM ? std::strerror(errno) : ::gai_strerror(error));
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> results(found, &::freeaddrinfo);
    UniqueFd listener(::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!listener)
        throw fail(std::strerror(errno));
    const int one = 1;
    ::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one); // a restart of registryd rebinds at once
    // 511: Redis's tcp-backlog; clients wait there while textd restarts.
    if (::bind(listener.get(), found->ai_addr, found->ai_addrlen) == -1 || ::listen(listener.get(), 511) == -1)
        throw fail(std::strerror(errno));
    sockaddr_storage bound {};
    socklen_t length = sizeof bound;
    if (::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&bound), &length) == -1)
        throw fail(std::strerror(errno));
    return TcpListener { std::move(listener), shown_address(bound) };
}

std::string address_host(const std::string& address)
{
    const auto colon = address.rfind(':');
    return colon == std::string::npos ? std::string() : address.substr(0, colon);
}

unsigned address_port(const std::string& address)
{
    const auto colon = address.rfind(':');
    const std::string port = colon == std::string::npos ? address : address.substr(colon + 1);
    if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
        return 0;
    return static_cast<unsigned>(std::stoul(port));
}

bool binds_every_address(const std::string& address)
{
    const std::string host = address_host(address);
    return host == "0.0.0.0" || host == "[::]";
}

std::string advertised_host(const std::string& host, std::string& why)
{
    std::string bare = host;
    if (bare.size() >= 2 && bare.front() == '[' && bare.back() == ']')
        bare = bare.substr(1, bare.size() - 2);
    char shown[INET6_ADDRSTRLEN] = "";
    in_addr v4 {};
    in6_addr v6 {};
    if (::inet_pton(AF_INET, bare.c_str(), &v4) == 1) {
        ::inet_ntop(AF_INET, &v4, shown, sizeof shown);
        if (v4.s_addr == htonl(INADDR_ANY)) {
            why = host + " is every address of this machine, which no other can connect to";
            return {};
        }
        return shown;
    }
    if (::inet_pton(AF_INET6, bare.c_str(), &v6) == 1) {
        ::inet_ntop(AF_INET6, &v6, shown, sizeof shown);
        if (IN6_IS_ADDR_UNSPECIFIED(&v6)) {
            why = host + " is every address of this machine, which no other can connect to";
            return {};
        }
        return "[" + std::string(shown) + "]";
    }
    why = "not an IPv4 or IPv6 address: " + host;
    return {};
}

std::string with_host(const std::string& host, const std::string& address)
{
    return host + ":" + std::to_string(address_port(address));
}

} // namespace kv
