// SharedTableWriter: the owner's side of a table, the write side of the
// seqlock that shared_table.h describes (README "Direct reads"). One per
// segment, used from one thread: the bucketd that owns a bucket, or
// registryd for its name table.
//
// New entries are written completely before they are linked, and old ones
// freed only after they are unlinked: only a reader that raced a write can
// see a half-written or freed entry, and its sequence check throws that read
// away. Only the writer ever allocates in the segment, because Boost 1.74's
// internal locks are not robust (a process killed inside the allocator would
// wedge every other user).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "mapping.h"
#include "table_layout.h"
#include "unique_fd.h"

namespace kv {

// The writer: formats a segment as a table of `size` bytes and owns it.
class SharedTableWriter {
public:
    // Creates segment `segment_name` (create_segment: O_EXCL, mode 0600); it
    // never removes anything first, so a name that exists, whoever made it,
    // is an error ("unable to create segment NAME: File exists"). Throws
    // SystemError or std::runtime_error naming the segment and saying why
    // ("unable to map segment NAME: Cannot allocate memory").
    SharedTableWriter(std::string segment_name, std::size_t size, TableKind kind);
    // Adopts `segment_fd`, an empty shared-memory object opened read-write
    // that someone else created (registryd creates a bucket's segment and
    // passes it to the bucketd), and formats it as the constructor above
    // does. `segment_name` is its name, for messages and readers. Throws
    // likewise, also when the object is not empty.
    SharedTableWriter(UniqueFd segment_fd, std::string segment_name, std::size_t size, TableKind kind);
    // Clears `alive`. A writer that created its segment by name then removes
    // the name, but only if it still refers to the object it created (never
    // a segment that took the name since); an adopting writer leaves the
    // name to its creator.
    ~SharedTableWriter();
    SharedTableWriter(const SharedTableWriter&) = delete;
    SharedTableWriter& operator=(const SharedTableWriter&) = delete;

    // The value stays valid until the next change.
    std::optional<std::string_view> get(std::string_view key) const;
    bool contains(std::string_view key) const { return get(key).has_value(); }

    enum class SetResult { stored, full };
    // On `full` the table is unchanged: an old value is still there.
    SetResult set(std::string_view key, std::string_view value);
    bool erase(std::string_view key);

    std::uint64_t size() const;
    std::uint64_t bytes() const;
    const std::string& segment_name() const { return segment_name_; }
    void for_each(const std::function<void(std::string_view key, std::string_view value)>& visit) const;

    // Readers may now trust the table (the owner is serving).
    void publish_alive();

    // The segment's descriptor, for its owner to flock(2) for its whole life
    // (registryd does so on its name table: see registryd/leftovers.h).
    int descriptor() const;
    // The writer's own mapping of the segment, for a reader in this very
    // process (SharedTableReader::on_mapping: tests under ThreadSanitizer).
    const Mapping& mapping() const;

private:
    struct Segment;
    std::string segment_name_;
    bool owns_name_;
    std::unique_ptr<Segment> segment_;
};

} // namespace kv
