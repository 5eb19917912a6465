#include "run_dir.h"

#include <unistd.h>

#include <filesystem>

#include "instance_record.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include "require.h"

namespace {

struct Environment {
    Environment(const char* name, const char* value) : name_(name)
    {
        if (const char* old = getenv(name))
            old_ = old;
        if (value)
            setenv(name, value, 1);
        else
            unsetenv(name);
    }
    ~Environment()
    {
        if (old_.empty())
            unsetenv(name_);
        else
            setenv(name_, old_.c_str(), 1);
    }
    const char* name_;
    std::string old_;
};

} // namespace

TEST(RunDir, FlagWinsOverEnvironment)
{
    Environment kv("KV_RUN_DIR", "/from/env");
    EXPECT_EQ(kv::resolve_run_dir("/from/flag"), "/from/flag");
    EXPECT_EQ(kv::resolve_run_dir(""), "/from/env");
}

TEST(RunDir, FallsBackToXdgRuntimeDirThenPlacesNoOtherUserCanMakeFirst)
{
    Environment kv("KV_RUN_DIR", nullptr);
    {
        Environment xdg("XDG_RUNTIME_DIR", "/run/user/1000");
        EXPECT_EQ(kv::resolve_run_dir(""), "/run/user/1000/kv");
    }
    Environment xdg("XDG_RUNTIME_DIR", nullptr);
    KV_REQUIRE_ROOT("to ask as another user");
    EXPECT_EQ(kv::resolve_run_dir(""), "/run/kv");

    // Another user without XDG_RUNTIME_DIR (cron, ssh without logind): its
    // home, not a name in /tmp that anyone could make first.
    char home[] = "/tmp/kv-home-XXXXXX";
    ASSERT_NE(mkdtemp(home), nullptr);
    ASSERT_EQ(chown(home, 65534, 65534), 0);
    int answer[2];
    ASSERT_EQ(pipe(answer), 0);
    pid_t child = fork();
    if (child == 0) {
        if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0)
            _exit(1);
        setenv("HOME", home, 1);
        std::string first = kv::resolve_run_dir("");
        setenv("HOME", "/nonexistent", 1);
        std::string second = kv::resolve_run_dir("");
        std::string both = first + "\n" + second;
        _exit(write(answer[1], both.data(), both.size()) == static_cast<ssize_t>(both.size()) ? 0 : 1);
    }
    close(answer[1]);
    char buffer[512] = {};
    ssize_t size = read(answer[0], buffer, sizeof buffer - 1);
    close(answer[0]);
    int status = 0;
    waitpid(child, &status, 0);
    rmdir(home);
    ASSERT_GT(size, 0);
    EXPECT_EQ(std::string(buffer), std::string(home) + "/.kv\n/tmp/kv-65534");
}

namespace {

// A scratch directory under /tmp, removed with what the test left in it.
struct Scratch {
    Scratch()
    {
        char base[] = "/tmp/kv-run-dir-test-XXXXXX";
        if (!mkdtemp(base))
            throw std::runtime_error("mkdtemp failed");
        path = base;
    }
    ~Scratch() { std::filesystem::remove_all(path); }
    std::string path;
};

mode_t mode_of(const std::string& path)
{
    struct stat info {};
    lstat(path.c_str(), &info);
    return info.st_mode & 07777;
}

} // namespace

TEST(RunDir, PreparedDirectoryIsPrivate)
{
    Scratch scratch;
    std::string dir = scratch.path + "/run";
    ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
    auto prepared = kv::RunDir::prepare(dir);
    EXPECT_EQ(mode_of(dir), 0755u) << "prepare() changes nothing that exists";
    EXPECT_EQ(mode_of(dir + "/buckets"), 0700u);
    EXPECT_EQ(prepared.owner(), geteuid());
    prepared.set_access(kv::RunDirAccess::owner_only);
    EXPECT_EQ(mode_of(dir), 0700u);
    prepared.set_access(kv::RunDirAccess::traversable_by_others);
    EXPECT_EQ(mode_of(dir), 0711u);
    EXPECT_EQ(mode_of(dir + "/buckets"), 0711u);
}

TEST(RunDir, NeitherSideFollowsASymbolicLink)
{
    Scratch scratch;
    ASSERT_EQ(mkdir((scratch.path + "/real").c_str(), 0700), 0);
    ASSERT_EQ(symlink((scratch.path + "/real").c_str(), (scratch.path + "/link").c_str()), 0);
    EXPECT_THROW(kv::RunDir::prepare(scratch.path + "/link"), std::runtime_error);
    EXPECT_THROW(kv::RunDir::open_trusted(scratch.path + "/link"), std::runtime_error);
    // And prepare() does not follow a link planted where buckets/ goes.
    ASSERT_EQ(symlink((scratch.path + "/real").c_str(), (scratch.path + "/real/buckets").c_str()), 0);
    EXPECT_THROW(kv::RunDir::prepare(scratch.path + "/real"), std::runtime_error);
}

TEST(RunDir, ClientsRefuseADirectoryOthersOwnOrMayWrite)
{
    KV_REQUIRE_ROOT("to make a directory another user owns");
    Scratch scratch;
    std::string theirs = scratch.path + "/theirs";
    ASSERT_EQ(mkdir(theirs.c_str(), 0700), 0);
    ASSERT_EQ(chown(theirs.c_str(), 65534, 65534), 0);
    try {
        kv::RunDir::open_trusted(theirs);
        ADD_FAILURE() << "trusted a run directory owned by uid 65534";
    } catch (const std::runtime_error& error) {
        EXPECT_STREQ(error.what(), ("unable to use run directory " + theirs
            + ": owned by uid 65534, neither by us (uid 0) nor by root; another user may have made it").c_str());
    }
    EXPECT_THROW(kv::RunDir::prepare(theirs), std::runtime_error);
    std::string shared = scratch.path + "/shared";
    ASSERT_EQ(mkdir(shared.c_str(), 0700), 0);
    ASSERT_EQ(chmod(shared.c_str(), 0777), 0);
    EXPECT_THROW(kv::RunDir::open_trusted(shared), std::runtime_error);
    ASSERT_EQ(chmod(shared.c_str(), 0711), 0);
    EXPECT_EQ(kv::RunDir::open_trusted(shared).owner(), 0u);
}

TEST(RunDir, NoticesWhenItsPathIsRemovedOrReplaced)
{
    Scratch scratch;
    std::string path = scratch.path + "/run";
    auto dir = kv::RunDir::prepare(path);
    EXPECT_EQ(dir.lost(), std::nullopt);
    std::filesystem::remove_all(path);
    ASSERT_TRUE(dir.lost());
    EXPECT_EQ(*dir.lost(), "was removed");
    ASSERT_EQ(mkdir(path.c_str(), 0700), 0);
    ASSERT_TRUE(dir.lost());
    EXPECT_EQ(*dir.lost(), "was replaced by another directory");
}

TEST(RunDir, SharedMemoryNamesAreUnguessableAndCarryTheInstance)
{
    auto instance = kv::new_instance_id();
    EXPECT_EQ(instance.size(), 16u);
    EXPECT_NE(instance, kv::new_instance_id());
    auto a = kv::new_segment_name(instance, "b7");
    auto b = kv::new_segment_name(instance, "b7");
    EXPECT_NE(a, b) << "two segments of the same bucket id must not share a name";
    EXPECT_EQ(a.rfind(kv::segment_prefix(instance) + "b7.", 0), 0u);
    EXPECT_EQ(a.size(), kv::segment_prefix(instance).size() + 3 + 16);
    EXPECT_EQ(a.find('/', 1), std::string::npos);
    EXPECT_EQ(kv::bucket_socket_name(instance, 7), "7." + instance + ".sock");
}

TEST(InstanceRecord, RoundTripsAndRefusesWhatItWouldNotWrite)
{
    kv::InstanceRecord record { 4200, "0123456789abcdef", "/kv.0123456789abcdef.names.fedcba9876543210" };
    EXPECT_EQ(kv::decode_instance_record(kv::encode(record)), record);
    EXPECT_EQ(kv::decode_instance_record(""), std::nullopt);
    auto text = kv::encode(record);
    EXPECT_EQ(kv::decode_instance_record(text.substr(0, text.size() - 1)), std::nullopt) << "torn write";
    // A record must not point a client at a segment outside the instance.
    record.names_segment = "/kv.ffffffffffffffff.names.fedcba9876543210";
    EXPECT_EQ(kv::decode_instance_record(kv::encode(record)), std::nullopt);
    record.names_segment = "/kv.0123456789abcdef.names/../x";
    EXPECT_EQ(kv::decode_instance_record(kv::encode(record)), std::nullopt);
    record.names_segment = "/kv.0123456789abcdef.names.fedcba9876543210";
    record.instance = "0123456789ABCDEF";
    EXPECT_EQ(kv::decode_instance_record(kv::encode(record)), std::nullopt);
}

TEST(RunDir, RefusesSocketPathTooLong)
{
    EXPECT_THROW(kv::check_socket_path_length("/" + std::string(200, 'x')), std::runtime_error);
    EXPECT_NO_THROW(kv::check_socket_path_length("/tmp/kv/registry.sock"));
}
