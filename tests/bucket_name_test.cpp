#include "bucket_name.h"
#include "log.h"

#include <gtest/gtest.h>

TEST(BucketName, AcceptsOrdinaryAndUnusualButHarmlessNames)
{
    EXPECT_FALSE(kv::bucket_name_error("shopping"));
    EXPECT_FALSE(kv::bucket_name_error("../../etc/passwd")); // data, never a path
    EXPECT_FALSE(kv::bucket_name_error("/"));
    EXPECT_FALSE(kv::bucket_name_error("two words"));
    EXPECT_FALSE(kv::bucket_name_error(std::string(255, 'x')));
}

TEST(BucketName, RefusesEmptyLongAndControlBytes)
{
    EXPECT_TRUE(kv::bucket_name_error(""));
    EXPECT_TRUE(kv::bucket_name_error(std::string(256, 'x')));
    EXPECT_TRUE(kv::bucket_name_error(std::string("a\0b", 3)));
    EXPECT_TRUE(kv::bucket_name_error("a\nb"));
    EXPECT_TRUE(kv::bucket_name_error("a\x7f"));
    EXPECT_EQ(*kv::bucket_name_error("a\tb"), "a bucket name must not contain control bytes (found 0x09)");
}
