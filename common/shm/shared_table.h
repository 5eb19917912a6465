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
//
// Trust: /dev/shm is world-writable and shared by every user, so a reader
// takes nothing there on faith. It opens a segment only if it is a regular
// file (not a symlink: O_NOFOLLOW; not a FIFO), owned by the uid it expects,
// with no permission for group or others, holding a table of this layout,
// version, size and kind, whose owner process (pid AND start time, see
// process_identity.h) is still running; anything else is absent. A segment
// that shrinks under a reader (its owner's uid can truncate it) makes reads
// return `gone` instead of killing the reader with SIGBUS (fault_guard.h).
// A writer creates its segment with O_EXCL and never removes a name that no
// longer refers to the object it created.
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

#include "process_identity.h"

#include "unique_fd.h"

namespace kv {

enum class TableKind : std::uint32_t { bucket = 1, names = 2 };

struct TableHeader {
    static constexpr std::uint64_t expected_magic = 0x656c6261742d766bULL; // "kv-table"
    static constexpr std::uint32_t expected_version = 5;

    std::uint64_t magic;
    std::uint32_t version;
    TableKind kind;
    // The owner (the writer's process), as a ProcessIdentity: a reused pid
    // is not the owner.
    std::int32_t owner_pid;
    std::uint32_t reserved;
    std::uint64_t owner_start_time; // field 22 of /proc/PID/stat
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

// The writer: formats a segment as a table of `size` bytes and owns it.
class SharedTableWriter {
public:
    // Creates segment `segment_name` (create_segment: O_EXCL, mode 0600); it
    // never removes anything first, so a name that exists, whoever made it,
    // is an error ("unable to create segment NAME: File exists"). Throws
    // SystemError or std::runtime_error naming the segment.
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

private:
    struct Segment;
    std::string segment_name_;
    bool owns_name_;
    std::unique_ptr<Segment> segment_;
};

// A reader: maps a table read-only and answers from it with no system call.
class SharedTableReader {
public:
    // Empty unless `segment_name` is a regular file (not a symlink, not a
    // FIFO) owned by `expected_owner` with no group or other permission bits,
    // holding a table of this layout, version and size, of `kind`, whose
    // owner process is running (is_running: the same pid and start time, not
    // a zombie). Untrusted is absent. Throws SystemError only if the SIGBUS
    // handler (fault_guard.h) cannot be installed.
    static std::unique_ptr<SharedTableReader> open(const std::string& segment_name, TableKind kind, uid_t expected_owner);
    ~SharedTableReader();
    SharedTableReader(const SharedTableReader&) = delete;
    SharedTableReader& operator=(const SharedTableReader&) = delete;

    enum class Result {
        found,
        missing,
        gone, // the owner has exited, or the segment shrank under us: the table is no longer the truth
        busy, // a write did not finish within the retry budget (its writer may have died mid-write)
    };
    // Copies the value into `value` when found.
    Result get(std::string_view key, std::string& value) const;
    Result exists(std::string_view key) const;
    // Number of keys, as of one consistent moment.
    Result size(std::uint64_t& keys) const;

    // As checked when the table was opened.
    pid_t owner_pid() const { return owner_pid_; }
    // False once the owner has cleared `alive`, or if the segment shrank.
    bool alive() const;

private:
    SharedTableReader(const char* base, std::size_t size, pid_t owner_pid);
    Result lookup(std::string_view key, std::string* value) const;
    template <typename Read>
    Result consistent_read(Read read) const;

    const char* base_;
    std::size_t size_;
    pid_t owner_pid_;
};

struct TableStats {
    std::uint64_t keys = 0;
    std::uint64_t bytes = 0;
};

// ---- for registryd, which creates a bucket's segment and keeps a
// descriptor of it: it never opens by name anything it did not create. ----

// shm_open(name, O_CREAT|O_EXCL|O_RDWR|O_CLOEXEC, 0600): a new empty object,
// never one that was there. Throws SystemError
// "unable to create segment NAME: ..." (File exists if the name is taken).
UniqueFd create_segment(const std::string& name);

// shm_unlink(name), but only if `name` still refers to the object `fd` is
// open on (same st_dev and st_ino). False if it does not, or is gone. (Only
// the owner's uid or root can replace an entry of the sticky /dev/shm
// between the check and the unlink.)
bool remove_segment_if_same(const std::string& name, int fd);

// Reads the counters from the header page alone. Empty if `fd` does not
// (yet, or any more) hold a table of this layout.
std::optional<TableStats> read_table_stats(int fd);

// Clears `alive` in the header of a table whose owner died without doing it
// (registryd, when it reaps a bucket); `fd` must be open read-write. False if
// `fd` does not hold a table of this layout.
bool mark_table_gone(int fd);

// The owner recorded in the header of the table at `fd`. Empty if it is not
// a table of this layout and version (a table being created, or another
// version's): then nobody can say its owner is dead.
std::optional<ProcessIdentity> read_table_owner(int fd);

} // namespace kv
