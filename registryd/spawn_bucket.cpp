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
    // systemd's notification socket and watchdog are registryd's: a bucket
    // must not tell systemd it is ready or alive on registryd's behalf.
    // (JOURNAL_STREAM stays: the bucket writes to the same stderr.)
    for (const char* variable : { "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID" }) {
        if (environment.count(variable))
            environment.erase(variable);
    }

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

    // With vfork the child writes this in our memory if its set-up fails. It
    // is the only way the child's error reaches us: the child also shares
    // our thread's errno, so errno after the spawn means nothing.
    volatile int setup_errno = 0;
    std::error_code error;

    // Every signal blocked across vfork, as posix_spawn does: until the child
    // resets their dispositions, registryd's handlers (SIGTERM, SIGINT ...)
    // are installed in it too, and one running there would run on our stack
    // and our memory. The child empties its mask only after resetting them;
    // we restore ours once the child has exec'd or exited.
    sigset_t all_signals, saved_mask;
    sigfillset(&all_signals);
    if (const int blocked = ::pthread_sigmask(SIG_SETMASK, &all_signals, &saved_mask); blocked != 0)
        throw SystemError("unable to block signals to start", launch.bucketd_path, blocked);
    struct MaskRestorer {
        const sigset_t* saved;
        void restore()
        {
            if (saved)
                ::pthread_sigmask(SIG_SETMASK, saved, nullptr);
            saved = nullptr;
        }
        ~MaskRestorer() { restore(); }
    } mask { &saved_mask };
    // vfork: the child borrows registryd's memory until it execs, so a spawn
    // costs neither a copy of registryd's page tables nor, afterwards,
    // copy-on-write faults in registryd (which grew with every live bucket).
    bp::child child(bp::exe = launch.bucketd_path, bp::args = std::vector<std::string> { launch.name },
        bp::env = environment, error, bp::posix::use_vfork,
        bp::extend::on_setup = [&](auto& executor) { executor.cmd_line = argv.data(); },
        bp::extend::on_exec_setup = [&](auto&) {
            // In the child, before exec: system calls only, no allocation.
            // errno is read right after the call that failed, before
            // anything else can change it, and travels in setup_errno only.
            auto fail = [&](int error_number) {
                setup_errno = error_number != 0 ? error_number : EINVAL;
                ::_exit(127);
            };
            if (::setsid() == -1)
                fail(errno);
            if (::prctl(PR_SET_PDEATHSIG, SIGTERM) == -1)
                fail(errno);
            if (::getppid() != parent)
                fail(ESRCH); // the registry is already gone: so is this bucket
            struct sigaction default_action {};
            default_action.sa_handler = SIG_DFL;
            for (int signal : { SIGPIPE, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGALRM, SIGCHLD })
                ::sigaction(signal, &default_action, nullptr);
            sigset_t none;
            sigemptyset(&none);
            ::sigprocmask(SIG_SETMASK, &none, nullptr);
            if (::dup2(null_fd, STDIN_FILENO) == -1)
                fail(errno);
            // Mark (not close) every inherited descriptor close-on-exec; then
            // let the bucket's own three through.
            if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == -1 || ::fcntl(ready_fd, F_SETFD, 0) == -1
                || ::fcntl(segment_fd, F_SETFD, 0) == -1 || ::fcntl(listen_fd, F_SETFD, 0) == -1)
                fail(errno);
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
    mask.restore(); // the child has exec'd or exited: it no longer runs on our memory
    if (error)
        throw std::runtime_error("unable to start " + launch.bucketd_path + ": " + error.message());
    child.detach(); // an attached child's destructor would reap it behind our back
    const pid_t pid = child.id();
    if (pid <= 0) {
        // Boost 1.74 can return an empty child without setting `error` (in
        // fork mode, when pipe(2) for its exec-error channel fails); kept as
        // a guard with vfork too. Never let this pid reach kill(): -1 means
        // every process we may signal. (Not errno: the child shares it.)
        throw SystemError("unable to start", launch.bucketd_path, EAGAIN);
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
