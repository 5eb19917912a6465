// The etcd fixture itself (etcd_fixture.h), against Debian's real etcd: what
// the cluster-mode tests rely on it for. Each test fails if the fixture
// leaves a member running, reads through a dead member, or loses a restart.
#include <signal.h>
#include <sys/stat.h>

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

} // namespace
} // namespace kv::test
