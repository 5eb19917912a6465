// Who is at the other end of a TCP connection, when that can be known: for a
// client on this machine (from a loopback address or one of its interfaces'),
// the uid that owns its socket,
// from the kernel's socket table (NETLINK_SOCK_DIAG, as ss(8) reads it; no
// privilege needed). A remote client has no uid we could trust. What
// SO_PEERCRED is for a Unix socket, for the text server's TCP port.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <string>

namespace kv {

struct TcpPeer {
    enum class Kind {
        local,   // a socket of this machine's: `uid` owns it
        remote,  // not one of this machine's addresses: no uid to know
        unknown, // from one of this machine's addresses, but its socket was not found open (closed already) or the lookup failed: `why`
    };
    Kind kind = Kind::unknown;
    uid_t uid = 0;
    std::string address; // "127.0.0.1:53422", "[::1]:53422"
    std::string why;
};

// For connected TCP socket `fd`.
TcpPeer identify_tcp_peer(int fd);

// "127.0.0.1:4040", "[::1]:4040": an IPv4 or IPv6 address and port as kv shows them.
std::string shown_address(const sockaddr_storage& address);
// The address at the other end of connected socket `fd` ("unknown" if none).
std::string peer_address(int fd);
// The address of this end of connected or bound socket `fd` ("unknown" if none).
std::string local_address(int fd);

} // namespace kv
