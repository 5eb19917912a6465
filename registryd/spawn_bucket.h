// spawn_bucket: starts one bucketd with Boost.Process and pins it with a pidfd.
#pragma once

#include <sys/types.h>

#include <string>

#include "unique_fd.h"

namespace kv {

struct BucketLaunch {
    std::string bucketd_path;
    std::string name;          // argv[1], so ps shows "bucketd <name>"
    std::string segment_name;
    std::string socket_path;
    std::size_t bucket_size = 0;
    bool debug_command_enabled = false;
    std::string server_config; // ServerConfig::encode(), for KV_SERVER_CONFIG
};

struct SpawnedBucket {
    pid_t pid = -1;
    UniqueFd pidfd;        // the only handle registryd uses on the child
    UniqueFd ready_pipe;   // read end; the bucket writes "\n" when ready
};

// Forks and execs bucketd. The child gets PR_SET_PDEATHSIG(SIGTERM), default
// signal dispositions and mask, and no descriptor of ours but its readiness
// pipe. The pidfd is opened before anything could reap the child, so the pid
// is pinned. Throws std::runtime_error with a one-line reason on failure, and
// then leaves no zombie behind.
SpawnedBucket spawn_bucket(const BucketLaunch& launch);

} // namespace kv
