// The writer and the direct reader of paired_writes.h.
#include "paired_writes.h"

#include <unistd.h>

#include <atomic>
#include <thread>

#include <gtest/gtest.h>

#include "daemon_fixture.h"
#include "shared_table.h"

namespace kv::test {

void expect_direct_reader_never_sees_half(const PairedChange& change)
{
    using Result = SharedTableReader::Result;
    RegistryDaemon daemon;
    auto bucket = daemon.create("shopping");
    auto client = Client::connect(bucket.field("socket")->text);
    ASSERT_EQ(client.call({ "MSET", "a", "0", "b", "0" }).text, "OK");
    std::atomic<bool> done { false }, failed { false };
    std::atomic<long> reads { 0 };
    std::string failure; // written by the reader before it sets `failed`
    std::thread reader_thread([&] {
        auto reader = SharedTableReader::open(bucket.field("segment")->text, TableKind::bucket, ::geteuid());
        std::string a, b;
        while (!done) {
            if (!reader || reader->get("a", a) != Result::found || reader->get("b", b) != Result::found) {
                failure = "a or b not read";
            } else if (std::stoll(b) < std::stoll(a)) {
                failure = "half " + change.what + ": a=" + a + " then b=" + b;
            } else {
                ++reads;
                continue;
            }
            failed = true;
            return;
        }
    });
    // Until the reader has read enough while units landed, within a bound of work.
    long counter = 0;
    while ((reads < 20000 || counter < 20000) && counter < 2'000'000 && !failed && !::testing::Test::HasFatalFailure()) {
        std::string requests;
        std::vector<std::pair<std::string, std::string>> pairs;
        for (int i = 0; i < change.pipelined; ++i) {
            const std::string value = std::to_string(++counter);
            pairs = { { "a", value } };
            for (int filler = 0; filler < 30; ++filler)
                pairs.emplace_back("filler" + std::to_string(filler), value);
            pairs.emplace_back("b", value);
            requests += change.encode(pairs);
        }
        client.send_raw(requests);
        for (int i = 0; i < change.pipelined && !::testing::Test::HasFatalFailure(); ++i)
            change.read_replies(client, pairs.size());
    }
    // The reader stops before any return, a failed reply's included.
    done = true;
    reader_thread.join();
    EXPECT_FALSE(failed) << failure;
    if (!::testing::Test::HasFatalFailure()) {
        EXPECT_GE(reads.load(), 20000);
    }
}

} // namespace kv::test
