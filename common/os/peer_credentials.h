// Who is at the other end of a Unix socket: the pid, uid and gid the kernel
// recorded when the peer connected (SO_PEERCRED), as log lines name them.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

namespace kv {

struct PeerCredentials {
    pid_t pid = 0;
    uid_t uid = 0;
    gid_t gid = 0;
};

// nullopt if the kernel cannot tell (not a Unix socket, or closed).
std::optional<PeerCredentials> peer_credentials(int socket_fd);

// "pid 4242, uid 1000", or "peer unknown": for a log line, after what happened.
std::string describe_peer(int socket_fd);

} // namespace kv
