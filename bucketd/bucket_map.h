// BucketMap: a bucket's key-value map, living in a shared-memory segment
// (a SharedTable) that this process creates, owns and removes, and that
// clients on this machine read directly (SharedTableReader, in
// common/shared_table.h).
//
// Only the bucketd that owns the segment allocates in it (Boost 1.74 has no
// robust mutexes: a process killed inside the allocator would wedge every
// other user). Keys and values are plain bytes, NUL included.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "shared_table.h"

namespace kv {

class BucketMap {
public:
    // Creates segment `segment_name` (removing a stale one of that name)
    // with mode 0600 and `size` bytes. Throws SystemError or
    // std::runtime_error naming the segment.
    BucketMap(std::string segment_name, std::size_t size);
    // Removes the segment.
    ~BucketMap();
    BucketMap(const BucketMap&) = delete;
    BucketMap& operator=(const BucketMap&) = delete;

    // The value stays valid until the next change to the map.
    std::optional<std::string_view> get(std::string_view key) const;

    enum class SetResult { stored, full };
    // On `full` the map is unchanged: the old value, if any, is still there.
    SetResult set(std::string_view key, std::string_view value);

    // True if the key was there.
    bool erase(std::string_view key);
    bool contains(std::string_view key) const;

    std::uint64_t size() const;
    std::uint64_t bytes() const;
    const std::string& segment_name() const { return table_.segment_name(); }

    void for_each_key(const std::function<void(std::string_view)>& visit) const;

    // Tells direct readers the bucket is serving (once it is ready).
    void publish_alive() { table_.publish_alive(); }

private:
    SharedTableWriter table_;
};

} // namespace kv
