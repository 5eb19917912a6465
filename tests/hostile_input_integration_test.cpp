// Hostile input on every socket: oversized claims, malformed and random
// byte streams, stalled clients, odd names and keys, connection limits.
// Each test checks that the process stays up, keeps serving others, and
// loses nothing it acknowledged.
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "bucket_name.h"
#include "log.h"
#include "daemon_fixture.h"
#include "run_dir.h"

using namespace kv::test;
using kv::resp::Value;

namespace {

DaemonOptions without_debug(std::vector<std::string> arguments = {})
{
    DaemonOptions options;
    options.arguments = std::move(arguments);
    options.debug_command = false;
    return options;
}

struct Target {
    std::string path;
    pid_t pid;
};

// The registry socket and one bucket's socket, with the pid behind each.
std::vector<Target> targets(const RegistryDaemon& daemon, const std::string& bucket = "victim")
{
    auto created = daemon.create(bucket);
    return { { kv::registry_socket_path(daemon.run_dir()), daemon.pid() },
        { created.field("socket")->text, static_cast<pid_t>(created.field("pid")->integer) } };
}

} // namespace

TEST(HostileInput, HundredGigabyteBulkClaimIsRefusedWithoutAllocatingIt)
{
    RegistryDaemon daemon(without_debug());
    for (const auto& target : targets(daemon)) {
        auto before = resident_kib(target.pid);
        auto reply = exchange_raw(target.path, "*2\r\n$3\r\nGET\r\n$100000000000\r\n");
        EXPECT_EQ(reply, "-ERR Protocol error: invalid bulk length\r\n") << target.path;
        EXPECT_LT(resident_kib(target.pid), before + 10 * 1024) << target.path;
        EXPECT_EQ(kv::Client::connect(target.path).call({ "PING" }).text, "PONG");
    }
}

TEST(HostileInput, ProtocolLimitsSetByFlagsHoldOnEverySocket)
{
    RegistryDaemon daemon(without_debug({ "--max-bulk-length", "100", "--max-array-length", "4",
        "--max-inline-length", "64" }));
    for (const auto& target : targets(daemon)) {
        EXPECT_EQ(exchange_raw(target.path, kv::resp::encode_command({ "PING", std::string(101, 'x') })),
            "-ERR Protocol error: invalid bulk length\r\n");
        EXPECT_EQ(exchange_raw(target.path, "*5\r\n"), "-ERR Protocol error: invalid multibulk length\r\n");
        EXPECT_EQ(exchange_raw(target.path, "PING " + std::string(100, 'x') + "\r\n"),
            "-ERR Protocol error: too big inline request\r\n");
        // Just inside every limit is fine.
        auto client = kv::Client::connect(target.path);
        EXPECT_EQ(client.call({ "PING", std::string(100, 'x') }).text, std::string(100, 'x'));
    }
}

TEST(HostileInput, RandomAndMutatedByteStreamsLoseNothingAcknowledged)
{
    RegistryDaemon daemon(without_debug());
    auto sockets = targets(daemon);
    auto bucket = kv::Client::connect(sockets[1].path);
    // Keys the streams below cannot name: acknowledged before, during and after.
    std::mt19937_64 random(20261126);
    std::vector<std::pair<std::string, std::string>> acknowledged;
    auto store = [&](int i) {
        std::string key = "acked:" + std::to_string(i) + ":" + std::to_string(random());
        std::string value = std::to_string(random());
        ASSERT_EQ(bucket.call({ "SET", key, value }).text, "OK");
        acknowledged.emplace_back(key, value);
    };

    const std::vector<std::string> seeds = {
        kv::resp::encode_command({ "SET", "k", "v" }), kv::resp::encode_command({ "GET", "k" }),
        kv::resp::encode_command({ "LOOKUP", "victim" }), kv::resp::encode_command({ "KEYS", "*" }),
        kv::resp::encode_command({ "LIST" }), "PING\r\n", "SET \"a b\" 'c'\r\n", "*2\r\n$3\r\nDEL\r\n$1\r\nk\r\n",
    };
    // Replies are read as a client reads them, with room for any KEYS reply.
    const kv::resp::Limits reply_limits { 1 << 30, 1 << 30, 1 << 30 };
    for (int round = 0; round < 2000; ++round) {
        store(round);
        std::string bytes;
        if (round % 3 == 0) {
            bytes.resize(random() % 4096);
            for (auto& c : bytes)
                c = static_cast<char>(random());
        } else {
            for (int piece = 0; piece < 8; ++piece)
                bytes += seeds[random() % seeds.size()];
            for (int flip = 0; flip < 1 + round % 8; ++flip) {
                auto at = random() % bytes.size();
                switch (random() % 4) {
                case 0: bytes[at] = static_cast<char>(random()); break;
                case 1: bytes.insert(at, 1, "*$\r\n:-0123456789"[random() % 16]); break;
                case 2: bytes.erase(at, 1); break;
                case 3: bytes.insert(at, std::to_string(random() % 100000000000ULL)); break;
                }
            }
        }
        // Whatever the stream, the server answers it with whole, well-formed
        // replies and then closes the connection (at the end of the stream,
        // or right after a protocol error, which is the last thing it says):
        // no garbage, no reply cut short, no connection left hanging.
        auto reply = exchange_raw_reply(sockets[round % 2].path, bytes, 10s);
        ASSERT_TRUE(reply.closed) << "round " << round << ": still open after the stream ended; sent "
                                  << ::testing::PrintToString(bytes);
        std::string_view rest = reply.bytes;
        while (!rest.empty()) {
            kv::resp::Value value;
            std::size_t consumed = 0;
            ASSERT_EQ(kv::resp::parse_value(rest, consumed, value, reply_limits), kv::resp::ParseResult::complete)
                << "round " << round << ": not a whole RESP reply: " << ::testing::PrintToString(std::string(rest))
                << "\nsent " << ::testing::PrintToString(bytes);
            rest.remove_prefix(consumed);
            if (value.is_error() && value.text.rfind("ERR Protocol error", 0) == 0) {
                ASSERT_TRUE(rest.empty()) << "round " << round << ": replied after a protocol error: "
                                          << ::testing::PrintToString(std::string(rest));
            }
        }
    }
    for (const auto& target : sockets)
        EXPECT_EQ(kv::Client::connect(target.path).call({ "PING" }).text, "PONG") << target.path;
    for (const auto& [key, value] : acknowledged)
        ASSERT_EQ(bucket.call({ "GET", key }).text, value) << key;
    EXPECT_EQ(daemon.call({ "LOOKUP", "victim" }).field("pid")->integer, sockets[1].pid);
}

TEST(HostileInput, HalfWrittenRequestBlocksNobodyAndIsDroppedWhenStalled)
{
    RegistryDaemon daemon(without_debug({ "--stall-timeout-ms", "300" }));
    for (const auto& target : targets(daemon)) {
        auto stalled = kv::Client::connect(target.path);
        stalled.send_raw("*2\r\n$3\r\nGET\r\n$5\r\nab");
        // Everyone else is served while it dawdles.
        auto other = kv::Client::connect(target.path);
        EXPECT_EQ(other.call({ "PING" }).text, "PONG");
        EXPECT_TRUE(wait_peer_closed(stalled.fd(), 10s)) << target.path;
        EXPECT_EQ(other.call({ "PING" }).text, "PONG");
    }
    EXPECT_NE(daemon.log().find("it stopped in the middle of a request"), std::string::npos) << daemon.log();
}

TEST(HostileInput, ClientThatNeverReadsRepliesBlocksNobodyAndIsDropped)
{
    RegistryDaemon daemon(without_debug({ "--stall-timeout-ms", "300" }));
    auto sockets = targets(daemon);
    auto writer = kv::Client::connect(sockets[1].path);
    ASSERT_EQ(writer.call({ "SET", "big", std::string(1 << 20, 'x') }).text, "OK");

    auto greedy = kv::Client::connect(sockets[1].path);
    int small = 4096;
    ::setsockopt(greedy.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    // 200 MiB of replies asked for, none read. Send without blocking: once the
    // bucket stops reading us, our own send buffer fills and we stop too.
    std::string request = kv::resp::encode_command({ "GET", "big" });
    std::string batch;
    for (int i = 0; i < 200; ++i)
        batch += request;
    send_until_blocked(greedy.fd(), batch, batch.size());
    EXPECT_EQ(writer.call({ "GET", "big" }).text.size(), 1u << 20);
    EXPECT_TRUE(wait_peer_closed(greedy.fd(), 10s));
    EXPECT_EQ(writer.call({ "PING" }).text, "PONG");
    EXPECT_LT(resident_kib(sockets[1].pid), 64u * 1024) << "the bucket buffered what the client would not read";
    EXPECT_NE(daemon.log().find("it stopped reading its replies"), std::string::npos) << daemon.log();
}

TEST(HostileInput, OddNamesAndKeysAreDataNeverPaths)
{
    RegistryDaemon daemon(without_debug());
    const std::vector<std::string> refused = { "", std::string(256, 'n'), std::string("a\0b", 3), "tab\there",
        "new\nline", std::string("\x1b[31mred", 8), "del\x7f", "\xff\xfe invalid utf-8", "\xc2\x9b" "2J" };
    for (const auto& name : refused) {
        auto reply = daemon.call({ "CREATE", name });
        EXPECT_EQ(reply.text.rfind("INVALID invalid bucket name: ", 0), 0u) << kv::printable(name) << ": " << reply.text;
    }
    // Names are UTF-8 text (bucket_name.h); keys are any bytes, so the refused names are tried as keys below.
    const std::vector<std::string> odd = { "../../etc/passwd", "/", ".", "..", "buckets/1.sock", "\xe6\x97\xa5\xe6\x9c\xac",
        "-rf", "$(reboot)", std::string(255, '/') };
    auto bucket = daemon.create("keys");
    auto client = kv::Client::connect(bucket.field("socket")->text);
    std::string long_value(4 << 20, 'v'); // nine of them fit the default 64 MiB segment
    for (std::size_t i = 0; i < odd.size(); ++i) {
        auto created = daemon.create(odd[i]);
        EXPECT_EQ(created.field("name")->text, odd[i]);
        EXPECT_EQ(created.field("socket")->text, daemon.run_dir() + "/buckets/" + kv::bucket_socket_name(daemon.instance(), created.field("id")->integer));
        EXPECT_EQ(client.call({ "SET", odd[i], long_value }).text, "OK");
    }
    for (const auto& key : refused) {
        if (!key.empty()) {
            EXPECT_EQ(client.call({ "SET", key, key }).text, "OK");
        }
    }
    for (const auto& key : odd)
        EXPECT_TRUE(client.call({ "GET", key }).text == long_value) << kv::printable(key);
    for (const auto& key : refused) {
        if (!key.empty()) {
            EXPECT_EQ(client.call({ "GET", key }).text, key);
        }
    }
    // Everything lives where registryd puts it, named by ids and the instance.
    auto sockets = files_in(daemon.run_dir() + "/buckets");
    EXPECT_EQ(sockets.size(), odd.size() + 1);
    const std::string suffix = "." + daemon.instance() + ".sock";
    for (const auto& name : sockets)
        EXPECT_EQ(name.find_first_not_of("0123456789"), name.size() - suffix.size()) << name;
    EXPECT_EQ(bucket_segments(daemon.run_dir()).size(), odd.size() + 1);
    EXPECT_EQ(children_of(daemon.pid()).size(), odd.size() + 1);
}

TEST(HostileInput, EveryListenerRefusesPastItsConnectionLimitAndServesAgainOnceOneLeaves)
{
    RegistryDaemon daemon(without_debug({ "--max-connections", "3" }));
    for (const auto& target : targets(daemon)) {
        // No one else's connection counts against the limit (targets() called CREATE).
        ASSERT_EQ(wait_for_connections(target.pid, 0), 0u);
        std::vector<kv::Client> held;
        for (int i = 0; i < 3; ++i) {
            held.push_back(kv::Client::connect(target.path));
            ASSERT_EQ(held.back().call({ "PING" }).text, "PONG");
        }
        {
            auto refused = kv::Client::connect(target.path);
            EXPECT_EQ(refused.read_reply().text, "ERR max connections reached (3); try again later");
            EXPECT_THROW(refused.read_reply(), kv::ConnectionClosed);
        }
        for (auto& client : held)
            EXPECT_EQ(client.call({ "PING" }).text, "PONG");
        // One leaves: once the server has seen it go, a newcomer is served.
        held.pop_back();
        ASSERT_EQ(wait_for_connections(target.pid, held.size()), held.size());
        EXPECT_EQ(kv::Client::connect(target.path).call({ "PING" }).text, "PONG");
    }
}

TEST(HostileInput, RequestBiggerThanTheClientBufferIsRefused)
{
    RegistryDaemon daemon(without_debug({ "--max-client-buffer", "65536" }));
    for (const auto& target : targets(daemon)) {
        auto reply = exchange_raw(target.path, kv::resp::encode_command({ "PING", std::string(100000, 'x') }));
        EXPECT_EQ(reply, "-ERR request larger than the client buffer limit of 65536 bytes\r\n");
        EXPECT_EQ(kv::Client::connect(target.path).call({ "PING" }).text, "PONG");
    }
}

TEST(HostileInput, FiftyThousandClientsThatSendMonitorAndHangUpLeaveNothingBehind)
{
    RegistryDaemon daemon(without_debug());
    daemon.create("watched");
    const auto rss_before = resident_kib(daemon.pid());
    const auto descriptors_before = open_descriptor_count(daemon.pid());
    const std::string request = kv::resp::encode_command({ "MONITOR", "watched" });
    for (int i = 0; i < 50000; ++i) {
        auto client = kv::Client::connect(kv::registry_socket_path(daemon.run_dir()));
        client.send_raw(request);
    } // each hangs up here, its MONITOR still pending
    // Every hang-up is handled: no MONITOR is left registered.
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (daemon.monitors_of("watched") != 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::yield();
    EXPECT_EQ(daemon.monitors_of("watched"), 0);
    EXPECT_LE(open_descriptor_count(daemon.pid()), descriptors_before + 1);
    EXPECT_LT(resident_kib(daemon.pid()), rss_before + 32 * 1024) << "registryd kept what hung-up clients left";
    // And a MONITOR that stays is still answered.
    auto watcher = daemon.monitor("watched");
    EXPECT_EQ(daemon.call({ "STOP", "watched" }).text, "OK");
    EXPECT_EQ(watcher.read_reply().text, "exited with status 0");
}

TEST(HostileInput, RequestsPipelinedBehindAPendingReplyAreBoundedAndDroppedWhenStuck)
{
    RegistryDaemon daemon(without_debug({ "--stall-timeout-ms", "1000" }));
    daemon.create("watched");
    const auto rss_before = resident_kib(daemon.pid());
    std::string pings;
    for (int i = 0; i < 4096; ++i)
        pings += kv::resp::encode_command({ "PING" });
    std::vector<kv::Client> clients;
    for (int c = 0; c < 16; ++c) {
        clients.push_back(kv::Client::connect(kv::registry_socket_path(daemon.run_dir())));
        auto& client = clients.back();
        client.send_raw(kv::resp::encode_command({ "MONITOR", "watched" }));
        // Write until registryd stops taking them (60 MiB at most).
        const std::size_t accepted = send_until_blocked(client.fd(), pings, 60u << 20);
        EXPECT_LT(accepted, 4u << 20) << "registryd kept reading requests queued behind a pending reply";
    }
    EXPECT_LT(resident_kib(daemon.pid()), rss_before + 32 * 1024);
    // Stuck behind a reply that may never come, they count as stalled.
    for (auto& client : clients)
        EXPECT_TRUE(wait_peer_closed(client.fd(), 10s));
    EXPECT_EQ(daemon.call({ "PING" }).text, "PONG");
    EXPECT_EQ(daemon.monitors_of("watched"), 0);
}

TEST(HostileInput, AClientThatHangsUpWithRequestsQueuedBehindAPendingReplyIsForgottenAtOnce)
{
    RegistryDaemon daemon(without_debug({ "--stall-timeout-ms", "60000" }));
    daemon.create("watched");
    std::string pings;
    for (int i = 0; i < 6000; ++i) // about 84 KB: more than registryd reads ahead behind a reply
        pings += kv::resp::encode_command({ "PING" });
    {
        auto client = kv::Client::connect(kv::registry_socket_path(daemon.run_dir()));
        client.send_raw(kv::resp::encode_command({ "MONITOR", "watched" }));
        ASSERT_GT(send_until_blocked(client.fd(), pings, pings.size()), 64u * 1024);
    } // hangs up
    // Long before the 60 s stall timeout, the MONITOR is forgotten.
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (daemon.monitors_of("watched") != 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::yield();
    EXPECT_EQ(daemon.monitors_of("watched"), 0);
}

// The client buffer limit at its edge: exactly the limit of unparsed input is
// held (and the request answered once it is complete), one byte past it is
// refused. The request's one argument is the input held: the parser keeps
// only the bytes of a bulk string not yet complete.
TEST(HostileInput, ClientBufferHoldsExactlyItsLimitOfUnparsedInputAndRefusesOnePast)
{
    const std::size_t limit = 65536;
    RegistryDaemon daemon(without_debug({ "--max-client-buffer", std::to_string(limit) }));
    auto header = [](std::size_t length) { return "*2\r\n$4\r\nNOPE\r\n$" + std::to_string(length) + "\r\n"; };
    for (const auto& target : targets(daemon)) {
        auto client = kv::Client::connect(target.path);
        set_receive_timeout(client, 10s);
        client.send_raw(header(limit) + std::string(limit, 'x'));
        // Once the server has read every byte sent (none left in our send
        // queue), it held `limit` bytes unparsed: the CRLF that completes
        // the argument comes in a later read.
        auto deadline = std::chrono::steady_clock::now() + 10s;
        int unread = -1;
        while ((::ioctl(client.fd(), SIOCOUTQ, &unread) != 0 || unread != 0) && std::chrono::steady_clock::now() < deadline)
            std::this_thread::yield();
        ASSERT_EQ(unread, 0) << target.path;
        client.send_raw("\r\n");
        EXPECT_EQ(client.read_reply().text, "ERR unknown command 'NOPE', with args beginning with: '" + std::string(128, 'x') + "' ")
            << target.path;
        EXPECT_EQ(client.call({ "PING" }).text, "PONG");

        EXPECT_EQ(exchange_raw(target.path, header(limit + 1) + std::string(limit + 1, 'x')),
            "-ERR request larger than the client buffer limit of 65536 bytes\r\n") << target.path;
        EXPECT_EQ(kv::Client::connect(target.path).call({ "PING" }).text, "PONG");
    }
    EXPECT_EQ(daemon.log().find("passed the client buffer limit"), std::string::npos) << daemon.log();
}

// Replies within the client buffer limit: a client that reads them gets every
// one, however many it pipelined in one write (more bytes of requests, and of
// replies, than the limit), even while the socket is full. One reply larger
// than the limit is answered with an error in its place and in its turn; the
// replies around it stand and the connection goes on.
TEST(HostileInput, AReadingClientGetsEveryReplyAndOneReplyPastTheLimitIsAnErrorInItsPlace)
{
    const std::size_t limit = 4096;
    RegistryDaemon daemon(without_debug({ "--max-client-buffer", std::to_string(limit) }));
    for (const auto& target : targets(daemon)) {
        auto client = kv::Client::connect(target.path);
        set_receive_timeout(client, 10s);
        std::string pings;
        for (int i = 0; i < 2000; ++i)
            pings += "PING\r\n"; // 12,000 bytes in; 14,000 bytes of replies
        client.send_raw(pings);
        for (int i = 0; i < 2000; ++i)
            ASSERT_EQ(client.read_reply().text, "PONG") << target.path << ", reply " << i;
        EXPECT_EQ(client.call({ "PING" }).text, "PONG");
    }
    {
        // Replies just under the limit, more of them than the socket holds:
        // the bucket waits for the client to take them, and sends them all.
        auto bucket = kv::Client::connect(targets(daemon, "full").back().path);
        set_receive_timeout(bucket, 10s);
        const std::string value(4000, 'v');
        EXPECT_EQ(bucket.call({ "SET", "k", value }).text, "OK");
        std::string gets;
        for (int i = 0; i < 200; ++i)
            gets += kv::resp::encode_command({ "GET", "k" }); // 800 KB of replies
        bucket.send_raw(gets);
        for (int i = 0; i < 200; ++i)
            ASSERT_EQ(bucket.read_reply().text, value) << "reply " << i;
    }
    // A bucket's value can outgrow the limit (SETRANGE, APPEND): reading it
    // back is one reply too large for it.
    auto bucket = kv::Client::connect(targets(daemon, "big").back().path);
    set_receive_timeout(bucket, 10s);
    EXPECT_EQ(bucket.call({ "SETRANGE", "big", "5000", "x" }).integer, 5001);
    EXPECT_EQ(bucket.call({ "SET", "half", std::string(2500, 'h') }).text, "OK");
    bucket.send_raw(kv::resp::encode_command({ "PING" }) + kv::resp::encode_command({ "GET", "big" })
        + kv::resp::encode_command({ "MGET", "half", "half" }) + kv::resp::encode_command({ "GET", "half" }));
    EXPECT_EQ(bucket.read_reply().text, "PONG");
    EXPECT_EQ(bucket.read_reply().text, "ERR reply of 5010 bytes is larger than the client buffer limit of 4096 bytes");
    EXPECT_EQ(bucket.read_reply().text, "ERR reply of 5022 bytes is larger than the client buffer limit of 4096 bytes");
    EXPECT_EQ(bucket.read_reply().text, std::string(2500, 'h'));
    EXPECT_EQ(bucket.call({ "STRLEN", "big" }).integer, 5001) << "the command ran; only its reply was refused";
    EXPECT_EQ(daemon.log().find("passed the client buffer limit"), std::string::npos) << daemon.log();
}
