// The connection commands every socket serves (HELLO, CLIENT, SELECT, QUIT,
// RESET, ECHO, COMMAND, INFO) and RESP3, as Redis clients see them: each
// reply compared byte for byte with a real redis-server 7.0's, real client
// libraries and redis-cli connecting with their defaults, and the registry's
// refusal of transactions.
#include <gtest/gtest.h>

#include <regex>

#include "daemon_fixture.h"
#include "log.h"
#include "reference_redis.h"
#include "run_dir.h"

using namespace kv::test;
using kv::resp::Value;

namespace {

// What must differ between two servers, and nothing else, is replaced by
// "*": connection ids (HELLO's id, CLIENT LIST's id=), addresses (the
// sockets' paths), descriptors, ages and idle times, and the figures about
// each server's own buffers (qbuf ... tot-mem). CLIENT LIST's lib-name and
// lib-ver come from Redis 7.2, which kv also serves (CLIENT SETINFO): they
// are removed before the comparison with 7.0. A bulk or verbatim string's
// length changes with what it holds, so it is masked where its text was.
std::string masked(std::string reply)
{
    static const std::regex hello_id("\\$2\r\nid\r\n:[0-9]+\r\n");
    static const std::regex client_field(
        "(^|[ =:\n])(id|addr|laddr|fd|age|idle|qbuf|qbuf-free|argv-mem|multi-mem|rbs|rbp|obl|oll|omem|tot-mem)=[^ \n]*");
    static const std::regex library_fields(" lib-name=[^ \n]* lib-ver=[^ \n]*");
    static const std::regex text_length("^([$=])[0-9]+\r\n((txt:)?id=)");
    reply = std::regex_replace(reply, hello_id, "$$2\r\nid\r\n:*\r\n");
    reply = std::regex_replace(reply, library_fields, "");
    reply = std::regex_replace(reply, client_field, "$1$2=*");
    reply = std::regex_replace(reply, text_length, "$1*\r\n$2");
    return reply;
}

class ConnectionTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        KV_REQUIRE(!find_program("redis-server").empty(), "redis-server on PATH (apt-get install redis-server)");
        redis_.emplace();
        bucket_socket_ = daemon_.create("shopping").field("socket")->text;
    }

    // Sends each request to `socket` (the bucket's unless given) and to
    // redis-server, each on one connection of its own, and expects the same
    // reply bytes (masked).
    void expect_same_replies(const std::vector<std::vector<std::string>>& script, std::string socket = {})
    {
        RawConnection ours(socket.empty() ? bucket_socket_ : socket);
        RawConnection theirs(redis_->socket());
        for (const auto& request : script) {
            std::string joined;
            for (const auto& argument : request)
                joined += argument + " ";
            const std::string reply = ours.call(request);
            const std::string reference = theirs.call(request);
            EXPECT_EQ(masked(reply), masked(reference)) << "request: " << joined;
        }
    }

    RegistryDaemon daemon_;
    std::optional<ReferenceRedis> redis_;
    std::string bucket_socket_;
};

// Each step in RESP2, then again after HELLO 3 where RESP3 differs.
TEST_F(ConnectionTest, RepliesAreRedis70sByteForByteInResp2AndResp3)
{
    expect_same_replies({
        { "HELLO" },
        { "HELLO", "4" },
        { "HELLO", "x" },
        { "HELLO", "2", "FOO" },
        { "HELLO", "2", "SETNAME", "a b" },
        { "HELLO", "3", "AUTH", "bob", "secret" },
        { "HELLO", "2", "AUTH", "default" },
        // A Unix socket asks no password: Redis without requirepass.
        { "AUTH" },
        { "AUTH", "any" },
        { "AUTH", "default", "any" },
        { "AUTH", "bob", "secret" },
        { "AUTH", "a", "b", "c" },
        { "CLIENT", "GETNAME" },
        { "CLIENT", "SETNAME", "my name" },
        { "CLIENT", "SETNAME", "caf\xc3\xa9" },
        { "CLIENT", "SETNAME", "shopper" },
        { "CLIENT", "GETNAME" },
        { "CLIENT", "INFO" },
        { "CLIENT", "LIST" },
        { "CLIENT", "LIST", "TYPE", "pubsub" },
        { "CLIENT", "LIST", "TYPE", "nonsense" },
        { "CLIENT", "LIST", "ID", "x" },
        { "CLIENT", "LIST", "ID", "0" },
        { "CLIENT", "LIST", "ID", "-1" },
        { "CLIENT", "LIST", "ID", "01" },
        { "CLIENT", "LIST", "ID", "99999" },
        { "CLIENT", "LIST", "TYPE", "a\r\nb" },
        { "CLIENT", "LIST", "nonsense" },
        { "CLIENT", "NONSENSE" },
        { "CLIENT", "a\r\nb" },
        { "CLIENT", std::string("a\0b", 3) },
        { "CLIENT", "a\x01" "b" },
        { "CLIENT", std::string(200, 'x') },
        { "COMMAND", "a\r\nb" },
        { "COMMAND", std::string("a\0b", 3) },
        { "HELLO", "2", "a\r\nb" },
        { "HELLO", "2", std::string("a\0b", 3) },
        { "CLIENT", "SETNAME" },
        { "CLIENT", "ID", "extra" },
        { "CLIENT" },
        { "SELECT", "0" },
        { "SELECT", "16" },
        { "SELECT", "-1" },
        { "SELECT", "-0" },
        { "SELECT", "00" },
        { "SELECT", "x" },
        { "SELECT" },
        { "ECHO", "hello\r\nworld" },
        { "ECHO" },
        { "GET", "missing" },
        { "CONFIG", "GET", "save" },
        { "COMMAND", "INFO", "nosuchcommand" },
        { "COMMAND", "DOCS", "nosuchcommand" },
        { "COMMAND", "NONSENSE" },
        { "COMMAND", "COUNT", "extra" },
        { "INFO", "nosuchsection" },
        { "INFO", "keyspace" },
        { "SET", "milk", "1" },
        { "INFO", "KEYSPACE" },
        { "DEL", "milk" },
        { "HELLO", "3", "AUTH", "default", "any password" },
        { "GET", "missing" },
        { "CLIENT", "GETNAME" },
        { "CLIENT", "INFO" },
        { "CLIENT", "LIST" },
        { "CONFIG", "GET", "save" },
        { "COMMAND", "INFO", "nosuchcommand" },
        { "COMMAND", "DOCS", "nosuchcommand" },
        { "INFO", "nosuchsection" },
        { "SET", "milk", "1" },
        { "INFO", "keyspace" },
        { "RANDOMKEY" },
        { "MGET", "milk", "missing" },
        { "SET", "milk", "2", "NX", "GET" },
        { "SET", "eggs", "2", "XX" },
        { "GETDEL", "missing" },
        { "GETSET", "missing", "x" },
        { "INCRBYFLOAT", "float", "1.5" },
        { "DEL", "milk", "missing", "float" },
        { "RANDOMKEY" },
        { "INFO", "keyspace" },
        { "HELLO" },
        { "RESET" },
        { "GET", "missing" },
        { "CLIENT", "GETNAME" },
        { "CLIENT", "INFO" },
        { "QUIT" },
    });
}

// The registry's socket serves the same connection commands the same way
// (it has no keys, no GET and no CONFIG: those stay out of its script).
TEST_F(ConnectionTest, TheRegistrySocketRepliesAsRedis70TooInResp2AndResp3)
{
    expect_same_replies({
        { "HELLO" },
        { "HELLO", "4" },
        { "HELLO", "2", "SETNAME", "a b" },
        { "CLIENT", "SETNAME", "admin" },
        { "CLIENT", "GETNAME" },
        { "CLIENT", "INFO" },
        { "CLIENT", "NONSENSE" },
        { "CLIENT", "a\r\nb" },
        { "CLIENT", std::string("a\0b", 3) },
        { "CLIENT", "LIST", "ID", "0" },
        { "SELECT", "0" },
        { "SELECT", "1000" },
        { "ECHO", "hi" },
        { "COMMAND", "INFO", "nosuchcommand" },
        { "INFO", "keyspace" },
        { "HELLO", "3" },
        { "CLIENT", "INFO" },
        { "COMMAND", "DOCS", "nosuchcommand" },
        { "INFO", "keyspace" },
        { "RESET" },
        { "CLIENT", "GETNAME" },
        { "QUIT" },
    }, daemon_.run_dir() + "/registry.sock");
}

TEST_F(ConnectionTest, QuitAnswersOkAndThenCloses)
{
    auto client = kv::Client::connect(bucket_socket_);
    set_receive_timeout(client, 20s);
    // A request pipelined behind QUIT is never run: the connection closes once +OK is written.
    client.send_raw(kv::resp::encode_command({ "QUIT" }) + kv::resp::encode_command({ "SET", "after", "quit" }));
    EXPECT_EQ(client.read_reply().text, "OK");
    EXPECT_TRUE(wait_peer_closed(client.fd(), 20s));
    auto other = kv::Client::connect(bucket_socket_);
    EXPECT_EQ(other.call({ "EXISTS", "after" }).integer, 0);
}

TEST_F(ConnectionTest, AClientThatSaidHello3GetsResp3NullsMapsAndVerbatimText)
{
    RawConnection connection(bucket_socket_);
    EXPECT_EQ(connection.call({ "GET", "missing" }), "$-1\r\n");
    ASSERT_EQ(connection.call({ "HELLO", "3" }).substr(0, 4), "%7\r\n");
    EXPECT_EQ(connection.call({ "GET", "missing" }), "_\r\n");
    EXPECT_EQ(connection.call({ "CONFIG", "GET", "appendonly" }), "%1\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
    EXPECT_EQ(connection.call({ "INFO", "keyspace" }), "=16\r\ntxt:# Keyspace\r\n\r\n");
    // It stays RESP3 for the rest of the connection, until RESET.
    EXPECT_EQ(connection.call({ "CLIENT", "GETNAME" }), "_\r\n");
    EXPECT_EQ(connection.call({ "RESET" }), "+RESET\r\n");
    EXPECT_EQ(connection.call({ "GET", "missing" }), "$-1\r\n");
}

TEST_F(ConnectionTest, ResetClearsNameAndProtocolButKeepsTheConnection)
{
    auto client = kv::Client::connect(bucket_socket_);
    set_receive_timeout(client, 20s);
    const long long id = client.call({ "CLIENT", "ID" }).integer;
    EXPECT_EQ(client.call({ "HELLO", "3", "SETNAME", "worker" }).type, Value::Type::map);
    EXPECT_EQ(client.call({ "CLIENT", "GETNAME" }).text, "worker");
    EXPECT_EQ(client.call({ "RESET" }).text, "RESET");
    EXPECT_EQ(client.call({ "CLIENT", "GETNAME" }).type, Value::Type::null);
    EXPECT_EQ(client.call({ "CLIENT", "ID" }).integer, id);
    const auto info = client.call({ "CLIENT", "INFO" });
    EXPECT_EQ(info.type, Value::Type::bulk); // RESP2 again: a bulk string, not verbatim
    EXPECT_NE(info.text.find(" resp=2 "), std::string::npos) << info.text;
}

TEST_F(ConnectionTest, ClientListShowsEveryConnectionWithItsNameAndLibrary)
{
    auto first = kv::Client::connect(bucket_socket_);
    auto second = kv::Client::connect(bucket_socket_);
    EXPECT_EQ(first.call({ "CLIENT", "SETNAME", "first" }).text, "OK");
    EXPECT_EQ(second.call({ "CLIENT", "SETINFO", "LIB-NAME", "kvtest" }).text, "OK");
    EXPECT_EQ(second.call({ "CLIENT", "SETINFO", "lib-ver", "1.2" }).text, "OK");
    EXPECT_EQ(second.call({ "CLIENT", "SETINFO", "lib-ver", "1 2" }).text,
        "ERR lib-ver cannot contain spaces, newlines or special characters.");
    EXPECT_EQ(second.call({ "CLIENT", "SETINFO", "colour", "red" }).text, "ERR Unrecognized option 'colour'");
    const std::string list = first.call({ "CLIENT", "LIST" }).text;
    const std::string first_id = std::to_string(first.call({ "CLIENT", "ID" }).integer);
    const std::string second_id = std::to_string(second.call({ "CLIENT", "ID" }).integer);
    EXPECT_NE(list.find("id=" + first_id + " "), std::string::npos) << list;
    EXPECT_NE(list.find(" name=first "), std::string::npos) << list;
    EXPECT_NE(list.find("id=" + second_id + " "), std::string::npos) << list;
    EXPECT_NE(list.find(" lib-name=kvtest lib-ver=1.2\n"), std::string::npos) << list;
    EXPECT_EQ(std::count(list.begin(), list.end(), '\n'), 2) << list;
    const std::string only = first.call({ "CLIENT", "LIST", "ID", second_id }).text;
    EXPECT_EQ(only.rfind("id=" + second_id + " ", 0), 0u) << only;
    EXPECT_EQ(std::count(only.begin(), only.end(), '\n'), 1) << only;
}

TEST_F(ConnectionTest, InfoSaysWhatIsTrueOfTheBucket)
{
    auto client = kv::Client::connect(bucket_socket_);
    EXPECT_EQ(client.call({ "SET", "a", "1" }).text, "OK");
    EXPECT_EQ(client.call({ "SET", "b", "2" }).text, "OK");
    const std::string info = client.call({ "INFO" }).text;
    for (const char* expected : { "# Server\r\nredis_version:7.0.15\r\n", "\r\nkv_version:", "\r\ntcp_port:0\r\n",
             "\r\n# Persistence\r\nloading:0\r\n", "\r\nconnected_clients:1\r\n", "\r\n# Keyspace\r\ndb0:keys=2,expires=0,avg_ttl=0\r\n" })
        EXPECT_NE(info.find(expected), std::string::npos) << expected << " not in " << info;
    const std::string pid = std::to_string(daemon_.call({ "LOOKUP", "shopping" }).field("pid")->integer);
    EXPECT_NE(info.find("\r\nprocess_id:" + pid + "\r\n"), std::string::npos) << info;
    EXPECT_EQ(info.substr(info.size() - 2), "\r\n");
}

TEST_F(ConnectionTest, CommandDescribesEveryCommandOfTheSocketFromItsTable)
{
    auto client = kv::Client::connect(bucket_socket_);
    const auto all = client.call({ "COMMAND" });
    ASSERT_EQ(all.type, Value::Type::array);
    EXPECT_EQ(client.call({ "COMMAND", "COUNT" }).integer, static_cast<long long>(all.elements.size()));
    std::vector<std::string> names;
    for (const auto& entry : all.elements)
        names.push_back(entry.elements.at(0).text);
    for (const char* name : { "get", "set", "del", "hello", "client", "info", "command", "quit", "multi", "exec", "discard",
             "watch", "unwatch" })
        EXPECT_NE(std::find(names.begin(), names.end(), name), names.end()) << name;
    const auto get = client.call({ "COMMAND", "INFO", "GET" });
    ASSERT_EQ(get.elements.size(), 1u);
    ASSERT_EQ(get.elements[0].elements.size(), 10u);
    EXPECT_EQ(get.elements[0].elements[1].integer, 2);  // arity
    EXPECT_EQ(get.elements[0].elements[3].integer, 1);  // first key
    const auto docs = client.call({ "COMMAND", "DOCS", "get", "nosuch" });
    ASSERT_EQ(docs.elements.size(), 2u);
    EXPECT_EQ(docs.elements[0].text, "get");
    EXPECT_EQ(docs.elements[1].field("group")->text, "string");
}

// What COMMAND INFO says of each command a bucket serves, up to its ACL
// categories, is what redis-server 7.0 says of it: the docs in the command
// tables are Redis's (kv lists no tips, key specifications or subcommands).
// And every command has a summary for COMMAND DOCS (redis-cli's help).
TEST_F(ConnectionTest, CommandInfoOfEveryBucketCommandIsRedis70sUpToItsCategories)
{
    auto ours = kv::Client::connect(bucket_socket_);
    auto theirs = kv::Client::connect(redis_->socket());
    auto words = [](const Value& value) {
        std::string out;
        for (const auto& element : value.elements)
            out += element.text + " ";
        return out;
    };
    auto described = [&](const Value& info) {
        return info.elements.at(0).text + " arity " + std::to_string(info.elements.at(1).integer) + " flags " + words(info.elements.at(2))
            + "keys " + std::to_string(info.elements.at(3).integer) + " " + std::to_string(info.elements.at(4).integer) + " "
            + std::to_string(info.elements.at(5).integer) + " categories " + words(info.elements.at(6));
    };
    const auto all = ours.call({ "COMMAND" });
    ASSERT_GT(all.elements.size(), 20u);
    for (const auto& entry : all.elements) {
        const std::string name = entry.elements.at(0).text;
        const auto reference = theirs.call({ "COMMAND", "INFO", name });
        ASSERT_EQ(reference.elements.size(), 1u);
        EXPECT_EQ(described(entry), described(reference.elements[0]));
        const auto docs = ours.call({ "COMMAND", "DOCS", name });
        ASSERT_EQ(docs.elements.size(), 2u) << name;
        EXPECT_FALSE(docs.elements[1].field("summary")->text.empty()) << name;
    }
}

// --- the registry socket ---

TEST(RegistryConnection, ATransactionIsRefusedWholeAndCreatesNothing)
{
    RegistryDaemon daemon;
    auto client = daemon.connect();
    set_receive_timeout(client, 20s);
    EXPECT_EQ(client.call({ "EXEC" }).text, "ERR EXEC without MULTI");
    EXPECT_EQ(client.call({ "DISCARD" }).text, "ERR DISCARD without MULTI");
    EXPECT_EQ(client.call({ "MULTI" }).text, "OK");
    EXPECT_EQ(client.call({ "MULTI" }).text, "ERR MULTI calls can not be nested");
    EXPECT_EQ(client.call({ "CREATE", "shopping" }).text,
        "ERR CREATE inside MULTI: the registry does not run transactions; nothing in this block will run");
    EXPECT_EQ(client.call({ "PING" }).text,
        "ERR PING inside MULTI: the registry does not run transactions; nothing in this block will run");
    // Redis's checks before queueing come first, with Redis's own errors.
    EXPECT_EQ(client.call({ "CREATE" }).text, "ERR wrong number of arguments for 'create' command");
    EXPECT_EQ(client.call({ "ECHO" }).text, "ERR wrong number of arguments for 'echo' command");
    EXPECT_EQ(client.call({ "CLIENT", "ID", "x" }).text, "ERR wrong number of arguments for 'client|id' command");
    EXPECT_EQ(client.call({ "CLIENT", "NOSUCH" }).text, "ERR unknown subcommand 'NOSUCH'. Try CLIENT HELP.");
    // WATCH and UNWATCH are connection commands the registry does not serve:
    // unknown here, and answered like any unknown command (each call waits
    // for its own reply, so a missing one fails here, not later).
    EXPECT_EQ(client.call({ "WATCH", "k" }).text, "ERR unknown command 'WATCH', with args beginning with: 'k' ");
    EXPECT_EQ(client.call({ "UNWATCH" }).text, "ERR unknown command 'UNWATCH', with args beginning with: ");
    EXPECT_EQ(client.call({ "EXEC" }).text, "EXECABORT Transaction discarded because of previous errors.");
    EXPECT_EQ(daemon.call({ "LIST" }).elements.size(), 0u);
    EXPECT_EQ(client.call({ "LOOKUP", "shopping" }).text, "NOTFOUND no bucket named shopping");
    // DISCARD ends a block too; afterwards commands run again.
    EXPECT_EQ(client.call({ "MULTI" }).text, "OK");
    EXPECT_TRUE(client.call({ "STOP", "x" }).is_error());
    EXPECT_EQ(client.call({ "DISCARD" }).text, "OK");
    EXPECT_EQ(client.call({ "PING" }).text, "PONG");
    EXPECT_EQ(daemon.call({ "LIST" }).elements.size(), 0u);
}

TEST(RegistryConnection, ServesTheConnectionCommandsAndResp3)
{
    RegistryDaemon daemon;
    daemon.create("shopping");
    auto client = daemon.connect();
    set_receive_timeout(client, 20s);
    EXPECT_EQ(client.call({ "SELECT", "0" }).text, "OK");
    EXPECT_EQ(client.call({ "ECHO", "hi" }).text, "hi");
    const std::string info = client.call({ "INFO" }).text;
    EXPECT_NE(info.find("\r\nloading:0\r\n"), std::string::npos) << info;
    EXPECT_NE(info.find("# Keyspace\r\n\r\n# Registry\r\nbuckets:1\r\nrun_dir:" + daemon.run_dir() + "\r\n"), std::string::npos) << info;
    EXPECT_EQ(client.call({ "HELLO", "3" }).field("proto")->integer, 3);
    const auto bucket = client.call({ "LOOKUP", "shopping" });
    EXPECT_EQ(bucket.type, Value::Type::map);
    EXPECT_EQ(bucket.field("name")->text, "shopping");
    const auto list = client.call({ "LIST" });
    ASSERT_EQ(list.elements.size(), 1u);
    EXPECT_EQ(list.elements[0].type, Value::Type::map);
    EXPECT_EQ(client.call({ "INFO", "server" }).type, Value::Type::verbatim);
}

// --- real clients (python3-redis, node-redis, ioredis, hiredis: clients_integration_test) ---

// Bytes Redis reads its own way, sent raw (the client then shuts its side):
// count headers it reads with string2ll (no leading zeros, no "-0"), and
// inline lines it splits with sdssplitargs (blanks are isspace(), an argument
// ends only at a space, tab, CR or LF, quotes may open inside one). Every
// byte the server sends until it closes must be redis-server's.
TEST_F(ConnectionTest, CountHeadersAndInlineLinesAreReadAsRedis70ReadsThem)
{
    const std::vector<std::string> inputs = {
        "*1\r\n$-0\r\n\r\nPING\r\n", "*-0\r\nPING\r\n", "*01\r\n$4\r\nPING\r\n", "*1\r\n$04\r\nPING\r\n",
        "*00\r\nPING\r\n", "*-01\r\nPING\r\n", "*0\r\nPING\r\n", "*-1\r\nPING\r\n", "*-10000000000000\r\nPING\r\n",
        "*1\r\n$00\r\n\r\nPING\r\n", "*1\r\n$0\r\n\r\nPING\r\n",
        "ECHO \x0b a\r\n", "ECHO\x0c" "a\r\n", "ECHO \t a \r\n", "ECHO a\x0b\r\n", "ECHO \x0b\r\n", "  \x0b\x0c \r\nPING\r\n",
        "ECHO a\"b c\"\r\n", "ECHO a\"b c\"d\r\n", "ECHO a'b c' x\r\n", "ECHO \"a\"\x0b\"b\"\r\n", "ECHO \"a\"\x0c" "b\r\n",
        "ECHO \"\\x41\\x4\"\r\n", "ECHO \"ab\\\"\r\n", "ECHO 'a\\'b'\r\n", "ECHO \"\"\r\n", "ECHO \"a\\\r\n",
    };
    for (const std::string& socket : { bucket_socket_, kv::registry_socket_path(daemon_.run_dir()) }) {
        for (const std::string& input : inputs)
            EXPECT_EQ(exchange_raw(socket, input), exchange_raw(redis_->socket(), input)) << socket << ": " << kv::printable(input);
    }
}

TEST_F(ConnectionTest, RedisCliStartsItsInteractiveModeWithTheSocketsCommandDocs)
{
    KV_REQUIRE(!find_program("redis-cli").empty(), "redis-cli on PATH (apt-get install redis-tools)");
    // With no command on its line redis-cli starts its prompt, which first
    // asks COMMAND DOCS; `help CREATE` then shows what the registry said.
    const std::string registry_socket = daemon_.run_dir() + "/registry.sock";
    const auto result = run_program({ "/bin/sh", "-c", "printf 'help create\\nPING\\n' | \"$0\" -s \"$1\"",
        find_program("redis-cli"), registry_socket });
    EXPECT_EQ(result.exit_code, 0) << result.err;
    EXPECT_NE(result.out.find("Start a bucket of this name"), std::string::npos) << result.out << result.err;
    EXPECT_NE(result.out.find("PONG"), std::string::npos) << result.out;
    EXPECT_EQ(result.out.find("ERR"), std::string::npos) << result.out;
    EXPECT_EQ(result.err, "");
}

} // namespace
