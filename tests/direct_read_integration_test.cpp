// Direct reads and the name table against a real registryd and real
// buckets: what a client on this machine reads without a round trip must
// agree with what the sockets say, and must never outlive the truth.
#include <signal.h>
#include <unistd.h>


#include <gtest/gtest.h>

#include "daemon_fixture.h"
#include "name_table.h"
#include "paired_writes.h"
#include "shared_table.h"

using namespace kv::test;
using Result = kv::SharedTableReader::Result;

TEST(DirectRead, GetFromTheSegmentAgreesWithEveryAcknowledgedSet)
{
    RegistryDaemon daemon;
    auto bucket = daemon.create("shopping");
    auto reader = kv::SharedTableReader::open(bucket.field("segment")->text, kv::TableKind::bucket, ::geteuid());
    ASSERT_TRUE(reader);
    EXPECT_EQ(reader->owner_pid(), bucket.field("pid")->integer);
    auto client = kv::Client::connect(bucket.field("socket")->text);
    std::string value;
    for (int i = 0; i < 2000; ++i) {
        ASSERT_EQ(client.call({ "SET", "milk", std::to_string(i) }).text, "OK");
        ASSERT_EQ(reader->get("milk", value), Result::found);
        ASSERT_EQ(value, std::to_string(i));
    }
    client.call({ "DEL", "milk" });
    EXPECT_EQ(reader->get("milk", value), Result::missing);
    std::uint64_t keys = 1;
    EXPECT_EQ(reader->size(keys), Result::found);
    EXPECT_EQ(keys, 0u);
}

TEST(DirectRead, BucketThatDiesWhileMappedIsGoneNotStale)
{
    RegistryDaemon daemon;
    auto bucket = daemon.create("shopping");
    kv::Client::connect(bucket.field("socket")->text).call({ "SET", "milk", "1" });
    auto reader = kv::SharedTableReader::open(bucket.field("segment")->text, kv::TableKind::bucket, ::geteuid());
    ASSERT_TRUE(reader);
    auto watcher = daemon.monitor("shopping");
    ASSERT_EQ(kill_process(bucket.field("pid")->integer, SIGKILL), 0);
    ASSERT_EQ(watcher.read_reply().text, "killed by SIGKILL");
    std::string value;
    EXPECT_EQ(reader->get("milk", value), Result::gone);
    EXPECT_FALSE(kv::SharedTableReader::open(bucket.field("segment")->text, kv::TableKind::bucket, ::geteuid()));
}

TEST(NameTable, HasTheEntryWhenCreateRepliesAndLosesItWhenTheExitIsHandled)
{
    RegistryDaemon daemon;
    auto table = open_name_table(daemon.run_dir());
    ASSERT_TRUE(table);
    kv::BucketRecord record;
    for (int i = 0; i < 50; ++i) {
        std::string name = "b" + std::to_string(i);
        EXPECT_EQ(table->lookup(name, record), kv::NameTableReader::Result::missing);
        auto bucket = daemon.create(name);
        ASSERT_EQ(table->lookup(name, record), kv::NameTableReader::Result::found);
        EXPECT_EQ(record.pid, bucket.field("pid")->integer);
        EXPECT_EQ(record.id, static_cast<unsigned long long>(bucket.field("id")->integer));
        EXPECT_EQ(record.socket, bucket.field("socket")->text);
        EXPECT_EQ(record.segment, bucket.field("segment")->text);
        auto watcher = daemon.monitor(name);
        ASSERT_EQ(kill_process(record.pid, SIGKILL), 0);
        ASSERT_EQ(watcher.read_reply().text, "killed by SIGKILL");
        EXPECT_EQ(table->lookup(name, record), kv::NameTableReader::Result::missing);
    }
    auto generation = record.generation;
    daemon.create("again");
    ASSERT_EQ(table->lookup("again", record), kv::NameTableReader::Result::found);
    EXPECT_GT(record.generation, generation);
}

TEST(NameTable, TableOfADeadRegistrydIsNotTrusted)
{
    TemporaryDirectory directory;
    RegistryDaemon daemon({}, directory.path());
    daemon.create("a");
    daemon.stop(SIGKILL);
    EXPECT_FALSE(open_name_table(directory.path()));
    auto result = run_program({ binary("kvctl"), "--run-dir", directory.path(), "lookup", "a" });
    EXPECT_EQ(result.exit_code, 3) << result.err;
}

TEST(DirectRead, KvctlGetReadsTheSegmentWithoutTheBucketSocket)
{
    RegistryDaemon daemon({ "--max-connections", "1" });
    auto bucket = daemon.create("shopping");
    // The test holds the bucket's only connection: a GET over the socket would be refused.
    auto only = kv::Client::connect(bucket.field("socket")->text);
    ASSERT_EQ(only.call({ "SET", "milk", "1" }).text, "OK");
    auto get = run_program({ binary("kvctl"), "--run-dir", daemon.run_dir(), "get", "shopping", "milk" });
    EXPECT_EQ(get.exit_code, 0) << get.err;
    EXPECT_EQ(get.out, "1\n");
    auto missing = run_program({ binary("kvctl"), "--run-dir", daemon.run_dir(), "get", "shopping", "eggs" });
    EXPECT_EQ(missing.exit_code, 1);
    // Writes still go to the bucket, and are refused here.
    auto put = run_program({ binary("kvctl"), "--run-dir", daemon.run_dir(), "put", "shopping", "eggs", "2" });
    EXPECT_EQ(put.exit_code, 5) << put.err;
    EXPECT_NE(put.err.find("max connections reached"), std::string::npos) << put.err;
}

TEST(DirectRead, AReaderNeverSeesHalfAnMset)
{
    // a, 30 fillers and b in one MSET: all in one write window, or the reader catches b behind a.
    PairedChange mset;
    mset.what = "an MSET";
    mset.encode = [](const std::vector<std::pair<std::string, std::string>>& pairs) {
        std::vector<std::string> request = { "MSET" };
        for (const auto& [key, value] : pairs)
            request.insert(request.end(), { key, value });
        return kv::resp::encode_command(request);
    };
    mset.read_replies = [](kv::Client& client, std::size_t) { ASSERT_EQ(client.read_reply().text, "OK"); };
    mset.pipelined = 64;
    expect_direct_reader_never_sees_half(mset);
}
