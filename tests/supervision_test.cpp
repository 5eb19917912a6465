// Supervision's pure rules (registryd/supervision.h), with the clock passed
// in: which exits a policy restarts, OTP's intensity (more than max_restarts
// within max_seconds, and the bucket is given up), the doubling delay and its
// cap, and the words MONITOR and the log say when registryd gives up.
// restart_integration_test.cpp checks the same rules on real processes.
#include "supervision.h"

#include <gtest/gtest.h>

namespace {

using namespace std::chrono_literals;
using kv::RestartIntensity;
using kv::RestartPolicy;
using kv::SupervisionOptions;
using kv::wants_restart;

const RestartIntensity::Clock::time_point t0 = RestartIntensity::Clock::time_point() + 1000h;

} // namespace

TEST(Supervision, TemporaryIsNeverRestarted)
{
    EXPECT_FALSE(wants_restart(RestartPolicy::temporary, false, false, false));
    EXPECT_FALSE(wants_restart(RestartPolicy::temporary, false, false, true));
}

TEST(Supervision, TransientIsRestartedAfterACrashOrANonZeroStatusOnly)
{
    EXPECT_TRUE(wants_restart(RestartPolicy::transient, false, false, false));
    EXPECT_FALSE(wants_restart(RestartPolicy::transient, false, false, true));
}

TEST(Supervision, PermanentIsRestartedAfterAnyExitItWasNotAskedFor)
{
    EXPECT_TRUE(wants_restart(RestartPolicy::permanent, false, false, false));
    EXPECT_TRUE(wants_restart(RestartPolicy::permanent, false, false, true));
}

TEST(Supervision, NoPolicyRestartsAStopOrAFailedFirstStart)
{
    for (auto policy : { RestartPolicy::temporary, RestartPolicy::transient, RestartPolicy::permanent }) {
        for (bool clean : { false, true }) {
            EXPECT_FALSE(wants_restart(policy, true, false, clean)) << to_string(policy) << " after STOP";
            EXPECT_FALSE(wants_restart(policy, false, true, clean)) << to_string(policy) << " failing its first start";
        }
    }
}

TEST(Supervision, ThreeRestartsInFiveSecondsAreAllowedAndTheFourthIsRefused)
{
    SupervisionOptions options; // 3 in 5 s, as OTP's defaults
    RestartIntensity intensity;
    EXPECT_TRUE(intensity.admit(t0, options));
    EXPECT_TRUE(intensity.admit(t0 + 1s, options));
    EXPECT_TRUE(intensity.admit(t0 + 2s, options));
    EXPECT_EQ(intensity.recent(), 3u);
    EXPECT_FALSE(intensity.admit(t0 + 3s, options));
    EXPECT_EQ(intensity.recent(), 4u) << "the refused restart is counted in what MONITOR reports";
}

TEST(Supervision, RestartsOlderThanTheWindowAreForgotten)
{
    SupervisionOptions options;
    RestartIntensity intensity;
    EXPECT_TRUE(intensity.admit(t0, options));
    EXPECT_TRUE(intensity.admit(t0 + 1s, options));
    EXPECT_TRUE(intensity.admit(t0 + 2s, options));
    // 5 s after the first is still within the window, as supervisor.erl counts.
    EXPECT_FALSE(RestartIntensity(intensity).admit(t0 + 5s, options));
    // Past it, the first is forgotten: three in the window again.
    EXPECT_TRUE(intensity.admit(t0 + 5s + 1ms, options));
    EXPECT_EQ(intensity.recent(), 3u);
    // A long quiet spell forgets them all.
    EXPECT_TRUE(intensity.admit(t0 + 1h, options));
    EXPECT_EQ(intensity.recent(), 1u);
}

TEST(Supervision, ACrashLoopSlowerThanTheWindowRunsForever)
{
    SupervisionOptions options;
    RestartIntensity intensity;
    for (int i = 0; i < 1000; ++i)
        ASSERT_TRUE(intensity.admit(t0 + i * 2s, options)) << "restart " << i;
    EXPECT_EQ(intensity.recent(), 3u);
}

TEST(Supervision, MaxRestartsZeroGivesUpAtTheFirstExit)
{
    SupervisionOptions options;
    options.max_restarts = 0;
    RestartIntensity intensity;
    EXPECT_FALSE(intensity.admit(t0, options));
    EXPECT_EQ(intensity.recent(), 1u);
}

TEST(Supervision, NoDelayByDefault)
{
    SupervisionOptions options;
    RestartIntensity intensity;
    for (int i = 0; i < 3; ++i) {
        intensity.admit(t0 + i * 1ms, options);
        EXPECT_EQ(intensity.delay(options), 0ms);
    }
}

TEST(Supervision, TheDelayDoublesForEachEarlierRestartInTheWindow)
{
    SupervisionOptions options;
    options.max_restarts = 100;
    options.restart_delay = 100ms;
    RestartIntensity intensity;
    intensity.admit(t0, options);
    EXPECT_EQ(intensity.delay(options), 100ms);
    intensity.admit(t0 + 1s, options);
    EXPECT_EQ(intensity.delay(options), 200ms);
    intensity.admit(t0 + 2s, options);
    EXPECT_EQ(intensity.delay(options), 400ms);
    // Once the earlier ones leave the window, the delay is short again.
    intensity.admit(t0 + 1h, options);
    EXPECT_EQ(intensity.delay(options), 100ms);
}

TEST(Supervision, TheDelayStopsAtItsCap)
{
    SupervisionOptions options;
    options.max_restarts = 1000000;
    options.restart_delay = 100ms;
    options.restart_delay_max = 250ms;
    RestartIntensity intensity;
    intensity.admit(t0, options);
    intensity.admit(t0 + 1ms, options);
    EXPECT_EQ(intensity.delay(options), 200ms);
    intensity.admit(t0 + 2ms, options);
    EXPECT_EQ(intensity.delay(options), 250ms);
    // Many restarts: the doubling neither overflows nor passes the cap.
    for (int i = 3; i < 200; ++i)
        intensity.admit(t0 + i * 1ms, options);
    EXPECT_EQ(intensity.delay(options), 250ms);
}

TEST(Supervision, ACapBelowTheDelayLeavesTheDelay)
{
    SupervisionOptions options;
    options.restart_delay = 500ms;
    options.restart_delay_max = 100ms;
    RestartIntensity intensity;
    intensity.admit(t0, options);
    intensity.admit(t0 + 1ms, options);
    EXPECT_EQ(intensity.delay(options), 500ms);
}

TEST(Supervision, GaveUpTextNamesTheCountTheWindowAndTheLastExit)
{
    EXPECT_EQ(kv::gave_up_text(4, 5s, "killed by SIGSEGV"), "gave up after 4 restarts in 5 s; last exit: killed by SIGSEGV");
    EXPECT_EQ(kv::gave_up_text(1, 60s, "exited with status 3"), "gave up after 1 restart in 60 s; last exit: exited with status 3");
}
