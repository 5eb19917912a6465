#include "glob.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <string_view>

namespace {

using kv::GlobBudget;
using kv::GlobPattern;
using kv::GlobResult;

// The rules read straight off, trying every split at every star: exponential,
// for tiny inputs only, and written apart from glob.cpp so that the two
// agreeing means something.
bool reference_match(std::string_view pattern, std::string_view text)
{
    if (pattern.empty())
        return text.empty();
    if (pattern[0] == '*')
        return reference_match(pattern.substr(1), text) || (!text.empty() && reference_match(pattern, text.substr(1)));
    if (text.empty())
        return false;
    const char c = text[0];
    std::size_t used = 1; // pattern bytes of this token
    bool matched = false;
    if (pattern[0] == '?') {
        matched = true;
    } else if (pattern[0] == '[') {
        std::size_t q = 1;
        const bool negated = q < pattern.size() && pattern[q] == '^';
        if (negated)
            ++q;
        bool in_set = false;
        for (;;) {
            if (q == pattern.size())
                return false; // no `]`: nothing gets past this token
            if (pattern[q] == ']')
                break;
            if (pattern[q] == '\\' && q + 1 < pattern.size()) {
                in_set |= pattern[q + 1] == c;
                q += 2;
            } else if (q + 2 < pattern.size() && pattern[q + 1] == '-' && pattern[q + 2] != ']') {
                char low = std::min(pattern[q], pattern[q + 2]), high = std::max(pattern[q], pattern[q + 2]);
                in_set |= c >= low && c <= high;
                q += 3;
            } else {
                in_set |= pattern[q] == c;
                ++q;
            }
        }
        matched = in_set != negated;
        used = q + 1;
    } else if (pattern[0] == '\\' && pattern.size() > 1) {
        matched = pattern[1] == c;
        used = 2;
    } else {
        matched = pattern[0] == c;
    }
    return matched && reference_match(pattern.substr(used), text.substr(1));
}

// Comparisons one match spends, with no limit.
std::uint64_t cost_of(const GlobPattern& pattern, std::string_view text, GlobResult& result)
{
    GlobBudget budget = GlobBudget::unlimited();
    result = pattern.match(text, budget);
    return UINT64_MAX - budget.remaining();
}

std::string repeat(std::string_view piece, std::size_t times)
{
    std::string out;
    for (std::size_t i = 0; i < times; ++i)
        out += piece;
    return out;
}

} // namespace

TEST(GlobMatch, MatchesRedisPatterns)
{
    EXPECT_TRUE(kv::glob_match("*", "anything"));
    EXPECT_TRUE(kv::glob_match("h?llo", "hello"));
    EXPECT_TRUE(kv::glob_match("h[ae]llo", "hallo"));
    EXPECT_FALSE(kv::glob_match("h[^e]llo", "hello"));
    EXPECT_TRUE(kv::glob_match("h[a-c]llo", "hbllo"));
    EXPECT_TRUE(kv::glob_match("user:*:name", "user:42:name"));
    EXPECT_FALSE(kv::glob_match("user:*:name", "user:42:mail"));
    EXPECT_TRUE(kv::glob_match("a\\*", "a*"));
    EXPECT_FALSE(kv::glob_match("a\\*", "ab"));
}

TEST(GlobMatch, EdgeCasesKeepTheirMeaning)
{
    EXPECT_TRUE(kv::glob_match("", ""));
    EXPECT_FALSE(kv::glob_match("", "a"));
    EXPECT_TRUE(kv::glob_match("***", ""));
    EXPECT_TRUE(kv::glob_match("a**b", "axyb"));
    // An unterminated `[` matches nothing, whatever comes before it.
    EXPECT_FALSE(kv::glob_match("[abc", "a"));
    EXPECT_FALSE(kv::glob_match("*[", "x["));
    EXPECT_FALSE(kv::glob_match("a*[^", "a"));
    // `[]` is an empty set, `[^]` any byte; `]` first in a set closes it.
    EXPECT_FALSE(kv::glob_match("[]", "]"));
    EXPECT_TRUE(kv::glob_match("[^]", "x"));
    EXPECT_TRUE(kv::glob_match("[\\]]", "]"));
    EXPECT_TRUE(kv::glob_match("[a-]", "-"));
    EXPECT_TRUE(kv::glob_match("[z-a]", "m")); // ends in either order
    EXPECT_TRUE(kv::glob_match("a\\", "a\\")); // a final backslash is itself
    EXPECT_TRUE(kv::glob_match("\\?", "?"));
    EXPECT_FALSE(kv::glob_match("\\?", "x"));
    EXPECT_TRUE(kv::glob_match(std::string_view("a?b", 3), std::string_view("a\0b", 3)));
    EXPECT_TRUE(kv::glob_match("*ab*ab*", "xxabyyab"));
    EXPECT_FALSE(kv::glob_match("*ab*ab*", "xxaba"));
}

// Many small random patterns and texts over an alphabet of every special
// byte, so that each feature and each odd corner meets each other one.
TEST(GlobMatch, AgreesWithTheReferenceOnRandomInputs)
{
    std::mt19937 random(20240601);
    // Letters and stars more often than the rest, so that a good share match.
    const std::string_view pattern_bytes = "aabb***??[]^-\\";
    const std::string_view text_bytes = "aabbc*?[]^-\\";
    auto random_string = [&](std::string_view alphabet, std::size_t longest) {
        std::string out(std::uniform_int_distribution<std::size_t>(0, longest)(random), ' ');
        for (char& c : out)
            c = alphabet[std::uniform_int_distribution<std::size_t>(0, alphabet.size() - 1)(random)];
        return out;
    };
    int matches = 0;
    for (int i = 0; i < 500000; ++i) {
        const std::string pattern = random_string(pattern_bytes, 9);
        const std::string text = random_string(text_bytes, 8);
        const bool expected = reference_match(pattern, text);
        const GlobPattern compiled(pattern);
        GlobResult result;
        const std::uint64_t cost = cost_of(compiled, text, result);
        ASSERT_EQ(result, expected ? GlobResult::match : GlobResult::no_match) << "pattern " << pattern << " text " << text;
        matches += expected;

        // A budget of exactly the cost is enough; one less is refused,
        // never answered wrongly, and leaves the budget empty.
        GlobBudget exact(cost);
        ASSERT_EQ(compiled.match(text, exact), result) << "pattern " << pattern << " text " << text;
        ASSERT_EQ(exact.remaining(), 0u);
        if (cost > 0) {
            GlobBudget short_by_one(cost - 1);
            ASSERT_EQ(compiled.match(text, short_by_one), GlobResult::too_costly) << "pattern " << pattern << " text " << text;
            ASSERT_EQ(short_by_one.remaining(), 0u);
        }
    }
    // The inputs are not all trivially false.
    EXPECT_GT(matches, 20000);
}

// The inputs of CVE-2022-36021's kind: a 160,000-byte key of `a`s against
// patterns that make a backtracking matcher try each of the key's positions
// against most of the pattern. Each is answered with work linear in the
// inputs.
TEST(GlobMatch, HostilePatternsCostLinearWork)
{
    const std::string text(160000, 'a');
    const std::string run(80000, 'a');
    struct Case {
        std::string pattern;
        GlobResult expected;
    };
    const Case cases[] = {
        { "*" + run + "b", GlobResult::no_match },
        { "*" + run + "b*", GlobResult::no_match },
        { "*?" + run + "b*", GlobResult::no_match },
        { repeat("*a", 40000) + "b", GlobResult::no_match },
        { repeat("*a", 40000) + "*b", GlobResult::no_match },
        { repeat("*a", 40000) + "*b*", GlobResult::no_match },
        { "*?" + run + "*", GlobResult::match },
        { "*" + run + "*", GlobResult::match },
        { repeat("*a", 80000) + "*", GlobResult::match },
        { repeat("a*", 80000), GlobResult::match },
        { "*" + run, GlobResult::match },
    };
    for (const Case& c : cases) {
        const GlobPattern pattern(c.pattern);
        GlobResult result;
        const std::uint64_t cost = cost_of(pattern, text, result);
        EXPECT_EQ(result, c.expected) << c.pattern.substr(0, 12) << "... (" << c.pattern.size() << " bytes)";
        EXPECT_LE(cost, 4 * (text.size() + c.pattern.size())) << c.pattern.substr(0, 12) << "...";
    }
}

TEST(GlobMatch, TooSmallABudgetIsRefusedNotAnsweredWrongly)
{
    const std::string text(160000, 'a');
    const GlobPattern literal("*" + std::string(80000, 'a') + "b*");
    GlobBudget small(1000);
    EXPECT_EQ(literal.match(text, small), GlobResult::too_costly);
    EXPECT_EQ(small.remaining(), 0u);

    // A literal run found at every start, each time followed by a mismatch;
    // or no literal byte at all, so every start is tried: O(text x pattern),
    // and the budget is what stops it.
    const GlobPattern everywhere("*" + std::string(80000, 'a') + "?b*");
    GlobBudget large(100000000);
    EXPECT_EQ(everywhere.match(text, large), GlobResult::too_costly);
    EXPECT_EQ(large.remaining(), 0u);
    const GlobPattern sets("*" + repeat("[ab]", 1000) + "[b]*");
    GlobBudget budget(1000000);
    EXPECT_EQ(sets.match(std::string(20000, 'a'), budget), GlobResult::too_costly);
    EXPECT_EQ(budget.remaining(), 0u);
    // ... and gets the answer right when it can afford it.
    EXPECT_TRUE(kv::glob_match("*" + repeat("[ab]", 100) + "[b]*", std::string(1000, 'a') + "b"));
    EXPECT_FALSE(kv::glob_match("*" + repeat("[ab]", 100) + "[b]*", std::string(1000, 'a')));
}

TEST(GlobMatch, OneBudgetSpansEveryTextOfARequest)
{
    const GlobPattern pattern("k*");
    GlobBudget budget(10);
    int answered = 0;
    for (int i = 0; i < 100; ++i) {
        GlobResult result = pattern.match("key" + std::to_string(i), budget);
        if (result == GlobResult::too_costly)
            break;
        EXPECT_EQ(result, GlobResult::match);
        ++answered;
    }
    EXPECT_EQ(answered, 10); // one comparison each: the `k`
    // A text too short for the pattern costs nothing.
    GlobBudget none(0);
    EXPECT_EQ(GlobPattern("abc*").match("ab", none), GlobResult::no_match);
}
