#include "bucket.h"

#include <signal.h>
#include <sys/wait.h>

#include <cstring>

#include "shared_table.h"

namespace kv {

const char* to_string(BucketState state)
{
    switch (state) {
    case BucketState::starting: return "starting";
    case BucketState::ready: return "ready";
    case BucketState::stopping: return "stopping";
    }
    return "unknown";
}

std::string signal_name(int signal)
{
    if (const char* abbreviation = ::sigabbrev_np(signal))
        return std::string("SIG") + abbreviation;
    return "signal " + std::to_string(signal);
}

std::string ExitReason::describe() const
{
    switch (code) {
    case CLD_EXITED: return "exited with status " + std::to_string(status);
    case CLD_KILLED: return "killed by " + signal_name(status);
    case CLD_DUMPED: return "killed by " + signal_name(status) + " (core dumped)";
    }
    return "ended (waitid si_code " + std::to_string(code) + ", status " + std::to_string(status) + ")";
}

BucketSegment::~BucketSegment()
{
    if (fd) {
        // Readers that still have it mapped are told its data is no longer true.
        mark_table_gone(fd.get());
        remove_segment_if_same(name, fd.get());
    }
}

} // namespace kv
