// Trust nothing in a shared place: another user, another instance of
// registryd on the same path, a dead instance's leftovers and files planted
// in the run dir can neither impersonate kv, nor stop it, nor make it remove
// what is not its own. The second user is nobody (uid 65534), through setpriv;
// these tests need root for that, as the access tests do.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>

#include <gtest/gtest.h>

#include "daemon_fixture.h"
#include "instance_record.h"
#include "run_dir.h"

using namespace kv::test;

namespace {

class Trust : public ::testing::Test {
protected:
    void SetUp() override
    {
        KV_REQUIRE(SecondUser::missing().empty(), SecondUser::missing());
        nobody_.emplace();
    }

    ProgramResult as_nobody(const std::vector<std::string>& command) { return nobody_->run(command); }

    ProgramResult kvctl(const std::string& run_dir, std::vector<std::string> arguments)
    {
        arguments.insert(arguments.begin(), { binary("kvctl"), "--run-dir", run_dir });
        return run_program(arguments);
    }

    // Another user's registryd, started in `run_dir` (which it owns).
    DaemonOptions their_registryd_in(const std::string& run_dir) const
    {
        DaemonOptions options;
        options.run_dir = run_dir;
        options.binary_dir = nobody_->programs();
        options.wrapper = nobody_->wrapper();
        return options;
    }

    std::optional<SecondUser> nobody_;
};

bool exists(const std::string& path)
{
    struct stat info;
    return ::lstat(path.c_str(), &info) == 0;
}

} // namespace

TEST_F(Trust, KvctlRefusesARunDirAnotherUserMadeEvenWithARegistrydInIt)
{
    TemporaryDirectory parent;
    ::chmod(parent.path().c_str(), 0777);
    const std::string squatted = parent.path() + "/kv";
    ASSERT_EQ(as_nobody({ "/bin/mkdir", "-m", "0700", squatted }).exit_code, 0);
    RegistryDaemon impostor(their_registryd_in(squatted));

    for (auto arguments : std::vector<std::vector<std::string>> { { "create", "shopping" }, { "put", "shopping", "milk", "1" },
             { "lookup", "shopping" }, { "list" } }) {
        auto result = kvctl(squatted, arguments);
        EXPECT_EQ(result.exit_code, 3) << arguments[0];
        EXPECT_EQ(result.err, "kvctl: unable to use run directory " + squatted
                + ": owned by uid 65534, neither by us (uid 0) nor by root; another user may have made it\n");
    }
    EXPECT_EQ(impostor.call({ "LIST" }).elements.size(), 0u) << "the impostor was reached";
}

TEST_F(Trust, KvctlChecksWhoServesTheRegistrySocket)
{
    // Our own private run dir, but its registry.sock leads to another user's server.
    TemporaryDirectory theirs_parent;
    ::chmod(theirs_parent.path().c_str(), 0777);
    const std::string theirs = theirs_parent.path() + "/kv";
    ASSERT_EQ(as_nobody({ "/bin/mkdir", "-m", "0711", theirs }).exit_code, 0);
    RegistryDaemon impostor(their_registryd_in(theirs));
    TemporaryDirectory ours;
    ASSERT_EQ(::link(kv::registry_socket_path(theirs).c_str(), kv::registry_socket_path(ours.path()).c_str()), 0);

    auto result = kvctl(ours.path(), { "create", "shopping" });
    EXPECT_EQ(result.exit_code, 3);
    EXPECT_EQ(result.err, "kvctl: unable to create bucket shopping: unable to trust " + kv::registry_socket_path(ours.path())
            + ": it is served by uid 65534, not uid 0\n");
    EXPECT_EQ(impostor.call({ "LIST" }).elements.size(), 0u);
}

TEST_F(Trust, SharedMemorySquattersCanNeitherStopNorImpersonateRegistryd)
{
    TemporaryDirectory directory;
    // Before registryd starts, another user fills /dev/shm with kv-looking names.
    std::vector<std::string> planted;
    auto plant = [&](const std::string& name) {
        auto result = as_nobody({ "/bin/sh", "-c", "umask 0; : > /dev/shm/" + name });
        ASSERT_EQ(result.exit_code, 0) << result.err;
        planted.push_back(name);
    };
    for (int i = 0; i < 20; ++i)
        plant("kv.squat" + std::to_string(i));

    RegistryDaemon daemon({}, directory.path());
    // It can now see our instance id in /dev/shm and squat on every name it can guess.
    const std::string prefix = daemon.segment_prefix().substr(1);
    plant(prefix + "names");
    for (int id = 1; id <= 10; ++id) {
        plant(prefix + "b" + std::to_string(id));
        plant(prefix + "b" + std::to_string(id) + ".0000000000000000");
    }
    for (int i = 0; i < 5; ++i) {
        auto bucket = daemon.create("b" + std::to_string(i));
        EXPECT_EQ(kvctl(directory.path(), { "put", "b" + std::to_string(i), "milk", "1" }).exit_code, 0);
        auto lookup = kvctl(directory.path(), { "lookup", "b" + std::to_string(i) });
        EXPECT_EQ(lookup.out, std::to_string(bucket.field("pid")->integer) + "\n");
        EXPECT_EQ(kvctl(directory.path(), { "get", "b" + std::to_string(i), "milk" }).out, "1\n");
    }

    // After a crash the next registryd sweeps its predecessor's names: only its own.
    daemon.stop(SIGKILL);
    RegistryDaemon next({}, directory.path());
    EXPECT_TRUE(segments_with_prefix(daemon.segment_prefix() + "b").size() == 10 * 2)
        << "the other user's files are not ours to remove";
    for (const auto& name : planted) {
        EXPECT_TRUE(exists("/dev/shm/" + name)) << name;
        ::shm_unlink(("/" + name).c_str());
    }
}

TEST_F(Trust, ARegistrydWhoseRunDirIsRemovedStopsAndNeverTouchesItsSuccessorsFiles)
{
    TemporaryDirectory parent;
    const std::string path = parent.path() + "/run";
    RegistryDaemon first({}, path);
    auto old_bucket = first.create("old");
    auto old_pidfd = open_pidfd(static_cast<pid_t>(old_bucket.field("pid")->integer));
    auto first_pidfd = open_pidfd(first.pid());
    const pid_t first_pid = first.pid();

    // A tmp cleaner removes the directory; a second registryd starts on the same path.
    std::filesystem::remove_all(path);
    RegistryDaemon second({}, path);
    auto new_bucket = second.create("new");
    kv::Client::connect(new_bucket.field("socket")->text).call({ "SET", "k", "v" });

    // The first notices within a second or two, stops its buckets and exits 3.
    ASSERT_TRUE(wait_readable(first_pidfd.get(), 10s)) << first.log();
    auto exit = first.stop(SIGKILL); // already exited: this only collects the status
    EXPECT_EQ(exit.code, CLD_EXITED);
    EXPECT_EQ(exit.status, 3);
    // (Both log to the same file, and by the time it looked a new directory stood at the path.)
    EXPECT_NE(first.log().find("registryd[" + std::to_string(first_pid) + "]: run directory " + path
                  + " was replaced by another directory, stopping 1 buckets"),
        std::string::npos)
        << first.log();
    EXPECT_TRUE(wait_readable(old_pidfd.get(), 0ms)) << "its bucket outlived it";
    EXPECT_TRUE(segments_with_prefix(first.segment_prefix()).empty());

    // Everything of the second's is still there and serving.
    EXPECT_TRUE(exists(kv::registry_socket_path(path)));
    EXPECT_TRUE(exists(new_bucket.field("socket")->text));
    EXPECT_TRUE(exists("/dev/shm" + new_bucket.field("segment")->text));
    EXPECT_EQ(kvctl(path, { "get", "new", "k" }).out, "v\n");
    EXPECT_EQ(kvctl(path, { "lookup", "new" }).out, std::to_string(new_bucket.field("pid")->integer) + "\n");
}

TEST_F(Trust, ARegistrydWhoseLockFileIsRemovedIsNotHarmedAndStops)
{
    RegistryDaemon daemon;
    auto pidfd = open_pidfd(daemon.pid());
    // Stopped, it cannot notice yet: a second registryd gets the lock, but
    // must not take the socket of the one that still serves it.
    ASSERT_EQ(kill_process(daemon.pid(), SIGSTOP), 0);
    ASSERT_EQ(::unlink((daemon.run_dir() + "/" + kv::lock_file_name).c_str()), 0);
    auto second = run_program({ binary("registryd"), "--run-dir", daemon.run_dir() });
    EXPECT_EQ(second.exit_code, 1);
    EXPECT_NE(second.err.find("a registryd still serves " + kv::registry_socket_path(daemon.run_dir())), std::string::npos)
        << second.err;
    ASSERT_EQ(kill_process(daemon.pid(), SIGCONT), 0);
    EXPECT_EQ(daemon.call({ "PING" }).text, "PONG");
    ASSERT_TRUE(wait_readable(pidfd.get(), 10s));
    auto exit = daemon.stop(SIGKILL);
    EXPECT_EQ(exit.status, 3);
    // (The refused one made a new, empty lock file: the old one was replaced.)
    EXPECT_NE(daemon.log().find("its lock file " + daemon.run_dir() + "/registry.lock was replaced, stopping 0 buckets"),
        std::string::npos)
        << daemon.log();
}

TEST_F(Trust, TheNextRegistrydKillsEveryLeftoverBucketEvenAStoppedOneAndNothingElse)
{
    TemporaryDirectory directory;
    // An unrelated process of the same user, which must survive.
    auto bystander = run_program({ "/bin/sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!" });
    const pid_t bystander_pid = std::stoi(bystander.out);
    auto bystander_pidfd = open_pidfd(bystander_pid);

    kv::UniqueFd late_pidfd;
    std::string late_socket;
    {
        RegistryDaemon first({}, directory.path());
        auto late = first.create("late");
        late_socket = late.field("socket")->text;
        late_pidfd = open_pidfd(static_cast<pid_t>(late.field("pid")->integer));
        // Stopped: it cannot act on the SIGTERM its parent's death sends it.
        ASSERT_EQ(kill_process(late.field("pid")->integer, SIGSTOP), 0);
        first.stop(SIGKILL);
    }
    ASSERT_FALSE(wait_readable(late_pidfd.get(), 0ms)) << "the stopped bucket should still be there";

    RegistryDaemon next({}, directory.path());
    // (Any registryd of ours that starts now may be the one that kills it.)
    EXPECT_TRUE(wait_readable(late_pidfd.get(), 5s)) << "a leftover bucket survived the next registryd's start";
    EXPECT_FALSE(wait_readable(bystander_pidfd.get(), 0ms)) << "an unrelated process was killed";
    kill_process(bystander_pid, SIGKILL);

    // Ids restart, names do not: the new bucket 1 has a socket of its own.
    auto fresh = next.create("fresh");
    EXPECT_EQ(fresh.field("id")->integer, 1);
    EXPECT_NE(fresh.field("socket")->text, late_socket);
    EXPECT_EQ(kvctl(directory.path(), { "put", "fresh", "k", "v" }).exit_code, 0);
}

TEST_F(Trust, ANameTableIsNotTrustedOnceItsRegistrydIsDeadEvenWithItsPidReused)
{
    // A private pid namespace, so the dead registryd's pid can be handed to
    // another process on purpose (ns_last_pid) instead of by luck.
    TemporaryDirectory directory;
    const std::string script = R"sh(
        bin=$1 dir=$2
        mkfifo "$dir.ready"
        "$bin/registryd" --run-dir "$dir" --notify-fd 3 3>"$dir.ready" 2>"$dir.log" &
        registry=$!
        read ready < "$dir.ready"
        "$bin/kvctl" --run-dir "$dir" create shopping >/dev/null || exit 10
        bucket=$("$bin/kvctl" --run-dir "$dir" lookup shopping) || exit 11
        [ -n "$bucket" ] || exit 14
        started=$(cut -d' ' -f22 /proc/$registry/stat)
        # The bucket goes first, by SIGKILL: left to exit on the SIGTERM its
        # parent's death sends, it would run its exit handlers while the pid
        # is handed over, and under LeakSanitizer those start a thread, which
        # can take the very pid this test hands to the impostor. registryd is
        # stopped before, so it cannot see that exit and withdraw the name:
        # the table must still hold it when the lookup below is refused.
        kill -STOP $registry
        kill -9 $bucket
        kill -9 $registry
        wait $registry
        # A process is its pid and its start time in clock ticks (10 ms). A pid
        # comes round by itself only after the whole pid space, so the
        # impostor must start in a later tick than registryd did, as any real
        # one would: one started within registryd's tick is sent away and the
        # pid handed over again.
        tries=0
        while :; do
            echo $((registry - 1)) > /proc/sys/kernel/ns_last_pid
            sleep 300 &
            impostor=$!
            [ "$impostor" = "$registry" ] || exit 12
            [ "$(cut -d' ' -f22 /proc/$impostor/stat)" != "$started" ] && break
            kill $impostor
            wait $impostor
            tries=$((tries + 1))
            [ $tries -lt 10000 ] || exit 13
        done
        "$bin/kvctl" --run-dir "$dir" lookup shopping
        echo "exit $?"
        kill $impostor
    )sh";
    const auto unshare = find_program("unshare");
    KV_REQUIRE(!unshare.empty(), "unshare on PATH (util-linux)");
    auto result = run_program({ unshare, "--pid", "--fork", "--mount-proc", "/bin/sh", "-c", script, "sh",
        std::string(KV_BIN_DIR), directory.path() + "/run" });
    ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
    EXPECT_EQ(result.out, "exit 3\n") << result.err;
    EXPECT_NE(result.err.find("unable to reach registryd"), std::string::npos) << result.err;

    // Whatever the dead one left in /dev/shm goes with the next registryd.
    const std::string dead = instance_of(directory.path() + "/run");
    ASSERT_FALSE(dead.empty());
    RegistryDaemon next({}, directory.path() + "/run");
    EXPECT_TRUE(segments_with_prefix(kv::segment_prefix(dead)).empty());
}

TEST_F(Trust, FilesPlantedInTheRunDirAreNeitherFollowedNorRemoved)
{
    TemporaryDirectory directory;
    ASSERT_EQ(::mkdir((directory.path() + "/buckets").c_str(), 0700), 0);
    std::ofstream(directory.path() + "/buckets/x.sock") << "precious";
    std::ofstream(directory.path() + "/target") << "precious";
    ASSERT_EQ(::symlink((directory.path() + "/target").c_str(), (directory.path() + "/registry.lock").c_str()), 0);

    auto refused = run_program({ binary("registryd"), "--run-dir", directory.path() });
    EXPECT_EQ(refused.exit_code, 1);
    EXPECT_NE(refused.err.find("unable to use lock file " + directory.path() + "/registry.lock: it is a symbolic link; remove it"),
        std::string::npos) << refused.err;
    std::ifstream target(directory.path() + "/target");
    EXPECT_EQ(std::string((std::istreambuf_iterator<char>(target)), std::istreambuf_iterator<char>()), "precious");

    ASSERT_EQ(::unlink((directory.path() + "/registry.lock").c_str()), 0);
    {
        RegistryDaemon daemon({}, directory.path());
        daemon.create("a");
        daemon.stop(SIGKILL);
    }
    RegistryDaemon next({}, directory.path()); // sweeps what the killed one left
    EXPECT_TRUE(exists(directory.path() + "/buckets/x.sock")) << "a file that is no socket of ours was removed";
}

TEST_F(Trust, ADeadInstanceWhoseRunDirIsGoneIsSweptByAnyLaterRegistrydOfOurs)
{
    kv::UniqueFd late_pidfd;
    std::string dead;
    {
        TemporaryDirectory directory;
        RegistryDaemon first({}, directory.path());
        auto late = first.create("late");
        late_pidfd = open_pidfd(static_cast<pid_t>(late.field("pid")->integer));
        ASSERT_EQ(kill_process(late.field("pid")->integer, SIGSTOP), 0);
        dead = first.instance();
        first.stop(SIGKILL);
        first.leave_leftovers();
    } // and its run dir, with the record, is removed
    ASSERT_FALSE(segments_with_prefix(kv::segment_prefix(dead)).empty());

    RegistryDaemon elsewhere;
    // (Another registryd of ours starting meanwhile may be the one sweeping:
    // the outcome is what counts, and it comes once that sweep is done.)
    EXPECT_TRUE(wait_readable(late_pidfd.get(), 5s)) << "a dead instance's stopped bucket survived";
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!segments_with_prefix(kv::segment_prefix(dead)).empty() && std::chrono::steady_clock::now() < deadline)
        std::this_thread::yield();
    EXPECT_TRUE(segments_with_prefix(kv::segment_prefix(dead)).empty()) << "a dead instance's segments stayed";
    // A live instance is never taken for a dead one.
    auto bucket = elsewhere.create("alive");
    RegistryDaemon another;
    EXPECT_EQ(elsewhere.call({ "LOOKUP", "alive" }).field("pid")->integer, bucket.field("pid")->integer);
    EXPECT_EQ(bucket_segments(elsewhere.run_dir()).size(), 1u);
}
