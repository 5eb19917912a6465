#include "key_watchers.h"

#include <algorithm>

namespace kv {

void KeyWatchers::watch(Session& session, std::string_view key)
{
    if (expire_if_needed)
        expire_if_needed(key);
    // Already watched by this session? Asked of the key's watchers (a few
    // sessions at most, never more than the connections), not of the
    // session's keys: one WATCH of many keys must not cost their square.
    auto found = watchers_.find(key);
    if (found == watchers_.end())
        found = watchers_.emplace(std::string(key), std::vector<Session*> {}).first;
    else if (std::find(found->second.begin(), found->second.end(), &session) != found->second.end())
        return;
    found->second.push_back(&session);
    session.transaction.watched.emplace_back(key);
}

void KeyWatchers::expire_watched(Session& session)
{
    if (!expire_if_needed)
        return;
    // A copy: a key that expires marks the session, which unwatches it all.
    const std::vector<std::string> keys = session.transaction.watched;
    for (const std::string& key : keys)
        expire_if_needed(key);
}

void KeyWatchers::unwatch_all(Session& session)
{
    for (const std::string& key : session.transaction.watched) {
        auto found = watchers_.find(key);
        if (found == watchers_.end())
            continue;
        auto& sessions = found->second;
        sessions.erase(std::remove(sessions.begin(), sessions.end(), &session), sessions.end());
        if (sessions.empty())
            watchers_.erase(found);
    }
    session.transaction.watched.clear();
}

void KeyWatchers::mark(Session& session)
{
    session.transaction.watched_key_changed = true;
    // As Redis's touchWatchedKey: a session already bound to fail its EXEC
    // need not be told again.
    unwatch_all(session);
}

void KeyWatchers::touch_watched(std::string_view key)
{
    auto found = watchers_.find(key);
    if (found == watchers_.end())
        return;
    const std::vector<Session*> sessions = found->second; // mark() erases from the map
    for (Session* session : sessions)
        mark(*session);
}

void KeyWatchers::touch_existing(const std::function<bool(std::string_view key)>& exists)
{
    std::vector<Session*> changed;
    for (const auto& [key, sessions] : watchers_) {
        if (exists(key))
            changed.insert(changed.end(), sessions.begin(), sessions.end());
    }
    for (Session* session : changed)
        mark(*session); // one watching two such keys is marked twice, harmlessly
}

} // namespace kv
