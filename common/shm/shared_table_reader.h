// SharedTableReader: a table read from another process with no system call
// and no lock: the read side of the seqlock that shared_table.h describes
// (README "Direct reads").
//
// A reader writes nothing and holds nothing, so one killed at any instant
// blocks nobody. It loads every offset and length once and checks it against
// the writer's reserved limit (pages that exist) before it follows it, and
// copies no more than the table holds: racing a writer, it may read garbage,
// never outside those pages and never forever, and the sequence check throws that
// garbage away. It takes nothing in /dev/shm on faith (see open), and a
// segment that shrinks under it (its owner's uid can truncate it) is not
// the truth any more: the first read that touches a page past the new end
// answers `gone`, and so does every read after it, instead of SIGBUS
// killing the reader (fault_guard.h).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "mapping.h"
#include "table_layout.h"

namespace kv {

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
    // A reader on the writer's own mapping, in the writer's own process, with
    // none of open's checks (the caller made the table): reads go to the very
    // addresses the writer writes. For tests under ThreadSanitizer, which
    // sees a race only between two accesses to one address, never across two
    // mappings of one segment. `mapping` must outlive the reader. If the
    // segment shrank under such a reader, the fault guard would put zeros in
    // the writer's own mapping: tests only, on segments nothing truncates.
    static std::unique_ptr<SharedTableReader> on_mapping(const Mapping& mapping, pid_t owner_pid);
    // Unmaps the table (the Mapping does).
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
    // MGET: each of `keys` read as of one moment (one consistent read of
    // the whole batch), faster than one get() after another on a large
    // table (it overlaps their cache misses). `found` once every key is
    // answered, each in `results` (found or missing) with its value in
    // `values` when found; else gone or busy for the whole batch (busy:
    // writes kept overlapping the whole batch for the retry budget, which a
    // long batch under a busy writer meets sooner than one key). The three
    // spans must be the same size (else std::invalid_argument).
    Result get_many(std::span<const std::string_view> keys, std::span<std::string> values, std::span<Result> results) const;
    // Number of keys, as of one consistent moment.
    Result size(std::uint64_t& keys) const;

    // As checked when the table was opened.
    pid_t owner_pid() const { return owner_pid_; }
    // False once the owner has cleared `alive`, or if the segment shrank.
    bool alive() const;

private:
    // Reads `size` bytes at `base`: `mapping`'s, or (on_mapping, with
    // `mapping` empty) a mapping someone else owns.
    SharedTableReader(Mapping mapping, const char* base, std::size_t size, pid_t owner_pid);
    Result lookup(std::string_view key, std::string* value) const;
    template <typename Read>
    Result consistent_read(Read read) const;

    // The whole segment, read-only, as it was sized when opened; empty for
    // a reader on_mapping, which reads through someone else's.
    Mapping mapping_;
    const char* base_;
    std::size_t size_;
    pid_t owner_pid_;
    // Set (by the SIGBUS handler, fault_guard.h) once a page of the mapping
    // went away under a read: from then on every read answers gone.
    mutable std::atomic<bool> shrunk_ { false };
};

} // namespace kv
