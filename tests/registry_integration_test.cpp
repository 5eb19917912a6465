// The guide's registry tests, ported to processes: a real registryd in a
// temporary run dir, real bucketd children, checked the way a user would
// check them (replies, ps, /dev/shm, the socket folder).
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "daemon_fixture.h"
#include "run_dir.h"
#include "system_error.h"

using namespace kv::test;
using kv::resp::Value;

namespace {

void expect_nothing_left_of(const RegistryDaemon& daemon, const Value& bucket)
{
    auto segment = bucket.field("segment")->text;
    EXPECT_EQ(segment.rfind(daemon.segment_prefix(), 0), 0u) << segment;
    EXPECT_EQ(::shm_unlink(segment.c_str()), -1) << "segment " << segment << " was left behind";
    struct stat info;
    EXPECT_EQ(::stat(bucket.field("socket")->text.c_str(), &info), -1) << "socket was left behind";
}

} // namespace

TEST(Registry, SpawnsBucketsAsChildProcessesNamedInPs)
{
    RegistryDaemon daemon;
    EXPECT_EQ(daemon.call({ "LOOKUP", "shopping" }).text, "NOTFOUND no bucket named shopping");
    auto bucket = daemon.create("shopping");
    auto children = children_of(daemon.pid());
    ASSERT_EQ(children.size(), 1u);
    EXPECT_EQ(children[0].pid, pid_of(bucket));
    EXPECT_EQ(children[0].cmdline, "bucketd shopping");
    auto lookup = daemon.call({ "LOOKUP", "shopping" });
    EXPECT_EQ(pid_of(lookup), pid_of(bucket));
    EXPECT_EQ(lookup.field("socket")->text, daemon.run_dir() + "/buckets/" + kv::bucket_socket_name(daemon.instance(), 1));
}

TEST(Registry, BucketAnswersImmediatelyAfterCreateReplied)
{
    RegistryDaemon daemon;
    for (int i = 0; i < 20; ++i) {
        auto bucket = daemon.create("b" + std::to_string(i));
        auto client = kv::Client::connect(bucket.field("socket")->text);
        EXPECT_EQ(client.call({ "SET", "k", "v" }).text, "OK");
        EXPECT_EQ(client.call({ "GET", "k" }).text, "v");
    }
}

TEST(Registry, CreateOfExistingNameReturnsTheExistingBucket)
{
    RegistryDaemon daemon;
    auto first = daemon.create("shopping");
    auto second = daemon.create("shopping");
    EXPECT_EQ(pid_of(first), pid_of(second));
    EXPECT_EQ(children_of(daemon.pid()).size(), 1u);
}

TEST(Registry, StopRemovesBucketAndRepliesAfterTheNameIsGone)
{
    RegistryDaemon daemon;
    auto bucket = daemon.create("shopping");
    auto watcher = daemon.monitor("shopping");
    EXPECT_EQ(daemon.call({ "STOP", "shopping" }).text, "OK");
    EXPECT_EQ(daemon.call({ "LOOKUP", "shopping" }).text, "NOTFOUND no bucket named shopping");
    EXPECT_EQ(watcher.read_reply().text, "exited with status 0");
    EXPECT_TRUE(children_of(daemon.pid()).empty());
    expect_nothing_left_of(daemon, bucket);
}

struct Crash {
    const char* label;
    std::vector<std::string> debug_command; // empty: SIGKILL from outside
    std::string expected_reason_prefix;
};

class RegistryCrash : public ::testing::TestWithParam<Crash> {};

TEST_P(RegistryCrash, RemovesBucketOnCrashAndReportsTheReason)
{
    const Crash& crash = GetParam();
    RegistryDaemon daemon;
    auto bucket = daemon.create("shopping");
    auto bucket_client = kv::Client::connect(bucket.field("socket")->text);
    set_receive_timeout(bucket_client, 20s);
    EXPECT_EQ(bucket_client.call({ "SET", "milk", "1" }).text, "OK");
    auto watcher = daemon.monitor("shopping");

    if (crash.debug_command.empty()) {
        ASSERT_EQ(kill_process(pid_of(bucket), SIGKILL), 0);
    } else {
        // The bucket dies mid-request: its client gets a clear error, not a hang.
        EXPECT_THROW(bucket_client.call(crash.debug_command), kv::ConnectionClosed);
    }
    auto reason = watcher.read_reply();
    EXPECT_EQ(reason.text.rfind(crash.expected_reason_prefix, 0), 0u) << reason.text;

    // Once registryd reported the exit, nobody sees the name, and nothing is left.
    EXPECT_EQ(daemon.call({ "LOOKUP", "shopping" }).text, "NOTFOUND no bucket named shopping");
    expect_no_zombie(daemon.pid());
    EXPECT_TRUE(children_of(daemon.pid()).empty());
    expect_nothing_left_of(daemon, bucket);
    EXPECT_THROW(kv::Client::connect(bucket.field("socket")->text), kv::SystemError);
    EXPECT_NE(daemon.log().find("bucket shopping (pid " + std::to_string(pid_of(bucket)) + ", id 1) " + crash.expected_reason_prefix),
        std::string::npos) << daemon.log();

    // And the registry carries on: the name can be created again.
    auto again = daemon.create("shopping");
    EXPECT_NE(pid_of(again), pid_of(bucket));
}

void PrintTo(const Crash& crash, std::ostream* out) { *out << crash.label; }

INSTANTIATE_TEST_SUITE_P(Reasons, RegistryCrash,
    ::testing::Values(Crash { "SIGKILL", {}, "killed by SIGKILL" },
        Crash { "SIGSEGV", { "DEBUG", "SEGFAULT" }, "killed by SIGSEGV" },
        Crash { "exit3", { "DEBUG", "EXIT", "3" }, "exited with status 3" }),
    [](const auto& info) { return std::string(info.param.label); });

TEST(Registry, ClientOfKilledBucketGetsAnErrorNotAHang)
{
    RegistryDaemon daemon;
    auto bucket = daemon.create("shopping");
    auto client = kv::Client::connect(bucket.field("socket")->text);
    set_receive_timeout(client, 20s);
    EXPECT_EQ(client.call({ "PING" }).text, "PONG");
    auto watcher = daemon.monitor("shopping");
    ASSERT_EQ(kill_process(pid_of(bucket), SIGKILL), 0);
    watcher.read_reply();
    EXPECT_THROW(client.call({ "GET", "milk" }), kv::ConnectionClosed);
}

TEST(Registry, SurvivesHundredBucketCrashesInARow)
{
    RegistryDaemon daemon;
    // Counted while registryd holds one connection and no other.
    auto control = daemon.connect();
    ASSERT_EQ(wait_for_connections(daemon.pid(), 1), 1u);
    auto baseline = open_descriptor_count(daemon.pid());
    for (int i = 0; i < 100; ++i) {
        std::string name = "crash" + std::to_string(i);
        auto bucket = daemon.create(name);
        auto watcher = daemon.monitor(name);
        ASSERT_EQ(kill_process(pid_of(bucket), SIGKILL), 0);
        ASSERT_EQ(watcher.read_reply().text, "killed by SIGKILL");
    }
    EXPECT_EQ(daemon.call({ "PING" }).text, "PONG");
    EXPECT_TRUE(daemon.call({ "LIST" }).elements.empty());
    EXPECT_TRUE(children_of(daemon.pid()).empty());
    EXPECT_TRUE(files_in(daemon.run_dir() + "/buckets").empty());
    EXPECT_TRUE(bucket_segments(daemon.run_dir()).empty());
    ASSERT_EQ(wait_for_connections(daemon.pid(), 1), 1u) << "registryd still holds connections of clients that hung up";
    EXPECT_EQ(open_descriptor_count(daemon.pid()), baseline);
}

TEST(Registry, ShutdownStopsEveryBucketAndLeavesNothing)
{
    RegistryDaemon daemon;
    std::vector<kv::UniqueFd> bucket_pidfds;
    for (int i = 0; i < 5; ++i) {
        auto bucket = daemon.create("b" + std::to_string(i));
        kv::Client::connect(bucket.field("socket")->text).call({ "SET", "k", "v" });
        bucket_pidfds.push_back(open_pidfd(static_cast<pid_t>(pid_of(bucket))));
    }
    auto run_dir = daemon.run_dir();
    auto exit = daemon.stop(SIGTERM);
    EXPECT_EQ(exit.code, CLD_EXITED);
    EXPECT_EQ(exit.status, 0);
    for (auto& pidfd : bucket_pidfds)
        EXPECT_TRUE(wait_readable(pidfd.get(), 0ms)) << "a bucket outlived registryd";
    EXPECT_TRUE(segments_with_prefix(daemon.segment_prefix()).empty());
    EXPECT_EQ(instance_of(run_dir), "") << "a clean shutdown leaves no record for a successor to sweep";
    EXPECT_TRUE(files_in(run_dir + "/buckets").empty());
    struct stat info;
    EXPECT_EQ(::stat(kv::registry_socket_path(run_dir).c_str(), &info), -1);
}

TEST(Registry, KillingRegistrydTakesItsBucketsDownAndTheNextOneCleansUp)
{
    TemporaryDirectory directory;
    std::vector<kv::UniqueFd> bucket_pidfds;
    std::string dead_instance;
    {
        RegistryDaemon daemon({}, directory.path());
        for (int i = 0; i < 3; ++i)
            bucket_pidfds.push_back(open_pidfd(static_cast<pid_t>(pid_of(daemon.create("b" + std::to_string(i))))));
        dead_instance = daemon.instance();
        daemon.stop(SIGKILL);
    }
    for (auto& pidfd : bucket_pidfds)
        EXPECT_TRUE(wait_readable(pidfd.get(), 1s)) << "a bucket outlived its registryd by more than a second";

    // Leftovers as a crash could leave them: a segment and a socket of the
    // dead instance; beside them a file that is no socket of ours.
    auto stale_segment = kv::segment_prefix(dead_instance) + "b7.0123456789abcdef";
    int fd = ::shm_open(stale_segment.c_str(), O_CREAT | O_RDWR, 0600);
    ASSERT_GE(fd, 0);
    ::close(fd);
    make_socket_file(directory.path() + "/buckets/" + kv::bucket_socket_name(dead_instance, 7));
    std::ofstream(directory.path() + "/buckets/" + kv::bucket_socket_name(dead_instance, 8)) << "not a socket";

    RegistryDaemon next({}, directory.path());
    EXPECT_TRUE(segments_with_prefix(kv::segment_prefix(dead_instance)).empty());
    EXPECT_EQ(files_in(directory.path() + "/buckets"), std::vector<std::string> { kv::bucket_socket_name(dead_instance, 8) })
        << "only the dead instance's socket may go; a file that is no socket stays";
    EXPECT_EQ(next.call({ "PING" }).text, "PONG");
    EXPECT_TRUE(next.call({ "LIST" }).elements.empty());
}

TEST(Registry, SecondRegistrydOnTheSameRunDirRefusesAndChangesNothing)
{
    RegistryDaemon daemon({ "--allow-uid", "65534" });
    struct stat before;
    ASSERT_EQ(::stat(daemon.run_dir().c_str(), &before), 0);
    auto result = run_program({ binary("registryd"), "--run-dir", daemon.run_dir() });
    struct stat after;
    ASSERT_EQ(::stat(daemon.run_dir().c_str(), &after), 0);
    EXPECT_EQ(after.st_mode, before.st_mode) << "the refused one changed the running one's run dir";
    EXPECT_EQ(after.st_mode & 0777, 0711u);
    EXPECT_EQ(result.exit_code, 1);
    EXPECT_NE(result.err.find("another registryd (pid " + std::to_string(daemon.pid()) + ") is running there"), std::string::npos)
        << result.err;
    EXPECT_EQ(daemon.call({ "PING" }).text, "PONG");
}

TEST(Registry, ListShowsEveryBucketWithItsFigures)
{
    using std::chrono::duration_cast;
    using std::chrono::milliseconds;
    using std::chrono::steady_clock;
    RegistryDaemon daemon;
    const auto before_create = steady_clock::now();
    auto a = daemon.create("a");
    const auto created = steady_clock::now();
    daemon.create("b");
    kv::Client::connect(a.field("socket")->text).call({ "SET", "key", "value" });
    // Let some time pass, so that an uptime stuck at 0 shows: the uptime is
    // what is measured here, nothing waits on this sleep.
    std::this_thread::sleep_for(50ms);
    const auto before_list = steady_clock::now();
    auto list = daemon.call({ "LIST" });
    const auto after_list = steady_clock::now();
    ASSERT_EQ(list.elements.size(), 2u);
    const auto& first = list.elements[0];
    EXPECT_EQ(first.field("name")->text, "a");
    EXPECT_EQ(first.field("pid")->integer, pid_of(a));
    EXPECT_EQ(first.field("keys")->integer, 1);
    EXPECT_EQ(first.field("bytes")->integer, 8);
    EXPECT_EQ(first.field("state")->text, "ready");
    // uptime_ms is the time since the bucket started, in milliseconds: at
    // least the time from CREATE's reply to LIST, at most the time from
    // CREATE to LIST's reply.
    const auto uptime = first.field("uptime_ms")->integer;
    EXPECT_GE(uptime, duration_cast<milliseconds>(before_list - created).count());
    EXPECT_LE(uptime, duration_cast<milliseconds>(after_list - before_create).count() + 1);
    EXPECT_EQ(list.elements[1].field("keys")->integer, 0);
    EXPECT_LE(list.elements[1].field("uptime_ms")->integer, uptime) << "b started after a";
}

TEST(Registry, UnknownVerbAndWrongArityGetAnErrorAndTheConnectionStays)
{
    RegistryDaemon daemon;
    auto client = daemon.connect();
    EXPECT_EQ(client.call({ "FROBNICATE" }).text, "ERR unknown command 'FROBNICATE', with args beginning with: ");
    // As Redis 7 words it: up to 128 bytes of the arguments, each cut at a NUL, CR and LF as spaces.
    EXPECT_EQ(client.call({ "FROB", std::string("a\0b", 3), "c\r\nd", std::string(200, 'x') }).text,
        "ERR unknown command 'FROB', with args beginning with: 'a' 'c  d' '" + std::string(128 - 11, 'x') + "' ");
    EXPECT_EQ(client.call({ "CREATE" }).text, "ERR wrong number of arguments for 'create' command");
    EXPECT_EQ(client.call({ "lookup", "a", "b" }).text, "ERR wrong number of arguments for 'lookup' command");
    EXPECT_EQ(client.call({ "PING", "a", "b" }).text, "ERR wrong number of arguments for 'ping' command");
    EXPECT_EQ(client.call({ "ping", "echo" }).text, "echo");
    client.send_raw("PING\r\n");
    EXPECT_EQ(client.read_reply().text, "PONG");
}

TEST(Registry, RefusesInvalidNamesAndKeepsOddOnesAsData)
{
    RegistryDaemon daemon;
    for (const std::string& name : { std::string(), std::string(256, 'x'), std::string("a\0b", 3), std::string("a\nb") }) {
        auto reply = daemon.call({ "CREATE", name });
        EXPECT_TRUE(reply.is_error());
        EXPECT_EQ(reply.text.rfind("INVALID invalid bucket name: ", 0), 0u) << reply.text;
    }
    auto odd = daemon.create("../../etc/passwd");
    EXPECT_EQ(odd.field("socket")->text, daemon.run_dir() + "/buckets/" + kv::bucket_socket_name(daemon.instance(), 1));
    auto children = children_of(daemon.pid());
    ASSERT_EQ(children.size(), 1u);
    EXPECT_EQ(children[0].cmdline, "bucketd ../../etc/passwd");
    auto longest = daemon.create(std::string(255, 'n'));
    EXPECT_EQ(longest.field("name")->text, std::string(255, 'n'));
}

TEST(Registry, NamesAreUtf8TextAndAnythingElseIsInvalid)
{
    RegistryDaemon daemon;
    // Invalid bytes, an overlong '/', a surrogate, past U+10FFFF, a C1 control (CSI).
    for (const std::string& name : { std::string("caf\xe9"), std::string("\xc0\xaf"), std::string("\xed\xa0\x80"),
             std::string("\xf4\x90\x80\x80"), std::string("\xc2\x9b" "2J") }) {
        auto reply = daemon.call({ "CREATE", name });
        EXPECT_TRUE(reply.is_error());
        EXPECT_EQ(reply.text.rfind("INVALID invalid bucket name: a bucket name must ", 0), 0u) << reply.text;
    }
    EXPECT_TRUE(children_of(daemon.pid()).empty()); // nothing was started for them
    EXPECT_EQ(daemon.call({ "LIST" }).elements.size(), 0u);

    // Multi-byte names are names like any other, shown as they are.
    const std::string japan = "\xe6\x97\xa5\xe6\x9c\xac", apple = "\xf0\x9f\x8d\x8e";
    EXPECT_EQ(daemon.create(japan).field("name")->text, japan);
    EXPECT_EQ(daemon.create(apple).field("name")->text, apple);
    std::set<std::string> shown;
    for (const auto& child : children_of(daemon.pid()))
        shown.insert(child.cmdline);
    EXPECT_EQ(shown, (std::set<std::string> { "bucketd " + japan, "bucketd " + apple }));
}

TEST(Registry, RefusesCreatePastMaxBuckets)
{
    RegistryDaemon daemon({ "--max-buckets", "2" });
    daemon.create("a");
    daemon.create("b");
    auto reply = daemon.call({ "CREATE", "c" });
    EXPECT_EQ(reply.text, "LIMIT unable to create bucket c: limit of 2 buckets reached (--max-buckets)");
    EXPECT_EQ(children_of(daemon.pid()).size(), 2u);
    daemon.call({ "STOP", "a" });
    daemon.create("c");
}

TEST(Registry, MonitorOfUnknownBucketIsNotFound)
{
    RegistryDaemon daemon;
    EXPECT_EQ(daemon.call({ "MONITOR", "nope" }).text, "NOTFOUND no bucket named nope");
    EXPECT_EQ(daemon.call({ "STOP", "nope" }).text, "NOTFOUND no bucket named nope");
}

TEST(Registry, ExecFailureIsACreateErrorAndLeavesNoZombie)
{
    TemporaryDirectory scripts;
    auto broken = write_script(scripts, "bucketd", "#!/nonexistent/interpreter\n");
    RegistryDaemon daemon({ "--bucketd", broken });
    auto reply = daemon.call({ "CREATE", "a" });
    ASSERT_TRUE(reply.is_error());
    EXPECT_EQ(reply.text.rfind("ERR unable to create bucket a: unable to start " + broken, 0), 0u) << reply.text;
    EXPECT_TRUE(children_of(daemon.pid()).empty());
    EXPECT_EQ(daemon.call({ "LOOKUP", "a" }).text, "NOTFOUND no bucket named a");
}

TEST(Registry, BucketThatNeverBecomesReadyIsKilledAndCreateSaysSo)
{
    TemporaryDirectory scripts;
    auto silent = write_script(scripts, "bucketd", "#!/bin/sh\nexec sleep 60\n");
    RegistryDaemon daemon({ "--bucketd", silent, "--ready-timeout-ms", "200" });
    auto reply = daemon.call({ "CREATE", "a" });
    ASSERT_TRUE(reply.is_error());
    EXPECT_EQ(reply.text, "ERR bucket a did not become ready within 200 ms; killed by SIGKILL before it was ready");
    EXPECT_TRUE(children_of(daemon.pid()).empty());
}

TEST(Registry, BucketThatIgnoresSigtermIsKilledAfterTheGracePeriod)
{
    TemporaryDirectory scripts;
    // Ignored signals survive exec: this "bucket" says it is ready, then ignores SIGTERM.
    auto stubborn = write_script(scripts, "bucketd", "#!/bin/bash\ntrap '' TERM\necho >&$KV_NOTIFY_FD\nexec sleep 60\n");
    RegistryDaemon daemon({ "--bucketd", stubborn, "--stop-grace-ms", "100" });
    daemon.create("a");
    auto watcher = daemon.monitor("a");
    EXPECT_EQ(daemon.call({ "STOP", "a" }).text, "OK");
    EXPECT_EQ(watcher.read_reply().text, "killed by SIGKILL");
    EXPECT_TRUE(children_of(daemon.pid()).empty());
}

namespace {

// Waits until registryd's log contains `text`; false after `timeout`. The
// log is the only place a signal that changes nothing leaves a trace.
bool wait_for_log(const RegistryDaemon& daemon, const std::string& text, std::chrono::milliseconds timeout = 10s)
{
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (daemon.log().find(text) == std::string::npos) {
        if (std::chrono::steady_clock::now() > deadline)
            return false;
        std::this_thread::yield();
    }
    return true;
}

pid_t pid_in_file(const std::string& path)
{
    std::ifstream file(path);
    pid_t pid = 0;
    file >> pid;
    return pid;
}

} // namespace

TEST(Registry, ADescendantHoldingTheReadinessPipeCannotWedgeCreate)
{
    TemporaryDirectory scripts;
    // The "bucket" starts a child that inherits its readiness pipe, then exits 3.
    auto wedging = write_script(scripts, "bucketd",
        "#!/bin/sh\nsleep 300 &\necho $! > " + scripts.path() + "/descendant\nexit 3\n");
    RegistryDaemon daemon({ "--bucketd", wedging, "--ready-timeout-ms", "60000" });
    auto reply = daemon.call({ "CREATE", "a" });
    ASSERT_TRUE(reply.is_error());
    EXPECT_EQ(reply.text, "ERR bucket a exited with status 3 before it was ready");
    EXPECT_TRUE(daemon.call({ "LIST" }).elements.empty()) << "a reaped pid is still listed";
    EXPECT_EQ(daemon.call({ "LOOKUP", "a" }).text, "NOTFOUND no bucket named a");
    auto descendant = open_pidfd(pid_in_file(scripts.path() + "/descendant"));
    EXPECT_TRUE(!descendant || wait_readable(descendant.get(), 5s)) << "the bucket's process group was not killed";
    EXPECT_TRUE(children_of(daemon.pid()).empty());
}

TEST(Registry, StopAndShutdownFinishWithinTheGracePeriodWhateverDescendantsDo)
{
    TemporaryDirectory scripts;
    // A real bucket, preceded by a descendant that holds the readiness pipe
    // and ignores SIGTERM.
    auto bucketd = write_script(scripts, "bucketd",
        "#!/bin/sh\n(trap '' TERM; exec sleep 300) &\necho $! > " + scripts.path() + "/descendant-$1\nexec "
            + binary("bucketd") + " \"$@\"\n");
    RegistryDaemon daemon({ "--bucketd", bucketd, "--stop-grace-ms", "500" });
    daemon.create("a");
    daemon.create("b");
    auto descendant_a = open_pidfd(pid_in_file(scripts.path() + "/descendant-a"));
    auto descendant_b = open_pidfd(pid_in_file(scripts.path() + "/descendant-b"));
    ASSERT_TRUE(descendant_a && descendant_b);

    EXPECT_EQ(daemon.call({ "STOP", "a" }).text, "OK");
    EXPECT_TRUE(wait_readable(descendant_a.get(), 5s)) << "STOP left the bucket's descendant running";
    auto list = daemon.call({ "LIST" });
    ASSERT_EQ(list.elements.size(), 1u);
    EXPECT_EQ(list.elements[0].field("name")->text, "b");

    auto exit = daemon.stop(SIGTERM);
    EXPECT_EQ(exit.code, CLD_EXITED);
    EXPECT_EQ(exit.status, 0);
    EXPECT_TRUE(wait_readable(descendant_b.get(), 5s)) << "shutdown left a bucket's descendant running";
}

TEST(Registry, SignalsUsersAndTerminalsSendNeverEndItUncleanly)
{
    RegistryDaemon daemon;
    auto bucket = daemon.create("a");
    auto bucket_pidfd = open_pidfd(static_cast<pid_t>(pid_of(bucket)));
    for (int signal : { SIGHUP, SIGUSR1, SIGUSR2, SIGALRM, SIGPIPE }) {
        ASSERT_EQ(kill_process(daemon.pid(), signal), 0);
        if (signal != SIGPIPE) {
            EXPECT_TRUE(wait_for_log(daemon, "received " + kv::test::signal_text(signal) + "; ignored")) << daemon.log();
        }
        EXPECT_EQ(daemon.call({ "PING" }).text, "PONG");
    }
    EXPECT_EQ(daemon.call({ "LOOKUP", "a" }).field("pid")->integer, pid_of(bucket));
    EXPECT_FALSE(wait_readable(bucket_pidfd.get(), 0ms));

    // SIGQUIT (Ctrl-\) stops it like SIGTERM: cleanly.
    auto segment_prefix = daemon.segment_prefix();
    auto run_dir = daemon.run_dir();
    auto exit = daemon.stop(SIGQUIT);
    EXPECT_EQ(exit.code, CLD_EXITED);
    EXPECT_EQ(exit.status, 0);
    EXPECT_TRUE(wait_readable(bucket_pidfd.get(), 0ms));
    EXPECT_TRUE(segments_with_prefix(segment_prefix).empty());
    struct stat info;
    EXPECT_EQ(::stat(kv::registry_socket_path(run_dir).c_str(), &info), -1);
}
