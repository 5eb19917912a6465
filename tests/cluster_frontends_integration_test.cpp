// Every front end resolves names cluster-wide (the guide's router test: a
// request for a name on another node is served there and answered here):
// kvctl and the text server (textd) on node b reach a bucket that node a
// runs, over TCP at the address LOOKUP gives, with AUTH. Real etcd on
// loopback (etcd_fixture.h), real registryd nodes each with its own run dir,
// and what each test claims is checked on a's side, through the bucket's own
// Unix socket.
//
// A node learns of another node's bucket through its etcd watch, a moment
// after etcd has it: a test waits for "b sees it" by asking b again until it
// does, with a deadline that bounds a hang and claims nothing about speed.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "daemon_fixture.h"
#include "etcd_fixture.h"

using namespace kv::test;
using kv::resp::Value;
using Clock = std::chrono::steady_clock;

namespace {

// Node `node` on `etcd`, with the TCP listeners that let other nodes' clients in.
std::unique_ptr<RegistryDaemon> start_node(const EtcdCluster& etcd, const std::string& node, std::vector<std::string> extra)
{
    std::vector<std::string> arguments { "--cluster", etcd.client_urls(), "--node", node, "--lease-ttl", "2" };
    arguments.insert(arguments.end(), extra.begin(), extra.end());
    return std::make_unique<RegistryDaemon>(arguments);
}

// Asks `daemon` LOOKUP `name` until it gives another node's record with an
// address (its watch has seen the bucket ready), or the deadline passes.
Value lookup_remote(const RegistryDaemon& daemon, const std::string& name)
{
    const auto until = Clock::now() + scaled(20s);
    Value reply;
    do {
        reply = daemon.call({ "LOOKUP", name });
        if (!reply.is_error() && !text_of(reply, "address").empty() && text_of(reply, "socket").empty())
            return reply;
        std::this_thread::sleep_for(5ms); // between two questions, not instead of an answer
    } while (Clock::now() < until);
    ADD_FAILURE() << "node never saw " << name << " on another node: " << reply.text;
    return reply;
}

ProgramResult kvctl(const RegistryDaemon& node, std::vector<std::string> arguments)
{
    arguments.insert(arguments.begin(), { binary("kvctl"), "--run-dir", node.run_dir() });
    return run_program(arguments);
}

// The value of `key` in the bucket behind `socket` (its own Unix socket, on
// its own node): what the bucket really holds. Null for a missing key.
Value held(const std::string& socket, const std::string& key) { return kv::Client::connect(socket).call({ "GET", key }); }

// Two nodes on one etcd, both with --listen-tcp and the same password, and a
// bucket "shopping" that a runs, once b knows of it.
struct TwoNodes {
    explicit TwoNodes(std::vector<std::string> b_extra = {})
    {
        const std::vector<std::string> tcp { "--listen-tcp", "127.0.0.1:0", "--password-file", password_file };
        a = start_node(etcd, "a", tcp);
        b_extra.insert(b_extra.begin(), tcp.begin(), tcp.end());
        b = start_node(etcd, "b", b_extra);
        const Value created = a->call({ "CREATE", "shopping" });
        EXPECT_FALSE(created.is_error()) << created.text;
        socket = text_of(created, "socket");
        address = text_of(lookup_remote(*b, "shopping"), "address");
        EXPECT_EQ(address, text_of(created, "address"));
    }

    EtcdCluster etcd;
    TemporaryDirectory secrets;
    const std::string password = "correct horse battery staple";
    const std::string password_file = write_password_file(secrets, "password", password);
    std::unique_ptr<RegistryDaemon> a, b;
    std::string socket;  // a's bucket's own Unix socket, on a
    std::string address; // its TCP address, as LOOKUP on b gives it
};

// A client of a text port, a line at a time, each with a deadline.
class TextClient {
public:
    explicit TextClient(const std::string& address)
    {
        const auto colon = address.rfind(':');
        sockaddr_in to {};
        to.sin_family = AF_INET;
        to.sin_port = htons(static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1))));
        to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        EXPECT_EQ(address.substr(0, colon), "127.0.0.1");
        fd_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        EXPECT_EQ(::connect(fd_.get(), reinterpret_cast<sockaddr*>(&to), sizeof to), 0) << address;
    }

    // Sends `request` and returns the next line, "\r\n" included ("" if
    // the server closed first).
    std::string call(const std::string& request)
    {
        if (!request.empty()) {
            EXPECT_EQ(::send(fd_.get(), request.data(), request.size(), MSG_NOSIGNAL), static_cast<ssize_t>(request.size()));
        }
        const auto deadline = Clock::now() + scaled(20s);
        for (;;) {
            if (const auto newline = buffer_.find('\n'); newline != std::string::npos) {
                std::string line = buffer_.substr(0, newline + 1);
                buffer_.erase(0, newline + 1);
                return line;
            }
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            pollfd readable { fd_.get(), POLLIN, 0 };
            if (left.count() <= 0 || ::poll(&readable, 1, static_cast<int>(left.count())) != 1) {
                ADD_FAILURE() << "no reply line in time to " << request;
                return "(timed out)";
            }
            char chunk[4096];
            const ssize_t got = ::read(fd_.get(), chunk, sizeof chunk);
            if (got <= 0)
                return std::exchange(buffer_, "");
            buffer_.append(chunk, static_cast<std::size_t>(got));
        }
    }

private:
    kv::UniqueFd fd_;
    std::string buffer_;
};

} // namespace

TEST(ClusterFrontends, KvctlOnOneNodeReadsAndWritesABucketOnAnotherWithThePassword)
{
    KV_REQUIRE(etcd_missing().empty(), etcd_missing());
    TwoNodes nodes;
    const auto& b = *nodes.b;
    const std::string password = "--password-file=" + nodes.password_file;

    auto put = kvctl(b, { "put", "shopping", "milk", "3", password });
    EXPECT_EQ(put.exit_code, 0) << put.err;
    EXPECT_EQ(put.err, "");
    EXPECT_EQ(held(nodes.socket, "milk").text, "3") << "served by a's bucket";

    auto get = kvctl(b, { "--password-file", nodes.password_file, "get", "shopping", "milk" });
    EXPECT_EQ(get.exit_code, 0) << get.err;
    EXPECT_EQ(get.out, "3\n");
    auto keys = kvctl(b, { "keys", "shopping", password });
    EXPECT_EQ(keys.exit_code, 0) << keys.err;
    EXPECT_EQ(keys.out, "milk\n");
    auto missing = kvctl(b, { "get", "shopping", "eggs", password });
    EXPECT_EQ(missing.exit_code, 1);
    EXPECT_EQ(missing.err, "kvctl: no key eggs in bucket shopping\n");

    auto removed = kvctl(b, { "delete", "shopping", "milk", password });
    EXPECT_EQ(removed.exit_code, 0) << removed.err;
    EXPECT_EQ(held(nodes.socket, "milk").type, Value::Type::null) << "deleted in a's bucket";
    auto again = kvctl(b, { "delete", "shopping", "milk", password });
    EXPECT_EQ(again.exit_code, 1);
    EXPECT_EQ(again.err, "kvctl: no key milk in bucket shopping\n");

    // b's own buckets are still reached the local way, with or without a password.
    ASSERT_FALSE(b.call({ "CREATE", "local" }).is_error());
    EXPECT_EQ(kvctl(b, { "put", "local", "k", "v" }).exit_code, 0);
    EXPECT_EQ(kvctl(b, { "get", "local", "k" }).out, "v\n");
    EXPECT_EQ(kvctl(b, { "get", "local", "k", password }).out, "v\n");
}

TEST(ClusterFrontends, KvctlWithoutAPasswordFileIsToldWhatAnotherNodesBucketNeeds)
{
    KV_REQUIRE(etcd_missing().empty(), etcd_missing());
    TwoNodes nodes;
    auto put = kvctl(*nodes.b, { "put", "shopping", "milk", "3" });
    EXPECT_EQ(put.exit_code, 4) << "refused";
    EXPECT_EQ(put.err, "kvctl: unable to put milk in bucket shopping: bucket shopping on node a is reached over TCP at " + nodes.address
            + ", which needs the cluster's password: give kvctl --password-file FILE\n");
    EXPECT_EQ(held(nodes.socket, "milk").type, Value::Type::null);
    auto get = kvctl(*nodes.b, { "get", "shopping", "milk" });
    EXPECT_EQ(get.exit_code, 4);
    EXPECT_EQ(get.err.rfind("kvctl: unable to get milk from bucket shopping: bucket shopping on node a is reached over TCP", 0), 0u) << get.err;
}

TEST(ClusterFrontends, KvctlWithAWrongOrUnsafePasswordFileIsRefusedInOneLine)
{
    KV_REQUIRE(etcd_missing().empty(), etcd_missing());
    TwoNodes nodes;
    const std::string wrong = write_password_file(nodes.secrets, "wrong", "not the password");
    auto put = kvctl(*nodes.b, { "put", "shopping", "milk", "3", "--password-file", wrong });
    EXPECT_EQ(put.exit_code, 4);
    EXPECT_EQ(put.err, "kvctl: unable to put milk in bucket shopping: unable to authenticate to " + nodes.address
            + ": the password was refused (WRONGPASS invalid username-password pair or user is disabled.)\n");
    EXPECT_EQ(held(nodes.socket, "milk").type, Value::Type::null);

    // A file others may read is refused before anything is sent, local bucket or not.
    const std::string unsafe = write_password_file(nodes.secrets, "unsafe", nodes.password, 0644);
    auto get = kvctl(*nodes.b, { "get", "shopping", "milk", "--password-file", unsafe });
    EXPECT_EQ(get.exit_code, 4);
    EXPECT_EQ(get.err, "kvctl: unable to use --password-file: password file " + unsafe
            + ": readable or writable by group or others (mode 0644); chmod 600 it\n");
}

TEST(ClusterFrontends, TheTextServerOnOneNodeServesANameOnAnother)
{
    KV_REQUIRE(etcd_missing().empty(), etcd_missing());
    TwoNodes nodes({ "--text-listen", "127.0.0.1:0" });
    TextClient text(registry_info(*nodes.b)["text_listen"]);

    // CREATE on b: b's registryd answers with a's bucket, which then serves the calls.
    EXPECT_EQ(text.call("CREATE shopping\r\n"), "OK\r\n");
    EXPECT_EQ(text.call("PUT shopping milk 3\r\n"), "OK\r\n");
    EXPECT_EQ(held(nodes.socket, "milk").text, "3") << "served by a's bucket";
    EXPECT_EQ(text.call("GET shopping milk\r\n"), "3\r\n");
    EXPECT_EQ(text.call(""), "OK\r\n");
    ASSERT_EQ(kv::Client::connect(nodes.socket).call({ "SET", "eggs", "12" }).text, "OK");
    EXPECT_EQ(text.call("GET shopping eggs\r\n"), "12\r\n") << "what a's bucket holds";
    EXPECT_EQ(text.call(""), "OK\r\n");
    EXPECT_EQ(text.call("DELETE shopping milk\r\n"), "OK\r\n");
    EXPECT_EQ(held(nodes.socket, "milk").type, Value::Type::null) << "deleted in a's bucket";
    EXPECT_EQ(text.call("GET shopping milk\r\n"), "\r\n");
    EXPECT_EQ(text.call(""), "OK\r\n");
    EXPECT_EQ(text.call("GET nowhere milk\r\n"), "NOT FOUND\r\n");

    // A name no node has yet, created through b's text port, is b's: still served.
    EXPECT_EQ(text.call("CREATE school\r\n"), "OK\r\n");
    EXPECT_EQ(text.call("PUT school pupils 30\r\n"), "OK\r\n");
    EXPECT_EQ(text.call("GET school pupils\r\n"), "30\r\n");
    EXPECT_EQ(text.call(""), "OK\r\n");
}

TEST(ClusterFrontends, TheTextServerWithoutAPasswordRepliesErrorAndLogsWhy)
{
    KV_REQUIRE(etcd_missing().empty(), etcd_missing());
    EtcdCluster etcd;
    TemporaryDirectory secrets;
    const std::string password_file = write_password_file(secrets, "password", "correct horse battery staple");
    auto a = start_node(etcd, "a", { "--listen-tcp", "127.0.0.1:0", "--password-file", password_file });
    auto b = start_node(etcd, "b", { "--text-listen", "127.0.0.1:0" }); // no --password-file
    ASSERT_FALSE(a->call({ "CREATE", "shopping" }).is_error());
    const std::string address = text_of(lookup_remote(*b, "shopping"), "address");

    TextClient text(registry_info(*b)["text_listen"]);
    EXPECT_EQ(text.call("PUT shopping milk 3\r\n"), "ERROR\r\n");
    EXPECT_EQ(text.call(""), "") << "closed after ERROR";
    EXPECT_NE(b->log().find("SET on bucket shopping: bucket shopping is on node a, at " + address
                  + " over TCP, and textd has no password to AUTH with there (registryd --password-file)"),
        std::string::npos)
        << b->log();
}
