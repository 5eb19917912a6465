// registryd's status and history, as an operator reads them: INFO's registry
// section counting creates and exits by reason, HISTORY keeping the last exits
// newest first in a bounded ring, `kvctl info` and `kvctl history` (text and
// JSON), and `--version` on every program. A real registryd, real buckets;
// every exit is waited for on a MONITOR or STOP reply, never a sleep.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>

#include <gtest/gtest.h>

#include "daemon_fixture.h"

using namespace kv::test;
using kv::resp::Value;

namespace {

long long unix_ms_now()
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// A bucket created, then ended by `end` while a MONITOR waits; returns the
// MONITOR's reply, so the exit has been handled when this returns.
std::string create_and_end(const RegistryDaemon& daemon, const std::string& name, const std::string& how)
{
    auto bucket = daemon.create(name);
    auto watcher = daemon.monitor(name);
    set_receive_timeout(watcher, scaled(20s));
    if (how == "stop") {
        EXPECT_EQ(daemon.call({ "STOP", name }).text, "OK");
    } else if (how == "kill") {
        EXPECT_EQ(kill_process(pid_of(bucket), SIGKILL), 0);
    } else {
        auto client = kv::Client::connect(bucket.field("socket")->text);
        set_receive_timeout(client, scaled(20s));
        EXPECT_THROW(client.call({ "DEBUG", "EXIT", how }), kv::ConnectionClosed);
    }
    return watcher.read_reply().text;
}

} // namespace

TEST(Status, InfoCountsCreatesAndExitsByReason)
{
    RegistryDaemon daemon;
    auto info = registry_info(daemon);
    EXPECT_EQ(info["kv_version"], KV_VERSION);
    EXPECT_EQ(info["process_id"], std::to_string(daemon.pid()));
    EXPECT_EQ(info["run_dir"], daemon.run_dir());
    EXPECT_TRUE(info.count("uptime_in_seconds"));
    EXPECT_EQ(info["buckets"], "0");
    EXPECT_EQ(info["buckets_created"], "0");
    EXPECT_EQ(info["bucket_exits"], "0");
    EXPECT_EQ(info["history_size"], "1000");

    daemon.create("a");
    daemon.create("b");
    daemon.create("a"); // the existing bucket: nothing is started
    info = registry_info(daemon);
    EXPECT_EQ(info["buckets"], "2");
    EXPECT_EQ(info["buckets_created"], "2");

    EXPECT_EQ(create_and_end(daemon, "stopped", "stop"), "exited with status 0");
    info = registry_info(daemon);
    EXPECT_EQ(info["buckets_created"], "3");
    EXPECT_EQ(info["bucket_exits"], "1");
    EXPECT_EQ(info["bucket_exits_status_zero"], "1");
    EXPECT_EQ(info["bucket_exits_stopped"], "1");
    EXPECT_EQ(info["bucket_exits_signal"], "0");

    EXPECT_EQ(create_and_end(daemon, "killed", "kill"), "killed by SIGKILL");
    info = registry_info(daemon);
    EXPECT_EQ(info["bucket_exits"], "2");
    EXPECT_EQ(info["bucket_exits_signal"], "1");
    EXPECT_EQ(info["bucket_exits_stopped"], "1");

    EXPECT_EQ(create_and_end(daemon, "failed", "3"), "exited with status 3");
    info = registry_info(daemon);
    EXPECT_EQ(info["buckets"], "2");
    EXPECT_EQ(info["buckets_created"], "5");
    EXPECT_EQ(info["bucket_exits"], "3");
    EXPECT_EQ(info["bucket_exits_status_zero"], "1");
    EXPECT_EQ(info["bucket_exits_status_nonzero"], "1");
    EXPECT_EQ(info["bucket_exits_signal"], "1");
    EXPECT_EQ(info["bucket_exits_stopped"], "1");
    EXPECT_EQ(info["bucket_exits_before_ready"], "0");
    EXPECT_EQ(info["history_entries"], "3");
}

TEST(Status, InfoCountsClientsConnected)
{
    RegistryDaemon daemon;
    auto first = daemon.connect();
    ASSERT_EQ(wait_for_connections(daemon.pid(), 1), 1u);
    EXPECT_EQ(registry_info(first)["connected_clients"], "1");
    auto second = daemon.connect();
    ASSERT_EQ(wait_for_connections(daemon.pid(), 2), 2u);
    EXPECT_EQ(registry_info(first)["connected_clients"], "2");
}

TEST(Status, ABucketThatNeverBecameReadyCountsAsSuchAndIsInTheHistory)
{
    TemporaryDirectory scripts;
    auto silent = write_script(scripts, "bucketd", "#!/bin/sh\nexec sleep 60\n");
    RegistryDaemon daemon({ "--bucketd", silent, "--ready-timeout-ms", "200" });
    ASSERT_TRUE(daemon.call({ "CREATE", "a" }).is_error()); // answered once the bucket is gone
    auto info = registry_info(daemon);
    EXPECT_EQ(info["buckets_created"], "1");
    EXPECT_EQ(info["bucket_exits"], "1");
    EXPECT_EQ(info["bucket_exits_signal"], "1");
    EXPECT_EQ(info["bucket_exits_before_ready"], "1");
    auto history = daemon.call({ "HISTORY" });
    ASSERT_EQ(history.elements.size(), 1u);
    EXPECT_EQ(history.elements[0].field("reason")->text, "killed by SIGKILL");
}

TEST(Status, HistoryGivesTheReasonsNewestFirst)
{
    RegistryDaemon daemon;
    const long long before = unix_ms_now();
    auto first = daemon.create("first");
    EXPECT_EQ(daemon.call({ "HISTORY" }).elements.size(), 0u);
    EXPECT_EQ(create_and_end(daemon, "first", "stop"), "exited with status 0");
    EXPECT_EQ(create_and_end(daemon, "second", "kill"), "killed by SIGKILL");
    EXPECT_EQ(create_and_end(daemon, "third", "7"), "exited with status 7");
    const long long after = unix_ms_now();

    auto history = daemon.call({ "HISTORY" });
    ASSERT_EQ(history.type, Value::Type::array);
    ASSERT_EQ(history.elements.size(), 3u);
    const char* names[] = { "third", "second", "first" };
    const char* reasons[] = { "exited with status 7", "killed by SIGKILL", "exited with status 0" };
    const long long ids[] = { 3, 2, 1 };
    long long newer_end = after;
    for (std::size_t i = 0; i < 3; ++i) {
        const Value& entry = history.elements[i];
        EXPECT_EQ(entry.field("name")->text, names[i]);
        EXPECT_EQ(entry.field("reason")->text, reasons[i]);
        EXPECT_EQ(entry.field("id")->integer, ids[i]);
        const long long started = entry.field("started_ms")->integer;
        const long long ended = entry.field("ended_ms")->integer;
        EXPECT_LE(before, started);
        EXPECT_LE(started, ended);
        EXPECT_LE(ended, newer_end); // newest first
        newer_end = ended;
    }
    EXPECT_EQ(history.elements[2].field("pid")->integer, pid_of(first));

    // A count gives the newest; errors as Redis's for a count.
    auto two = daemon.call({ "HISTORY", "2" });
    ASSERT_EQ(two.elements.size(), 2u);
    EXPECT_EQ(two.elements[0].field("name")->text, "third");
    EXPECT_EQ(two.elements[1].field("name")->text, "second");
    EXPECT_EQ(daemon.call({ "HISTORY", "0" }).elements.size(), 0u);
    EXPECT_EQ(daemon.call({ "HISTORY", "100" }).elements.size(), 3u);
    EXPECT_EQ(daemon.call({ "HISTORY", "-1" }).text, "ERR value is out of range, must be positive");
    EXPECT_EQ(daemon.call({ "HISTORY", "x" }).text, "ERR value is not an integer or out of range");
    for (const char* count : { "01", "00", "-0", "+1", " 1" }) // Redis's string2ll takes none of these
        EXPECT_EQ(daemon.call({ "HISTORY", count }).text, "ERR value is not an integer or out of range") << count;
    EXPECT_EQ(daemon.call({ "HISTORY", "1", "2" }).text, "ERR wrong number of arguments for 'history' command");

    // RESP3: each entry a map, as LIST's.
    auto client = daemon.connect();
    ASSERT_FALSE(client.call({ "HELLO", "3" }).is_error());
    auto maps = client.call({ "HISTORY", "1" });
    ASSERT_EQ(maps.elements.size(), 1u);
    EXPECT_EQ(maps.elements[0].type, Value::Type::map);
    EXPECT_EQ(maps.elements[0].field("reason")->text, "exited with status 7");

    // COMMAND knows it, from the same table that dispatches it.
    auto command = daemon.call({ "COMMAND", "INFO", "HISTORY" });
    ASSERT_EQ(command.elements.size(), 1u);
    ASSERT_FALSE(command.elements[0].elements.empty());
    EXPECT_EQ(command.elements[0].elements[0].text, "history");
    EXPECT_EQ(command.elements[0].elements[1].integer, -1);
    auto docs = daemon.call({ "COMMAND", "DOCS", "HISTORY" });
    ASSERT_EQ(docs.elements.size(), 2u);
    EXPECT_NE(docs.elements[1].field("summary"), nullptr);
}

TEST(Status, TheHistoryKeepsOnlyHistorySizeExits)
{
    RegistryDaemon daemon({ "--history-size", "3" });
    for (int i = 1; i <= 5; ++i)
        EXPECT_EQ(create_and_end(daemon, "e" + std::to_string(i), "stop"), "exited with status 0");
    auto history = daemon.call({ "HISTORY" });
    ASSERT_EQ(history.elements.size(), 3u);
    EXPECT_EQ(history.elements[0].field("name")->text, "e5");
    EXPECT_EQ(history.elements[1].field("name")->text, "e4");
    EXPECT_EQ(history.elements[2].field("name")->text, "e3");
    auto info = registry_info(daemon);
    EXPECT_EQ(info["bucket_exits"], "5");
    EXPECT_EQ(info["history_entries"], "3");
    EXPECT_EQ(info["history_size"], "3");
}

TEST(Status, HistorySizeZeroKeepsNone)
{
    RegistryDaemon daemon({ "--history-size", "0" });
    EXPECT_EQ(create_and_end(daemon, "a", "kill"), "killed by SIGKILL");
    EXPECT_EQ(daemon.call({ "HISTORY" }).elements.size(), 0u);
    EXPECT_EQ(registry_info(daemon)["bucket_exits"], "1");
}

TEST(Status, EveryProgramPrintsItsVersion)
{
    for (const char* program : { "registryd", "bucketd", "kvctl" }) {
        auto result = run_program({ binary(program), "--version" });
        EXPECT_EQ(result.exit_code, 0) << program << ": " << result.err;
        EXPECT_EQ(result.out, std::string(program) + " " + KV_VERSION + "\n");
    }
    // bucketd takes nothing else by hand: "--help" is a bucket name like any
    // other (and without registryd's environment it cannot start).
    auto help = run_program({ binary("bucketd"), "--help" });
    EXPECT_EQ(help.exit_code, 1);
    EXPECT_EQ(help.out, "");
    EXPECT_EQ(run_program({ binary("bucketd"), "--version", "x" }).exit_code, 2);
    // Started by registryd (KV_INSTANCE set), "--version" is a name, not a flag.
    auto named = run_program({ binary("bucketd"), "--version" }, { "KV_INSTANCE=0123456789abcdef" });
    EXPECT_NE(named.exit_code, 0);
    EXPECT_EQ(named.out, "");
}

TEST(Status, ABucketNamedVersionIsStillABucket)
{
    RegistryDaemon daemon;
    auto bucket = daemon.create("--version");
    auto children = children_of(daemon.pid());
    ASSERT_EQ(children.size(), 1u);
    EXPECT_EQ(children[0].cmdline, "bucketd --version");
    auto client = kv::Client::connect(bucket.field("socket")->text);
    EXPECT_EQ(client.call({ "PING" }).text, "PONG");
}

namespace {

class KvctlStatus : public ::testing::Test {
protected:
    ProgramResult kvctl(std::vector<std::string> arguments)
    {
        arguments.insert(arguments.begin(), binary("kvctl"));
        return run_program(arguments, { "KV_RUN_DIR=" + daemon_.run_dir() });
    }

    // Runs Python `script` with `json` on stdin: how a user's script reads kvctl's JSON.
    ProgramResult python(const std::string& script, const std::string& json)
    {
        const std::string path = scratch_.path() + "/input.json";
        std::ofstream(path) << json;
        return run_program({ "/usr/bin/python3", "-c", script }, {}, path);
    }

    RegistryDaemon daemon_;
    TemporaryDirectory scratch_;
};

} // namespace

TEST_F(KvctlStatus, InfoPrintsTheStatusAsTextAndJson)
{
    KV_REQUIRE(::access("/usr/bin/python3", X_OK) == 0, "/usr/bin/python3 (to parse kvctl's JSON)");
    daemon_.create("a");
    EXPECT_EQ(create_and_end(daemon_, "b", "kill"), "killed by SIGKILL");

    auto text = kvctl({ "info" });
    ASSERT_EQ(text.exit_code, 0) << text.err;
    EXPECT_NE(text.out.find("kv version:"), std::string::npos) << text.out;
    EXPECT_NE(text.out.find(std::string(KV_VERSION) + "\n"), std::string::npos) << text.out;
    EXPECT_NE(text.out.find("pid:"), std::string::npos) << text.out;
    EXPECT_NE(text.out.find(daemon_.run_dir() + "\n"), std::string::npos) << text.out;

    auto json = kvctl({ "info", "--json" });
    ASSERT_EQ(json.exit_code, 0) << json.err;
    auto parsed = python("import json, sys\n"
                         "d = json.load(sys.stdin)\n"
                         "print(d['kv_version'], d['process_id'], d['buckets'], d['buckets_created'], d['bucket_exits'],"
                         " d['bucket_exits_signal'], d['run_dir'])\n",
        json.out);
    ASSERT_EQ(parsed.exit_code, 0) << parsed.err << json.out;
    EXPECT_EQ(parsed.out, std::string(KV_VERSION) + " " + std::to_string(daemon_.pid()) + " 1 2 1 1 " + daemon_.run_dir() + "\n");
}

TEST_F(KvctlStatus, HistoryPrintsTheExitsAsTextAndJson)
{
    KV_REQUIRE(::access("/usr/bin/python3", X_OK) == 0, "/usr/bin/python3 (to parse kvctl's JSON)");
    EXPECT_EQ(create_and_end(daemon_, "older", "stop"), "exited with status 0");
    EXPECT_EQ(create_and_end(daemon_, "newer", "kill"), "killed by SIGKILL");

    auto text = kvctl({ "history" });
    ASSERT_EQ(text.exit_code, 0) << text.err;
    const auto newer = text.out.find("killed by SIGKILL");
    const auto older = text.out.find("exited with status 0");
    ASSERT_NE(newer, std::string::npos) << text.out;
    ASSERT_NE(older, std::string::npos) << text.out;
    EXPECT_LT(newer, older) << text.out;

    auto one = kvctl({ "history", "1" });
    ASSERT_EQ(one.exit_code, 0) << one.err;
    EXPECT_EQ(one.out.find("exited with status 0"), std::string::npos) << one.out;
    EXPECT_NE(one.out.find("newer"), std::string::npos) << one.out;

    auto json = kvctl({ "history", "--json" });
    ASSERT_EQ(json.exit_code, 0) << json.err;
    auto parsed = python("import json, sys\n"
                         "for e in json.load(sys.stdin):\n"
                         "    assert e['started_ms'] <= e['ended_ms'] and e['ended'].endswith('Z'), e\n"
                         "    print(e['name'], e['id'], e['pid'] > 0, e['reason'])\n",
        json.out);
    ASSERT_EQ(parsed.exit_code, 0) << parsed.err << json.out;
    EXPECT_EQ(parsed.out, "newer 2 True killed by SIGKILL\nolder 1 True exited with status 0\n");
}
