#include "bucket_map.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "shared_table.h"

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

TEST(BucketMap, HeaderCountersAreReadableFromOutside)
{
    auto name = unique_segment("stats");
    kv::BucketMap map(name, 1 << 20);
    map.set("a", "12345");
    map.set("b", "1");
    auto stats = kv::read_table_stats(name);
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
