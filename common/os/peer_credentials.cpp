#include "peer_credentials.h"

#include <sys/socket.h>

#include "tcp_peer.h"

namespace kv {

std::optional<PeerCredentials> peer_credentials(int socket_fd)
{
    ucred peer {};
    socklen_t size = sizeof peer;
    if (::getsockopt(socket_fd, SOL_SOCKET, SO_PEERCRED, &peer, &size) == -1)
        return std::nullopt;
    return PeerCredentials { peer.pid, peer.uid, peer.gid };
}

std::string describe_peer(int socket_fd)
{
    // A TCP client (a bucket's or the registry's --listen-tcp port) is
    // known by its address: SO_PEERCRED says nothing of it.
    int family = AF_UNIX;
    socklen_t length = sizeof family;
    if (::getsockopt(socket_fd, SOL_SOCKET, SO_DOMAIN, &family, &length) == 0 && family != AF_UNIX)
        return "address " + peer_address(socket_fd);
    // The pid is the connecting process's, which may have exited since (and,
    // rarely, its number been reused): it is a lead for an operator, not proof.
    auto peer = peer_credentials(socket_fd);
    if (!peer)
        return "peer unknown";
    return "pid " + std::to_string(peer->pid) + ", uid " + std::to_string(peer->uid);
}

} // namespace kv
