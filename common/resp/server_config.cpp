#include "server_config.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <limits>
#include <stdexcept>

#include "error_code.h"

namespace kv {

std::optional<std::string> ServerConfig::refusal_for(uid_t uid, const std::vector<gid_t>& groups) const
{
    if (uid == 0 || uid == ::geteuid())
        return std::nullopt;
    if (std::find(allowed_uids.begin(), allowed_uids.end(), uid) != allowed_uids.end())
        return std::nullopt;
    for (gid_t gid : groups) {
        if (std::find(allowed_gids.begin(), allowed_gids.end(), gid) != allowed_gids.end())
            return std::nullopt;
    }
    return error_text(ErrorCode::denied, "permission denied: uid " + std::to_string(uid) + " is not allowed here (see registryd --allow-uid, --allow-gid)");
}

std::optional<std::string> ServerConfig::refusal_for_peer(int fd) const
{
    ucred peer {};
    socklen_t size = sizeof peer;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &size) == -1)
        return error_text(ErrorCode::denied, "unable to identify the peer (SO_PEERCRED failed)");
    std::vector<gid_t> groups;
    if (!allowed_gids.empty()) {
        groups.resize(64);
        socklen_t groups_size = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
        if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &groups_size) == 0)
            groups.resize(groups_size / sizeof(gid_t));
        else
            groups.clear();
        groups.push_back(peer.gid);
    }
    return refusal_for(peer.uid, groups);
}

// Built with to_string, not a stream: the first stream a program makes sets
// up the C++ locale, and a program with a stream anywhere links all of it (in
// bucketd, which links this file, that was a third of its code; README
// "Benchmarks" says why a bucket's size matters).
std::string ServerConfig::encode() const
{
    std::string out = "bulk=" + std::to_string(protocol.max_bulk_length) + " array=" + std::to_string(protocol.max_array_length)
        + " inline=" + std::to_string(protocol.max_inline_length) + " connections=" + std::to_string(max_connections)
        + " buffer=" + std::to_string(max_client_buffer) + " stall_ms=" + std::to_string(stall_timeout.count());
    for (uid_t uid : allowed_uids)
        out += " uid=" + std::to_string(uid);
    for (gid_t gid : allowed_gids)
        out += " gid=" + std::to_string(gid);
    return out;
}

ServerConfig ServerConfig::decode(const std::string& text)
{
    ServerConfig config;
    // Split on white space by hand, not with an istringstream: the first
    // stream a process makes sets up the C++ locale, which a bucket (this
    // runs as it starts) does not otherwise need (and its code, mapped in
    // at start, is unmapped again at every bucket's exit).
    constexpr std::string_view space = " \t\n\v\f\r";
    for (std::size_t at = text.find_first_not_of(space); at != std::string::npos; at = text.find_first_not_of(space, at)) {
        const std::size_t end_of_item = std::min(text.find_first_of(space, at), text.size());
        const std::string item = text.substr(at, end_of_item - at);
        at = end_of_item;
        auto equals = item.find('=');
        if (equals == std::string::npos)
            throw std::invalid_argument("bad server configuration item '" + item + "'");
        std::string key = item.substr(0, equals);
        // Only what encode() writes: decimal digits, nothing after them, in range.
        const std::string number = item.substr(equals + 1);
        unsigned long long value = 0;
        auto [end, error] = std::from_chars(number.data(), number.data() + number.size(), value);
        if (number.empty() || number[0] == '+' || error != std::errc() || end != number.data() + number.size())
            throw std::invalid_argument("bad server configuration item '" + item + "'");
        if ((key == "uid" || key == "gid") && value > std::numeric_limits<std::uint32_t>::max())
            throw std::invalid_argument("bad server configuration item '" + item + "': not an id");
        if (key == "bulk")
            config.protocol.max_bulk_length = value;
        else if (key == "array")
            config.protocol.max_array_length = value;
        else if (key == "inline")
            config.protocol.max_inline_length = value;
        else if (key == "connections")
            config.max_connections = value;
        else if (key == "buffer")
            config.max_client_buffer = value;
        else if (key == "stall_ms")
            config.stall_timeout = std::chrono::milliseconds(value);
        else if (key == "uid")
            config.allowed_uids.push_back(static_cast<uid_t>(value));
        else if (key == "gid")
            config.allowed_gids.push_back(static_cast<gid_t>(value));
        else
            throw std::invalid_argument("unknown server configuration key '" + key + "'");
    }
    return config;
}

} // namespace kv
