// ProcessIdentity: a process named so that it cannot be mistaken for another.
//
// A pid alone is reused once its process has been reaped, and `kill(pid, 0)`
// also succeeds on a zombie (here PID 1 does not reap orphans, so a dead
// process may stay a zombie for good). A process is therefore named by its
// pid and its start time (field 22 of /proc/PID/stat, clock ticks since
// boot). A pid is reused only after its holder was reaped, so by a process
// that started later: mistaking one for the other would take the whole pid
// space to wrap within one clock tick (10 ms).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>

namespace kv {

struct ProcessIdentity {
    pid_t pid = 0;
    std::uint64_t start_time = 0; // field 22 of /proc/PID/stat (clock ticks since boot)
};

// Of the calling process. Throws SystemError if /proc/self/stat cannot be read.
ProcessIdentity self_identity();

// Empty if there is no such process (never was, or already reaped). A
// zombie is still identified: it holds its pid until it is reaped.
std::optional<ProcessIdentity> identify_process(pid_t pid);

// True only for the very process `identity` names, still running: the same
// pid AND the same start time (a reused pid is not the same process) AND not
// a zombie or dead (state Z or X).
bool is_running(const ProcessIdentity& identity);

} // namespace kv
