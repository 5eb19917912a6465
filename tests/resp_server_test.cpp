// RespServer and Client in one process: a server on its own thread and
// io_context, on a socket in a temporary directory, with a handler that
// defers WAIT (kept by connection id, forgotten on hangup) and answers PING
// at once. `WAIT KEEP` also keeps a copy of its Responder that no hangup
// erases, for the tests of a Responder that outlives its reply, its
// connection or its server. Nothing sleeps to synchronise: the tests wait on
// replies, on poll() and on a condition variable the loop thread signals,
// each with a deadline so that a bug fails instead of hanging.
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "client.h"
#include "resp_server.h"
#include "system_error.h"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using kv::resp::Value;

namespace {

// A listening socket bound at `path` (registryd binds through SocketFile,
// relative to its run dir; here a plain path is enough). The file stays.
kv::UniqueFd listen_at_path(const std::string& path, mode_t mode)
{
    kv::UniqueFd fd(kv::check(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "unable to create socket", path));
    sockaddr_un address {};
    address.sun_family = AF_UNIX;
    path.copy(address.sun_path, sizeof address.sun_path - 1);
    kv::check(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address), "unable to bind socket", path);
    kv::check(::chmod(path.c_str(), mode), "unable to set the mode of socket", path);
    kv::check(::listen(fd.get(), SOMAXCONN), "unable to listen on socket", path);
    return fd;
}

class TemporaryDirectory {
public:
    TemporaryDirectory()
    {
        char name[] = "/tmp/kv-resp-XXXXXX";
        if (!::mkdtemp(name))
            throw kv::SystemError("unable to create temporary directory", name, errno);
        path_ = name;
    }
    ~TemporaryDirectory() { std::filesystem::remove_all(path_); }
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

// What the loop thread publishes after each change, for the test's thread.
struct Counters {
    std::size_t waits = 0;       // WAIT requests deferred
    std::size_t hangups = 0;     // on_hangup callbacks run
    std::size_t waiting = 0;     // WAIT replies still owed
    std::size_t connections = 0; // RespServer::connection_count(), 0 once destroyed
    std::size_t reentered = 0;   // handlers or hangup callbacks run inside a RELEASE's send()
    std::size_t late_hangups = 0; // hangup callbacks given to kept Responders that ran
};

class TestServer {
public:
    explicit TestServer(kv::ServerConfig config = {})
        : path_(directory_.path() + "/test.sock")
    {
        server_ = std::make_unique<kv::RespServer>(io_, listen_at_path(path_, 0600), path_,
            [this](kv::resp::Request& request, kv::ReplySink& reply) { handle(request, reply); }, config);
        thread_ = std::thread([this] { io_.run(); });
    }
    ~TestServer()
    {
        kv::asio::post(io_, [this] {
            if (server_)
                server_->close();
        });
        guard_.reset();
        thread_.join();
    }

    const std::string& path() const { return path_; }
    const std::string& directory() const { return directory_.path(); }

    // RespServer::close() on the loop's thread.
    void close()
    {
        kv::asio::post(io_, [this] {
            server_->close();
            publish();
        });
    }

    // Destroys the RespServer on the loop's thread.
    void destroy()
    {
        kv::asio::post(io_, [this] {
            server_.reset();
            publish();
        });
    }

    // On the loop's thread, in one turn and again on a later one: sends
    // `reply` through every kept Responder and asks each for a hangup
    // callback (counted in late_hangups when it runs).
    void use_kept_responders(const std::string& reply)
    {
        kv::asio::post(io_, [this, reply] {
            use_kept(reply);
            kv::asio::post(io_, [this, reply] { use_kept(reply); });
        });
    }

    // Waits until `done` holds for what the loop published; false if
    // `timeout` passed first.
    bool wait_for(const std::function<bool(const Counters&)>& done, Clock::duration timeout = 60s)
    {
        std::unique_lock lock(mutex_);
        return changed_.wait_for(lock, timeout, [&] { return done(published_); });
    }

private:
    // Runs on the loop's thread.
    void handle(kv::resp::Request& request, kv::ReplySink& reply)
    {
        if (sending_)
            ++reentered_;
        const std::string& verb = request[0];
        if (verb == "PING") {
            if (request.size() > 1)
                kv::resp::append_bulk(reply.now(), request[1]);
            else
                kv::resp::append_simple(reply.now(), "PONG");
        } else if (verb == "WAIT") {
            // Answered by a RELEASE; forgotten if the client hangs up first.
            auto responder = reply.defer();
            const auto id = responder.connection_id();
            waiting_.emplace(id, responder);
            if (request.size() == 2 && request[1] == "KEEP")
                kept_.push_back(responder);
            responder.on_hangup([this, id] {
                if (sending_)
                    ++reentered_;
                waiting_.erase(id);
                ++hangups_;
                publish();
            });
            ++waits_;
            publish();
        } else if (verb == "RELEASE" && request.size() == 2) {
            // Answers every WAIT with the argument, then says how many.
            auto waiting = std::move(waiting_);
            waiting_.clear();
            sending_ = true;
            for (auto& [id, responder] : waiting) {
                std::string answer;
                kv::resp::append_simple(answer, request[1]);
                responder.send(std::move(answer));
            }
            sending_ = false;
            kv::resp::append_integer(reply.now(), static_cast<long long>(waiting.size()));
            publish();
        } else if (verb == "RESEND" && request.size() == 2) {
            // Sends again through every kept Responder (each already answered
            // or forgotten) and asks each for a hangup callback (counted in
            // late_hangups if it ever runs), then says how many.
            use_kept(request[1]);
            kv::resp::append_integer(reply.now(), static_cast<long long>(kept_.size()));
        } else if (verb == "DEFER-NOW" && request.size() == 2) {
            // Deferred, then answered before the handler returns, as registryd answers everything.
            std::string answer;
            kv::resp::append_bulk(answer, request[1]);
            reply.defer().send(std::move(answer));
        } else {
            kv::resp::append_error(reply.now(), "ERR unknown command");
        }
    }

    void use_kept(const std::string& reply)
    {
        for (auto& responder : kept_) {
            std::string answer;
            kv::resp::append_simple(answer, reply);
            responder.send(std::move(answer));
            responder.on_hangup([this] {
                ++late_hangups_;
                publish();
            });
        }
        publish();
    }

    void publish()
    {
        std::lock_guard lock(mutex_);
        published_ = Counters { waits_, hangups_, waiting_.size(), server_ ? server_->connection_count() : 0,
            reentered_, late_hangups_ };
        changed_.notify_all();
    }

    TemporaryDirectory directory_;
    std::string path_;
    kv::asio::io_context io_;
    kv::asio::executor_work_guard<kv::asio::io_context::executor_type> guard_ = kv::asio::make_work_guard(io_);
    std::unique_ptr<kv::RespServer> server_; // on the heap: ASan sees a completion that touches it once destroyed
    std::thread thread_;
    // The loop thread's own state.
    std::map<std::uint64_t, kv::Responder> waiting_;
    std::vector<kv::Responder> kept_; // WAIT KEEP's, never erased
    bool sending_ = false;            // inside RELEASE's sends
    std::size_t waits_ = 0;
    std::size_t hangups_ = 0;
    std::size_t reentered_ = 0;
    std::size_t late_hangups_ = 0;
    // Shared with the test's thread.
    std::mutex mutex_;
    std::condition_variable changed_;
    Counters published_;
};

// Sends fd 2 to a file while it lives: RespServer says why it drops a client there.
class CapturedStderr {
public:
    explicit CapturedStderr(const std::string& path)
        : path_(path)
        , file_(kv::check(::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600), "unable to create", path))
        , saved_(kv::check(::fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3), "unable to duplicate", "stderr"))
    {
        kv::check(::dup2(file_.get(), STDERR_FILENO), "unable to redirect stderr to", path);
    }
    ~CapturedStderr() { ::dup2(saved_.get(), STDERR_FILENO); }
    std::string text() const
    {
        std::ifstream in(path_);
        return std::string(std::istreambuf_iterator<char>(in), {});
    }

private:
    std::string path_;
    kv::UniqueFd file_;
    kv::UniqueFd saved_;
};

std::size_t resident_kib()
{
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.rfind("VmRSS:", 0) == 0)
            return std::stoul(line.substr(6));
    }
    return 0;
}

kv::ConnectOptions within(Clock::duration timeout)
{
    kv::ConnectOptions options;
    options.deadline = Clock::now() + timeout;
    return options;
}

// A client whose WAIT (or WAIT KEEP) the server holds, the only one waiting.
kv::Client waiting_client(TestServer& server, const std::vector<std::string>& wait = { "WAIT" })
{
    auto client = kv::Client::connect(server.path(), within(30s));
    client.send_raw(kv::resp::encode_command(wait));
    if (!server.wait_for([](const Counters& c) { return c.waiting == 1; }))
        throw std::runtime_error("the server never held the WAIT");
    return client;
}

// RELEASE from a client of its own: how many WAITs it answered.
long long release(TestServer& server, const std::string& answer)
{
    return kv::Client::connect(server.path(), within(30s)).call({ "RELEASE", answer }).integer;
}

} // namespace

TEST(RespServer, ClientsThatHangUpOnAPendingReplyLeaveNothingBehind)
{
    kv::ServerConfig config;
    config.max_connections = 100000;
    TestServer server(config);
    constexpr std::size_t clients = 20000;
    constexpr std::size_t window = 500; // hung up but maybe not yet seen, at most
    const std::string wait = kv::resp::encode_command({ "WAIT" });
    std::size_t sent = 0;
    auto batch = [&] {
        for (std::size_t i = 0; i < clients; ++i) {
            auto client = kv::Client::connect(server.path(), within(30s));
            client.send_raw(wait);
            ++sent; // hangs up here
            if (sent % window == 0) {
                ASSERT_TRUE(server.wait_for([&](const Counters& c) { return c.hangups + window >= sent; }))
                    << "on_hangup did not keep up with " << sent << " hangups";
            }
        }
        ASSERT_TRUE(server.wait_for([&](const Counters& c) {
            return c.waits == sent && c.hangups == sent && c.waiting == 0 && c.connections == 0;
        })) << "not every hung-up WAIT was forgotten";
    };
    batch();
    if (HasFatalFailure())
        return;
    const auto after_first = resident_kib();
    batch();
    if (HasFatalFailure())
        return;
    const auto after_second = resident_kib();
    EXPECT_LT(after_second, after_first + 8 * 1024) << "20,000 more hung-up clients kept memory: "
                                                    << after_first << " KiB, then " << after_second << " KiB";
    // And the server still serves.
    EXPECT_EQ(kv::Client::connect(server.path(), within(30s)).call({ "PING" }).text, "PONG");
}

TEST(RespServer, InputBehindAPendingReplyIsHeldBackThenTheClientIsDropped)
{
    kv::ServerConfig config;
    config.stall_timeout = 300ms;
    TestServer server(config);
    CapturedStderr log(server.directory() + "/stderr.log");

    auto client = kv::Client::connect(server.path(), within(30s));
    // The kernel's share of the bound: a known send buffer (it doubles it), not the sysctl's.
    int send_buffer = 32 * 1024;
    ASSERT_EQ(::setsockopt(client.fd(), SOL_SOCKET, SO_SNDBUF, &send_buffer, sizeof send_buffer), 0);
    client.send_raw(kv::resp::encode_command({ "WAIT" }));
    ASSERT_TRUE(server.wait_for([](const Counters& c) { return c.waits == 1; }));

    // Pipelined PINGs, written whenever the socket takes them, until the
    // server hangs up on us.
    std::string pings;
    for (int i = 0; i < 4096; ++i)
        pings += kv::resp::encode_command({ "PING" });
    std::size_t accepted = 0;
    bool dropped = false;
    const auto deadline = Clock::now() + 30s;
    while (!dropped && Clock::now() < deadline) {
        pollfd entry { client.fd(), POLLOUT | POLLRDHUP, 0 };
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (::poll(&entry, 1, static_cast<int>(std::max<long>(left.count(), 1))) <= 0)
            continue;
        if (entry.revents & (POLLRDHUP | POLLHUP | POLLERR)) {
            dropped = true;
            break;
        }
        for (;;) {
            auto n = ::send(client.fd(), pings.data(), pings.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n <= 0)
                break;
            accepted += static_cast<std::size_t>(n);
        }
    }
    ASSERT_TRUE(dropped) << "the server kept a client stuck behind a pending reply; it took " << accepted << " bytes";
    // 64 KiB read ahead plus what the kernel's socket buffers hold (twice the 32 KiB asked for).
    EXPECT_LT(accepted, 256u * 1024) << "the server kept reading behind a pending reply";
    EXPECT_GT(accepted, 0u);
    EXPECT_TRUE(server.wait_for([](const Counters& c) { return c.hangups == 1 && c.waiting == 0 && c.connections == 0; }));
    EXPECT_NE(log.text().find("dropped a client of " + server.path()
                  + ": it kept sending requests behind a reply that is still pending"),
        std::string::npos)
        << log.text();
    EXPECT_EQ(kv::Client::connect(server.path(), within(30s)).call({ "PING" }).text, "PONG");
}

TEST(RespServer, HalfWrittenRequestIsStillDroppedWhenStalled)
{
    kv::ServerConfig config;
    config.stall_timeout = 300ms;
    TestServer server(config);
    CapturedStderr log(server.directory() + "/stderr.log");
    auto stalled = kv::Client::connect(server.path(), within(30s));
    stalled.send_raw("*2\r\n$4\r\nPING\r\n$5\r\nab");
    EXPECT_THROW(stalled.read_reply(), kv::ConnectionClosed);
    EXPECT_NE(log.text().find("it stopped in the middle of a request"), std::string::npos) << log.text();
}

TEST(RespServer, RepliesStayInOrderAroundADeferredReply)
{
    TestServer server;
    auto client = kv::Client::connect(server.path(), within(30s));
    client.send_raw(kv::resp::encode_command({ "DEFER-NOW", "first" }) + kv::resp::encode_command({ "WAIT" })
        + kv::resp::encode_command({ "PING", "one" }) + kv::resp::encode_command({ "PING", "two" }));
    EXPECT_EQ(client.read_reply().text, "first");
    ASSERT_TRUE(server.wait_for([](const Counters& c) { return c.waiting == 1; }));
    EXPECT_EQ(release(server, "released"), 1);
    EXPECT_EQ(client.read_reply().text, "released");
    EXPECT_EQ(client.read_reply().text, "one");
    EXPECT_EQ(client.read_reply().text, "two");
    EXPECT_EQ(client.call({ "PING" }).text, "PONG");
}

TEST(RespServer, CloseForgetsPendingRepliesAndHangsUp)
{
    TestServer server;
    auto client = waiting_client(server);
    server.close();
    EXPECT_TRUE(server.wait_for([](const Counters& c) { return c.hangups == 1 && c.waiting == 0 && c.connections == 0; }));
    EXPECT_THROW(client.read_reply(), kv::ConnectionClosed);
    // The socket file is its binder's: close() leaves it.
    EXPECT_TRUE(std::filesystem::exists(server.path()));
}

TEST(RespServer, SendFromOutsideAHandlerRunsNothingBeforeItReturns)
{
    TestServer server;
    auto client = kv::Client::connect(server.path(), within(30s));
    client.send_raw(kv::resp::encode_command({ "WAIT" }) + kv::resp::encode_command({ "PING", "behind" }));
    ASSERT_TRUE(server.wait_for([](const Counters& c) { return c.waiting == 1; }));
    EXPECT_EQ(release(server, "released"), 1);
    EXPECT_EQ(client.read_reply().text, "released");
    EXPECT_EQ(client.read_reply().text, "behind");
    // The PING behind the WAIT ran, but on a later turn, not inside send().
    EXPECT_TRUE(server.wait_for([](const Counters& c) { return c.reentered == 0; }, 0s));
}

TEST(RespServer, ASecondSendThroughOneResponderIsIgnored)
{
    TestServer server;
    auto client = waiting_client(server, { "WAIT", "KEEP" });
    EXPECT_EQ(release(server, "first"), 1);
    EXPECT_EQ(client.read_reply().text, "first");
    auto resend = [&](const std::string& text) {
        return kv::Client::connect(server.path(), within(30s)).call({ "RESEND", text }).integer;
    };
    EXPECT_EQ(resend("stale"), 1);
    EXPECT_EQ(client.call({ "PING" }).text, "PONG");

    // Nor does it answer a later request on the same connection, or take
    // over that request's hangup callback.
    client.send_raw(kv::resp::encode_command({ "WAIT" }));
    ASSERT_TRUE(server.wait_for([](const Counters& c) { return c.waits == 2 && c.waiting == 1; }));
    EXPECT_EQ(resend("stale"), 1);
    EXPECT_EQ(release(server, "second"), 1);
    EXPECT_EQ(client.read_reply().text, "second");
    client.send_raw(kv::resp::encode_command({ "WAIT" }));
    ASSERT_TRUE(server.wait_for([](const Counters& c) { return c.waits == 3 && c.waiting == 1; }));
    EXPECT_EQ(resend("stale"), 1);
    ::shutdown(client.fd(), SHUT_RDWR); // hangs up
    EXPECT_TRUE(server.wait_for([](const Counters& c) { return c.hangups == 1 && c.waiting == 0; }));
    EXPECT_TRUE(server.wait_for([](const Counters& c) { return c.late_hangups == 0; }, 0s));
}

TEST(RespServer, OnHangupNeverRunsAfterTheReplyWasSent)
{
    TestServer server;
    auto client = waiting_client(server);
    EXPECT_EQ(release(server, "released"), 1);
    EXPECT_EQ(client.read_reply().text, "released");
    server.close(); // closes the client's connection, which owes nothing now
    ASSERT_TRUE(server.wait_for([](const Counters& c) { return c.connections == 0; }));
    EXPECT_TRUE(server.wait_for([](const Counters& c) { return c.hangups == 0; }, 0s));
}

namespace {

// A deferred reply pending when the server closes (or is destroyed): the
// hangup callback runs once, then the Responder, on the same turn (its
// connection closed but not yet freed) and on a later one, writes nothing
// and runs each new hangup callback at once.
void check_a_responder_outlives_its_server(bool destroy)
{
    TestServer server;
    auto client = waiting_client(server, { "WAIT", "KEEP" });
    if (destroy)
        server.destroy();
    else
        server.close();
    server.use_kept_responders("late");
    EXPECT_TRUE(server.wait_for([](const Counters& c) {
        return c.hangups == 1 && c.waiting == 0 && c.connections == 0 && c.late_hangups == 2;
    }));
    EXPECT_THROW(client.read_reply(), kv::ConnectionClosed);
    EXPECT_THROW(kv::Client::connect(server.path(), within(30s)), kv::SystemError); // nobody listens
}

} // namespace

TEST(RespServer, AResponderOutlivesItsClosedServer)
{
    check_a_responder_outlives_its_server(false);
}

TEST(RespServer, AResponderOutlivesItsDestroyedServer)
{
    check_a_responder_outlives_its_server(true);
}

TEST(Client, TimesOutOnAListenerThatNeverAccepts)
{
    TemporaryDirectory directory;
    const std::string path = directory.path() + "/silent.sock";
    auto listener = listen_at_path(path, 0600);
    auto client = kv::Client::connect(path, within(200ms)); // queued in the backlog
    try {
        client.call({ "PING" });
        ADD_FAILURE() << "a call to a listener that never accepts returned";
    } catch (const kv::TimedOut& error) {
        EXPECT_EQ(std::string(error.what()), "timed out waiting for " + path);
    }
}

TEST(Client, ConnectTimesOutWhileTheBacklogIsFull)
{
    TemporaryDirectory directory;
    const std::string path = directory.path() + "/full.sock";
    kv::UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(listener);
    sockaddr_un address {};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path.data(), path.size());
    ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    ASSERT_EQ(::listen(listener.get(), 0), 0);
    // Linux queues backlog + 1 connections; the next connect blocks.
    std::vector<kv::Client> queued;
    bool timed_out = false;
    for (int attempt = 0; attempt < 16 && !timed_out; ++attempt) {
        try {
            queued.push_back(kv::Client::connect(path, within(200ms)));
        } catch (const kv::TimedOut& error) {
            EXPECT_EQ(std::string(error.what()), "timed out waiting for " + path);
            timed_out = true;
        }
    }
    EXPECT_TRUE(timed_out) << queued.size() << " connects to a listener with a backlog of 0 all succeeded";
}

TEST(Client, TimesOutOnAServerThatAcceptsButNeverAnswers)
{
    TemporaryDirectory directory;
    const std::string path = directory.path() + "/mute.sock";
    auto listener = listen_at_path(path, 0600);
    auto client = kv::Client::connect(path, within(200ms));
    kv::UniqueFd accepted(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(accepted);
    EXPECT_THROW(client.call({ "PING" }), kv::TimedOut);

    // A deadline set later applies too; and a send the server never reads times out.
    auto later = kv::Client::connect(path);
    kv::UniqueFd accepted_later(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(accepted_later);
    later.set_deadline(Clock::now() + 200ms);
    EXPECT_THROW(later.send_raw(std::string(64 * 1024 * 1024, 'x')), kv::TimedOut);
    later.set_deadline(Clock::now() + 200ms);
    EXPECT_THROW(later.read_reply(), kv::TimedOut);
}

TEST(Client, TrustsOnlyTheExpectedPeerUid)
{
    TestServer server;
    const uid_t self = ::getuid();
    const uid_t other = self == 12345 ? 12346 : 12345;
    kv::ConnectOptions untrusting = within(30s);
    untrusting.expected_peer_uid = other;
    try {
        kv::Client::connect(server.path(), untrusting);
        ADD_FAILURE() << "connected to a server of uid " << self << " when uid " << other << " was expected";
    } catch (const kv::UntrustedPeer& error) {
        EXPECT_EQ(std::string(error.what()), "unable to trust " + server.path() + ": it is served by uid "
                + std::to_string(self) + ", not uid " + std::to_string(other));
    }
    kv::ConnectOptions trusting = within(30s);
    trusting.expected_peer_uid = self;
    EXPECT_EQ(kv::Client::connect(server.path(), trusting).call({ "PING" }).text, "PONG");
}
