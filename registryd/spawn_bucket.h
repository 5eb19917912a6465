// spawn_bucket: starts one bucketd with Boost.Process and pins it with a pidfd.
#pragma once

#include <sys/types.h>

#include <string>

#include "unique_fd.h"

namespace kv {

struct BucketLaunch {
    std::string bucketd_path;
    std::string name;          // argv[1], so ps shows "bucketd <name>"
    std::string instance;      // KV_INSTANCE: marks the bucket and its descendants as this registryd's
    std::string segment_name;  // for the bucket's messages; it uses the descriptor
    int segment_fd = -1;       // an empty shm object registryd created, inherited
    std::string socket_path;   // for the bucket's messages; it serves the descriptor
    int listen_fd = -1;        // a bound, listening socket registryd created, inherited
    std::size_t bucket_size = 0;
    bool debug_command_enabled = false;
    std::string server_config; // ServerConfig::encode(), for KV_SERVER_CONFIG
};

struct SpawnedBucket {
    pid_t pid = -1;
    UniqueFd pidfd;        // the only handle registryd uses on the child
    UniqueFd ready_pipe;   // read end, non-blocking; the bucket writes "\n" when ready
};

// Forks and execs bucketd. The child runs in a session (and process group)
// of its own, so terminal signals reach registryd alone and registryd can
// kill whatever the bucket leaves behind; it gets PR_SET_PDEATHSIG(SIGTERM),
// default signal dispositions and mask, and no descriptor of ours but its
// readiness pipe, its segment and its listening socket. The pidfd is opened before anything could reap the child, so the pid
// is pinned. Throws std::runtime_error with a one-line reason on failure, and
// then leaves no zombie behind.
SpawnedBucket spawn_bucket(const BucketLaunch& launch);

} // namespace kv
