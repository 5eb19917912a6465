// spawn_bucket with stand-ins for bucketd: what the child starts with, and
// that a set-up failure's reason reaches registryd (README "Processes").
#include "spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "unique_fd.h"

namespace {

std::string temp_dir()
{
    char path[] = "/tmp/kv.spawntest.XXXXXX";
    EXPECT_NE(mkdtemp(path), nullptr);
    return path;
}

sigset_t current_mask()
{
    sigset_t mask;
    pthread_sigmask(SIG_SETMASK, nullptr, &mask);
    return mask;
}

bool same_mask(const sigset_t& a, const sigset_t& b)
{
    for (int signal = 1; signal < NSIG; ++signal) {
        if (sigismember(&a, signal) != sigismember(&b, signal))
            return false;
    }
    return true;
}

// A launch of `program` with descriptors that exist: /dev/null stands for the
// segment and the listening socket.
struct Launch {
    explicit Launch(std::string program, std::string name)
        : segment(open("/dev/null", O_RDONLY | O_CLOEXEC))
        , listener(open("/dev/null", O_RDONLY | O_CLOEXEC))
    {
        launch.bucketd_path = std::move(program);
        launch.name = std::move(name);
        launch.environment.instance = "spawntest";
        launch.environment.segment_name = "/kv.spawntest";
        launch.environment.segment_fd = segment.get();
        launch.environment.socket_path = "/nonexistent/spawntest.sock";
        launch.environment.listen_fd = listener.get();
        launch.environment.bucket_size = 1 << 20;
    }
    kv::UniqueFd segment, listener;
    kv::BucketLaunch launch;
};

} // namespace

TEST(SpawnBucket, ChildStartsWithNoSignalBlockedAndTheCallersMaskIsRestored)
{
    const std::string dir = temp_dir();
    const std::string script = dir + "/mask.sh";
    const std::string out = dir + "/mask";
    {
        std::ofstream file(script);
        file << "grep SigBlk /proc/self/status > " << out << ".tmp && mv " << out << ".tmp " << out << "\n";
    }
    // argv is {"bucketd", name}: /bin/sh runs `name` as its script.
    Launch launch("/bin/sh", script);
    sigset_t blocked;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGUSR1);
    sigset_t before;
    ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &blocked, &before), 0);
    const sigset_t caller_mask = current_mask();
    kv::SpawnedBucket child = kv::spawn_bucket(launch.launch);
    EXPECT_TRUE(same_mask(current_mask(), caller_mask)) << "the caller's mask is restored after the spawn";
    pthread_sigmask(SIG_SETMASK, &before, nullptr);
    ASSERT_GT(child.pid, 0);
    int status = 0;
    ASSERT_EQ(waitpid(child.pid, &status, 0), child.pid); // the test's synchronisation: the child's exit
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    std::ifstream result(out);
    std::stringstream text;
    text << result.rdbuf();
    EXPECT_EQ(text.str(), "SigBlk:\t0000000000000000\n") << "neither ours (SIGUSR1) nor the all-blocked mask of the spawn";
    std::remove(out.c_str());
    std::remove(script.c_str());
    rmdir(dir.c_str());
}

TEST(SpawnBucket, ASetUpFailureInTheChildArrivesWithItsReasonAndLeavesNoZombie)
{
    Launch launch("/bin/true", "broken");
    // A descriptor the child cannot pass on: its fcntl fails with EBADF,
    // which must reach us through the shared variable, not errno.
    launch.launch.environment.listen_fd = 1 << 20;
    const sigset_t caller_mask = current_mask();
    try {
        kv::spawn_bucket(launch.launch);
        FAIL() << "a child whose set-up failed was reported started";
    } catch (const std::runtime_error& error) {
        EXPECT_NE(std::string(error.what()).find(std::strerror(EBADF)), std::string::npos) << error.what();
        EXPECT_NE(std::string(error.what()).find("unable to prepare"), std::string::npos) << error.what();
    }
    EXPECT_TRUE(same_mask(current_mask(), caller_mask)) << "the caller's mask is restored on failure too";
    errno = 0;
    EXPECT_EQ(waitpid(-1, nullptr, WNOHANG), -1);
    EXPECT_EQ(errno, ECHILD) << "the failed child was reaped";
}

TEST(SpawnBucket, AProgramThatCannotBeExecutedIsAnErrorAndLeavesNoZombie)
{
    Launch launch("/nonexistent/bucketd", "missing");
    EXPECT_THROW(kv::spawn_bucket(launch.launch), std::runtime_error);
    errno = 0;
    EXPECT_EQ(waitpid(-1, nullptr, WNOHANG), -1);
    EXPECT_EQ(errno, ECHILD);
}
