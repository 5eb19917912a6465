// RunDirLock: one registryd per run dir, enforced with flock(2) on
// <run-dir>/registry.lock, held for the daemon's whole life. The kernel
// drops it when the process dies, however it dies. The same file carries the
// instance record (common/instance_record.h).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "instance_record.h"
#include "run_dir.h"
#include "unique_fd.h"

namespace kv {

class RunDirLock {
public:
    // Opens or creates the lock file in `dir`, never through a symbolic link,
    // and refuses anything but a regular file of ours with a single link.
    // Throws std::runtime_error "another registryd (pid N) is running there"
    // if the lock is held, SystemError on other failures.
    explicit RunDirLock(const RunDir& dir);

    // The record of the registryd that held this lock before us, if it died
    // without a clean shutdown (its leftovers are then ours to remove).
    const std::optional<InstanceRecord>& predecessor() const { return predecessor_; }

    void publish(const InstanceRecord& record);
    // A clean shutdown: nothing is left behind, so no record either.
    void clear();

    // Empty while the lock file at its name is still the one we lock; else
    // why not (removed or replaced: a second registryd could then start).
    std::optional<std::string> lost() const;

private:
    const RunDir& dir_;
    std::string path_;
    UniqueFd fd_;
    dev_t device_ = 0;
    ino_t inode_ = 0;
    std::optional<InstanceRecord> predecessor_;
};

} // namespace kv
