// BucketMap: a bucket's key-value map, living in a shared-memory segment
// (a SharedTable) that this process formats and writes, and that clients on
// this machine read directly (SharedTableReader, in common/shared_table.h).
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

#include "key_watchers.h"
#include "shared_table.h"
#include "unique_fd.h"

namespace kv {

class BucketMap {
public:
    // Creates segment `segment_name` with mode 0600 and `size` bytes, and
    // removes it when it goes. A name that exists is an error: nothing is
    // removed first. For tests; a bucketd adopts the segment registryd made.
    // Throws SystemError or std::runtime_error naming the segment.
    BucketMap(std::string segment_name, std::size_t size);
    // Adopts `segment_fd`, the empty segment `segment_name` that registryd
    // created, and formats it with `size` bytes; leaves the name to registryd.
    // Throws likewise.
    BucketMap(UniqueFd segment_fd, std::string segment_name, std::size_t size);
    // Tells readers the table is gone; removes the segment if it created it.
    ~BucketMap();
    BucketMap(const BucketMap&) = delete;
    BucketMap& operator=(const BucketMap&) = delete;

    // The value stays valid until the next change to the map.
    std::optional<std::string_view> get(std::string_view key) const;

    // Every change goes through set, erase and clear below, which tell the
    // watchers (WATCH) of each key that changed, as Redis's
    // signalModifiedKey: a stored value (even an equal one), a key that was
    // there and is erased, every key there when cleared. A change that is
    // not made (`full`, a key that was not there) touches nothing.
    enum class SetResult { stored, full };
    // On `full` the map is unchanged: the old value, if any, is still there.
    SetResult set(std::string_view key, std::string_view value);

    // True if the key was there.
    bool erase(std::string_view key);
    bool contains(std::string_view key) const;

    std::uint64_t size() const;
    std::uint64_t bytes() const;
    std::uint64_t segment_size() const { return table_.segment_size(); }
    const std::string& segment_name() const { return table_.segment_name(); }

    void for_each_key(const std::function<void(std::string_view)>& visit) const;
    // See SharedTableWriter::scan_step.
    std::uint64_t scan_step(std::uint64_t cursor, const std::function<void(std::string_view)>& visit) const
    {
        return table_.scan_step(cursor, visit);
    }
    // See SharedTableWriter::random_key.
    std::optional<std::string_view> random_key(std::uint64_t random) const { return table_.random_key(random); }

    // Every pair gone, in one short window (FLUSHDB).
    void clear();

    // The sessions watching keys of this map (WATCH, MULTI/EXEC).
    KeyWatchers& watchers() { return watchers_; }

    // Changes that land together, in one write window (MSET, RENAME, ...):
    // while the batch is open, set, erase and clear above join it; dropped
    // without commit() it undoes them all. See SharedTableWriter::Batch.
    using Batch = SharedTableWriter::Batch;
    Batch begin_batch() { return table_.begin_batch(); }

    // Tells direct readers the bucket is serving (once it is ready).
    void publish_alive() { table_.publish_alive(); }

private:
    SharedTableWriter table_;
    KeyWatchers watchers_;
};

} // namespace kv
