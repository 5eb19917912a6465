// Expiry against a real bucket: an expired key is gone for every client at
// once (the socket, a direct reader of the segment, KEYS and SCAN), the room
// of keys nobody asks for again comes back by itself (active expiry), and a
// watched key that expires makes EXEC fail, as in Redis. A key set with a
// PXAT in the past is stored already expired (as Redis 7.0 stores it), which
// needs no waiting at all; where a test needs a key to expire later, it
// waits for the clock to pass the key's time (the thing under test), and
// checks that the time was still ahead when it had to be, never assuming
// how long the bucket takes.
#include <unistd.h>

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "daemon_fixture.h"
#include "shared_table.h"

using namespace kv::test;
using Result = kv::SharedTableReader::Result;

namespace {

long long unix_ms()
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Until the system clock is past `at` (Unix ms): as the bucket will see it.
void wait_until_past(long long at)
{
    while (unix_ms() <= at)
        std::this_thread::sleep_until(std::chrono::system_clock::time_point(std::chrono::milliseconds(at + 1)));
}

struct Bucket {
    explicit Bucket(const RegistryDaemon& daemon, const std::string& name = "sessions")
        : reply(daemon.create(name))
        , client(kv::Client::connect(reply.field("socket")->text))
    {
    }
    kv::resp::Value reply;
    kv::Client client;
};

} // namespace

TEST(Expiry, AnExpiredKeyIsGoneForTheSocketAndForADirectReaderAtItsTime)
{
    RegistryDaemon daemon;
    Bucket bucket(daemon);
    auto reader = kv::SharedTableReader::open(bucket.reply.field("segment")->text, kv::TableKind::bucket, ::geteuid());
    ASSERT_TRUE(reader);
    const long long at = unix_ms() + 300;
    ASSERT_EQ(bucket.client.call({ "SET", "token", "abc", "PXAT", std::to_string(at) }).text, "OK");
    ASSERT_EQ(bucket.client.call({ "SET", "small", "kept" }).text, "OK");
    // The reader answers "found" only before the time, "missing" only after it.
    std::string value;
    const auto deadline = std::chrono::steady_clock::now() + scaled(10s);
    for (;;) {
        ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the key never went for the direct reader";
        const long long before = unix_ms();
        const Result result = reader->get("token", value);
        const long long after = unix_ms();
        if (result == Result::missing) {
            EXPECT_GT(after, at) << "a direct reader lost the key before its time";
            break;
        }
        ASSERT_EQ(result, Result::found);
        EXPECT_EQ(value, "abc");
        ASSERT_LE(before, at) << "a direct reader returned the key after its time";
    }
    // Nobody asked the bucket yet: the pair is still in the segment, and
    // still hidden. Then the socket agrees, and deletes it.
    EXPECT_EQ(reader->exists("token"), Result::missing);
    EXPECT_EQ(bucket.client.call({ "GET", "token" }).type, kv::resp::Value::Type::null);
    EXPECT_EQ(bucket.client.call({ "TTL", "token" }).integer, -2);
    EXPECT_EQ(bucket.client.call({ "DBSIZE" }).integer, 1);
    EXPECT_EQ(reader->get("small", value), Result::found);
}

TEST(Expiry, KeysScanAndRandomKeyNeverNameAnExpiredKey)
{
    RegistryDaemon daemon;
    Bucket bucket(daemon);
    const std::string past = std::to_string(unix_ms() - 1000);
    for (int i = 0; i < 50; ++i) {
        ASSERT_EQ(bucket.client.call({ "SET", "old:" + std::to_string(i), "x", "PXAT", past }).text, "OK");
        ASSERT_EQ(bucket.client.call({ "SET", "new:" + std::to_string(i), "y", "EX", "1000" }).text, "OK");
    }
    // The expired ones are stored, and hidden. (Not counted here: the
    // bucket's own cycle may be deleting them meanwhile.)
    auto keys = bucket.client.call({ "KEYS", "*" });
    ASSERT_EQ(keys.elements.size(), 50u);
    for (const auto& key : keys.elements)
        EXPECT_EQ(key.text.rfind("new:", 0), 0u) << key.text;
    auto scan = bucket.client.call({ "SCAN", "0", "COUNT", "100000" });
    EXPECT_EQ(scan.elements[0].text, "0");
    EXPECT_EQ(scan.elements[1].elements.size(), 50u);
    for (const auto& key : scan.elements[1].elements)
        EXPECT_EQ(key.text.rfind("new:", 0), 0u) << key.text;
    for (int i = 0; i < 20; ++i)
        EXPECT_EQ(bucket.client.call({ "RANDOMKEY" }).text.rfind("new:", 0), 0u);
}

TEST(Expiry, KeysNobodyAsksForAgainAreDeletedByTheBucketItself)
{
    RegistryDaemon daemon;
    Bucket bucket(daemon);
    // More than one cycle's share of slots, so it takes several.
    std::vector<std::string> mset = { "MSET" };
    for (int i = 0; i < 20000; ++i)
        mset.insert(mset.end(), { "stays:" + std::to_string(i), "v" });
    ASSERT_EQ(bucket.client.call(mset).text, "OK");
    for (int i = 0; i < 10; ++i)
        ASSERT_EQ(bucket.client.call({ "SET", "later:" + std::to_string(i), "v", "EX", "1000" }).text, "OK");
    // Stored already expired: nobody will ever ask for them.
    const std::string past = std::to_string(unix_ms() - 1000);
    for (int i = 0; i < 5000; ++i)
        ASSERT_EQ(bucket.client.call({ "SET", "goes:" + std::to_string(i), std::string(100, 'x'), "PXAT", past }).text, "OK");
    // DBSIZE counts expired keys until they are deleted, and touches none.
    const auto deadline = std::chrono::steady_clock::now() + scaled(10s);
    long long size = 0;
    while ((size = bucket.client.call({ "DBSIZE" }).integer) > 20010 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(10ms); // polling a reply: the bucket's own cycle does the work
    EXPECT_EQ(size, 20010);
    const auto info = bucket.client.call({ "INFO" }).text;
    EXPECT_NE(info.find("db0:keys=20010,expires=10,"), std::string::npos) << info;
    EXPECT_NE(info.find("expired_keys:5000\r\n"), std::string::npos) << info;
    EXPECT_EQ(bucket.client.call({ "GET", "stays:19999" }).text, "v");
    EXPECT_EQ(bucket.client.call({ "GET", "later:9" }).text, "v");
}

TEST(Expiry, AWatchedKeyThatExpiresMakesExecFailAndOneExpiredBeforeWatchDoesNot)
{
    RegistryDaemon daemon;
    Bucket bucket(daemon);
    // The key must still be there when WATCH is served: on a machine too
    // slow for that, again with more time.
    long long at = 0;
    for (long long margin = 100;; margin *= 4) {
        at = unix_ms() + margin;
        ASSERT_EQ(bucket.client.call({ "SET", "lock", "me", "PXAT", std::to_string(at) }).text, "OK");
        ASSERT_EQ(bucket.client.call({ "WATCH", "lock" }).text, "OK");
        if (bucket.client.call({ "PTTL", "lock" }).integer >= 0)
            break;
        ASSERT_EQ(bucket.client.call({ "UNWATCH" }).text, "OK");
        ASSERT_LT(margin, 100'000) << "the bucket never served two requests within 100 s";
    }
    wait_until_past(at);
    ASSERT_EQ(bucket.client.call({ "MULTI" }).text, "OK");
    ASSERT_EQ(bucket.client.call({ "SET", "lock", "other" }).text, "QUEUED");
    EXPECT_EQ(bucket.client.call({ "EXEC" }).type, kv::resp::Value::Type::null) << "the watched key expired: EXEC must fail";
    EXPECT_EQ(bucket.client.call({ "EXISTS", "lock" }).integer, 0);

    // Already gone when watched: no change since, so EXEC runs.
    const long long earlier = unix_ms() - 1000;
    ASSERT_EQ(bucket.client.call({ "SET", "lock", "me", "PXAT", std::to_string(earlier) }).text, "OK");
    ASSERT_EQ(bucket.client.call({ "WATCH", "lock" }).text, "OK");
    ASSERT_EQ(bucket.client.call({ "MULTI" }).text, "OK");
    ASSERT_EQ(bucket.client.call({ "SET", "lock", "other" }).text, "QUEUED");
    auto replies = bucket.client.call({ "EXEC" });
    ASSERT_EQ(replies.elements.size(), 1u);
    EXPECT_EQ(replies.elements[0].text, "OK");
}

TEST(Expiry, AChangeThatDidNotFitTouchesNoWatch)
{
    RegistryDaemon daemon({ "--bucket-size", "262144" });
    Bucket bucket(daemon);
    auto other = kv::Client::connect(bucket.reply.field("socket")->text);
    ASSERT_EQ(bucket.client.call({ "SET", "a", "1" }).text, "OK");
    ASSERT_EQ(bucket.client.call({ "WATCH", "a" }).text, "OK");
    // Another client's MSET of `a` that cannot fit: rolled back whole, so `a` never changed.
    auto full = other.call({ "MSET", "a", "2", "big", std::string(300000, 'x') });
    ASSERT_EQ(full.text.rfind("FULL", 0), 0u) << full.text;
    EXPECT_EQ(other.call({ "GET", "a" }).text, "1");
    ASSERT_EQ(bucket.client.call({ "MULTI" }).text, "OK");
    ASSERT_EQ(bucket.client.call({ "INCR", "a" }).text, "QUEUED");
    auto replies = bucket.client.call({ "EXEC" });
    ASSERT_EQ(replies.elements.size(), 1u) << "EXEC failed though the watched key never changed";
    EXPECT_EQ(replies.elements[0].integer, 2);
}
