#include "bucket_map.h"

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
    if (table_.set(key, value) != SharedTableWriter::SetResult::stored)
        return SetResult::full;
    watchers_.touch(key);
    return SetResult::stored;
}

bool BucketMap::erase(std::string_view key)
{
    if (!table_.erase(key))
        return false;
    watchers_.touch(key);
    return true;
}

void BucketMap::clear()
{
    watchers_.touch_existing([this](std::string_view key) { return table_.contains(key); });
    table_.clear();
}

bool BucketMap::contains(std::string_view key) const { return table_.contains(key); }

std::uint64_t BucketMap::size() const { return table_.size(); }

std::uint64_t BucketMap::bytes() const { return table_.bytes(); }

void BucketMap::for_each_key(const std::function<void(std::string_view)>& visit) const
{
    table_.for_each([&](std::string_view key, std::string_view) { visit(key); });
}

} // namespace kv
