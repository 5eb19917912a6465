#include "shared_table.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <cerrno>
#include <fstream>
#include <functional>
#include <random>
#include <string_view>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "require.h"

#include "fault_guard.h"
#include "system_error.h"
#include "unique_fd.h"
#include "waiting_child.h"

namespace {

std::string unique_segment(const char* test) { return "/kv.tabletest." + std::to_string(getpid()) + "." + test; }

using Result = kv::SharedTableReader::Result;

kv::UniqueFd open_segment(const std::string& name, int flags = O_RDWR)
{
    return kv::UniqueFd(shm_open(name.c_str(), flags | O_CLOEXEC, 0));
}

bool same_object(int a, int b)
{
    struct stat first, second;
    return fstat(a, &first) == 0 && fstat(b, &second) == 0 && first.st_dev == second.st_dev && first.st_ino == second.st_ino;
}

// The header page of a segment, mapped read-write: what a process of the
// owner's uid could do to it.
struct HeaderPage {
    explicit HeaderPage(int fd)
        : header(static_cast<kv::TableHeader*>(mmap(nullptr, kv::table_header_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)))
    {
    }
    ~HeaderPage()
    {
        if (header != MAP_FAILED)
            munmap(header, kv::table_header_size);
    }
    kv::TableHeader* header;
};

// Where a table's index starts and how many slots it has, from its header
// (both 0 if the header page cannot be mapped).
struct IndexPlace {
    std::uint64_t offset = 0;
    std::uint64_t capacity = 0;
};
IndexPlace index_place(int fd)
{
    HeaderPage page(fd);
    if (page.header == MAP_FAILED)
        return {};
    return { page.header->index_offset.load(), page.header->capacity.load() };
}

std::string numbered_key(int i) { return "key" + std::to_string(i); }

// How many mappings of segment `name` this process has (lines of
// /proc/self/maps that name it): a mapping split in pieces counts each.
std::size_t count_mappings(const std::string& name)
{
    std::ifstream maps("/proc/self/maps");
    std::size_t lines = 0;
    for (std::string line; std::getline(maps, line);)
        lines += line.find("/dev/shm" + name) != std::string::npos;
    return lines;
}

// Death tests must not leave core files behind.
void no_core_dump()
{
    struct rlimit none { 0, 0 };
    setrlimit(RLIMIT_CORE, &none);
}

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
    auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid());
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
    EXPECT_FALSE(kv::SharedTableReader::open(name, kv::TableKind::names, geteuid())) << "a bucket table is not a name table";
}

TEST(SharedTable, PairsMoveBetweenTheSlotAndTheHeapAsTheyGrowAndShrink)
{
    auto name = unique_segment("inline");
    kv::SharedTableWriter writer(name, 4 << 20, kv::TableKind::bucket);
    writer.publish_alive();
    auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid());
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

// A small pair's key is compared and its value copied a word at a time, the
// last word overlapping the one before (table_layout.h, small_bytes_equal):
// every key and value size that fits in the slot, keys that differ from a
// stored one only in their first or last byte (never the one asked for), and
// a reader's string reused across sizes.
TEST(SharedTable, EveryKeyAndValueSizeThatFitsInTheSlotReadsBackWhole)
{
    auto name = unique_segment("sizes");
    kv::SharedTableWriter writer(name, 16 << 20, kv::TableKind::bucket);
    writer.publish_alive();
    auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid());
    ASSERT_TRUE(reader);
    // One key per pair of sizes: its first byte alone tells the value sizes
    // apart (at most 45 of them), its length the key sizes.
    auto key_of = [](std::size_t key_size, std::size_t value_size) {
        std::string key(key_size, 'm');
        for (std::size_t i = 0; i < key_size; ++i)
            key[i] = static_cast<char>('0' + (i * 7 + value_size) % 64);
        return key;
    };
    auto value_of = [](std::size_t key_size, std::size_t value_size) {
        std::string value(value_size, 'v');
        for (std::size_t i = 0; i < value_size; ++i)
            value[i] = static_cast<char>('A' + (i + key_size) % 26);
        return value;
    };
    for (std::size_t key_size = 1; key_size <= kv::layout::inline_capacity; ++key_size)
        for (std::size_t value_size = 0; key_size + value_size <= kv::layout::inline_capacity; ++value_size)
            ASSERT_EQ(writer.set(key_of(key_size, value_size), value_of(key_size, value_size)),
                kv::SharedTableWriter::SetResult::stored);
    std::string value;
    for (std::size_t key_size = 1; key_size <= kv::layout::inline_capacity; ++key_size) {
        for (std::size_t value_size = 0; key_size + value_size <= kv::layout::inline_capacity; ++value_size) {
            const std::string key = key_of(key_size, value_size);
            ASSERT_EQ(reader->get(key, value), Result::found) << key;
            EXPECT_EQ(value, value_of(key_size, value_size)) << key;
            for (std::size_t at : { std::size_t(0), key_size - 1 }) {
                std::string other = key;
                other[at] = '#';
                EXPECT_EQ(reader->get(other, value), Result::missing) << other;
            }
        }
    }
}

TEST(SharedTable, GrowsItsIndexAndKeepsEveryKey)
{
    auto name = unique_segment("grow");
    kv::SharedTableWriter writer(name, 64 << 20, kv::TableKind::bucket);
    writer.publish_alive();
    auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid());
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

namespace {

// A churn key's value names its key and carries its own check, so a read
// that returns another key's value, or a torn one, cannot pass for whole.
std::string churn_value(const std::string& key, std::uint64_t counter) { return key + "=" + checked_value(counter); }

bool is_churn_value(const std::string& key, const std::string& value)
{
    std::uint64_t counter = 0;
    return value.rfind(key + "=", 0) == 0 && is_whole(value.substr(key.size() + 1), counter);
}

// One writer thread churns the table while one reader thread reads it: the
// hot key must never read torn, older than acknowledged, or older than a
// previous read; a churn key only ever as a value written for it. The
// writer's values go from inline (in the slot) to heap entries and back,
// keys come and go so the heap reuses freed entries, and the index grows
// under the reader. `open_reader` makes the reader, in the reader thread.
void reader_against_writer(const std::string& name, std::uint64_t writes,
    const std::function<std::unique_ptr<kv::SharedTableReader>(kv::SharedTableWriter&)>& open_reader)
{
    kv::SharedTableWriter writer(name, 64 << 20, kv::TableKind::bucket);
    writer.publish_alive();
    std::atomic<std::uint64_t> acknowledged { 0 };
    std::atomic<bool> done { false };
    std::atomic<long> reads { 0 };
    std::atomic<bool> failed { false };
    std::string failure;

    std::thread reader_thread([&] {
        auto reader = open_reader(writer);
        std::string value;
        std::uint64_t last = 0;
        std::mt19937 random(11);
        while (!done) {
            // What the writer has acknowledged before this read started must show.
            std::uint64_t floor = acknowledged.load(std::memory_order_acquire);
            auto result = reader->get("hot", value);
            ++reads;
            std::uint64_t counter = 0;
            const std::string churn = "churn" + std::to_string(random() % 5000);
            std::string churned;
            if (floor > 0 && result != Result::found) {
                failure = "hot not found after acknowledgement: result " + std::to_string(static_cast<int>(result));
            } else if (result == Result::found && !is_whole(value, counter)) {
                failure = "torn value: " + value.substr(0, 40);
            } else if (result == Result::found && (counter < floor || counter < last)) {
                failure = "stale value " + std::to_string(counter) + " after " + std::to_string(std::max(floor, last));
            } else if (reader->get(churn, churned) == Result::found && !is_churn_value(churn, churned)) {
                failure = "a value never written for " + churn + ": " + churned.substr(0, 60);
            } else {
                last = std::max(last, counter);
                continue;
            }
            failed = true;
            return;
        }
    });
    std::mt19937 random(7);
    for (std::uint64_t counter = 1; counter <= writes && !failed; ++counter) {
        ASSERT_EQ(writer.set("hot", checked_value(counter)), kv::SharedTableWriter::SetResult::stored);
        acknowledged.store(counter, std::memory_order_release);
        std::string churn = "churn" + std::to_string(random() % 5000);
        if (random() % 2)
            writer.set(churn, churn_value(churn, random() % 100000)); // 20 to 320 bytes: inline or in the heap
        else
            writer.erase(churn);
    }
    done = true;
    reader_thread.join();
    EXPECT_FALSE(failed) << failure;
    EXPECT_GT(reads.load(), 1000);
}

} // namespace

TEST(SharedTable, ConcurrentReaderNeverSeesATornOrOlderValue)
{
    const auto name = unique_segment("concurrent");
    reader_against_writer(name, 200000, [&](kv::SharedTableWriter&) {
        return kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid());
    });
}

// The same with the reader on the writer's own mapping, in this process:
// ThreadSanitizer sees a race only between accesses to one address, never
// across two mappings of a segment, so this is the variant it can check
// (./kv sanitize runs it under TSan, where it fails if the reader copies a
// value with a plain memcpy). Fewer writes: TSan is slow (about 5 s here).
TEST(SharedTable, ConcurrentReaderOnTheWritersOwnMappingNeverSeesATornOrOlderValue)
{
    reader_against_writer(unique_segment("same-mapping"), 20000, [](kv::SharedTableWriter& writer) {
        return kv::SharedTableReader::on_mapping(writer.mapping(), getpid());
    });
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
            auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid());
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
    auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid());
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
    auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid());
    std::string value;
    EXPECT_EQ(reader->get("k", value), Result::busy);
    // registryd reaps the writer and says so: now it is "gone".
    kv::UniqueFd segment(shm_open(name.c_str(), O_RDWR | O_CLOEXEC, 0));
    EXPECT_TRUE(kv::mark_table_gone(segment.get()));
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
    auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid());
    writer.reset();
    std::string value;
    EXPECT_EQ(reader->get("k", value), Result::gone);
    EXPECT_FALSE(kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid())) << "the segment is removed";
}

// ---- trust: what a reader refuses ----

TEST(SharedTableTrust, RefusesASegmentOwnedByAnotherUid)
{
    KV_REQUIRE_ROOT("to give a segment to another uid");
    auto name = unique_segment("otheruid");
    kv::SharedTableWriter writer(name, 4 << 20, kv::TableKind::bucket);
    writer.publish_alive();
    ASSERT_TRUE(kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid()));
    auto segment = open_segment(name);
    ASSERT_EQ(fchown(segment.get(), 65534, 65534), 0);
    EXPECT_FALSE(kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid())) << "planted by another uid";
    EXPECT_TRUE(kv::SharedTableReader::open(name, kv::TableKind::bucket, 65534)) << "the uid is what was refused";
}

TEST(SharedTableTrust, RefusesASegmentWithAnyGroupOrOtherPermission)
{
    auto name = unique_segment("mode");
    kv::SharedTableWriter writer(name, 4 << 20, kv::TableKind::bucket);
    writer.publish_alive();
    auto segment = open_segment(name);
    for (mode_t mode : { 0640, 0620, 0610, 0604, 0602, 0601, 0666 }) {
        ASSERT_EQ(fchmod(segment.get(), mode), 0);
        EXPECT_FALSE(kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid())) << std::oct << mode;
    }
    ASSERT_EQ(fchmod(segment.get(), 0600), 0);
    EXPECT_TRUE(kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid()));
}

TEST(SharedTableTrust, RefusesASymlinkPlantedUnderTheName)
{
    auto target = unique_segment("linktarget");
    kv::SharedTableWriter writer(target, 4 << 20, kv::TableKind::bucket);
    writer.publish_alive();
    auto link = unique_segment("link");
    const std::string link_path = "/dev/shm" + link;
    ASSERT_EQ(symlink(("/dev/shm" + target).c_str(), link_path.c_str()), 0) << strerror(errno);
    // shm_open sees the link (glibc opens /dev/shm/NAME) and does not follow it.
    errno = 0;
    EXPECT_FALSE(open_segment(link, O_RDONLY));
    EXPECT_EQ(errno, ELOOP);
    EXPECT_FALSE(kv::SharedTableReader::open(link, kv::TableKind::bucket, geteuid()));
    EXPECT_TRUE(kv::SharedTableReader::open(target, kv::TableKind::bucket, geteuid()));
    unlink(link_path.c_str());
}

TEST(SharedTableTrust, RefusesAFifoPlantedUnderTheNameWithoutBlocking)
{
    auto name = unique_segment("fifo");
    const std::string path = "/dev/shm" + name;
    ASSERT_EQ(mkfifo(path.c_str(), 0600), 0) << strerror(errno);
    EXPECT_FALSE(kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid()));
    unlink(path.c_str());
}

TEST(SharedTableTrust, RefusesATableWhoseRecordedOwnerIsNotThisProcess)
{
    auto name = unique_segment("forged");
    kv::SharedTableWriter writer(name, 4 << 20, kv::TableKind::bucket);
    writer.publish_alive();
    auto segment = open_segment(name);
    HeaderPage page(segment.get());
    ASSERT_NE(page.header, MAP_FAILED);
    // Our pid, another start time: what a reused pid looks like.
    page.header->owner_start_time += 1;
    EXPECT_FALSE(kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid()));
    page.header->owner_start_time -= 1;
    EXPECT_TRUE(kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid()));
    page.header->version = kv::TableHeader::expected_version - 1;
    EXPECT_FALSE(kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid())) << "an older layout";
    page.header->version = kv::TableHeader::expected_version;
}

TEST(SharedTableTrust, RefusesATableWhoseOwnerExitedEvenWhileItIsAZombie)
{
    auto name = unique_segment("zombie");
    kv::Pipe go = kv::make_pipe("go");
    pid_t child = kv::test::spawn_waiting_child(go, [&] {
        // Never destroyed: the owner dies as if killed, `alive` still 1.
        auto* writer = new kv::SharedTableWriter(name, 4 << 20, kv::TableKind::bucket);
        writer->publish_alive();
        writer->set("k", "v");
    });
    ASSERT_GT(child, 0);
    EXPECT_TRUE(kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid())) << "its owner is running";
    go.write_end.reset();
    // Exited, not reaped: a zombie, which kill(pid, 0) would call alive.
    siginfo_t info {};
    ASSERT_EQ(waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT), 0);
    ASSERT_EQ(kill(child, 0), 0);
    EXPECT_FALSE(kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid())) << "owner is a zombie";
    ASSERT_EQ(waitpid(child, nullptr, 0), child);
    EXPECT_FALSE(kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid())) << "owner is reaped";
    shm_unlink(name.c_str());
}

// ---- the writer never takes or removes what is not its own ----

TEST(SharedTableWriter, RefusesANameThatExistsAndLeavesItIntact)
{
    auto name = unique_segment("taken");
    kv::UniqueFd theirs = kv::create_segment(name);
    ASSERT_EQ(ftruncate(theirs.get(), 12345), 0);
    try {
        kv::SharedTableWriter writer(name, 4 << 20, kv::TableKind::bucket);
        ADD_FAILURE() << "took over an existing segment";
    } catch (const kv::SystemError& error) {
        EXPECT_EQ(error.error(), EEXIST);
        EXPECT_EQ(std::string(error.what()), "unable to create segment " + name + ": File exists");
    }
    auto named = open_segment(name, O_RDONLY);
    ASSERT_TRUE(named);
    EXPECT_TRUE(same_object(named.get(), theirs.get()));
    struct stat info;
    ASSERT_EQ(fstat(named.get(), &info), 0);
    EXPECT_EQ(info.st_size, 12345);
    EXPECT_THROW(kv::create_segment(name), kv::SystemError);
    EXPECT_TRUE(kv::remove_segment_if_same(name, theirs.get()));
}

TEST(SharedTableWriter, DestructorLeavesASegmentThatReplacedItsName)
{
    auto name = unique_segment("replaced");
    auto writer = std::make_unique<kv::SharedTableWriter>(name, 4 << 20, kv::TableKind::bucket);
    ASSERT_EQ(shm_unlink(name.c_str()), 0);
    kv::UniqueFd replacement = kv::create_segment(name);
    writer.reset();
    auto named = open_segment(name, O_RDONLY);
    ASSERT_TRUE(named) << "the writer removed a segment that was not its own";
    EXPECT_TRUE(same_object(named.get(), replacement.get()));
    EXPECT_TRUE(kv::remove_segment_if_same(name, replacement.get()));
}

TEST(SharedTableWriter, AdoptsADescriptorAndLeavesTheNameToItsCreator)
{
    auto name = unique_segment("adopted");
    kv::UniqueFd created = kv::create_segment(name);
    auto writer = std::make_unique<kv::SharedTableWriter>(
        kv::UniqueFd(fcntl(created.get(), F_DUPFD_CLOEXEC, 0)), name, 4 << 20, kv::TableKind::bucket);
    writer->publish_alive();
    writer->set("k", "v");
    auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid());
    ASSERT_TRUE(reader);
    std::string value;
    EXPECT_EQ(reader->get("k", value), Result::found);
    EXPECT_EQ(value, "v");
    auto stats = kv::read_table_stats(created.get());
    ASSERT_TRUE(stats);
    EXPECT_EQ(stats->keys, 1u);
    writer.reset();
    EXPECT_EQ(reader->get("k", value), Result::gone) << "alive is cleared";
    auto named = open_segment(name, O_RDONLY);
    ASSERT_TRUE(named) << "an adopting writer must not unlink";
    EXPECT_TRUE(same_object(named.get(), created.get()));
    EXPECT_TRUE(kv::remove_segment_if_same(name, created.get()));
    EXPECT_FALSE(kv::remove_segment_if_same(name, created.get())) << "already gone";
}

TEST(SharedTableWriter, RefusesToAdoptASegmentThatIsNotEmpty)
{
    auto name = unique_segment("notempty");
    kv::UniqueFd created = kv::create_segment(name);
    ASSERT_EQ(ftruncate(created.get(), 8192), 0);
    EXPECT_THROW(kv::SharedTableWriter(kv::UniqueFd(fcntl(created.get(), F_DUPFD_CLOEXEC, 0)), name, 4 << 20, kv::TableKind::bucket),
        std::runtime_error);
    auto named = open_segment(name, O_RDONLY);
    EXPECT_TRUE(named && same_object(named.get(), created.get())) << "left to its creator";
    EXPECT_TRUE(kv::remove_segment_if_same(name, created.get()));
}

TEST(SharedTableWriter, EveryRefusalSaysWhichSegmentAndWhy)
{
    auto name = unique_segment("small");
    try {
        kv::SharedTableWriter writer(name, 1000, kv::TableKind::bucket);
        ADD_FAILURE() << "made a table of 1000 bytes";
    } catch (const std::runtime_error& error) {
        EXPECT_EQ(std::string(error.what()), "unable to create segment " + name + ": size 1000 is below the 68 KiB minimum");
    }
    EXPECT_FALSE(open_segment(name, O_RDONLY)) << "a writer that could not make its table removes the name it created";

    // An object sealed against writable shared mappings: it is sized and
    // reserved like any segment, and then mmap refuses it. The message says
    // so, with mmap's errno.
    kv::UniqueFd sealed(memfd_create("kv-sealed", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    ASSERT_TRUE(sealed) << strerror(errno);
    KV_REQUIRE(fcntl(sealed.get(), F_ADD_SEALS, F_SEAL_FUTURE_WRITE) == 0, "F_SEAL_FUTURE_WRITE (Linux 5.1)");
    try {
        kv::SharedTableWriter writer(std::move(sealed), name, 4 << 20, kv::TableKind::bucket);
        ADD_FAILURE() << "mapped a sealed object for writing";
    } catch (const kv::SystemError& error) {
        EXPECT_EQ(error.error(), EPERM);
        EXPECT_EQ(std::string(error.what()), "unable to map segment " + name + ": Operation not permitted");
    }
}

TEST(SharedTableSegments, RemoveIfSameRemovesOnlyTheSameObject)
{
    auto name = unique_segment("same");
    auto other = unique_segment("other");
    kv::UniqueFd segment = kv::create_segment(name);
    kv::UniqueFd stranger = kv::create_segment(other);
    EXPECT_FALSE(kv::remove_segment_if_same(name, stranger.get()));
    EXPECT_TRUE(open_segment(name, O_RDONLY));
    EXPECT_TRUE(kv::remove_segment_if_same(name, segment.get()));
    EXPECT_FALSE(open_segment(name, O_RDONLY));
    EXPECT_TRUE(kv::remove_segment_if_same(other, stranger.get()));
}

TEST(SharedTableSegments, HeaderHelpersAnswerNothingForASegmentNotYetFormatted)
{
    auto name = unique_segment("unformatted");
    kv::UniqueFd segment = kv::create_segment(name);
    EXPECT_FALSE(kv::read_table_stats(segment.get()));
    EXPECT_FALSE(kv::mark_table_gone(segment.get()));
    ASSERT_EQ(ftruncate(segment.get(), 1 << 20), 0);
    EXPECT_FALSE(kv::read_table_stats(segment.get())) << "zeros are not a table";
    EXPECT_TRUE(kv::remove_segment_if_same(name, segment.get()));
}

// ---- a segment that shrinks under its reader ----

TEST(SharedTableReader, SegmentTruncatedToNothingIsGoneNotSIGBUS)
{
    auto name = unique_segment("truncated");
    const std::size_t size = 4 << 20;
    kv::SharedTableWriter writer(name, size, kv::TableKind::bucket);
    writer.publish_alive();
    writer.set("k", "v");
    auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid());
    ASSERT_TRUE(reader);
    std::string value;
    ASSERT_EQ(reader->get("k", value), Result::found);
    auto segment = open_segment(name);
    ASSERT_EQ(ftruncate(segment.get(), 0), 0);
    EXPECT_EQ(reader->get("k", value), Result::gone);
    EXPECT_EQ(reader->exists("k"), Result::gone);
    std::uint64_t keys = 0;
    EXPECT_EQ(reader->size(keys), Result::gone);
    EXPECT_FALSE(reader->alive());
    EXPECT_FALSE(kv::read_table_stats(segment.get()));
    EXPECT_FALSE(kv::mark_table_gone(segment.get()));
    EXPECT_FALSE(kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid()));
    // The writer trusts its own segment: give its pages back before it
    // clears `alive` on its way out.
    ASSERT_EQ(ftruncate(segment.get(), static_cast<off_t>(size)), 0);
}

TEST(SharedTableReader, SegmentTruncatedInsideItsIndexIsGoneFromThenOnNotSIGBUS)
{
    auto name = unique_segment("cutindex");
    const std::size_t size = 64 << 20;
    kv::SharedTableWriter writer(name, size, kv::TableKind::bucket);
    writer.publish_alive();
    const int count = 20000;
    const auto key = numbered_key;
    for (int i = 0; i < count; ++i)
        ASSERT_EQ(writer.set(key(i), "v" + std::to_string(i)), kv::SharedTableWriter::SetResult::stored);
    auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid());
    ASSERT_TRUE(reader);
    auto segment = open_segment(name);
    const IndexPlace index = index_place(segment.get());
    ASSERT_GT(index.capacity, 0u);
    const std::uint64_t capacity = index.capacity;
    const std::uint64_t cut = (index.offset + capacity * 64 / 2) & ~std::uint64_t(4095); // a page boundary halfway through the index
    ASSERT_GT(cut, index.offset);
    // A key whose probe stays well before the cut (its home slot in the
    // index's first quarter) and one whose probe starts well past it (in
    // its third quarter, past the cut's page).
    int before = -1, after = -1;
    for (int i = 0; i < count && (before < 0 || after < 0); ++i) {
        const std::uint64_t home = kv::hash_key(key(i)) & (capacity - 1);
        if (home < capacity / 4 && before < 0)
            before = i;
        if (home >= capacity / 2 + capacity / 16 && home < capacity / 4 * 3 && after < 0)
            after = i;
    }
    ASSERT_GE(before, 0);
    ASSERT_GE(after, 0);
    ASSERT_EQ(ftruncate(segment.get(), static_cast<off_t>(cut)), 0);
    std::string value;
    ASSERT_EQ(reader->get(key(before), value), Result::found) << "a slot before the cut answers";
    EXPECT_EQ(value, "v" + std::to_string(before));
    EXPECT_EQ(reader->get(key(after), value), Result::gone) << "a slot past the cut is gone";
    // From then on the table is no longer the truth, not even before the cut.
    EXPECT_EQ(reader->get(key(before), value), Result::gone);
    EXPECT_EQ(reader->exists(key(before)), Result::gone);
    EXPECT_FALSE(reader->alive());
    ASSERT_EQ(ftruncate(segment.get(), static_cast<off_t>(size)), 0);
    EXPECT_EQ(reader->get(key(before), value), Result::gone) << "not even once the segment has grown back";
}

TEST(SharedTableReader, BatchReadMeetingACutIsGoneAndStopsThere)
{
    // A direct MGET of many keys, most of them past a cut near the index's
    // start: gone, for the whole batch and every read after it, and the
    // reader does not go on faulting key after key (the handler puts zeros
    // over the rest of the mapping at the first fault, and the batch stops).
    auto name = unique_segment("cutbatch");
    const std::size_t size = 64 << 20;
    kv::SharedTableWriter writer(name, size, kv::TableKind::bucket);
    writer.publish_alive();
    const int count = 4000;
    std::vector<std::string> names;
    for (int i = 0; i < count; ++i) {
        names.push_back(numbered_key(i));
        ASSERT_EQ(writer.set(names.back(), "v"), kv::SharedTableWriter::SetResult::stored);
    }
    auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid());
    ASSERT_TRUE(reader);
    std::vector<std::string_view> keys(names.begin(), names.end());
    std::vector<std::string> values(keys.size());
    std::vector<Result> results(keys.size());
    ASSERT_EQ(reader->get_many(keys, values, results), Result::found);
    auto segment = open_segment(name);
    const IndexPlace index = index_place(segment.get());
    ASSERT_GT(index.capacity, 0u);
    const std::uint64_t cut = (index.offset + 4096) & ~std::uint64_t(4095);
    ASSERT_EQ(ftruncate(segment.get(), static_cast<off_t>(cut)), 0);
    const std::size_t mappings_before = count_mappings(name);
    ASSERT_GT(mappings_before, 0u);
    EXPECT_EQ(reader->get_many(keys, values, results), Result::gone);
    // The zeros replace the rest of the reader's mapping in one piece: what
    // is left of the segment's mapping stays whole, not cut at every page
    // that faulted.
    EXPECT_EQ(count_mappings(name), mappings_before) << "one run of zeros, not a piece per page that faulted";
    EXPECT_EQ(reader->get(names[0], values[0]), Result::gone);
    ASSERT_EQ(ftruncate(segment.get(), static_cast<off_t>(size)), 0);
}

TEST(SharedTableReader, ValueCutShortUnderItsReaderIsGoneNotSIGBUS)
{
    // A value in the table's heap, far past the index: the cut lands in
    // the middle of its bytes, so the copy itself meets the missing page.
    auto name = unique_segment("cutvalue");
    const std::size_t size = 4 << 20;
    kv::SharedTableWriter writer(name, size, kv::TableKind::bucket);
    writer.publish_alive();
    const std::string big(256 << 10, 'b');
    ASSERT_EQ(writer.set("big", big), kv::SharedTableWriter::SetResult::stored);
    auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid());
    ASSERT_TRUE(reader);
    std::string value;
    ASSERT_EQ(reader->get("big", value), Result::found);
    ASSERT_EQ(value, big);
    // Where the value's bytes are: the last page of them that holds 'b's.
    auto segment = open_segment(name);
    std::vector<char> bytes(size);
    ASSERT_EQ(pread(segment.get(), bytes.data(), size, 0), static_cast<ssize_t>(size));
    const std::string_view all(bytes.data(), size);
    const std::size_t first = all.find(big.substr(0, 4096));
    ASSERT_NE(first, std::string_view::npos);
    const std::uint64_t cut = (first + big.size() / 2) & ~std::uint64_t(4095);
    ASSERT_EQ(ftruncate(segment.get(), static_cast<off_t>(cut)), 0);
    EXPECT_EQ(reader->get("big", value), Result::gone);
    ASSERT_EQ(ftruncate(segment.get(), static_cast<off_t>(size)), 0);
}

namespace {

// A whole segment mapped read-write, to forge what a reader meets: a torn
// pair, reused memory, garbage.
struct WholeSegment {
    WholeSegment(int fd, std::size_t size)
        : size(size)
        , base(static_cast<char*>(mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)))
    {
    }
    ~WholeSegment()
    {
        if (base != MAP_FAILED)
            munmap(base, size);
    }
    kv::TableHeader& header() const { return *reinterpret_cast<kv::TableHeader*>(base); }
    kv::layout::Slot* index() const { return reinterpret_cast<kv::layout::Slot*>(base + header().index_offset.load()); }
    std::size_t size;
    char* base;
};

// Pages the segment holds in /dev/shm: a reader that touched a hole of the
// sparse segment would have added one.
blkcnt_t allocated_blocks(int fd)
{
    struct stat info;
    EXPECT_EQ(fstat(fd, &info), 0);
    return info.st_blocks;
}

// A bucket table holding one pair, a reader of it, and a read-write
// descriptor of its segment through which a test forges what a racing or
// hostile writer could leave there.
struct ForgeableTable {
    ForgeableTable(const char* tag, std::size_t size, const std::string& key, const std::string& value)
        : name(unique_segment(tag))
        , size(size)
        , writer(name, size, kv::TableKind::bucket)
    {
        writer.publish_alive();
        stored = writer.set(key, value) == kv::SharedTableWriter::SetResult::stored;
        reader = kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid());
        segment = open_segment(name);
    }
    std::string name;
    std::size_t size;
    kv::SharedTableWriter writer;
    bool stored = false;
    std::unique_ptr<kv::SharedTableReader> reader;
    kv::UniqueFd segment;
};

} // namespace

TEST(SharedTableReader, NeverFollowsAnIndexPastTheReservedLimit)
{
    ForgeableTable table("limitindex", 64 << 20, "milk", "1");
    ASSERT_TRUE(table.stored && table.reader);
    const std::size_t size = table.size;
    auto& reader = table.reader;
    auto& segment = table.segment;
    WholeSegment whole(segment.get(), size);
    ASSERT_NE(whole.base, MAP_FAILED);
    kv::TableHeader& header = whole.header();
    const std::uint64_t limit = header.reserved_limit.load();
    ASSERT_GE(limit, kv::table_header_size);
    ASSERT_LT(limit + (8 << 20), size) << "the test needs a hole above the limit";
    const std::uint64_t index_offset = header.index_offset.load();
    const std::uint64_t capacity = header.capacity.load();
    ASSERT_LE(index_offset + capacity * 64, limit) << "the writer's own index is below its limit";
    std::string value;
    ASSERT_EQ(reader->get("milk", value), Result::found);
    const blkcnt_t before = allocated_blocks(segment.get());

    // An aligned index wholly above the limit, inside the segment: a hole.
    header.index_offset.store((limit + (4 << 20)) & ~std::uint64_t(63));
    EXPECT_EQ(reader->get("milk", value), Result::gone);
    EXPECT_EQ(reader->exists("milk"), Result::gone);
    // One that starts below the limit and ends past it (a torn pair: the
    // old offset with a new, larger capacity).
    header.index_offset.store(index_offset);
    header.capacity.store(std::uint64_t(1) << 20);
    EXPECT_EQ(reader->get("milk", value), Result::gone);
    EXPECT_EQ(allocated_blocks(segment.get()), before) << "the reader touched a page the writer never reserved";

    header.capacity.store(capacity);
    ASSERT_EQ(reader->get("milk", value), Result::found);
    EXPECT_EQ(value, "1");
}

TEST(SharedTableReader, NeverFollowsAnEntryPastTheReservedLimitNorCopiesMoreThanTheTableHolds)
{
    const std::string big(100, 'x'); // too large for a slot: it lives in a heap entry
    ForgeableTable table("limitentry", 64 << 20, "big", big);
    ASSERT_TRUE(table.stored && table.reader);
    const std::size_t size = table.size;
    auto& reader = table.reader;
    auto& segment = table.segment;
    WholeSegment whole(segment.get(), size);
    ASSERT_NE(whole.base, MAP_FAILED);
    kv::TableHeader& header = whole.header();
    const std::uint64_t limit = header.reserved_limit.load();
    kv::layout::Slot* slot = nullptr;
    for (std::uint64_t i = 0; i < header.capacity.load(); ++i) {
        if (kv::layout::holds_entry(whole.index()[i].entry.load()))
            slot = &whole.index()[i];
    }
    ASSERT_NE(slot, nullptr);
    const std::uint64_t entry_offset = slot->entry.load();
    ASSERT_LT(entry_offset, limit);
    std::string value;
    ASSERT_EQ(reader->get("big", value), Result::found);
    ASSERT_EQ(value, big);
    const blkcnt_t before = allocated_blocks(segment.get());

    // An entry in the hole above the limit (memory reused, or garbage).
    slot->entry.store((limit + (4 << 20)) & ~std::uint64_t(63));
    EXPECT_EQ(reader->get("big", value), Result::gone);
    EXPECT_EQ(allocated_blocks(segment.get()), before) << "the reader touched a page the writer never reserved";
    // An unaligned one.
    slot->entry.store(entry_offset + 1);
    EXPECT_EQ(reader->get("big", value), Result::gone);
    // One whose value runs past the limit.
    slot->entry.store(entry_offset);
    auto* entry = reinterpret_cast<kv::layout::Entry*>(whole.base + entry_offset);
    entry->value_size = static_cast<std::uint32_t>(limit - entry_offset);
    EXPECT_EQ(reader->get("big", value), Result::gone);
    // One whose value fits below the limit but is larger than the whole table.
    entry->value_size = static_cast<std::uint32_t>(header.bytes.load() + 1);
    ASSERT_LE(entry_offset + sizeof(kv::layout::Entry) + 3 + entry->value_size, limit);
    EXPECT_EQ(reader->get("big", value), Result::gone);
    EXPECT_EQ(allocated_blocks(segment.get()), before);

    entry->value_size = static_cast<std::uint32_t>(big.size());
    ASSERT_EQ(reader->get("big", value), Result::found);
    EXPECT_EQ(value, big);
}

TEST(SharedTableReader, RefusesAnUnalignedIndexOffset)
{
    ForgeableTable table("unaligned", 4 << 20, "milk", "1");
    ASSERT_TRUE(table.stored && table.reader);
    auto& reader = table.reader;
    auto& segment = table.segment;
    HeaderPage page(segment.get());
    ASSERT_NE(page.header, MAP_FAILED);
    const std::uint64_t index_offset = page.header->index_offset.load();
    std::string value;
    for (std::uint64_t shift : { 1, 8, 32 }) {
        page.header->index_offset.store(index_offset + shift); // inside the reserved limit, not on a slot
        EXPECT_EQ(reader->get("milk", value), Result::gone) << shift;
    }
    page.header->index_offset.store(index_offset);
    ASSERT_EQ(reader->get("milk", value), Result::found);
    EXPECT_EQ(value, "1");
}

TEST(FaultGuard, APageThatWentAwayReadsAsZerosAndItsWritesGoNowhere)
{
    kv::install_fault_handler();
    auto name = unique_segment("zeros");
    kv::UniqueFd segment = kv::create_segment(name);
    ASSERT_TRUE(segment);
    shm_unlink(name.c_str());
    ASSERT_EQ(ftruncate(segment.get(), 8192), 0);
    auto* page = static_cast<volatile char*>(mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, segment.get(), 0));
    ASSERT_NE(page, MAP_FAILED);
    page[0] = 'x';
    page[4096] = 'x';
    ASSERT_EQ(ftruncate(segment.get(), 4096), 0);
    std::atomic<bool> faulted { false };
    char first = 0, second = 'x';
    kv::guarded_access(const_cast<char*>(page), 8192, faulted, [&] {
        first = page[0];
        second = page[4096]; // SIGBUS: the handler puts zeros there and this runs again
        page[4097] = 'y';
    });
    EXPECT_TRUE(faulted.load());
    EXPECT_EQ(first, 'x') << "the page still there reads as it is";
    EXPECT_EQ(second, 0);
    // The page is private now: the write stayed in it, and the segment,
    // grown back and written, is not seen through it.
    ASSERT_EQ(ftruncate(segment.get(), 8192), 0);
    ASSERT_EQ(pwrite(segment.get(), "s", 1, 4096), 1);
    char in_page = 0, in_segment = 'z';
    EXPECT_TRUE(kv::guarded_access(const_cast<char*>(page), 8192, [&] {
        first = page[0];
        second = page[4096];
        in_page = page[4097];
    })) << "nothing went away this time";
    EXPECT_EQ(first, 'x');
    EXPECT_EQ(second, 0) << "the segment's byte is not seen";
    EXPECT_EQ(in_page, 'y') << "the write stayed in the private page";
    ASSERT_EQ(pread(segment.get(), &in_segment, 1, 4097), 1);
    EXPECT_EQ(in_segment, 0) << "the write did not reach the segment";
    munmap(const_cast<char*>(page), 8192);
}

TEST(FaultGuardDeathTest, SigbusOutsideAGuardedReadStillKills)
{
    // A reader is open, so the handler is in place.
    auto name = unique_segment("unguarded");
    kv::SharedTableWriter writer(name, 4 << 20, kv::TableKind::bucket);
    auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid());
    ASSERT_TRUE(reader);
    EXPECT_EXIT(
        {
            no_core_dump();
            kv::UniqueFd segment = kv::create_segment(name + ".victim");
            shm_unlink((name + ".victim").c_str());
            ftruncate(segment.get(), 4096);
            auto* page = static_cast<volatile char*>(mmap(nullptr, 8192, PROT_READ, MAP_SHARED, segment.get(), 0));
            (void)page[4096]; // past the end of the object: SIGBUS, outside any guard
            _exit(0);
        },
        ::testing::KilledBySignal(SIGBUS), "");
    EXPECT_EXIT(
        {
            no_core_dump();
            kv::UniqueFd segment = kv::create_segment(name + ".victim2");
            shm_unlink((name + ".victim2").c_str());
            ftruncate(segment.get(), 4096);
            auto* page = static_cast<volatile char*>(mmap(nullptr, 8192, PROT_READ, MAP_SHARED, segment.get(), 0));
            // Inside a guard, but of another range: not the guard's to swallow.
            char other[16] = {};
            kv::guarded_access(other, sizeof other, [&] { (void)page[4096]; });
            _exit(0);
        },
        ::testing::KilledBySignal(SIGBUS), "");
    EXPECT_EXIT(
        {
            no_core_dump();
            char other[16] = {};
            // Sent, not a fault: the guard does not catch what kill sends.
            kv::guarded_access(other, sizeof other, [] { raise(SIGBUS); });
            _exit(0);
        },
        ::testing::KilledBySignal(SIGBUS), "");
}

TEST(SharedTable, HashSpreadsKeys)
{
    EXPECT_NE(kv::hash_key("a"), kv::hash_key("b"));
    EXPECT_NE(kv::hash_key(std::string("a\0", 2)), kv::hash_key("a"));
    EXPECT_EQ(kv::hash_key("same key"), kv::hash_key("same key"));
}

// The tag is part of the layout: every build of every reader and writer of a
// table must compute the same one (XXH3, unseeded). A change here is a new
// layout version.
TEST(SharedTable, HashIsXxh3)
{
    EXPECT_EQ(kv::hash_key(""), 0x2d06800538d394c2ULL);
    EXPECT_EQ(kv::hash_key("a"), 0xe6c632b61e964e1fULL);
    EXPECT_EQ(kv::hash_key("key:000000000042"), 0x698ccf97aff6cd95ULL);
}

// --- Batches: several changes in one write window (SharedTableWriter::Batch) ---

namespace {

// Every key and value of a writer, for comparing a table before and after.
std::map<std::string, std::string> contents(const kv::SharedTableWriter& writer)
{
    std::map<std::string, std::string> all;
    writer.for_each([&](std::string_view key, std::string_view value, std::uint64_t) { all.emplace(key, value); });
    return all;
}

} // namespace

TEST(SharedTableBatch, ConcurrentReaderNeverSeesHalfABatch)
{
    // The writer sets a, then b, to the same counter in one batch. A reader
    // that reads a and then b must find b at least a: with a window per key
    // (no batch) it catches b one behind a whenever it reads between the two.
    auto name = unique_segment("batchreader");
    kv::SharedTableWriter writer(name, 64 << 20, kv::TableKind::bucket);
    writer.publish_alive();
    ASSERT_EQ(writer.set("a", "0"), kv::SharedTableWriter::SetResult::stored);
    ASSERT_EQ(writer.set("b", "0"), kv::SharedTableWriter::SetResult::stored);
    std::atomic<bool> done { false };
    std::atomic<long> reads { 0 };
    std::atomic<bool> failed { false };
    std::string failure; // written by the reader before it sets `failed`
    std::thread reader_thread([&] {
        auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid());
        std::string a, b;
        while (!done) {
            if (reader->get("a", a) != Result::found || reader->get("b", b) != Result::found) {
                failure = "a or b missing";
            } else if (std::stoull(b.substr(0, b.find(':'))) < std::stoull(a.substr(0, a.find(':')))) {
                failure = "half a batch: a=" + a.substr(0, 20) + " then b=" + b.substr(0, 20);
            } else {
                ++reads;
                continue;
            }
            failed = true;
            return;
        }
    });
    // Until the reader has made enough reads while the writer was busy (a
    // thread may start late), and within a bound of work.
    for (std::uint64_t counter = 1; (reads < 100000 || counter < 100000) && counter < 20'000'000 && !failed; ++counter) {
        auto batch = writer.begin_batch();
        // A long value now and then, so the pair moves between slot and heap.
        std::string value = counter % 3 ? std::to_string(counter) : checked_value(counter);
        if (counter % 2) {
            // Every other batch reads first and makes its first change in a
            // nested batch: the window opens there, late, and must stay open
            // for the outer batch's change.
            ASSERT_TRUE(batch.get("a"));
            auto inner = writer.begin_batch();
            ASSERT_EQ(inner.set("a", value), kv::SharedTableWriter::SetResult::stored);
            inner.commit();
        } else {
            ASSERT_EQ(batch.set("a", value), kv::SharedTableWriter::SetResult::stored);
        }
        ASSERT_EQ(batch.set("b", value), kv::SharedTableWriter::SetResult::stored);
        batch.commit();
    }
    done = true;
    reader_thread.join();
    EXPECT_FALSE(failed) << failure;
    EXPECT_GE(reads.load(), 100000);
}

TEST(SharedTableBatch, AReaderSeesNothingOfAnOpenBatchAndAllOfItOnceCommitted)
{
    auto name = unique_segment("batchopen");
    kv::SharedTableWriter writer(name, 4 << 20, kv::TableKind::bucket);
    writer.publish_alive();
    auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid());
    std::string value;
    {
        auto batch = writer.begin_batch();
        ASSERT_EQ(batch.set("x", "1"), kv::SharedTableWriter::SetResult::stored);
        EXPECT_EQ(*writer.get("x"), "1") << "the writer sees its own batch";
        // The window is open: a reader waits out its patience, then says busy.
        EXPECT_EQ(reader->get("x", value), Result::busy);
        batch.commit();
    }
    EXPECT_EQ(reader->get("x", value), Result::found);
    EXPECT_EQ(value, "1");
}

TEST(SharedTableBatch, ABatchThatChangesNothingNeverMakesAReaderWait)
{
    // An EXEC of GETs: a batch (nested ones too) that only reads, or whose
    // one change is refused as full before it touched anything, opens no
    // write window. The sequence does not move and a reader is served during
    // it, where an open window would make it wait out its patience and say busy.
    auto name = unique_segment("batchreadonly");
    kv::SharedTableWriter writer(name, 4 << 20, kv::TableKind::bucket);
    writer.publish_alive();
    ASSERT_EQ(writer.set("a", "1"), kv::SharedTableWriter::SetResult::stored);
    HeaderPage page(open_segment(name).get());
    ASSERT_NE(page.header, MAP_FAILED);
    const std::uint64_t before = page.header->sequence.load();
    auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid());
    std::string value;
    {
        auto outer = writer.begin_batch();
        EXPECT_EQ(*outer.get("a"), "1");
        {
            auto inner = writer.begin_batch();
            EXPECT_FALSE(inner.get("missing"));
            EXPECT_EQ(inner.set("a", std::string(8 << 20, 'x')), kv::SharedTableWriter::SetResult::full);
            inner.commit();
        }
        {
            auto dropped = writer.begin_batch();
            EXPECT_EQ(*dropped.get("a"), "1");
        } // rolled back
        EXPECT_EQ(page.header->sequence.load(), before);
        EXPECT_EQ(reader->get("a", value), Result::found) << "refused while a batch that changes nothing is open";
        EXPECT_EQ(value, "1");
        outer.commit();
    }
    {
        auto dropped = writer.begin_batch();
        EXPECT_EQ(*dropped.get("a"), "1");
    } // an outermost batch rolled back
    EXPECT_EQ(page.header->sequence.load(), before);
    EXPECT_EQ(reader->get("a", value), Result::found);
    EXPECT_EQ(value, "1");
}

TEST(SharedTableBatch, TheWindowOpensAtTheFirstChangeAndHoldsTheRestOfTheBatch)
{
    auto name = unique_segment("batchlate");
    kv::SharedTableWriter writer(name, 4 << 20, kv::TableKind::bucket);
    writer.publish_alive();
    ASSERT_EQ(writer.set("a", "1"), kv::SharedTableWriter::SetResult::stored);
    ASSERT_EQ(writer.set("b", "1"), kv::SharedTableWriter::SetResult::stored);
    HeaderPage page(open_segment(name).get());
    ASSERT_NE(page.header, MAP_FAILED);
    const std::uint64_t before = page.header->sequence.load();
    auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid());
    std::string value;
    {
        auto outer = writer.begin_batch();
        EXPECT_EQ(*outer.get("a"), "1");
        EXPECT_EQ(reader->get("a", value), Result::found) << "no window before the first change";
        {
            // The first change, in a nested batch that is then undone: the
            // window it opened stays open, the outer batch's.
            auto inner = writer.begin_batch();
            ASSERT_EQ(inner.set("a", "undone"), kv::SharedTableWriter::SetResult::stored);
        }
        EXPECT_EQ(page.header->sequence.load(), before + 1) << "one window, opened by the first change";
        ASSERT_EQ(outer.set("a", "2"), kv::SharedTableWriter::SetResult::stored);
        EXPECT_EQ(reader->get("a", value), Result::busy) << "a reader must not see a without b";
        ASSERT_EQ(outer.set("b", "2"), kv::SharedTableWriter::SetResult::stored);
        EXPECT_EQ(page.header->sequence.load(), before + 1) << "still the same window";
        outer.commit();
    }
    EXPECT_EQ(page.header->sequence.load(), before + 2);
    EXPECT_EQ(reader->get("a", value), Result::found);
    EXPECT_EQ(value, "2");
    EXPECT_EQ(reader->get("b", value), Result::found);
    EXPECT_EQ(value, "2");
    // A batch whose only change is rolled back still closes the window it opened.
    {
        auto dropped = writer.begin_batch();
        ASSERT_EQ(dropped.erase("a"), true);
    }
    EXPECT_EQ(page.header->sequence.load(), before + 4);
    EXPECT_EQ(reader->get("a", value), Result::found);
    EXPECT_EQ(value, "2");
}

TEST(SharedTableBatch, RollbackOnFullLeavesTheTableExactlyAsItWas)
{
    // A small segment, half filled; then a batch that overwrites old keys,
    // adds enough new ones to grow the index more than once, erases some,
    // and finally does not fit. Dropped, it must leave every key, value and
    // counter as before, for the writer and for a direct reader, and give
    // back every block it took.
    auto name = unique_segment("batchfull");
    kv::SharedTableWriter writer(name, 1 << 20, kv::TableKind::bucket);
    writer.publish_alive();
    for (int i = 0; i < 200; ++i)
        ASSERT_EQ(writer.set("old" + std::to_string(i), std::string(i % 2 ? 10 : 2000, 'o')), kv::SharedTableWriter::SetResult::stored);
    const auto before = contents(writer);
    const auto keys = writer.size(), bytes = writer.bytes();
    for (int round = 0; round < 3; ++round) {
        {
            auto batch = writer.begin_batch();
            for (int i = 0; i < 200; i += 3)
                ASSERT_EQ(batch.set("old" + std::to_string(i), "new"), kv::SharedTableWriter::SetResult::stored);
            for (int i = 1; i < 200; i += 7)
                ASSERT_TRUE(batch.erase("old" + std::to_string(i)));
            for (int i = 0; i < 2000; ++i)
                ASSERT_EQ(batch.set("fresh" + std::to_string(i), std::to_string(i)), kv::SharedTableWriter::SetResult::stored);
            batch.clear(); // and a FLUSHDB inside, to be undone too
            ASSERT_EQ(batch.set("after-clear", "x"), kv::SharedTableWriter::SetResult::stored);
            kv::SharedTableWriter::SetResult result = kv::SharedTableWriter::SetResult::stored;
            for (int i = 0; i < 1000 && result == kv::SharedTableWriter::SetResult::stored; ++i)
                result = batch.set("big" + std::to_string(i), std::string(100000, 'b'));
            ASSERT_EQ(result, kv::SharedTableWriter::SetResult::full);
        } // dropped uncommitted
        EXPECT_EQ(writer.size(), keys);
        EXPECT_EQ(writer.bytes(), bytes);
        ASSERT_EQ(contents(writer), before) << "round " << round;
        auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid());
        std::string value;
        for (const auto& [key, expected] : before) {
            ASSERT_EQ(reader->get(key, value), Result::found) << key;
            ASSERT_EQ(value, expected) << key;
        }
        EXPECT_EQ(reader->get("fresh1", value), Result::missing);
        EXPECT_EQ(reader->get("after-clear", value), Result::missing);
        // Nothing leaked: the same rollback works again in the next round, and
        // so does a batch of as much as fitted before.
    }
    auto batch = writer.begin_batch();
    for (int i = 0; i < 4; ++i)
        ASSERT_EQ(batch.set("big" + std::to_string(i), std::string(100000, 'b')), kv::SharedTableWriter::SetResult::stored);
    batch.commit();
    EXPECT_EQ(writer.size(), keys + 4);
}

TEST(SharedTableBatch, NestedBatchUndoesOnlyItsOwnChanges)
{
    kv::SharedTableWriter writer(unique_segment("batchnested"), 4 << 20, kv::TableKind::bucket);
    ASSERT_EQ(writer.set("k", "0"), kv::SharedTableWriter::SetResult::stored);
    auto outer = writer.begin_batch();
    ASSERT_EQ(writer.set("k", "outer"), kv::SharedTableWriter::SetResult::stored) << "joins the open batch";
    {
        auto inner = writer.begin_batch();
        ASSERT_EQ(inner.set("k", "inner"), kv::SharedTableWriter::SetResult::stored);
        for (int i = 0; i < 500; ++i) // grows the index inside the inner batch
            ASSERT_EQ(inner.set("n" + std::to_string(i), std::string(60, 'n')), kv::SharedTableWriter::SetResult::stored);
    } // inner dropped
    EXPECT_EQ(*writer.get("k"), "outer");
    EXPECT_FALSE(writer.get("n1"));
    {
        auto inner = writer.begin_batch();
        ASSERT_EQ(inner.set("kept", "yes"), kv::SharedTableWriter::SetResult::stored);
        inner.commit(); // left to the outer batch
    }
    outer.rollback();
    EXPECT_EQ(*writer.get("k"), "0");
    EXPECT_FALSE(writer.get("kept"));
    EXPECT_EQ(writer.size(), 1u);
}

TEST(SharedTableBatch, ClearEmptiesInOneWindowAndTheTableIsUsableAfter)
{
    auto name = unique_segment("clear");
    kv::SharedTableWriter writer(name, 64 << 20, kv::TableKind::bucket);
    writer.publish_alive();
    for (int i = 0; i < 20000; ++i)
        ASSERT_EQ(writer.set("k" + std::to_string(i), std::string(i % 100, 'v')), kv::SharedTableWriter::SetResult::stored);
    writer.clear();
    EXPECT_EQ(writer.size(), 0u);
    EXPECT_EQ(writer.bytes(), 0u);
    auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid());
    std::string value;
    EXPECT_EQ(reader->get("k5", value), Result::missing);
    std::uint64_t keys = 1;
    EXPECT_EQ(reader->size(keys), Result::found);
    EXPECT_EQ(keys, 0u);
    // Everything freed: the table fills to the same size again.
    for (int i = 0; i < 20000; ++i)
        ASSERT_EQ(writer.set("k" + std::to_string(i), std::string(i % 100, 'v')), kv::SharedTableWriter::SetResult::stored);
    EXPECT_EQ(reader->get("k5", value), Result::found);
}

TEST(SharedTableExpiry, AReaderNeverReturnsAPairPastItsTimeAndTheWriterStillHoldsIt)
{
    auto name = unique_segment("expiry");
    kv::SharedTableWriter writer(name, 4 << 20, kv::TableKind::bucket);
    writer.publish_alive();
    auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid());
    ASSERT_TRUE(reader);
    const std::uint64_t now = kv::layout::unix_time_ms();
    ASSERT_EQ(writer.set("past", "v", now - 1), kv::SharedTableWriter::SetResult::stored);
    ASSERT_EQ(writer.set("future", "v", now + 100000), kv::SharedTableWriter::SetResult::stored);
    ASSERT_EQ(writer.set("big-past", std::string(5000, 'b'), now - 1), kv::SharedTableWriter::SetResult::stored);
    std::string value;
    EXPECT_EQ(reader->get("past", value), Result::missing);
    EXPECT_EQ(reader->exists("big-past"), Result::missing);
    EXPECT_EQ(reader->get("future", value), Result::found);
    EXPECT_EQ(value, "v");
    // The writer applies no policy: it still holds them, with their times.
    ASSERT_TRUE(writer.find("past"));
    EXPECT_EQ(writer.find("past")->expires_at, now - 1);
    EXPECT_EQ(writer.size(), 3u);
    EXPECT_EQ(writer.expiring(), 3u);
    // Its time removed in place, a pair is back for readers.
    ASSERT_EQ(writer.set_expiry("big-past", kv::layout::never_expires), kv::SharedTableWriter::SetResult::stored);
    EXPECT_EQ(reader->get("big-past", value), Result::found);
    EXPECT_EQ(value.size(), 5000u);
    EXPECT_EQ(writer.expiring(), 2u);
}

TEST(SharedTableExpiry, TheCountOfPairsWithATimeFollowsEveryChangeAndEveryRollback)
{
    auto name = unique_segment("expiring");
    kv::SharedTableWriter writer(name, 4 << 20, kv::TableKind::bucket);
    const std::uint64_t later = kv::layout::unix_time_ms() + 100000;
    using SetResult = kv::SharedTableWriter::SetResult;
    ASSERT_EQ(writer.set("a", "small"), SetResult::stored);
    ASSERT_EQ(writer.set_expiry("a", later), SetResult::stored); // inline: moves to an entry
    EXPECT_EQ(writer.find("a")->expires_at, later);
    EXPECT_EQ(*writer.get("a"), "small");
    EXPECT_EQ(writer.expiring(), 1u);
    ASSERT_EQ(writer.set("a", "again"), SetResult::stored); // a plain set drops the time
    EXPECT_EQ(writer.find("a")->expires_at, kv::layout::never_expires);
    EXPECT_EQ(writer.expiring(), 0u);
    ASSERT_EQ(writer.set("b", std::string(100, 'b'), later), SetResult::stored);
    ASSERT_EQ(writer.set("c", "c", later), SetResult::stored);
    EXPECT_EQ(writer.expiring(), 2u);
    EXPECT_TRUE(writer.erase("c"));
    EXPECT_EQ(writer.expiring(), 1u);
    {
        // Inside a batch, changed in place, added, dropped, erased, a nested
        // savepoint: all undone with the batch, times included.
        auto batch = writer.begin_batch();
        ASSERT_EQ(batch.set_expiry("b", later + 5), SetResult::stored);
        ASSERT_EQ(batch.set("d", "d", later), SetResult::stored);
        ASSERT_EQ(batch.set_expiry("a", later), SetResult::stored);
        {
            auto nested = writer.begin_batch();
            ASSERT_EQ(nested.set_expiry("b", kv::layout::never_expires), SetResult::stored);
            EXPECT_TRUE(nested.erase("d"));
            EXPECT_EQ(writer.expiring(), 1u); // a
        } // rolled back: b has later + 5, d is back
        EXPECT_EQ(writer.find("b")->expires_at, later + 5);
        EXPECT_EQ(writer.expiring(), 3u);
        batch.clear();
        EXPECT_EQ(writer.expiring(), 0u);
    }
    EXPECT_EQ(writer.expiring(), 1u);
    EXPECT_EQ(writer.find("b")->expires_at, later);
    EXPECT_EQ(writer.find("a")->expires_at, kv::layout::never_expires);
    EXPECT_FALSE(writer.find("d"));
    // The index grows: times move with their pairs.
    for (int i = 0; i < 5000; ++i)
        ASSERT_EQ(writer.set("k" + std::to_string(i), "v", i % 2 ? later : kv::layout::never_expires), SetResult::stored);
    EXPECT_EQ(writer.expiring(), 2501u);
    EXPECT_EQ(writer.find("k4999")->expires_at, later);
    writer.clear();
    EXPECT_EQ(writer.expiring(), 0u);
}

// ---- get_many: a direct MGET ----

TEST(SharedTableMget, AnswersEveryKeyFoundOrMissingWithItsValueAcrossGroupsAndSizes)
{
    auto name = unique_segment("mget");
    kv::SharedTableWriter writer(name, 64 << 20, kv::TableKind::bucket);
    writer.publish_alive();
    // Small pairs (in the slot) and large ones (in the heap), and enough
    // keys for several groups of sixteen and a part group.
    std::vector<std::string> keys;
    std::map<std::string, std::string> stored;
    for (int i = 0; i < 70; ++i) {
        keys.push_back("key" + std::to_string(i));
        if (i % 3 == 2)
            continue; // missing
        stored[keys.back()] = i % 2 ? std::string(200 + i, 'v') : std::to_string(i);
        ASSERT_EQ(writer.set(keys.back(), stored[keys.back()]), kv::SharedTableWriter::SetResult::stored);
    }
    auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid());
    ASSERT_TRUE(reader);
    std::vector<std::string_view> views(keys.begin(), keys.end());
    std::vector<std::string> values(keys.size(), "stale");
    std::vector<Result> results(keys.size(), Result::busy);
    ASSERT_EQ(reader->get_many(views, values, results), Result::found);
    for (std::size_t i = 0; i < keys.size(); ++i) {
        auto it = stored.find(keys[i]);
        if (it == stored.end()) {
            EXPECT_EQ(results[i], Result::missing) << keys[i];
        } else {
            EXPECT_EQ(results[i], Result::found) << keys[i];
            EXPECT_EQ(values[i], it->second) << keys[i];
        }
    }
    // None at all is an answer too; spans of other sizes are a caller's error.
    EXPECT_EQ(reader->get_many({}, {}, {}), Result::found);
    EXPECT_THROW(reader->get_many(views, std::span(values).first(3), results), std::invalid_argument);
}

TEST(SharedTableMget, AnExitedOwnerIsGoneForTheWholeBatch)
{
    auto name = unique_segment("mgetexit");
    auto writer = std::make_unique<kv::SharedTableWriter>(name, 4 << 20, kv::TableKind::bucket);
    writer->publish_alive();
    writer->set("k", "v");
    auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid());
    writer.reset();
    std::vector<std::string_view> keys { "k", "k" };
    std::vector<std::string> values(2);
    std::vector<Result> results(2);
    EXPECT_EQ(reader->get_many(keys, values, results), Result::gone);
}

TEST(SharedTableMget, ABatchOfKeysIsReadAsOfOneMomentNeverHalfAWrite)
{
    // The writer sets a and b (and a large c) to one counter in one batch;
    // every get_many of {b, c, a} must give the three the same counter.
    // Read one by one, b could come from one batch and a from the next.
    auto name = unique_segment("mgetmoment");
    kv::SharedTableWriter writer(name, 64 << 20, kv::TableKind::bucket);
    writer.publish_alive();
    for (const char* key : { "a", "b", "c" })
        ASSERT_EQ(writer.set(key, "0"), kv::SharedTableWriter::SetResult::stored);
    std::atomic<bool> done { false };
    std::atomic<long> reads { 0 };
    std::atomic<bool> failed { false };
    std::string failure; // written by the reader before it sets `failed`
    std::thread reader_thread([&] {
        auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket, geteuid());
        std::vector<std::string_view> keys { "b", "c", "a" };
        std::vector<std::string> values(3);
        std::vector<Result> results(3);
        while (!done) {
            if (reader->get_many(keys, values, results) != Result::found || results[0] != Result::found
                || results[1] != Result::found || results[2] != Result::found) {
                failure = "a key missing";
            } else if (values[0] != values[2] || values[1].substr(0, values[1].find('/')) != values[0]) {
                failure = "not one moment: b=" + values[0] + " c=" + values[1].substr(0, 20) + " a=" + values[2];
            } else {
                ++reads;
                continue;
            }
            failed = true;
            return;
        }
    });
    bool stored = true; // no ASSERT in the loop: the reader must be joined first
    for (std::uint64_t counter = 1; (reads < 50000 || counter < 50000) && counter < 20'000'000 && !failed && stored; ++counter) {
        auto batch = writer.begin_batch();
        const std::string value = std::to_string(counter);
        stored = batch.set("a", value) == kv::SharedTableWriter::SetResult::stored
            && batch.set("b", value) == kv::SharedTableWriter::SetResult::stored
            && batch.set("c", value + "/" + std::string(100, 'x')) == kv::SharedTableWriter::SetResult::stored;
        batch.commit();
    }
    EXPECT_TRUE(stored) << "the writer's table filled up";
    done = true;
    reader_thread.join();
    EXPECT_FALSE(failed) << failure;
    EXPECT_GE(reads.load(), 50000);
}
