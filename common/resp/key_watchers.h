// KeyWatchers: which sessions WATCH which keys of one keyspace, as Redis's
// db->watched_keys (src/multi.c). The daemon that owns the keys (a bucket's
// BucketMap) tells it of every change from the one place its writes go
// through; each session watching a changed key is marked (its transaction's
// watched_key_changed: EXEC then answers a null array) and, as in Redis,
// unwatched at once, since nothing more can happen to it until EXEC.
//
// Sessions are held by pointer: a session is unwatched (unwatch_all) on
// EXEC, DISCARD, UNWATCH, RESET and when its connection closes
// (RespConnection::close), so no pointer here outlives its session.
// One thread only, as the daemon's loop.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "session.h"

namespace kv {

class KeyWatchers {
public:
    // WATCH key: `session` is told if `key` changes (once per key and session).
    void watch(Session& session, std::string_view key);
    // UNWATCH, EXEC, DISCARD, RESET, a closed connection: the session watches nothing.
    void unwatch_all(Session& session);

    // `key` changed (set, deleted, renamed to or from): every session watching it is marked.
    // Costs one emptiness test when nobody watches anything: the common path.
    void touch(std::string_view key)
    {
        if (!watchers_.empty())
            touch_watched(key);
    }
    // Every key is about to go (FLUSHDB, FLUSHALL): as Redis, only the
    // watched keys that `exists` now count as changed.
    void touch_existing(const std::function<bool(std::string_view key)>& exists);

    // Keys watched by at least one session (0 once every watcher has gone).
    std::size_t watched_keys() const { return watchers_.size(); }
    void for_each_watched_key(const std::function<void(std::string_view key)>& visit) const
    {
        for (const auto& entry : watchers_)
            visit(entry.first);
    }

    // Asked before a key is watched and again at EXEC for each key the
    // session watches (the keyspace's owner sets it): deletes the key if it
    // has expired, which touches its watchers. So a key that expires after
    // WATCH makes EXEC fail (Redis's isWatchedKeyExpired), and one that had
    // expired before WATCH does not (it is gone, and stays gone).
    std::function<void(std::string_view key)> expire_if_needed;
    // EXEC's check, above.
    void expire_watched(Session& session);

private:
    void touch_watched(std::string_view key);
    void mark(Session& session);

    // Heterogeneous lookup by string_view without building a std::string.
    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view key) const { return std::hash<std::string_view> {}(key); }
    };
    std::unordered_map<std::string, std::vector<Session*>, Hash, std::equal_to<>> watchers_;
};

} // namespace kv
