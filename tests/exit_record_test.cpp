// The exit record: what registryd encodes in a HISTORY entry is what kvctl
// and the tests decode, in RESP2 and RESP3.
#include "exit_record.h"

#include <gtest/gtest.h>

namespace {

kv::ExitRecord sample()
{
    return kv::ExitRecord { "shop ping\xff", 4242, 7, "killed by SIGKILL", 1795000000123, 1795000004567, "permanent", 2,
        "restarting" };
}

kv::resp::Value parsed(const std::string& bytes)
{
    kv::resp::Value value;
    std::size_t consumed = 0;
    EXPECT_EQ(kv::resp::parse_value(bytes, consumed, value), kv::resp::ParseResult::complete);
    EXPECT_EQ(consumed, bytes.size());
    return value;
}

void expect_sample(const std::optional<kv::ExitRecord>& record)
{
    ASSERT_TRUE(record);
    EXPECT_EQ(record->name, sample().name);
    EXPECT_EQ(record->pid, 4242);
    EXPECT_EQ(record->id, 7u);
    EXPECT_EQ(record->reason, "killed by SIGKILL");
    EXPECT_EQ(record->started_ms, 1795000000123);
    EXPECT_EQ(record->restart, "permanent");
    EXPECT_EQ(record->restarts, 2u);
    EXPECT_EQ(record->outcome, "restarting");
    EXPECT_EQ(record->ended_ms, 1795000004567);
}

} // namespace

TEST(ExitRecord, AFlatArrayInResp2DecodesToTheRecord)
{
    std::string bytes;
    kv::append_resp(bytes, sample(), kv::resp::Protocol::resp2);
    EXPECT_EQ(bytes.substr(0, 4), "*18\r");
    expect_sample(kv::decode_exit_record(parsed(bytes)));
}

TEST(ExitRecord, AMapInResp3DecodesToTheRecord)
{
    std::string bytes;
    kv::append_resp(bytes, sample(), kv::resp::Protocol::resp3);
    EXPECT_EQ(bytes.substr(0, 3), "%9\r");
    expect_sample(kv::decode_exit_record(parsed(bytes)));
}

TEST(ExitRecord, AReplyWithoutEveryFieldOrWithAWrongTypeIsNotARecord)
{
    EXPECT_FALSE(kv::decode_exit_record(parsed("-ERR no\r\n")));
    EXPECT_FALSE(kv::decode_exit_record(parsed("*4\r\n$4\r\nname\r\n$1\r\nx\r\n$3\r\npid\r\n:1\r\n")));
    std::string bytes;
    kv::append_resp(bytes, sample());
    const auto at = bytes.find(":4242\r\n");
    ASSERT_NE(at, std::string::npos);
    bytes.replace(at, 7, "$4\r\n4242\r\n"); // the pid as text
    EXPECT_FALSE(kv::decode_exit_record(parsed(bytes)));
}
