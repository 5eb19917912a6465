// Real Redis clients, with their default settings, against a bucket, each
// also run against a real redis-server first, so what the test expects is
// what Redis itself answers: hiredis (Debian's libhiredis-dev) from here,
// python3-redis (Debian's) and node-redis and ioredis (from npm, pinned in
// tests/clients/package-lock.json; `./kv test` installs them) as scripts.
#include <hiredis/hiredis.h>
#include <sys/stat.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "daemon_fixture.h"
#include "log.h"
#include "reference_redis.h"

using namespace kv::test;

namespace {

class RealClients : public ::testing::Test {
protected:
    void SetUp() override
    {
        KV_REQUIRE(!find_program("redis-server").empty(), "redis-server on PATH (Debian's redis-server)");
        redis_.emplace();
        bucket_socket_ = daemon_.create("clients").field("socket")->text;
    }

    // Runs a client script against `socket`; its exit code and what it said.
    ProgramResult run_script(std::vector<std::string> command, const std::string& socket,
        std::vector<std::string> environment = {})
    {
        command.push_back(socket);
        return run_program(command, environment);
    }

    RegistryDaemon daemon_;
    std::optional<ReferenceRedis> redis_;
    std::string bucket_socket_;
};

// A hiredis reply as one line of text, its type and content spelled out, so
// two replies compare byte for byte and a difference reads plainly.
std::string spelled(const redisReply* reply)
{
    if (!reply)
        return "(no reply: the connection failed)";
    switch (reply->type) {
    case REDIS_REPLY_STRING:
        return "bulk(" + std::string(reply->str, reply->len) + ")";
    case REDIS_REPLY_STATUS:
        return "simple(" + std::string(reply->str, reply->len) + ")";
    case REDIS_REPLY_ERROR:
        return "error(" + std::string(reply->str, reply->len) + ")";
    case REDIS_REPLY_INTEGER:
        return "integer(" + std::to_string(reply->integer) + ")";
    case REDIS_REPLY_NIL:
        return "nil";
    case REDIS_REPLY_ARRAY: {
        std::string text = "array[";
        for (std::size_t i = 0; i < reply->elements; ++i)
            text += (i ? ", " : "") + spelled(reply->element[i]);
        return text + "]";
    }
    default:
        return "type " + std::to_string(reply->type);
    }
}

struct HiredisConnection {
    explicit HiredisConnection(const std::string& socket) : context(redisConnectUnix(socket.c_str()), redisFree)
    {
        if (!context || context->err)
            throw std::runtime_error("hiredis could not connect to " + socket + ": " + (context ? context->errstr : "out of memory"));
    }

    std::string call(const std::vector<std::string>& command)
    {
        std::vector<const char*> arguments;
        std::vector<std::size_t> lengths;
        for (const auto& argument : command) {
            arguments.push_back(argument.data());
            lengths.push_back(argument.size());
        }
        auto* reply = static_cast<redisReply*>(
            redisCommandArgv(context.get(), static_cast<int>(command.size()), arguments.data(), lengths.data()));
        std::string text = spelled(reply);
        if (reply)
            freeReplyObject(reply);
        return text;
    }

    std::unique_ptr<redisContext, void (*)(redisContext*)> context;
};

} // namespace

TEST_F(RealClients, HiredisGetsFromABucketWhatRedisAnswers)
{
    const std::vector<std::vector<std::string>> commands = {
        { "PING" },
        { "PING", "hello" },
        { "ECHO", std::string("bin\0ary\r\n", 9) },
        { "SET", "greeting", "hello" },
        { "GET", "greeting" },
        { "GET", "missing" },
        { "SET", "bytes", std::string("\0\r\n\xff", 4) },
        { "GET", "bytes" },
        { "EXISTS", "greeting", "missing", "bytes" },
        { "INCR", "counter" },
        { "INCRBY", "counter", "41" },
        { "INCR", "greeting" },
        { "MSET", "a", "1", "b", "2" },
        { "MGET", "a", "missing", "b" },
        { "APPEND", "a", "23" },
        { "STRLEN", "a" },
        { "DEL", "a", "b", "missing" },
        { "DBSIZE" },
        { "SELECT", "0" },
        { "SELECT", "1" },
        { "GET" },
        { "NOSUCHCOMMAND", "x" },
    };
    HiredisConnection redis(redis_->socket());
    HiredisConnection bucket(bucket_socket_);
    for (const auto& command : commands) {
        std::string shown;
        for (const auto& argument : command)
            shown += kv::printable(argument) + " ";
        EXPECT_EQ(bucket.call(command), redis.call(command)) << "for " << shown;
    }
}

TEST_F(RealClients, PythonRedisWithItsDefaultConnection)
{
    const std::string python = "/usr/bin/python3"; // Debian's: the one that sees python3-redis
    KV_REQUIRE(run_program({ python, "-c", "import redis" }).exit_code == 0, "Debian's python3-redis (/usr/bin/python3)");
    const std::string script = std::string(KV_CLIENTS_DIR) + "/python_client.py";
    auto reference = run_script({ python, script }, redis_->socket());
    ASSERT_EQ(reference.exit_code, 0) << "the script fails against redis-server itself:\n" << reference.err;
    auto result = run_script({ python, script }, bucket_socket_);
    EXPECT_EQ(result.exit_code, 0) << result.err;
}

TEST_F(RealClients, NodeRedisAndIoredisWithTheirDefaultOptions)
{
    const std::string node = find_program("node");
    KV_REQUIRE(!node.empty(), "node on PATH (Node.js 20 or later)");
    struct stat info;
    KV_REQUIRE(::stat(KV_NODE_MODULES, &info) == 0, "node-redis and ioredis in " KV_NODE_MODULES " (./kv test installs them with npm)");
    const std::string script = std::string(KV_CLIENTS_DIR) + "/node_clients.js";
    const std::vector<std::string> environment = { std::string("NODE_PATH=") + KV_NODE_MODULES };
    auto reference = run_script({ node, script }, redis_->socket(), environment);
    ASSERT_EQ(reference.exit_code, 0) << "the script fails against redis-server itself:\n" << reference.err;
    auto result = run_script({ node, script }, bucket_socket_, environment);
    EXPECT_EQ(result.exit_code, 0) << result.err;
}
