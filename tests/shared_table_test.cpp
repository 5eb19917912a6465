#include "shared_table.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <random>
#include <thread>

#include <gtest/gtest.h>

namespace {

std::string unique_segment(const char* test) { return "/kv.tabletest." + std::to_string(getpid()) + "." + test; }

using Result = kv::SharedTableReader::Result;

// A value that carries its own check: "<counter>:<counter repeated>", of a
// length that depends on the counter, so a torn read cannot pass for whole.
std::string checked_value(std::uint64_t counter)
{
    std::string digits = std::to_string(counter);
    std::string value = digits + ":";
    for (std::uint64_t i = 0; i < 1 + counter % 50; ++i)
        value += digits;
    return value;
}

bool is_whole(const std::string& value, std::uint64_t& counter)
{
    auto colon = value.find(':');
    if (colon == std::string::npos)
        return false;
    counter = std::stoull(value.substr(0, colon));
    return value == checked_value(counter);
}

} // namespace

TEST(SharedTable, ReaderSeesWhatTheWriterStoresWithoutAnySystemCall)
{
    auto name = unique_segment("basic");
    kv::SharedTableWriter writer(name, 4 << 20, kv::TableKind::bucket);
    auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket);
    ASSERT_TRUE(reader);
    std::string value;
    EXPECT_EQ(reader->get("milk", value), Result::gone) << "not alive until the owner says so";
    writer.publish_alive();
    EXPECT_EQ(reader->get("milk", value), Result::missing);
    writer.set("milk", "1");
    EXPECT_EQ(reader->get("milk", value), Result::found);
    EXPECT_EQ(value, "1");
    writer.set("milk", "2");
    EXPECT_EQ(reader->get("milk", value), Result::found);
    EXPECT_EQ(value, "2");
    writer.erase("milk");
    EXPECT_EQ(reader->exists("milk"), Result::missing);
    EXPECT_FALSE(kv::SharedTableReader::open(name, kv::TableKind::names)) << "a bucket table is not a name table";
}

TEST(SharedTable, PairsMoveBetweenTheSlotAndTheHeapAsTheyGrowAndShrink)
{
    auto name = unique_segment("inline");
    kv::SharedTableWriter writer(name, 4 << 20, kv::TableKind::bucket);
    writer.publish_alive();
    auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket);
    std::string value;
    // 46 bytes of key plus value fit in the slot; 47 do not.
    const std::string key(16, 'k');
    for (std::size_t size : { 0, 30, 31, 200, 5, 4096, 30 }) {
        std::string expected(size, static_cast<char>('a' + size % 26));
        ASSERT_EQ(writer.set(key, expected), kv::SharedTableWriter::SetResult::stored);
        ASSERT_EQ(reader->get(key, value), Result::found) << size;
        EXPECT_EQ(value, expected) << size;
        EXPECT_EQ(writer.bytes(), key.size() + size);
    }
    EXPECT_TRUE(writer.erase(key));
    EXPECT_EQ(reader->get(key, value), Result::missing);
    EXPECT_EQ(writer.bytes(), 0u);
}

TEST(SharedTable, GrowsItsIndexAndKeepsEveryKey)
{
    auto name = unique_segment("grow");
    kv::SharedTableWriter writer(name, 64 << 20, kv::TableKind::bucket);
    writer.publish_alive();
    auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket);
    for (int i = 0; i < 100000; ++i)
        ASSERT_EQ(writer.set("key" + std::to_string(i), std::to_string(i)), kv::SharedTableWriter::SetResult::stored);
    for (int i = 0; i < 100000; i += 2)
        writer.erase("key" + std::to_string(i));
    std::uint64_t keys = 0;
    EXPECT_EQ(reader->size(keys), Result::found);
    EXPECT_EQ(keys, 50000u);
    std::string value;
    for (int i = 0; i < 100000; ++i) {
        auto result = reader->get("key" + std::to_string(i), value);
        if (i % 2) {
            ASSERT_EQ(result, Result::found) << i;
            ASSERT_EQ(value, std::to_string(i));
        } else {
            ASSERT_EQ(result, Result::missing) << i;
        }
    }
}

TEST(SharedTable, FullTableRefusesAndKeepsItsData)
{
    kv::SharedTableWriter writer(unique_segment("full"), 256 * 1024, kv::TableKind::bucket);
    int stored = 0;
    while (writer.set("k" + std::to_string(stored), std::string(1000, 'v')) == kv::SharedTableWriter::SetResult::stored)
        ++stored;
    EXPECT_GT(stored, 100);
    EXPECT_EQ(writer.set("k0", std::string(300000, 'x')), kv::SharedTableWriter::SetResult::full);
    for (int i = 0; i < stored; ++i)
        ASSERT_EQ(*writer.get("k" + std::to_string(i)), std::string(1000, 'v'));
}

TEST(SharedTable, ConcurrentReaderNeverSeesATornOrOlderValue)
{
    auto name = unique_segment("concurrent");
    kv::SharedTableWriter writer(name, 64 << 20, kv::TableKind::bucket);
    writer.publish_alive();
    std::atomic<std::uint64_t> acknowledged { 0 };
    std::atomic<bool> done { false };
    std::atomic<long> reads { 0 };
    std::atomic<bool> failed { false };
    std::string failure;

    std::thread reader_thread([&] {
        auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket);
        std::string value;
        std::uint64_t last = 0;
        while (!done) {
            // What the writer has acknowledged before this read started must show.
            std::uint64_t floor = acknowledged.load(std::memory_order_acquire);
            auto result = reader->get("hot", value);
            ++reads;
            std::uint64_t counter = 0;
            if (floor > 0 && result != Result::found) {
                failure = "hot not found after acknowledgement: result " + std::to_string(static_cast<int>(result));
            } else if (result == Result::found && !is_whole(value, counter)) {
                failure = "torn value: " + value.substr(0, 40);
            } else if (result == Result::found && (counter < floor || counter < last)) {
                failure = "stale value " + std::to_string(counter) + " after " + std::to_string(std::max(floor, last));
            } else {
                last = std::max(last, counter);
                continue;
            }
            failed = true;
            return;
        }
    });
    // The writer churns: the hot key, plus keys that come and go so the heap
    // reuses freed entries and the index grows under the reader.
    std::mt19937 random(7);
    for (std::uint64_t counter = 1; counter <= 200000 && !failed; ++counter) {
        ASSERT_EQ(writer.set("hot", checked_value(counter)), kv::SharedTableWriter::SetResult::stored);
        acknowledged.store(counter, std::memory_order_release);
        std::string churn = "churn" + std::to_string(random() % 5000);
        if (random() % 2)
            writer.set(churn, std::string(random() % 200, 'c'));
        else
            writer.erase(churn);
    }
    done = true;
    reader_thread.join();
    EXPECT_FALSE(failed) << failure;
    EXPECT_GT(reads.load(), 1000);
}

TEST(SharedTable, ReaderKilledAtAnyInstantBlocksNobody)
{
    auto name = unique_segment("killed");
    kv::SharedTableWriter writer(name, 16 << 20, kv::TableKind::bucket);
    writer.publish_alive();
    writer.set("k", "v");
    std::vector<pid_t> readers;
    for (int i = 0; i < 4; ++i) {
        pid_t pid = fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket);
            std::string value;
            for (;;)
                reader->get("k", value);
        }
        readers.push_back(pid);
    }
    // Kill them while they read, at whatever instant that is.
    for (pid_t pid : readers) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
    }
    for (int i = 0; i < 10000; ++i)
        ASSERT_EQ(writer.set("k", std::to_string(i)), kv::SharedTableWriter::SetResult::stored);
    auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket);
    std::string value;
    EXPECT_EQ(reader->get("k", value), Result::found);
    EXPECT_EQ(value, "9999");
}

TEST(SharedTable, WriterThatDiedMidWriteMakesReadersGiveUpNotHang)
{
    auto name = unique_segment("midwrite");
    auto writer = std::make_unique<kv::SharedTableWriter>(name, 4 << 20, kv::TableKind::bucket);
    writer->publish_alive();
    writer->set("k", "v");
    // What a writer killed inside a write leaves: an odd sequence, forever.
    int fd = shm_open(name.c_str(), O_RDWR, 0);
    ASSERT_GE(fd, 0);
    auto* header = static_cast<kv::TableHeader*>(mmap(nullptr, kv::table_header_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    close(fd);
    header->sequence.fetch_add(1);
    auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket);
    std::string value;
    EXPECT_EQ(reader->get("k", value), Result::busy);
    // registryd reaps the writer and says so: now it is "gone".
    EXPECT_TRUE(kv::mark_table_gone(name));
    EXPECT_EQ(reader->get("k", value), Result::gone);
    header->sequence.fetch_add(1);
    munmap(header, kv::table_header_size);
}

TEST(SharedTable, OwnerExitIsGoneForReadersThatStillHaveItMapped)
{
    auto name = unique_segment("exit");
    auto writer = std::make_unique<kv::SharedTableWriter>(name, 4 << 20, kv::TableKind::bucket);
    writer->publish_alive();
    writer->set("k", "v");
    auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket);
    writer.reset();
    std::string value;
    EXPECT_EQ(reader->get("k", value), Result::gone);
    EXPECT_FALSE(kv::SharedTableReader::open(name, kv::TableKind::bucket)) << "the segment is removed";
}

TEST(SharedTable, HashSpreadsKeys)
{
    EXPECT_NE(kv::hash_key("a"), kv::hash_key("b"));
    EXPECT_NE(kv::hash_key(std::string("a\0", 2)), kv::hash_key("a"));
    EXPECT_EQ(kv::hash_key("same key"), kv::hash_key("same key"));
}
