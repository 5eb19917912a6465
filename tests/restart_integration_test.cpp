// Buckets that registryd restarts (CREATE name RESTART policy, --restart), as
// a user would doubt them: a real registryd, real buckets killed with
// signals or ended with DEBUG, checked by what a user sees (replies, ps, the
// log, /dev/shm, the socket folder, a direct reader, kvctl). The pure rules
// (policy, intensity, delay) are unit-tested in supervision_test.cpp.
//
// A LOOKUP that registryd serves before it has seen an exit still returns
// the old record; one it serves while the bucket is restarting waits for the
// new one. So a test learns of a restart from a MONITOR reply, or asks again
// until the pid changes, and never sleeps.
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <thread>

#include <gtest/gtest.h>

#include "bucket_record.h"
#include "daemon_fixture.h"
#include "exit_record.h"
#include "name_table.h"
#include "run_dir.h"
#include "shared_table.h"
#include "system_error.h"

using namespace kv::test;
using kv::resp::Value;
using Clock = std::chrono::steady_clock;

namespace {

long long id_of(const Value& bucket) { return bucket.field("id")->integer; }

Value create_with(const RegistryDaemon& daemon, const std::string& name, const std::string& policy)
{
    auto reply = daemon.call({ "CREATE", name, "RESTART", policy });
    if (reply.is_error())
        throw std::runtime_error("CREATE " + name + " RESTART " + policy + " failed: " + reply.text);
    return reply;
}

// Sends `signal` to `pid` and waits until the process has exited.
void kill_and_wait(long long pid, int signal = SIGKILL)
{
    auto pidfd = open_pidfd(static_cast<pid_t>(pid));
    ASSERT_TRUE(pidfd) << "no process " << pid;
    ASSERT_EQ(kill_process(pid, signal), 0);
    ASSERT_TRUE(wait_readable(pidfd.get(), scaled(10s))) << "pid " << pid << " outlived " << signal_text(signal);
}

// LOOKUP `name` until it names a process other than `old_pid` (or answers
// an error): a LOOKUP served before registryd saw the exit returns the old
// record, one served during the restart waits for the new bucket.
Value restarted(const RegistryDaemon& daemon, const std::string& name, long long old_pid)
{
    const auto deadline = Clock::now() + scaled(20s);
    for (;;) {
        auto reply = daemon.call({ "LOOKUP", name });
        if (reply.is_error() || pid_of(reply) != old_pid)
            return reply;
        if (Clock::now() > deadline)
            throw std::runtime_error("bucket " + name + " still names pid " + std::to_string(old_pid));
    }
}

struct Listed {
    kv::BucketRecord record;
    kv::BucketStats stats;
};

// LIST's entry for `name`, if any.
std::optional<Listed> listed(const RegistryDaemon& daemon, const std::string& name)
{
    for (const auto& entry : daemon.call({ "LIST" }).elements) {
        Listed found;
        auto record = kv::decode_bucket_record(entry, &found.stats);
        EXPECT_TRUE(record) << "a LIST entry that does not decode";
        if (record && record->name == name) {
            found.record = *record;
            return found;
        }
    }
    return std::nullopt;
}

// HISTORY, newest first.
std::vector<kv::ExitRecord> history(const RegistryDaemon& daemon)
{
    std::vector<kv::ExitRecord> exits;
    for (const auto& entry : daemon.call({ "HISTORY" }).elements) {
        auto record = kv::decode_exit_record(entry);
        EXPECT_TRUE(record) << "a HISTORY entry that does not decode";
        if (record)
            exits.push_back(*record);
    }
    return exits;
}

bool ends_with(const std::string& text, const std::string& end)
{
    return text.size() >= end.size() && text.compare(text.size() - end.size(), end.size(), end) == 0;
}

bool alive(long long pid) { return kill_process(pid, 0) == 0; }

kv::Client send_to(const RegistryDaemon& daemon, const std::vector<std::string>& request)
{
    auto client = daemon.connect();
    client.send_raw(kv::resp::encode_command(request));
    return client;
}

std::string ms(Clock::duration duration)
{
    return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(duration).count()) + " ms";
}

} // namespace

// ---- Policies ---------------------------------------------------------------

TEST(Restart, APermanentBucketKilledComesBackUnderItsNameAsANewProcess)
{
    RegistryDaemon daemon;
    auto first = create_with(daemon, "shopping", "permanent");
    auto client = kv::Client::connect(first.field("socket")->text);
    ASSERT_EQ(client.call({ "SET", "milk", "1" }).text, "OK");
    auto watcher = daemon.monitor("shopping");

    kill_and_wait(pid_of(first));
    EXPECT_EQ(watcher.read_reply().text, "killed by SIGKILL; restarting");
    auto second = restarted(daemon, "shopping", pid_of(first));
    ASSERT_FALSE(second.is_error()) << second.text;

    // The same name; a new process, id, segment and socket.
    EXPECT_EQ(second.field("name")->text, "shopping");
    EXPECT_NE(pid_of(second), pid_of(first));
    EXPECT_EQ(id_of(second), id_of(first) + 1);
    EXPECT_NE(second.field("segment")->text, first.field("segment")->text);
    EXPECT_NE(second.field("socket")->text, first.field("socket")->text);

    // As ps shows it: one child of registryd, the new one, named after the bucket; the old one reaped.
    auto children = children_of(daemon.pid());
    ASSERT_EQ(children.size(), 1u);
    EXPECT_EQ(children[0].pid, pid_of(second));
    EXPECT_EQ(children[0].cmdline, "bucketd shopping");
    expect_no_zombie(daemon.pid());
    EXPECT_EQ(::shm_unlink(first.field("segment")->text.c_str()), -1) << "the old segment was left behind";
    struct stat info;
    EXPECT_EQ(::stat(first.field("socket")->text.c_str(), &info), -1) << "the old socket was left behind";

    // A new bucket: the old data is gone, the old connection closed.
    EXPECT_THROW(client.call({ "GET", "milk" }), kv::ConnectionClosed);
    auto again = kv::Client::connect(second.field("socket")->text);
    EXPECT_EQ(again.call({ "GET", "milk" }).type, Value::Type::null);
    EXPECT_EQ(again.call({ "SET", "milk", "2" }).text, "OK");

    auto entry = listed(daemon, "shopping");
    ASSERT_TRUE(entry);
    EXPECT_EQ(entry->stats.state, "ready");
    EXPECT_EQ(entry->stats.restart, "permanent");
    EXPECT_EQ(entry->stats.restarts, 1u);
    EXPECT_EQ(entry->stats.last_exit, "killed by SIGKILL");
    auto exits = history(daemon);
    ASSERT_EQ(exits.size(), 1u);
    EXPECT_EQ(exits[0].pid, pid_of(first));
    EXPECT_EQ(exits[0].id, 1u);
    EXPECT_EQ(exits[0].reason, "killed by SIGKILL");
    EXPECT_EQ(exits[0].restart, "permanent");
    EXPECT_EQ(exits[0].restarts, 0u);
    EXPECT_EQ(exits[0].outcome, "restarting");

    auto log = daemon.log();
    EXPECT_NE(log.find("bucket shopping (pid " + std::to_string(pid_of(first)) + ", id 1) killed by SIGKILL; restarting"),
        std::string::npos) << log;
    EXPECT_NE(log.find("bucket shopping (pid " + std::to_string(pid_of(second)) + ", id 2) starting (restart 1)"),
        std::string::npos) << log;
}

TEST(Restart, APermanentBucketEndedBySomeonesSigtermComesBackToo)
{
    RegistryDaemon daemon;
    auto first = create_with(daemon, "p", "permanent");
    auto watcher = daemon.monitor("p");
    kill_and_wait(pid_of(first), SIGTERM); // bucketd exits 0 on SIGTERM
    EXPECT_EQ(watcher.read_reply().text, "exited with status 0; restarting");
    auto second = restarted(daemon, "p", pid_of(first));
    ASSERT_FALSE(second.is_error()) << second.text;
    EXPECT_TRUE(alive(pid_of(second)));
}

TEST(Restart, ATransientBucketThatExitsZeroIsNotRestarted)
{
    RegistryDaemon daemon;
    auto bucket = create_with(daemon, "t", "transient");
    auto watcher = daemon.monitor("t");
    auto client = kv::Client::connect(bucket.field("socket")->text);
    EXPECT_THROW(client.call({ "DEBUG", "EXIT", "0" }), kv::ConnectionClosed);
    EXPECT_EQ(watcher.read_reply().text, "exited with status 0");
    EXPECT_EQ(daemon.call({ "LOOKUP", "t" }).text, "NOTFOUND no bucket named t");
    EXPECT_TRUE(children_of(daemon.pid()).empty());
    auto exits = history(daemon);
    ASSERT_EQ(exits.size(), 1u);
    EXPECT_EQ(exits[0].restart, "transient");
    EXPECT_EQ(exits[0].outcome, "removed");

    // SIGTERM sent to the bucket itself is a clean exit too (bucketd exits 0).
    bucket = create_with(daemon, "t", "transient");
    watcher = daemon.monitor("t");
    kill_and_wait(pid_of(bucket), SIGTERM);
    EXPECT_EQ(watcher.read_reply().text, "exited with status 0");
    EXPECT_EQ(daemon.call({ "LOOKUP", "t" }).text, "NOTFOUND no bucket named t");
}

TEST(Restart, ATransientBucketThatCrashesOrExitsNonZeroIsRestarted)
{
    RegistryDaemon daemon;
    auto bucket = create_with(daemon, "t", "transient");

    auto watcher = daemon.monitor("t");
    EXPECT_THROW(kv::Client::connect(bucket.field("socket")->text).call({ "DEBUG", "SEGFAULT" }), kv::ConnectionClosed);
    auto reply = watcher.read_reply().text;
    EXPECT_EQ(reply.rfind("killed by SIGSEGV", 0), 0u) << reply;
    EXPECT_TRUE(ends_with(reply, "; restarting")) << reply;
    auto second = restarted(daemon, "t", pid_of(bucket));
    ASSERT_FALSE(second.is_error()) << second.text;
    EXPECT_TRUE(alive(pid_of(second)));

    watcher = daemon.monitor("t");
    EXPECT_THROW(kv::Client::connect(second.field("socket")->text).call({ "DEBUG", "EXIT", "3" }), kv::ConnectionClosed);
    EXPECT_EQ(watcher.read_reply().text, "exited with status 3; restarting");
    auto third = restarted(daemon, "t", pid_of(second));
    ASSERT_FALSE(third.is_error()) << third.text;
    EXPECT_EQ(id_of(third), 3);
    auto entry = listed(daemon, "t");
    ASSERT_TRUE(entry);
    EXPECT_EQ(entry->stats.restart, "transient");
    EXPECT_EQ(entry->stats.restarts, 2u);
    EXPECT_EQ(entry->stats.last_exit, "exited with status 3");
}

TEST(Restart, TemporaryIsTheDefaultAndIsNeverRestarted)
{
    RegistryDaemon daemon;
    auto bucket = daemon.create("t");
    auto entry = listed(daemon, "t");
    ASSERT_TRUE(entry);
    EXPECT_EQ(entry->stats.restart, "temporary");
    EXPECT_EQ(entry->stats.restarts, 0u);
    EXPECT_EQ(entry->stats.last_exit, "");
    auto watcher = daemon.monitor("t");
    kill_and_wait(pid_of(bucket));
    EXPECT_EQ(watcher.read_reply().text, "killed by SIGKILL");
    EXPECT_EQ(daemon.call({ "LOOKUP", "t" }).text, "NOTFOUND no bucket named t");
    EXPECT_TRUE(children_of(daemon.pid()).empty());
    EXPECT_EQ(registry_info(daemon)["bucket_restarts"], "0");
}

TEST(Restart, TheRestartFlagSetsTheDefaultAndCreatesRestartWins)
{
    RegistryDaemon daemon({ "--restart", "permanent" });
    auto flagged = daemon.create("p");
    auto chosen = create_with(daemon, "t", "temporary");
    ASSERT_TRUE(listed(daemon, "p"));
    EXPECT_EQ(listed(daemon, "p").value().stats.restart, "permanent");
    EXPECT_EQ(listed(daemon, "t").value().stats.restart, "temporary");

    auto watch_p = daemon.monitor("p");
    kill_and_wait(pid_of(flagged));
    EXPECT_EQ(watch_p.read_reply().text, "killed by SIGKILL; restarting");
    EXPECT_FALSE(restarted(daemon, "p", pid_of(flagged)).is_error());

    auto watch_t = daemon.monitor("t");
    kill_and_wait(pid_of(chosen));
    EXPECT_EQ(watch_t.read_reply().text, "killed by SIGKILL");
    EXPECT_EQ(daemon.call({ "LOOKUP", "t" }).text, "NOTFOUND no bucket named t");
}

// ---- Intensity --------------------------------------------------------------

TEST(Restart, ACrashLoopIsGivenUpAfterMaxRestartsWithinMaxSeconds)
{
    RegistryDaemon daemon({ "--max-restarts", "2", "--max-seconds", "60" });
    auto bucket = create_with(daemon, "loop", "permanent");
    std::vector<long long> pids;
    for (int kill = 1; kill <= 3; ++kill) {
        pids.push_back(pid_of(bucket));
        auto watcher = daemon.monitor("loop");
        kill_and_wait(pid_of(bucket));
        auto reply = watcher.read_reply().text;
        if (kill < 3) {
            ASSERT_EQ(reply, "killed by SIGKILL; restarting");
            bucket = restarted(daemon, "loop", pid_of(bucket));
            ASSERT_FALSE(bucket.is_error()) << bucket.text;
        } else {
            EXPECT_EQ(reply, "gave up after 3 restarts in 60 s; last exit: killed by SIGKILL");
        }
    }
    EXPECT_EQ(daemon.call({ "LOOKUP", "loop" }).text, "NOTFOUND no bucket named loop");
    EXPECT_TRUE(daemon.call({ "LIST" }).elements.empty());
    EXPECT_TRUE(children_of(daemon.pid()).empty());
    expect_no_zombie(daemon.pid());
    EXPECT_TRUE(bucket_segments(daemon.run_dir()).empty());
    EXPECT_TRUE(files_in(daemon.run_dir() + "/buckets").empty());

    auto exits = history(daemon); // newest first
    ASSERT_EQ(exits.size(), 3u);
    const char* outcomes[] = { "gave up after 3 restarts in 60 s", "restarting", "restarting" };
    for (std::size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(exits[i].outcome, outcomes[i]) << i;
        EXPECT_EQ(exits[i].pid, pids[2 - i]) << i;
        EXPECT_EQ(exits[i].id, 3 - i) << i;
        EXPECT_EQ(exits[i].restarts, 2 - i) << i;
        EXPECT_EQ(exits[i].reason, "killed by SIGKILL") << i;
        EXPECT_EQ(exits[i].restart, "permanent") << i;
    }
    auto info = registry_info(daemon);
    EXPECT_EQ(info["bucket_restarts"], "2");
    EXPECT_EQ(info["buckets_given_up"], "1");
    EXPECT_EQ(info["buckets"], "0");
    EXPECT_EQ(info["bucket_exits"], "3");
    EXPECT_NE(daemon.log().find("bucket loop (pid " + std::to_string(pids[2]) + ", id 3) killed by SIGKILL; gave up after 3 restarts in 60 s"),
        std::string::npos) << daemon.log();

    // Given up is not banned: the name can be created again, with a fresh count.
    auto again = create_with(daemon, "loop", "permanent");
    EXPECT_EQ(listed(daemon, "loop").value().stats.restarts, 0u);
    EXPECT_TRUE(alive(pid_of(again)));
}

TEST(Restart, MaxRestartsZeroGivesUpAtTheFirstExit)
{
    RegistryDaemon daemon({ "--max-restarts", "0" });
    auto bucket = create_with(daemon, "p", "permanent");
    auto watcher = daemon.monitor("p");
    kill_and_wait(pid_of(bucket));
    EXPECT_EQ(watcher.read_reply().text, "gave up after 1 restart in 5 s; last exit: killed by SIGKILL");
    EXPECT_EQ(daemon.call({ "LOOKUP", "p" }).text, "NOTFOUND no bucket named p");
}

// ---- Asked-for exits --------------------------------------------------------

TEST(Restart, StopNeverRestartsAPermanentBucket)
{
    RegistryDaemon daemon({ "--restart", "permanent" });
    auto bucket = daemon.create("p");
    auto watcher = daemon.monitor("p");
    EXPECT_EQ(daemon.call({ "STOP", "p" }).text, "OK");
    EXPECT_EQ(watcher.read_reply().text, "exited with status 0");
    EXPECT_EQ(daemon.call({ "LOOKUP", "p" }).text, "NOTFOUND no bucket named p");
    EXPECT_TRUE(children_of(daemon.pid()).empty());
    EXPECT_EQ(history(daemon).at(0).outcome, "removed");
    EXPECT_EQ(registry_info(daemon)["bucket_restarts"], "0");
}

TEST(Restart, ShutdownWithPermanentBucketsRestartsNothingAndLeavesNothing)
{
    const auto delay = scaled(30s); // the killed one is still waiting for its restart at shutdown
    RegistryDaemon daemon({ "--restart", "permanent", "--restart-delay-ms", std::to_string(delay.count()) });
    std::vector<kv::UniqueFd> pidfds;
    std::vector<Value> buckets;
    for (int i = 0; i < 3; ++i) {
        buckets.push_back(daemon.create("b" + std::to_string(i)));
        pidfds.push_back(open_pidfd(static_cast<pid_t>(pid_of(buckets.back()))));
    }
    auto restarting = daemon.monitor("b0");
    kill_and_wait(pid_of(buckets[0]));
    ASSERT_EQ(restarting.read_reply().text, "killed by SIGKILL; restarting");
    auto watcher = daemon.monitor("b1");
    auto waiting = daemon.monitor("b0"); // registered during b0's restart delay
    auto run_dir = daemon.run_dir();

    const auto started = Clock::now();
    auto exit = daemon.stop(SIGTERM);
    EXPECT_EQ(exit.code, CLD_EXITED);
    EXPECT_EQ(exit.status, 0);
    EXPECT_LT(Clock::now() - started, delay) << "shutdown waited for a restart delay";
    // registryd closes its clients' connections as it begins to stop: a
    // MONITOR ends then, or with its bucket's exit, never with a restart.
    for (auto* client : { &watcher, &waiting }) {
        try {
            EXPECT_EQ(client->read_reply().text.find("restarting"), std::string::npos);
        } catch (const kv::ConnectionClosed&) {
        }
    }
    for (auto& pidfd : pidfds)
        EXPECT_TRUE(wait_readable(pidfd.get(), 0ms)) << "a bucket outlived registryd";
    EXPECT_TRUE(segments_with_prefix(daemon.segment_prefix()).empty());
    EXPECT_TRUE(files_in(run_dir + "/buckets").empty());
    auto log = daemon.log();
    EXPECT_EQ(log.find("(restart 1)"), std::string::npos) << log;
    EXPECT_EQ(log.find("exited with status 0; restarting"), std::string::npos) << log;
}

// ---- Leaks ------------------------------------------------------------------

TEST(Restart, AThousandRestartsLeaveNoZombieAndNoDescriptor)
{
    constexpr int rounds = 1000;
    RegistryDaemon daemon({ "--restart", "permanent", "--max-restarts", "1000000" });
    auto bucket = daemon.create("p");
    // Counted while registryd holds one connection and one bucket.
    auto control = daemon.connect();
    ASSERT_EQ(wait_for_connections(daemon.pid(), 1), 1u);
    const auto baseline = open_descriptor_count(daemon.pid());
    const auto started = Clock::now();
    for (int i = 0; i < rounds; ++i) {
        const long long victim = pid_of(bucket);
        kill_and_wait(victim);
        if (HasFatalFailure())
            return;
        bucket = restarted(daemon, "p", victim);
        ASSERT_FALSE(bucket.is_error()) << "round " << i << ": " << bucket.text;
    }
    const auto took = Clock::now() - started;
    std::cout << rounds << " restarts in " << ms(took) << "\n";
    EXPECT_TRUE(alive(pid_of(bucket)));
    auto children = children_of(daemon.pid());
    ASSERT_EQ(children.size(), 1u);
    EXPECT_EQ(children[0].pid, pid_of(bucket));
    expect_no_zombie(daemon.pid());
    EXPECT_EQ(files_in(daemon.run_dir() + "/buckets").size(), 1u);
    EXPECT_EQ(bucket_segments(daemon.run_dir()).size(), 1u);
    EXPECT_EQ(listed(daemon, "p").value().stats.restarts, static_cast<std::uint64_t>(rounds));
    EXPECT_EQ(registry_info(daemon)["bucket_restarts"], std::to_string(rounds));
    ASSERT_EQ(wait_for_connections(daemon.pid(), 1), 1u) << "registryd still holds connections of clients that hung up";
    EXPECT_EQ(open_descriptor_count(daemon.pid()), baseline);
}

// ---- Races with the restart -------------------------------------------------

TEST(Restart, DuringTheRestartDelayListSaysRestartingAndLookupAndCreateWaitForTheNewBucket)
{
    const auto delay = scaled(600ms);
    RegistryDaemon daemon({ "--restart", "permanent", "--restart-delay-ms", std::to_string(delay.count()) });
    auto first = daemon.create("p");
    auto watcher = daemon.monitor("p");
    const auto killed = Clock::now();
    kill_and_wait(pid_of(first));
    ASSERT_EQ(watcher.read_reply().text, "killed by SIGKILL; restarting");

    auto entry = listed(daemon, "p");
    ASSERT_TRUE(entry);
    EXPECT_EQ(entry->stats.state, "restarting");
    // No process yet: neither the dead one's pid nor an uptime.
    EXPECT_NE(entry->record.pid, pid_of(first));
    EXPECT_EQ(entry->stats.uptime_ms, 0);
    EXPECT_EQ(entry->stats.restarts, 1u);
    EXPECT_EQ(entry->stats.last_exit, "killed by SIGKILL");
    EXPECT_TRUE(children_of(daemon.pid()).empty()) << "a process during the restart delay";
    kv::BucketRecord record;
    auto table = open_name_table(daemon.run_dir());
    ASSERT_TRUE(table);
    EXPECT_EQ(table->lookup("p", record), kv::NameTableReader::Result::missing) << "the name table names a dead pid";

    auto lookup = send_to(daemon, { "LOOKUP", "p" });
    auto create = send_to(daemon, { "CREATE", "p" });
    auto create_same = send_to(daemon, { "CREATE", "p", "RESTART", "permanent" });
    auto next_watcher = daemon.monitor("p"); // registered during the delay

    auto looked = lookup.read_reply();
    const auto answered = Clock::now();
    ASSERT_FALSE(looked.is_error()) << looked.text;
    EXPECT_GE(answered - killed, delay) << "LOOKUP answered before the restart delay ended";
    EXPECT_NE(pid_of(looked), pid_of(first));
    EXPECT_TRUE(alive(pid_of(looked)));
    for (auto* client : { &create, &create_same }) {
        auto created = client->read_reply();
        ASSERT_FALSE(created.is_error()) << created.text;
        EXPECT_EQ(pid_of(created), pid_of(looked));
        EXPECT_EQ(id_of(created), id_of(looked));
    }
    entry = listed(daemon, "p");
    ASSERT_TRUE(entry);
    EXPECT_EQ(entry->stats.state, "ready");
    EXPECT_LE(entry->stats.uptime_ms, std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - killed).count())
        << "the uptime of the new process counts from its start";
    ASSERT_EQ(table->lookup("p", record), kv::NameTableReader::Result::found);
    EXPECT_EQ(record.pid, pid_of(looked));

    // The MONITOR registered during the delay answers at the new process's exit.
    EXPECT_FALSE(wait_readable(next_watcher.fd(), 0ms)) << "MONITOR answered without an exit";
    kill_and_wait(pid_of(looked));
    EXPECT_EQ(next_watcher.read_reply().text, "killed by SIGKILL; restarting");
}

TEST(Restart, StopDuringTheRestartDelayRemovesTheNameForGood)
{
    const auto delay = scaled(600ms);
    RegistryDaemon daemon({ "--restart", "permanent", "--restart-delay-ms", std::to_string(delay.count()) });
    auto first = daemon.create("p");
    auto watcher = daemon.monitor("p");
    const auto killed = Clock::now();
    kill_and_wait(pid_of(first));
    ASSERT_EQ(watcher.read_reply().text, "killed by SIGKILL; restarting");
    auto lookup = send_to(daemon, { "LOOKUP", "p" });
    auto waiting = daemon.monitor("p");

    EXPECT_EQ(daemon.call({ "STOP", "p" }).text, "OK");
    EXPECT_LT(Clock::now() - killed, delay) << "the test was too slow to STOP within the delay";
    EXPECT_EQ(lookup.read_reply().text, "ERR bucket p was stopped before its restart");
    EXPECT_EQ(waiting.read_reply().text, "stopped before its restart");
    EXPECT_EQ(daemon.call({ "LOOKUP", "p" }).text, "NOTFOUND no bucket named p");
    EXPECT_TRUE(daemon.call({ "LIST" }).elements.empty());
    EXPECT_NE(daemon.log().find(", id 2) stopped while waiting to restart"), std::string::npos) << daemon.log();

    // Nothing comes back when the delay would have ended: watched for twice the delay.
    while (Clock::now() - killed < 2 * delay) {
        ASSERT_TRUE(children_of(daemon.pid()).empty()) << "a bucket was started after its STOP";
        std::this_thread::sleep_for(10ms); // an observation interval, not a synchronisation
    }
    EXPECT_TRUE(daemon.call({ "LIST" }).elements.empty());
    EXPECT_EQ(daemon.log().find("starting (restart 1)"), std::string::npos) << daemon.log();

    // And the name is free for a new CREATE, with any policy.
    auto again = create_with(daemon, "p", "temporary");
    EXPECT_TRUE(alive(pid_of(again)));
}

TEST(Restart, RequestsRacingAnImmediateRestartGetCoherentAnswers)
{
    constexpr int rounds = 30;
    RegistryDaemon daemon({ "--restart", "permanent", "--max-restarts", "1000000" });
    auto current = daemon.create("p");
    std::optional<kv::Client> pending; // a MONITOR registered on the current process
    int old_records = 0, new_records = 0, monitors_on_victim = 0, monitors_on_next = 0; // which races were seen
    for (int i = 0; i < rounds; ++i) {
        const long long victim = pid_of(current);
        auto pidfd = open_pidfd(static_cast<pid_t>(victim));
        ASSERT_EQ(kill_process(victim, SIGKILL), 0);
        // Sent at once, without waiting for anything: registryd serves them
        // before, while or after it handles the exit.
        auto lookup = send_to(daemon, { "LOOKUP", "p" });
        auto create = send_to(daemon, { "CREATE", "p" });
        auto monitor = send_to(daemon, { "MONITOR", "p" });
        auto looked = lookup.read_reply();
        auto created = create.read_reply();
        ASSERT_TRUE(wait_readable(pidfd.get(), scaled(10s)));
        current = restarted(daemon, "p", victim);
        ASSERT_FALSE(current.is_error()) << current.text;

        // The old record (served before the exit was seen) or the new one; never an error.
        for (const auto& reply : { looked, created }) {
            ASSERT_FALSE(reply.is_error()) << "round " << i << ": " << reply.text;
            EXPECT_TRUE(pid_of(reply) == victim || pid_of(reply) == pid_of(current))
                << "round " << i << ": pid " << pid_of(reply) << ", neither " << victim << " nor " << pid_of(current);
            ++(pid_of(reply) == victim ? old_records : new_records);
        }
        // The MONITOR from the round before was on this round's victim or on the one before.
        if (pending) {
            EXPECT_EQ(pending->read_reply().text, "killed by SIGKILL; restarting") << "round " << i;
        }
        pending.reset();
        // This round's: answered already (it was on the victim), or registered on the new process.
        if (wait_readable(monitor.fd(), 0ms)) {
            EXPECT_EQ(monitor.read_reply().text, "killed by SIGKILL; restarting") << "round " << i;
            ++monitors_on_victim;
        } else {
            ++monitors_on_next;
            const auto deadline = Clock::now() + scaled(10s);
            while (daemon.monitors_of("p") != 1) {
                ASSERT_LT(Clock::now(), deadline) << "round " << i << ": MONITOR neither answered nor registered";
            }
            pending.emplace(std::move(monitor));
        }
    }
    expect_no_zombie(daemon.pid());
    EXPECT_EQ(children_of(daemon.pid()).size(), 1u);
    std::cout << "records of the victim " << old_records << ", of its successor " << new_records << "; MONITORs on the victim "
              << monitors_on_victim << ", on its successor " << monitors_on_next << "\n";
}

TEST(Restart, StopRacingAnImmediateRestartAlwaysEndsTheBucket)
{
    constexpr int rounds = 20;
    RegistryDaemon daemon({ "--restart", "permanent", "--max-restarts", "1000000" });
    for (int i = 0; i < rounds; ++i) {
        auto bucket = daemon.create("p");
        auto pidfd = open_pidfd(static_cast<pid_t>(pid_of(bucket)));
        ASSERT_EQ(kill_process(pid_of(bucket), SIGKILL), 0);
        // Served before registryd sees the exit (then the exit is the STOP's),
        // or after (then it stops the new process as it starts): either way
        // it answers once the name is gone, and nothing comes back.
        ASSERT_EQ(daemon.call({ "STOP", "p" }).text, "OK") << "round " << i;
        EXPECT_EQ(daemon.call({ "LOOKUP", "p" }).text, "NOTFOUND no bucket named p") << "round " << i;
        EXPECT_TRUE(wait_readable(pidfd.get(), 0ms));
        EXPECT_TRUE(children_of(daemon.pid()).empty()) << "round " << i;
    }
    expect_no_zombie(daemon.pid());
}

// ---- Failed starts ----------------------------------------------------------

TEST(Restart, ABucketWhoseFirstStartFailsIsNotRestarted)
{
    TemporaryDirectory scripts;
    auto failing = write_script(scripts, "bucketd", "#!/bin/sh\nexit 3\n");
    RegistryDaemon daemon({ "--bucketd", failing, "--restart", "permanent" });
    auto reply = daemon.call({ "CREATE", "a" });
    EXPECT_EQ(reply.text.rfind("ERR bucket a ", 0), 0u) << reply.text;
    EXPECT_TRUE(ends_with(reply.text, "exited with status 3 before it was ready")) << reply.text;
    EXPECT_TRUE(daemon.call({ "LIST" }).elements.empty());
    EXPECT_TRUE(children_of(daemon.pid()).empty());
    auto exits = history(daemon);
    ASSERT_EQ(exits.size(), 1u);
    EXPECT_EQ(exits[0].outcome, "removed");
    EXPECT_EQ(registry_info(daemon)["bucket_restarts"], "0");
    EXPECT_EQ(daemon.log().find("restarting"), std::string::npos) << daemon.log();
}

TEST(Restart, RestartsThatFailToStartCountTowardsTheIntensity)
{
    TemporaryDirectory scripts;
    // Ready the first time; every later start exits 3 before it is ready.
    auto once = write_script(scripts, "bucketd",
        "#!/bin/bash\nif [ -e " + scripts.path() + "/started ]; then exit 3; fi\n: > " + scripts.path()
            + "/started\necho >&$KV_NOTIFY_FD\nexec sleep 60\n");
    RegistryDaemon daemon({ "--bucketd", once, "--restart", "permanent", "--max-restarts", "2", "--max-seconds", "60" });
    auto bucket = daemon.create("a");
    auto watcher = daemon.monitor("a");
    kill_and_wait(pid_of(bucket));
    ASSERT_EQ(watcher.read_reply().text, "killed by SIGKILL; restarting");
    // Served while the restarts fail (it waits, then hears why that restart
    // failed, or that the bucket was given up) or after (the name is gone).
    // Never kept waiting from one failed restart to the next.
    auto looked = daemon.call({ "LOOKUP", "a" });
    EXPECT_TRUE(looked.text == "ERR bucket a gave up after 3 restarts in 60 s; last exit: exited with status 3"
        || looked.text == "ERR bucket a closed its readiness pipe without writing a newline; exited with status 3 before it was ready; restarting"
        || looked.text == "NOTFOUND no bucket named a") << looked.text;
    const auto deadline = Clock::now() + scaled(10s);
    while (daemon.call({ "LOOKUP", "a" }).text != "NOTFOUND no bucket named a") {
        ASSERT_LT(Clock::now(), deadline) << "never given up";
    }

    auto exits = history(daemon);
    ASSERT_EQ(exits.size(), 3u);
    EXPECT_EQ(exits[0].reason, "exited with status 3");
    EXPECT_EQ(exits[0].outcome, "gave up after 3 restarts in 60 s");
    EXPECT_EQ(exits[1].reason, "exited with status 3");
    EXPECT_EQ(exits[1].outcome, "restarting");
    EXPECT_EQ(exits[2].reason, "killed by SIGKILL");
    EXPECT_EQ(exits[2].outcome, "restarting");
    EXPECT_TRUE(children_of(daemon.pid()).empty());
    expect_no_zombie(daemon.pid());
}

// ---- Readers across a restart -----------------------------------------------

TEST(Restart, ADirectReaderOfTheOldSegmentSeesItGoneAndTheNameTableNamesTheNewBucket)
{
    using Result = kv::SharedTableReader::Result;
    RegistryDaemon daemon({ "--restart", "permanent" });
    auto first = daemon.create("shopping");
    ASSERT_EQ(kv::Client::connect(first.field("socket")->text).call({ "SET", "milk", "1" }).text, "OK");
    auto reader = kv::SharedTableReader::open(first.field("segment")->text, kv::TableKind::bucket, ::geteuid());
    ASSERT_TRUE(reader);
    auto table = open_name_table(daemon.run_dir());
    ASSERT_TRUE(table);
    kv::BucketRecord before;
    ASSERT_EQ(table->lookup("shopping", before), kv::NameTableReader::Result::found);

    auto watcher = daemon.monitor("shopping");
    kill_and_wait(pid_of(first));
    ASSERT_EQ(watcher.read_reply().text, "killed by SIGKILL; restarting");
    auto second = restarted(daemon, "shopping", pid_of(first));
    ASSERT_FALSE(second.is_error()) << second.text;

    std::string value;
    EXPECT_EQ(reader->get("milk", value), Result::gone);
    EXPECT_FALSE(kv::SharedTableReader::open(first.field("segment")->text, kv::TableKind::bucket, ::geteuid()));

    kv::BucketRecord record;
    ASSERT_EQ(table->lookup("shopping", record), kv::NameTableReader::Result::found);
    EXPECT_EQ(record.pid, pid_of(second));
    EXPECT_EQ(record.id, static_cast<unsigned long long>(id_of(second)));
    EXPECT_EQ(record.segment, second.field("segment")->text);
    EXPECT_EQ(record.socket, second.field("socket")->text);
    EXPECT_GT(record.generation, before.generation) << "a reader caching by generation would keep the old bucket";
    auto fresh = kv::SharedTableReader::open(record.segment, kv::TableKind::bucket, ::geteuid());
    ASSERT_TRUE(fresh);
    EXPECT_EQ(fresh->owner_pid(), pid_of(second));
    EXPECT_EQ(fresh->get("milk", value), Result::missing);
    ASSERT_EQ(kv::Client::connect(record.socket).call({ "SET", "milk", "2" }).text, "OK");
    ASSERT_EQ(fresh->get("milk", value), Result::found);
    EXPECT_EQ(value, "2");
}

TEST(Restart, KvctlGetAndPutWorkAcrossARestart)
{
    RegistryDaemon daemon({ "--restart", "permanent" });
    auto first = daemon.create("shopping");
    auto kvctl = [&](std::vector<std::string> arguments) {
        arguments.insert(arguments.begin(), { binary("kvctl"), "--run-dir", daemon.run_dir() });
        return run_program(arguments);
    };
    auto put = kvctl({ "put", "shopping", "milk", "1" });
    ASSERT_EQ(put.exit_code, 0) << put.err;
    EXPECT_EQ(kvctl({ "get", "shopping", "milk" }).out, "1\n");

    auto watcher = daemon.monitor("shopping");
    kill_and_wait(pid_of(first));
    ASSERT_EQ(watcher.read_reply().text, "killed by SIGKILL; restarting");
    ASSERT_FALSE(restarted(daemon, "shopping", pid_of(first)).is_error());

    auto get = kvctl({ "get", "shopping", "milk" });
    EXPECT_EQ(get.exit_code, 1) << "the restarted bucket starts empty: " << get.out << get.err;
    put = kvctl({ "put", "shopping", "milk", "2" });
    EXPECT_EQ(put.exit_code, 0) << put.err;
    get = kvctl({ "get", "shopping", "milk" });
    EXPECT_EQ(get.exit_code, 0) << get.err;
    EXPECT_EQ(get.out, "2\n");
}

// ---- Bad input --------------------------------------------------------------

TEST(Restart, CreateRejectsABadRestartArgumentWithOneLineErrors)
{
    RegistryDaemon daemon;
    EXPECT_EQ(daemon.call({ "CREATE", "x", "RESTART" }).text, "ERR syntax error");
    EXPECT_EQ(daemon.call({ "CREATE", "x", "RESTART", "sometimes" }).text,
        "ERR unable to create bucket x: invalid restart policy sometimes: expected temporary|transient|permanent");
    EXPECT_EQ(daemon.call({ "CREATE", "x", "KEEP" }).text,
        "ERR unable to create bucket x: KEEP needs a restart policy that restarts (RESTART transient or RESTART permanent)")
        << "KEEP with the default policy, temporary";
    EXPECT_EQ(daemon.call({ "CREATE", "x", "RESTART", "temporary", "KEEP" }).text,
        "ERR unable to create bucket x: KEEP needs a restart policy that restarts (RESTART transient or RESTART permanent)");
    EXPECT_EQ(daemon.call({ "CREATE", "x", "permanent" }).text, "ERR syntax error");
    EXPECT_EQ(daemon.call({ "CREATE", "x", "RESTART", "permanent", "junk" }).text, "ERR syntax error");
    EXPECT_EQ(daemon.call({ "CREATE", "x", "RESTART", "permanent", "KEEP", "junk" }).text,
        "ERR wrong number of arguments for 'create' command");
    EXPECT_TRUE(daemon.call({ "LIST" }).elements.empty()) << "a refused CREATE made a bucket";

    // The words in any case, as Redis's option words.
    create_with(daemon, "x", "Permanent");
    auto mixed = daemon.call({ "CREATE", "y", "restart", "TRANSIENT" });
    ASSERT_FALSE(mixed.is_error()) << mixed.text;
    EXPECT_EQ(listed(daemon, "x").value().stats.restart, "permanent");
    EXPECT_EQ(listed(daemon, "y").value().stats.restart, "transient");
}

TEST(Restart, CreateOfAnExistingNameWithAnotherPolicyIsRefused)
{
    RegistryDaemon daemon;
    auto bucket = create_with(daemon, "x", "permanent");
    EXPECT_EQ(daemon.call({ "CREATE", "x", "RESTART", "transient" }).text,
        "ERR bucket x exists with restart policy permanent; STOP it to create it with another");
    // The same policy, or none, returns the existing bucket.
    EXPECT_EQ(pid_of(create_with(daemon, "x", "permanent")), pid_of(bucket));
    EXPECT_EQ(pid_of(daemon.create("x")), pid_of(bucket));
    // KEEP is part of what was asked: a bucket without it is not one with it.
    EXPECT_EQ(daemon.call({ "CREATE", "x", "RESTART", "permanent", "KEEP" }).text,
        "ERR bucket x exists with restart policy permanent; STOP it to create it with another");
    // Once stopped, it can be created with another.
    EXPECT_EQ(daemon.call({ "STOP", "x" }).text, "OK");
    create_with(daemon, "x", "transient");
    EXPECT_EQ(listed(daemon, "x").value().stats.restart, "transient");
}

TEST(Restart, RegistrydRefusesABadRestartFlag)
{
    TemporaryDirectory directory;
    auto result = run_program({ binary("registryd"), "--run-dir", directory.path(), "--restart", "sometimes" });
    EXPECT_NE(result.exit_code, 0);
    EXPECT_NE(result.err.find("sometimes"), std::string::npos) << result.err;
}

// ---- Delay ------------------------------------------------------------------

TEST(Restart, TheRestartDelayDoublesWithEachRestartInTheWindow)
{
    constexpr auto base = 100ms;
    RegistryDaemon daemon({ "--restart", "permanent", "--restart-delay-ms", std::to_string(base.count()),
        "--max-restarts", "10", "--max-seconds", "3600" });
    auto bucket = daemon.create("p");
    auto expected = std::chrono::milliseconds(base);
    for (int restart = 1; restart <= 3; ++restart, expected *= 2) {
        auto watcher = daemon.monitor("p");
        const long long victim = pid_of(bucket);
        // From before the kill: registryd cannot start the delay earlier.
        const auto killed = Clock::now();
        kill_and_wait(victim);
        ASSERT_EQ(watcher.read_reply().text, "killed by SIGKILL; restarting");
        bucket = daemon.call({ "LOOKUP", "p" }); // waits through the delay
        const auto took = Clock::now() - killed;
        ASSERT_FALSE(bucket.is_error()) << bucket.text;
        EXPECT_NE(pid_of(bucket), victim);
        EXPECT_GE(took, expected) << "restart " << restart << " took " << ms(took);
        EXPECT_EQ(listed(daemon, "p").value().stats.restarts, static_cast<std::uint64_t>(restart));
    }
}
