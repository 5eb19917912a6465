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

TEST(BucketName, AcceptsMultiByteUtf8UpToTheLastCodePoint)
{
    EXPECT_FALSE(kv::bucket_name_error("caf\xc3\xa9"));              // é, 2 bytes
    EXPECT_FALSE(kv::bucket_name_error("\xe6\x97\xa5\xe6\x9c\xac")); // 日本, 3 bytes each
    EXPECT_FALSE(kv::bucket_name_error("e\xcc\x81"));                // e + combining acute
    EXPECT_FALSE(kv::bucket_name_error("\xf0\x9f\x8d\x8e"));         // 🍎, 4 bytes
    EXPECT_FALSE(kv::bucket_name_error("\xc2\xa0"));                 // U+00A0, first after the C1 controls
    EXPECT_FALSE(kv::bucket_name_error("\xed\x9f\xbf"));             // U+D7FF, last before the surrogates
    EXPECT_FALSE(kv::bucket_name_error("\xee\x80\x80"));             // U+E000, first after them
    EXPECT_FALSE(kv::bucket_name_error("\xef\xbf\xbf"));             // U+FFFF
    EXPECT_FALSE(kv::bucket_name_error("\xf4\x8f\xbf\xbf"));         // U+10FFFF, the last code point
    std::string longest;
    for (int i = 0; i < 85; ++i)
        longest += "\xe6\x97\xa5"; // 255 bytes, 85 characters
    EXPECT_FALSE(kv::bucket_name_error(longest));
}

TEST(BucketName, RefusesEveryKindOfInvalidUtf8)
{
    const auto refused = [](const std::string& name) {
        auto reason = kv::bucket_name_error(name);
        return reason && reason->rfind("a bucket name must be valid UTF-8", 0) == 0;
    };
    EXPECT_TRUE(refused("\xff"));                    // never a UTF-8 byte
    EXPECT_TRUE(refused("\xfe"));
    EXPECT_TRUE(refused("a\x80"));                   // a continuation byte with no lead
    EXPECT_TRUE(refused("\xc3"));                    // truncated 2-byte form
    EXPECT_TRUE(refused("\xe6\x97"));                // truncated 3-byte form
    EXPECT_TRUE(refused("\xf0\x9f\x8d"));            // truncated 4-byte form
    EXPECT_TRUE(refused("\xc3(a"));                  // lead byte followed by a non-continuation
    EXPECT_TRUE(refused("\xe6\x97(b"));
    EXPECT_TRUE(refused("\xc0\xaf"));                // overlong '/' in 2 bytes
    EXPECT_TRUE(refused("\xc1\xbf"));                // overlong U+007F
    EXPECT_TRUE(refused("\xe0\x80\xaf"));            // overlong '/' in 3 bytes
    EXPECT_TRUE(refused("\xe0\x9f\xbf"));            // overlong U+07FF
    EXPECT_TRUE(refused("\xf0\x80\x80\xaf"));        // overlong '/' in 4 bytes
    EXPECT_TRUE(refused("\xf0\x8f\xbf\xbf"));        // overlong U+FFFF
    EXPECT_TRUE(refused("\xed\xa0\x80"));            // U+D800, a surrogate
    EXPECT_TRUE(refused("\xed\xbf\xbf"));            // U+DFFF
    EXPECT_TRUE(refused("\xed\xa0\xbd\xed\xb8\x80")); // a surrogate pair (CESU-8), not UTF-8
    EXPECT_TRUE(refused("\xf4\x90\x80\x80"));        // U+110000, past the last code point
    EXPECT_TRUE(refused("\xf5\x80\x80\x80"));
    EXPECT_TRUE(refused("\xf8\x88\x80\x80\x80"));    // 5-byte forms are gone from UTF-8
    EXPECT_EQ(*kv::bucket_name_error("ab\xff"), "a bucket name must be valid UTF-8 (byte 0xff at offset 2 is not)");
}

TEST(BucketName, RefusesC1ControlCharacters)
{
    // U+009B is CSI: a terminal obeys it as it obeys ESC [.
    EXPECT_EQ(*kv::bucket_name_error("a\xc2\x9b" "2J"), "a bucket name must not contain control characters (found U+009B)");
    EXPECT_TRUE(kv::bucket_name_error("\xc2\x80"));
    EXPECT_TRUE(kv::bucket_name_error("\xc2\x9f"));
}
