// A bucket as its clients see it: a RESP server on its own socket, started
// by a real registryd, that redis-cli and redis-benchmark can talk to.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>
#include <set>
#include <sstream>

#include "daemon_fixture.h"
#include "reference_redis.h"
#include "system_error.h"

extern char** environ;

using namespace kv::test;
using kv::resp::Value;

namespace {

class BucketTest : public ::testing::Test {
protected:
    explicit BucketTest(std::vector<std::string> arguments = {}) : daemon_(std::move(arguments)) {}

    kv::Client connect_bucket(const std::string& name = "shopping")
    {
        auto bucket = daemon_.create(name);
        socket_ = bucket.field("socket")->text;
        auto client = kv::Client::connect(socket_);
        set_receive_timeout(client, 20s);
        return client;
    }

    RegistryDaemon daemon_;
    std::string socket_;
};

// A program that runs until it is killed (redis-cli --stat), its stdout
// read line by line through a pipe as it prints; killed and reaped when the
// test is done with it.
class RunningProgram {
public:
    explicit RunningProgram(const std::vector<std::string>& argv)
    {
        kv::Pipe out = kv::make_pipe("program stdout");
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, out.write_end.get(), 1);
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
        std::vector<char*> arguments;
        for (const auto& argument : argv)
            arguments.push_back(const_cast<char*>(argument.c_str()));
        arguments.push_back(nullptr);
        const int error = ::posix_spawn(&pid_, argv[0].c_str(), &actions, nullptr, arguments.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        if (error)
            throw kv::SystemError("unable to spawn", argv[0], error);
        out_ = std::move(out.read_end);
    }
    ~RunningProgram()
    {
        kill_process(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    }
    RunningProgram(const RunningProgram&) = delete;
    RunningProgram& operator=(const RunningProgram&) = delete;

    // The next whole line it printed (without its newline), or nothing if it
    // closed its stdout or printed no whole line before `deadline`.
    std::optional<std::string> next_line(std::chrono::steady_clock::time_point deadline)
    {
        for (;;) {
            if (auto end = buffer_.find('\n'); end != std::string::npos) {
                std::string line = buffer_.substr(0, end);
                buffer_.erase(0, end + 1);
                return line;
            }
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            pollfd fd { out_.get(), POLLIN, 0 };
            if (left.count() <= 0 || ::poll(&fd, 1, static_cast<int>(left.count())) <= 0)
                return std::nullopt;
            char bytes[4096];
            const auto n = ::read(out_.get(), bytes, sizeof bytes);
            if (n <= 0)
                return std::nullopt;
            buffer_.append(bytes, static_cast<std::size_t>(n));
        }
    }

private:
    pid_t pid_ = -1;
    kv::UniqueFd out_;
    std::string buffer_;
};

// Fills the bucket with "key:0" to "key:199", whose values are 0 to 199
// bytes long, and "the:biggest", 5,000 bytes: 201 keys.
void fill_with_known_sizes(kv::Client& client)
{
    std::vector<std::string> mset = { "MSET", "the:biggest", std::string(5000, 'b') };
    for (int i = 0; i < 200; ++i) {
        mset.push_back("key:" + std::to_string(i));
        mset.push_back(std::string(static_cast<std::size_t>(i), 'v'));
    }
    ASSERT_EQ(client.call(mset).text, "OK");
}

std::string two_decimals(double value)
{
    char text[32];
    std::snprintf(text, sizeof text, "%.2f", value);
    return text;
}

} // namespace

TEST_F(BucketTest, StoredKeysAreReadCountedAndDeletedAsInRedis)
{
    auto client = connect_bucket();
    EXPECT_EQ(client.call({ "GET", "milk" }).type, Value::Type::null);
    EXPECT_EQ(client.call({ "SET", "milk", "1" }).text, "OK");
    EXPECT_EQ(client.call({ "SET", "eggs", "12" }).text, "OK");
    EXPECT_EQ(client.call({ "get", "milk" }).text, "1");
    EXPECT_EQ(client.call({ "EXISTS", "milk", "eggs", "bread" }).integer, 2);
    EXPECT_EQ(client.call({ "DBSIZE" }).integer, 2);
    EXPECT_EQ(client.call({ "DEL", "milk", "bread" }).integer, 1);
    EXPECT_EQ(client.call({ "DBSIZE" }).integer, 1);
    EXPECT_EQ(client.call({ "PING" }).text, "PONG");
    EXPECT_EQ(client.call({ "PING", "hello" }).text, "hello");
}

TEST_F(BucketTest, KeysMatchesGlobPatterns)
{
    auto client = connect_bucket();
    for (const char* key : { "user:1", "user:2", "order:1" })
        client.call({ "SET", key, "x" });
    auto keys = client.call({ "KEYS", "user:*" });
    ASSERT_EQ(keys.elements.size(), 2u);
    std::vector<std::string> names { keys.elements[0].text, keys.elements[1].text };
    std::sort(names.begin(), names.end()); // a hash table has no order
    EXPECT_EQ(names, (std::vector<std::string> { "user:1", "user:2" }));
    EXPECT_EQ(client.call({ "KEYS", "*" }).elements.size(), 3u);
}

// The attack of Redis's CVE-2022-36021: a long key and a KEYS pattern that a
// backtracking matcher needs seconds for, during which the bucket serves no
// one and ignores SIGTERM. Here the pattern is answered at once, a pattern
// that would still cost O(key x pattern) is refused, and the bucket goes on
// serving and stops on STOP within the grace period.
TEST_F(BucketTest, HostileKeysPatternsDoNotHoldTheBucket)
{
    auto client = connect_bucket();
    const std::string run(80000, 'a');
    ASSERT_EQ(client.call({ "SET", std::string(160000, 'a'), "v" }).text, "OK");

    auto attack = client.call({ "KEYS", "*" + run + "b" });
    ASSERT_EQ(attack.type, Value::Type::array) << attack.text;
    EXPECT_TRUE(attack.elements.empty());

    const std::string costly_pattern = "*" + run + "?b*"; // the run occurs at every offset, the `b` never
    auto costly = client.call({ "KEYS", costly_pattern });
    EXPECT_TRUE(costly.is_error());
    EXPECT_EQ(costly.text.rfind("ERR KEYS pattern too costly for this bucket (more than ", 0), 0u) << costly.text;
    // A pattern is refused before it is compiled (that costs memory) once it is absurdly long.
    EXPECT_EQ(client.call({ "KEYS", std::string((1 << 20) + 1, '*') }).text,
        "ERR KEYS pattern too long (1048577 bytes; at most 1048576)");
    EXPECT_EQ(client.call({ "KEYS", std::string(1 << 20, '*') }).elements.size(), 1u);

    EXPECT_EQ(client.call({ "PING" }).text, "PONG");
    auto other = kv::Client::connect(socket_);
    set_receive_timeout(other, 20s);
    EXPECT_EQ(other.call({ "KEYS", "a*" }).elements.size(), 1u);

    // STOP while a costly KEYS is (most likely) in progress: SIGTERM waits
    // for it, but not for the grace period.
    client.send_raw(kv::resp::encode_command({ "KEYS", costly_pattern }));
    EXPECT_EQ(daemon_.call({ "STOP", "shopping" }).text, "OK");
    EXPECT_EQ(daemon_.log().find("did not stop within"), std::string::npos) << daemon_.log();
}

TEST_F(BucketTest, ScanWithTheLargestCountWalksTheWholeTable)
{
    auto client = connect_bucket();
    // COUNT's tenfold used to overflow: the walk stopped after one step and
    // answered a cursor other than 0 on an empty bucket.
    for (const std::string count : { "922337203685477581", "9223372036854775807" }) {
        auto reply = client.call({ "SCAN", "0", "COUNT", count });
        ASSERT_EQ(reply.elements.size(), 2u);
        EXPECT_EQ(reply.elements[0].text, "0") << "COUNT " << count;
        EXPECT_TRUE(reply.elements[1].elements.empty());
    }
    client.call({ "SET", "a", "1" });
    auto reply = client.call({ "SCAN", "0", "COUNT", "9223372036854775807" });
    EXPECT_EQ(reply.elements[0].text, "0");
    ASSERT_EQ(reply.elements[1].elements.size(), 1u);
    EXPECT_EQ(reply.elements[1].elements[0].text, "a");
}

TEST_F(BucketTest, KeysAndValuesAreBinarySafe)
{
    auto client = connect_bucket();
    std::string key("k\0\r\n\xff", 5);
    std::string value(1 << 20, '\0');
    for (std::size_t i = 0; i < value.size(); ++i)
        value[i] = static_cast<char>(i * 7);
    EXPECT_EQ(client.call({ "SET", key, value }).text, "OK");
    EXPECT_EQ(client.call({ "GET", key }).text, value);
}

TEST_F(BucketTest, PipelinedRequestsAreAnsweredInOrder)
{
    auto client = connect_bucket();
    std::string batch;
    for (int i = 0; i < 1000; ++i)
        batch += kv::resp::encode_command({ "SET", "k" + std::to_string(i), std::to_string(i) });
    for (int i = 0; i < 1000; ++i)
        batch += kv::resp::encode_command({ "GET", "k" + std::to_string(i) });
    client.send_raw(batch);
    for (int i = 0; i < 1000; ++i)
        ASSERT_EQ(client.read_reply().text, "OK");
    for (int i = 0; i < 1000; ++i)
        ASSERT_EQ(client.read_reply().text, std::to_string(i));
}

TEST_F(BucketTest, InlineCommandsWithQuotedArgumentsAreAnswered)
{
    auto client = connect_bucket();
    client.send_raw("SET greeting \"hello world\"\r\nGET greeting\r\n");
    EXPECT_EQ(client.read_reply().text, "OK");
    EXPECT_EQ(client.read_reply().text, "hello world");
}

TEST_F(BucketTest, UnknownVerbAndWrongArityKeepTheConnectionOpen)
{
    auto client = connect_bucket();
    EXPECT_EQ(client.call({ "LPUSH", "list", "a" }).text, "ERR unknown command 'LPUSH', with args beginning with: 'list' 'a' "); // no lists in a bucket
    EXPECT_EQ(client.call({ "GET" }).text, "ERR wrong number of arguments for 'get' command");
    EXPECT_EQ(client.call({ "SET", "a" }).text, "ERR wrong number of arguments for 'set' command");
    EXPECT_EQ(client.call({ "PING", "a", "b" }).text, "ERR wrong number of arguments for 'ping' command");
    EXPECT_EQ(client.call({ "config", "get", "save" }).elements.size(), 2u);
    EXPECT_EQ(client.call({ "PING" }).text, "PONG");
}

TEST_F(BucketTest, ProtocolErrorIsAnsweredThenTheConnectionClosed)
{
    auto client = connect_bucket();
    client.send_raw("*1\r\n$99999999999\r\n");
    EXPECT_EQ(client.read_reply().text, "ERR Protocol error: invalid bulk length");
    EXPECT_THROW(client.read_reply(), kv::ConnectionClosed);
    // The bucket itself is unharmed.
    auto other = kv::Client::connect(socket_);
    EXPECT_EQ(other.call({ "PING" }).text, "PONG");
}

class SmallBucketTest : public BucketTest {
protected:
    SmallBucketTest() : BucketTest({ "--bucket-size", "262144" }) {}
};

TEST_F(SmallBucketTest, FullBucketRefusesSetAndKeepsItsData)
{
    auto client = connect_bucket();
    std::string value(1000, 'v');
    int stored = 0;
    Value reply;
    while ((reply = client.call({ "SET", "key" + std::to_string(stored), value })).text == "OK")
        ++stored;
    ASSERT_TRUE(reply.is_error());
    EXPECT_EQ(reply.text.rfind("FULL bucket is full", 0), 0u) << reply.text;
    EXPECT_GT(stored, 50);
    EXPECT_EQ(client.call({ "DBSIZE" }).integer, stored);
    for (int i = 0; i < stored; ++i)
        ASSERT_EQ(client.call({ "GET", "key" + std::to_string(i) }).text, value);
    // Deleting makes room again.
    EXPECT_EQ(client.call({ "DEL", "key0" }).integer, 1);
    EXPECT_EQ(client.call({ "SET", "again", value }).text, "OK");
}

TEST_F(SmallBucketTest, MsetThatDoesNotFitLeavesNothingOfItAndTheOldValuesIntact)
{
    auto client = connect_bucket();
    for (int i = 0; i < 40; ++i)
        ASSERT_EQ(client.call({ "SET", "key" + std::to_string(i), "old" + std::to_string(i) }).text, "OK");
    // Overwrites old keys and adds new ones, then a value the bucket cannot hold.
    std::vector<std::string> mset = { "MSET" };
    for (int i = 0; i < 40; i += 2) {
        mset.push_back("key" + std::to_string(i));
        mset.push_back("new");
    }
    for (int i = 0; i < 300; ++i) {
        mset.push_back("fresh" + std::to_string(i));
        mset.push_back(std::string(100, 'f'));
    }
    mset.push_back("huge");
    mset.push_back(std::string(200000, 'h'));
    Value reply = client.call(mset);
    EXPECT_EQ(reply.text.rfind("FULL bucket is full", 0), 0u) << reply.text;
    EXPECT_EQ(client.call({ "DBSIZE" }).integer, 40);
    for (int i = 0; i < 40; ++i)
        ASSERT_EQ(client.call({ "GET", "key" + std::to_string(i) }).text, "old" + std::to_string(i));
    EXPECT_EQ(client.call({ "EXISTS", "fresh0", "fresh299", "huge" }).integer, 0);
    // MSETNX, RENAME and the rest still work after it; the room it took is back.
    mset.resize(mset.size() - 2);
    EXPECT_EQ(client.call(mset).text, "OK");
    EXPECT_EQ(client.call({ "DBSIZE" }).integer, 340);
    EXPECT_EQ(client.call({ "GET", "key0" }).text, "new");
}

TEST_F(BucketTest, ScanReturnsEveryKeyPresentThroughoutEvenWhileTheTableGrows)
{
    // Redis's guarantee: a key there from the start to the end of a scan is
    // returned at least once. Between calls the index doubles several times
    // (new keys) and loses keys (deletes); most keys sit past their home
    // slot, so each home's whole probe run must be walked.
    auto client = connect_bucket();
    std::vector<std::string> mset = { "MSET" };
    for (int i = 0; i < 500; ++i) {
        mset.push_back("stay:" + std::to_string(i));
        mset.push_back("v");
        mset.push_back("gone:" + std::to_string(i));
        mset.push_back("v");
    }
    ASSERT_EQ(client.call(mset).text, "OK");
    std::set<std::string> seen;
    std::string cursor = "0";
    int calls = 0, added = 0;
    do {
        Value reply = client.call({ "SCAN", cursor, "COUNT", "20" });
        ASSERT_EQ(reply.elements.size(), 2u);
        cursor = reply.elements[0].text;
        for (const auto& key : reply.elements[1].elements)
            seen.insert(key.text);
        ++calls;
        if (calls % 3 == 0 && added < 20000) {
            std::vector<std::string> more = { "MSET" };
            for (int i = 0; i < 1000; ++i, ++added) {
                more.push_back("new:" + std::to_string(added));
                more.push_back("v");
            }
            ASSERT_EQ(client.call(more).text, "OK");
        }
        if (calls % 5 == 0)
            client.call({ "DEL", "gone:" + std::to_string(calls) });
        ASSERT_LT(calls, 100000) << "the scan never ends";
    } while (cursor != "0");
    for (int i = 0; i < 500; ++i)
        ASSERT_TRUE(seen.count("stay:" + std::to_string(i))) << "stay:" << i << " never returned, in " << calls << " calls";
    EXPECT_GT(added, 5000) << "the index grew during the scan";
    // MATCH and TYPE filter; COUNT must be positive; a cursor must be a number.
    Value matched = client.call({ "SCAN", "0", "MATCH", "stay:1?", "COUNT", "100000" });
    EXPECT_EQ(matched.elements[0].text, "0");
    EXPECT_EQ(matched.elements[1].elements.size(), 10u);
    EXPECT_EQ(client.call({ "SCAN", "0", "TYPE", "list", "COUNT", "100000" }).elements[1].elements.size(), 0u);
    EXPECT_EQ(client.call({ "SCAN", "0", "COUNT", "0" }).text, "ERR syntax error");
    EXPECT_EQ(client.call({ "SCAN", "x" }).text, "ERR invalid cursor");
}

TEST_F(BucketTest, RedisCliScanListsEveryKey)
{
    const auto redis_cli = find_program("redis-cli");
    KV_REQUIRE(!redis_cli.empty(), "redis-cli on PATH (the quick start installs redis-tools)");
    auto client = connect_bucket();
    std::vector<std::string> mset = { "MSET" };
    for (int i = 0; i < 3000; ++i) {
        mset.push_back("key:" + std::to_string(i));
        mset.push_back(std::to_string(i));
    }
    ASSERT_EQ(client.call(mset).text, "OK");
    auto scan = run_program({ redis_cli, "-s", socket_, "--scan", "--pattern", "key:1*" });
    ASSERT_EQ(scan.exit_code, 0) << scan.err;
    std::set<std::string> listed;
    std::istringstream lines(scan.out);
    for (std::string line; std::getline(lines, line);)
        listed.insert(line);
    EXPECT_EQ(listed.size(), 1111u) << "key:1, key:10-19, key:100-199, key:1000-1999";
}

// redis-cli --bigkeys: DBSIZE, then SCAN, TYPE and STRLEN for every key.
TEST_F(BucketTest, RedisCliBigkeysReportsTheBiggestStringAndTheKeyCount)
{
    const auto redis_cli = find_program("redis-cli");
    KV_REQUIRE(!redis_cli.empty(), "redis-cli on PATH (the quick start installs redis-tools)");
    auto client = connect_bucket();
    fill_with_known_sizes(client);
    auto bigkeys = run_program({ redis_cli, "-s", socket_, "--bigkeys" });
    ASSERT_EQ(bigkeys.exit_code, 0) << bigkeys.out << bigkeys.err;
    EXPECT_TRUE(bigkeys.err.empty()) << bigkeys.err.substr(0, 500);
    const auto has = [&](const std::string& line) { return bigkeys.out.find("\n" + line + "\n") != std::string::npos; };
    EXPECT_TRUE(has("Sampled 201 keys in the keyspace!")) << bigkeys.out;
    EXPECT_TRUE(has("Biggest string found '\"the:biggest\"' has 5000 bytes")) << bigkeys.out;
    // 0 + 1 + ... + 199 = 19,900 bytes, and 5,000.
    EXPECT_TRUE(has("201 strings with 24900 bytes (100.00% of keys, avg size " + two_decimals(24900.0 / 201) + ")"))
        << bigkeys.out;
}

// redis-cli --memkeys: as --bigkeys, with MEMORY USAGE for every key. The
// usage of a pair too large for its slot is the slot (64 bytes), the entry's
// header (16) and the key and value bytes (README, MEMORY USAGE).
TEST_F(BucketTest, RedisCliMemkeysReportsWhatTheBiggestKeyTakes)
{
    const auto redis_cli = find_program("redis-cli");
    KV_REQUIRE(!redis_cli.empty(), "redis-cli on PATH (the quick start installs redis-tools)");
    auto client = connect_bucket();
    fill_with_known_sizes(client);
    auto memkeys = run_program({ redis_cli, "-s", socket_, "--memkeys" });
    ASSERT_EQ(memkeys.exit_code, 0) << memkeys.out << memkeys.err;
    EXPECT_TRUE(memkeys.err.empty()) << "a MEMORY USAGE that failed: " << memkeys.err.substr(0, 500);
    const std::string biggest = std::to_string(64 + 16 + std::string("the:biggest").size() + 5000);
    EXPECT_NE(memkeys.out.find("\nBiggest string found '\"the:biggest\"' has " + biggest + " bytes\n"), std::string::npos)
        << memkeys.out;
    EXPECT_NE(memkeys.out.find("\nSampled 201 keys in the keyspace!\n"), std::string::npos) << memkeys.out;
}

// redis-cli --stat: INFO again and again, a line of it each time. It runs
// until it is killed; -i 0.05 asks every 50 ms, stdbuf -oL makes it print
// each line as it is made (a pipe would hold them in 4 KiB blocks).
TEST_F(BucketTest, RedisCliStatShowsTheBucketsKeysAndRequests)
{
    const auto redis_cli = find_program("redis-cli");
    KV_REQUIRE(!redis_cli.empty(), "redis-cli on PATH (the quick start installs redis-tools)");
    const auto stdbuf = find_program("stdbuf");
    KV_REQUIRE(!stdbuf.empty(), "stdbuf on PATH (coreutils)");
    auto client = connect_bucket();
    fill_with_known_sizes(client);
    RunningProgram stat({ stdbuf, "-oL", redis_cli, "-s", socket_, "--stat", "-i", "0.05" });
    const auto deadline = std::chrono::steady_clock::now() + scaled(20s);
    std::vector<std::vector<std::string>> rows;
    while (rows.size() < 2) {
        auto line = stat.next_line(deadline);
        ASSERT_TRUE(line) << "redis-cli --stat printed " << rows.size() << " data lines, then nothing";
        if (line->rfind("-------", 0) == 0 || line->rfind("keys ", 0) == 0)
            continue; // the heading
        std::istringstream words(*line);
        std::vector<std::string> row;
        for (std::string word; words >> word;)
            row.push_back(word);
        rows.push_back(row);
    }
    for (const auto& row : rows) {
        // keys, mem, clients, blocked, requests, (+new requests), connections
        ASSERT_EQ(row.size(), 7u);
        EXPECT_EQ(row[0], "201");
        EXPECT_NE(row[1], "0B"); // used_memory
        EXPECT_GE(std::stoll(row[2]), 2); // this test's client and redis-cli
        EXPECT_EQ(row[3], "0");
        EXPECT_GE(std::stoll(row[6]), 2);
    }
    // Each INFO is one more command processed.
    EXPECT_GT(std::stoll(rows[1][4]), std::stoll(rows[0][4]));
    EXPECT_EQ(rows[1][5], "(+" + std::to_string(std::stoll(rows[1][4]) - std::stoll(rows[0][4])) + ")");
}

// MEMORY USAGE's errors and missing keys, byte for byte as redis-server's;
// its sizes are kv's own (the slot, and the heap entry of a larger pair).
TEST_F(BucketTest, MemoryUsageAnswersAsRedisServer)
{
    KV_REQUIRE(!find_program("redis-server").empty(), "redis-server on PATH (./kv installs it)");
    ReferenceRedis redis;
    RawConnection reference(redis.socket());
    connect_bucket();
    RawConnection bucket(socket_);
    for (const auto& request : std::vector<std::vector<std::string>> { { "MEMORY" }, { "MEMORY", "USAGE" },
             { "MEMORY", "usage", "missing" }, { "MEMORY", "USAGE", "missing", "SAMPLES", "0" },
             { "MEMORY", "USAGE", "missing", "SAMPLES" }, { "MEMORY", "USAGE", "missing", "SAMPLES", "-1" },
             { "MEMORY", "USAGE", "missing", "SAMPLES", "x" }, { "MEMORY", "USAGE", "missing", "SAMPLES", "01" },
             { "MEMORY", "USAGE", "missing", "COUNT", "1" }, { "MEMORY", "NOSUCH" }, { "MEMORY", "HELP", "x" } })
        EXPECT_EQ(bucket.call(request), reference.call(request)) << request.back();
    // Inside MULTI a subcommand is checked before it is queued: a bad one
    // fails the block (EXECABORT), as in Redis; a good one runs in EXEC.
    for (const auto& request : std::vector<std::vector<std::string>> { { "MULTI" }, { "MEMORY", "USAGE" },
             { "MEMORY", "NOSUCH" }, { "MEMORY", "USAGE", "missing" }, { "EXEC" }, { "MULTI" },
             { "MEMORY", "USAGE", "missing" }, { "EXEC" } })
        EXPECT_EQ(bucket.call(request), reference.call(request)) << "in MULTI: " << request.back();
    bucket.call({ "SET", "small", "abc" });
    bucket.call({ "SET", "large", std::string(300, 'x') });
    EXPECT_EQ(bucket.call({ "MEMORY", "USAGE", "small" }), ":64\r\n"); // inline in its slot
    EXPECT_EQ(bucket.call({ "MEMORY", "USAGE", "large", "SAMPLES", "5" }), ":" + std::to_string(64 + 16 + 5 + 300) + "\r\n");
    bucket.call({ "SET", "expiring", "abc", "EX", "1000" }); // a pair with a time lives in an entry, however small
    EXPECT_EQ(bucket.call({ "MEMORY", "USAGE", "expiring" }), ":" + std::to_string(64 + 16 + 8 + 3) + "\r\n");
    EXPECT_EQ(bucket.call({ "MEMORY", "HELP" }).rfind("*6\r\n+MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n", 0), 0u);
}

TEST_F(BucketTest, RedisCliWorksAgainstRegistryAndBucket)
{
    const auto redis_cli = find_program("redis-cli");
    KV_REQUIRE(!redis_cli.empty(), "redis-cli on PATH (the quick start installs redis-tools)");
    auto client = connect_bucket();
    auto set = run_program({ redis_cli, "-s", socket_, "SET", "milk", "1" });
    EXPECT_EQ(set.out, "OK\n");
    EXPECT_EQ(client.call({ "GET", "milk" }).text, "1");
    auto lookup = run_program({ redis_cli, "-s", daemon_.run_dir() + "/registry.sock", "LOOKUP", "shopping" });
    EXPECT_NE(lookup.out.find(socket_), std::string::npos) << lookup.out;
}

TEST_F(BucketTest, RedisBenchmarkCanLoadABucketPlainAndPipelined)
{
    const auto redis_benchmark = find_program("redis-benchmark");
    KV_REQUIRE(!redis_benchmark.empty(), "redis-benchmark on PATH (the quick start installs redis-tools)");
    auto client = connect_bucket();
    for (const char* pipeline : { "1", "64" }) {
        auto result = run_program({ redis_benchmark, "-s", socket_, "-t", "ping,set,get,incr,mset", "-n", "2000", "-P",
            pipeline, "-q" });
        EXPECT_EQ(result.exit_code, 0) << result.err;
        // Each test prints its line once it has run to the end.
        for (const char* test : { "PING_INLINE: ", "PING_MBULK: ", "SET: ", "GET: ", "INCR: ", "MSET (10 keys): " })
            EXPECT_NE(result.out.find(test), std::string::npos) << test << " missing in\n" << result.out << result.err;
    }
    EXPECT_EQ(client.call({ "EXISTS", "key:__rand_int__" }).integer, 1);
    // INCR ran 2,000 times, then at least 2,000 more (pipelined, in whole batches of 64).
    EXPECT_GE(std::stoll(client.call({ "GET", "counter:__rand_int__" }).text), 4000);
}
