// The history checker (history_checker.h) on hand-made histories: those a
// single owner at a time could produce pass, and each kind of bad history is
// rejected with a line that names the writes proving it.
#include <thread>

#include <gtest/gtest.h>

#include "history_checker.h"

using namespace kv::test;

namespace {

const Owner old_owner { "b", 200 };
const Owner new_owner { "a", 100 };

// A write of key `key` (value "v-<key>"), invoked and completed at these
// milliseconds.
Write write(const Owner& owner, const std::string& key, std::int64_t invoked_ms, std::int64_t completed_ms,
    Outcome outcome = Outcome::acknowledged)
{
    return Write { owner, key, "v-" + key, invoked_ms * 1'000'000, completed_ms * 1'000'000, outcome,
        outcome == Outcome::refused ? "CLUSTERDOWN lost lease" : "" };
}

std::string joined(const std::vector<std::string>& problems)
{
    std::string text;
    for (const auto& problem : problems)
        text += problem + "\n";
    return text;
}

} // namespace

TEST(HistoryChecker, OwnersInTurnWithEveryAcknowledgedWriteKeptPass)
{
    const std::vector<Write> writes {
        write(old_owner, "w1", 10, 20),
        write(old_owner, "w2", 20, 30),
        write(old_owner, "w3", 30, 40, Outcome::refused),
        write(old_owner, "w4", 40, 5000, Outcome::unknown),
        write(new_owner, "w5", 50, 60),
        write(new_owner, "w6", 60, 70),
        write(new_owner, "w7", 70, 80, Outcome::unknown),
    };
    // w7's outcome is unknown: present or not, the history is fine.
    EXPECT_EQ(joined(check_history(writes, new_owner, { { "w5", "v-w5" }, { "w6", "v-w6" } })), "");
    EXPECT_EQ(joined(check_history(writes, new_owner, { { "w5", "v-w5" }, { "w6", "v-w6" }, { "w7", "v-w7" } })), "");
}

TEST(HistoryChecker, WritesWhoseIntervalsOverlapButMayHaveBeenInTurnPass)
{
    // b's ack may have happened at 14, a's at 16: one owner at a time.
    const std::vector<Write> writes { write(old_owner, "w1", 10, 20), write(new_owner, "w2", 15, 25) };
    EXPECT_EQ(joined(overlapping_owners(writes)), "");
}

TEST(HistoryChecker, TwoOwnersAcknowledgingAtTheSameTimeAreRejected)
{
    // a acknowledged w2 (done by 30) before b's w3 was even sent (40),
    // and b acknowledged w1 (done by 20) before a's w2 was sent (25).
    const std::vector<Write> writes {
        write(old_owner, "w1", 10, 20),
        write(new_owner, "w2", 25, 30),
        write(old_owner, "w3", 40, 50),
    };
    const auto problems = overlapping_owners(writes);
    ASSERT_EQ(problems.size(), 1u) << joined(problems);
    EXPECT_EQ(problems[0],
        "owners a/100 and b/200 accepted writes at the same time: b/200 acknowledged w1 (completed at 10.000 ms) before a/100 "
        "acknowledged w2 (invoked at 15.000 ms), and a/100 acknowledged w2 (completed at 20.000 ms) before b/200 acknowledged w3 "
        "(invoked at 30.000 ms)")
        << "times shown in ms after the first invoke";
    // And in the whole check, whatever the final state.
    EXPECT_FALSE(check_history(writes, new_owner, { { "w2", "v-w2" } }).empty());
}

TEST(HistoryChecker, AnOldOwnersRefusalsAndUnknownsAfterTheNewOwnerStartedAreFine)
{
    // Only acknowledged writes count as accepted: b refusing (or a write
    // to b whose reply never came) while a acknowledges is no overlap.
    const std::vector<Write> writes {
        write(old_owner, "w1", 10, 20),
        write(new_owner, "w2", 25, 30),
        write(old_owner, "w3", 40, 50, Outcome::refused),
        write(old_owner, "w4", 40, 9000, Outcome::unknown),
    };
    EXPECT_EQ(joined(overlapping_owners(writes)), "");
}

TEST(HistoryChecker, ThreeOwnersAreCheckedPairByPair)
{
    const Owner third { "c", 300 };
    const std::vector<Write> writes {
        write(old_owner, "w1", 10, 20),
        write(new_owner, "w2", 30, 40),
        write(third, "w3", 50, 60),
        write(old_owner, "w4", 70, 80), // b again, after c: overlaps both
    };
    EXPECT_EQ(overlapping_owners(writes).size(), 2u) << joined(overlapping_owners(writes));
}

TEST(HistoryChecker, AnAcknowledgedWriteMissingFromTheFinalOwnerIsALostWrite)
{
    const std::vector<Write> writes { write(new_owner, "w1", 10, 20), write(new_owner, "w2", 30, 40) };
    const auto problems = lost_or_phantom_writes(writes, new_owner, { { "w1", "v-w1" } });
    ASSERT_EQ(problems.size(), 1u) << joined(problems);
    EXPECT_EQ(problems[0], "write w2 acknowledged by the final owner a/100 was lost");
    EXPECT_FALSE(check_history(writes, new_owner, { { "w1", "v-w1" } }).empty());
}

TEST(HistoryChecker, AnAcknowledgedWriteHoldingAnotherValueIsRejected)
{
    const std::vector<Write> writes { write(new_owner, "w1", 10, 20) };
    const auto problems = lost_or_phantom_writes(writes, new_owner, { { "w1", "something else" } });
    ASSERT_EQ(problems.size(), 1u) << joined(problems);
    EXPECT_EQ(problems[0], "write w1 acknowledged by the final owner a/100 holds something else, not the value written, v-w1");
}

TEST(HistoryChecker, ARefusedWriteFoundInTheFinalStateIsRejected)
{
    const std::vector<Write> writes { write(new_owner, "w1", 10, 20, Outcome::refused) };
    const auto problems = lost_or_phantom_writes(writes, new_owner, { { "w1", "v-w1" } });
    ASSERT_EQ(problems.size(), 1u) << joined(problems);
    EXPECT_EQ(problems[0], "write w1 refused by the final owner a/100 (CLUSTERDOWN lost lease) took effect: its key holds v-w1");
}

TEST(HistoryChecker, AnEarlierOwnersWritesAreNotLookedForInTheFinalOwner)
{
    // The old copy's data died with it; only the final owner's own writes count.
    const std::vector<Write> writes { write(old_owner, "w1", 10, 20), write(new_owner, "w2", 30, 40) };
    EXPECT_EQ(joined(check_history(writes, new_owner, { { "w2", "v-w2" } })), "");
}

TEST(HistoryChecker, HistoryKeepsWritesFromManyThreads)
{
    History history;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&history, t] {
            for (int i = 0; i < 1000; ++i)
                history.add(write(new_owner, std::to_string(t) + "-" + std::to_string(i), 0, 0));
        });
    for (auto& thread : threads)
        thread.join();
    EXPECT_EQ(history.writes().size(), 4000u);
    EXPECT_EQ(history.acknowledged_by(new_owner), 4000u);
    EXPECT_EQ(history.acknowledged_by(old_owner), 0u);
}
