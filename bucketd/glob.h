// Redis glob patterns, as KEYS and CONFIG GET take them: `*` (any run of
// bytes), `?` (one byte), `[abc]`, `[a-z]`, `[^a]` (one byte in, or not in, a
// set), `\x` (x itself). A pattern with an unterminated `[` matches nothing.
// Bytes are compared exactly (no case folding), NUL included.
//
// Cost. A backtracking matcher spends O(text x pattern) on inputs such as a
// 160 KB key of `a`s against `*aaaa...b`, seconds of a bucket's only thread
// (Redis: CVE-2022-36021). Here a pattern is compiled once (GlobPattern) into
// tokens that each match one byte, split at its stars into fixed-length
// segments S0 * S1 * ... * Sk. A text of n bytes then matches iff S0 matches
// its start, Sk its end, and S1..Sk-1 occur in order in between; taking the
// leftmost occurrence of each in turn is enough (a later one never leaves more
// room for the rest), so no choice is ever revisited. With m = tokens:
//  - compiling: O(pattern bytes) time and memory (at most 11 bytes a pattern byte);
//  - a text shorter than the tokens outside stars: O(1), no comparison;
//  - S0 and Sk: at most one comparison per token (a set: per item);
//  - a middle segment is found through its longest run of literal bytes with
//    glibc's memmem (linear: two-way above 256 bytes, a bounded Horspool
//    below; std::string_view::find is not, in libstdc++), each occurrence of
//    the run then checked against the rest of the segment. A literal-only
//    segment is one memmem call, and the next segment starts where it ended,
//    so patterns whose middle segments are literal (`user:*`, `*:name`,
//    `a*b*c`, the attack above) cost O(n + m) comparisons;
//  - a middle segment whose literal run occurs at many places, each followed
//    by a mismatch (`*aaaa?b*` on `aaaaaaaa...`), or that has no literal at
//    all (`*[ab][ab]?*`), costs up to O(n x |segment|): the overall worst case
//    is O(n x pattern bytes), polynomial, and it is what the budget is for.
//
// Budget. Every match spends from a GlobBudget the caller owns, so a caller
// can share one budget across all the texts of a request and refuse the
// request when it runs out (`too_costly`) instead of blocking. The unit is
// one comparison: a literal or `?` token tried against a byte costs 1, a set
// token costs its number of items (at least 1), a memmem call costs the bytes
// it passes over plus the needle's length plus 8 for the call. Each unit
// takes at most about a nanosecond (measured on the 2-core EPYC of
// BENCHMARKS.md), which is what makes a budget a bound on time. A match never
// spends past the budget; `too_costly` means it stopped there, without an
// answer, and left the budget empty.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kv {

enum class GlobResult { match, no_match, too_costly };

// Comparisons a caller still allows. Once a spend fails, the budget is empty.
class GlobBudget {
public:
    explicit GlobBudget(std::uint64_t comparisons) : remaining_(comparisons) {}
    static GlobBudget unlimited() { return GlobBudget(UINT64_MAX); }

    std::uint64_t remaining() const { return remaining_; }

    // Takes `comparisons` if that many remain; otherwise empties the budget
    // and returns false.
    bool spend(std::uint64_t comparisons)
    {
        if (comparisons > remaining_) {
            remaining_ = 0;
            return false;
        }
        remaining_ -= comparisons;
        return true;
    }

private:
    std::uint64_t remaining_;
};

// A compiled pattern: compile once, match any number of texts. Holds no
// reference to the pattern it was built from. Throws std::length_error for
// a pattern of 4 GiB or more (RESP caps an argument at 1 GiB).
class GlobPattern {
public:
    explicit GlobPattern(std::string_view pattern);

    GlobResult match(std::string_view text, GlobBudget& budget) const;

private:
    // A token matches exactly one byte: a literal (its byte is literals_[i]),
    // any byte, or a set (tokens_[i] - first_set is its index in sets_).
    using Token = std::uint32_t;
    static constexpr Token literal = 0;
    static constexpr Token any = 1;
    static constexpr Token first_set = 2;

    struct Range {
        unsigned char low, high;
    };
    struct Set {
        std::uint32_t first_range; // in ranges_
        std::uint32_t range_count;
        bool negated;
    };
    // Tokens [begin, end) between two stars (or an end of the pattern), and
    // [anchor_begin, anchor_end): its longest run of literal tokens, empty if
    // it has none; a middle segment is searched for by that run.
    struct Segment {
        std::uint32_t begin, end, anchor_begin, anchor_end;
        std::size_t length() const { return end - begin; }
    };

    // Tokens [begin, end) against the bytes at `text`, which has room for them.
    GlobResult matches_at(std::uint32_t begin, std::uint32_t end, const char* text, GlobBudget& budget) const;
    // Leftmost start s >= from with s + length <= limit where `segment`
    // matches; `found` is set on `match`.
    GlobResult find(const Segment& segment, std::string_view text, std::size_t from, std::size_t limit,
        GlobBudget& budget, std::size_t& found) const;
    bool set_contains(const Set& set, unsigned char byte) const;

    bool matches_nothing_ = false; // an unterminated `[`
    std::vector<Token> tokens_;
    std::string literals_; // one byte per token, so literal runs are contiguous for memmem
    std::vector<Set> sets_;
    std::vector<Range> ranges_;
    std::vector<Segment> segments_; // S0 ... Sk: k stars
};

// One text against one pattern, without a budget: for short texts (CONFIG
// GET's names, tests), where O(text x pattern) is small.
bool glob_match(std::string_view pattern, std::string_view text);

} // namespace kv
