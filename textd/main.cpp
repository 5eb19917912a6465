// textd: the guide's text server (KVServer), started and supervised by
// registryd when it is given --text-listen. Serves the text protocol
// (text_command.h) on the listening TCP socket registryd hands it.
//
// A process per connection, as the guide gives each client a Task of its
// own: this process only accepts, and hands each client to a process of its
// own (a child it forked), which serves it start to end (text_connection.h)
// and serves no other client meanwhile. So a slow, stalled, hostile or
// crashing client reaches nothing but its own process: another client's
// has its own memory, its own descriptors and its own place in the
// scheduler. A process whose client left tells us so and waits for the next
// client (up to most_idle of them wait; the rest exit): a fork costs about 2
// ms on these machines, too much to pay for every connection. What this
// costs (a process per connected client) is measured in BENCHMARKS.md.
//
// Nothing here can touch the registry or a bucket but through their
// sockets and read-only mappings, so a crash of textd (or of a client's
// process) harms neither; registryd restarts textd, and clients reconnect.
// textd dies with registryd (PR_SET_PDEATHSIG, set at the spawn) and its
// children with textd (PR_SET_PDEATHSIG here); registryd also kills textd's
// process group, which the children share, when it exits.
//
// Exit codes: 1 unable to start (told to registryd on the readiness pipe
// first), 2 not started by registryd.
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "bucket_access.h"
#include "bucket_launch.h"
#include "log.h"
#include "system_error.h"
#include "tcp_peer.h"
#include "text_command.h"
#include "text_connection.h"
#include "unique_fd.h"

namespace {

// ServerConfig's rule for a local TCP client, known by its uid alone: its
// groups are those the user database gives that uid (a Unix socket's
// SO_PEERGROUPS would give the process's own).
std::optional<std::string> refusal_for_local_client(const kv::ServerConfig& config, uid_t uid)
{
    std::vector<gid_t> groups;
    if (!config.allowed_gids.empty()) {
        passwd entry {}, *found = nullptr;
        std::vector<char> text(16384);
        if (::getpwuid_r(uid, &entry, text.data(), text.size(), &found) == 0 && found) {
            int count = 256;
            groups.resize(static_cast<std::size_t>(count));
            if (::getgrouplist(found->pw_name, found->pw_gid, groups.data(), &count) == -1)
                count = std::min(count, 256);
            groups.resize(static_cast<std::size_t>(count));
        }
    }
    return config.refusal_for(uid, groups);
}

// Processes that wait for their next client, at most; the rest exit.
constexpr std::size_t most_idle = 16;

// A client's socket, over a handler's control socket (SCM_RIGHTS).
bool send_client(int control, int client)
{
    char byte = 'c';
    iovec data { &byte, 1 };
    alignas(cmsghdr) char space[CMSG_SPACE(sizeof(int))] {};
    msghdr message {};
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    message.msg_control = space;
    message.msg_controllen = sizeof space;
    cmsghdr* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(header), &client, sizeof(int));
    ssize_t sent;
    while ((sent = ::sendmsg(control, &message, MSG_NOSIGNAL)) == -1 && errno == EINTR) {
    }
    return sent == 1;
}

// The next client, in a handler; empty once textd is gone (the control
// socket at its end).
kv::UniqueFd receive_client(int control)
{
    char byte = 0;
    iovec data { &byte, 1 };
    alignas(cmsghdr) char space[CMSG_SPACE(sizeof(int))] {};
    msghdr message {};
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    message.msg_control = space;
    message.msg_controllen = sizeof space;
    ssize_t got;
    while ((got = ::recvmsg(control, &message, MSG_CMSG_CLOEXEC)) == -1 && errno == EINTR) {
    }
    if (got != 1)
        return {};
    cmsghdr* header = CMSG_FIRSTHDR(&message);
    if (!header || header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS || header->cmsg_len != CMSG_LEN(sizeof(int)))
        return {};
    int client = -1;
    std::memcpy(&client, CMSG_DATA(header), sizeof(int));
    return kv::UniqueFd(client);
}

// One client, start to end, in a handler.
void serve_client(kv::UniqueFd client, kv::text::BucketAccess& buckets, const kv::ServerConfig& config)
{
    const kv::text::ConnectionLimits limits { config.protocol.max_inline_length, config.stall_timeout };
    kv::text::serve_connection(client.get(), kv::peer_address(client.get()), buckets, limits);
    buckets.forget(); // nothing of one client's is kept for the next
}

// Why `client` may not be served, if it may not: the rule of every kv socket,
// for a client on this machine: its uid must be root's, ours or allowed
// (--allow-uid, --allow-gid), as SO_PEERCRED says on a Unix socket. A remote
// client cannot be identified: it is served if registryd was told to listen
// where one can reach it (README "Text server"). Asked here, before a
// process is given the client, so that refusals are logged at the rate
// textd's one log allows.
std::optional<std::string> refusal_for(int client, const kv::ServerConfig& config, std::string& peer_address)
{
    const kv::TcpPeer peer = kv::identify_tcp_peer(client);
    peer_address = peer.address;
    switch (peer.kind) {
    case kv::TcpPeer::Kind::local: return refusal_for_local_client(config, peer.uid);
    case kv::TcpPeer::Kind::remote: return std::nullopt;
    case kv::TcpPeer::Kind::unknown: break;
    }
    return "unable to identify the client: " + peer.why;
}

// What every accepted connection gets: replies sent at once (one reply,
// one segment), and TCP keepalive, so a client whose machine vanished
// without closing is found out and its process freed (Redis's
// tcp-keepalive: 300 s, then probes 30 s apart).
void configure_client(int client)
{
    const int one = 1, idle_s = 300, interval_s = 30, probes = 3;
    ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::setsockopt(client, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    ::setsockopt(client, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s);
    ::setsockopt(client, IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof interval_s);
    ::setsockopt(client, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
}

// A handler, forked by textd: serves the clients textd hands it, one at a
// time, and says "done" after each. Never returns.
[[noreturn]] void handler_main(kv::UniqueFd control, pid_t acceptor, kv::text::BucketAccess& buckets, const kv::ServerConfig& config)
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
        kv::UniqueFd client = receive_client(control.get());
        if (!client)
            ::_exit(0); // textd has no more clients for us
        serve_client(std::move(client), buckets, config); // closes it
        if (::send(control.get(), "d", 1, MSG_NOSIGNAL) != 1)
            ::_exit(0);
    }
}

// textd's side of its handlers.
class Handlers {
public:
    Handlers(kv::text::BucketAccess& buckets, const kv::ServerConfig& config, std::vector<int> closed_in_children)
        : buckets_(buckets)
        , config_(config)
        , closed_in_children_(std::move(closed_in_children))
    {
    }

    std::size_t busy() const { return busy_; }

    // Gives `client` to a waiting handler, or to a new one. False (and the
    // reason in `why`) if none could take it.
    bool serve(kv::UniqueFd client, std::string& why)
    {
        while (!idle_.empty()) {
            const pid_t pid = idle_.back();
            idle_.pop_back();
            auto found = handlers_.find(pid);
            if (found == handlers_.end())
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
        kv::UniqueFd ours(ends[0]), theirs(ends[1]);
        const pid_t self = ::getpid();
        const pid_t pid = ::fork();
        if (pid == 0) {
            // Nothing of textd's but what serving needs: no listener, no
            // other handler's control socket, no other client.
            for (int fd : closed_in_children_)
                ::close(fd);
            for (auto& [other, handler] : handlers_)
                handler.control.reset();
            ours.reset();
            client.reset();
            handler_main(std::move(theirs), self, buckets_, config_);
        }
        if (pid == -1) {
            why = std::string("fork: ") + std::strerror(errno);
            return false;
        }
        if (!send_client(ours.get(), client.get())) {
            why = std::string("unable to hand it over: ") + std::strerror(errno);
            return false; // the new handler sees its control socket end, and exits
        }
        handlers_[pid] = Handler { std::move(ours), true };
        ++busy_;
        return true;
    }

    // Descriptors to poll for handlers that are done with their client.
    void watch(std::vector<pollfd>& watched, std::vector<pid_t>& owners) const
    {
        for (const auto& [pid, handler] : handlers_) {
            if (handler.busy && handler.control) {
                watched.push_back({ handler.control.get(), POLLIN, 0 });
                owners.push_back(pid);
            }
        }
    }

    // The handler `pid` said "done" (or its control socket broke).
    void done(pid_t pid)
    {
        auto found = handlers_.find(pid);
        if (found == handlers_.end() || !found->second.busy)
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

    // Reaps every handler that exited; says so of one that died with its client.
    void reap()
    {
        siginfo_t ended {};
        // Looked at first, reaped once it is logged: whoever sees the
        // process gone can read why in the log.
        while (::waitid(P_ALL, 0, &ended, WEXITED | WNOHANG | WNOWAIT) == 0 && ended.si_pid != 0) {
            auto found = handlers_.find(ended.si_pid);
            const bool was_busy = found != handlers_.end() && found->second.busy;
            if (found != handlers_.end())
                handlers_.erase(found);
            if (was_busy)
                --busy_;
            if (ended.si_code != CLD_EXITED)
                kv::log_line(kv::LogLevel::warning, std::string(was_busy ? "the process serving a client" : "a process waiting for a client") + " (pid "
                        + std::to_string(ended.si_pid) + ") was killed by "
                        + (sigabbrev_np(ended.si_status) ? std::string("SIG") + sigabbrev_np(ended.si_status) : std::to_string(ended.si_status))
                        + (was_busy ? "; its client alone was dropped" : ""));
            siginfo_t reaped {};
            ::waitid(P_PID, static_cast<id_t>(ended.si_pid), &reaped, WEXITED | WNOHANG);
            ended = {};
        }
    }

private:
    struct Handler {
        kv::UniqueFd control; // empty once it is told to exit or found gone
        bool busy = false;
    };

    kv::text::BucketAccess& buckets_;
    const kv::ServerConfig& config_;
    std::vector<int> closed_in_children_;
    std::unordered_map<pid_t, Handler> handlers_;
    std::vector<pid_t> idle_;
    std::size_t busy_ = 0;
};

} // namespace

int main(int argc, char** argv)
{
    kv::set_log_program("textd");
    int notify_fd = -1;
    kv::TextServerEnvironment environment;
    try {
        if (argc != 2)
            throw std::invalid_argument("expected one argument, the address it serves");
        notify_fd = kv::decode_notify_descriptor();
        environment = kv::decode_text_server_environment();
    } catch (const std::exception& error) {
        std::cerr << "textd: " << error.what() << " (textd is started by registryd --text-listen)\n";
        return 2;
    }
    kv::UniqueFd notify(notify_fd);
    kv::UniqueFd listener(environment.listen_fd);
    kv::set_log_level(environment.log_level);
    const std::string address = argv[1];

    auto fail = [&notify](const std::string& why) {
        kv::log_line(kv::LogLevel::error, why);
        const std::string line = kv::failure_line(why);
        [[maybe_unused]] auto written = ::write(notify.get(), line.data(), line.size());
        return 1;
    };
    std::signal(SIGPIPE, SIG_IGN);
    // Children are counted as they end: SIGCHLD through a descriptor, in
    // the same poll as the listener.
    sigset_t child_signal;
    sigemptyset(&child_signal);
    sigaddset(&child_signal, SIGCHLD);
    ::sigprocmask(SIG_BLOCK, &child_signal, nullptr);
    kv::UniqueFd children(::signalfd(-1, &child_signal, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!children)
        return fail(std::string("unable to watch its connections' processes: signalfd: ") + std::strerror(errno));

    // Opened here, once, and inherited by every handler: the run directory
    // (trusted as kvctl trusts it) and the name table's mapping.
    std::optional<kv::text::BucketAccess> buckets;
    try {
        buckets.emplace(environment.run_dir, environment.server_config.stall_timeout);
    } catch (const std::exception& error) {
        return fail(std::string("unable to serve ") + address + ": " + error.what());
    }
    kv::log_line(kv::LogLevel::info, "serving the text protocol on " + address);
    [[maybe_unused]] auto written = ::write(notify.get(), kv::ready_line.data(), kv::ready_line.size());
    notify.reset();

    const std::size_t most = environment.server_config.max_connections;
    Handlers handlers(*buckets, environment.server_config, { listener.get(), children.get() });
    std::vector<pollfd> watched;
    std::vector<pid_t> owners;
    for (;;) {
        watched.assign({ { children.get(), POLLIN, 0 }, { listener.get(), static_cast<short>(POLLIN), 0 } });
        owners.assign({ 0, 0 });
        handlers.watch(watched, owners);
        if (::poll(watched.data(), watched.size(), -1) == -1) {
            if (errno == EINTR)
                continue;
            kv::log_line(kv::LogLevel::error, std::string("unable to wait for clients: poll: ") + std::strerror(errno));
            return 1;
        }
        // Handlers done with their client first: their places are free for
        // whoever connected meanwhile.
        for (std::size_t i = 2; i < watched.size(); ++i) {
            if (watched[i].revents != 0)
                handlers.done(owners[i]);
        }
        if (watched[0].revents & POLLIN) {
            signalfd_siginfo info;
            while (::read(children.get(), &info, sizeof info) > 0) {
            }
            handlers.reap();
        }
        if (!(watched[1].revents & POLLIN))
            continue;
        kv::UniqueFd client(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (!client) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
                continue;
            // Out of descriptors or memory: keep serving the clients we have
            // and try again shortly, rather than spinning.
            kv::log_line(kv::LogLevel::error, std::string("unable to accept a client on ") + address + ": " + std::strerror(errno));
            ::poll(nullptr, 0, 50);
            continue;
        }
        if (handlers.busy() >= most) {
            kv::log_line(kv::LogLevel::warning, "refused a client of " + address + " (" + kv::peer_address(client.get())
                    + "): max connections reached (" + std::to_string(most) + ")");
            [[maybe_unused]] auto sent = ::send(client.get(), kv::text::error_reply.data(), kv::text::error_reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            continue;
        }
        std::string peer;
        if (auto refusal = refusal_for(client.get(), environment.server_config, peer)) {
            kv::peer_event_log().log(kv::LogLevel::warning, "refused a client of " + address + " (" + peer + "): " + *refusal);
            [[maybe_unused]] auto sent = ::send(client.get(), kv::text::error_reply.data(), kv::text::error_reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            continue;
        }
        configure_client(client.get());
        std::string why;
        if (!handlers.serve(std::move(client), why))
            kv::log_line(kv::LogLevel::error, "unable to serve a client of " + address + " (" + peer + "): " + why);
    }
}
