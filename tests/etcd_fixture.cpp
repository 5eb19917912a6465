// EtcdCluster: Debian's etcd on loopback for the cluster-mode tests (see etcd_fixture.h).
#include "etcd_fixture.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <utility> // before Asio: its awaitable.hpp needs std::exchange under -std=c++20 (g++ 12)

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/detail/base64.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "system_error.h"

extern char** environ;

namespace kv::test {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;

constexpr std::size_t attempts = 5; // starts with fresh ports, when a port was taken meanwhile

std::string base64_encode(const std::string& bytes)
{
    std::string text(beast::detail::base64::encoded_size(bytes.size()), '\0');
    text.resize(beast::detail::base64::encode(text.data(), bytes.data(), bytes.size()));
    return text;
}

std::string base64_decode(const std::string& text)
{
    std::string bytes(beast::detail::base64::decoded_size(text.size()), '\0');
    bytes.resize(beast::detail::base64::decode(bytes.data(), text.data(), text.size()).first);
    return bytes;
}

// etcd's own rule for a prefix's range end (clientv3.GetPrefixRangeEnd): the
// prefix with its last byte below 0xff incremented and what follows dropped;
// "\0" (every key) when there is none.
std::string prefix_range_end(const std::string& prefix)
{
    std::string end = prefix;
    while (!end.empty()) {
        if (static_cast<unsigned char>(end.back()) < 0xff) {
            end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
            return end;
        }
        end.pop_back();
    }
    return std::string(1, '\0');
}

// A port on 127.0.0.1 that was free a moment ago. Every socket stays open
// until all ports are chosen, so no two members get the same one; another
// process may still take one before etcd binds it (the start then retries).
UniqueFd bind_free_port(int& port)
{
    UniqueFd socket(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in address {};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (!socket || ::bind(socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == -1
        || ::getsockname(socket.get(), reinterpret_cast<sockaddr*>(&address), &length) == -1)
        throw SystemError("unable to find", "a free port on 127.0.0.1", errno);
    port = ntohs(address.sin_port);
    return socket;
}

// The test's environment without NOTIFY_SOCKET (each member gets its own)
// and without ETCD_* variables: etcd reads ETCD_<FLAG> as a flag, so one set
// around the test would change every member.
std::vector<std::string> member_environment(const std::string& notify_path)
{
    std::vector<std::string> environment;
    for (char** entry = environ; *entry; ++entry) {
        std::string text = *entry;
        if (text.rfind("NOTIFY_SOCKET=", 0) == 0 || text.rfind("ETCD_", 0) == 0)
            continue;
        environment.push_back(text);
    }
    environment.push_back("NOTIFY_SOCKET=" + notify_path);
    return environment;
}


// The last `count` lines of `text`, for an error message.
std::string last_lines(const std::string& text, std::size_t count)
{
    std::size_t start = text.size();
    if (start > 0 && text.back() == '\n')
        --start; // the final line's own newline
    for (; count > 0; --count) {
        const auto newline = start == 0 ? std::string::npos : text.rfind('\n', start - 1);
        if (newline == std::string::npos)
            return text;
        start = newline;
    }
    return text.substr(start + 1);
}

// etcd answered, with a status other than 200: post() passes it on rather
// than asking another member, which would answer the same.
struct StatusError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

void reap(int pidfd)
{
    siginfo_t info {};
    check(::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info, WEXITED), "unable to wait for", "etcd");
}

} // namespace

std::string etcd_missing()
{
    if (find_program("etcd").empty())
        return "etcd on PATH (Debian's etcd-server), to run a real etcd cluster";
    if (find_program("setpriv").empty())
        return "setpriv on PATH (util-linux), to tie etcd's life to the test's";
    return {};
}

EtcdCluster::EtcdCluster(EtcdOptions options)
{
    if (options.members == 0)
        throw std::invalid_argument("an etcd cluster needs at least one member");
    if (!etcd_missing().empty())
        throw std::runtime_error("cannot start etcd: needs " + etcd_missing());
    // Unique per fixture (the temporary directory's name is), so members of
    // two clusters that somehow meet refuse each other.
    token_ = "kv-test-" + directory_.path().substr(directory_.path().rfind('/') + 1);
    members_.resize(options.members);
    for (std::size_t i = 0; i < members_.size(); ++i) {
        Member& member = members_[i];
        member.name = "member" + std::to_string(i);
        member.data_dir = directory_.path() + "/" + member.name + ".etcd";
        member.log_path = directory_.path() + "/" + member.name + ".log";
        member.notify_path = directory_.path() + "/" + member.name + ".notify";
        member.notify = UniqueFd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        sockaddr_un address {};
        address.sun_family = AF_UNIX;
        if (member.notify_path.size() >= sizeof address.sun_path)
            throw std::runtime_error("notify socket path too long: " + member.notify_path);
        member.notify_path.copy(address.sun_path, sizeof address.sun_path - 1);
        if (!member.notify || ::bind(member.notify.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == -1)
            throw SystemError("unable to bind", member.notify_path, errno);
    }
    try {
        start();
    } catch (...) {
        // No destructor runs for a constructor that throws: stop what started.
        for (auto& member : members_)
            stop(member, SIGKILL);
        throw;
    }
}

void EtcdCluster::start()
{
    std::string failure;
    for (std::size_t attempt = 1; attempt <= attempts; ++attempt) {
        choose_ports();
        std::vector<std::size_t> all;
        // A cluster of several members elects a leader only once a quorum
        // runs: every member is started before any is waited for.
        for (std::size_t i = 0; i < members_.size(); ++i) {
            spawn(members_[i]);
            all.push_back(i);
        }
        if (wait_ready(all, failure))
            return;
        // A port was taken between our check and etcd's bind: start afresh,
        // data dirs too (a member that did start recorded the old peer URLs).
        for (auto& member : members_) {
            stop(member, SIGKILL);
            std::filesystem::remove_all(member.data_dir);
        }
    }
    throw std::runtime_error("etcd did not start in " + std::to_string(attempts) + " attempts: " + failure);
}

EtcdCluster::~EtcdCluster()
{
    for (auto& member : members_) {
        try {
            stop(member, SIGKILL);
        } catch (const std::exception& error) {
            ADD_FAILURE() << "unable to stop etcd " << member.name << ": " << error.what();
        }
    }
    // directory_ (every data dir, log and notify socket) goes after this.
}

void EtcdCluster::choose_ports()
{
    std::vector<UniqueFd> held;
    for (auto& member : members_) {
        held.push_back(bind_free_port(member.client_port));
        held.push_back(bind_free_port(member.peer_port));
    }
}

void EtcdCluster::spawn(Member& member)
{
    std::string initial_cluster;
    for (const auto& other : members_)
        initial_cluster += (initial_cluster.empty() ? "" : ",") + other.name + "=http://127.0.0.1:" + std::to_string(other.peer_port);
    const std::string client = "http://127.0.0.1:" + std::to_string(member.client_port);
    const std::string peer = "http://127.0.0.1:" + std::to_string(member.peer_port);
    // The same arguments on a restart: etcd ignores the --initial-* flags
    // once its data dir exists. zap at level error keeps the log to what
    // went wrong (etcd 3.4's default, capnslog at info, logs every step).
    // Through setpriv --pdeathsig KILL, which execs etcd (same pid): if the
    // test dies without its destructors (a crash, ctest's timeout), the
    // kernel kills the members instead of leaving them on their ports. The
    // signal comes when the spawning *thread* exits, so a cluster must be
    // created from a thread that outlives it (the test's own).
    std::vector<std::string> arguments { find_program("setpriv"), "--pdeathsig", "KILL", "--", find_program("etcd"),
        "--name", member.name, "--data-dir", member.data_dir,
        "--listen-client-urls", client, "--advertise-client-urls", client, "--listen-peer-urls", peer,
        "--initial-advertise-peer-urls", peer, "--initial-cluster", initial_cluster, "--initial-cluster-state", "new",
        "--initial-cluster-token", token_, "--logger", "zap", "--log-outputs", "stderr", "--log-level", "error" };
    auto environment = member_environment(member.notify_path);
    auto c_arguments = c_strings(arguments);
    auto c_environment = c_strings(environment);

    // A READY=1 left from an earlier run must not pass for this one's.
    char discard[256];
    while (::recv(member.notify.get(), discard, sizeof discard, MSG_DONTWAIT) >= 0) {
    }

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, member.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    // Its own process group: a signal meant for the test's group (a
    // terminal's ^Z, say) does not reach it, and only the fixture stops it.
    posix_spawnattr_t attributes;
    posix_spawnattr_init(&attributes);
    posix_spawnattr_setpgroup(&attributes, 0);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
    pid_t pid = -1;
    int error = ::posix_spawn(&pid, arguments[0].c_str(), &actions, &attributes, c_arguments.data(), c_environment.data());
    posix_spawnattr_destroy(&attributes);
    posix_spawn_file_actions_destroy(&actions);
    if (error)
        throw SystemError("unable to spawn", arguments[0], error);
    // Race-free: the child cannot be reaped (so its pid reused) before this,
    // since only the fixture waits for it.
    member.pidfd = open_pidfd(pid);
    if (!member.pidfd) {
        const int saved = errno;
        kill_process(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        throw SystemError("unable to open a pidfd for", "etcd " + member.name, saved);
    }
    member.pid = pid;
}

bool EtcdCluster::wait_ready(const std::vector<std::size_t>& starting, std::string& failure)
{
    const auto limit = scaled(30s);
    const auto deadline = std::chrono::steady_clock::now() + limit;
    std::vector<std::size_t> waiting = starting;
    while (!waiting.empty()) {
        // Each waiting member's notify socket, then its pidfd: an exit
        // before READY=1 is a failed start, seen at once.
        std::vector<pollfd> fds;
        for (auto i : waiting)
            fds.push_back({ members_[i].notify.get(), POLLIN, 0 });
        for (auto i : waiting)
            fds.push_back({ members_[i].pidfd.get(), POLLIN, 0 });
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            const Member& late = members_[waiting.front()];
            failure = "etcd " + late.name + " was not ready within " + std::to_string(limit.count()) + " ms; its log ends:\n"
                + last_lines(log(waiting.front()), 20);
            throw std::runtime_error(failure);
        }
        if (::poll(fds.data(), fds.size(), static_cast<int>(left.count())) == -1 && errno != EINTR)
            throw SystemError("unable to poll", "etcd's notify sockets", errno);
        std::vector<std::size_t> still;
        for (std::size_t k = 0; k < waiting.size(); ++k) {
            Member& member = members_[waiting[k]];
            bool ready = false;
            if (fds[k].revents & POLLIN) {
                char message[4096];
                auto n = ::recv(member.notify.get(), message, sizeof message - 1, MSG_DONTWAIT);
                // sd_notify's datagram is newline-separated assignments.
                if (n > 0)
                    ready = ("\n" + std::string(message, static_cast<std::size_t>(n)) + "\n").find("\nREADY=1\n") != std::string::npos;
            }
            if (ready)
                continue;
            if (fds[waiting.size() + k].revents & POLLIN) {
                reap(member.pidfd.get());
                member.pidfd.reset();
                member.pid = -1;
                const std::string text = log(waiting[k]);
                failure = "etcd " + member.name + " exited before it was ready; its log ends:\n" + last_lines(text, 20);
                if (text.find("address already in use") != std::string::npos)
                    return false;
                throw std::runtime_error(failure);
            }
            still.push_back(waiting[k]);
        }
        waiting = std::move(still);
    }
    return true;
}

void EtcdCluster::stop(Member& member, int signal)
{
    if (!member.pidfd)
        return;
    // pidfd_send_signal: no pid-reuse race, though the fixture is the only reaper anyway.
    if (::syscall(SYS_pidfd_send_signal, member.pidfd.get(), signal, nullptr, 0) == -1 && errno != ESRCH)
        throw SystemError("unable to signal", "etcd " + member.name, errno);
    bool exited = wait_readable(member.pidfd.get(), scaled(30s));
    if (!exited) {
        ::syscall(SYS_pidfd_send_signal, member.pidfd.get(), SIGKILL, nullptr, 0);
        wait_readable(member.pidfd.get(), scaled(30s));
    }
    reap(member.pidfd.get());
    member.pidfd.reset();
    member.pid = -1;
    if (!exited)
        throw std::runtime_error("etcd " + member.name + " did not exit within " + std::to_string(scaled(30s).count())
            + " ms of " + signal_text(signal) + "; killed");
}

const EtcdCluster::Member& EtcdCluster::at(std::size_t member) const
{
    if (member >= members_.size())
        throw std::out_of_range("no etcd member " + std::to_string(member) + " in a cluster of " + std::to_string(members_.size()));
    return members_[member];
}

std::string EtcdCluster::client_url(std::size_t member) const
{
    return "http://127.0.0.1:" + std::to_string(at(member).client_port);
}

std::string EtcdCluster::client_urls() const
{
    std::string urls;
    for (std::size_t i = 0; i < members_.size(); ++i)
        urls += (i ? "," : "") + client_url(i);
    return urls;
}

void EtcdCluster::kill_member(std::size_t member, int signal)
{
    at(member);
    if (!running(member))
        throw std::logic_error("etcd member " + std::to_string(member) + " is not running");
    // Its id, to tell its peers' new leader from it; none if it does not
    // answer (a member the test stopped with SIGSTOP, say).
    std::string id;
    if (members_.size() > 1) {
        try {
            id = status_of(member).value("header", nlohmann::json::object()).value("member_id", "");
        } catch (const std::runtime_error&) {
        }
    }
    stop(members_[member], signal);
    wait_for_leader(id);
}

nlohmann::json EtcdCluster::status_of(std::size_t member) const
{
    return nlohmann::json::parse(post_to(member, "/v3/maintenance/status", "{}"));
}

void EtcdCluster::wait_for_leader(const std::string& dead) const
{
    std::vector<std::size_t> alive;
    for (std::size_t i = 0; i < members_.size(); ++i) {
        if (running(i))
            alive.push_back(i);
    }
    if (dead.empty() || alive.size() <= members_.size() / 2)
        return; // one member alone, or no quorum left: nothing to elect
    // A survivor names its leader in its status ("leader", a member id); it
    // names the dead one until its election timeout (1 s by default) passes,
    // then none ("0") until one is elected. etcd offers no way to wait for an
    // election, so the status is asked again after a short pause, under a deadline.
    const auto limit = scaled(30s);
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
        std::string leader;
        try {
            leader = status_of(alive.front()).value("leader", "0");
        } catch (const std::runtime_error&) {
            leader = "0"; // a survivor may refuse a status while it has no leader
        }
        if (leader != "0" && leader != dead)
            return;
        if (std::chrono::steady_clock::now() > deadline)
            throw std::runtime_error("etcd elected no new leader within " + std::to_string(limit.count())
                + " ms of a member's exit");
        pollfd none {};
        ::poll(&none, 0, 10);
    }
}

void EtcdCluster::stop_all()
{
    for (auto& member : members_)
        stop(member, SIGKILL);
}

void EtcdCluster::restart_all()
{
    std::vector<std::size_t> down;
    for (std::size_t i = 0; i < members_.size(); ++i) {
        if (!running(i)) {
            spawn(members_[i]);
            down.push_back(i);
        }
    }
    std::string failure;
    if (!wait_ready(down, failure))
        throw std::runtime_error("etcd did not restart on its ports: " + failure);
}

bool EtcdCluster::running(std::size_t member) const { return at(member).pidfd.valid(); }

pid_t EtcdCluster::pid(std::size_t member) const { return at(member).pid; }

std::string EtcdCluster::data_dir(std::size_t member) const { return at(member).data_dir; }

std::string EtcdCluster::log(std::size_t member) const
{
    std::ifstream file(at(member).log_path);
    return std::string((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
}

std::string EtcdCluster::post_to(std::size_t member, const std::string& path, const std::string& json_body) const
{
    const int port = at(member).client_port;
    const std::string where = "POST " + client_url(member) + path;
    // Beast over Asio, each step under one deadline (tcp_stream's expiry
    // applies to asynchronous operations only, hence the handlers): a member
    // that hangs fails the call instead of the test hanging.
    asio::io_context io;
    beast::tcp_stream stream(io);
    http::request<http::string_body> request { http::verb::post, path, 11 };
    request.set(http::field::host, "127.0.0.1:" + std::to_string(port));
    request.set(http::field::content_type, "application/json");
    request.keep_alive(false);
    request.body() = json_body;
    request.prepare_payload();
    http::response<http::string_body> response;
    beast::flat_buffer buffer;
    beast::error_code failure;
    const asio::ip::tcp::endpoint endpoint(asio::ip::address_v4::loopback(), static_cast<unsigned short>(port));
    stream.expires_after(scaled(20s));
    stream.async_connect(endpoint, [&](beast::error_code error) {
        if (error) {
            failure = error;
            return;
        }
        http::async_write(stream, request, [&](beast::error_code error, std::size_t) {
            if (error) {
                failure = error;
                return;
            }
            http::async_read(stream, buffer, response, [&](beast::error_code error, std::size_t) { failure = error; });
        });
    });
    io.run();
    if (failure)
        throw std::runtime_error(where + " failed: " + failure.message());
    if (response.result() != http::status::ok)
        throw StatusError(where + " answered " + std::to_string(response.result_int()) + ": " + response.body());
    return response.body();
}

std::string EtcdCluster::post(const std::string& path, const std::string& json_body) const
{
    std::string failures;
    for (std::size_t i = 0; i < members_.size(); ++i) {
        if (!running(i))
            continue;
        try {
            return post_to(i, path, json_body);
        } catch (const StatusError&) {
            throw;
        } catch (const std::runtime_error& error) {
            failures += std::string(failures.empty() ? "" : "; ") + error.what();
        }
    }
    throw std::runtime_error("POST " + path + " to etcd failed: "
        + (failures.empty() ? std::string("no member is running") : failures));
}

void EtcdCluster::put(const std::string& key, const std::string& value) const
{
    post("/v3/kv/put", nlohmann::json { { "key", base64_encode(key) }, { "value", base64_encode(value) } }.dump());
}

void EtcdCluster::remove(const std::string& key) const
{
    post("/v3/kv/deleterange", nlohmann::json { { "key", base64_encode(key) } }.dump());
}

namespace {

std::map<std::string, std::string> range_reply(const std::string& body)
{
    std::map<std::string, std::string> values;
    const auto reply = nlohmann::json::parse(body);
    // proto3 JSON leaves out empty fields: no "kvs" when nothing matched, no
    // "value" for an empty value.
    if (reply.contains("kvs")) {
        for (const auto& entry : reply["kvs"])
            values[base64_decode(entry.value("key", ""))] = base64_decode(entry.value("value", ""));
    }
    return values;
}

std::string range_request(const std::string& prefix)
{
    return nlohmann::json { { "key", base64_encode(prefix.empty() ? std::string(1, '\0') : prefix) },
        { "range_end", base64_encode(prefix_range_end(prefix)) } }
        .dump();
}

} // namespace

std::map<std::string, std::string> EtcdCluster::range_prefix(const std::string& prefix) const
{
    return range_reply(post("/v3/kv/range", range_request(prefix)));
}

std::map<std::string, std::string> EtcdCluster::range_prefix_on(std::size_t member, const std::string& prefix) const
{
    return range_reply(post_to(member, "/v3/kv/range", range_request(prefix)));
}

} // namespace kv::test
