#include "glob.h"

#include <string.h>

#include <algorithm>
#include <limits>
#include <stdexcept>

namespace kv {

namespace {

// A memmem call takes about as long as this many comparisons before it reads
// a byte; without it, a pattern whose short literal run occurs at every
// position would buy twice the time per unit of budget of any other.
constexpr std::uint64_t search_call_cost = 8;

} // namespace

GlobPattern::GlobPattern(std::string_view pattern)
{
    if (pattern.size() >= std::numeric_limits<std::uint32_t>::max() - first_set)
        throw std::length_error("glob pattern of " + std::to_string(pattern.size()) + " bytes: the most is 4 GiB");
    // Room for the most the pattern can need, so that no vector doubles past
    // it: a token takes at least one byte other than `*`, a set a `[` and a
    // `]`, and a segment boundary a run of `*`.
    std::size_t stars = 0, star_runs = 0;
    for (std::size_t i = 0; i < pattern.size(); ++i) {
        stars += pattern[i] == '*';
        star_runs += pattern[i] == '*' && (i == 0 || pattern[i - 1] != '*');
    }
    tokens_.reserve(pattern.size() - stars);
    literals_.reserve(pattern.size() - stars);
    sets_.reserve(static_cast<std::size_t>(std::min(std::count(pattern.begin(), pattern.end(), '['), std::count(pattern.begin(), pattern.end(), ']'))));
    segments_.reserve(star_runs + 1);

    std::uint32_t segment_begin = 0;
    auto end_segment = [&] {
        auto end = static_cast<std::uint32_t>(tokens_.size());
        segments_.push_back({ segment_begin, end, end, end });
        segment_begin = end;
    };
    auto add = [&](Token token, char byte) {
        tokens_.push_back(token);
        literals_.push_back(byte);
    };
    auto byte = [](char c) { return static_cast<unsigned char>(c); };

    // Token by token, as the backtracking matcher this replaces read them, so
    // that every pattern means what it meant.
    std::size_t p = 0;
    while (p < pattern.size()) {
        char c = pattern[p];
        if (c == '*') {
            while (p < pattern.size() && pattern[p] == '*')
                ++p;
            end_segment();
            continue;
        }
        if (c == '?') {
            add(any, 0);
            ++p;
            continue;
        }
        if (c == '[') {
            std::size_t q = p + 1;
            Set set { static_cast<std::uint32_t>(ranges_.size()), 0, q < pattern.size() && pattern[q] == '^' };
            if (set.negated)
                ++q;
            while (q < pattern.size() && pattern[q] != ']') {
                if (pattern[q] == '\\' && q + 1 < pattern.size()) {
                    ranges_.push_back({ byte(pattern[q + 1]), byte(pattern[q + 1]) });
                    q += 2;
                } else if (q + 2 < pattern.size() && pattern[q + 1] == '-' && pattern[q + 2] != ']') {
                    // The ends are ordered as `char`, as they always were here:
                    // where char is signed, a range from below 0x80 to above it is empty.
                    ranges_.push_back({ byte(std::min(pattern[q], pattern[q + 2])), byte(std::max(pattern[q], pattern[q + 2])) });
                    q += 3;
                } else {
                    ranges_.push_back({ byte(pattern[q]), byte(pattern[q]) });
                    ++q;
                }
            }
            if (q == pattern.size()) {
                // An unterminated `[` matches no byte, and every match must get past it.
                matches_nothing_ = true;
                return;
            }
            set.range_count = static_cast<std::uint32_t>(ranges_.size()) - set.first_range;
            add(first_set + static_cast<Token>(sets_.size()), 0);
            sets_.push_back(set);
            p = q + 1;
            continue;
        }
        if (c == '\\' && p + 1 < pattern.size())
            c = pattern[++p];
        add(literal, c);
        ++p;
    }
    end_segment();

    for (Segment& segment : segments_) {
        for (std::uint32_t i = segment.begin; i < segment.end;) {
            if (tokens_[i] != literal) {
                ++i;
                continue;
            }
            std::uint32_t run_end = i;
            while (run_end < segment.end && tokens_[run_end] == literal)
                ++run_end;
            if (run_end - i > segment.anchor_end - segment.anchor_begin) {
                segment.anchor_begin = i;
                segment.anchor_end = run_end;
            }
            i = run_end;
        }
    }
}

GlobResult GlobPattern::match(std::string_view text, GlobBudget& budget) const
{
    if (matches_nothing_ || text.size() < tokens_.size())
        return GlobResult::no_match;
    const Segment& first = segments_.front();
    if (segments_.size() == 1)
        return text.size() == first.length() ? matches_at(first.begin, first.end, text.data(), budget) : GlobResult::no_match;

    // Both ends first: they are cheap, and fixed; the middle fits in between.
    const Segment& last = segments_.back();
    std::size_t limit = text.size() - last.length();
    GlobResult result = matches_at(first.begin, first.end, text.data(), budget);
    if (result == GlobResult::match)
        result = matches_at(last.begin, last.end, text.data() + limit, budget);
    std::size_t from = first.length();
    for (auto segment = segments_.begin() + 1; result == GlobResult::match && segment + 1 != segments_.end(); ++segment) {
        std::size_t found = 0;
        result = find(*segment, text, from, limit, budget, found);
        from = found + segment->length();
    }
    return result;
}

inline bool GlobPattern::set_contains(const Set& set, unsigned char byte) const
{
    const Range* range = ranges_.data() + set.first_range;
    const Range* end = range + set.range_count;
    bool contained = std::any_of(range, end, [byte](const Range& r) { return byte >= r.low && byte <= r.high; });
    return contained != set.negated;
}

GlobResult GlobPattern::matches_at(std::uint32_t begin, std::uint32_t end, const char* text, GlobBudget& budget) const
{
    // Counted here and charged once: this loop is where most matches spend.
    const std::uint64_t allowed = budget.remaining();
    std::uint64_t spent = 0;
    GlobResult result = GlobResult::match;
    for (std::uint32_t i = begin; i < end; ++i, ++text) {
        const Token token = tokens_[i];
        const Set* set = token >= first_set ? &sets_[token - first_set] : nullptr;
        spent += set ? std::max<std::uint64_t>(set->range_count, 1) : 1;
        if (spent > allowed) {
            result = GlobResult::too_costly;
            break;
        }
        if (token == literal ? literals_[i] != *text : set && !set_contains(*set, static_cast<unsigned char>(*text))) {
            result = GlobResult::no_match;
            break;
        }
    }
    budget.spend(spent); // past `allowed`, this empties the budget
    return result;
}

GlobResult GlobPattern::find(const Segment& segment, std::string_view text, std::size_t from, std::size_t limit,
    GlobBudget& budget, std::size_t& found) const
{
    const std::size_t length = segment.length();
    if (from > limit || limit - from < length)
        return GlobResult::no_match;
    const std::size_t last_start = limit - length;

    if (segment.anchor_begin == segment.anchor_end) {
        // No literal byte to look for: try every start.
        for (std::size_t start = from; start <= last_start; ++start) {
            GlobResult result = matches_at(segment.begin, segment.end, text.data() + start, budget);
            if (result != GlobResult::no_match) {
                found = start;
                return result;
            }
        }
        return GlobResult::no_match;
    }

    // Every occurrence of the segment has its anchor `offset` bytes in: look
    // for the anchor, then check the tokens around it.
    const std::size_t offset = segment.anchor_begin - segment.begin;
    const std::size_t anchor_length = segment.anchor_end - segment.anchor_begin;
    const char* anchor = literals_.data() + segment.anchor_begin;
    for (std::size_t start = from; start <= last_start; ++start) {
        std::string_view haystack = text.substr(start + offset, last_start - start + anchor_length);
        if (!budget.spend(search_call_cost + anchor_length))
            return GlobResult::too_costly;
        // Search no further than the budget pays for.
        std::size_t affordable = static_cast<std::size_t>(std::min<std::uint64_t>(haystack.size(), budget.remaining()));
        const void* hit = ::memmem(haystack.data(), affordable, anchor, anchor_length);
        if (!hit) {
            if (!budget.spend(haystack.size()))
                return GlobResult::too_costly;
            return GlobResult::no_match;
        }
        std::size_t at = static_cast<std::size_t>(static_cast<const char*>(hit) - haystack.data());
        budget.spend(at + anchor_length);
        start += at;
        GlobResult result = matches_at(segment.begin, segment.anchor_begin, text.data() + start, budget);
        if (result == GlobResult::match)
            result = matches_at(segment.anchor_end, segment.end, text.data() + start + offset + anchor_length, budget);
        if (result != GlobResult::no_match) {
            found = start;
            return result;
        }
    }
    return GlobResult::no_match;
}

bool glob_match(std::string_view pattern, std::string_view text)
{
    GlobBudget budget = GlobBudget::unlimited();
    return GlobPattern(pattern).match(text, budget) == GlobResult::match;
}

} // namespace kv
