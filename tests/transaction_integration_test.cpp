// MULTI, EXEC, DISCARD, WATCH and UNWATCH on a bucket, as Redis clients see
// them: every reply compared byte for byte with a real redis-server 7.0's
// (RESP2 and RESP3), a transaction that must not half-apply, EXEC atomic for
// a direct shared-memory reader, and a WATCH that leaves nothing behind once
// its client hangs up.
#include <gtest/gtest.h>

#include <unistd.h>

#include <regex>
#include <thread>

#include "daemon_fixture.h"
#include "paired_writes.h"
#include "reference_redis.h"
#include "resp.h"

using namespace kv::test;

namespace {

std::string joined(const std::vector<std::string>& request)
{
    std::string text;
    for (const auto& argument : request)
        text += argument + " ";
    return text;
}

// Two servers side by side, each with two connections (`first` and
// `second`, so that one can change what the other watches): every request
// goes to both servers on the same-named connection, and the replies must be
// the same bytes.
class TransactionTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        KV_REQUIRE(!find_program("redis-server").empty(), "redis-server on PATH (apt-get install redis-server)");
        redis_.emplace();
        bucket_socket_ = daemon_.create("shopping").field("socket")->text;
        ours_first_.emplace(bucket_socket_);
        ours_second_.emplace(bucket_socket_);
        theirs_first_.emplace(redis_->socket());
        theirs_second_.emplace(redis_->socket());
    }

    enum Which { first, second };

    // Sends each request to both servers on connection `which`, expects the
    // same bytes, and returns them. Only HELLO's connection id may differ.
    std::string same(const std::vector<std::string>& request, Which which = first)
    {
        static const std::regex hello_id("\\$2\r\nid\r\n:[0-9]+\r\n");
        auto masked = [](const std::string& reply) { return std::regex_replace(reply, hello_id, "$$2\r\nid\r\n:*\r\n"); };
        const std::string ours = masked((which == first ? *ours_first_ : *ours_second_).call(request));
        const std::string theirs = masked((which == first ? *theirs_first_ : *theirs_second_).call(request));
        EXPECT_EQ(ours, theirs) << "request: " << joined(request) << (which == first ? "(first)" : "(second)");
        return ours;
    }

    void same_script(const std::vector<std::vector<std::string>>& script, Which which = first)
    {
        for (const auto& request : script)
            same(request, which);
    }

    RegistryDaemon daemon_;
    std::optional<ReferenceRedis> redis_;
    std::string bucket_socket_;
    std::optional<RawConnection> ours_first_, ours_second_, theirs_first_, theirs_second_;
};

TEST_F(TransactionTest, QueuedCommandsRunAtExecWithRuntimeErrorsAmongTheReplies)
{
    same_script({ { "FLUSHALL" }, { "EXEC" }, { "DISCARD" }, { "MULTI" }, { "MULTI" }, { "SET", "a", "1" }, { "INCR", "a" },
        { "SET", "s", "text" }, { "INCR", "s" }, { "GET", "a" }, { "MGET", "a", "s", "none" }, { "PING" }, { "ECHO", "hi" },
        { "EXEC" }, { "GET", "a" }, { "GET", "s" } });
    // An empty block, then DISCARD of a block that would have written.
    same_script({ { "MULTI" }, { "EXEC" }, { "MULTI" }, { "SET", "a", "discarded" }, { "DISCARD" }, { "GET", "a" }, { "EXEC" } });
    // RESP3: the same, with RESP3's nulls and maps inside EXEC's array.
    same_script({ { "HELLO", "3" }, { "MULTI" }, { "GET", "none" }, { "SET", "a", "2", "GET" }, { "CONFIG", "GET", "save" },
        { "INCR", "s" }, { "EXEC" } });
}

TEST_F(TransactionTest, AMalformedCommandInsideMultiDiscardsTheWholeBlock)
{
    same_script({ { "FLUSHALL" }, { "SET", "kept", "old" },
        // unknown command: kv leaves out Redis's "with args beginning with", so it is compared below by prefix
        { "MULTI" }, { "SET", "kept", "new" } });
    EXPECT_EQ(ours_first_->call({ "NOSUCHCOMMAND", "x" }).rfind("-ERR unknown command 'NOSUCHCOMMAND'", 0), 0u);
    EXPECT_EQ(theirs_first_->call({ "NOSUCHCOMMAND", "x" }).rfind("-ERR unknown command 'NOSUCHCOMMAND'", 0), 0u);
    same_script({ { "SET", "other", "1" }, { "EXEC" }, { "GET", "kept" }, { "EXISTS", "other" },
        // wrong arity, of a data command, a connection command, a subcommand; MULTI x; DISCARD x; WATCH
        { "MULTI" }, { "SET", "kept" }, { "SET", "kept", "new" }, { "EXEC" }, { "GET", "kept" },
        { "MULTI" }, { "ECHO" }, { "SET", "kept", "new" }, { "EXEC" },
        { "MULTI" }, { "CLIENT", "SETNAME" }, { "EXEC" },
        { "MULTI" }, { "CLIENT", "NOSUCH" }, { "EXEC" },
        { "MULTI" }, { "MULTI", "x" }, { "SET", "kept", "new" }, { "EXEC" },
        { "MULTI" }, { "DISCARD", "x" }, { "SET", "kept", "new" }, { "EXEC" },
        { "MULTI" }, { "WATCH" }, { "EXEC" },
        // WATCH inside MULTI and a nested MULTI are refused without failing the block
        { "MULTI" }, { "WATCH", "kept" }, { "MULTI" }, { "SET", "kept", "new" }, { "EXEC" }, { "GET", "kept" },
        // EXEC with arguments: discarded, with the reason
        { "MULTI" }, { "SET", "kept", "newer" }, { "EXEC", "x" }, { "EXEC" }, { "GET", "kept" }, { "EXEC", "x" },
        { "UNWATCH", "x" }, { "WATCH" } });
}

// The bug issue 9 calls out: a client's transaction it believes failed must
// have changed nothing.
TEST_F(TransactionTest, ATransactionThatFailsToQueueLeavesEveryKeyUntouched)
{
    auto client = kv::Client::connect(bucket_socket_);
    ASSERT_EQ(client.call({ "SET", "balance", "100" }).text, "OK");
    ASSERT_EQ(client.call({ "MULTI" }).text, "OK");
    EXPECT_EQ(client.call({ "DECRBY", "balance", "30" }).text, "QUEUED");
    EXPECT_TRUE(client.call({ "INCRBY", "savings" }).is_error()); // wrong arity: malformed
    EXPECT_EQ(client.call({ "SET", "log", "moved 30" }).text, "QUEUED");
    EXPECT_EQ(client.call({ "EXEC" }).text, "EXECABORT Transaction discarded because of previous errors.");
    EXPECT_EQ(client.call({ "GET", "balance" }).text, "100");
    EXPECT_EQ(client.call({ "EXISTS", "log" }).integer, 0);
}

TEST_F(TransactionTest, AWatchedKeyChangedByAnyoneMakesExecAnswerNull)
{
    for (const char* protocol : { "2", "3" }) {
        SCOPED_TRACE(std::string("RESP") + protocol);
        same({ "HELLO", protocol });
        same({ "FLUSHALL" }, second);
        // Another connection's write.
        same_script({ { "WATCH", "a" }, { "MULTI" }, { "SET", "b", "1" } });
        same({ "SET", "a", "other" }, second);
        same_script({ { "EXEC" }, { "EXISTS", "b" } });
        // This connection's own write, before MULTI.
        same_script({ { "WATCH", "a" }, { "SET", "a", "mine" }, { "MULTI" }, { "SET", "b", "1" }, { "EXEC" }, { "EXISTS", "b" } });
        // Deleted; renamed to; renamed from; flushed (only a key that was there counts).
        same_script({ { "WATCH", "a" }, { "MULTI" }, { "SET", "b", "1" } });
        same({ "DEL", "a" }, second);
        same_script({ { "EXEC" }, { "WATCH", "a", "c" }, { "MULTI" }, { "SET", "b", "1" } });
        same({ "SET", "x", "1" }, second);
        same({ "RENAME", "x", "c" }, second);
        same_script({ { "EXEC" }, { "WATCH", "c" }, { "MULTI" }, { "SET", "b", "2" } });
        same({ "RENAME", "c", "d" }, second);
        same_script({ { "EXEC" }, { "WATCH", "d", "nothere" }, { "MULTI" }, { "INCR", "n" } });
        same({ "FLUSHDB" }, second);
        same_script({ { "EXEC" }, { "WATCH", "nothere" }, { "MULTI" }, { "INCR", "n" } });
        same({ "FLUSHALL" }, second);
        same({ "EXEC" }); // nothing watched was there: it runs
        // A write that does not change the key touches nothing.
        same({ "SET", "a", "1" }, second);
        same_script({ { "WATCH", "a" }, { "MULTI" }, { "GET", "a" } });
        same_script({ { "SET", "a", "2", "NX" }, { "SETRANGE", "a", "0", "" }, { "DEL", "none" }, { "GET", "a" } }, second);
        same({ "EXEC" });
        // UNWATCH, and EXEC, DISCARD, RESET each unwatch.
        same_script({ { "WATCH", "a" }, { "UNWATCH" } });
        same({ "SET", "a", "3" }, second);
        same_script({ { "MULTI" }, { "GET", "a" }, { "EXEC" }, { "WATCH", "a" }, { "MULTI" }, { "DISCARD" } });
        same({ "SET", "a", "4" }, second);
        same_script({ { "MULTI" }, { "GET", "a" }, { "EXEC" } });
        // After a failed EXEC, the next transaction is clean.
        same_script({ { "WATCH", "a" } });
        same({ "SET", "a", "5" }, second);
        same_script({ { "MULTI" }, { "EXEC" }, { "MULTI" }, { "GET", "a" }, { "EXEC" } });
        // WATCH again once dirty changes nothing; UNWATCH clears it.
        same_script({ { "WATCH", "a" } });
        same({ "SET", "a", "6" }, second);
        same_script({ { "WATCH", "b" }, { "MULTI" }, { "EXEC" }, { "WATCH", "a" } });
        same({ "SET", "a", "7" }, second);
        same_script({ { "UNWATCH" }, { "MULTI" }, { "GET", "a" }, { "EXEC" } });
        // A transaction's own writes mark other watchers.
        same({ "WATCH", "a" }, second);
        same_script({ { "MULTI" }, { "SET", "a", "8" }, { "EXEC" } });
        same_script({ { "MULTI" }, { "GET", "a" }, { "EXEC" } }, second);
    }
}

TEST_F(TransactionTest, ResetAndQuitInsideMultiAsRedis)
{
    same_script({ { "FLUSHALL" }, { "WATCH", "a" }, { "MULTI" }, { "SET", "a", "1" }, { "RESET" }, { "EXEC" }, { "EXISTS", "a" } });
    same({ "SET", "a", "x" }, second);
    same_script({ { "MULTI" }, { "GET", "a" }, { "EXEC" }, { "MULTI" }, { "SET", "a", "2" }, { "QUIT" } });
    same({ "GET", "a" }, second);
}

// A client that WATCHes and hangs up leaves nothing behind: INFO's
// total_watched_keys (Redis 7.4's field) falls back to 0.
TEST_F(TransactionTest, AClientThatWatchesAndHangsUpLeavesNoWatchBehind)
{
    auto info_field = [&](kv::Client& client, const std::string& field) {
        const std::string text = client.call({ "INFO", "clients" }).text;
        const auto at = text.find(field + ":");
        EXPECT_NE(at, std::string::npos) << text;
        return std::stoll(text.substr(at + field.size() + 1));
    };
    auto observer = kv::Client::connect(bucket_socket_);
    {
        auto watcher = kv::Client::connect(bucket_socket_);
        std::vector<std::string> watch = { "WATCH" };
        for (int i = 0; i < 100; ++i)
            watch.push_back("key" + std::to_string(i));
        ASSERT_EQ(watcher.call(watch).text, "OK");
        ASSERT_EQ(watcher.call({ "WATCH", "key0", "key1" }).text, "OK"); // once per key
        EXPECT_EQ(info_field(observer, "total_watched_keys"), 100);
        EXPECT_EQ(info_field(observer, "watching_clients"), 1);
    } // hangs up
    // Wait on the bucket seeing the hang-up (its client count), then look.
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (info_field(observer, "connected_clients") > 3 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::yield();
    EXPECT_EQ(info_field(observer, "connected_clients"), 3); // observer and the fixture's two raw connections
    EXPECT_EQ(info_field(observer, "total_watched_keys"), 0);
    EXPECT_EQ(info_field(observer, "watching_clients"), 0);
    // And a write to a key it watched touches nothing that is gone.
    EXPECT_EQ(observer.call({ "SET", "key5", "v" }).text, "OK");
}

} // namespace

TEST(TransactionLimit, AQueueIsBoundedByTheClientBufferLimit)
{
    // With a 1 MiB limit, 100 KiB values pass it at the 11th queued SET
    // (each also counts its strings' own size), and the block fails whole.
    RegistryDaemon daemon({ "--max-client-buffer", "1048576" });
    auto client = kv::Client::connect(daemon.create("shopping").field("socket")->text);
    ASSERT_EQ(client.call({ "MULTI" }).text, "OK");
    const std::string big(100 << 10, 'x');
    int queued = 0;
    std::string error;
    for (int i = 0; i < 20 && error.empty(); ++i) {
        const auto reply = client.call({ "SET", "k" + std::to_string(i), big });
        if (reply.is_error())
            error = reply.text;
        else
            ++queued;
    }
    EXPECT_EQ(queued, 10);
    EXPECT_EQ(error, "ERR transaction too large: its queued commands would take more than the client buffer limit of 1048576 bytes; EXEC will discard it");
    EXPECT_EQ(client.call({ "SET", "after", "1" }).text, "QUEUED");
    EXPECT_EQ(client.call({ "EXEC" }).text, "EXECABORT Transaction discarded because of previous errors.");
    EXPECT_EQ(client.call({ "DBSIZE" }).integer, 0);
    // The connection goes on: the next block runs.
    ASSERT_EQ(client.call({ "MULTI" }).text, "OK");
    EXPECT_EQ(client.call({ "SET", "k", big }).text, "QUEUED");
    EXPECT_EQ(client.call({ "EXEC" }).elements.size(), 1u);
}

// python3-redis's transactions with its defaults: pipeline(transaction=True)
// sends MULTI ... EXEC; a WATCHed key changed by another client raises
// WatchError and applies nothing; a failed command in a transaction raises
// after the others ran, as against Redis.
TEST_F(TransactionTest, PythonRedisTransactionsAndWatchWorkAsAgainstRedis)
{
    KV_REQUIRE(run_program({ "/usr/bin/python3", "-c", "import redis" }).exit_code == 0,
        "Debian's python3-redis for /usr/bin/python3 (apt-get install python3-redis)");
    const std::string script = R"(
import sys, redis
r = redis.Redis(unix_socket_path=sys.argv[1])
other = redis.Redis(unix_socket_path=sys.argv[1])
r.flushall()
p = r.pipeline(transaction=True)
p.set("a", "1").incr("a").get("a")
assert p.execute() == [True, 2, b"2"]
with r.pipeline() as p:
    p.watch("a")
    other.set("a", "changed")
    p.multi()
    p.set("b", "1")
    try:
        p.execute()
        raise SystemExit("no WatchError")
    except redis.WatchError:
        pass
assert r.exists("b") == 0
p = r.pipeline(transaction=True)
p.set("s", "text").incr("s").set("c", "1")
try:
    p.execute()
    raise SystemExit("no ResponseError")
except redis.ResponseError:
    pass
assert r.get("c") == b"1"
r.set("a", "41")
def add_one(pipe):
    value = int(pipe.get("a"))
    pipe.multi()
    pipe.set("a", value + 1)
r.transaction(add_one, "a")
assert r.get("a") == b"42"
r.close(); other.close()
print("ok")
)";
    const auto result = run_program({ "/usr/bin/python3", "-c", script, bucket_socket_ });
    EXPECT_EQ(result.exit_code, 0) << result.err;
    EXPECT_EQ(result.out, "ok\n") << result.err;
}

TEST(TransactionFull, ACommandThatDoesNotFitAnswersFullAndTheRestStillRun)
{
    // As Redis with maxmemory answers OOM per command: in a 256 KiB bucket,
    // the 200 KiB value of the second SET does not fit after the first, and
    // the MSET with it sets none of its keys; the commands around them run.
    RegistryDaemon daemon({ "--bucket-size", "262144" });
    auto client = kv::Client::connect(daemon.create("small").field("socket")->text);
    const std::string big(200 << 10, 'x');
    ASSERT_EQ(client.call({ "MULTI" }).text, "OK");
    for (const std::vector<std::string>& request : std::vector<std::vector<std::string>> { { "SET", "a", big },
             { "SET", "b", big }, { "MSET", "c", "1", "d", big }, { "SET", "e", "1" }, { "INCR", "e" } })
        ASSERT_EQ(client.call(request).text, "QUEUED");
    const auto replies = client.call({ "EXEC" });
    ASSERT_EQ(replies.elements.size(), 5u);
    EXPECT_EQ(replies.elements[0].text, "OK");
    EXPECT_EQ(replies.elements[1].text.rfind("FULL bucket is full", 0), 0u) << replies.elements[1].text;
    EXPECT_EQ(replies.elements[2].text.rfind("FULL bucket is full", 0), 0u) << replies.elements[2].text;
    EXPECT_EQ(replies.elements[3].text, "OK");
    EXPECT_EQ(replies.elements[4].integer, 2);
    EXPECT_EQ(client.call({ "STRLEN", "a" }).integer, static_cast<long long>(big.size()));
    EXPECT_EQ(client.call({ "EXISTS", "b", "c", "d" }).integer, 0);
    EXPECT_EQ(client.call({ "GET", "e" }).text, "2");
}

TEST(TransactionDirectRead, AReaderNeverSeesHalfAnExec)
{
    // As DirectRead.AReaderNeverSeesHalfAnMset, with MULTI, SET a, 30 SETs of
    // fillers, SET b, EXEC: if EXEC ran its commands in separate windows, the
    // reader would catch b behind a.
    PairedChange exec;
    exec.what = "an EXEC";
    exec.encode = [](const std::vector<std::pair<std::string, std::string>>& pairs) {
        std::string requests = kv::resp::encode_command({ "MULTI" });
        for (const auto& [key, value] : pairs)
            requests += kv::resp::encode_command({ "SET", key, value });
        return requests + kv::resp::encode_command({ "EXEC" });
    };
    exec.read_replies = [](kv::Client& client, std::size_t pairs) {
        ASSERT_EQ(client.read_reply().text, "OK");
        for (std::size_t queued = 0; queued < pairs; ++queued)
            ASSERT_EQ(client.read_reply().text, "QUEUED");
        ASSERT_EQ(client.read_reply().elements.size(), pairs);
    };
    exec.pipelined = 16;
    expect_direct_reader_never_sees_half(exec);
}
