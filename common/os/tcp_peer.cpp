#include "tcp_peer.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "unique_fd.h"

namespace kv {

namespace {

bool is_loopback(const sockaddr_storage& address)
{
    if (address.ss_family == AF_INET)
        return (ntohl(reinterpret_cast<const sockaddr_in&>(address).sin_addr.s_addr) >> 24) == 127;
    if (address.ss_family != AF_INET6)
        return false;
    const in6_addr& in6 = reinterpret_cast<const sockaddr_in6&>(address).sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(&in6))
        return true;
    return IN6_IS_ADDR_V4MAPPED(&in6) && in6.s6_addr[12] == 127; // ::ffff:127.x.y.z
}

// Whether `address` is one of this machine's (a loopback one, or an
// interface's): then the client runs here, and must be identified.
bool is_ours(const sockaddr_storage& address)
{
    if (is_loopback(address))
        return true;
    in_addr v4 {};
    in6_addr v6 {};
    bool is_v4 = address.ss_family == AF_INET;
    if (is_v4) {
        v4 = reinterpret_cast<const sockaddr_in&>(address).sin_addr;
    } else {
        v6 = reinterpret_cast<const sockaddr_in6&>(address).sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(&v6)) {
            is_v4 = true;
            std::memcpy(&v4, &v6.s6_addr[12], sizeof v4);
        }
    }
    ifaddrs* interfaces = nullptr;
    if (::getifaddrs(&interfaces) == -1)
        return true; // unknown: treat it as ours, so it must be identified
    bool found = false;
    for (ifaddrs* entry = interfaces; entry && !found; entry = entry->ifa_next) {
        if (!entry->ifa_addr)
            continue;
        if (is_v4 && entry->ifa_addr->sa_family == AF_INET)
            found = std::memcmp(&reinterpret_cast<const sockaddr_in*>(entry->ifa_addr)->sin_addr, &v4, sizeof v4) == 0;
        else if (!is_v4 && entry->ifa_addr->sa_family == AF_INET6)
            found = std::memcmp(&reinterpret_cast<const sockaddr_in6*>(entry->ifa_addr)->sin6_addr, &v6, sizeof v6) == 0;
    }
    ::freeifaddrs(interfaces);
    return found;
}

// Port and address of `address` into a socket id's fields (network order).
void fill(const sockaddr_storage& address, __be16& port, __be32 (&words)[4])
{
    std::memset(words, 0, sizeof words);
    if (address.ss_family == AF_INET) {
        const auto& in = reinterpret_cast<const sockaddr_in&>(address);
        port = in.sin_port;
        std::memcpy(words, &in.sin_addr, sizeof in.sin_addr);
    } else {
        const auto& in6 = reinterpret_cast<const sockaddr_in6&>(address);
        port = in6.sin6_port;
        std::memcpy(words, &in6.sin6_addr, sizeof in6.sin6_addr);
    }
}

} // namespace

std::string shown_address(const sockaddr_storage& address)
{
    char host[INET6_ADDRSTRLEN] = "";
    if (address.ss_family == AF_INET6) {
        const auto& in6 = reinterpret_cast<const sockaddr_in6&>(address);
        ::inet_ntop(AF_INET6, &in6.sin6_addr, host, sizeof host);
        return "[" + std::string(host) + "]:" + std::to_string(ntohs(in6.sin6_port));
    }
    if (address.ss_family != AF_INET)
        return "unknown";
    const auto& in = reinterpret_cast<const sockaddr_in&>(address);
    ::inet_ntop(AF_INET, &in.sin_addr, host, sizeof host);
    return std::string(host) + ":" + std::to_string(ntohs(in.sin_port));
}

std::string peer_address(int fd)
{
    sockaddr_storage address {};
    socklen_t length = sizeof address;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&address), &length) == -1)
        return "unknown";
    return shown_address(address);
}

std::string local_address(int fd)
{
    sockaddr_storage address {};
    socklen_t length = sizeof address;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == -1)
        return "unknown";
    return shown_address(address);
}

TcpPeer identify_tcp_peer(int fd)
{
    TcpPeer peer;
    sockaddr_storage remote {}, local {};
    socklen_t remote_size = sizeof remote, local_size = sizeof local;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&remote), &remote_size) == -1
        || ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_size) == -1) {
        peer.why = std::string("unable to read the connection's addresses: ") + std::strerror(errno);
        return peer;
    }
    peer.address = shown_address(remote);
    // A client on another machine is not in our socket table; one on this
    // machine must be, as long as its socket is open. Its address says which
    // it is: a client of ours (a loopback or interface address) whose socket
    // cannot be found (closed already: then the kernel keeps at most a
    // TIME-WAIT or orphaned entry, with no owner) is not identified.
    if (!is_ours(remote)) {
        peer.kind = TcpPeer::Kind::remote;
        return peer;
    }
    // The client's socket is the one whose source is the peer's address and
    // whose destination is ours: ask the kernel for exactly that one.
    struct {
        nlmsghdr header;
        inet_diag_req_v2 request;
    } message {};
    message.header.nlmsg_len = sizeof message;
    message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    message.header.nlmsg_flags = NLM_F_REQUEST;
    message.request.sdiag_family = static_cast<__u8>(remote.ss_family);
    message.request.sdiag_protocol = IPPROTO_TCP;
    message.request.idiag_states = ~0U;
    fill(remote, message.request.id.idiag_sport, message.request.id.idiag_src);
    fill(local, message.request.id.idiag_dport, message.request.id.idiag_dst);
    message.request.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
    message.request.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;

    UniqueFd diag(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
    if (!diag) {
        peer.why = std::string("unable to ask the kernel who it is: netlink: ") + std::strerror(errno);
        return peer;
    }
    sockaddr_nl kernel {};
    kernel.nl_family = AF_NETLINK;
    if (::sendto(diag.get(), &message, sizeof message, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) == -1) {
        peer.why = std::string("unable to ask the kernel who it is: ") + std::strerror(errno);
        return peer;
    }
    alignas(nlmsghdr) char reply[8192];
    ssize_t size;
    while ((size = ::recv(diag.get(), reply, sizeof reply, 0)) == -1 && errno == EINTR) {
    }
    if (size < 0) {
        peer.why = std::string("unable to ask the kernel who it is: ") + std::strerror(errno);
        return peer;
    }
    auto* header = reinterpret_cast<nlmsghdr*>(reply);
    for (int length = static_cast<int>(size); NLMSG_OK(header, length); header = NLMSG_NEXT(header, length)) {
        if (header->nlmsg_type == NLMSG_ERROR) {
            const auto* error = static_cast<const nlmsgerr*>(NLMSG_DATA(header));
            peer.why = std::string("its socket is not in the kernel's table: ") + std::strerror(-error->error);
            return peer;
        }
        if (header->nlmsg_type == SOCK_DIAG_BY_FAMILY && header->nlmsg_len >= NLMSG_LENGTH(sizeof(inet_diag_msg))) {
            const auto* found = static_cast<const inet_diag_msg*>(NLMSG_DATA(header));
            // Only a socket that is still someone's file names its owner: a
            // closed one (TIME-WAIT, or orphaned while it closes) says uid 0
            // and inode 0, and a listener is not a client.
            constexpr int time_wait = 6, listening = 10; // the kernel's TCP_TIME_WAIT and TCP_LISTEN
            if (found->idiag_inode == 0 || found->idiag_state == time_wait || found->idiag_state == listening
                || found->id.idiag_sport != message.request.id.idiag_sport || found->id.idiag_dport != message.request.id.idiag_dport) {
                peer.why = "its socket is closed already";
                return peer;
            }
            peer.kind = TcpPeer::Kind::local;
            peer.uid = found->idiag_uid;
            return peer;
        }
    }
    peer.why = "the kernel's answer names no socket";
    return peer;
}

} // namespace kv
