// SharedTable: a hash table in a shared-memory segment with one writer and
// any number of readers in other processes that read it without a system
// call and without a lock.
//
// Layout of a segment:
//   [TableHeader, padded to 4 KiB][Boost heap: the slot index and the entries]
// The header is at a fixed place, so readers never touch Boost's segment
// manager (whose lock is not robust in Boost 1.74). Only the writer (the
// bucketd that owns a bucket, or registryd for the name table) allocates.
//
// The read protocol is a seqlock over data that is safe to read while it
// changes (see README "Direct reads"):
//  - the writer makes `sequence` odd, changes slots and counters, makes it
//    even again (release); new entries are written before they are linked,
//    old ones freed only after they are unlinked;
//  - a reader loads `sequence` (acquire), retries while it is odd, reads,
//    then checks that `sequence` has not moved; every offset and length it
//    follows is checked against the segment's size first, so a reader racing
//    a writer can read garbage but never leave the mapping or loop forever,
//    and the sequence check makes it throw that garbage away;
//  - readers write nothing, hold nothing: one killed at any instant blocks nobody;
//  - `alive` is 1 while the owner serves; the owner clears it when it exits,
//    and registryd clears it when it reaps an owner that died without doing so.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace kv {

enum class TableKind : std::uint32_t { bucket = 1, names = 2 };

struct TableHeader {
    static constexpr std::uint64_t expected_magic = 0x656c6261742d766bULL; // "kv-table"
    static constexpr std::uint32_t expected_version = 4;

    std::uint64_t magic;
    std::uint32_t version;
    TableKind kind;
    std::int32_t owner_pid;
    std::uint32_t reserved;
    std::uint64_t size; // whole segment, header included
    std::atomic<std::uint32_t> alive;
    std::atomic<std::uint64_t> sequence;
    std::atomic<std::uint64_t> index_offset; // from the segment's start
    std::atomic<std::uint64_t> capacity;     // slots; a power of two
    std::atomic<std::uint64_t> keys;
    std::atomic<std::uint64_t> bytes;        // keys plus values
};

constexpr std::size_t table_header_size = 4096;
static_assert(sizeof(TableHeader) <= table_header_size);

std::uint64_t hash_key(std::string_view key);

// The writer: creates the segment (mode 0600), owns it, removes it.
class SharedTableWriter {
public:
    // Throws SystemError or std::runtime_error naming the segment.
    SharedTableWriter(std::string segment_name, std::size_t size, TableKind kind);
    // Clears `alive` and removes the segment.
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

private:
    struct Segment;
    std::string segment_name_;
    std::unique_ptr<Segment> segment_;
};

// A reader: maps a table read-only and answers from it with no system call.
class SharedTableReader {
public:
    // Empty if there is no such segment or it is not a table of `kind`.
    static std::unique_ptr<SharedTableReader> open(const std::string& segment_name, TableKind kind);
    ~SharedTableReader();
    SharedTableReader(const SharedTableReader&) = delete;
    SharedTableReader& operator=(const SharedTableReader&) = delete;

    enum class Result {
        found,
        missing,
        gone, // the owner has exited: the table is no longer the truth
        busy, // a write did not finish within the retry budget (its writer may have died mid-write)
    };
    // Copies the value into `value` when found.
    Result get(std::string_view key, std::string& value) const;
    Result exists(std::string_view key) const;
    // Number of keys, as of one consistent moment.
    Result size(std::uint64_t& keys) const;

    pid_t owner_pid() const;
    bool alive() const;

private:
    SharedTableReader(const char* base, std::size_t size);
    Result lookup(std::string_view key, std::string* value) const;
    template <typename Read>
    Result consistent_read(Read read) const;

    const char* base_;
    std::size_t size_;
};

struct TableStats {
    std::uint64_t keys = 0;
    std::uint64_t bytes = 0;
};

// Reads the counters from the header page alone. Empty if the segment is gone.
std::optional<TableStats> read_table_stats(const std::string& segment_name);

// Clears `alive` in the header of a table whose owner died without doing it
// (registryd, when it reaps a bucket). False if the segment is gone.
bool mark_table_gone(const std::string& segment_name);

} // namespace kv
