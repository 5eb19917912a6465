// textd: the guide's text server (KVServer), started and supervised by
// registryd when it is given --text-listen. Serves the text protocol
// (text_command.h) on the listening TCP socket registryd hands it.
//
// One process per connection, as the guide gives each client a Task of its
// own: this process only accepts, and forks a child for each client that
// serves it start to end (text_connection.h) and exits. So a slow, stalled,
// hostile or crashing client reaches nothing but its own process: another
// client's handler has its own memory, its own descriptors and its own
// place in the scheduler. What that costs (a fork per connection, a process
// per client) is measured in BENCHMARKS.md.
//
// Nothing here can touch the registry or a bucket but through their
// sockets and read-only mappings, so a crash of textd (or of a handler)
// harms neither; registryd restarts textd, and clients reconnect. textd dies
// with registryd (PR_SET_PDEATHSIG, set at the spawn) and its handlers with
// textd (PR_SET_PDEATHSIG here); registryd also kills textd's process group,
// which the handlers share, when it exits.
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

// In the child forked for one client: serves it, then exits. Never returns.
[[noreturn]] void handle_client(kv::UniqueFd client, pid_t acceptor, kv::text::BucketAccess& buckets, const kv::ServerConfig& config)
{
    // Dies with the acceptor: a client of a textd that is gone is dropped,
    // and reconnects to the one registryd starts next.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != acceptor)
        ::_exit(0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    // The rule of every kv socket, for a client on this machine: its uid
    // must be root's, ours or allowed (--allow-uid, --allow-gid), as
    // SO_PEERCRED says on a Unix socket. A remote client cannot be
    // identified: it is served if registryd was told to listen where one can
    // reach it (README "Text server", Security).
    const kv::TcpPeer peer = kv::identify_tcp_peer(client.get());
    std::optional<std::string> refusal;
    if (peer.kind == kv::TcpPeer::Kind::local)
        refusal = refusal_for_local_client(config, peer.uid);
    else if (peer.kind == kv::TcpPeer::Kind::unknown)
        refusal = "unable to identify the client: " + peer.why;
    if (refusal) {
        kv::peer_event_log().log(kv::LogLevel::warning, "refused a client (" + peer.address + "): " + *refusal);
        [[maybe_unused]] auto sent = ::send(client.get(), kv::text::error_reply.data(), kv::text::error_reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        ::_exit(0);
    }
    const int one = 1;
    ::setsockopt(client.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); // one reply, one segment, now
    const kv::text::ConnectionLimits limits { config.protocol.max_inline_length, config.stall_timeout };
    kv::text::serve_connection(client.get(), peer.address, buckets, limits);
    ::_exit(0);
}

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

    const pid_t self = ::getpid();
    const std::size_t most = environment.server_config.max_connections;
    std::size_t serving = 0;
    for (;;) {
        pollfd watched[2] = { { children.get(), POLLIN, 0 }, { listener.get(), POLLIN, 0 } };
        if (::poll(watched, 2, -1) == -1) {
            if (errno == EINTR)
                continue;
            kv::log_line(kv::LogLevel::error, std::string("unable to wait for clients: poll: ") + std::strerror(errno));
            return 1;
        }
        if (watched[0].revents & POLLIN) {
            signalfd_siginfo info;
            while (::read(children.get(), &info, sizeof info) > 0) {
            }
            siginfo_t ended {};
            while (::waitid(P_ALL, 0, &ended, WEXITED | WNOHANG) == 0 && ended.si_pid != 0) {
                --serving;
                if (ended.si_code != CLD_EXITED)
                    kv::log_line(kv::LogLevel::warning, "the process serving a client (pid " + std::to_string(ended.si_pid) + ") was killed by "
                            + (sigabbrev_np(ended.si_status) ? std::string("SIG") + sigabbrev_np(ended.si_status) : std::to_string(ended.si_status))
                            + "; its client alone was dropped");
                ended = {};
            }
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
        if (serving >= most) {
            kv::log_line(kv::LogLevel::warning, "refused a client of " + address + " (" + kv::peer_address(client.get())
                    + "): max connections reached (" + std::to_string(most) + ")");
            [[maybe_unused]] auto sent = ::send(client.get(), kv::text::error_reply.data(), kv::text::error_reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            continue;
        }
        const pid_t handler = ::fork();
        if (handler == 0) {
            listener.reset();
            children.reset();
            handle_client(std::move(client), self, *buckets, environment.server_config);
        }
        if (handler == -1) {
            kv::log_line(kv::LogLevel::error, "unable to serve a client of " + address + " (" + kv::peer_address(client.get())
                    + "): fork: " + std::strerror(errno));
            continue;
        }
        ++serving;
    }
}
