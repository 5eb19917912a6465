#include "spawn.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <tuple>
#include <csignal>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "system_error.h"

extern char** environ;

namespace kv {

namespace {

// The six descriptor numbers a bucket inherits, reserved once on /dev/null,
// early, so they are small: just above what registryd opened at its start.
//
// Why: a child made by fork or vfork gets a copy of registryd's whole
// descriptor table, two entries per live bucket (its pidfd and its
// segment), and exec then closes every one of them. With 10,000 buckets
// that made each spawn several times slower (measured: the child's execve
// went from 0.15 ms to 1.9 ms). So the child is cloned with CLONE_FILES,
// sharing registryd's table without copying it, and its first act is
// close_range(end, ~0U, CLOSE_RANGE_UNSHARE): a table of its own holding
// only the descriptors below `end` (the kernel copies no more than that),
// which are registryd's first few and these six slots. The slots hold the
// bucket's descriptors (three, five with --listen-tcp) for the moment of the spawn, and /dev/null the
// rest of the time, so registryd never keeps a bucket's listener alive.
struct SpawnSlots {
    int ready = -1;    // the readiness pipe's write end
    int segment = -1;  // the bucket's segment
    int listener = -1; // its listening socket
    int tcp_listener = -1; // --listen-tcp: its listening TCP socket
    int password = -1;     // --listen-tcp: where it reads the password of its TCP clients
    int null = -1;     // /dev/null, for its stdin; never replaced
    int end = 0;       // one past the highest of them
};

const SpawnSlots& spawn_slots()
{
    static const SpawnSlots slots = [] {
        SpawnSlots made;
        for (int* slot : { &made.ready, &made.segment, &made.listener, &made.tcp_listener, &made.password, &made.null }) {
            *slot = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
            if (*slot == -1)
                throw SystemError("unable to reserve a descriptor for spawning buckets:", "/dev/null", errno);
            made.end = std::max(made.end, *slot + 1);
        }
        return made;
    }();
    return slots;
}

// The child's stack: it runs on its own (CLONE_VM shares our memory, and our
// stack is in use by the frame that called clone). Made once; spawns happen
// on the loop's thread only, one at a time, and the parent waits until the
// child has exec'd (CLONE_VFORK), so one stack serves every spawn.
constexpr std::size_t child_stack_size = 256 * 1024;

char* child_stack_top()
{
    static char* const top = [] {
        void* stack = ::mmap(nullptr, child_stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (stack == MAP_FAILED)
            throw SystemError("unable to map a stack for spawning buckets:", "mmap", errno);
        return static_cast<char*>(stack) + child_stack_size;
    }();
    return top;
}

// Everything the child needs, made by the parent before the clone: the
// child only makes system calls, allocates nothing and throws nothing.
struct ChildPlan {
    const char* path;
    char* const* argv;
    char* const* envp;
    SpawnSlots slots;
    pid_t parent;
    // Written by the child if it fails (it shares our memory): the only way
    // its error reaches us, as it also shares our thread's errno.
    volatile int setup_errno = 0; // preparing the process failed
    volatile int exec_errno = 0;  // execve failed
    // Which slots hold a descriptor of the child's, to be kept across exec.
    bool hand_ready = false;
    bool hand_segment = false;
    bool hand_listener = false;
    bool hand_tcp_listener = false;
    bool hand_password = false;
};

// In the child, before exec: system calls only. errno is read right after the
// call that failed, before anything else can change it. Not instrumented by
// the sanitizers: it runs on a stack they did not see being made.
[[gnu::no_sanitize("address", "undefined", "thread")]] int child_main(void* argument)
{
    auto* plan = static_cast<ChildPlan*>(argument);
#define KV_CHILD_CHECK(call)                                                                                                       \
    do {                                                                                                                           \
        if ((call) == -1) {                                                                                                        \
            const int saved = errno;                                                                                               \
            plan->setup_errno = saved != 0 ? saved : EINVAL;                                                                       \
            ::_exit(127);                                                                                                          \
        }                                                                                                                          \
    } while (false)
    // First, before any descriptor changes: a table of our own (see
    // SpawnSlots). Until this returns, a change here would be registryd's.
    KV_CHILD_CHECK(::close_range(static_cast<unsigned>(plan->slots.end), ~0U, CLOSE_RANGE_UNSHARE));
    KV_CHILD_CHECK(::setsid());
    KV_CHILD_CHECK(::prctl(PR_SET_PDEATHSIG, SIGTERM));
    if (::getppid() != plan->parent) {
        plan->setup_errno = ESRCH; // the registry is already gone: so is this bucket
        ::_exit(127);
    }
    struct sigaction default_action {};
    default_action.sa_handler = SIG_DFL;
    for (int signal : { SIGPIPE, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGALRM, SIGCHLD })
        ::sigaction(signal, &default_action, nullptr);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    KV_CHILD_CHECK(::dup2(plan->slots.null, STDIN_FILENO));
    // Mark (not close) every inherited descriptor close-on-exec ...
    KV_CHILD_CHECK(::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC));
    // then let the child's own through.
    if (plan->hand_ready)
        KV_CHILD_CHECK(::fcntl(plan->slots.ready, F_SETFD, 0));
    if (plan->hand_segment)
        KV_CHILD_CHECK(::fcntl(plan->slots.segment, F_SETFD, 0));
    if (plan->hand_listener)
        KV_CHILD_CHECK(::fcntl(plan->slots.listener, F_SETFD, 0));
    if (plan->hand_tcp_listener)
        KV_CHILD_CHECK(::fcntl(plan->slots.tcp_listener, F_SETFD, 0));
    if (plan->hand_password)
        KV_CHILD_CHECK(::fcntl(plan->slots.password, F_SETFD, 0));
#undef KV_CHILD_CHECK
    ::execve(plan->path, plan->argv, plan->envp);
    const int saved = errno;
    plan->exec_errno = saved != 0 ? saved : ENOEXEC;
    ::_exit(127);
}

bool is_variable(std::string_view entry, std::string_view name)
{
    return entry.size() > name.size() && entry.substr(0, name.size()) == name && entry[name.size()] == '=';
}

} // namespace

void prepare_spawning()
{
    spawn_slots();
    child_stack_top();
}

namespace {

// What one spawn hands down: up to four descriptors of ours (-1: none) that
// the child finds in the segment, listener, TCP listener and password
// slots, besides its readiness pipe; the environment is made once the slots' numbers are known.
struct ProcessLaunch {
    const std::string& path;
    std::vector<std::string> argv;
    int segment_fd = -1;
    int listen_fd = -1;
    int tcp_listen_fd = -1;
    int password_fd = -1;
    std::function<std::vector<std::pair<std::string, std::string>>(const SpawnSlots&)> variables;
};

SpawnedProcess spawn_process(const ProcessLaunch& launch)
{
    const SpawnSlots& slots = spawn_slots();
    char* const stack_top = child_stack_top();
    Pipe ready = make_pipe("readiness");
    check(::fcntl(ready.read_end.get(), F_SETFL, O_NONBLOCK), "unable to configure the readiness pipe of", launch.path);

    // The environment: ours, less what is the child's to be told (its own
    // KV_ variables) and what is registryd's alone: systemd's notification
    // socket and watchdog (a child must not tell systemd it is ready or
    // alive on registryd's behalf). JOURNAL_STREAM stays: the child writes
    // to the same stderr.
    const auto variables = launch.variables(slots);
    std::vector<std::string> entries;
    for (char** entry = environ; entry && *entry; ++entry) {
        const std::string_view text(*entry);
        bool dropped = false;
        for (const char* name : { "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID" })
            dropped = dropped || is_variable(text, name);
        for (const auto& [name, value] : variables)
            dropped = dropped || is_variable(text, name);
        if (!dropped)
            entries.emplace_back(text);
    }
    for (const auto& [name, value] : variables)
        entries.push_back(name + "=" + value);
    std::vector<char*> envp;
    for (auto& entry : entries)
        envp.push_back(entry.data());
    envp.push_back(nullptr);

    std::vector<std::string> arguments = launch.argv;
    std::vector<char*> argv;
    for (auto& argument : arguments)
        argv.push_back(argument.data());
    argv.push_back(nullptr);

    // The child's descriptors go into the slots for the spawn, and /dev/null
    // goes back into them afterwards, whatever happens.
    struct SlotFiller {
        const SpawnSlots& slots;
        ~SlotFiller()
        {
            for (int slot : { slots.ready, slots.segment, slots.listener, slots.tcp_listener, slots.password })
                ::dup3(slots.null, slot, O_CLOEXEC);
        }
    } refill { slots };
    ChildPlan plan { launch.path.c_str(), argv.data(), envp.data(), slots, ::getpid() };
    for (auto [from, slot, handed] : { std::tuple { ready.write_end.get(), slots.ready, &plan.hand_ready },
             std::tuple { launch.segment_fd, slots.segment, &plan.hand_segment }, std::tuple { launch.listen_fd, slots.listener, &plan.hand_listener },
             std::tuple { launch.tcp_listen_fd, slots.tcp_listener, &plan.hand_tcp_listener },
             std::tuple { launch.password_fd, slots.password, &plan.hand_password } }) {
        if (from == -1)
            continue;
        check(::dup3(from, slot, O_CLOEXEC), "unable to prepare the process for", launch.path);
        *handed = true;
    }

    // Every signal blocked across the clone, as posix_spawn does: until the
    // child resets their dispositions, registryd's handlers (SIGTERM, SIGINT
    // ...) are installed in it too, and one running there would run on our
    // memory. The child empties its mask only after resetting them; we
    // restore ours once the child has exec'd or exited.
    sigset_t all_signals, saved_mask;
    sigfillset(&all_signals);
    if (const int blocked = ::pthread_sigmask(SIG_SETMASK, &all_signals, &saved_mask); blocked != 0)
        throw SystemError("unable to block signals to start", launch.path, blocked);
    // CLONE_VM | CLONE_VFORK: the child borrows our memory until it execs,
    // so a spawn costs no copy of registryd's page tables; CLONE_FILES: nor
    // of its descriptor table (see SpawnSlots); CLONE_PIDFD: the pidfd is
    // made with the child, so its pid is pinned from the start.
    int pidfd = -1;
    const pid_t pid = ::clone(child_main, stack_top, CLONE_VM | CLONE_VFORK | CLONE_FILES | CLONE_PIDFD | SIGCHLD, &plan, &pidfd);
    const int clone_errno = errno;
    ::pthread_sigmask(SIG_SETMASK, &saved_mask, nullptr); // the child has exec'd or exited: it no longer runs on our memory
    if (pid == -1)
        throw SystemError("unable to start", launch.path, clone_errno);
    UniqueFd pinned(pidfd);
    if (plan.setup_errno != 0 || plan.exec_errno != 0) {
        ::waitpid(pid, nullptr, 0); // it has exited: CLONE_VFORK let us run only after that
        if (plan.setup_errno != 0)
            throw SystemError("unable to prepare the process for", launch.path, plan.setup_errno);
        throw std::runtime_error("unable to start " + launch.path + ": " + std::strerror(plan.exec_errno));
    }
    return SpawnedProcess { pid, std::move(pinned), std::move(ready.read_end) };
}

} // namespace

SpawnedBucket spawn_bucket(const BucketLaunch& launch)
{
    // argv is exactly {"bucketd", name}, so ps reads "bucketd shopping".
    const bool tcp = launch.environment.tcp_listen_fd >= 0;
    return spawn_process(ProcessLaunch { launch.bucketd_path, { "bucketd", launch.name }, launch.environment.segment_fd,
        launch.environment.listen_fd, launch.environment.tcp_listen_fd, tcp ? launch.environment.password_fd : -1,
        [&launch, tcp](const SpawnSlots& slots) {
            BucketEnvironment environment = launch.environment;
            environment.notify_fd = slots.ready;
            environment.segment_fd = slots.segment;
            environment.listen_fd = slots.listener;
            if (tcp) {
                environment.tcp_listen_fd = slots.tcp_listener;
                environment.password_fd = slots.password;
            }
            return encode(environment);
        } });
}

SpawnedProcess spawn_text_server(const TextServerLaunch& launch)
{
    const bool password = launch.environment.password_fd >= 0;
    return spawn_process(ProcessLaunch { launch.textd_path, { "textd", launch.address }, -1, launch.environment.listen_fd, -1,
        launch.environment.password_fd, [&launch, password](const SpawnSlots& slots) {
            TextServerEnvironment environment = launch.environment;
            environment.notify_fd = slots.ready;
            environment.listen_fd = slots.listener;
            if (password)
                environment.password_fd = slots.password;
            return encode(environment);
        } });
}

} // namespace kv
