#include "spawn_bucket.h"

// Boost 1.74 compiles its vfork path only under old _XOPEN_SOURCE settings,
// not with _GNU_SOURCE, although glibc has vfork either way.
#define BOOST_POSIX_HAS_VFORK 1

#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <system_error>
#include <vector>

#include <boost/process/args.hpp>
#include <boost/process/child.hpp>
#include <boost/process/env.hpp>
#include <boost/process/environment.hpp>
#include <boost/process/exe.hpp>
#include <boost/process/extend.hpp>
#include <boost/process/posix.hpp>

#include "pidfd.h"
#include "system_error.h"

namespace kv {

namespace bp = boost::process;

SpawnedBucket spawn_bucket(const BucketLaunch& launch)
{
    Pipe ready = make_pipe("bucket readiness");
    check(::fcntl(ready.read_end.get(), F_SETFL, O_NONBLOCK), "unable to configure the readiness pipe of", launch.bucketd_path);
    const int ready_fd = ready.write_end.get();
    const int segment_fd = launch.environment.segment_fd;
    const int listen_fd = launch.environment.listen_fd;
    const pid_t parent = ::getpid();

    bp::environment environment = boost::this_process::environment();
    BucketEnvironment bucket_environment = launch.environment;
    bucket_environment.notify_fd = ready_fd;
    for (const auto& [variable, value] : encode(bucket_environment))
        environment[variable] = value;

    // argv is exactly {"bucketd", name}: Boost.Process would put the full
    // path in argv[0], and ps should read "bucketd shopping".
    std::string program = "bucketd";
    std::string name = launch.name;
    std::vector<char*> argv { program.data(), name.data(), nullptr };

    // Our own /dev/null: Boost's bp::null ignores a failed open (EMFILE) and
    // then fails in the child after the point where it can still say so.
    UniqueFd null_input(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!null_input)
        throw SystemError("unable to open /dev/null for", launch.bucketd_path, errno);
    const int null_fd = null_input.get();

    // With vfork the child writes this in our memory if its set-up fails.
    volatile int setup_errno = 0;
    std::error_code error;
    // vfork: the child borrows registryd's memory until it execs, so a spawn
    // costs neither a copy of registryd's page tables nor, afterwards,
    // copy-on-write faults in registryd (which grew with every live bucket).
    bp::child child(bp::exe = launch.bucketd_path, bp::args = std::vector<std::string> { launch.name },
        bp::env = environment, error, bp::posix::use_vfork,
        bp::extend::on_setup = [&](auto& executor) { executor.cmd_line = argv.data(); },
        bp::extend::on_exec_setup = [&](auto&) {
            // In the child, before exec: system calls only, no allocation.
            auto fail = [&] {
                setup_errno = errno ? errno : EINVAL;
                ::_exit(127);
            };
            if (::setsid() == -1)
                fail();
            if (::prctl(PR_SET_PDEATHSIG, SIGTERM) == -1 || ::getppid() != parent)
                fail(); // the registry is already gone: so is this bucket
            struct sigaction default_action {};
            default_action.sa_handler = SIG_DFL;
            for (int signal : { SIGPIPE, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGALRM, SIGCHLD })
                ::sigaction(signal, &default_action, nullptr);
            sigset_t none;
            sigemptyset(&none);
            ::sigprocmask(SIG_SETMASK, &none, nullptr);
            if (::dup2(null_fd, STDIN_FILENO) == -1)
                fail();
            // Mark (not close) every inherited descriptor close-on-exec; then
            // let the bucket's own three through.
            if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == -1 || ::fcntl(ready_fd, F_SETFD, 0) == -1
                || ::fcntl(segment_fd, F_SETFD, 0) == -1 || ::fcntl(listen_fd, F_SETFD, 0) == -1)
                fail();
        },
        bp::extend::on_error = [&](auto& executor, const std::error_code&) {
            // A child that failed leaves a zombie in Boost 1.74 (upstream
            // issue 285), and with vfork Boost can report an error for a child
            // that went on to exec: kill it (harmless on a zombie), then reap.
            if (executor.pid > 0) {
                ::kill(executor.pid, SIGKILL);
                ::waitpid(executor.pid, nullptr, 0);
            }
        });
    const int spawn_errno = errno;
    if (error)
        throw std::runtime_error("unable to start " + launch.bucketd_path + ": " + error.message());
    child.detach(); // an attached child's destructor would reap it behind our back
    const pid_t pid = child.id();
    if (pid <= 0) {
        // Boost 1.74 can return an empty child without setting `error` (in
        // fork mode, when pipe(2) for its exec-error channel fails); kept as
        // a guard with vfork too. Never let this pid reach kill(): -1 means
        // every process we may signal.
        throw SystemError("unable to start", launch.bucketd_path, spawn_errno ? spawn_errno : EAGAIN);
    }
    if (setup_errno != 0) {
        ::waitpid(pid, nullptr, 0); // it has exited: vfork let us run only after that
        throw SystemError("unable to prepare the process for", launch.bucketd_path, setup_errno);
    }

    int pidfd = ::pidfd_open(pid, 0);
    if (pidfd == -1) {
        int saved = errno;
        ::kill(pid, SIGKILL); // still our unreaped child: the pid cannot have been reused
        ::waitpid(pid, nullptr, 0);
        throw SystemError("unable to open pidfd for bucketd pid", std::to_string(pid), saved);
    }
    return SpawnedBucket { pid, UniqueFd(pidfd), std::move(ready.read_end) };
}

} // namespace kv
