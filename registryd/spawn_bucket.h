// spawn_bucket: starts one bucketd (clone with CLONE_VM, CLONE_VFORK,
// CLONE_FILES and CLONE_PIDFD, then exec) and pins it with a pidfd.
#pragma once

#include <sys/types.h>

#include <string>

#include "bucket_launch.h"
#include "unique_fd.h"

namespace kv {

struct BucketLaunch {
    std::string bucketd_path;
    std::string name;              // argv[1], so ps shows "bucketd <name>"
    BucketEnvironment environment; // its notify_fd is filled in by spawn_bucket
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
// readiness pipe, its segment and its listening socket (bucket_launch.h).
// The pidfd is opened before anything could reap the child, so the pid is
// pinned. Throws std::runtime_error with a one-line reason on failure, and
// then leaves no zombie behind.
// Call it from the loop's thread only (PR_SET_PDEATHSIG follows the thread
// that spawned), one spawn at a time.
SpawnedBucket spawn_bucket(const BucketLaunch& launch);

// Reserves, now, the four descriptor numbers every spawn passes a bucket's
// descriptors through (spawn_bucket.cpp says why), and the child's stack.
// registryd calls it at start, so the numbers are small; else the first
// spawn does. Throws SystemError.
void prepare_spawning();

} // namespace kv
