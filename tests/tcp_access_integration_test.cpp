// TCP access with a password (registryd --listen-tcp, --password-file): the
// registry and every bucket reached over TCP by real clients (redis-cli,
// python3-redis) that AUTH as they would with Redis's requirepass; what an
// unauthenticated client is told, byte for byte as a redis-server started
// with --requirepass tells it; a password file anyone else could read or set
// refused; the password nowhere in /proc; nothing left listening after a
// bucket or registryd stops.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <regex>

#include <gtest/gtest.h>

#include "daemon_fixture.h"
#include "log.h"
#include "reference_redis.h"
#include "run_dir.h"
#include "tcp_listener.h"
#include "tcp_peer.h"

using namespace kv::test;

namespace {

const std::string password = "tcp pass-42 \xc3\xa9"; // a space and a non-ASCII byte: sent as is

// Writes `text` to `path` with `mode`.
void write_file(const std::string& path, const std::string& text, mode_t mode)
{
    std::ofstream(path) << text;
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
}

// True if something accepts TCP connections on `address` ("127.0.0.1:PORT").
bool accepts_connections(const std::string& address)
{
    try {
        RawConnection::tcp(address);
        return true;
    } catch (const std::runtime_error&) {
        return false;
    }
}

// Sends `bytes` on a new TCP connection to `address`, half-closes, and
// returns everything the server says until it closes.
std::string tcp_exchange_raw(const std::string& address, const std::string& bytes)
{
    RawConnection connection = RawConnection::tcp(address); // a 20 s receive timeout
    EXPECT_EQ(::send(connection.fd(), bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
    ::shutdown(connection.fd(), SHUT_WR);
    std::string reply;
    char chunk[4096];
    for (ssize_t n; (n = ::recv(connection.fd(), chunk, sizeof chunk, 0)) > 0;)
        reply.append(chunk, static_cast<std::size_t>(n));
    return reply;
}

// HELLO's connection id differs between any two servers.
std::string masked(std::string reply)
{
    static const std::regex hello_id("\\$2\r\nid\r\n:[0-9]+\r\n");
    return std::regex_replace(reply, hello_id, "$$2\r\nid\r\n:*\r\n");
}

std::string file_text(const std::string& path)
{
    std::ifstream file(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(file), {});
}

std::size_t lines_in(const std::string& text) { return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')); }

// A reply's text (a bulk or verbatim string's, an error's).
std::string reply_text(const std::string& bytes)
{
    std::size_t consumed = 0;
    kv::resp::Value value;
    EXPECT_EQ(kv::resp::parse_value(bytes, consumed, value), kv::resp::ParseResult::complete) << bytes;
    return value.text;
}

// A field of a CLIENT LIST or CLIENT INFO line ("addr").
std::string client_field(const std::string& line, const std::string& field)
{
    std::smatch found;
    if (!std::regex_search(line, found, std::regex("(^| )" + field + "=([^ \n]*)")))
        return "<no " + field + ">";
    return found[2].str();
}

// An INFO field's value ("connected_clients"), the first one in `info`.
std::string info_field(const std::string& info, const std::string& field)
{
    std::smatch found;
    if (!std::regex_search(info, found, std::regex("(^|\n)" + field + ":([^\r\n]*)")))
        return "<no " + field + ">";
    return found[2].str();
}

class TcpAccess : public ::testing::Test {
protected:
    void SetUp() override
    {
        KV_REQUIRE(!find_program("redis-cli").empty(), "redis-cli on PATH (apt-get install redis-tools)");
        password_file_ = directory_.path() + "/password";
        write_file(password_file_, password + "\n", 0600);
        daemon_.emplace(std::vector<std::string> { "--listen-tcp", "127.0.0.1:0", "--password-file", password_file_ });
        registry_address_ = registry_info(*daemon_).at("tcp_listen");
        ASSERT_TRUE(std::regex_match(registry_address_, std::regex("127\\.0\\.0\\.1:[1-9][0-9]*"))) << registry_address_;
    }

    // redis-cli against `address` ("127.0.0.1:PORT") with the password.
    ProgramResult redis_cli(const std::string& address, std::vector<std::string> command) const
    {
        const auto program = find_program("redis-cli");
        const auto colon = address.rfind(':');
        std::vector<std::string> argv = { program, "-h", address.substr(0, colon), "-p", address.substr(colon + 1), "-a", password,
            "--no-auth-warning" };
        argv.insert(argv.end(), command.begin(), command.end());
        return run_program(argv);
    }

    // The bucket's TCP address, as its INFO says it (tcp_port).
    // LOOKUP's `address`, checked against the port the bucket itself says
    // it serves (its INFO's tcp_port).
    std::string bucket_address(const std::string& name) const
    {
        const kv::resp::Value bucket = daemon_->call({ "LOOKUP", name });
        std::string address;
        EXPECT_TRUE(bucket.text_field("address", address)) << "LOOKUP gives no address";
        const auto server = run_program({ find_program("redis-cli"), "-s", bucket.field("socket")->text, "INFO", "server" });
        std::smatch port;
        EXPECT_TRUE(std::regex_search(server.out, port, std::regex("tcp_port:([0-9]+)"))) << server.out;
        EXPECT_EQ(address, "127.0.0.1:" + port[1].str());
        return address;
    }

    TemporaryDirectory directory_;
    std::string password_file_;
    std::optional<RegistryDaemon> daemon_;
    std::string registry_address_;
};

TEST_F(TcpAccess, RedisCliCreatesThroughTheRegistrysPortAndWritesThroughTheBuckets)
{
    const auto created = redis_cli(registry_address_, { "CREATE", "shop" });
    ASSERT_EQ(created.exit_code, 0) << created.err;
    EXPECT_NE(created.out.find("shop"), std::string::npos) << created.out;
    const std::string bucket = bucket_address("shop");
    EXPECT_NE(bucket, registry_address_);
    EXPECT_NE(bucket, "127.0.0.1:0") << "a bucket reports the port it was given";

    EXPECT_EQ(redis_cli(bucket, { "SET", "milk", "2 litres" }).out, "OK\n");
    EXPECT_EQ(redis_cli(bucket, { "GET", "milk" }).out, "2 litres\n");
    // The same bucket as on its Unix socket, where no AUTH is asked.
    const std::string socket = daemon_->create("shop").field("socket")->text;
    EXPECT_EQ(run_program({ find_program("redis-cli"), "-s", socket, "GET", "milk" }).out, "2 litres\n");
    EXPECT_EQ(daemon_->call({ "LOOKUP", "shop" }).field("name")->text, "shop") << "the registry's Unix socket asks no AUTH";
}

// Each request on one connection to kv (the registry's port, then a
// bucket's) and one to redis-server --requirepass: the same bytes.
TEST_F(TcpAccess, BeforeAuthEveryReplyIsRedisRequirepasssByteForByte)
{
    KV_REQUIRE(!find_program("redis-server").empty(), "redis-server on PATH (apt-get install redis-server)");
    ReferenceRedis redis({ "--requirepass", password });
    daemon_->create("shop");
    const std::vector<std::vector<std::string>> script = {
        { "PING" },
        { "ECHO", "x" },
        { "CLIENT", "ID" },
        { "MULTI" },
        { "NOSUCHCOMMAND" },
        { "EXEC" }, // EXEC itself: the refusal said after EXECABORT
        { "ECHO" }, // a wrong arity is told before the missing AUTH, as Redis does
        { "AUTH" },
        { "AUTH", "wrong" },
        { "AUTH", "default", "wrong" },
        { "AUTH", "nobody", password },
        { "AUTH", "a", "b", "c" },
        { "HELLO" },
        { "HELLO", "3" },
        { "HELLO", "4" },
        { "HELLO", "2", "SETNAME", "early" },
        { "HELLO", "3", "AUTH", "default", "wrong" },
        { "HELLO", "2", "AUTH", "default", password, "AUTH", "default", "wrong" },
        { "CLIENT", "GETNAME" },
        { "HELLO", "3", "AUTH", "default", password, "SETNAME", "tcp" },
        { "CLIENT", "GETNAME" },
        { "PING" },
        { "AUTH", "wrong" }, // a failed AUTH leaves an authenticated client so
        { "PING" },
        { "RESET" }, // and RESET logs it out
        { "PING" },
        { "AUTH", password },
        { "PING" },
        { "AUTH", "default", password },
        { "QUIT" },
    };
    const std::vector<std::vector<std::string>> bucket_only = {
        { "GET", "milk" },
        { "SET", "milk", "1" },
        { "GET" },
        { "AUTH", password },
        { "SET", "milk", "1" },
        { "GET", "milk" },
    };
    for (const std::string& address : { registry_address_, bucket_address("shop") }) {
        auto run = [&](const std::vector<std::vector<std::string>>& requests) {
            RawConnection ours = RawConnection::tcp(address);
            RawConnection theirs(redis.socket());
            for (const auto& request : requests) {
                std::string joined;
                for (const auto& argument : request)
                    joined += argument + " ";
                EXPECT_EQ(masked(ours.call(request)), masked(theirs.call(request))) << "on " << address << ", request: " << joined;
            }
        };
        run(script);
        if (address != registry_address_)
            run(bucket_only);
    }
}

// Redis's limits for a client without the password (at most 10 arguments
// of at most 16384 bytes), so that one cannot make a server hold much: the
// same error, and the connection closed, as redis-server --requirepass.
TEST_F(TcpAccess, BeforeAuthARequestIsHeldToRedisUnauthenticatedLimits)
{
    KV_REQUIRE(!find_program("redis-server").empty(), "redis-server on PATH (apt-get install redis-server)");
    ReferenceRedis redis({ "--requirepass", password });
    daemon_->create("shop");
    const std::string eleven = "*11\r\n";
    const std::string long_bulk = "*2\r\n$4\r\nECHO\r\n$16385\r\n";
    const std::string within = "*2\r\n$4\r\nECHO\r\n$16384\r\n" + std::string(16384, 'k') + "\r\n";
    for (const std::string& address : { registry_address_, bucket_address("shop") }) {
        for (const std::string& bytes : { eleven, long_bulk, within }) {
            const std::string reference = exchange_raw(redis.socket(), bytes);
            ASSERT_NE(reference, "") << "redis-server answered nothing";
            EXPECT_EQ(tcp_exchange_raw(address, bytes), reference)
                << "on " << address << ": " << kv::printable(bytes.substr(0, 24));
        }
        const std::string authenticated = kv::resp::encode_command({ "AUTH", password }) + within;
        EXPECT_EQ(tcp_exchange_raw(address, authenticated), exchange_raw(redis.socket(), authenticated)) << "on " << address;
    }
}

TEST_F(TcpAccess, AWrongPasswordOrNoneGetsNothingDone)
{
    daemon_->create("shop");
    const std::string bucket = bucket_address("shop");
    const auto program = find_program("redis-cli");
    const auto colon = bucket.rfind(':');
    const auto wrong = run_program({ program, "-h", "127.0.0.1", "-p", bucket.substr(colon + 1), "-a", "not it", "--no-auth-warning",
        "SET", "milk", "1" });
    EXPECT_NE(wrong.err.find("AUTH failed: WRONGPASS invalid username-password pair or user is disabled."), std::string::npos) << wrong.err;
    EXPECT_NE(wrong.out.find("NOAUTH Authentication required."), std::string::npos) << wrong.out;
    const auto none = run_program({ program, "-h", "127.0.0.1", "-p", bucket.substr(colon + 1), "SET", "milk", "1" });
    EXPECT_NE(none.out.find("NOAUTH Authentication required."), std::string::npos) << none.out << none.err;
    EXPECT_EQ(redis_cli(bucket, { "EXISTS", "milk" }).out, "0\n") << "neither SET ran";
    const auto create = run_program({ program, "-h", "127.0.0.1", "-p", registry_address_.substr(registry_address_.rfind(':') + 1),
        "CREATE", "intruder" });
    EXPECT_NE(create.out.find("NOAUTH"), std::string::npos) << create.out;
    EXPECT_TRUE(daemon_->call({ "LOOKUP", "intruder" }).is_error()) << "no bucket made without AUTH";
}

TEST_F(TcpAccess, PythonRedisWithAPasswordAndItsDefaultSettings)
{
    const std::string python = "/usr/bin/python3"; // Debian's: the one that sees python3-redis
    KV_REQUIRE(run_program({ python, "-c", "import redis" }).exit_code == 0, "Debian's python3-redis (/usr/bin/python3)");
    daemon_->create("shop");
    const std::string bucket = bucket_address("shop");
    const auto colon = bucket.rfind(':');
    const std::string script = "import sys, redis\n"
                               "r = redis.Redis(host=sys.argv[1], port=int(sys.argv[2]), password=sys.argv[3])\n"
                               "assert r.set('py', 'ok')\n"
                               "print(r.get('py').decode())\n"
                               "try:\n"
                               "    redis.Redis(host=sys.argv[1], port=int(sys.argv[2]), password='not it').get('py')\n"
                               "    print('wrong password accepted')\n"
                               "except redis.exceptions.ResponseError as error:\n"
                               "    print('refused:', error)\n";
    const auto result = run_program({ python, "-c", script, "127.0.0.1", bucket.substr(colon + 1), password });
    EXPECT_EQ(result.exit_code, 0) << result.err;
    EXPECT_EQ(result.out, "ok\nrefused: WRONGPASS invalid username-password pair or user is disabled.\n") << result.err;
}

TEST_F(TcpAccess, ThePasswordIsInNoArgvNorEnvironment)
{
    const auto bucket_pid = daemon_->create("shop").field("pid")->integer;
    for (const long long pid : { static_cast<long long>(bucket_pid), static_cast<long long>(daemon_->pid()) }) {
        for (const char* file : { "cmdline", "environ" }) {
            const std::string text = file_text("/proc/" + std::to_string(pid) + "/" + file);
            EXPECT_FALSE(text.empty()) << "/proc/" << pid << "/" << file << " read";
            EXPECT_EQ(text.find(password), std::string::npos) << "/proc/" << pid << "/" << file;
        }
    }
}

TEST_F(TcpAccess, AStoppedBucketAndAStoppedRegistrydLeaveNoPortOpen)
{
    daemon_->create("shop");
    const std::string bucket = bucket_address("shop");
    ASSERT_TRUE(accepts_connections(bucket));
    ASSERT_FALSE(daemon_->call({ "STOP", "shop" }).is_error());
    EXPECT_FALSE(accepts_connections(bucket)) << "registryd kept a copy of the bucket's listener";

    daemon_->create("other");
    const std::string other = bucket_address("other");
    ASSERT_TRUE(accepts_connections(other));
    const auto exit = daemon_->stop();
    EXPECT_EQ(exit.status, 0);
    EXPECT_FALSE(accepts_connections(registry_address_));
    EXPECT_FALSE(accepts_connections(other));
}

// Redis shows a TCP client's address and port as addr, and the address it
// connected to as laddr; a Unix socket client's, the socket's path with port
// 0, both. kv, on the registry's port, a bucket's, and their Unix sockets.
TEST_F(TcpAccess, ClientListShowsATcpClientsAddressAndTheAddressItReachedAsRedisDoes)
{
    KV_REQUIRE(!find_program("redis-server").empty(), "redis-server on PATH (apt-get install redis-server)");
    // A free port for redis-server: bound here, then closed for it to take.
    const unsigned redis_port = kv::address_port(kv::listen_tcp("127.0.0.1:0").address);
    ReferenceRedis redis({ "--port", std::to_string(redis_port) });
    daemon_->create("shop");
    const std::string socket = daemon_->call({ "LOOKUP", "shop" }).field("socket")->text;
    for (const std::string& address : { "127.0.0.1:" + std::to_string(redis_port), registry_address_, bucket_address("shop") }) {
        RawConnection client = RawConnection::tcp(address);
        if (address != "127.0.0.1:" + std::to_string(redis_port)) {
            ASSERT_EQ(reply_text(client.call({ "AUTH", password })), "OK");
        }
        const std::string line = reply_text(client.call({ "CLIENT", "INFO" }));
        EXPECT_EQ(client_field(line, "addr"), kv::local_address(client.fd())) << address << ": " << line;
        EXPECT_EQ(client_field(line, "laddr"), address) << line;
        // CLIENT LIST shows it so too, beside the client that asks (once the
        // server has answered it: then it has accepted it).
        RawConnection other = RawConnection::tcp(address);
        if (address == "127.0.0.1:" + std::to_string(redis_port))
            ASSERT_EQ(reply_text(other.call({ "PING" })), "PONG");
        else
            ASSERT_EQ(reply_text(other.call({ "AUTH", password })), "OK");
        const std::string list = reply_text(client.call({ "CLIENT", "LIST" }));
        EXPECT_NE(list.find(" addr=" + kv::local_address(other.fd()) + " laddr=" + address + " "), std::string::npos) << list;
    }
    for (const std::string& path : { redis.socket(), kv::registry_socket_path(daemon_->run_dir()), socket }) {
        RawConnection client(path);
        const std::string line = reply_text(client.call({ "CLIENT", "INFO" }));
        EXPECT_EQ(client_field(line, "addr"), path + ":0") << line;
        EXPECT_EQ(client_field(line, "laddr"), path + ":0") << line;
    }
}

// connected_clients and CLIENT LIST count every client of the daemon, on its
// Unix socket and on its TCP port alike, as Redis's one list of clients does.
TEST_F(TcpAccess, InfoAndClientListCountTcpClientsBesideUnixSocketOnes)
{
    daemon_->create("shop");
    const std::string socket = daemon_->call({ "LOOKUP", "shop" }).field("socket")->text;
    const std::vector<std::pair<std::string, std::string>> daemons { { kv::registry_socket_path(daemon_->run_dir()), registry_address_ },
        { socket, bucket_address("shop") } };
    for (const auto& [path, address] : daemons) {
        RawConnection local(path);
        std::vector<RawConnection> remote;
        for (int i = 0; i < 2; ++i) {
            remote.push_back(RawConnection::tcp(address));
            ASSERT_EQ(reply_text(remote.back().call({ "AUTH", password })), "OK");
        }
        EXPECT_EQ(info_field(reply_text(local.call({ "INFO", "clients" })), "connected_clients"), "3") << path;
        EXPECT_EQ(info_field(reply_text(remote[0].call({ "INFO", "clients" })), "connected_clients"), "3") << address;
        const std::string list = reply_text(local.call({ "CLIENT", "LIST" }));
        EXPECT_EQ(lines_in(list), 3u) << list;
        EXPECT_EQ(std::regex_search(list, std::regex("laddr=" + address)), true) << list;
        if (path != socket) { // the registry's own section says it too
            EXPECT_EQ(info_field(reply_text(local.call({ "INFO", "registry" })), "connected_clients"), "3");
        }
        // A TCP client that leaves stops counting once the daemon has seen it go.
        remote.pop_back();
        std::string count;
        for (const auto until = std::chrono::steady_clock::now() + scaled(10s); std::chrono::steady_clock::now() < until;) {
            count = info_field(reply_text(local.call({ "INFO", "clients" })), "connected_clients");
            if (count == "2")
                break;
        }
        EXPECT_EQ(count, "2") << address;
    }
}

// registryd run to completion (it is expected not to start).
ProgramResult run_registryd(const TemporaryDirectory& run_dir, std::vector<std::string> arguments)
{
    std::vector<std::string> argv = { std::string(KV_BIN_DIR) + "/registryd", "--run-dir", run_dir.path() };
    argv.insert(argv.end(), arguments.begin(), arguments.end());
    return run_program(argv);
}

TEST(TcpAccessRefused, ListenTcpWithoutAPasswordFileIsAUsageError)
{
    TemporaryDirectory run_dir;
    const auto result = run_registryd(run_dir, { "--listen-tcp", "127.0.0.1:0" });
    EXPECT_EQ(result.exit_code, 2);
    EXPECT_EQ(lines_in(result.err), 1u) << result.err;
    EXPECT_NE(result.err.find("--password-file"), std::string::npos) << result.err;
}

TEST(TcpAccessRefused, AnAdvertisedAddressNeedsListenTcpAndAnIpAddressThatIsNoWildcard)
{
    TemporaryDirectory run_dir;
    TemporaryDirectory files;
    write_file(files.path() + "/password", password + "\n", 0600);
    const std::vector<std::pair<std::vector<std::string>, std::string>> cases {
        { { "--advertise-address", "192.0.2.7" }, "registryd: --advertise-address: needs --listen-tcp" },
        { { "--listen-tcp", "0.0.0.0:0", "--password-file", files.path() + "/password", "--advertise-address", "0.0.0.0" },
            "registryd: --advertise-address: 0.0.0.0 is every address of this machine, which no other can connect to" },
        { { "--listen-tcp", "0.0.0.0:0", "--password-file", files.path() + "/password", "--advertise-address", "node-a" },
            "registryd: --advertise-address: not an IPv4 or IPv6 address: node-a" },
    };
    for (const auto& [arguments, error] : cases) {
        const auto result = run_registryd(run_dir, arguments);
        EXPECT_EQ(result.exit_code, 2) << result.err;
        EXPECT_EQ(lines_in(result.err), 1u) << result.err;
        EXPECT_EQ(result.err.rfind(error, 0), 0u) << result.err;
    }
}

// Outside a cluster, --listen-tcp on every address serves as before; with
// --advertise-address, CREATE and LOOKUP name that address for each bucket,
// which a client then reaches.
TEST(TcpAccessAdvertised, CreateAndLookupNameTheAdvertisedAddressOfABucketBoundOnEveryAddress)
{
    TemporaryDirectory files;
    write_file(files.path() + "/password", password + "\n", 0600);
    RegistryDaemon daemon({ "--listen-tcp", "0.0.0.0:0", "--password-file", files.path() + "/password", "--advertise-address", "127.0.0.1" });
    EXPECT_EQ(registry_info(daemon).at("tcp_listen").rfind("0.0.0.0:", 0), 0u) << "INFO says where it is bound";
    const kv::resp::Value created = daemon.create("shop");
    const std::string address = created.field("address")->text;
    ASSERT_TRUE(std::regex_match(address, std::regex("127\\.0\\.0\\.1:[1-9][0-9]*"))) << address;
    EXPECT_EQ(daemon.call({ "LOOKUP", "shop" }).field("address")->text, address);
    RawConnection client = RawConnection::tcp(address);
    EXPECT_EQ(reply_text(client.call({ "AUTH", password })), "OK");
    EXPECT_EQ(reply_text(client.call({ "SET", "milk", "1" })), "OK");
    EXPECT_EQ(kv::Client::connect(created.field("socket")->text).call({ "GET", "milk" }).text, "1");
}

TEST(TcpAccessRefused, APasswordFileOthersCouldReadOrSetStopsRegistryd)
{
    TemporaryDirectory run_dir;
    TemporaryDirectory files;
    auto refused = [&](const std::string& path, const std::string& why) {
        const auto result = run_registryd(run_dir, { "--listen-tcp", "127.0.0.1:0", "--password-file", path });
        EXPECT_EQ(result.exit_code, 1) << path << ": " << result.err;
        EXPECT_EQ(lines_in(result.err), 1u) << result.err;
        EXPECT_NE(result.err.find("password file " + path + ": " + why), std::string::npos) << result.err;
    };
    const std::string readable = files.path() + "/readable";
    write_file(readable, password + "\n", 0644);
    refused(readable, "readable or writable by group or others (mode 0644)");
    const std::string writable = files.path() + "/writable";
    write_file(writable, password + "\n", 0620);
    refused(writable, "readable or writable by group or others (mode 0620)");
    const std::string empty = files.path() + "/empty";
    write_file(empty, "\n", 0600);
    refused(empty, "the password (its first line) is empty");
    refused(files.path() + "/missing", "No such file or directory");
    const std::string link = files.path() + "/link";
    write_file(files.path() + "/target", password + "\n", 0600);
    ASSERT_EQ(::symlink((files.path() + "/target").c_str(), link.c_str()), 0);
    refused(link, "is a symbolic link");

    KV_REQUIRE(::geteuid() == 0, "root, to give the password file to another user");
    const std::string foreign = files.path() + "/foreign";
    write_file(foreign, password + "\n", 0600);
    ASSERT_EQ(::chown(foreign.c_str(), 65534, 65534), 0);
    refused(foreign, "owned by uid 65534");
}

} // namespace
