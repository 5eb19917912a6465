// The bucket lifecycle table (registryd/bucket.h): what registryd does for
// each event in each state. The integration tests drive the same table
// through real bucketd processes; this one pins the rules a reader of the
// diagram relies on, pair by pair.
#include "bucket.h"

#include <gtest/gtest.h>

namespace kv {
namespace {

constexpr BucketState live_states[] = { BucketState::starting, BucketState::ready, BucketState::stopping };
constexpr BucketEvent all_events[] = { BucketEvent::ready_line, BucketEvent::failure_line, BucketEvent::pipe_closed,
    BucketEvent::publish_failed, BucketEvent::ready_timeout, BucketEvent::stop_requested,
    BucketEvent::registry_shutdown, BucketEvent::grace_expired, BucketEvent::exited, BucketEvent::wait_failed, BucketEvent::restart_due };

void expect_step(BucketState state, BucketEvent event, BucketTransition transition, BucketState next)
{
    const BucketStep step = bucket_step(state, event);
    EXPECT_EQ(to_string(step.transition), std::string(to_string(transition))) << to_string(state) << " x " << to_string(event);
    EXPECT_EQ(to_string(step.next), std::string(to_string(next))) << to_string(state) << " x " << to_string(event);
}

TEST(BucketLifecycle, OnlyAStartingBucketBecomesReady)
{
    expect_step(BucketState::starting, BucketEvent::ready_line, BucketTransition::publish, BucketState::ready);
    expect_step(BucketState::stopping, BucketEvent::ready_line, BucketTransition::ignore_late_ready, BucketState::stopping);
    expect_step(BucketState::ready, BucketEvent::ready_line, BucketTransition::ignore, BucketState::ready);
    expect_step(BucketState::starting, BucketEvent::publish_failed, BucketTransition::kill_unpublished, BucketState::starting);
}

TEST(BucketLifecycle, TheReadyTimeoutKillsOnlyWhileStarting)
{
    expect_step(BucketState::starting, BucketEvent::ready_timeout, BucketTransition::kill_timed_out, BucketState::starting);
    expect_step(BucketState::ready, BucketEvent::ready_timeout, BucketTransition::ignore, BucketState::ready);
    expect_step(BucketState::stopping, BucketEvent::ready_timeout, BucketTransition::ignore, BucketState::stopping);
}

TEST(BucketLifecycle, StopAndShutdownStopOnceAndTheGracePeriodKillsOnlyWhileStopping)
{
    for (BucketEvent stop : { BucketEvent::stop_requested, BucketEvent::registry_shutdown }) {
        expect_step(BucketState::starting, stop, BucketTransition::begin_stop, BucketState::stopping);
        expect_step(BucketState::ready, stop, BucketTransition::begin_stop, BucketState::stopping);
        expect_step(BucketState::stopping, stop, BucketTransition::ignore, BucketState::stopping);
    }
    expect_step(BucketState::stopping, BucketEvent::grace_expired, BucketTransition::kill_stubborn, BucketState::stopping);
    expect_step(BucketState::ready, BucketEvent::grace_expired, BucketTransition::ignore, BucketState::ready);
}

TEST(BucketLifecycle, EveryLiveStateEndsAtTheExit)
{
    for (BucketState state : live_states) {
        expect_step(state, BucketEvent::exited, BucketTransition::reap, BucketState::exited);
        expect_step(state, BucketEvent::wait_failed, BucketTransition::forget, BucketState::exited);
    }
}

TEST(BucketLifecycle, NothingFollowsTheExit)
{
    for (BucketEvent event : all_events)
        expect_step(BucketState::exited, event, BucketTransition::ignore, BucketState::exited);
}

TEST(BucketLifecycle, ARestartingBucketHasNoProcessAndLeavesOnlyByItsDelayOrAStop)
{
    expect_step(BucketState::restarting, BucketEvent::restart_due, BucketTransition::respawn, BucketState::starting);
    for (BucketEvent stop : { BucketEvent::stop_requested, BucketEvent::registry_shutdown })
        expect_step(BucketState::restarting, stop, BucketTransition::cancel_restart, BucketState::exited);
    for (BucketEvent event : all_events) {
        if (event == BucketEvent::restart_due || event == BucketEvent::stop_requested || event == BucketEvent::registry_shutdown)
            continue;
        // Its pipe and pidfd belong to the process that exited: nothing of
        // theirs may reach the bucket that replaces it.
        expect_step(BucketState::restarting, event, BucketTransition::ignore, BucketState::restarting);
    }
}

TEST(BucketLifecycle, ALateRestartTimerDoesNothingToALiveBucket)
{
    for (BucketState state : live_states)
        expect_step(state, BucketEvent::restart_due, BucketTransition::ignore, state);
}

TEST(BucketLifecycle, OnlyTheExitLeavesStopping)
{
    for (BucketEvent event : all_events) {
        if (event == BucketEvent::exited || event == BucketEvent::wait_failed)
            continue;
        EXPECT_EQ(bucket_step(BucketState::stopping, event).next, BucketState::stopping) << to_string(event);
    }
}

} // namespace
} // namespace kv
