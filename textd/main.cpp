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
// client (up to 16 of them wait; the rest exit: client_processes.h): a fork costs about 2
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
#include "client_processes.h"
#include "log.h"
#include "password_file.h"
#include "system_error.h"
#include "tcp_peer.h"
#include "text_command.h"
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
    kv::UniqueFd password_fd(environment.password_fd);
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

    // Opened here, once, and inherited by every client's process: the run directory
    // (trusted as kvctl trusts it) and the name table's mapping; and the
    // password, if registryd has one, read once and its descriptor closed.
    std::optional<kv::text::BucketAccess> buckets;
    try {
        std::optional<std::string> password;
        if (password_fd) {
            password = kv::read_password(password_fd.get());
            password_fd.reset();
        }
        buckets.emplace(environment.run_dir, environment.server_config.stall_timeout, std::move(password));
    } catch (const std::exception& error) {
        return fail(std::string("unable to serve ") + address + ": " + error.what());
    }
    kv::log_line(kv::LogLevel::info, "serving the text protocol on " + address);
    [[maybe_unused]] auto written = ::write(notify.get(), kv::ready_line.data(), kv::ready_line.size());
    notify.reset();

    const std::size_t most = environment.server_config.max_connections;
    kv::text::ClientProcesses processes(*buckets, environment.server_config, { listener.get(), children.get() });
    std::vector<pollfd> watched;
    std::vector<pid_t> owners;
    for (;;) {
        watched.assign({ { children.get(), POLLIN, 0 }, { listener.get(), static_cast<short>(POLLIN), 0 } });
        owners.assign({ 0, 0 });
        processes.watch(watched, owners);
        if (::poll(watched.data(), watched.size(), -1) == -1) {
            if (errno == EINTR)
                continue;
            kv::log_line(kv::LogLevel::error, std::string("unable to wait for clients: poll: ") + std::strerror(errno));
            return 1;
        }
        // Processes done with their client first: their places are free for
        // whoever connected meanwhile.
        for (std::size_t i = 2; i < watched.size(); ++i) {
            if (watched[i].revents != 0)
                processes.done(owners[i]);
        }
        if (watched[0].revents & POLLIN) {
            signalfd_siginfo info;
            while (::read(children.get(), &info, sizeof info) > 0) {
            }
            processes.reap();
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
        if (processes.busy() >= most) {
            kv::peer_event_log().log(kv::LogLevel::warning, "refused a client of " + address + " ("
                + kv::peer_address(client.get()) + "): max connections reached (" + std::to_string(most) + ")");
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
        if (!processes.serve(std::move(client), why))
            kv::log_line(kv::LogLevel::error, "unable to serve a client of " + address + " (" + peer + "): " + why);
    }
}
