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
