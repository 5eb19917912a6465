// The first page of every bucket segment: a fixed, known place that other
// processes read without touching Boost's segment manager (whose internal
// lock is not robust: a reader must never call find() on a segment whose
// owner may die; see ../shared/PITFALLS.md). Only the owning bucketd writes it.
//
// Layout of a segment: [SegmentHeader, padded to 4 KiB][Boost heap with the map].
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace kv {

struct SegmentHeader {
    static constexpr std::uint64_t expected_magic = 0x74656b6375622d76ULL; // "v-bucket"
    static constexpr std::uint32_t expected_version = 1;

    std::uint64_t magic;
    std::uint32_t version;
    std::int32_t owner_pid;
    std::uint64_t size;          // whole segment, header included
    std::atomic<std::uint64_t> keys;
    std::atomic<std::uint64_t> bytes; // keys plus values
};

constexpr std::size_t segment_header_size = 4096;
static_assert(sizeof(SegmentHeader) <= segment_header_size);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

struct SegmentStats {
    std::uint64_t keys = 0;
    std::uint64_t bytes = 0;
};

// Reads the counters of segment `name` through a read-only mapping of its
// first page. Empty if the segment is gone or not a bucket segment.
std::optional<SegmentStats> read_segment_stats(const std::string& name);

} // namespace kv
