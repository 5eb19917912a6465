#include "client_processes.h"

#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "log.h"
#include "tcp_peer.h"
#include "text_connection.h"

namespace kv::text {

namespace {

// One message on a control socket: one byte, and room for one descriptor
// (SCM_RIGHTS) beside it.
struct DescriptorMessage {
    char byte = 'c';
    iovec data { &byte, 1 };
    alignas(cmsghdr) char space[CMSG_SPACE(sizeof(int))] {};
    msghdr message {};

    DescriptorMessage()
    {
        message.msg_iov = &data;
        message.msg_iovlen = 1;
        message.msg_control = space;
        message.msg_controllen = sizeof space;
    }
    DescriptorMessage(const DescriptorMessage&) = delete; // it points into itself
    DescriptorMessage& operator=(const DescriptorMessage&) = delete;
};

// A client's socket, over a process's control socket.
bool send_client(int control, int client)
{
    DescriptorMessage sending;
    cmsghdr* header = CMSG_FIRSTHDR(&sending.message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(header), &client, sizeof(int));
    ssize_t sent;
    while ((sent = ::sendmsg(control, &sending.message, MSG_NOSIGNAL)) == -1 && errno == EINTR) {
    }
    return sent == 1;
}

// The next client, in a client's process; empty once textd is gone (the control
// socket at its end).
UniqueFd receive_client(int control)
{
    DescriptorMessage received;
    ssize_t got;
    while ((got = ::recvmsg(control, &received.message, MSG_CMSG_CLOEXEC)) == -1 && errno == EINTR) {
    }
    if (got != 1)
        return {};
    cmsghdr* header = CMSG_FIRSTHDR(&received.message);
    if (!header || header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS || header->cmsg_len != CMSG_LEN(sizeof(int)))
        return {};
    int client = -1;
    std::memcpy(&client, CMSG_DATA(header), sizeof(int));
    return UniqueFd(client);
}

// One client, start to end, in a client's process.
void serve_client(UniqueFd client, BucketAccess& buckets, const ServerConfig& config)
{
    const ConnectionLimits limits { config.protocol.max_inline_length, config.stall_timeout };
    serve_connection(client.get(), peer_address(client.get()), buckets, limits);
    buckets.forget(); // nothing of one client's is kept for the next
}

// A client's process, forked by textd: serves the clients textd hands it,
// one at a time, and says "done" after each. Never returns.
[[noreturn]] void process_main(UniqueFd control, pid_t acceptor, BucketAccess& buckets, const ServerConfig& config)
{
    // Dies with the acceptor: a client of a textd that is gone is dropped,
    // and reconnects to the one registryd starts next.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != acceptor)
        ::_exit(0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (;;) {
        UniqueFd client = receive_client(control.get());
        if (!client)
            ::_exit(0); // textd has no more clients for us
        serve_client(std::move(client), buckets, config); // closes it
        if (::send(control.get(), "d", 1, MSG_NOSIGNAL) != 1)
            ::_exit(0);
    }
}

} // namespace

ClientProcesses::ClientProcesses(BucketAccess& buckets, const ServerConfig& config, std::vector<int> closed_in_children)
    : buckets_(buckets)
    , config_(config)
    , closed_in_children_(std::move(closed_in_children))
{
}

bool ClientProcesses::serve(UniqueFd client, std::string& why)
{
    while (!idle_.empty()) {
        const pid_t pid = idle_.back();
        idle_.pop_back();
        auto found = processes_.find(pid);
        if (found == processes_.end())
            continue; // exited while it waited
        if (send_client(found->second.control.get(), client.get())) {
            found->second.busy = true;
            ++busy_;
            return true;
        }
        found->second.control.reset(); // gone: its exit will be reaped
    }
    int ends[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends) == -1) {
        why = std::string("socketpair: ") + std::strerror(errno);
        return false;
    }
    UniqueFd ours(ends[0]), theirs(ends[1]);
    const pid_t self = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) {
        // Nothing of textd's but what serving needs: no listener, no other
        // process's control socket, no other client.
        for (int fd : closed_in_children_)
            ::close(fd);
        for (auto& [other, process] : processes_)
            process.control.reset();
        ours.reset();
        client.reset();
        process_main(std::move(theirs), self, buckets_, config_);
    }
    if (pid == -1) {
        why = std::string("fork: ") + std::strerror(errno);
        return false;
    }
    if (!send_client(ours.get(), client.get())) {
        why = std::string("unable to hand it over: ") + std::strerror(errno);
        return false; // the new process sees its control socket end, and exits
    }
    processes_[pid] = Process { std::move(ours), true };
    ++busy_;
    return true;
}

void ClientProcesses::watch(std::vector<pollfd>& watched, std::vector<pid_t>& owners) const
{
    for (const auto& [pid, process] : processes_) {
        if (process.busy && process.control) {
            watched.push_back({ process.control.get(), POLLIN, 0 });
            owners.push_back(pid);
        }
    }
}

void ClientProcesses::done(pid_t pid)
{
    auto found = processes_.find(pid);
    if (found == processes_.end() || !found->second.busy)
        return;
    char byte;
    if (::recv(found->second.control.get(), &byte, 1, MSG_DONTWAIT) != 1) {
        found->second.control.reset(); // it died: reaped on its SIGCHLD
        return;
    }
    found->second.busy = false;
    --busy_;
    if (idle_.size() < most_idle)
        idle_.push_back(pid);
    else
        found->second.control.reset(); // it sees the end of its control socket, and exits
}

void ClientProcesses::reap()
{
    siginfo_t ended {};
    // Looked at first, reaped once it is logged: whoever sees the process
    // gone can read why in the log.
    while (::waitid(P_ALL, 0, &ended, WEXITED | WNOHANG | WNOWAIT) == 0 && ended.si_pid != 0) {
        auto found = processes_.find(ended.si_pid);
        const bool was_busy = found != processes_.end() && found->second.busy;
        if (found != processes_.end())
            processes_.erase(found);
        if (was_busy)
            --busy_;
        if (ended.si_code != CLD_EXITED)
            log_line(LogLevel::warning, std::string(was_busy ? "the process serving a client" : "a process waiting for a client") + " (pid "
                    + std::to_string(ended.si_pid) + ") was killed by "
                    + (sigabbrev_np(ended.si_status) ? std::string("SIG") + sigabbrev_np(ended.si_status) : std::to_string(ended.si_status))
                    + (was_busy ? "; its client alone was dropped" : ""));
        siginfo_t reaped {};
        ::waitid(P_PID, static_cast<id_t>(ended.si_pid), &reaped, WEXITED | WNOHANG);
        ended = {};
    }
}

} // namespace kv::text
