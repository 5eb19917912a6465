#include "spawn_bucket.h"

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
#include <boost/process/io.hpp>

#include "pidfd.h"
#include "system_error.h"

namespace kv {

namespace bp = boost::process;

SpawnedBucket spawn_bucket(const BucketLaunch& launch)
{
    Pipe ready = make_pipe("bucket readiness");
    const int ready_fd = ready.write_end.get();
    const pid_t parent = ::getpid();

    bp::environment environment = boost::this_process::environment();
    environment["KV_SEGMENT"] = launch.segment_name;
    environment["KV_SOCKET"] = launch.socket_path;
    environment["KV_NOTIFY_FD"] = std::to_string(ready_fd);
    environment["KV_BUCKET_SIZE"] = std::to_string(launch.bucket_size);
    environment["KV_SERVER_CONFIG"] = launch.server_config;
    environment["KV_DEBUG_COMMAND"] = launch.debug_command_enabled ? "1" : "0";

    // argv is exactly {"bucketd", name}: Boost.Process would put the full
    // path in argv[0], and ps should read "bucketd shopping".
    std::string program = "bucketd";
    std::string name = launch.name;
    std::vector<char*> argv { program.data(), name.data(), nullptr };

    std::error_code error;
    bp::child child(bp::exe = launch.bucketd_path, bp::args = std::vector<std::string> { launch.name },
        bp::env = environment, bp::std_in < bp::null, error,
        bp::extend::on_setup = [&](auto& executor) { executor.cmd_line = argv.data(); },
        bp::extend::on_exec_setup = [&](auto&) {
            // In the child, after fork: only async-signal-safe calls here.
            if (::prctl(PR_SET_PDEATHSIG, SIGTERM) == -1 || ::getppid() != parent)
                ::_exit(127); // the registry is already gone: so is this bucket
            struct sigaction default_action {};
            default_action.sa_handler = SIG_DFL;
            for (int signal : { SIGPIPE, SIGTERM, SIGINT, SIGCHLD })
                ::sigaction(signal, &default_action, nullptr);
            sigset_t none;
            sigemptyset(&none);
            ::sigprocmask(SIG_SETMASK, &none, nullptr);
            // Mark (not close) every inherited descriptor close-on-exec, so
            // Boost's exec-error pipe still works; then let the readiness pipe through.
            if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == -1 || ::fcntl(ready_fd, F_SETFD, 0) == -1)
                ::_exit(127);
        },
        bp::extend::on_error = [&](auto& executor, const std::error_code&) {
            // A failed exec leaves a zombie in Boost 1.74 (upstream issue 285).
            if (executor.pid > 0)
                ::waitpid(executor.pid, nullptr, 0);
        });
    const int spawn_errno = errno;
    if (error)
        throw std::runtime_error("unable to start " + launch.bucketd_path + ": " + error.message());
    child.detach(); // an attached child's destructor would reap it behind our back
    const pid_t pid = child.id();
    if (pid <= 0) {
        // Boost 1.74 returns an empty child without setting `error` when the
        // pipe(2) for its exec-error channel fails (EMFILE): no fork happened,
        // and errno still says why. Never let this pid reach kill(): -1 means
        // every process we may signal.
        throw SystemError("unable to start", launch.bucketd_path, spawn_errno ? spawn_errno : EAGAIN);
    }

    int pidfd = ::pidfd_open(pid, 0);
    if (pidfd == -1) {
        int saved = errno;
        ::kill(pid, SIGKILL); // still our unreaped child: the pid cannot have been reused
        ::waitpid(pid, nullptr, 0);
        throw SystemError("unable to open pidfd for bucketd pid", std::to_string(pid), saved);
    }
    // Non-blocking, so registryd can drain it at the exit without waiting.
    ::fcntl(ready.read_end.get(), F_SETFL, O_NONBLOCK);
    return SpawnedBucket { pid, UniqueFd(pidfd), std::move(ready.read_end) };
}

} // namespace kv
