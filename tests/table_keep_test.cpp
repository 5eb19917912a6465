// KEEP at the table's level: a writer adopts the table an earlier writer
// left in a segment only when it is provably intact (no change in flight,
// every slot and counter consistent), and formats it afresh otherwise. The
// integration tests (restart_integration_test) do the same through
// registryd and real bucketd processes; these pin the rules, and kill a
// writing process at random instants to show that what is kept is whole.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <random>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "shared_table.h"
#include "unique_fd.h"

namespace {

using Writer = kv::SharedTableWriter;
constexpr std::size_t table_size = 8 << 20;

// A bucket's segment as registryd holds it: created, then handed to one
// writer after another by descriptor.
struct HeldSegment {
    explicit HeldSegment(const char* test)
        : name("/kv.keeptest." + std::to_string(::getpid()) + "." + test)
        , fd(kv::create_segment(name))
    {
    }
    ~HeldSegment() { kv::remove_segment_if_same(name, fd.get()); }
    kv::UniqueFd copy() const { return kv::UniqueFd(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0)); }
    std::unique_ptr<Writer> first_writer() const { return std::make_unique<Writer>(copy(), name, table_size, kv::TableKind::bucket); }
    std::unique_ptr<Writer> keeping_writer() const
    {
        return std::make_unique<Writer>(copy(), name, table_size, kv::TableKind::bucket, Writer::KeepData {});
    }
    std::string name;
    kv::UniqueFd fd;
};

// The header page, mapped read-write, to forge what a writer killed at a
// bad instant (or a bug) leaves.
struct Header {
    explicit Header(int fd)
        : page(static_cast<kv::TableHeader*>(::mmap(nullptr, kv::table_header_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)))
    {
    }
    ~Header() { ::munmap(page, kv::table_header_size); }
    kv::TableHeader* page;
};

// Pairs of every shape the table stores: inline, in an entry, with a time.
std::map<std::string, std::string> fill(Writer& writer, int count)
{
    std::map<std::string, std::string> pairs;
    for (int i = 0; i < count; ++i) {
        std::string key = "key" + std::to_string(i);
        std::string value = i % 3 == 0 ? std::string(200 + i % 500, static_cast<char>('a' + i % 26)) : "v" + std::to_string(i);
        const std::uint64_t expires = i % 7 == 0 ? kv::layout::unix_time_ms() + 3600000 : kv::layout::never_expires;
        EXPECT_EQ(writer.set(key, value, expires), Writer::SetResult::stored);
        pairs[key] = value;
    }
    for (int i = 0; i < count; i += 5) {
        writer.erase("key" + std::to_string(i));
        pairs.erase("key" + std::to_string(i));
    }
    return pairs;
}

void expect_holds(const Writer& writer, const std::map<std::string, std::string>& pairs)
{
    EXPECT_EQ(writer.size(), pairs.size());
    for (const auto& [key, value] : pairs) {
        auto found = writer.get(key);
        ASSERT_TRUE(found) << key;
        EXPECT_EQ(*found, value) << key;
    }
}

} // namespace

TEST(TableKeep, AnEmptySegmentIsFormattedAsNew)
{
    HeldSegment segment("empty");
    auto writer = segment.keeping_writer();
    EXPECT_EQ(writer->adoption(), Writer::Adoption::formatted);
    EXPECT_EQ(writer->size(), 0u);
}

TEST(TableKeep, ATableLeftWholeIsKeptWithEveryPairTimeAndCounter)
{
    HeldSegment segment("whole");
    auto first = segment.first_writer();
    const auto pairs = fill(*first, 3000);
    const auto bytes = first->bytes();
    const auto expiring = first->expiring();
    first.reset(); // a clean exit

    auto second = segment.keeping_writer();
    ASSERT_EQ(second->adoption(), Writer::Adoption::kept) << second->discarded_why();
    expect_holds(*second, pairs);
    EXPECT_EQ(second->bytes(), bytes);
    EXPECT_EQ(second->expiring(), expiring);
    EXPECT_EQ(second->find("key7")->expires_at > 0, true) << "an expiry time is kept with its pair";

    // The adopted heap and index go on working: more pairs, growth, deletes.
    auto more = fill(*second, 6000);
    EXPECT_FALSE(second->verify()) << *second->verify();
    expect_holds(*second, more);

    // Readers trust it again once the new writer says so.
    second->publish_alive();
    auto reader = kv::SharedTableReader::open(segment.name, kv::TableKind::bucket, ::geteuid());
    ASSERT_TRUE(reader);
    std::string value;
    EXPECT_EQ(reader->get("key1", value), kv::SharedTableReader::Result::found);
    EXPECT_EQ(value, more["key1"]);
}

TEST(TableKeep, AChangeInFlightDiscardsTheTable)
{
    for (const char* forged : { "changing", "odd sequence" }) {
        HeldSegment segment("inflight");
        {
            auto first = segment.first_writer();
            fill(*first, 100);
        }
        {
            Header header(segment.fd.get());
            if (std::string(forged) == "changing")
                header.page->changing.store(1);
            else
                header.page->sequence.fetch_add(1);
        }
        auto second = segment.keeping_writer();
        EXPECT_EQ(second->adoption(), Writer::Adoption::discarded) << forged;
        EXPECT_EQ(second->discarded_why(), "a write was in flight") << forged;
        EXPECT_EQ(second->size(), 0u) << "it starts empty";
        EXPECT_EQ(second->set("after", "1"), Writer::SetResult::stored);
        EXPECT_FALSE(second->verify());
    }
}

TEST(TableKeep, AnInconsistentTableIsDiscardedAndSaysWhere)
{
    HeldSegment segment("inconsistent");
    {
        auto first = segment.first_writer();
        fill(*first, 100);
    }
    {
        Header header(segment.fd.get());
        header.page->keys.fetch_add(1); // a count no slot backs
    }
    auto second = segment.keeping_writer();
    EXPECT_EQ(second->adoption(), Writer::Adoption::discarded);
    EXPECT_NE(second->discarded_why().find("its table is inconsistent: its counters"), std::string::npos) << second->discarded_why();
    EXPECT_EQ(second->size(), 0u);
}

TEST(TableKeep, ATableOfAnotherVersionIsDiscarded)
{
    HeldSegment segment("version");
    {
        auto first = segment.first_writer();
        fill(*first, 10);
    }
    {
        Header header(segment.fd.get());
        header.page->version = kv::TableHeader::expected_version - 1;
    }
    auto second = segment.keeping_writer();
    EXPECT_EQ(second->adoption(), Writer::Adoption::discarded);
    EXPECT_EQ(second->discarded_why(), "it does not hold a table of this layout and version");
}

TEST(TableKeep, EveryChangeIsMarkedUntilItsLastStoreAndABatchUntilItsCommit)
{
    HeldSegment segment("marks");
    auto writer = segment.first_writer();
    Header header(segment.fd.get());
    writer->set("a", "1");
    EXPECT_EQ(header.page->changing.load(), 0u) << "cleared once a change is done";
    {
        auto batch = writer->begin_batch();
        EXPECT_EQ(header.page->changing.load(), 0u) << "a batch that has changed nothing yet";
        batch.set("b", "2");
        EXPECT_EQ(header.page->changing.load(), 1u) << "held across the batch: its undo log lives in the writer's memory";
        batch.erase("a");
        EXPECT_EQ(header.page->changing.load(), 1u);
        batch.commit();
    }
    EXPECT_EQ(header.page->changing.load(), 0u);
    {
        auto batch = writer->begin_batch();
        batch.set("c", "3");
    } // rolled back
    EXPECT_EQ(header.page->changing.load(), 0u);
    EXPECT_FALSE(writer->get("c"));
}

// A writer process killed by SIGKILL at random instants of a write load:
// each time, the next writer either keeps a table that passes the
// structural check and holds only whole values, or discards it because a
// change was in flight. Never anything else.
TEST(TableKeep, AWriterKilledAtAnyInstantLeavesATableThatIsKeptWholeOrDiscarded)
{
    HeldSegment segment("killed");
    segment.first_writer().reset(); // formatted once, as registryd's first bucketd does
    std::mt19937 random(12345);
    int kept = 0, discarded = 0;
    constexpr int rounds = 200;
    for (int round = 0; round < rounds; ++round) {
        kv::UniqueFd fd = segment.copy();
        const pid_t child = ::fork();
        ASSERT_GE(child, 0);
        if (child == 0) {
            Writer writer(std::move(fd), segment.name, table_size, kv::TableKind::bucket, Writer::KeepData {});
            std::mt19937 mine(static_cast<unsigned>(round));
            for (std::uint64_t i = 0;; ++i) {
                const std::string key = "k" + std::to_string(mine() % 5000);
                const std::string digits = std::to_string(i);
                std::string value = digits + ":";
                for (std::uint64_t n = 0; n < 1 + i % 40; ++n)
                    value += digits;
                if (i % 11 == 0) {
                    writer.erase(key);
                } else if (i % 13 == 0) {
                    auto batch = writer.begin_batch();
                    batch.set(key, value);
                    batch.set(key + "b", value);
                    batch.commit();
                } else {
                    writer.set(key, value, i % 3 == 0 ? kv::layout::unix_time_ms() + 60000 : kv::layout::never_expires);
                }
            }
        }
        fd.reset();
        std::this_thread::sleep_for(std::chrono::microseconds(200 + random() % 3000)); // a random instant, not a synchronisation
        ASSERT_EQ(::kill(child, SIGKILL), 0);
        int status = 0;
        ASSERT_EQ(::waitpid(child, &status, 0), child);

        Writer next(segment.copy(), segment.name, table_size, kv::TableKind::bucket, Writer::KeepData {});
        if (next.adoption() == Writer::Adoption::kept) {
            ++kept;
            ASSERT_FALSE(next.verify());
            next.for_each([&](std::string_view key, std::string_view value, std::uint64_t) {
                const auto colon = value.find(':');
                ASSERT_NE(colon, std::string_view::npos) << key;
                const std::string digits(value.substr(0, colon));
                std::string whole = digits + ":";
                for (std::uint64_t n = 0; n < 1 + std::stoull(digits) % 40; ++n)
                    whole += digits;
                ASSERT_EQ(value, whole) << "a torn value under " << key;
            });
        } else {
            ASSERT_EQ(next.adoption(), Writer::Adoption::discarded);
            ASSERT_EQ(next.discarded_why(), "a write was in flight");
            ++discarded;
        }
    }
    std::cout << "kept " << kept << " of " << rounds << " tables of a killed writer; discarded " << discarded << "\n";
    EXPECT_GT(kept, 0) << "a writer killed between changes leaves a table to keep";
}
