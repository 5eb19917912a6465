// The etcd fixture itself (etcd_fixture.h), against Debian's real etcd: what
// the cluster-mode tests rely on it for. Each test fails if the fixture
// leaves a member running, reads through a dead member, or loses a restart.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <stdexcept>

#include <gtest/gtest.h>

#include "etcd_fixture.h"

namespace kv::test {
namespace {

// True once the process behind `pidfd` is gone and reaped: a pidfd turns
// readable when its process exits, and kill(pid, 0) fails once no process,
// not even a zombie, holds the pid.
bool gone(int pidfd, pid_t pid)
{
    return wait_readable(pidfd, 0ms) && ::kill(pid, 0) == -1 && errno == ESRCH;
}

TEST(EtcdFixture, OneMemberStoresWhatIsPutAndLeavesNothingBehind)
{
    KV_REQUIRE(etcd_missing().empty(), etcd_missing());
    UniqueFd pidfd;
    pid_t pid = -1;
    std::string data_dir;
    {
        EtcdCluster etcd;
        ASSERT_EQ(etcd.members(), 1u);
        ASSERT_TRUE(etcd.running(0));
        EXPECT_EQ(etcd.client_urls(), etcd.client_url(0));
        EXPECT_EQ(etcd.client_url(0).rfind("http://127.0.0.1:", 0), 0u) << etcd.client_url(0);
        pid = etcd.pid(0);
        pidfd = open_pidfd(pid);
        ASSERT_TRUE(pidfd) << "no etcd process " << pid;
        data_dir = etcd.data_dir(0);
        ASSERT_TRUE(std::filesystem::is_directory(data_dir)) << data_dir;

        // Raw gateway call, then the fixture's helper; keys beside the prefix stay out.
        etcd.post("/v3/kv/put", R"({"key":"L2t2L2E=","value":"b25l"})"); // "/kv/a" = "one"
        etcd.put("/kv/b", "two");
        etcd.put("/kw", "beside the prefix");
        etcd.put("/kv", "the prefix itself, not under it");
        const std::map<std::string, std::string> expected { { "/kv/a", "one" }, { "/kv/b", "two" } };
        EXPECT_EQ(etcd.range_prefix("/kv/"), expected);
        EXPECT_TRUE(etcd.range_prefix("/none/").empty());
        // A path the gateway does not serve is an error, not an empty body.
        EXPECT_THROW(etcd.post("/v3/kv/nothing", "{}"), std::runtime_error);
        EXPECT_FALSE(gone(pidfd.get(), pid));
    }
    EXPECT_TRUE(gone(pidfd.get(), pid)) << "etcd " << pid << " outlived its fixture";
    EXPECT_FALSE(std::filesystem::exists(data_dir)) << data_dir;
}

TEST(EtcdFixture, ThreeMembersServeWithOneDownAndItCatchesUpOnRestart)
{
    KV_REQUIRE(etcd_missing().empty(), etcd_missing());
    EtcdCluster etcd(EtcdOptions { 3 });
    ASSERT_EQ(etcd.members(), 3u);
    for (std::size_t i = 0; i < 3; ++i)
        ASSERT_TRUE(etcd.running(i)) << i;
    EXPECT_EQ(etcd.client_urls(), etcd.client_url(0) + "," + etcd.client_url(1) + "," + etcd.client_url(2));

    etcd.post_to(0, "/v3/kv/put", R"({"key":"L2t2L2E=","value":"b25l"})"); // "/kv/a" = "one"
    const pid_t killed = etcd.pid(1);
    UniqueFd pidfd = open_pidfd(killed);
    etcd.kill_member(1);
    EXPECT_FALSE(etcd.running(1));
    EXPECT_TRUE(gone(pidfd.get(), killed));
    EXPECT_THROW(etcd.post_to(1, "/v3/kv/range", "{}"), std::runtime_error);

    // Two of three are a quorum: writes and reads go on, around the dead member.
    etcd.put("/kv/b", "two");
    const std::map<std::string, std::string> both { { "/kv/a", "one" }, { "/kv/b", "two" } };
    EXPECT_EQ(etcd.range_prefix("/kv/"), both);

    etcd.restart_all();
    for (std::size_t i = 0; i < 3; ++i)
        EXPECT_TRUE(etcd.running(i)) << i;
    // Member 1 was down for the second put: its own answer shows it caught up.
    // etcd's default range is linearizable, so a member answers only once it
    // has applied everything the leader committed before the read.
    EXPECT_EQ(etcd.range_prefix_on(1, "/kv/"), both);
}

TEST(EtcdFixture, DataOutlivesStoppingEveryMember)
{
    KV_REQUIRE(etcd_missing().empty(), etcd_missing());
    EtcdCluster etcd;
    etcd.put("/kv/kept", "across a full stop");
    const std::string url = etcd.client_url(0);

    etcd.stop_all();
    EXPECT_FALSE(etcd.running(0));
    EXPECT_THROW(etcd.post("/v3/kv/range", "{}"), std::runtime_error);
    EXPECT_THROW(etcd.post_to(0, "/v3/kv/range", "{}"), std::runtime_error);

    etcd.restart_all();
    EXPECT_TRUE(etcd.running(0));
    EXPECT_EQ(etcd.client_url(0), url);
    const std::map<std::string, std::string> kept { { "/kv/kept", "across a full stop" } };
    EXPECT_EQ(etcd.range_prefix("/kv/"), kept);
}

TEST(EtcdFixture, ASignalOtherThanKillEndsAMemberToo)
{
    KV_REQUIRE(etcd_missing().empty(), etcd_missing());
    EtcdCluster etcd;
    etcd.kill_member(0, SIGTERM);
    EXPECT_FALSE(etcd.running(0));
    EXPECT_THROW(etcd.kill_member(0), std::logic_error);
    etcd.restart_all();
    EXPECT_TRUE(etcd.running(0));
    EXPECT_TRUE(etcd.range_prefix("").empty());
}

TEST(EtcdFixture, MembersDieWithATestKilledBeforeItsDestructors)
{
    KV_REQUIRE(etcd_missing().empty(), etcd_missing());
    // A child process stands for a test that ctest's timeout kills: it
    // starts a cluster, reports the member's pid and data dir, and waits.
    Pipe report = make_pipe("etcd member report");
    const pid_t test = ::fork();
    ASSERT_NE(test, -1);
    if (test == 0) {
        try {
            EtcdCluster etcd;
            const std::string line = std::to_string(etcd.pid(0)) + " " + etcd.data_dir(0) + "\n";
            if (::write(report.write_end.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size()))
                ::_exit(1);
            ::pause();
        } catch (...) {
        }
        ::_exit(1);
    }
    report.write_end.reset();
    UniqueFd test_pidfd = open_pidfd(test);
    std::string line;
    char buffer[512];
    while (line.find('\n') == std::string::npos && wait_readable(report.read_end.get(), scaled(30s))) {
        auto n = ::read(report.read_end.get(), buffer, sizeof buffer);
        if (n <= 0)
            break;
        line.append(buffer, static_cast<std::size_t>(n));
    }
    kill_process(test, SIGKILL);
    ::waitpid(test, nullptr, 0);
    ASSERT_NE(line.find('\n'), std::string::npos) << "the child started no etcd";
    const pid_t member = static_cast<pid_t>(std::stoll(line));
    const std::string data_dir = line.substr(line.find(' ') + 1, line.find('\n') - line.find(' ') - 1);
    // Its temporary directory, which no destructor removed.
    const auto cleanup = std::filesystem::path(data_dir).parent_path();
    UniqueFd member_pidfd = open_pidfd(member);
    // pidfd_open fails (ESRCH) if the member was already gone and reaped by init.
    const bool exited = !member_pidfd || wait_readable(member_pidfd.get(), scaled(10s));
    if (!exited)
        kill_process(member, SIGKILL);
    std::filesystem::remove_all(cleanup);
    EXPECT_TRUE(exited) << "etcd " << member << " outlived the test that started it";
}

} // namespace
} // namespace kv::test
