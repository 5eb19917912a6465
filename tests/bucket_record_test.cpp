// The bucket record: what registryd encodes (in a reply, in the name table)
// is what kvctl, kvbench and the tests decode.
#include "bucket_record.h"

#include <gtest/gtest.h>

namespace {

kv::BucketRecord sample()
{
    return kv::BucketRecord { "shop ping\xff", 4242, 7, "/run/kv/buckets/7.0123456789abcdef.sock",
        "/kv.0123456789abcdef.b7.fedcba9876543210", 0, {}, {} };
}

// The fields of a reply, in order.
std::vector<std::string> field_names(const kv::resp::Value& reply)
{
    std::vector<std::string> names;
    for (std::size_t i = 0; i < reply.elements.size(); i += 2)
        names.push_back(reply.elements[i].text);
    return names;
}

kv::resp::Value parsed(const std::string& bytes)
{
    kv::resp::Value value;
    std::size_t consumed = 0;
    EXPECT_EQ(kv::resp::parse_value(bytes, consumed, value), kv::resp::ParseResult::complete);
    EXPECT_EQ(consumed, bytes.size());
    return value;
}

} // namespace

TEST(BucketRecord, AReplyDecodesToTheRecordRegistrydEncoded)
{
    std::string bytes;
    kv::append_resp(bytes, sample());
    auto record = kv::decode_bucket_record(parsed(bytes));
    ASSERT_TRUE(record);
    EXPECT_EQ(record->name, sample().name);
    EXPECT_EQ(record->pid, 4242);
    EXPECT_EQ(record->id, 7u);
    EXPECT_EQ(record->socket, sample().socket);
    EXPECT_EQ(record->segment, sample().segment);
    kv::BucketStats stats;
    EXPECT_FALSE(kv::decode_bucket_record(parsed(bytes), &stats)) << "a LOOKUP reply has no figures";
}

TEST(BucketRecord, TcpAddsTheAddressAndAClusterTheNodeAndTheAddressAlways)
{
    using Names = std::vector<std::string>;
    std::string plain;
    kv::append_resp(plain, sample());
    EXPECT_EQ(field_names(parsed(plain)), (Names { "name", "pid", "id", "socket", "segment" }));

    auto tcp = sample();
    tcp.address = "127.0.0.1:40001";
    std::string with_tcp;
    kv::append_resp(with_tcp, tcp);
    EXPECT_EQ(field_names(parsed(with_tcp)), (Names { "name", "pid", "id", "socket", "segment", "address" }));
    EXPECT_EQ(kv::decode_bucket_record(parsed(with_tcp))->address, "127.0.0.1:40001");

    auto clustered = sample();
    clustered.node = "a";
    std::string in_cluster;
    kv::append_resp(in_cluster, clustered);
    EXPECT_EQ(field_names(parsed(in_cluster)), (Names { "name", "pid", "id", "socket", "segment", "node", "address" }));
    auto record = kv::decode_bucket_record(parsed(in_cluster));
    ASSERT_TRUE(record);
    EXPECT_EQ(record->node, "a");
    EXPECT_EQ(record->address, "");
}

TEST(BucketRecord, AListEntryCarriesTheFigures)
{
    kv::BucketStats written { "ready", 1234, 5, 678, 2, "transient", true, 3, "killed by SIGSEGV" };
    std::string bytes;
    kv::append_resp(bytes, sample(), &written);
    kv::BucketStats read;
    auto record = kv::decode_bucket_record(parsed(bytes), &read);
    ASSERT_TRUE(record);
    EXPECT_EQ(record->name, sample().name);
    EXPECT_EQ(read.state, "ready");
    EXPECT_EQ(read.uptime_ms, 1234);
    EXPECT_EQ(read.keys, 5u);
    EXPECT_EQ(read.bytes, 678u);
    EXPECT_EQ(read.monitors, 2u);
    EXPECT_EQ(read.restart, "transient");
    EXPECT_TRUE(read.keep);
    EXPECT_EQ(read.restarts, 3u);
    EXPECT_EQ(read.last_exit, "killed by SIGSEGV");
}

TEST(BucketRecord, AReplyWithoutEveryFieldIsNotARecord)
{
    EXPECT_FALSE(kv::decode_bucket_record(parsed("-NOTFOUND no bucket named x\r\n")));
    EXPECT_FALSE(kv::decode_bucket_record(parsed("*4\r\n$4\r\nname\r\n$1\r\nx\r\n$3\r\npid\r\n:1\r\n")));
    // A pid sent as text is not a pid.
    std::string bytes;
    kv::append_resp(bytes, sample());
    auto at = bytes.find(":4242\r\n");
    ASSERT_NE(at, std::string::npos);
    bytes.replace(at, 7, "$4\r\n4242\r\n");
    EXPECT_FALSE(kv::decode_bucket_record(parsed(bytes)));
}

TEST(BucketRecord, TheNameTableEntryRoundTripsAndReusesStorage)
{
    auto written = sample();
    written.generation = 99;
    kv::BucketRecord read;
    ASSERT_TRUE(kv::decode_table_entry(kv::encode_table_entry(written), read));
    EXPECT_EQ(read.pid, 4242);
    EXPECT_EQ(read.id, 7u);
    EXPECT_EQ(read.generation, 99u);
    EXPECT_EQ(read.socket, written.socket);
    EXPECT_EQ(read.segment, written.segment);
    EXPECT_FALSE(kv::decode_table_entry("4242 7 99", read));
    EXPECT_FALSE(kv::decode_table_entry("x 7 99 1\na\nb", read));
    EXPECT_FALSE(kv::decode_table_entry("1 7 99 5\na\nb", read)) << "a socket length past the text";
    // A run dir may hold a newline; the socket path comes back whole.
    written.socket = "/tmp/a\nb/buckets/1.i.sock";
    ASSERT_TRUE(kv::decode_table_entry(kv::encode_table_entry(written), read));
    EXPECT_EQ(read.socket, written.socket);
    EXPECT_EQ(read.segment, written.segment);
}
