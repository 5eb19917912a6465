// registryd's ring of the last exits: newest first, bounded, and empty when
// its size is 0.
#include "exit_history.h"

#include <gtest/gtest.h>

namespace {

kv::ExitRecord exit_of(unsigned long long id)
{
    return kv::ExitRecord { "b" + std::to_string(id), static_cast<pid_t>(1000 + id), id, "exited with status 0",
        static_cast<long long>(id), static_cast<long long>(id) + 1, "temporary", 0, "removed" };
}

} // namespace

TEST(ExitHistory, KeepsExitsNewestFirst)
{
    kv::ExitHistory history(10);
    for (unsigned long long id = 1; id <= 3; ++id)
        history.add(exit_of(id));
    ASSERT_EQ(history.size(), 3u);
    EXPECT_EQ(history[0].id, 3u);
    EXPECT_EQ(history[1].id, 2u);
    EXPECT_EQ(history[2].id, 1u);
}

TEST(ExitHistory, KeepsOnlyItsCapacityDroppingTheOldest)
{
    kv::ExitHistory history(3);
    for (unsigned long long id = 1; id <= 1000; ++id)
        history.add(exit_of(id));
    ASSERT_EQ(history.size(), 3u);
    EXPECT_EQ(history.capacity(), 3u);
    EXPECT_EQ(history[0].id, 1000u);
    EXPECT_EQ(history[1].id, 999u);
    EXPECT_EQ(history[2].id, 998u);
    EXPECT_EQ(history[0].name, "b1000");
}

TEST(ExitHistory, SizeZeroKeepsNothing)
{
    kv::ExitHistory history(0);
    history.add(exit_of(1));
    EXPECT_EQ(history.size(), 0u);
}
