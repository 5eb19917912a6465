#include "peer_credentials.h"

#include <sys/socket.h>

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
    // The pid is the connecting process's, which may have exited since (and,
    // rarely, its number been reused): it is a lead for an operator, not proof.
    auto peer = peer_credentials(socket_fd);
    if (!peer)
        return "peer unknown";
    return "pid " + std::to_string(peer->pid) + ", uid " + std::to_string(peer->uid);
}

} // namespace kv
