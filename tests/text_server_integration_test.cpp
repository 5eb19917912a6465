// The guide's text server (registryd --text-listen, textd): its protocol over
// a real TCP connection, byte for byte as the guide's integration test has it;
// what a crash of textd, or of one client's process, reaches (nothing but its
// own connections); and hostile clients, as for the RESP sockets.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include <gtest/gtest.h>

#include "daemon_fixture.h"
#include "log.h"

namespace {

using namespace kv::test;

int text_port(const RegistryDaemon& daemon)
{
    const std::string address = registry_info(daemon)["text_listen"];
    const auto colon = address.rfind(':');
    EXPECT_EQ(address.substr(0, colon), "127.0.0.1");
    return colon == std::string::npos ? -1 : std::stoi(address.substr(colon + 1));
}

// textd's pid, or -1 while none runs (INFO says nothing then).
pid_t textd_pid(const RegistryDaemon& daemon)
{
    const std::string pid = registry_info(daemon)["text_server_pid"];
    return pid.empty() ? -1 : static_cast<pid_t>(std::stol(pid));
}

// A client of the text port, reading line by line as the guide's test does
// (:gen_tcp's packet: :line), each read with a deadline.
class TextClient {
public:
    explicit TextClient(int port)
        : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0))
    {
        sockaddr_in address {};
        address.sin_family = AF_INET;
        address.sin_port = htons(static_cast<std::uint16_t>(port));
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(fd_.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == -1)
            ADD_FAILURE() << "connect to 127.0.0.1:" << port << ": " << std::strerror(errno);
    }

    void send(std::string_view bytes)
    {
        while (!bytes.empty()) {
            const ssize_t sent = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
            if (sent <= 0) {
                ADD_FAILURE() << "send: " << std::strerror(errno);
                return;
            }
            bytes.remove_prefix(static_cast<std::size_t>(sent));
        }
    }

    // The next line, "\n" included; what came before the end if the server
    // closed first ("" then), or failure if nothing came in time.
    std::string line(std::chrono::milliseconds timeout = scaled(20s))
    {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            if (const auto newline = buffer_.find('\n'); newline != std::string::npos) {
                std::string line = buffer_.substr(0, newline + 1);
                buffer_.erase(0, newline + 1);
                return line;
            }
            if (closed_)
                return std::exchange(buffer_, "");
            if (!read_more(deadline)) {
                ADD_FAILURE() << "no line within " << timeout.count() << " ms; have " << kv::printable(buffer_);
                return "(timed out)";
            }
        }
    }

    // The guide's send_and_recv: a line out, a line back.
    std::string call(std::string_view request)
    {
        send(request);
        return line();
    }

    // True once the server has closed the connection (nothing more to read).
    bool closed_by_server(std::chrono::milliseconds timeout = scaled(20s))
    {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (!closed_) {
            if (!read_more(deadline))
                return false;
        }
        return true;
    }

    const std::string& unread() const { return buffer_; }
    int fd() const { return fd_.get(); }

private:
    // One read into the buffer (or the server's close noted), once there is
    // something to read; false if `deadline` passed first.
    bool read_more(std::chrono::steady_clock::time_point deadline)
    {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        pollfd readable { fd_.get(), POLLIN, 0 };
        if (left.count() <= 0 || ::poll(&readable, 1, static_cast<int>(left.count())) != 1)
            return false;
        char chunk[65536];
        const ssize_t got = ::read(fd_.get(), chunk, sizeof chunk);
        if (got <= 0)
            closed_ = true;
        else
            buffer_.append(chunk, static_cast<std::size_t>(got));
        return true;
    }

    kv::UniqueFd fd_;
    std::string buffer_;
    bool closed_ = false;
};

DaemonOptions text_daemon(std::vector<std::string> extra = {})
{
    DaemonOptions options;
    options.arguments = { "--text-listen", "127.0.0.1:0" };
    options.arguments.insert(options.arguments.end(), extra.begin(), extra.end());
    return options;
}

// textd's children: one process per connected client.
std::vector<pid_t> handlers_of(pid_t textd)
{
    std::vector<pid_t> pids;
    for (const auto& child : children_of(textd))
        pids.push_back(child.pid);
    return pids;
}

// Waits until textd has exactly `count` client processes (exited ones
// reaped), polling /proc as wait_for_connections does; returns what it saw last.
std::size_t wait_for_handlers(pid_t textd, std::size_t count, std::chrono::milliseconds timeout = scaled(20s))
{
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        const std::size_t now = handlers_of(textd).size();
        if (now == count || std::chrono::steady_clock::now() >= deadline)
            return now;
        ::poll(nullptr, 0, 1);
    }
}

// Waits until textd has at most `count` client processes; returns how many it saw last.
std::size_t wait_for_handlers_at_most(pid_t textd, std::size_t count, std::chrono::milliseconds timeout = scaled(20s))
{
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        const std::size_t now = handlers_of(textd).size();
        if (now <= count || std::chrono::steady_clock::now() >= deadline)
            return now;
        ::poll(nullptr, 0, 1);
    }
}

TEST(TextServer, TheGuidesServerInteraction)
{
    // KVServerTest's "server interaction", line for line.
    RegistryDaemon daemon(text_daemon());
    TextClient socket(text_port(daemon));
    EXPECT_EQ(socket.call("UNKNOWN shopping\r\n"), "UNKNOWN COMMAND\r\n");
    EXPECT_EQ(socket.call("GET shopping eggs\r\n"), "NOT FOUND\r\n");
    EXPECT_EQ(socket.call("CREATE shopping\r\n"), "OK\r\n");
    EXPECT_EQ(socket.call("PUT shopping eggs 3\r\n"), "OK\r\n");
    // GET returns two lines
    EXPECT_EQ(socket.call("GET shopping eggs\r\n"), "3\r\n");
    EXPECT_EQ(socket.call(""), "OK\r\n");
    EXPECT_EQ(socket.call("DELETE shopping eggs\r\n"), "OK\r\n");
    // GET returns two lines
    EXPECT_EQ(socket.call("GET shopping eggs\r\n"), "\r\n");
    EXPECT_EQ(socket.call(""), "OK\r\n");
}

TEST(TextServer, TheGuidesParseRulesOverTheWire)
{
    RegistryDaemon daemon(text_daemon());
    TextClient client(text_port(daemon));
    EXPECT_EQ(client.call("CREATE  shopping  \r\n"), "OK\r\n");
    EXPECT_EQ(client.call("CREATE shopping\r\n"), "OK\r\n"); // an existing bucket: CREATE is idempotent
    EXPECT_EQ(client.call("\tPUT   shopping\tmilk  1 \r\n"), "OK\r\n");
    EXPECT_EQ(client.call("GET shopping milk\n"), "1\r\n"); // a bare "\n" ends a line too
    EXPECT_EQ(client.line(), "OK\r\n");
    // Unknown verbs, wrong arity, lower case, an empty line: the connection stays.
    for (const char* line : { "UNKNOWN shopping eggs\r\n", "GET shopping\r\n", "get shopping milk\r\n", "\r\n", "   \r\n",
             "PUT shopping milk\r\n", "DELETE shopping milk 1\r\n", "CREATE\r\n" })
        EXPECT_EQ(client.call(line), "UNKNOWN COMMAND\r\n") << kv::printable(line);
    // Pipelined lines are answered in order.
    client.send("PUT shopping eggs 12\r\nGET shopping eggs\r\nDELETE shopping milk\r\nGET shopping milk\r\nNOPE\r\n");
    for (const char* expected : { "OK\r\n", "12\r\n", "OK\r\n", "OK\r\n", "\r\n", "OK\r\n", "UNKNOWN COMMAND\r\n" })
        EXPECT_EQ(client.line(), expected);
    // No bucket of that name, for every verb that needs one.
    for (const char* line : { "GET nope k\r\n", "PUT nope k v\r\n", "DELETE nope k\r\n", "GET \xff\xfe k\r\n" })
        EXPECT_EQ(client.call(line), "NOT FOUND\r\n") << kv::printable(line);
}

TEST(TextServer, TextAndRespClientsSeeTheSameBucket)
{
    RegistryDaemon daemon(text_daemon());
    TextClient text(text_port(daemon));
    ASSERT_EQ(text.call("CREATE shared\r\n"), "OK\r\n");
    ASSERT_EQ(text.call("PUT shared from-text 42\r\n"), "OK\r\n");
    auto bucket = kv::Client::connect(daemon.call({ "LOOKUP", "shared" }).field("socket")->text);
    EXPECT_EQ(bucket.call({ "GET", "from-text" }).text, "42");
    ASSERT_EQ(bucket.call({ "SET", "from-resp", "x y\tz" }).text, "OK");
    EXPECT_EQ(text.call("GET shared from-resp\r\n"), "x y\tz\r\n"); // the value as it is, as the guide interpolates it
    EXPECT_EQ(text.line(), "OK\r\n");
    ASSERT_EQ(text.call("DELETE shared from-text\r\n"), "OK\r\n");
    EXPECT_EQ(bucket.call({ "EXISTS", "from-text" }).integer, 0);
    // A bucket made through the registry is found by the text server at once.
    daemon.create("made-by-resp");
    EXPECT_EQ(text.call("PUT made-by-resp k v\r\n"), "OK\r\n");
}

TEST(TextServer, AFailedCreateRepliesErrorAndClosesTheConnection)
{
    RegistryDaemon daemon(text_daemon({ "--max-buckets", "1" }));
    const int port = text_port(daemon);
    {
        TextClient client(port);
        EXPECT_EQ(client.call("CREATE \xff\xfe\r\n"), "ERROR\r\n"); // not a valid name
        EXPECT_TRUE(client.closed_by_server());
    }
    {
        TextClient client(port);
        EXPECT_EQ(client.call("CREATE first\r\n"), "OK\r\n");
        EXPECT_EQ(client.call("CREATE second\r\n"), "ERROR\r\n"); // --max-buckets
        EXPECT_TRUE(client.closed_by_server());
        EXPECT_EQ(client.unread(), "");
    }
    TextClient after(port);
    EXPECT_EQ(after.call("PUT first k v\r\n"), "OK\r\n");
    EXPECT_NE(daemon.log().find("CREATE \\xff\\xfe: INVALID invalid bucket name"), std::string::npos) << daemon.log();
}

TEST(TextServer, KilledTextServerIsRestartedAndTouchesNeitherRegistryNorBuckets)
{
    RegistryDaemon daemon(text_daemon());
    const int port = text_port(daemon);
    TextClient before(port);
    ASSERT_EQ(before.call("CREATE shopping\r\n"), "OK\r\n");
    ASSERT_EQ(before.call("PUT shopping eggs 3\r\n"), "OK\r\n");
    const pid_t textd = textd_pid(daemon);
    const auto bucket_pid = daemon.call({ "LOOKUP", "shopping" }).field("pid")->integer;
    ASSERT_GT(textd, 1);
    auto textd_fd = open_pidfd(textd);
    ASSERT_EQ(kill_process(textd, SIGKILL), 0);
    ASSERT_TRUE(wait_readable(textd_fd.get(), scaled(20s)));
    // Its clients are dropped ...
    EXPECT_TRUE(before.closed_by_server());
    // ... and reconnect: registryd held the port, so the connection is
    // taken at once and served by the textd it started next.
    TextClient after(port);
    EXPECT_EQ(after.call("GET shopping eggs\r\n"), "3\r\n");
    EXPECT_EQ(after.line(), "OK\r\n");
    EXPECT_NE(textd_pid(daemon), textd);
    EXPECT_EQ(registry_info(daemon)["text_server_restarts"], "1");
    // The registry and the bucket never noticed.
    EXPECT_EQ(daemon.call({ "LOOKUP", "shopping" }).field("pid")->integer, bucket_pid);
    EXPECT_EQ(registry_info(daemon)["bucket_exits"], "0");
    EXPECT_TRUE(daemon.running());
    EXPECT_NE(daemon.log().find("(textd pid " + std::to_string(textd) + ") killed by SIGKILL; restarting"), std::string::npos) << daemon.log();
    expect_no_zombie(daemon.pid());
}

TEST(TextServer, ACrashingClientProcessDropsOnlyItsOwnConnection)
{
    RegistryDaemon daemon(text_daemon());
    const int port = text_port(daemon);
    const pid_t textd = textd_pid(daemon);
    TextClient doomed(port);
    ASSERT_EQ(doomed.call("CREATE b\r\n"), "OK\r\n");
    const auto first = handlers_of(textd);
    ASSERT_EQ(first.size(), 1u);
    TextClient survivor(port);
    ASSERT_EQ(survivor.call("PUT b k 1\r\n"), "OK\r\n");
    ASSERT_EQ(wait_for_handlers(textd, 2), 2u);

    // SIGABRT, as an assertion that fails ends a process: a crash (SIGSEGV
    // would be caught by AddressSanitizer's handler in the sanitizer pass).
    auto handler_fd = open_pidfd(first[0]);
    ASSERT_EQ(kill_process(first[0], SIGABRT), 0);
    ASSERT_TRUE(wait_readable(handler_fd.get(), scaled(20s)));
    EXPECT_TRUE(doomed.closed_by_server());
    EXPECT_EQ(survivor.call("GET b k\r\n"), "1\r\n");
    EXPECT_EQ(survivor.line(), "OK\r\n");
    EXPECT_EQ(textd_pid(daemon), textd);
    EXPECT_EQ(registry_info(daemon)["text_server_restarts"], "0");
    ASSERT_EQ(wait_for_handlers(textd, 1), 1u); // reaped
    EXPECT_NE(daemon.log().find("(pid " + std::to_string(first[0]) + ") was killed by SIGABRT; its client alone was dropped"), std::string::npos)
        << daemon.log();
}

TEST(TextServer, AHalfWrittenLineBlocksNobodyAndIsDroppedWhenStalled)
{
    RegistryDaemon daemon(text_daemon({ "--stall-timeout-ms", "300" }));
    const int port = text_port(daemon);
    TextClient stalled(port);
    stalled.send("CREATE half");
    TextClient other(port);
    EXPECT_EQ(other.call("CREATE other\r\n"), "OK\r\n");
    EXPECT_TRUE(stalled.closed_by_server());
    EXPECT_EQ(stalled.unread(), "");
    EXPECT_EQ(daemon.call({ "LOOKUP", "half" }).text.rfind("NOTFOUND", 0), 0u);
    // An idle client (nothing pending) stays, however long.
    TextClient idle(port);
    EXPECT_EQ(idle.call("GET other k\r\n"), "\r\n");
    EXPECT_EQ(idle.line(), "OK\r\n");
    EXPECT_FALSE(idle.closed_by_server(std::chrono::milliseconds(600)));
    EXPECT_EQ(idle.call("GET other k\r\n"), "\r\n");
    EXPECT_NE(daemon.log().find("no end of line for 300 ms; closed the connection"), std::string::npos) << daemon.log();
}

TEST(TextServer, AClientThatNeverReadsItsRepliesBlocksNobodyAndIsDropped)
{
    RegistryDaemon daemon(text_daemon({ "--stall-timeout-ms", "300" }));
    const int port = text_port(daemon);
    const pid_t textd = textd_pid(daemon);
    TextClient writer(port);
    ASSERT_EQ(writer.call("CREATE big\r\n"), "OK\r\n");
    const std::string value(60000, 'v');
    ASSERT_EQ(writer.call("PUT big v " + value + "\r\n"), "OK\r\n");

    TextClient greedy(port);
    int small = 4096;
    ::setsockopt(greedy.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    ASSERT_EQ(greedy.call("GET big nothing\r\n"), "\r\n"); // served: it has its process
    ASSERT_EQ(greedy.line(), "OK\r\n");
    // 120 MB of replies asked for, none read.
    std::string batch;
    for (int i = 0; i < 2000; ++i)
        batch += "GET big v\r\n";
    send_until_blocked(greedy.fd(), batch, batch.size());
    EXPECT_EQ(writer.call("GET big v\r\n").size(), value.size() + 2);
    EXPECT_EQ(writer.line(), "OK\r\n");
    // While the greedy client's process is stuck writing to it: it is
    // textd's copy, plus what it holds for its client, not the 120 MB.
    const auto processes = handlers_of(textd);
    EXPECT_EQ(processes.size(), 2u);
    for (pid_t handler : processes)
        EXPECT_LT(resident_kib(handler), resident_kib(textd) + 16 * 1024) << "a client's process buffered what its client would not read";
    EXPECT_TRUE(wait_peer_closed(greedy.fd(), scaled(20s)));
    EXPECT_EQ(writer.call("PUT big w 1\r\n"), "OK\r\n");
    EXPECT_NE(daemon.log().find("did not read its replies for 300 ms, or hung up; closed the connection"), std::string::npos) << daemon.log();
}

TEST(TextServer, ALineOverTheLimitGetsErrorAndClosesNothingIsBufferedPastIt)
{
    RegistryDaemon daemon(text_daemon({ "--max-inline-length", "1024" }));
    const int port = text_port(daemon);
    {
        // Exactly the limit, its "\r\n" not counted: served (one word: UNKNOWN COMMAND).
        TextClient client(port);
        EXPECT_EQ(client.call(std::string(1024, 'x') + "\r\n"), "UNKNOWN COMMAND\r\n");
        EXPECT_EQ(client.call(std::string(1024, 'x') + "\n"), "UNKNOWN COMMAND\r\n");
        EXPECT_EQ(client.call("CREATE b\r\n"), "OK\r\n");
    }
    for (const std::string& line : { std::string(1025, 'x') + "\r\n", std::string(1025, 'x'), "PUT b k " + std::string(2000, 'v') + "\r\n" }) {
        TextClient client(port);
        EXPECT_EQ(client.call(line), "ERROR\r\n") << line.size();
        EXPECT_TRUE(client.closed_by_server());
    }
    // A client that streams one endless line is cut off at the limit.
    TextClient endless(port);
    const std::size_t sent = send_until_blocked(endless.fd(), std::string(65536, 'y'), std::size_t(1) << 30);
    EXPECT_LT(sent, std::size_t(1) << 30);
    EXPECT_TRUE(endless.closed_by_server());
    TextClient after(port);
    EXPECT_EQ(after.call("GET b k\r\n"), "\r\n");
}

TEST(TextServer, TheDefaultLineLimitIs64KiB)
{
    RegistryDaemon daemon(text_daemon());
    const int port = text_port(daemon);
    TextClient client(port);
    ASSERT_EQ(client.call("CREATE b\r\n"), "OK\r\n");
    const std::string at_limit = "PUT b k " + std::string(65536 - 8, 'v');
    EXPECT_EQ(client.call(at_limit + "\r\n"), "OK\r\n");
    TextClient over(port);
    EXPECT_EQ(over.call(at_limit + "v\r\n"), "ERROR\r\n");
    EXPECT_TRUE(over.closed_by_server());
}

TEST(TextServer, RefusesPastItsConnectionLimitAndServesAgainOnceOneLeaves)
{
    RegistryDaemon daemon(text_daemon({ "--max-connections", "2" }));
    const int port = text_port(daemon);
    const pid_t textd = textd_pid(daemon);
    std::optional<TextClient> first(port);
    TextClient second(port);
    EXPECT_EQ(first->call("GET b k\r\n"), "NOT FOUND\r\n");
    EXPECT_EQ(second.call("GET b k\r\n"), "NOT FOUND\r\n");
    {
        TextClient refused(port);
        EXPECT_EQ(refused.line(), "ERROR\r\n");
        EXPECT_TRUE(refused.closed_by_server());
    }
    // A flood of refused clients makes a bounded number of log lines (20 at
    // once, then 10 a second), as on the RESP sockets: each is logged before
    // its ERROR is sent, so the log is complete once the last ERROR came.
    const auto start = std::chrono::steady_clock::now();
    const int flood = 60;
    for (int i = 0; i < flood; ++i) {
        TextClient refused(port);
        EXPECT_EQ(refused.line(), "ERROR\r\n");
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const std::string log = daemon.log();
    std::size_t logged = 0;
    for (std::size_t at = log.find("max connections reached (2)"); at != std::string::npos; at = log.find("max connections reached (2)", at + 1))
        ++logged;
    EXPECT_LE(static_cast<double>(logged), 20 + 10 * seconds + 1) << flood + 1 << " refused in " << seconds << " s";
    EXPECT_EQ(second.call("GET b k\r\n"), "NOT FOUND\r\n");
    first.reset();
    // Once textd has heard that the first one left (its process says so),
    // a newcomer is served; until then it is refused as the third was.
    const auto deadline = std::chrono::steady_clock::now() + scaled(20s);
    std::string reply;
    do {
        TextClient newcomer(port);
        reply = newcomer.call("GET b k\r\n");
    } while (reply == "ERROR\r\n" && std::chrono::steady_clock::now() < deadline);
    EXPECT_EQ(reply, "NOT FOUND\r\n");
    EXPECT_LE(handlers_of(textd).size(), 2u);
    EXPECT_NE(daemon.log().find("max connections reached (2)"), std::string::npos) << daemon.log();
}

TEST(TextServer, RandomBytesCrashNothingAndLoseNothingAcknowledged)
{
    RegistryDaemon daemon(text_daemon({ "--stall-timeout-ms", "200" }));
    const int port = text_port(daemon);
    const pid_t textd = textd_pid(daemon);
    TextClient keeper(port);
    ASSERT_EQ(keeper.call("CREATE victim\r\n"), "OK\r\n");
    std::map<std::string, std::string> acknowledged;
    std::mt19937 random(20261128);
    const std::vector<std::string> words = { "CREATE", "GET", "PUT", "DELETE", "victim", "k", "\r", "\n", " ", "\t", "\xc2\x85",
        "\xe3\x80\x80", "\xff", std::string(1, '\0'), "OK", "ERROR" };
    for (int round = 0; round < 200; ++round) {
        TextClient client(port);
        std::string bytes;
        const int pieces = static_cast<int>(random() % 64);
        for (int i = 0; i < pieces; ++i) {
            if (random() % 3 == 0)
                bytes += static_cast<char>(random() % 256);
            else
                bytes += words[random() % words.size()];
        }
        client.send(bytes);
        ::shutdown(client.fd(), SHUT_WR);
        EXPECT_TRUE(client.closed_by_server()) << kv::printable(bytes);
        // Between rounds, a well-behaved client writes and is acknowledged.
        const std::string key = "key" + std::to_string(round);
        ASSERT_EQ(keeper.call("PUT victim " + key + " " + std::to_string(round) + "\r\n"), "OK\r\n");
        acknowledged[key] = std::to_string(round);
    }
    EXPECT_EQ(textd_pid(daemon), textd);
    EXPECT_EQ(registry_info(daemon)["text_server_restarts"], "0");
    EXPECT_EQ(daemon.log().find("was killed by"), std::string::npos) << daemon.log();
    auto bucket = kv::Client::connect(daemon.call({ "LOOKUP", "victim" }).field("socket")->text);
    for (const auto& [key, value] : acknowledged) {
        // Random input may have overwritten "k", never these.
        EXPECT_EQ(bucket.call({ "GET", key }).text, value) << key;
    }
    // The processes that served them wait for the next client, 16 at most,
    // and none was left behind unreaped.
    EXPECT_LE(wait_for_handlers_at_most(textd, 16), 16u);
    expect_no_zombie(textd);
}

TEST(TextServer, ThousandClientsThatConnectAndHangUpLeaveNoProcessBehind)
{
    RegistryDaemon daemon(text_daemon());
    const int port = text_port(daemon);
    const pid_t textd = textd_pid(daemon);
    for (int i = 0; i < 1000; ++i) {
        TextClient client(port);
        if (i % 2 == 0)
            client.send("GET x");
    }
    {
        // textd accepts in order: once this one is answered, every client
        // above has been accepted and given its process.
        TextClient last(port);
        EXPECT_EQ(last.call("GET b k\r\n"), "NOT FOUND\r\n");
    }
    // They were served by a few processes, each waiting for the next client
    // once its own left (at most 16 wait; textd may have forked more while
    // earlier ones were still seeing their client go); what a client left
    // half-written never reached the next one (the last GET was answered,
    // not joined to a leftover "GET x").
    EXPECT_LE(wait_for_handlers_at_most(textd, 16), 16u);
    expect_no_zombie(textd);
    EXPECT_EQ(textd_pid(daemon), textd);
}

TEST(TextServer, AtMostSixteenProcessesWaitForClientsTheRestExit)
{
    RegistryDaemon daemon(text_daemon());
    const int port = text_port(daemon);
    const pid_t textd = textd_pid(daemon);
    {
        std::vector<std::unique_ptr<TextClient>> clients;
        for (int i = 0; i < 40; ++i) {
            clients.push_back(std::make_unique<TextClient>(port));
            ASSERT_EQ(clients.back()->call("GET b k\r\n"), "NOT FOUND\r\n");
        }
        EXPECT_EQ(handlers_of(textd).size(), 40u); // one process per connected client
    }
    ASSERT_EQ(wait_for_handlers(textd, 16), 16u);
    expect_no_zombie(textd);
    // The ones waiting serve the next clients.
    TextClient next(port);
    EXPECT_EQ(next.call("GET b k\r\n"), "NOT FOUND\r\n");
    EXPECT_EQ(handlers_of(textd).size(), 16u);
}

TEST(TextServer, StoppingRegistrydStopsTheTextServerAndEveryClientProcessAndClosesThePort)
{
    RegistryDaemon daemon(text_daemon());
    const int port = text_port(daemon);
    const pid_t textd = textd_pid(daemon);
    TextClient one(port), two(port);
    ASSERT_EQ(one.call("CREATE b\r\n"), "OK\r\n");
    ASSERT_EQ(two.call("GET b k\r\n"), "\r\n");
    ASSERT_EQ(wait_for_handlers(textd, 2), 2u);
    std::vector<kv::UniqueFd> watched;
    watched.push_back(open_pidfd(textd));
    for (pid_t handler : handlers_of(textd))
        watched.push_back(open_pidfd(handler));
    const auto exit = daemon.stop(SIGTERM);
    EXPECT_EQ(exit.code, CLD_EXITED);
    EXPECT_EQ(exit.status, 0);
    for (const auto& pidfd : watched)
        EXPECT_TRUE(wait_readable(pidfd.get(), scaled(20s)));
    EXPECT_TRUE(one.closed_by_server());
    EXPECT_TRUE(two.closed_by_server());
    // Nobody listens on the port any more.
    kv::UniqueFd probe(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in address {};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(probe.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), -1);
    EXPECT_EQ(errno, ECONNREFUSED);
}

TEST(TextServer, APortInUseStopsRegistrydAtStartWithOneLine)
{
    RegistryDaemon first(text_daemon());
    const std::string address = registry_info(first)["text_listen"];
    TemporaryDirectory run_dir;
    auto result = run_program({ binary("registryd"), "--run-dir", run_dir.path(), "--text-listen", address });
    EXPECT_EQ(result.exit_code, 1);
    EXPECT_NE(result.err.find("unable to listen on " + address + ": Address already in use"), std::string::npos) << result.err;
    EXPECT_TRUE(first.running());
}

TEST(TextServer, WithoutTextListenThereIsNoTextServer)
{
    RegistryDaemon daemon;
    EXPECT_EQ(registry_info(daemon)["text_listen"], "");
    EXPECT_EQ(registry_info(daemon)["text_server_pid"], "");
    for (const auto& child : children_of(daemon.pid()))
        EXPECT_EQ(child.cmdline.rfind("textd", 0), std::string::npos) << child.cmdline;
}

TEST(TextServer, PsShowsTextdWithItsAddress)
{
    RegistryDaemon daemon(text_daemon());
    const std::string address = registry_info(daemon)["text_listen"];
    std::vector<std::string> commands;
    for (const auto& child : children_of(daemon.pid()))
        commands.push_back(child.cmdline);
    EXPECT_EQ(commands, std::vector<std::string> { "textd " + address });
}

TEST(TextServer, GetAnswersThroughABucketRestart)
{
    RegistryDaemon daemon(text_daemon());
    const int port = text_port(daemon);
    ASSERT_EQ(daemon.call({ "CREATE", "kept", "RESTART", "permanent", "KEEP" }).type, kv::resp::Value::Type::array);
    TextClient client(port);
    ASSERT_EQ(client.call("PUT kept eggs 3\r\n"), "OK\r\n");
    const auto old_pid = daemon.call({ "LOOKUP", "kept" }).field("pid")->integer;
    auto monitor = daemon.monitor("kept");
    ASSERT_EQ(kill_process(old_pid, SIGKILL), 0);
    EXPECT_EQ(monitor.read_reply().text, "killed by SIGKILL; restarting");
    // The same connection: the name now leads to the new process.
    EXPECT_EQ(client.call("GET kept eggs\r\n"), "3\r\n");
    EXPECT_EQ(client.line(), "OK\r\n");
    EXPECT_EQ(client.call("PUT kept eggs 4\r\n"), "OK\r\n");
    EXPECT_NE(daemon.call({ "LOOKUP", "kept" }).field("pid")->integer, old_pid);
}

} // namespace

namespace {

// What a client run as `nobody` reads after sending `request` to the text
// port: bash's /dev/tcp, then `reader` (cat: until the server closes).
ProgramResult as_second_user(const SecondUser& nobody, int port, const std::string& request, const std::string& reader)
{
    const std::string script = "exec 3<>/dev/tcp/127.0.0.1/" + std::to_string(port) + " && printf '" + request + "' >&3 && timeout 20 " + reader + " <&3";
    return nobody.run({ find_program("bash"), "-c", script });
}

TEST(TextServer, LocalClientsOfAnotherUserAreRefusedUnlessAllowedAsOnUnixSockets)
{
    KV_REQUIRE(SecondUser::missing().empty(), SecondUser::missing());
    SecondUser nobody;
    {
        RegistryDaemon daemon(text_daemon());
        daemon.create("b");
        auto refused = as_second_user(nobody, text_port(daemon), "PUT b k v\\r\\n", "cat");
        EXPECT_EQ(refused.out, "ERROR\r\n") << refused.err;
        EXPECT_NE(daemon.log().find("DENIED permission denied: uid 65534 is not allowed here"), std::string::npos) << daemon.log();
        // Its request never reached the bucket; our own uid is served.
        TextClient own(text_port(daemon));
        EXPECT_EQ(own.call("GET b k\r\n"), "\r\n");
    }
    {
        // A client that sends and closes at once is gone from the kernel's
        // table by the time it is looked up (a closed socket says uid 0):
        // unidentified, it is refused, never taken for root.
        // textd is stopped meanwhile, so each is surely closed when it looks.
        RegistryDaemon daemon(text_daemon());
        daemon.create("b");
        const pid_t textd = textd_pid(daemon);
        std::string script = "for i in $(seq 20); do exec 3<>/dev/tcp/127.0.0.1/" + std::to_string(text_port(daemon))
            + " && printf 'PUT b pwned$i yes\\r\\n' >&3 && exec 3>&-; done";
        ASSERT_EQ(kill_process(textd, SIGSTOP), 0);
        auto result = nobody.run({ find_program("bash"), "-c", script });
        ASSERT_EQ(kill_process(textd, SIGCONT), 0);
        EXPECT_EQ(result.exit_code, 0) << result.err;
        auto bucket = kv::Client::connect(daemon.call({ "LOOKUP", "b" }).field("socket")->text);
        // Every one of them was handled (refused) once this is answered.
        TextClient own(text_port(daemon));
        EXPECT_EQ(own.call("GET b k\r\n"), "\r\n");
        EXPECT_EQ(bucket.call({ "DBSIZE" }).integer, 0) << daemon.log();
        EXPECT_NE(daemon.log().find("unable to identify the client: its socket is closed already"), std::string::npos) << daemon.log();
    }
    for (const std::vector<std::string>& allowing : { std::vector<std::string> { "--allow-uid", "65534" }, std::vector<std::string> { "--allow-gid", "65534" } }) {
        RegistryDaemon daemon(text_daemon(allowing));
        daemon.create("b");
        auto served = as_second_user(nobody, text_port(daemon), "PUT b k v\\r\\nGET b k\\r\\n", "head -c 9");
        EXPECT_EQ(served.out, "OK\r\nv\r\nOK") << allowing[0] << ": " << served.err;
    }
}

TEST(TextServer, AWriteRightAfterABucketCrashReachesItsRestartedProcess)
{
    // The name table (and registryd, for a moment) may still give the
    // process that just died: the retry waits until registryd has seen it.
    RegistryDaemon daemon(text_daemon({ "--max-restarts", "100" }));
    ASSERT_EQ(daemon.call({ "CREATE", "phoenix", "RESTART", "permanent" }).type, kv::resp::Value::Type::array);
    TextClient client(text_port(daemon));
    for (int i = 0; i < 20; ++i) {
        ASSERT_EQ(client.call("PUT phoenix k " + std::to_string(i) + "\r\n"), "OK\r\n");
        const auto pid = daemon.call({ "LOOKUP", "phoenix" }).field("pid")->integer;
        auto pidfd = open_pidfd(static_cast<pid_t>(pid));
        ASSERT_EQ(kill_process(pid, SIGKILL), 0);
        ASSERT_TRUE(wait_readable(pidfd.get(), scaled(20s)));
        EXPECT_EQ(client.call("PUT phoenix k again\r\n"), "OK\r\n") << i << "\n" << daemon.log();
        EXPECT_EQ(client.call("GET phoenix k\r\n"), "again\r\n");
        EXPECT_EQ(client.line(), "OK\r\n");
    }
}

TEST(TextServer, AnIdleClientPinsNoStoppedBucketsSegment)
{
    RegistryDaemon daemon(text_daemon());
    daemon.create("pin");
    const std::string segment = daemon.call({ "LOOKUP", "pin" }).field("segment")->text;
    const pid_t textd = textd_pid(daemon);
    TextClient client(text_port(daemon));
    ASSERT_EQ(client.call("GET pin k\r\n"), "\r\n");
    ASSERT_EQ(client.line(), "OK\r\n");
    const auto processes = handlers_of(textd);
    ASSERT_EQ(processes.size(), 1u);
    auto maps = [&processes] {
        std::ifstream file("/proc/" + std::to_string(processes[0]) + "/maps");
        return std::string((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    };
    EXPECT_NE(maps().find(segment), std::string::npos) << "the GET did not map the segment";
    ASSERT_EQ(daemon.call({ "STOP", "pin" }).text, "OK");
    // The client stays, idle; its process lets go of the segment (within a
    // second of idleness), so /dev/shm gets its room back.
    const auto deadline = std::chrono::steady_clock::now() + scaled(20s);
    while (maps().find(segment) != std::string::npos && std::chrono::steady_clock::now() < deadline)
        ::poll(nullptr, 0, 10);
    EXPECT_EQ(maps().find(segment), std::string::npos);
    EXPECT_EQ(client.call("GET pin k\r\n"), "NOT FOUND\r\n");
}

} // namespace
