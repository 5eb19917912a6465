// Spawning registryd's children: bucketd (one per bucket) and textd (the
// text server): clone with CLONE_VM, CLONE_VFORK, CLONE_FILES and
// CLONE_PIDFD, then exec, each pinned by its pidfd from the start.
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

struct SpawnedProcess {
    pid_t pid = -1;
    UniqueFd pidfd;        // the only handle registryd uses on the child
    UniqueFd ready_pipe;   // read end, non-blocking; the child writes "\n" when ready
};
using SpawnedBucket = SpawnedProcess;

// Forks and execs bucketd. The child runs in a session (and process group)
// of its own, so terminal signals reach registryd alone and registryd can
// kill whatever the bucket leaves behind; it gets PR_SET_PDEATHSIG(SIGTERM),
// default signal dispositions and mask, and no descriptor of ours but its
// readiness pipe, its segment and its listening socket, and with
// --listen-tcp its TCP listener and password descriptor (bucket_launch.h).
// The pidfd is opened before anything could reap the child, so the pid is
// pinned. Throws std::runtime_error with a one-line reason on failure, and
// then leaves no zombie behind.
// Call it from the loop's thread only (PR_SET_PDEATHSIG follows the thread
// that spawned), one spawn at a time.
SpawnedBucket spawn_bucket(const BucketLaunch& launch);

struct TextServerLaunch {
    std::string textd_path;
    std::string address;                // argv[1], so ps shows "textd 127.0.0.1:4040"
    TextServerEnvironment environment;  // its notify_fd is filled in by spawn_text_server
};

// Starts textd as spawn_bucket starts bucketd, with the same guarantees; it
// is handed its readiness pipe and the listening socket only, and with
// registryd --password-file the password descriptor.
SpawnedProcess spawn_text_server(const TextServerLaunch& launch);

// Reserves, now, the six descriptor numbers every spawn passes a child's
// descriptors through (spawn.cpp says why), and the child's stack.
// registryd calls it at start, so the numbers are small; else the first
// spawn does. Throws SystemError.
void prepare_spawning();

} // namespace kv
