// The name table in one process: what registryd publishes is what a client
// looks up, record for record, and a client trusts a table only while the
// registryd that made it runs.
#include "name_table.h"

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>

#include <gtest/gtest.h>

#include "run_dir.h"
#include "unique_fd.h"
#include "waiting_child.h"

namespace {

using Result = kv::NameTableReader::Result;

// A name nobody else has, in the form registryd gives its name table.
std::string new_table_name() { return kv::new_segment_name(kv::new_instance_id(), "names"); }

constexpr std::size_t table_size = 1 << 20;

kv::BucketRecord record_of(const std::string& socket, unsigned long long id = 1)
{
    kv::BucketRecord record;
    record.pid = 4242;
    record.id = id;
    record.socket = socket;
    record.segment = kv::new_segment_name(kv::new_instance_id(), "b" + std::to_string(id));
    return record;
}

// A table as registryd has it once it serves, and a client's reader of it.
struct ServedTable {
    explicit ServedTable(std::size_t size = table_size)
        : writer(name, size)
        , reader(kv::NameTableReader::open(name, geteuid()))
    {
        writer.publish_alive();
    }
    const std::string name = new_table_name();
    kv::NameTableWriter writer;
    std::unique_ptr<kv::NameTableReader> reader;
};

// The fields a client relies on; the generation is the writer's to stamp.
void expect_same_bucket(const kv::BucketRecord& found, const kv::BucketRecord& published)
{
    EXPECT_EQ(found.pid, published.pid);
    EXPECT_EQ(found.id, published.id);
    EXPECT_EQ(found.socket, published.socket);
    EXPECT_EQ(found.segment, published.segment);
}

} // namespace

TEST(NameTableReader, FindsWhatIsPublishedUntilItIsWithdrawn)
{
    auto name = new_table_name();
    kv::NameTableWriter writer(name, table_size);
    auto reader = kv::NameTableReader::open(name, geteuid());
    ASSERT_TRUE(reader);
    kv::BucketRecord found;
    EXPECT_EQ(reader->lookup("shopping", found), Result::unavailable) << "no answer before registryd serves";
    writer.publish_alive();
    EXPECT_EQ(reader->lookup("shopping", found), Result::missing);

    auto shopping = record_of("/run/kv/buckets/1.0123456789abcdef.sock", 1);
    ASSERT_TRUE(writer.publish("shopping", shopping));
    ASSERT_EQ(reader->lookup("shopping", found), Result::found);
    expect_same_bucket(found, shopping);
    const auto first_generation = found.generation;

    // Published again (a new bucket under the name): the new record, a later generation.
    auto again = record_of("/run/kv/buckets/2.0123456789abcdef.sock", 2);
    again.pid = 4343;
    ASSERT_TRUE(writer.publish("shopping", again));
    ASSERT_EQ(reader->lookup("shopping", found), Result::found);
    expect_same_bucket(found, again);
    EXPECT_GT(found.generation, first_generation);

    writer.withdraw("shopping");
    EXPECT_EQ(reader->lookup("shopping", found), Result::missing);
    writer.withdraw("shopping"); // twice is harmless
    EXPECT_EQ(reader->lookup("other", found), Result::missing);
}

TEST(NameTableReader, RecordsRoundTripWhateverTheirSocketPathHolds)
{
    ServedTable table;
    ASSERT_TRUE(table.reader);
    // Run dirs are the user's choice: a socket path may hold anything a path can but NUL.
    const std::vector<std::string> sockets = {
        "/tmp/with space/buckets/1.i.sock",
        "  leading and trailing spaces  ",
        "/tmp/12 34 56/buckets/7.i.sock", // digits and spaces, like the record's first line
        "/tmp/tab\there/\r/carriage",
        "/tmp/quotes \"'`$(x)\\/buckets/3.i.sock",
        "/tmp/\xc3\xa9t\xc3\xa9/\xff\xfe not utf-8",
        "/" + std::string(106, 'x'), // as long as a socket path can be
        "",
    };
    kv::BucketRecord found;
    for (std::size_t i = 0; i < sockets.size(); ++i) {
        auto record = record_of(sockets[i], ULLONG_MAX - i);
        record.pid = INT_MAX;
        const std::string bucket = "bucket " + std::to_string(i);
        ASSERT_TRUE(table.writer.publish(bucket, record));
        ASSERT_EQ(table.reader->lookup(bucket, found), Result::found) << i;
        expect_same_bucket(found, record);
    }
}

// A newline in a socket path (a run dir such as $'/tmp/a\nb', which registryd
// accepts) is not carried yet: the record is text split at newlines, so the
// lookup finds the bucket with a cut socket path and a wrong segment, and
// kvctl calls a running bucket gone. Enable once publish either refuses such
// a record or the record round-trips.
TEST(NameTableReader, ASocketPathWithANewlineRoundTripsOrIsNotPublished)
{
    ServedTable table;
    ASSERT_TRUE(table.reader);
    auto record = record_of("/tmp/a\nb/buckets/1.i.sock");
    if (!table.writer.publish("shopping", record))
        return;
    kv::BucketRecord found;
    ASSERT_EQ(table.reader->lookup("shopping", found), Result::found);
    expect_same_bucket(found, record);
}

TEST(NameTableWriter, FullTableRefusesANewNameAndKeepsEveryOther)
{
    ServedTable table(128 * 1024);
    ASSERT_TRUE(table.reader);
    const auto record = record_of("/" + std::string(100, 's'));
    int published = 0;
    while (published < 100000 && table.writer.publish("b" + std::to_string(published), record))
        ++published;
    EXPECT_GT(published, 10);
    EXPECT_LT(published, 100000) << "a 128 KiB table never filled";
    kv::BucketRecord found;
    EXPECT_EQ(table.reader->lookup("b" + std::to_string(published), found), Result::missing) << "a refused name is not published";
    for (int i = 0; i < published; ++i) {
        ASSERT_EQ(table.reader->lookup("b" + std::to_string(i), found), Result::found) << i;
        expect_same_bucket(found, record);
    }
}

TEST(NameTableReader, RefusesATableWhoseRegistrydIsNotRunning)
{
    auto name = new_table_name();
    kv::Pipe release = kv::make_pipe("release");
    pid_t child = kv::test::spawn_waiting_child(release, [&] {
        // registryd killed: its writer is never destroyed, so the table stays, marked alive.
        auto* writer = new kv::NameTableWriter(name, table_size);
        writer->publish_alive();
        writer->publish("shopping", record_of("/run/kv/buckets/1.i.sock"));
    });
    ASSERT_GT(child, 0);
    {
        auto reader = kv::NameTableReader::open(name, geteuid());
        ASSERT_TRUE(reader) << "its registryd is running";
        kv::BucketRecord found;
        EXPECT_EQ(reader->lookup("shopping", found), Result::found);
    }
    release.write_end.reset();
    ASSERT_EQ(waitpid(child, nullptr, 0), child);
    EXPECT_FALSE(kv::NameTableReader::open(name, geteuid())) << "its registryd has exited";
    shm_unlink(name.c_str());
}

TEST(NameTableReader, RefusesATableThatIsNotThere)
{
    EXPECT_FALSE(kv::NameTableReader::open(new_table_name(), geteuid()));
    auto name = new_table_name();
    {
        kv::NameTableWriter writer(name, table_size);
        writer.publish_alive();
    }
    EXPECT_FALSE(kv::NameTableReader::open(name, geteuid())) << "its writer removed it";
}
