#include "process_identity.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "unique_fd.h"

namespace {

// A child that names itself `comm` (if given), says so, and waits until
// `release` is closed, then exits. Returns once the child has said so.
pid_t spawn_waiting_child(kv::Pipe& release, const char* comm = nullptr)
{
    kv::Pipe ready = kv::make_pipe("ready");
    pid_t child = fork();
    if (child == 0) {
        if (comm)
            prctl(PR_SET_NAME, comm);
        release.write_end.reset();
        char byte = 1;
        if (write(ready.write_end.get(), &byte, 1) != 1)
            _exit(2);
        (void)read(release.read_end.get(), &byte, 1);
        _exit(0);
    }
    release.read_end.reset();
    ready.write_end.reset();
    char byte = 0;
    if (child > 0 && read(ready.read_end.get(), &byte, 1) != 1)
        return -1;
    return child;
}

std::string comm_of(pid_t pid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
    std::string comm;
    std::getline(in, comm);
    return comm;
}

} // namespace

TEST(ProcessIdentity, IdentifiesItself)
{
    auto self = kv::self_identity();
    EXPECT_EQ(self.pid, getpid());
    EXPECT_GT(self.start_time, 0u);
    auto identified = kv::identify_process(getpid());
    ASSERT_TRUE(identified);
    EXPECT_EQ(identified->pid, self.pid);
    EXPECT_EQ(identified->start_time, self.start_time);
    EXPECT_TRUE(kv::is_running(self));
    EXPECT_FALSE(kv::is_running({ self.pid, self.start_time + 1 })) << "the same pid started at another time is another process";
    EXPECT_FALSE(kv::identify_process(0));
    EXPECT_FALSE(kv::identify_process(-1));
    EXPECT_FALSE(kv::is_running({}));
}

TEST(ProcessIdentity, ChildThatExitedIsNotRunningWhileAZombieAndNotIdentifiedOnceReaped)
{
    kv::Pipe release = kv::make_pipe("release");
    pid_t child = spawn_waiting_child(release);
    ASSERT_GT(child, 0);
    auto identity = kv::identify_process(child);
    ASSERT_TRUE(identity);
    EXPECT_GE(identity->start_time, kv::self_identity().start_time);
    EXPECT_TRUE(kv::is_running(*identity));

    release.write_end.reset();
    siginfo_t info {};
    ASSERT_EQ(waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT), 0);
    ASSERT_EQ(kill(child, 0), 0) << "a zombie answers kill(pid, 0)";
    auto zombie = kv::identify_process(child);
    ASSERT_TRUE(zombie) << "a zombie still holds its pid";
    EXPECT_EQ(zombie->start_time, identity->start_time);
    EXPECT_FALSE(kv::is_running(*identity)) << "a zombie is not running";

    ASSERT_EQ(waitpid(child, nullptr, 0), child);
    EXPECT_FALSE(kv::identify_process(child));
    EXPECT_FALSE(kv::is_running(*identity));
}

TEST(ProcessIdentity, ParsesPastACommandNameWithSpacesAndParentheses)
{
    // Read from the first ')', this name would say state Z and garbage after.
    kv::Pipe release = kv::make_pipe("release");
    pid_t child = spawn_waiting_child(release, ") Z ) X 9 9 9");
    ASSERT_GT(child, 0);
    ASSERT_EQ(comm_of(child), ") Z ) X 9 9 9");
    auto identity = kv::identify_process(child);
    ASSERT_TRUE(identity);
    EXPECT_TRUE(kv::is_running(*identity));
    EXPECT_GE(identity->start_time, kv::self_identity().start_time);
    release.write_end.reset();
    ASSERT_EQ(waitpid(child, nullptr, 0), child);
}
