#include "bucket_map.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "shared_table.h"
#include "system_error.h"
#include "unique_fd.h"

namespace {

std::string unique_segment(const char* test)
{
    return "/kv.test." + std::to_string(getpid()) + "." + test;
}

bool segment_exists(const std::string& name)
{
    int fd = shm_open(name.c_str(), O_RDONLY, 0);
    if (fd >= 0)
        close(fd);
    return fd >= 0;
}

} // namespace

TEST(BucketMap, StoresGetsAndDeletesPlainBytes)
{
    kv::BucketMap map(unique_segment("basic"), 1 << 20);
    std::string key("k\0ey", 4);
    EXPECT_FALSE(map.get(key));
    EXPECT_EQ(map.set(key, "value"), kv::BucketMap::SetResult::stored);
    EXPECT_EQ(*map.get(key), "value");
    EXPECT_EQ(map.set(key, "other"), kv::BucketMap::SetResult::stored);
    EXPECT_EQ(*map.get(key), "other");
    EXPECT_EQ(map.size(), 1u);
    EXPECT_EQ(map.bytes(), 4u + 5u);
    EXPECT_TRUE(map.erase(key));
    EXPECT_FALSE(map.erase(key));
    EXPECT_EQ(map.size(), 0u);
    EXPECT_EQ(map.bytes(), 0u);
}

TEST(BucketMap, SegmentIsPrivateAndRemovedWithTheMap)
{
    auto name = unique_segment("lifetime");
    {
        kv::BucketMap map(name, 1 << 20);
        struct stat info;
        int fd = shm_open(name.c_str(), O_RDONLY, 0);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(fstat(fd, &info), 0);
        close(fd);
        EXPECT_EQ(info.st_mode & 0777, 0600u);
    }
    EXPECT_FALSE(segment_exists(name));
}

TEST(BucketMap, RefusesANameThatExistsAndLeavesItThere)
{
    auto name = unique_segment("taken");
    kv::UniqueFd stale = kv::create_segment(name);
    EXPECT_THROW(kv::BucketMap(name, 1 << 20), kv::SystemError);
    EXPECT_TRUE(segment_exists(name));
    EXPECT_TRUE(kv::remove_segment_if_same(name, stale.get()));
}

TEST(BucketMap, AdoptsTheSegmentItsCreatorMadeAndLeavesItsName)
{
    auto name = unique_segment("adopted");
    kv::UniqueFd created = kv::create_segment(name);
    {
        kv::BucketMap map(kv::UniqueFd(fcntl(created.get(), F_DUPFD_CLOEXEC, 0)), name, 1 << 20);
        EXPECT_EQ(map.segment_name(), name);
        EXPECT_EQ(map.set("a", "1"), kv::BucketMap::SetResult::stored);
        EXPECT_EQ(*map.get("a"), "1");
        auto stats = kv::read_table_stats(created.get());
        ASSERT_TRUE(stats);
        EXPECT_EQ(stats->keys, 1u);
        struct stat info;
        ASSERT_EQ(fstat(created.get(), &info), 0);
        EXPECT_EQ(info.st_mode & 0777, 0600u);
        EXPECT_EQ(info.st_size, 1 << 20);
    }
    EXPECT_TRUE(segment_exists(name)) << "registryd, its creator, removes it";
    EXPECT_TRUE(kv::remove_segment_if_same(name, created.get()));
    EXPECT_FALSE(segment_exists(name));
}

TEST(BucketMap, HeaderCountersAreReadableFromOutside)
{
    auto name = unique_segment("stats");
    kv::BucketMap map(name, 1 << 20);
    map.set("a", "12345");
    map.set("b", "1");
    kv::UniqueFd segment(shm_open(name.c_str(), O_RDONLY | O_CLOEXEC, 0));
    auto stats = kv::read_table_stats(segment.get());
    ASSERT_TRUE(stats);
    EXPECT_EQ(stats->keys, 2u);
    EXPECT_EQ(stats->bytes, 8u);
}

TEST(BucketMap, FullSegmentRefusesAndKeepsEveryKey)
{
    kv::BucketMap map(unique_segment("full"), 256 * 1024);
    std::string value(1000, 'v');
    int stored = 0;
    while (map.set("key" + std::to_string(stored), value) == kv::BucketMap::SetResult::stored)
        ++stored;
    ASSERT_GT(stored, 50);
    EXPECT_EQ(map.size(), static_cast<std::uint64_t>(stored));
    // Growing an existing value fails too, and leaves the old one in place.
    EXPECT_EQ(map.set("key0", std::string(200000, 'x')), kv::BucketMap::SetResult::full);
    // A value larger than the whole segment is refused the same way.
    EXPECT_EQ(map.set("huge", std::string(300000, 'x')), kv::BucketMap::SetResult::full);
    for (int i = 0; i < stored; ++i)
        ASSERT_EQ(*map.get("key" + std::to_string(i)), value) << i;
}

TEST(BucketMap, ALookupDeletesAnExpiredKeyAndTheCycleDeletesTheRest)
{
    kv::BucketMap map(unique_segment("expiry"), 4 << 20);
    const std::uint64_t past = kv::BucketMap::now() - 1;
    const std::uint64_t later = kv::BucketMap::now() + 100000;
    for (int i = 0; i < 1000; ++i) {
        ASSERT_EQ(map.set("gone" + std::to_string(i), "v", past), kv::BucketMap::SetResult::stored);
        ASSERT_EQ(map.set("stays" + std::to_string(i), "v", i % 2 ? later : kv::BucketMap::never_expires), kv::BucketMap::SetResult::stored);
    }
    EXPECT_EQ(map.size(), 2000u);
    EXPECT_FALSE(map.get("gone0"));
    EXPECT_EQ(map.size(), 1999u) << "the lookup deleted it";
    EXPECT_FALSE(map.erase("gone1")) << "an expired key was not there";
    EXPECT_EQ(map.expired_keys(), 2u);
    // One cycle with time enough: every expired key, none of the others.
    std::uint64_t deleted = 0;
    while (map.size() > 1000)
        deleted += map.expire_cycle(16384, std::chrono::seconds(1));
    EXPECT_EQ(deleted, 998u);
    EXPECT_EQ(map.expiring(), 500u);
    EXPECT_EQ(map.expired_keys(), 1000u);
    EXPECT_TRUE(map.get("stays999"));
    // The sweep learnt that nothing is due for 100 s; a time set since that
    // is due now is still found by the next cycle.
    ASSERT_EQ(map.set("late", "v", past), kv::BucketMap::SetResult::stored);
    EXPECT_EQ(map.expire_cycle(16384, std::chrono::seconds(1)), 1u);
    ASSERT_EQ(map.set("later", "v"), kv::BucketMap::SetResult::stored);
    ASSERT_EQ(map.set_expiry("later", past), kv::BucketMap::SetResult::stored);
    EXPECT_EQ(map.expire_cycle(16384, std::chrono::seconds(1)), 1u);
    // Nothing with a time: a cycle does nothing.
    map.clear();
    EXPECT_EQ(map.expire_cycle(16384, std::chrono::seconds(1)), 0u);
}

TEST(BucketMap, OneCommandJudgesExpiryAtOneInstant)
{
    kv::BucketMap map(unique_segment("frozen"), 4 << 20);
    const std::uint64_t soon = kv::BucketMap::now() + 30;
    ASSERT_EQ(map.set("k", "v", soon), kv::BucketMap::SetResult::stored);
    {
        kv::BucketMap::FrozenClock one_instant(map);
        ASSERT_TRUE(map.get("k")); // the instant is read here, before `soon`
        while (kv::BucketMap::now() <= soon) {
        }
        EXPECT_TRUE(map.get("k")) << "the same command saw the key there, then gone";
    }
    EXPECT_FALSE(map.get("k"));
}
