// RunDirLock: one registryd per run dir, enforced with flock(2) on
// <run-dir>/registry.lock, held for the daemon's whole life. The kernel
// drops it when the process dies, however it dies.
#pragma once

#include <string>

#include "unique_fd.h"

namespace kv {

class RunDirLock {
public:
    // Throws std::runtime_error "another registryd (pid N) is running on DIR"
    // if the lock is held, SystemError on other failures.
    explicit RunDirLock(const std::string& run_dir);

private:
    UniqueFd fd_;
};

// With the lock held: removes every segment and bucket socket that an
// earlier registryd on this run dir left behind (it was killed, so its
// buckets could not clean up). Segments of other run dirs are never touched:
// they have another prefix. Returns how many were removed.
std::size_t remove_leftovers(const std::string& run_dir);

} // namespace kv
