// ClientProcesses: the processes of textd that serve its clients, one
// client each at a time (textd/main.cpp says why). textd forks them, hands
// each a client's socket over a Unix socket of its own (SCM_RIGHTS), and
// hears "done" on it when the client has left; such a process then waits
// for the next client, up to `most_idle` of them, and the rest exit.
#pragma once

#include <sys/types.h>

#include <poll.h>

#include <cstddef>
#include <string>
#include <unordered_map>
#include <vector>

#include "bucket_access.h"
#include "server_config.h"
#include "unique_fd.h"

namespace kv::text {

class ClientProcesses {
public:
    // Processes that wait for their next client, at most; the rest exit.
    static constexpr std::size_t most_idle = 16;

    // `closed_in_children`: textd's own descriptors (its listener ...),
    // which a client's process must not hold.
    ClientProcesses(BucketAccess& buckets, const ServerConfig& config, std::vector<int> closed_in_children);

    // Clients being served now.
    std::size_t busy() const { return busy_; }

    // Gives `client` to a waiting process, or to a new one. False (and the
    // reason in `why`) if none could take it.
    bool serve(UniqueFd client, std::string& why);

    // Adds the descriptors to poll for processes done with their client,
    // and whose they are, to `watched` and `owners`.
    void watch(std::vector<pollfd>& watched, std::vector<pid_t>& owners) const;

    // Process `pid` said "done" (or its control socket broke).
    void done(pid_t pid);

    // Reaps every process that exited; logs one that died with its client.
    void reap();

private:
    struct Process {
        UniqueFd control; // empty once it is told to exit or found gone
        bool busy = false;
    };

    BucketAccess& buckets_;
    const ServerConfig& config_;
    std::vector<int> closed_in_children_;
    std::unordered_map<pid_t, Process> processes_;
    std::vector<pid_t> idle_;
    std::size_t busy_ = 0;
};

} // namespace kv::text
