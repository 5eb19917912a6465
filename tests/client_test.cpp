// Client over TCP (Client::connect_tcp, authenticate): against a real
// RespServer with a password (Redis's requirepass, as every bucket's TCP
// port is served) on loopback, IPv4 and IPv6, on its own thread. The Unix
// side of Client is tested in resp_server_test.cpp. Nothing sleeps: each
// test waits on a reply or on the client's own deadline.
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "client.h"
#include "command_table.h"
#include "resp_server.h"
#include "system_error.h"
#include "tcp_listener.h"
#include "tcp_peer.h"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

const std::string password = "correct horse battery staple";

// A RespServer on a TCP port of `host` ("127.0.0.1", "[::1]") that clients
// must AUTH on with `password`: the connection commands every kv socket
// serves (AUTH, HELLO ...), and ECHO, which its handler answers.
class TcpServer {
public:
    explicit TcpServer(const std::string& host = "127.0.0.1")
    {
        kv::TcpListener listener = kv::listen_tcp(host + ":0");
        address_ = listener.address;
        kv::ServerRole role;
        role.commands.push_back(kv::CommandInfo { "ECHO", 2, 2, {} }); // known, so refused until AUTH
        server_ = std::make_unique<kv::RespServer>(io_, std::move(listener.fd), address_,
            [](kv::resp::Request& request, kv::ReplySink& reply) { kv::resp::append_bulk(reply.now(), request[1]); },
            kv::ServerConfig {}, role, password);
        thread_ = std::thread([this] { io_.run(); });
    }
    ~TcpServer()
    {
        kv::asio::post(io_, [this] { server_->close(); });
        guard_.reset();
        thread_.join();
    }
    const std::string& address() const { return address_; }

private:
    kv::asio::io_context io_;
    kv::asio::executor_work_guard<kv::asio::io_context::executor_type> guard_ = kv::asio::make_work_guard(io_);
    std::string address_;
    std::unique_ptr<kv::RespServer> server_;
    std::thread thread_;
};

kv::ConnectOptions within(Clock::duration timeout, std::optional<std::string> with_password = password)
{
    kv::ConnectOptions options;
    options.deadline = Clock::now() + timeout;
    options.password = std::move(with_password);
    return options;
}

// What `run` throws, as E, or a failure if it throws nothing or something else.
template <class E, class Run>
std::string error_of(Run run)
{
    try {
        run();
    } catch (const E& error) {
        return error.what();
    } catch (const std::exception& error) {
        ADD_FAILURE() << "threw another exception: " << error.what();
        return {};
    }
    ADD_FAILURE() << "threw nothing";
    return {};
}

} // namespace

TEST(Client, ConnectsOverTcpAndAuthenticatesWithThePassword)
{
    TcpServer server;
    auto client = kv::Client::connect_tcp(server.address(), within(30s));
    EXPECT_EQ(client.call({ "ECHO", "hello" }).text, "hello");
}

TEST(Client, ConnectsOverIpv6)
{
    TcpServer server("[::1]");
    ASSERT_EQ(server.address().rfind("[::1]:", 0), 0u) << server.address();
    auto client = kv::Client::connect_tcp(server.address(), within(30s));
    EXPECT_EQ(client.call({ "ECHO", "six" }).text, "six");
}

TEST(Client, AWrongPasswordIsRefusedInOneLineNamingTheAddress)
{
    TcpServer server;
    const std::string message = error_of<kv::AuthenticationFailed>([&] { kv::Client::connect_tcp(server.address(), within(30s, "wrong")); });
    EXPECT_EQ(message, "unable to authenticate to " + server.address()
            + ": the password was refused (WRONGPASS invalid username-password pair or user is disabled.)");
}

TEST(Client, AServerThatWantsAPasswordNotGivenIsAnAuthenticationFailure)
{
    TcpServer server;
    auto client = kv::Client::connect_tcp(server.address(), within(30s, std::nullopt));
    const std::string message = error_of<kv::AuthenticationFailed>([&] { client.call({ "ECHO", "hello" }); });
    EXPECT_EQ(message, "unable to use " + server.address() + ": it asks for a password, and none was given (NOAUTH Authentication required.)");
    // A later AUTH on the same connection still works.
    client.authenticate(password);
    EXPECT_EQ(client.call({ "ECHO", "hello" }).text, "hello");
}

TEST(Client, ANameWithNobodyListeningIsRefusedNamingTheAddress)
{
    std::string address;
    {
        kv::TcpListener listener = kv::listen_tcp("127.0.0.1:0");
        address = listener.address;
    } // closed: nobody listens there now (the port is not reused by anyone at once)
    try {
        kv::Client::connect_tcp(address, within(30s));
        FAIL() << "connected to a closed port";
    } catch (const kv::SystemError& error) {
        EXPECT_EQ(error.error(), ECONNREFUSED);
        EXPECT_EQ(std::string(error.what()), "unable to connect to " + address + ": Connection refused");
    }
}

TEST(Client, AddressesOtherThanNumericHostAndPortAreRefusedBeforeConnecting)
{
    for (const std::string address : { "localhost:6379", "::1:6379", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
             "127.0.0.1:http", ":6379", "[::1]" }) {
        const std::string message = error_of<std::invalid_argument>([&] { kv::Client::connect_tcp(address, within(30s)); });
        EXPECT_EQ(message.rfind("unable to connect to " + address + ": ", 0), 0u) << address << ": " << message;
    }
}

TEST(Client, TimesOutOverTcpOnAServerThatNeverAnswers)
{
    // A listener nobody accepts on: the kernel completes the handshake, and
    // the AUTH waits for a reply that never comes.
    kv::TcpListener listener = kv::listen_tcp("127.0.0.1:0");
    const auto start = Clock::now();
    const std::string message = error_of<kv::TimedOut>([&] { kv::Client::connect_tcp(listener.address, within(200ms)); });
    EXPECT_EQ(message, "timed out waiting for " + listener.address);
    EXPECT_GE(Clock::now() - start, 200ms);
}

TEST(Client, TcpConnectTimesOutWhileTheListenersQueueIsFull)
{
    // listen(fd, 0): Linux queues one handshaken connection, then drops
    // every SYN until it is accepted; the client's handshake is then
    // retried by the kernel, and only our deadline ends the wait.
    kv::TcpListener listener = kv::listen_tcp("127.0.0.1:0");
    ASSERT_EQ(::listen(listener.fd.get(), 0), 0);
    std::vector<kv::Client> queued;
    for (int attempt = 0; attempt < 8; ++attempt) {
        try {
            queued.push_back(kv::Client::connect_tcp(listener.address, within(300ms, std::nullopt)));
        } catch (const kv::TimedOut& error) {
            EXPECT_EQ(std::string(error.what()), "timed out waiting for " + listener.address);
            EXPECT_GE(queued.size(), 1u);
            return;
        }
    }
    FAIL() << queued.size() << " connections queued, none timed out";
}
