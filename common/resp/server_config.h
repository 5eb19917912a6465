// ServerConfig: the limits and the access policy of every kv listener.
// registryd takes them from its flags, applies them to its own socket and
// hands them to each bucketd in one environment variable, so every socket of
// an instance enforces the same rules.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "resp.h"

namespace kv {

struct ServerConfig {
    resp::Limits protocol;
    std::size_t max_connections = 1024;
    // Hard cap on what one connection may hold: its unparsed input plus its
    // queued replies. Past it the client is told why and dropped.
    std::size_t max_client_buffer = 64 * 1024 * 1024;
    // A connection that has a half-written request, or replies it does not
    // read, and makes no progress for this long is dropped. Idle ones stay.
    std::chrono::milliseconds stall_timeout { 10000 };

    // Who may talk to us, by SO_PEERCRED: root, our own uid, and these.
    std::vector<uid_t> allowed_uids;
    std::vector<gid_t> allowed_gids;

    bool admits_others() const { return !allowed_uids.empty() || !allowed_gids.empty(); }

    // Empty if the peer on connected socket `fd` may be served, else the
    // one-line error reply text ("DENIED permission denied: uid 1000 ...").
    std::optional<std::string> refusal_for_peer(int fd) const;
    // The rule itself: `uid` with supplementary `groups` (textd asks it for
    // a local TCP client, known by its uid alone).
    std::optional<std::string> refusal_for(uid_t uid, const std::vector<gid_t>& groups) const;

    // One line of "key=value ..." for KV_SERVER_CONFIG, and back. Throws
    // std::invalid_argument on text it did not write.
    std::string encode() const;
    static ServerConfig decode(const std::string& text);
};

} // namespace kv
