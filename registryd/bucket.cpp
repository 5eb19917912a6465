#include "bucket.h"

#include <signal.h>
#include <sys/wait.h>

#include <cstring>

#include "shared_table.h"

namespace kv {

BucketStep bucket_step(BucketState state, BucketEvent event)
{
    using S = BucketState;
    using E = BucketEvent;
    using T = BucketTransition;
    const BucketStep stay { T::ignore, state };
    if (state == S::exited)
        return stay; // erased in the transition that got here: nothing can follow
    if (state == S::restarting) {
        // No process, no pipe, no pidfd: only its timer and requests reach it.
        switch (event) {
        case E::restart_due: return { T::respawn, S::starting };
        case E::stop_requested:
        case E::registry_shutdown: return { T::cancel_restart, S::exited };
        default: return stay;
        }
    }
    switch (event) {
    case E::ready_line:
        if (state == S::starting)
            return { T::publish, S::ready };
        if (state == S::stopping)
            return { T::ignore_late_ready, state };
        return stay; // ready already: the pipe is closed once ready, so never seen
    case E::failure_line:
        if (state == S::ready)
            return stay; // never seen: the pipe is closed once ready
        return { T::note_failure, state };
    case E::pipe_closed:
        // Killed already (the ready timeout, a STOP) or it closed the pipe
        // itself; the pipe is gone once ready, so never seen then.
        if (state == S::ready)
            return stay;
        return { T::kill_silent, state };
    case E::publish_failed:
        if (state == S::starting)
            return { T::kill_unpublished, state };
        return stay;
    case E::ready_timeout:
        if (state == S::starting)
            return { T::kill_timed_out, state };
        return stay; // fired as it was cancelled
    case E::stop_requested:
    case E::registry_shutdown:
        if (state == S::stopping)
            return stay; // SIGTERM sent and the grace period running already
        return { T::begin_stop, S::stopping };
    case E::grace_expired:
        if (state == S::stopping)
            return { T::kill_stubborn, state };
        return stay;
    case E::exited:
        return { T::reap, S::exited };
    case E::wait_failed:
        return { T::forget, S::exited };
    case E::restart_due:
        return stay; // fired as it was cancelled
    }
    return stay;
}

const char* to_string(BucketState state)
{
    switch (state) {
    case BucketState::starting: return "starting";
    case BucketState::ready: return "ready";
    case BucketState::stopping: return "stopping";
    case BucketState::restarting: return "restarting";
    case BucketState::exited: return "exited";
    }
    return "unknown";
}

const char* to_string(BucketEvent event)
{
    switch (event) {
    case BucketEvent::ready_line: return "ready_line";
    case BucketEvent::failure_line: return "failure_line";
    case BucketEvent::pipe_closed: return "pipe_closed";
    case BucketEvent::publish_failed: return "publish_failed";
    case BucketEvent::ready_timeout: return "ready_timeout";
    case BucketEvent::stop_requested: return "stop_requested";
    case BucketEvent::registry_shutdown: return "registry_shutdown";
    case BucketEvent::grace_expired: return "grace_expired";
    case BucketEvent::exited: return "exited";
    case BucketEvent::wait_failed: return "wait_failed";
    case BucketEvent::restart_due: return "restart_due";
    }
    return "unknown";
}

const char* to_string(BucketTransition transition)
{
    switch (transition) {
    case BucketTransition::publish: return "publish";
    case BucketTransition::note_failure: return "note_failure";
    case BucketTransition::kill_silent: return "kill_silent";
    case BucketTransition::kill_timed_out: return "kill_timed_out";
    case BucketTransition::kill_unpublished: return "kill_unpublished";
    case BucketTransition::begin_stop: return "begin_stop";
    case BucketTransition::kill_stubborn: return "kill_stubborn";
    case BucketTransition::reap: return "reap";
    case BucketTransition::forget: return "forget";
    case BucketTransition::respawn: return "respawn";
    case BucketTransition::cancel_restart: return "cancel_restart";
    case BucketTransition::ignore_late_ready: return "ignore_late_ready";
    case BucketTransition::ignore: return "ignore";
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

bool ExitReason::clean() const { return code == CLD_EXITED && status == 0; }

BucketSegment::~BucketSegment()
{
    if (fd) {
        // Readers that still have it mapped are told its data is no longer true.
        mark_table_gone(fd.get());
        remove_segment_if_same(name, fd.get());
    }
}

} // namespace kv
