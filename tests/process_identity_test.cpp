#include "process_identity.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "unique_fd.h"
#include "waiting_child.h"

namespace {

using kv::test::spawn_waiting_child;

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
    pid_t child = spawn_waiting_child(release, [] { prctl(PR_SET_NAME, ") Z ) X 9 9 9"); });
    ASSERT_GT(child, 0);
    ASSERT_EQ(comm_of(child), ") Z ) X 9 9 9");
    auto identity = kv::identify_process(child);
    ASSERT_TRUE(identity);
    EXPECT_TRUE(kv::is_running(*identity));
    EXPECT_GE(identity->start_time, kv::self_identity().start_time);
    release.write_end.reset();
    ASSERT_EQ(waitpid(child, nullptr, 0), child);
}
