// The bucket against redis-server itself: the same random sequences of
// string and keyspace commands (good ones and malformed ones, alone and in
// MULTI/EXEC and MULTI/DISCARD blocks) sent to a real
// bucket and to Debian's redis-server 7.0, every reply compared byte for
// byte. RANDOMKEY and TIME are compared by shape; unknown commands by
// Redis's prefix (kv leaves out "with args beginning with"), and the list,
// hash, set and sorted-set commands, which kv does not know, answer that. Seeded: the seed
// is printed with any failure, and KV_DIFF_SEED=<seed> replays it.
#include <gtest/gtest.h>

#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>

#include "daemon_fixture.h"
#include "reference_redis.h"
#include "log.h"
#include "require.h"
#include "command_table.h"
#include "resp.h"

extern char** environ;

using namespace kv::test;

namespace {

// Random requests over a few keys, with values that probe the parsers.
class RequestMaker {
public:
    explicit RequestMaker(std::uint64_t seed) : random_(seed) {}

    std::vector<std::string> next()
    {
        switch (pick(46)) {
        case 0: return { "SET", key(), value() };
        case 1: return set_with_options();
        case 2: return { "SETNX", key(), value() };
        case 3: return { "GETSET", key(), value() };
        case 4: return { "GETDEL", key() };
        case 5: return { "GET", key() };
        case 6: return with_keys({ "MGET" }, 1 + pick(4));
        case 7: return with_pairs({ "MSET" });
        case 8: return with_pairs({ "MSETNX" });
        case 9: return { "INCR", key() };
        case 10: return { "DECR", key() };
        case 11: return { "INCRBY", key(), number() };
        case 12: return { "DECRBY", key(), number() };
        case 13: return { "INCRBYFLOAT", key(), number() };
        case 14: return { "APPEND", key(), value() };
        case 15: return { "STRLEN", key() };
        case 16: return { "GETRANGE", key(), index(), index() };
        case 17: return { "SETRANGE", key(), offset(), value() };
        case 18: return with_keys({ "DEL" }, 1 + pick(3));
        case 19: return with_keys({ "UNLINK" }, 1 + pick(3));
        case 20: return with_keys({ "EXISTS" }, 1 + pick(3));
        case 21: return { "TYPE", key() };
        case 22: return { "RENAME", key(), key() };
        case 23: return { "RENAMENX", key(), key() };
        case 24: return { "DBSIZE" };
        case 25: {
            static const char* options[] = { "SYNC", "ASYNC", "sync", "now", "" };
            if (pick(3) == 0)
                return { "FLUSHDB" };
            if (pick(4) == 0)
                return { "FLUSHDB", "SYNC", "ASYNC" };
            return { pick(2) ? "FLUSHDB" : "FLUSHALL", options[pick(5)] };
        }
        case 26: return { "RANDOMKEY" };
        case 27: return { "TIME" };
        case 28: return wrong_arity();
        case 29: {
            static const char* unknown[] = { "LPUSH", "HSET", "SADD", "ZADD", "nosuchcommand" };
            return { unknown[pick(5)], key(), value() };
        }
        case 30: return { "INCRBYFLOAT", key(), pick(2) ? "1e308" : "-1e308" };
        case 31: return scan();
        case 32:
        case 33: return expire();
        case 34:
        case 35: {
            static const char* verbs[] = { "TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME" };
            return { verbs[pick(4)], key() };
        }
        case 36: return getex();
        case 37: return pick(2) ? std::vector<std::string> { "SETEX", key(), seconds(), value() }
                                : std::vector<std::string> { "PSETEX", key(), milliseconds(), value() };
        case 38: return { "PERSIST", key() };
        case 39: return with_keys({ "TOUCH" }, 1 + pick(3));
        default: return { pick(2) ? "SET" : "INCRBY", key(), number() };
        }
    }

    std::size_t pick(std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(random_); }

    std::string key()
    {
        static const std::string keys[] = { "a", "b", "c", "counter", "", std::string("\0\xff", 2) };
        return keys[pick(6)];
    }

    std::string number()
    {
        static const char* numbers[] = { "0", "1", "-1", "17", "-250", "9223372036854775807", "-9223372036854775808",
            "9223372036854775808", "99999999999999999999", "007", "+5", " 5", "5 ", "1.5", "-0.25", "3e2", "1e400",
            "inf", "-inf", "nan", "0x10", "", "abc", "1.0", "-0", "0.1", "1e-400", "12345678901234567890123" };
        return numbers[pick(std::size(numbers))];
    }

    std::string value()
    {
        switch (pick(5)) {
        case 0: return number();
        case 1: return "";
        case 2: {
            std::string bytes(pick(80), '\0');
            for (auto& byte : bytes)
                byte = static_cast<char>(pick(256));
            return bytes;
        }
        case 3: return std::string(pick(3000), 'x');
        default: return "value" + std::to_string(pick(100));
        }
    }

    std::string index()
    {
        static const char* indexes[] = { "0", "1", "-1", "-2", "3", "100", "-100", "9223372036854775807",
            "-9223372036854775808", "x", "1.5" };
        return indexes[pick(std::size(indexes))];
    }

    // Expiry arguments. A relative time is drawn from a wide range, so two
    // never tie: EXPIRE ... GT compares the new time with the old one, and
    // the two servers run a command a few milliseconds apart. Every time
    // that stays is at least 100 s away (no key expires while compared);
    // times in the past delete at once, in both.
    std::string seconds()
    {
        static const char* refused[] = { "0", "-5", "abc", "", "1.5", "9223372036854775807", "9223372036854775",
            "-9223372036854775808" };
        return pick(4) ? std::to_string(100 + pick(100000)) : refused[pick(std::size(refused))];
    }
    std::string milliseconds()
    {
        // Never a whole number of seconds: no tie with a time set in seconds either.
        static const char* refused[] = { "0", "-5", "x", "9223372036854775807" };
        return pick(4) ? std::to_string((100 + pick(100000)) * 1000 + 1 + pick(998)) : refused[pick(std::size(refused))];
    }
    // Absolute times: in the future, refused, or (where the command then
    // deletes the key at once, as EXPIREAT and GETEX do) in the past.
    std::string unix_seconds(bool past_allowed)
    {
        const long long now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
        if (past_allowed && pick(4) == 0)
            return pick(2) ? "1" : std::to_string(now - 100);
        static const char* refused[] = { "0", "-5", "abc", "", "1.5", "9223372036854775807", "-9223372036854775808" };
        return pick(5) ? std::to_string(now + 100 + static_cast<long long>(pick(100000))) : refused[pick(std::size(refused))];
    }
    std::string unix_milliseconds(bool past_allowed)
    {
        const long long now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
        if (past_allowed && pick(4) == 0)
            return pick(2) ? "1" : std::to_string(now - 100000);
        // The largest time there is, too: EXPIRETIME must round it without overflowing.
        static const char* refused[] = { "0", "-5", "x", "9223372036854775807" };
        return pick(5) ? std::to_string(now + 100000 + static_cast<long long>(pick(100000000))) : refused[pick(std::size(refused))];
    }

    std::string offset()
    {
        // 536870912 and up: past Redis's 512 MB limit, an error from both. Just
        // under it Redis would build the string, and kv answer FULL (its bucket is smaller).
        static const char* offsets[] = { "0", "1", "5", "40", "100", "-1", "abc", "536870912", "9223372036854775807" };
        const std::string chosen = offsets[pick(std::size(offsets))];
        return chosen;
    }

private:
    std::vector<std::string> with_keys(std::vector<std::string> request, std::size_t count)
    {
        for (std::size_t i = 0; i < count; ++i)
            request.push_back(key());
        return request;
    }
    std::vector<std::string> with_pairs(std::vector<std::string> request)
    {
        const std::size_t pairs = 1 + pick(3);
        for (std::size_t i = 0; i < pairs; ++i) {
            request.push_back(key());
            request.push_back(value());
        }
        if (pick(8) == 0)
            request.push_back(key()); // odd: Redis's arity error
        return request;
    }
    std::vector<std::string> set_with_options()
    {
        static const char* options[] = { "NX", "XX", "GET", "KEEPTTL", "nx", "get", "EX", "PX", "EXAT", "PXAT", "BAD" };
        std::vector<std::string> request = { "SET", key(), value() };
        const std::size_t count = 1 + pick(3);
        for (std::size_t i = 0; i < count; ++i) {
            std::string option = options[pick(std::size(options))];
            request.push_back(option);
            // SET's absolute times are never in the past: Redis 7.0 stores
            // such a key, which is then gone whenever its server next looks
            // (at once in kv, on its next cycle in Redis): DBSIZE would differ.
            if (pick(6)) {
                if (option == "EX")
                    request.push_back(seconds());
                else if (option == "PX")
                    request.push_back(milliseconds());
                else if (option == "EXAT")
                    request.push_back(unix_seconds(false));
                else if (option == "PXAT")
                    request.push_back(unix_milliseconds(false));
            }
        }
        return request;
    }
    // Whole scans in one call (COUNT past the keys there are), so the
    // replies are comparable; and malformed ones.
    std::vector<std::string> scan()
    {
        static const char* cursors[] = { "0", "0", "0", "", "abc", " 0", "-1x", "99999999999999999999999" };
        std::vector<std::string> request = { "SCAN", cursors[pick(std::size(cursors))] };
        static const char* options[] = { "COUNT", "MATCH", "TYPE", "count", "BAD" };
        static const char* values[] = { "1000", "0", "-3", "x", "*", "a*", "[ab]", "?", "string", "list", "STRING" };
        const std::size_t count = pick(4);
        for (std::size_t i = 0; i < count; ++i) {
            std::string option = options[pick(std::size(options))];
            request.push_back(option);
            if (pick(6))
                request.push_back(kv::same_word(option, "COUNT") && pick(2) ? "1000" : values[pick(std::size(values))]);
        }
        if (std::find(request.begin(), request.end(), "COUNT") == request.end() && pick(4))
            request.insert(request.end(), { "COUNT", "1000" });
        return request;
    }

    // EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT key time [NX | XX | GT | LT ...]
    std::vector<std::string> expire()
    {
        std::vector<std::string> request;
        switch (pick(4)) {
        case 0: request = { "EXPIRE", key(), pick(8) ? seconds() : "-5" }; break;
        case 1: request = { "PEXPIRE", key(), pick(8) ? milliseconds() : "-1" }; break;
        case 2: request = { "EXPIREAT", key(), unix_seconds(true) }; break;
        default: request = { "PEXPIREAT", key(), unix_milliseconds(true) }; break;
        }
        static const char* flags[] = { "NX", "XX", "GT", "LT", "gt", "BAD" };
        for (std::size_t i = pick(3) == 0 ? 1 + pick(2) : 0; i > 0; --i)
            request.push_back(flags[pick(std::size(flags))]);
        return request;
    }

    // GETEX key [EX s | PX ms | EXAT ts | PXAT ms-ts | PERSIST], and malformed ones.
    std::vector<std::string> getex()
    {
        std::vector<std::string> request = { "GETEX", key() };
        switch (pick(8)) {
        case 0: break;
        case 1: request.insert(request.end(), { "EX", seconds() }); break;
        case 2: request.insert(request.end(), { "PX", milliseconds() }); break;
        case 3: request.insert(request.end(), { "EXAT", unix_seconds(true) }); break;
        case 4: request.insert(request.end(), { "pxat", unix_milliseconds(true) }); break;
        case 5: request.push_back("PERSIST"); break;
        case 6: request.insert(request.end(), { "PERSIST", "EX", "100" }); break;
        default: request.push_back(pick(2) ? "KEEPTTL" : "EX"); break;
        }
        return request;
    }

    std::vector<std::string> wrong_arity()
    {
        static const std::vector<std::vector<std::string>> requests = { { "GET" }, { "GET", "a", "b" }, { "SET", "a" },
            { "SETNX", "a" }, { "GETSET", "a" }, { "GETDEL" }, { "MGET" }, { "MSET", "a" }, { "MSETNX" }, { "INCR" },
            { "INCR", "a", "b" }, { "DECRBY", "a" }, { "INCRBYFLOAT", "a" }, { "APPEND", "a" }, { "STRLEN" },
            { "GETRANGE", "a", "0" }, { "SETRANGE", "a", "0" }, { "UNLINK" }, { "TYPE" }, { "RENAME", "a" },
            { "RENAMENX", "a", "b", "c" }, { "RANDOMKEY", "a" }, { "TIME", "a" }, { "DBSIZE", "a" }, { "DEL" },
            { "EXISTS" }, { "SCAN" }, { "EXPIRE", "a" }, { "TTL" }, { "PERSIST", "a", "b" }, { "SETEX", "a", "1" },
            { "GETEX" }, { "TOUCH" }, { "PEXPIRETIME" } };
        return requests[pick(requests.size())];
    }

    std::mt19937_64 random_;
};

std::string shown(const std::vector<std::string>& request)
{
    std::string text;
    for (const auto& argument : request)
        text += "'" + kv::printable(argument.substr(0, 40)) + "' ";
    return text;
}

bool is_unknown_to_kv(std::string_view verb)
{
    return verb == "LPUSH" || verb == "HSET" || verb == "SADD" || verb == "ZADD" || verb == "nosuchcommand";
}

// TTL, PTTL, EXPIRETIME and PEXPIRETIME answer with the time, which the two
// servers read a few milliseconds apart.
bool answers_a_time(std::string_view verb)
{
    return verb == "TTL" || verb == "PTTL" || verb == "EXPIRETIME" || verb == "PEXPIRETIME";
}

// The same integer reply, or one within `tolerance` if both are times (not -1 or -2).
::testing::AssertionResult same_time(const std::string& actual, const std::string& expected, long long tolerance)
{
    if (actual == expected)
        return ::testing::AssertionSuccess();
    if (actual.size() < 4 || expected.size() < 4 || actual[0] != ':' || expected[0] != ':')
        return ::testing::AssertionFailure() << "kv: " << actual << " redis: " << expected;
    const long long ours = std::stoll(actual.substr(1)), theirs = std::stoll(expected.substr(1));
    if (ours < 0 || theirs < 0 || std::llabs(ours - theirs) > tolerance)
        return ::testing::AssertionFailure() << "kv: " << actual << " redis: " << expected;
    return ::testing::AssertionSuccess();
}

bool is_digits(std::string_view text)
{
    return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

} // namespace

TEST(RedisDifferential, RandomStringAndKeyspaceCommandsAnswerAsRedisServerByteForByte)
{
    KV_REQUIRE(!find_program("redis-server").empty(), "redis-server on PATH (./kv installs it)");
    ReferenceRedis redis;
    RegistryDaemon daemon;
    const std::string bucket_socket = daemon.create("diff").field("socket")->text;
    const auto start = std::chrono::steady_clock::now();
    RawConnection reference(redis.socket());
    RawConnection bucket(bucket_socket);

    std::uint64_t seed = std::random_device {}();
    if (const char* fixed = std::getenv("KV_DIFF_SEED"))
        seed = std::stoull(fixed);
    RequestMaker maker(seed);
    long commands = 0;
    int sequences = 0;
    int blocks = 0;
    // Bounded in time for CI: sequences of 200 commands for about three seconds.
    while (std::chrono::steady_clock::now() - start < 3s || sequences < 5) {
        ++sequences;
        ASSERT_EQ(reference.call({ "FLUSHALL" }), "+OK\r\n");
        ASSERT_EQ(bucket.call({ "FLUSHALL" }), "+OK\r\n");
        for (int step = 0; step < 200; ++step, ++commands) {
            if (maker.pick(12) == 0) {
                // A MULTI block of the requests above (a malformed one among
                // them now and then: EXECABORT), ended by EXEC or DISCARD.
                // Not RANDOMKEY, TIME or SCAN, whose replies are compared by
                // shape, nor what only Redis knows.
                std::vector<std::vector<std::string>> block = { { "MULTI" } };
                const std::size_t size = 1 + maker.pick(6);
                while (block.size() <= size) {
                    auto request = maker.next();
                    const bool redis_only_knows = is_unknown_to_kv(request[0]) && request[0] != "nosuchcommand";
                    if (!redis_only_knows && request[0] != "RANDOMKEY" && request[0] != "TIME" && request[0] != "SCAN"
                        && !answers_a_time(request[0]))
                        block.push_back(std::move(request));
                }
                block.push_back({ maker.pick(6) == 0 ? "DISCARD" : "EXEC" });
                for (const auto& request : block) {
                    const std::string expected = reference.call(request);
                    const std::string actual = bucket.call(request);
                    const std::string where = "seed " + std::to_string(seed) + " (KV_DIFF_SEED), sequence "
                        + std::to_string(sequences) + ", step " + std::to_string(step) + ", in a MULTI block: " + shown(request);
                    if (request[0] == "nosuchcommand") {
                        const std::string prefix = "-ERR unknown command 'nosuchcommand'";
                        ASSERT_EQ(actual.rfind(prefix, 0), 0u) << where << "\nkv: " << actual;
                        ASSERT_EQ(expected.rfind(prefix, 0), 0u) << where << "\nredis: " << expected;
                    } else {
                        ASSERT_EQ(actual, expected) << where;
                    }
                }
                ++blocks;
                continue;
            }
            const auto request = maker.next();
            // Redis would store a list, a hash, a set: those go to the bucket only.
            const bool redis_only_knows = is_unknown_to_kv(request[0]) && request[0] != "nosuchcommand";
            const std::string expected = redis_only_knows ? std::string() : reference.call(request);
            const std::string actual = bucket.call(request);
            const std::string where = "seed " + std::to_string(seed) + " (KV_DIFF_SEED), sequence " + std::to_string(sequences)
                + ", step " + std::to_string(step) + ": " + shown(request);
            if (request[0] == "RANDOMKEY" && request.size() == 1) {
                ASSERT_EQ(expected == "$-1\r\n", actual == "$-1\r\n") << where << "\nredis: " << expected << "kv: " << actual;
                if (actual != "$-1\r\n") {
                    ASSERT_EQ(actual[0], '$') << where;
                    kv::resp::Value key;
                    std::size_t consumed = 0;
                    ASSERT_EQ(kv::resp::parse_value(actual, consumed, key), kv::resp::ParseResult::complete);
                    ASSERT_EQ(bucket.call({ "EXISTS", key.text }), ":1\r\n") << where;
                }
            } else if (request[0] == "TIME" && request.size() == 1) {
                kv::resp::Value ours, theirs;
                std::size_t consumed = 0;
                ASSERT_EQ(kv::resp::parse_value(actual, consumed, ours), kv::resp::ParseResult::complete);
                ASSERT_EQ(kv::resp::parse_value(expected, consumed, theirs), kv::resp::ParseResult::complete);
                ASSERT_EQ(ours.elements.size(), 2u) << where;
                ASSERT_TRUE(is_digits(ours.elements[0].text) && is_digits(ours.elements[1].text)) << where << actual;
                EXPECT_LE(std::llabs(std::stoll(ours.elements[0].text) - std::stoll(theirs.elements[0].text)), 2) << where;
                EXPECT_LT(std::stoll(ours.elements[1].text), 1'000'000) << where;
            } else if (request[0] == "SCAN" && expected[0] == '*') {
                // Cursors are the servers' own: a whole scan ends at "0", with the same keys.
                kv::resp::Value ours, theirs;
                std::size_t consumed = 0;
                ASSERT_EQ(kv::resp::parse_value(actual, consumed, ours), kv::resp::ParseResult::complete) << where << actual;
                ASSERT_EQ(kv::resp::parse_value(expected, consumed, theirs), kv::resp::ParseResult::complete);
                ASSERT_EQ(ours.elements.size(), 2u) << where << actual;
                auto sorted_keys = [](const kv::resp::Value& reply) {
                    std::vector<std::string> keys;
                    for (const auto& key : reply.elements[1].elements)
                        keys.push_back(key.text);
                    std::sort(keys.begin(), keys.end());
                    return keys;
                };
                if (theirs.elements[0].text == "0") {
                    EXPECT_EQ(ours.elements[0].text, "0") << where;
                    EXPECT_EQ(sorted_keys(ours), sorted_keys(theirs)) << where;
                }
            } else if (answers_a_time(request[0])) {
                // Seconds are rounded (TTL) or cut (EXPIRETIME): one apart at most.
                const bool in_milliseconds = request[0][0] == 'P';
                ASSERT_TRUE(same_time(actual, expected, in_milliseconds ? 2000 : 2)) << where;
            } else if (is_unknown_to_kv(request[0])) {
                // Redis knows lists, hashes, sets and sorted sets; kv does not keep them.
                const std::string prefix = "-ERR unknown command '" + request[0] + "'";
                ASSERT_EQ(actual.rfind(prefix, 0), 0u) << where << "\nkv: " << actual;
                if (request[0] == "nosuchcommand") {
                    ASSERT_EQ(actual, expected) << where; // a command neither knows: the same words
                }
            } else {
                ASSERT_EQ(actual, expected) << where;
            }
            if (std::getenv("KV_DIFF_TRACE")) {
                for (const std::string& key : { std::string("a"), std::string("b"), std::string("c"), std::string("counter"),
                         std::string(), std::string("\0\xff", 2) }) {
                    ASSERT_EQ(bucket.call({ "GET", key }), reference.call({ "GET", key })) << where << " key " << key;
                }
            }
        }
        // And the whole content, key by key, at the end of each sequence.
        for (const std::string& key : { std::string("a"), std::string("b"), std::string("c"), std::string("counter"),
                 std::string(), std::string("\0\xff", 2) })
        {
            ASSERT_EQ(bucket.call({ "GET", key }), reference.call({ "GET", key })) << "seed " << seed << " after sequence " << sequences;
            ASSERT_TRUE(same_time(bucket.call({ "PTTL", key }), reference.call({ "PTTL", key }), 2000))
                << "seed " << seed << " after sequence " << sequences;
        }
        ASSERT_EQ(bucket.call({ "DBSIZE" }), reference.call({ "DBSIZE" })) << "seed " << seed;
    }
    std::cout << "compared " << commands << " commands (" << blocks << " of them MULTI blocks) in " << sequences
              << " sequences (seed " << seed << ")\n";
}
