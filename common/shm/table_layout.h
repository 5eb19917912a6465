// The layout of a table in a segment: what its writer and its readers (in
// other processes) agree on to the byte.
//
//   [TableHeader, padded to 4 KiB][Boost heap: the slot index and the entries]
//
// The header is at a fixed place, so readers never touch Boost's segment
// manager (whose lock is not robust in Boost 1.74). Only the writer (the
// bucketd that owns a bucket, or registryd for the name table) allocates.
// The index is an array of 64-byte slots, one cache line each, at
// `index_offset` from the segment's start; a pair lives in its slot when it
// is small, else in an Entry in the heap. Offsets are from the segment's
// start, so they mean the same in every process, wherever it is mapped.
//
// A reader refuses a table whose `version` is not expected_version: anything
// here that changes shape changes the version.
#pragma once

#include <algorithm>
#include <time.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace kv {

enum class TableKind : std::uint32_t { bucket = 1, names = 2 };

struct TableHeader {
    static constexpr std::uint64_t expected_magic = 0x656c6261742d766bULL; // "kv-table"
    static constexpr std::uint32_t expected_version = 10;

    std::uint64_t magic;
    std::uint32_t version;
    TableKind kind;
    // The owner (the writer's process), as a ProcessIdentity: a reused pid
    // is not the owner.
    std::int32_t owner_pid;
    // 1 while the writer changes anything, the heap's allocator included
    // (the seqlock's odd `sequence` covers only the slots and counters): a
    // writer that died with it set left the table in an unknown state, and
    // a restarted bucket with KEEP formats the segment afresh instead of
    // adopting it (SharedTableWriter's adopting constructor).
    std::atomic<std::uint32_t> changing;
    std::uint64_t owner_start_time; // field 22 of /proc/PID/stat
    std::uint64_t size; // whole segment, header included
    std::atomic<std::uint32_t> alive;
    std::atomic<std::uint64_t> sequence;
    std::atomic<std::uint64_t> index_offset; // from the segment's start
    std::atomic<std::uint64_t> capacity;     // slots; a power of two
    std::atomic<std::uint64_t> keys;
    std::atomic<std::uint64_t> bytes;        // keys plus values
    // Bytes from the segment's start that the writer has backed with
    // /dev/shm pages (posix_fallocate); it only grows. A reader follows no
    // offset past it: touching a hole of a sparse segment allocates a page,
    // and with /dev/shm full that is a SIGBUS.
    std::atomic<std::uint64_t> reserved_limit;
    // Keys with an expiry time (INFO's `expires=`); the writer's count.
    std::atomic<std::uint64_t> expiring;
    // Cluster mode's fence (README "Cluster"): after this instant of
    // fence_clock_ns() the bucket refuses writes, for its node's claim of
    // the name may have ended. registryd moves it forward with each
    // keepalive etcd confirms; 0: no fence (no cluster).
    std::atomic<std::int64_t> write_deadline_ns;
};

// The fence's clock: CLOCK_BOOTTIME, in nanoseconds, the same clock in every
// process of the machine. Not CLOCK_MONOTONIC (std::chrono::steady_clock):
// that one stops while the machine is suspended, while etcd, elsewhere,
// goes on counting a lease's TTL; a bucket resumed after a long suspend
// must find its deadline past.
inline std::int64_t fence_clock_ns()
{
    timespec now {};
    ::clock_gettime(CLOCK_BOOTTIME, &now);
    return static_cast<std::int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
}

constexpr std::size_t table_header_size = 4096;
static_assert(sizeof(TableHeader) <= table_header_size);

// The slot's tag, and where a probe starts. The same in every process and
// every build: it is part of the layout.
std::uint64_t hash_key(std::string_view key);

namespace layout {

// What a slot's `entry` holds: these three markers, or an Entry's offset.
// Offsets 0, 1 and 2 are never entries (they are inside the header page).
constexpr std::uint64_t empty_slot = 0;   // ends a probe
constexpr std::uint64_t deleted_slot = 1; // a tombstone: probing goes on past it
constexpr std::uint64_t inline_slot = 2;  // the pair is inline, in the slot itself
constexpr std::size_t inline_capacity = 46;

// Reads one field of shared memory that its writer may be changing: once, as
// a relaxed atomic load, so the compiler can neither tear it nor read it
// again after it was checked. (The mapping may be read-only: a plain load
// of at most 8 bytes is all this compiles to.)
template <typename T>
T load_shared(const T& field)
{
    static_assert(sizeof(T) <= 8);
    return std::atomic_ref<T>(const_cast<T&>(field)).load(std::memory_order_relaxed);
}

// Bytes of shared memory that one side may change while the other reads
// them (a slot's inline pair, an entry, a fresh index in memory a reader may
// still be looking at), written and read as relaxed atomics. The writer
// stores a word at a time where the address is 8-byte aligned, a byte at a
// time around that; a reader loads the aligned words that cover the bytes it
// wants (never leaving their page) and takes those bytes from its copy. A
// reader's copy that raced a write is garbage the sequence check throws away
// either way, but a plain memcpy racing a write is a data race, undefined
// behaviour by the letter of the standard (and what ThreadSanitizer reports);
// relaxed atomic accesses are not, and on x86-64 they are the same moves.
// (C++ has no atomic memcpy yet: P1478 proposes one.)
void store_shared_bytes(char* to, const char* from, std::size_t size);
void zero_shared_bytes(char* to, std::size_t size);

// A word of shared memory, which may alias anything (it is accessed where
// entries and slots hold bytes).
using Word [[gnu::may_alias]] = std::uint64_t;

// Calls chunk(bytes, n) for consecutive pieces of [from, from + size), each
// read into a buffer as the aligned words that cover it: whole words even at
// the ends (which stay inside the page of the bytes they cover), so a short
// key or value costs a few word loads, not a loop of byte loads.
template <typename Chunk>
inline void for_each_loaded_chunk(const char* from, std::size_t size, Chunk chunk)
{
    constexpr std::size_t buffer_words = 32;
    Word buffer[buffer_words];
    while (size > 0) {
        const auto* first = reinterpret_cast<const Word*>(reinterpret_cast<std::uintptr_t>(from) & ~std::uintptr_t(sizeof(Word) - 1));
        const std::size_t skip = static_cast<std::size_t>(from - reinterpret_cast<const char*>(first));
        const std::size_t take = std::min(size, sizeof buffer - skip);
        const std::size_t words = (skip + take + sizeof(Word) - 1) / sizeof(Word);
        for (std::size_t i = 0; i < words; ++i)
            buffer[i] = __atomic_load_n(first + i, __ATOMIC_RELAXED);
        chunk(reinterpret_cast<const char*>(buffer) + skip, take);
        from += take;
        size -= take;
    }
}

inline void load_shared_bytes(char* to, const char* from, std::size_t size)
{
    for_each_loaded_chunk(from, size, [&](const char* bytes, std::size_t n) {
        std::memcpy(to, bytes, n);
        to += n;
    });
}

// memcmp(shared, bytes.data(), bytes.size()) == 0, reading `shared` as
// load_shared_bytes does.
inline bool shared_bytes_equal(const char* shared, std::string_view bytes)
{
    bool equal = true;
    const char* other = bytes.data();
    for_each_loaded_chunk(shared, bytes.size(), [&](const char* loaded, std::size_t n) {
        equal = equal && std::memcmp(loaded, other, n) == 0;
        other += n;
    });
    return equal;
}


// Stores one field that readers may be reading: the other half of load_shared.
template <typename T>
void store_shared(T& field, T value)
{
    static_assert(sizeof(T) <= 8);
    std::atomic_ref<T>(field).store(value, std::memory_order_relaxed);
}

// One cache line. A small pair (key plus value up to 46 bytes) with no
// expiry time lives in the slot itself, so a direct read of it costs one
// cache miss, not two; a larger one, or one that expires, lives in an Entry
// in the heap.
struct alignas(64) Slot {
    std::atomic<std::uint64_t> tag;
    std::atomic<std::uint64_t> entry; // empty, deleted, inline, or an Entry's offset
    std::uint8_t key_size;            // inline pairs only
    std::uint8_t value_size;
    char bytes[inline_capacity];
};
static_assert(sizeof(Slot) == 64);
static_assert(offsetof(Slot, key_size) == 16 && offsetof(Slot, bytes) == 18);

// An expiry time: Unix time in milliseconds (CLOCK_REALTIME, as Redis's
// mstime()), after which the pair no longer exists; never_expires
// for a pair without one. The writer and every reader compare it with their
// own clock: one machine, one clock.
constexpr std::uint64_t never_expires = 0;

struct Entry {
    std::uint32_t key_size;
    std::uint32_t value_size;
    std::uint64_t expires_at; // never_expires, or a time as above
    // key bytes, then value bytes
};
static_assert(sizeof(Entry) == 16);

// True if a pair that expires at `expires_at` no longer exists at `now`:
// as Redis's keyIsExpired, once `now` is past it (at the very millisecond
// the pair is still there).
constexpr bool has_expired(std::uint64_t expires_at, std::uint64_t now)
{
    return expires_at != never_expires && now > expires_at;
}

// Now, as an expiry time: CLOCK_REALTIME in milliseconds (a vDSO call, no
// system call, about 20 ns).
std::uint64_t unix_time_ms();

// A reader's private copy of an inline slot's last 48 bytes (key_size,
// value_size and the 46 inline bytes), taken as six relaxed loads of the
// slot's aligned words 2 to 7: each is a plain 8-byte mov on x86-64, all in
// the slot's one cache line. The direct GET's hot path: a small pair's
// sizes, key and value are then checked, compared and copied from this copy,
// which is ordinary memory nobody else writes, so memcmp-like word compares
// and copies on it are no race at all. The copy may mix bytes from before
// and after a write that raced it (each word is whole, the six together are
// not one instant); its sizes are checked before they are used, and the
// sequence check throws the answer away, as for any read. (The earlier
// way, a chunk loop through a 256-byte buffer and a memcmp and a memcpy
// call on it, each for a few bytes, cost about 12 ns a GET.)
struct SlotLine {
    alignas(8) char bytes[sizeof(Slot) - offsetof(Slot, key_size)]; // [key_size][value_size][46 bytes]

    std::uint64_t key_size() const { return static_cast<std::uint8_t>(bytes[0]); }
    std::uint64_t value_size() const { return static_cast<std::uint8_t>(bytes[1]); }
    const char* pair() const { return bytes + 2; } // the key, then the value
};
static_assert(sizeof(SlotLine) == 48);

inline SlotLine load_slot_line(const Slot& slot)
{
    SlotLine line;
    const auto* words = reinterpret_cast<const Word*>(reinterpret_cast<const char*>(&slot) + offsetof(Slot, key_size));
#pragma GCC unroll 6
    for (std::size_t i = 0; i < sizeof line.bytes / sizeof(Word); ++i) {
        const Word word = __atomic_load_n(words + i, __ATOMIC_RELAXED);
        std::memcpy(line.bytes + i * sizeof(Word), &word, sizeof word); // a fixed-size memcpy: one store
    }
    return line;
}

// Compares and copies a few bytes of private memory (a SlotLine, the
// caller's key, a std::string's buffer: never shared memory) in whole words,
// the last word overlapping the one before it, so that a 16-byte key is two
// 8-byte compares and no call: what memcmp and memcpy cost for so few bytes
// is mostly the call and their size dispatch. Never reads or writes past
// [p, p + size).
namespace detail {
template <typename U>
inline U load_plain(const char* p)
{
    U u;
    std::memcpy(&u, p, sizeof u);
    return u;
}
template <typename U>
inline void store_plain(char* p, U u)
{
    std::memcpy(p, &u, sizeof u);
}
} // namespace detail

inline bool small_bytes_equal(const char* a, const char* b, std::size_t size)
{
    using detail::load_plain;
    if (size >= 8) {
        for (std::size_t i = 0; i + 8 < size; i += 8)
            if (load_plain<std::uint64_t>(a + i) != load_plain<std::uint64_t>(b + i))
                return false;
        return load_plain<std::uint64_t>(a + size - 8) == load_plain<std::uint64_t>(b + size - 8);
    }
    if (size >= 4)
        return load_plain<std::uint32_t>(a) == load_plain<std::uint32_t>(b)
            && load_plain<std::uint32_t>(a + size - 4) == load_plain<std::uint32_t>(b + size - 4);
    if (size >= 2)
        return load_plain<std::uint16_t>(a) == load_plain<std::uint16_t>(b)
            && load_plain<std::uint16_t>(a + size - 2) == load_plain<std::uint16_t>(b + size - 2);
    return size == 0 || *a == *b;
}

inline void small_bytes_copy(char* to, const char* from, std::size_t size)
{
    using detail::load_plain;
    using detail::store_plain;
    if (size >= 8) {
        for (std::size_t i = 0; i + 8 < size; i += 8)
            store_plain(to + i, load_plain<std::uint64_t>(from + i));
        store_plain(to + size - 8, load_plain<std::uint64_t>(from + size - 8));
    } else if (size >= 4) {
        const auto first = load_plain<std::uint32_t>(from), last = load_plain<std::uint32_t>(from + size - 4);
        store_plain(to, first);
        store_plain(to + size - 4, last);
    } else if (size >= 2) {
        const auto first = load_plain<std::uint16_t>(from), last = load_plain<std::uint16_t>(from + size - 2);
        store_plain(to, first);
        store_plain(to + size - 2, last);
    } else if (size == 1) {
        *to = *from;
    }
}

// True if a slot's `entry` is the offset of an Entry in the heap (which the
// writer frees once the slot no longer refers to it).
constexpr bool holds_entry(std::uint64_t entry) { return entry > inline_slot; }

} // namespace layout

} // namespace kv
