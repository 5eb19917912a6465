// kvctl as a user runs it: the README walkthrough, its output and its exit codes.
#include <signal.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "daemon_fixture.h"

using namespace kv::test;

namespace {

class Kvctl : public ::testing::Test {
protected:
    explicit Kvctl(std::vector<std::string> arguments = {}) : daemon_(std::move(arguments)) {}

    ProgramResult kvctl(std::vector<std::string> arguments, const std::string& stdin_file = "/dev/null")
    {
        arguments.insert(arguments.begin(), binary("kvctl"));
        // The run dir comes from the environment, as a user would set it.
        return run_program(arguments, { "KV_RUN_DIR=" + daemon_.run_dir() }, stdin_file);
    }

    RegistryDaemon daemon_;
};

} // namespace

TEST_F(Kvctl, WalkthroughFromTheReadme)
{
    auto create = kvctl({ "create", "shopping" });
    ASSERT_EQ(create.exit_code, 0) << create.err;
    auto pid = std::stoi(create.out);
    auto children = children_of(daemon_.pid());
    ASSERT_EQ(children.size(), 1u);
    EXPECT_EQ(children[0].pid, pid);
    EXPECT_EQ(children[0].cmdline, "bucketd shopping");

    EXPECT_EQ(kvctl({ "put", "shopping", "milk", "1" }).exit_code, 0);
    auto get = kvctl({ "get", "shopping", "milk" });
    EXPECT_EQ(get.exit_code, 0);
    EXPECT_EQ(get.out, "1\n");
    EXPECT_EQ(kvctl({ "lookup", "shopping" }).out, create.out);

    // kill -9, and MONITOR tells us once registryd has handled the exit.
    auto pidfd = open_pidfd(pid);
    auto watcher = daemon_.monitor("shopping");
    ASSERT_EQ(kill_process(pid, SIGKILL), 0);
    EXPECT_EQ(watcher.read_reply().text, "killed by SIGKILL");
    EXPECT_NE(daemon_.log().find("bucket shopping (pid " + std::to_string(pid) + ", id 1) killed by SIGKILL"), std::string::npos);

    auto lookup = kvctl({ "lookup", "shopping" });
    EXPECT_EQ(lookup.exit_code, 1);
    EXPECT_EQ(lookup.err, "kvctl: no bucket named shopping\n");
    EXPECT_TRUE(children_of(daemon_.pid()).empty()); // no zombie, no bucketd left
}

TEST_F(Kvctl, PutReadsTheValueFromStdinAsItIs)
{
    ASSERT_EQ(kvctl({ "create", "files" }).exit_code, 0);
    TemporaryDirectory scratch;
    const std::string path = scratch.path() + "/value";
    // Every byte value, NUL, CR and LF among them, no trailing newline added,
    // and more than one read(2) worth of it.
    std::string value;
    for (int i = 0; i < 300000; ++i)
        value += static_cast<char>(i * 7 % 256);
    {
        std::ofstream out(path, std::ios::binary);
        out << value;
    }
    auto put = kvctl({ "put", "files", "blob", "-" }, path);
    ASSERT_EQ(put.exit_code, 0) << put.err;
    auto get = kvctl({ "get", "files", "blob" });
    ASSERT_EQ(get.exit_code, 0) << get.err;
    EXPECT_TRUE(get.out == value + "\n") << "get prints the bytes as they are, then a newline";
    auto raw = kvctl({ "get", "files", "blob", "--raw" });
    ASSERT_EQ(raw.exit_code, 0) << raw.err;
    EXPECT_TRUE(raw.out == value) << "get --raw prints exactly the bytes put, nothing added";

    // An empty stdin is an empty value, not a missing one.
    auto empty = kvctl({ "put", "files", "nothing", "-" });
    ASSERT_EQ(empty.exit_code, 0) << empty.err;
    auto got = kvctl({ "get", "files", "nothing" });
    EXPECT_EQ(got.exit_code, 0) << got.err;
    EXPECT_EQ(got.out, "\n");
    EXPECT_EQ(kvctl({ "get", "files", "nothing", "--raw" }).out, "");
}

TEST_F(Kvctl, ArgumentsThatBeginWithADashGoAfterDoubleDash)
{
    ASSERT_EQ(kvctl({ "create", "shop" }).exit_code, 0);
    auto put = kvctl({ "put", "shop", "--", "-milk", "-1" });
    ASSERT_EQ(put.exit_code, 0) << put.err;
    auto get = kvctl({ "get", "shop", "--raw", "--", "-milk" });
    ASSERT_EQ(get.exit_code, 0) << get.err;
    EXPECT_EQ(get.out, "-1");
    // Without --, -milk is read as options: a usage error, never a wrong key.
    auto without = kvctl({ "put", "shop", "-milk", "2" });
    EXPECT_EQ(without.exit_code, 2);
    EXPECT_EQ(kvctl({ "get", "shop", "--", "-milk" }).out, "-1\n");

    // And --help says so, for kvctl and for each command.
    for (const auto& help : { kvctl({ "--help" }), kvctl({ "put", "--help" }), kvctl({ "get", "--help" }) }) {
        EXPECT_EQ(help.exit_code, 0);
        EXPECT_NE(help.out.find("go after --, which ends the options: kvctl put NAME -- -KEY VALUE"), std::string::npos) << help.out;
    }
}

TEST_F(Kvctl, LookupSocketPrintsThePathToGiveRedisCli)
{
    auto created = daemon_.create("shopping");
    auto lookup = kvctl({ "lookup", "shopping", "--socket" });
    ASSERT_EQ(lookup.exit_code, 0) << lookup.err;
    EXPECT_EQ(lookup.out, created.field("socket")->text + "\n");
    // It is the bucket's socket: a client that connects there talks to the bucket.
    auto bucket = kv::Client::connect(lookup.out.substr(0, lookup.out.size() - 1));
    EXPECT_EQ(bucket.call({ "SET", "milk", "1" }).text, "OK");
    EXPECT_EQ(kvctl({ "get", "shopping", "milk" }).out, "1\n");
    EXPECT_EQ(kvctl({ "lookup", "nope", "--socket" }).exit_code, 1);
}

TEST_F(Kvctl, KeysListsEveryMatchingKeyOnceThroughScan)
{
    ASSERT_EQ(kvctl({ "create", "many" }).exit_code, 0);
    // More keys than one SCAN call returns, so kvctl must follow the cursor.
    std::set<std::string> users, all;
    std::string requests;
    for (int i = 0; i < 3000; ++i) {
        std::string key = (i % 3 == 0 ? "user:" : "item:") + std::to_string(i);
        (i % 3 == 0 ? users : all).insert(key);
        requests += kv::resp::encode_command({ "SET", key, "v" });
    }
    all.insert(users.begin(), users.end());
    auto bucket = kv::Client::connect(daemon_.create("many").field("socket")->text);
    bucket.send_raw(requests);
    for (int i = 0; i < 3000; ++i)
        ASSERT_EQ(bucket.read_reply().text, "OK");

    auto lines = [](const std::string& text) {
        std::vector<std::string> split;
        std::size_t start = 0;
        for (std::size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1)
            split.push_back(text.substr(start, end - start));
        return split;
    };
    auto every = kvctl({ "keys", "many" });
    ASSERT_EQ(every.exit_code, 0) << every.err;
    auto listed = lines(every.out);
    EXPECT_EQ(listed.size(), all.size()) << "each key once";
    EXPECT_EQ(std::set<std::string>(listed.begin(), listed.end()), all);

    auto matching = kvctl({ "keys", "many", "user:*" });
    ASSERT_EQ(matching.exit_code, 0) << matching.err;
    listed = lines(matching.out);
    EXPECT_EQ(std::set<std::string>(listed.begin(), listed.end()), users);
    EXPECT_EQ(listed.size(), users.size());

    // A key with a newline or a terminal escape prints on one line, escaped.
    bucket.call({ "SET", std::string("odd\nkey\x1b[2J\\"), "v" });
    auto odd = kvctl({ "keys", "many", "odd*" });
    ASSERT_EQ(odd.exit_code, 0) << odd.err;
    EXPECT_EQ(odd.out, "odd\\x0akey\\x1b[2J\\x5c\n");

    auto none = kvctl({ "keys", "many", "nothing:*" });
    EXPECT_EQ(none.exit_code, 0);
    EXPECT_EQ(none.out, "");
    auto missing = kvctl({ "keys", "nosuchbucket" });
    EXPECT_EQ(missing.exit_code, 1);
    EXPECT_EQ(missing.err, "kvctl: no bucket named nosuchbucket\n");
}

TEST_F(Kvctl, EachKindOfFailureHasItsExitCodeAndAOneLineMessage)
{
    kvctl({ "create", "shopping" });
    auto missing_key = kvctl({ "get", "shopping", "eggs" });
    EXPECT_EQ(missing_key.exit_code, 1);
    EXPECT_EQ(missing_key.err, "kvctl: no key eggs in bucket shopping\n");

    auto missing_bucket = kvctl({ "get", "nope", "eggs" });
    EXPECT_EQ(missing_bucket.exit_code, 1);
    EXPECT_EQ(missing_bucket.err, "kvctl: no bucket named nope\n");

    auto usage = kvctl({ "put", "shopping" });
    EXPECT_EQ(usage.exit_code, 2);
    EXPECT_EQ(std::count(usage.err.begin(), usage.err.end(), '\n'), 1);
    // An unknown command says so and names the real ones, on one line.
    auto unknown = kvctl({ "frobnicate", "x" });
    EXPECT_EQ(unknown.exit_code, 2);
    EXPECT_EQ(unknown.err.rfind("kvctl: unknown command frobnicate (commands: create, lookup, list, stop, ", 0), 0u) << unknown.err;
    EXPECT_NE(unknown.err.find(", delete"), std::string::npos) << unknown.err;
    EXPECT_EQ(std::count(unknown.err.begin(), unknown.err.end(), '\n'), 1) << unknown.err;
    // A count of exits is digits: "-1" is not taken as 2^64 - 1.
    for (const char* count : { "-1", "abc", "" }) {
        auto history = kvctl({ "history", "--", count });
        EXPECT_EQ(history.exit_code, 2) << count << ": " << history.err;
        EXPECT_EQ(std::count(history.err.begin(), history.err.end(), '\n'), 1) << history.err;
    }
    auto none = kvctl({});
    EXPECT_EQ(none.exit_code, 2);
    EXPECT_EQ(none.err.rfind("kvctl: a command is required (commands: create, lookup, ", 0), 0u) << none.err;

    auto invalid = kvctl({ "create", std::string(256, 'x') });
    EXPECT_EQ(invalid.exit_code, 4);
    EXPECT_EQ(invalid.err.rfind("kvctl: unable to create bucket ", 0), 0u);
    EXPECT_NE(invalid.err.find("a bucket name is at most 255 bytes, this one has 256"), std::string::npos) << invalid.err;
    // A name that is not UTF-8 is refused, and shown escaped, never as raw bytes.
    auto latin1 = kvctl({ "create", "caf\xe9" });
    EXPECT_EQ(latin1.exit_code, 4);
    EXPECT_EQ(latin1.err, "kvctl: unable to create bucket caf\\xe9: invalid bucket name: a bucket name must be valid UTF-8 "
                          "(byte 0xe9 at offset 3 is not)\n");

    auto unreachable = run_program({ binary("kvctl"), "--run-dir", "/nonexistent/kv", "lookup", "a" });
    EXPECT_EQ(unreachable.exit_code, 3);
    EXPECT_EQ(unreachable.err,
        "kvctl: unable to reach registryd at /nonexistent/kv/registry.sock: No such file or directory "
        "(is registryd running with this run dir?)\n");

    auto help = kvctl({ "--help" });
    EXPECT_EQ(help.exit_code, 0);
    EXPECT_NE(help.out.find("Exit codes: 0 ok; 1 not found"), std::string::npos);
}

TEST_F(Kvctl, RunDirFlagWorksAfterTheSubcommandToo)
{
    auto result = run_program({ binary("kvctl"), "create", "a", "--run-dir", daemon_.run_dir() });
    EXPECT_EQ(result.exit_code, 0) << result.err;
}

TEST_F(Kvctl, ListShowsBucketsAndDeleteOrStopOfWhatIsGoneExitsOne)
{
    kvctl({ "create", "a" });
    kvctl({ "create", "b" });
    kvctl({ "put", "a", "k", "value" });
    auto list = kvctl({ "list" });
    EXPECT_NE(list.out.find("NAME"), std::string::npos);
    EXPECT_NE(list.out.find("a "), std::string::npos);
    auto json = kvctl({ "list", "--json" });
    EXPECT_NE(json.out.find("{\"name\": \"a\", \"pid\": "), std::string::npos) << json.out;
    EXPECT_NE(json.out.find("\"keys\": 1, \"bytes\": 6, \"monitors\": 0, \"restart\": \"temporary\", \"keep\": false, \"restarts\": 0, \"last_exit\": \"\"}"), std::string::npos) << json.out;

    EXPECT_EQ(kvctl({ "delete", "a", "k" }).exit_code, 0);
    EXPECT_EQ(kvctl({ "delete", "a", "k" }).exit_code, 1);

    auto watcher = daemon_.monitor("b");
    EXPECT_EQ(kvctl({ "stop", "b" }).exit_code, 0);
    EXPECT_EQ(watcher.read_reply().text, "exited with status 0");
    EXPECT_EQ(kvctl({ "lookup", "b" }).exit_code, 1);
    EXPECT_EQ(kvctl({ "stop", "b" }).exit_code, 1);
}

TEST_F(Kvctl, ListJsonIsVersionedAndReadsAsJson)
{
    const std::string japan = "\xe6\x97\xa5\xe6\x9c\xac";
    auto created = daemon_.create(japan);
    const std::string odd = "quote\"back\\slash";
    auto odd_created = daemon_.create(odd);
    auto json = kvctl({ "list", "--json" });
    ASSERT_EQ(json.exit_code, 0) << json.err;
    EXPECT_EQ(json.out.rfind("{\n  \"version\": 1,\n  \"buckets\": [", 0), 0u) << json.out;

    // A real JSON parser reads it: the version, each bucket's name (UTF-8
    // and escapes intact) and segment, the fields the README documents.
    const std::string python = "/usr/bin/python3";
    KV_REQUIRE(run_program({ python, "-c", "import json" }).exit_code == 0, "Debian's python3 (/usr/bin/python3)");
    TemporaryDirectory scratch;
    const std::string path = scratch.path() + "/list.json";
    std::ofstream(path, std::ios::binary) << json.out;
    auto parsed = run_program({ python, "-c",
        "import json, sys\n"
        "d = json.load(open(sys.argv[1], encoding='utf-8'))\n"
        "print(d['version'])\n"
        "for b in sorted(d['buckets'], key=lambda b: b['id']):\n"
        "    print(sorted(b) == sorted(['name', 'pid', 'id', 'state', 'socket', 'segment', 'uptime_ms', 'keys', 'bytes', 'monitors', 'restart', 'keep', 'restarts', 'last_exit']))\n"
        "    sys.stdout.buffer.write((b['name'] + '|' + b['segment'] + '|' + b['socket'] + '\\n').encode('utf-8'))\n",
        path });
    ASSERT_EQ(parsed.exit_code, 0) << parsed.err;
    EXPECT_EQ(parsed.out, "1\nTrue\n" + japan + "|" + created.field("segment")->text + "|" + created.field("socket")->text
            + "\nTrue\n" + odd + "|" + odd_created.field("segment")->text + "|" + odd_created.field("socket")->text + "\n");
}

TEST_F(Kvctl, ListAlignsNamesByDisplayWidth)
{
    // 日本: 6 bytes, 4 columns. e + combining acute + x: 4 bytes, 2 columns. 🍎: 4 bytes, 2 columns.
    const std::vector<std::pair<std::string, std::size_t>> names = { { "ab", 2 }, { "\xe6\x97\xa5\xe6\x9c\xac", 4 },
        { "e\xcc\x81x", 2 }, { "\xf0\x9f\x8d\x8e", 2 } };
    for (const auto& [name, columns] : names)
        ASSERT_EQ(kvctl({ "create", name }).exit_code, 0) << name;
    auto list = kvctl({ "list" });
    ASSERT_EQ(list.exit_code, 0) << list.err;
    std::vector<std::string> lines;
    std::istringstream in(list.out);
    for (std::string line; std::getline(in, line);)
        lines.push_back(line);
    ASSERT_EQ(lines.size(), names.size() + 1) << list.out;
    // The STATE column starts at the same terminal column on every line: a
    // line's byte offset is its column plus the bytes its name has over its width.
    const auto state_column = lines[0].find(" STATE");
    for (const auto& [name, columns] : names) {
        auto line = std::find_if(lines.begin() + 1, lines.end(), [&](const std::string& l) { return l.rfind(name + " ", 0) == 0; });
        ASSERT_NE(line, lines.end()) << name << "\n" << list.out;
        EXPECT_EQ(line->find(" ready"), state_column + (name.size() - columns)) << list.out;
    }
}

TEST_F(Kvctl, MonitorOfABucketThatHasGoneExitsOne)
{
    auto pid = std::stoi(kvctl({ "create", "a" }).out);
    auto client = daemon_.monitor("a");
    kill_process(pid, SIGKILL);
    EXPECT_EQ(client.read_reply().text, "killed by SIGKILL");
    auto after = kvctl({ "monitor", "a" });
    EXPECT_EQ(after.exit_code, 1);
    EXPECT_EQ(after.err, "kvctl: no bucket named a\n");
}

class FullKvctl : public Kvctl {
protected:
    FullKvctl() : Kvctl({ "--bucket-size", "131072" }) {}
};

TEST_F(FullKvctl, FullBucketIsRefused)
{
    kvctl({ "create", "a" });
    auto result = kvctl({ "put", "a", "k", std::string(130000, 'x') });
    EXPECT_EQ(result.exit_code, 4);
    EXPECT_EQ(result.err.rfind("kvctl: unable to put k in bucket a: bucket is full", 0), 0u) << result.err;
}

class LimitedKvctl : public Kvctl {
protected:
    LimitedKvctl() : Kvctl({ "--max-buckets", "1" }) {}
};

TEST_F(LimitedKvctl, ARefusedCreateSaysWhatFailedOnce)
{
    ASSERT_EQ(kvctl({ "create", "one" }).exit_code, 0);
    auto two = kvctl({ "create", "two" });
    EXPECT_EQ(two.exit_code, 4);
    EXPECT_EQ(two.err, "kvctl: unable to create bucket two: limit of 1 buckets reached (--max-buckets)\n");
}

TEST_F(Kvctl, TimeoutGivesUpOnAStoppedBucketOrRegistryWithItsOwnExitCode)
{
    auto create = kvctl({ "create", "shopping" });
    ASSERT_EQ(create.exit_code, 0) << create.err;
    const auto bucket = std::stoll(create.out);
    ASSERT_EQ(kill_process(bucket, SIGSTOP), 0);
    auto put = kvctl({ "--timeout", "0.3", "put", "shopping", "milk", "1" });
    EXPECT_EQ(put.exit_code, 6);
    EXPECT_EQ(put.err.rfind("kvctl: unable to put milk in bucket shopping: timed out", 0), 0u) << put.err;
    EXPECT_EQ(std::count(put.err.begin(), put.err.end(), '\n'), 1) << put.err;
    ASSERT_EQ(kill_process(bucket, SIGCONT), 0);

    ASSERT_EQ(kill_process(daemon_.pid(), SIGSTOP), 0);
    auto stuck = kvctl({ "create", "other", "--timeout", "0.3" });
    ASSERT_EQ(kill_process(daemon_.pid(), SIGCONT), 0);
    EXPECT_EQ(stuck.exit_code, 6);
    EXPECT_EQ(stuck.err.rfind("kvctl: unable to create bucket other: timed out", 0), 0u) << stuck.err;
    // monitor waits forever by default, but not past a timeout it is given.
    ASSERT_EQ(kill_process(daemon_.pid(), SIGSTOP), 0);
    auto monitor = kvctl({ "--timeout", "0.3", "monitor", "shopping" });
    ASSERT_EQ(kill_process(daemon_.pid(), SIGCONT), 0);
    EXPECT_EQ(monitor.exit_code, 6) << monitor.err;

    EXPECT_EQ(kvctl({ "put", "shopping", "milk", "1" }).exit_code, 0);
    EXPECT_EQ(kvctl({ "get", "shopping", "milk" }).out, "1\n");
}

namespace {

// A kvctl command that blocks (monitor), run on a thread of its own so the
// test can act while it waits.
class Background {
public:
    template <typename Run>
    explicit Background(Run run) : thread_([this, run] { result_ = run(); })
    {
    }
    ~Background()
    {
        if (thread_.joinable())
            thread_.join();
    }
    ProgramResult& result()
    {
        thread_.join();
        return result_;
    }

private:
    ProgramResult result_;
    std::thread thread_;
};

// `text`'s lines, without their newlines.
std::vector<std::string> lines_of(const std::string& text)
{
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        lines.push_back(line);
    return lines;
}

// The line of a `kvctl list` or `kvctl history` table whose NAME is `name`, split on blanks.
std::vector<std::string> row_of(const std::string& table, const std::string& name, std::size_t name_column = 0)
{
    for (const auto& line : lines_of(table)) {
        std::istringstream in(line);
        std::vector<std::string> words;
        for (std::string word; in >> word;)
            words.push_back(word);
        if (words.size() > name_column && words[name_column] == name)
            return words;
    }
    return {};
}

// The words of `row` from `first` on, joined by one space: a column with spaces at a line's end.
std::string rest_of(const std::vector<std::string>& row, std::size_t first)
{
    std::string joined;
    for (std::size_t i = first; i < row.size(); ++i)
        joined += (joined.empty() ? "" : " ") + row[i];
    return joined;
}

} // namespace

TEST_F(Kvctl, CreateRestartPermanentComesBackUnderItsNameWithANewPid)
{
    // The README's supervision walkthrough.
    auto create = kvctl({ "create", "shopping", "--restart", "permanent" });
    ASSERT_EQ(create.exit_code, 0) << create.err;
    const auto pid = std::stoi(create.out);

    // kvctl monitor prints registryd's reply as it is, "restarting" included.
    Background monitor([&] { return kvctl({ "monitor", "shopping" }); });
    const auto deadline = std::chrono::steady_clock::now() + scaled(20s);
    while (daemon_.monitors_of("shopping") < 1)
        ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "kvctl monitor never registered";
    ASSERT_EQ(kill_process(pid, SIGKILL), 0);
    auto& monitored = monitor.result();
    EXPECT_EQ(monitored.exit_code, 0) << monitored.err;
    EXPECT_EQ(monitored.out, "bucket shopping killed by SIGKILL; restarting\n");

    // lookup right after the exit is heard of, while the name is out of the
    // name table: it waits for the new process instead of saying "no bucket".
    auto lookup = kvctl({ "lookup", "shopping" });
    ASSERT_EQ(lookup.exit_code, 0) << lookup.err;
    const auto new_pid = std::stoi(lookup.out);
    EXPECT_NE(new_pid, pid);
    auto children = children_of(daemon_.pid());
    ASSERT_EQ(children.size(), 1u);
    EXPECT_EQ(children[0].pid, new_pid);
    EXPECT_EQ(children[0].cmdline, "bucketd shopping");
    // A new process, an empty bucket: the data does not survive a restart.
    EXPECT_EQ(kvctl({ "put", "shopping", "milk", "1" }).exit_code, 0);

    // list: NAME PID ID STATE RESTART RESTARTS UPTIME_S KEYS BYTES SOCKET LAST_EXIT
    auto list = kvctl({ "list" });
    ASSERT_EQ(list.exit_code, 0) << list.err;
    EXPECT_EQ(row_of(list.out, "NAME"),
        (std::vector<std::string> { "NAME", "PID", "ID", "STATE", "RESTART", "RESTARTS", "UPTIME_S", "KEYS", "BYTES", "SOCKET", "LAST_EXIT" }));
    auto row = row_of(list.out, "shopping");
    ASSERT_EQ(row.size(), 13u) << list.out;
    EXPECT_EQ(row[1], std::to_string(new_pid));
    EXPECT_EQ(row[2], "2") << "a restart is a new id";
    EXPECT_EQ(row[3], "ready");
    EXPECT_EQ(row[4], "permanent");
    EXPECT_EQ(row[5], "1");
    EXPECT_EQ(rest_of(row, 10), "killed by SIGKILL");

    auto json = kvctl({ "list", "--json" });
    ASSERT_EQ(json.exit_code, 0) << json.err;
    EXPECT_NE(json.out.find("\"monitors\": 0, \"restart\": \"permanent\", \"keep\": false, \"restarts\": 1, \"last_exit\": \"killed by SIGKILL\"}"),
        std::string::npos) << json.out;

    // history: ENDED NAME PID ID LIVED_S RESTART RESTARTS REASON OUTCOME
    auto history = kvctl({ "history" });
    ASSERT_EQ(history.exit_code, 0) << history.err;
    auto exit = row_of(history.out, "shopping", 1);
    ASSERT_EQ(exit.size(), 11u) << history.out;
    EXPECT_EQ(exit[2], std::to_string(pid));
    EXPECT_EQ(exit[3], "1");
    EXPECT_EQ(exit[5], "permanent");
    EXPECT_EQ(exit[6], "0") << "restarts before this exit";
    EXPECT_EQ(rest_of(exit, 7), "killed by SIGKILL restarting");
    // OUTCOME starts where its heading does.
    EXPECT_EQ(lines_of(history.out).at(1).find("restarting"), lines_of(history.out)[0].find("OUTCOME")) << history.out;
    auto history_json = kvctl({ "history", "--json" });
    ASSERT_EQ(history_json.exit_code, 0) << history_json.err;
    EXPECT_NE(history_json.out.find("\"reason\": \"killed by SIGKILL\""), std::string::npos) << history_json.out;
    EXPECT_NE(history_json.out.find(", \"restart\": \"permanent\", \"restarts\": 0, \"outcome\": \"restarting\"}"), std::string::npos)
        << history_json.out;
}

TEST_F(Kvctl, CreateKeepKeepsTheDataAcrossARestart)
{
    auto refused = kvctl({ "create", "cart", "--keep" });
    EXPECT_EQ(refused.exit_code, 5) << "KEEP with the default policy, temporary, which never restarts";
    EXPECT_NE(refused.err.find("KEEP needs a restart policy that restarts"), std::string::npos) << refused.err;

    auto create = kvctl({ "create", "cart", "--restart", "permanent", "--keep" });
    ASSERT_EQ(create.exit_code, 0) << create.err;
    ASSERT_EQ(kvctl({ "put", "cart", "milk", "2" }).exit_code, 0);
    auto monitor = daemon_.monitor("cart");
    ASSERT_EQ(kill_process(std::stoi(create.out), SIGKILL), 0);
    ASSERT_EQ(monitor.read_reply().text, "killed by SIGKILL; restarting");
    auto get = kvctl({ "get", "cart", "milk" });
    EXPECT_EQ(get.exit_code, 0) << get.err;
    EXPECT_EQ(get.out, "2\n") << "the restarted bucket adopted its table";
    EXPECT_NE(daemon_.log().find("bucket cart: data kept: 1 key"), std::string::npos) << daemon_.log();

    auto row = row_of(kvctl({ "list" }).out, "cart");
    ASSERT_GE(row.size(), 5u);
    EXPECT_EQ(row[4], "permanent+keep");
    EXPECT_NE(kvctl({ "list", "--json" }).out.find("\"restart\": \"permanent\", \"keep\": true"), std::string::npos);
}

TEST_F(Kvctl, CreateRestartTakesAPolicyInAnyCaseAndRefusesOtherWords)
{
    auto transient = kvctl({ "create", "a", "--restart", "TRANSIENT" });
    ASSERT_EQ(transient.exit_code, 0) << transient.err;
    ASSERT_EQ(kvctl({ "create", "b" }).exit_code, 0);
    auto list = kvctl({ "list" });
    EXPECT_EQ(row_of(list.out, "a").at(4), "transient") << list.out;
    EXPECT_EQ(row_of(list.out, "b").at(4), "temporary") << "registryd's default, --restart temporary";
    EXPECT_EQ(rest_of(row_of(list.out, "a"), 10), "-") << "never restarted: no last exit";

    // A word that is no policy is a usage error that names the three.
    auto bogus = kvctl({ "create", "c", "--restart", "forever" });
    EXPECT_EQ(bogus.exit_code, 2);
    EXPECT_EQ(bogus.err, "kvctl: --restart: invalid restart policy forever: expected temporary|transient|permanent (see kvctl --help)\n");
    EXPECT_EQ(kvctl({ "lookup", "c" }).exit_code, 1) << "nothing was sent";

    // The same name again: the same bucket with the same policy, or with
    // none named; registryd's refusal, once, with another.
    auto again = kvctl({ "create", "a", "--restart", "transient" });
    EXPECT_EQ(again.exit_code, 0) << again.err;
    EXPECT_EQ(again.out, transient.out);
    EXPECT_EQ(kvctl({ "create", "a" }).out, transient.out);
    auto other = kvctl({ "create", "a", "--restart", "permanent" });
    EXPECT_EQ(other.exit_code, 5);
    EXPECT_EQ(other.err, "kvctl: unable to create bucket a: bucket a exists with restart policy transient; "
                         "STOP it to create it with another\n");

    auto help = kvctl({ "create", "--help" });
    EXPECT_NE(help.out.find("--restart POLICY:{temporary,transient,permanent}"), std::string::npos) << help.out;
}

class DelayedRestartKvctl : public Kvctl {
protected:
    DelayedRestartKvctl() : Kvctl({ "--restart-delay-ms", "3600000" }) {}
};

TEST_F(DelayedRestartKvctl, ListShowsARestartingBucketAndStopCancelsTheRestart)
{
    const auto pid = std::stoi(kvctl({ "create", "a", "--restart", "permanent" }).out);
    auto watcher = daemon_.monitor("a");
    ASSERT_EQ(kill_process(pid, SIGKILL), 0);
    ASSERT_EQ(watcher.read_reply().text, "killed by SIGKILL; restarting");

    // Waiting out its delay, with no process: no pid, uptime or socket to show.
    auto list = kvctl({ "list" });
    ASSERT_EQ(list.exit_code, 0) << list.err;
    auto row = row_of(list.out, "a");
    ASSERT_EQ(row.size(), 13u) << list.out;
    EXPECT_EQ(row[1], "-");
    EXPECT_EQ(row[6], "-");
    EXPECT_EQ(row[9], "-");
    EXPECT_EQ(row[3], "restarting");
    EXPECT_EQ(row[4], "permanent");
    EXPECT_EQ(row[5], "1");
    EXPECT_EQ(rest_of(row, 10), "killed by SIGKILL");
    auto json = kvctl({ "list", "--json" });
    EXPECT_NE(json.out.find("\"pid\": -1, \"id\": 2, \"state\": \"restarting\", \"socket\": \"\", \"segment\": \"\""),
        std::string::npos) << json.out;

    Background monitor([&] { return kvctl({ "monitor", "a" }); });
    const auto deadline = std::chrono::steady_clock::now() + scaled(20s);
    while (daemon_.monitors_of("a") < 1)
        ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "kvctl monitor never registered";
    auto stop = kvctl({ "stop", "a" });
    EXPECT_EQ(stop.exit_code, 0) << stop.err;
    auto& monitored = monitor.result();
    EXPECT_EQ(monitored.exit_code, 0) << monitored.err;
    EXPECT_EQ(monitored.out, "bucket a stopped before its restart\n");
    EXPECT_EQ(kvctl({ "lookup", "a" }).exit_code, 1);
    EXPECT_TRUE(children_of(daemon_.pid()).empty());
}

class GivingUpKvctl : public Kvctl {
protected:
    // One restart allowed in an hour: the second exit is one too many,
    // however slow the machine.
    GivingUpKvctl() : Kvctl({ "--max-restarts", "1", "--max-seconds", "3600" }) {}
};

TEST_F(GivingUpKvctl, MonitorAndHistorySayWhyABucketWasGivenUp)
{
    auto first = kvctl({ "create", "crashy", "--restart", "transient" });
    ASSERT_EQ(first.exit_code, 0) << first.err;
    auto watcher = daemon_.monitor("crashy");
    ASSERT_EQ(kill_process(std::stoi(first.out), SIGKILL), 0);
    ASSERT_EQ(watcher.read_reply().text, "killed by SIGKILL; restarting");
    auto second = kvctl({ "lookup", "crashy" });
    ASSERT_EQ(second.exit_code, 0) << second.err;

    Background monitor([&] { return kvctl({ "monitor", "crashy" }); });
    const auto deadline = std::chrono::steady_clock::now() + scaled(20s);
    while (daemon_.monitors_of("crashy") < 1)
        ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "kvctl monitor never registered";
    ASSERT_EQ(kill_process(std::stoi(second.out), SIGKILL), 0);
    auto& monitored = monitor.result();
    EXPECT_EQ(monitored.exit_code, 0) << monitored.err;
    EXPECT_EQ(monitored.out, "bucket crashy gave up after 2 restarts in 3600 s; last exit: killed by SIGKILL\n");
    EXPECT_EQ(kvctl({ "lookup", "crashy" }).exit_code, 1) << "the name is gone";

    auto history = kvctl({ "history" });
    ASSERT_EQ(history.exit_code, 0) << history.err;
    auto lines = lines_of(history.out);
    ASSERT_EQ(lines.size(), 3u) << history.out;
    const auto outcome = lines[0].find("OUTCOME");
    EXPECT_EQ(lines[1].substr(outcome), "gave up after 2 restarts in 3600 s") << history.out;
    EXPECT_EQ(lines[2].substr(outcome), "restarting") << history.out;
    EXPECT_EQ(rest_of(row_of(lines[1], "crashy", 1), 5), "transient 1 killed by SIGKILL gave up after 2 restarts in 3600 s");
}
