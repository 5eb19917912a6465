#include "bucket_map.h"

#include <algorithm>

namespace kv {

BucketMap::BucketMap(std::string segment_name, std::size_t size)
    : table_(std::move(segment_name), size, TableKind::bucket)
{
}

BucketMap::BucketMap(UniqueFd segment_fd, std::string segment_name, std::size_t size)
    : table_(std::move(segment_fd), std::move(segment_name), size, TableKind::bucket)
{
}

BucketMap::~BucketMap() = default;

std::optional<std::string_view> BucketMap::get(std::string_view key) const { return table_.get(key); }

BucketMap::SetResult BucketMap::set(std::string_view key, std::string_view value)
{
    return table_.set(key, value) == SharedTableWriter::SetResult::stored ? SetResult::stored : SetResult::full;
}

bool BucketMap::erase(std::string_view key) { return table_.erase(key); }

bool BucketMap::contains(std::string_view key) const { return table_.contains(key); }

std::uint64_t BucketMap::size() const { return table_.size(); }

std::uint64_t BucketMap::bytes() const { return table_.bytes(); }

void BucketMap::for_each_key(const std::function<void(std::string_view)>& visit) const
{
    table_.for_each([&](std::string_view key, std::string_view) { visit(key); });
}

bool glob_match(std::string_view pattern, std::string_view text)
{
    std::size_t p = 0, t = 0;
    std::size_t star_p = std::string_view::npos, star_t = 0;
    while (t < text.size()) {
        if (p < pattern.size()) {
            char c = pattern[p];
            if (c == '*') {
                star_p = p++;
                star_t = t;
                continue;
            }
            if (c == '?') {
                ++p;
                ++t;
                continue;
            }
            if (c == '[') {
                std::size_t q = p + 1;
                bool negate = q < pattern.size() && pattern[q] == '^';
                if (negate)
                    ++q;
                bool matched = false;
                while (q < pattern.size() && pattern[q] != ']') {
                    if (pattern[q] == '\\' && q + 1 < pattern.size()) {
                        matched |= pattern[q + 1] == text[t];
                        q += 2;
                    } else if (q + 2 < pattern.size() && pattern[q + 1] == '-' && pattern[q + 2] != ']') {
                        auto low = static_cast<unsigned char>(std::min(pattern[q], pattern[q + 2]));
                        auto high = static_cast<unsigned char>(std::max(pattern[q], pattern[q + 2]));
                        auto ch = static_cast<unsigned char>(text[t]);
                        matched |= ch >= low && ch <= high;
                        q += 3;
                    } else {
                        matched |= pattern[q] == text[t];
                        ++q;
                    }
                }
                if (q < pattern.size() && matched != negate) {
                    p = q + 1;
                    ++t;
                    continue;
                }
            } else {
                if (c == '\\' && p + 1 < pattern.size())
                    c = pattern[++p];
                if (c == text[t]) {
                    ++p;
                    ++t;
                    continue;
                }
            }
        }
        if (star_p == std::string_view::npos)
            return false;
        p = star_p + 1;
        t = ++star_t;
    }
    while (p < pattern.size() && pattern[p] == '*')
        ++p;
    return p == pattern.size();
}

} // namespace kv
