// Who may talk to kv: the run dir is 0700, sockets and segments 0600, and
// every connection's peer is checked with SO_PEERCRED. Tested with a second
// uid (nobody, through setpriv), as a user on a shared machine would try.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <optional>

#include <gtest/gtest.h>

#include "daemon_fixture.h"
#include "run_dir.h"

using namespace kv::test;

namespace {

class Access : public ::testing::Test {
protected:
    void SetUp() override
    {
        KV_REQUIRE(SecondUser::missing().empty(), SecondUser::missing());
        nobody_.emplace();
    }

    ProgramResult as_nobody(const std::vector<std::string>& command, const std::string& groups = "")
    {
        return nobody_->run(command, groups);
    }

    ProgramResult kvctl_as_nobody(const RegistryDaemon& daemon, std::vector<std::string> arguments, const std::string& groups = "")
    {
        arguments.insert(arguments.begin(), { nobody_->program("kvctl"), "--run-dir", daemon.run_dir() });
        return as_nobody(arguments, groups);
    }

    std::optional<SecondUser> nobody_;
};

mode_t mode_of(const std::string& path)
{
    struct stat info {};
    ::stat(path.c_str(), &info);
    return info.st_mode & 07777;
}

} // namespace

TEST_F(Access, RunDirSocketsAndSegmentsArePrivate)
{
    RegistryDaemon daemon;
    auto bucket = daemon.create("secret");
    EXPECT_EQ(mode_of(daemon.run_dir()), 0700u);
    EXPECT_EQ(mode_of(daemon.run_dir() + "/buckets"), 0700u);
    EXPECT_EQ(mode_of(kv::registry_socket_path(daemon.run_dir())), 0600u);
    EXPECT_EQ(mode_of(bucket.field("socket")->text), 0600u);
    auto segments = bucket_segments(daemon.run_dir());
    ASSERT_EQ(segments.size(), 1u);
    EXPECT_EQ(mode_of("/dev/shm/" + segments[0]), 0600u);

    // registryd is running: kvctl says it may not reach it (exit 4), and what to do, not "is registryd running?".
    auto denied = kvctl_as_nobody(daemon, { "lookup", "secret" });
    EXPECT_EQ(denied.exit_code, 4);
    EXPECT_EQ(denied.err, "kvctl: unable to reach registryd at " + kv::registry_socket_path(daemon.run_dir())
            + ": Permission denied (uid 65534 may not use this run dir: use a run dir of your own, or ask its owner "
              "to start registryd with --allow-uid or --allow-gid)\n");
    // Reading another user's segment directly fails too.
    auto peek = as_nobody({ "/bin/cat", "/dev/shm/" + segments[0] });
    EXPECT_NE(peek.exit_code, 0);
    EXPECT_NE(peek.err.find("Permission denied"), std::string::npos) << peek.err;
}

TEST_F(Access, PeerCredentialsRefuseOtherUsersEvenWhenTheFilesAreOpen)
{
    const auto redis_cli = find_program("redis-cli");
    KV_REQUIRE(!redis_cli.empty(), "redis-cli on PATH (the quick start installs redis-tools)");
    RegistryDaemon daemon;
    auto bucket = daemon.create("secret");
    kv::Client::connect(bucket.field("socket")->text).call({ "SET", "k", "v" });
    // Someone loosened the permissions: SO_PEERCRED still says no.
    for (const auto& directory : { daemon.run_dir(), daemon.run_dir() + "/buckets" })
        ::chmod(directory.c_str(), 0711);
    for (const auto& socket : { kv::registry_socket_path(daemon.run_dir()), bucket.field("socket")->text })
        ::chmod(socket.c_str(), 0666);

    auto lookup = kvctl_as_nobody(daemon, { "lookup", "secret" });
    EXPECT_EQ(lookup.exit_code, 4);
    EXPECT_EQ(lookup.err, "kvctl: unable to look up bucket secret: permission denied: uid 65534 is not allowed here "
                          "(see registryd --allow-uid, --allow-gid)\n");
    auto redis = as_nobody({ redis_cli, "-s", bucket.field("socket")->text, "GET", "k" });
    EXPECT_EQ(redis.out.find("v\n"), std::string::npos) << redis.out;
    EXPECT_NE((redis.out + redis.err).find("permission denied: uid 65534"), std::string::npos) << redis.out << redis.err;
    EXPECT_NE(daemon.log().find("refused a client of"), std::string::npos);
    EXPECT_NE(daemon.log().find(", uid 65534)"), std::string::npos) << "the refusal names who was refused: " << daemon.log();
}

TEST_F(Access, AllowUidServesThatUserOnEverySocketButNotTheSegments)
{
    RegistryDaemon daemon({ "--allow-uid", std::to_string(SecondUser::uid) });
    EXPECT_EQ(mode_of(daemon.run_dir()), 0711u);
    auto create = kvctl_as_nobody(daemon, { "create", "shared" });
    ASSERT_EQ(create.exit_code, 0) << create.err;
    EXPECT_EQ(kvctl_as_nobody(daemon, { "put", "shared", "milk", "1" }).exit_code, 0);
    EXPECT_EQ(kvctl_as_nobody(daemon, { "get", "shared", "milk" }).out, "1\n");
    auto segments = bucket_segments(daemon.run_dir());
    ASSERT_EQ(segments.size(), 1u);
    EXPECT_NE(as_nobody({ "/bin/cat", "/dev/shm/" + segments[0] }).exit_code, 0);
}

TEST_F(Access, ABucketSocketNotOursToUseIsARefusalNotAGoneBucket)
{
    RegistryDaemon daemon({ "--allow-uid", std::to_string(SecondUser::uid) });
    auto bucket = daemon.create("shared");
    // The registry admits nobody; this bucket's socket does not (its mode, not SO_PEERCRED).
    ASSERT_EQ(::chmod(bucket.field("socket")->text.c_str(), 0600), 0);
    auto put = kvctl_as_nobody(daemon, { "put", "shared", "milk", "1" });
    EXPECT_EQ(put.exit_code, 4) << put.err;
    EXPECT_EQ(put.err, "kvctl: unable to put milk in bucket shared: " + bucket.field("socket")->text + ": Permission denied\n");
}

TEST_F(Access, AllowGidServesMembersOfThatGroupOnly)
{
    RegistryDaemon daemon({ "--allow-gid", "4242" });
    EXPECT_EQ(kvctl_as_nobody(daemon, { "create", "team" }, "4242").exit_code, 0);
    auto outsider = kvctl_as_nobody(daemon, { "lookup", "team" });
    EXPECT_EQ(outsider.exit_code, 4) << outsider.err;
}
