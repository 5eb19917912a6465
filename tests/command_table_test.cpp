// command_table.h: finding a request's verb in a command table through its
// index (VerbIndex), as a walk of the table with same_word would find it; and
// parse_long_long, the integer parse every RESP daemon's arguments go through.
#include <gtest/gtest.h>

#include <cctype>
#include <charconv>
#include <string>
#include <vector>

#include "command_table.h"

namespace {

struct Word {
    std::string_view name;
    int arity;
    int max_arity = 0;
};

// More names than the index has slots for without collisions (64 slots for
// 33 names), of the lengths real verbs have; "X-Y" has a byte that is not a
// letter, and "GET" comes twice (the first is the one found).
const Word words[] = {
    { "GET", 2 }, { "SET", -3 }, { "INCR", 2 }, { "DECR", 2 }, { "MGET", -2 }, { "MSET", -3 }, { "DEL", -2 },
    { "EXISTS", -2 }, { "EXPIRE", -3 }, { "PEXPIRE", -3 }, { "TTL", 2 }, { "PTTL", 2 }, { "PERSIST", 2 },
    { "KEYS", 2 }, { "SCAN", -2 }, { "DBSIZE", 1 }, { "FLUSHDB", -1 }, { "TYPE", 2 }, { "RENAME", 3 },
    { "APPEND", 3 }, { "STRLEN", 2 }, { "GETDEL", 2 }, { "GETSET", 3 }, { "SETNX", 3 }, { "INCRBY", 3 },
    { "DECRBY", 3 }, { "PING", -1, 2 }, { "ECHO", 2 }, { "TOUCH", -2 }, { "X-Y", 1 }, { "MEMORY", -2 },
    { "EXPIRETIME", 2 }, { "GET", 3 },
};

std::string lower(std::string_view word)
{
    std::string out(word);
    for (char& c : out)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

TEST(VerbIndex, FindsEveryNameInAnyCase)
{
    for (const Word& word : words) {
        if (word.name == "GET" && word.arity == 3)
            continue; // the second GET: never found (below)
        std::string mixed = lower(word.name);
        mixed[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(mixed[0])));
        for (const std::string& spelling : { std::string(word.name), lower(word.name), mixed })
            EXPECT_EQ(kv::VerbIndex<words>::find(spelling), &word) << spelling;
    }
}

TEST(VerbIndex, AWordThatAppearsTwiceFindsTheFirst)
{
    EXPECT_EQ(kv::VerbIndex<words>::find("get"), &words[0]);
}

TEST(VerbIndex, FindsNothingForWordsNotInTheTable)
{
    for (std::string_view word : { "", "GE", "GETT", "GEX", "INCRBYFLOAT", "LPUSH", "PINGPING", " GET", "GET\r\n", "EXPIRETIM" })
        EXPECT_EQ(kv::VerbIndex<words>::find(word), nullptr) << word;
    // Bytes that differ in 0x20 but are not letters fold to the same hash and
    // are told apart by the compare: '-' is 0x2d, '\r' is 0x0d.
    EXPECT_EQ(kv::VerbIndex<words>::find("X\rY"), nullptr);
    EXPECT_EQ(kv::VerbIndex<words>::find("x-y"), &words[29]);
}

TEST(FindCommand, AnswersAnUnknownVerbOrAWrongArityAndForgetsIt)
{
    std::string out;
    EXPECT_EQ(kv::find_command<words>({ "ping", "a" }, out), &words[26]);
    EXPECT_EQ(out, "");
    EXPECT_EQ(kv::find_command<words>({ "PING", "a", "b" }, out), nullptr);
    EXPECT_EQ(out, "-ERR wrong number of arguments for 'ping' command\r\n");
    out.clear();
    EXPECT_EQ(kv::find_command<words>({ "LPUSH", "list", "a" }, out), nullptr);
    EXPECT_EQ(out, "-ERR unknown command 'LPUSH', with args beginning with: 'list' 'a' \r\n");
    out.clear();
    EXPECT_EQ(kv::find_command<words>({}, out), nullptr);
    EXPECT_EQ(out.rfind("-ERR unknown command ''", 0), 0u) << out;
}

} // namespace

namespace {

// What parse_long_long accepted before its loop for short numbers: Redis's
// string2ll rules (no sign but '-', no leading zeros, no "-0", at most 20
// bytes), then from_chars over the whole text.
bool reference_parse(std::string_view text, long long& value)
{
    if (text.empty() || text.size() > 20 || (text.size() > 1 && text[0] == '0')
        || (text.size() > 1 && text[0] == '-' && text[1] == '0') || text == "-")
        return false;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    return error == std::errc() && end == text.data() + text.size();
}

TEST(ParseLongLong, AnswersAsRedisStringToLongLongForEveryShape)
{
    std::vector<std::string> texts = { "0", "7", "-7", "00", "007", "-0", "-01", "+1", " 1", "1 ", "1a", "a1", "", "-", "1.5",
        "123456789012345678", "999999999999999999", "1234567890123456789", "9223372036854775807", "9223372036854775808",
        "-9223372036854775808", "-9223372036854775809", "99999999999999999999", "123456789012345678901", "12345678901234567\n" };
    for (const std::string& text : texts) {
        long long ours = 42, theirs = 42;
        const bool accepted = kv::parse_long_long(text, ours);
        EXPECT_EQ(accepted, reference_parse(text, theirs)) << "[" << text << "]";
        if (accepted) {
            EXPECT_EQ(ours, theirs) << "[" << text << "]";
        }
    }
}

} // namespace
