#include "run_dir.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

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

TEST(RunDir, FallsBackToXdgRuntimeDirThenUid)
{
    Environment kv("KV_RUN_DIR", nullptr);
    {
        Environment xdg("XDG_RUNTIME_DIR", "/run/user/1000");
        EXPECT_EQ(kv::resolve_run_dir(""), "/run/user/1000/kv");
    }
    Environment xdg("XDG_RUNTIME_DIR", nullptr);
    EXPECT_EQ(kv::resolve_run_dir(""), geteuid() == 0 ? "/run/kv" : "/tmp/kv-" + std::to_string(geteuid()));
}

TEST(RunDir, PreparedDirectoryIsPrivate)
{
    char base[] = "/tmp/kv-run-dir-test-XXXXXX";
    ASSERT_NE(mkdtemp(base), nullptr);
    std::string dir = std::string(base) + "/run";
    ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
    kv::prepare_run_dir(dir);
    struct stat info;
    ASSERT_EQ(stat(dir.c_str(), &info), 0);
    EXPECT_EQ(info.st_mode & 0777, 0700u);
    ASSERT_EQ(stat((dir + "/buckets").c_str(), &info), 0);
    EXPECT_EQ(info.st_mode & 0777, 0700u);
    rmdir((dir + "/buckets").c_str());
    rmdir(dir.c_str());
    rmdir(base);
}

TEST(RunDir, SegmentNamesComeFromRunDirAndIdsOnly)
{
    auto a = kv::segment_name("/tmp/a", 100, 7);
    auto b = kv::segment_name("/tmp/b", 100, 7);
    EXPECT_NE(a, b);
    EXPECT_EQ(a.rfind(kv::segment_prefix("/tmp/a"), 0), 0u);
    EXPECT_EQ(a.substr(a.size() - 6), ".100.7");
    EXPECT_EQ(a.find('/', 1), std::string::npos);
}

TEST(RunDir, RefusesSocketPathTooLong)
{
    EXPECT_THROW(kv::check_socket_path_length("/" + std::string(200, 'x')), std::runtime_error);
    EXPECT_NO_THROW(kv::check_socket_path_length("/tmp/kv/registry.sock"));
}
