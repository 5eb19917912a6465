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
//
// Several changes that must be seen together (MSET, RENAME, FLUSHDB, and a
// transaction's EXEC) go through a Batch: they all land in ONE write window,
// so a reader sees all of them or none (see Batch below).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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
    // What an adopting writer did with what the object held.
    enum class Adoption {
        formatted, // it was empty: a new table
        kept,      // it held an intact table: its pairs are this writer's now
        discarded, // it held a table that cannot be trusted: formatted afresh (discarded_why says why)
    };
    // KEEP (a bucket restarted with its data): adopts `segment_fd`, which a
    // writer of this layout used before, with its pairs, if the table is
    // provably intact: of this layout, version, kind and size, no change in
    // flight when its last writer ended (TableHeader::changing clear, the
    // sequence even), and every slot, entry and counter consistent
    // (verify()). Anything else is formatted afresh, as the constructor
    // above does, and adoption() says so. `alive` stays clear until
    // publish_alive(), as for a new table.
    struct KeepData {};
    SharedTableWriter(UniqueFd segment_fd, std::string segment_name, std::size_t size, TableKind kind, KeepData);
    Adoption adoption() const { return adoption_; }
    // Why an adopted table was discarded ("a write was in flight").
    const std::string& discarded_why() const { return discarded_why_; }
    // A structural check of the whole table: every slot's marker or offset,
    // every entry inside the reserved pages, no key twice, and the header's
    // counters equal to what the slots hold. Empty if it holds, else the
    // first fault found. O(slots); for KEEP's adoption and for tests.
    std::optional<std::string> verify() const;
    // Clears `alive`. A writer that created its segment by name then removes
    // the name, but only if it still refers to the object it created (never
    // a segment that took the name since); an adopting writer leaves the
    // name to its creator.
    ~SharedTableWriter();
    SharedTableWriter(const SharedTableWriter&) = delete;
    SharedTableWriter& operator=(const SharedTableWriter&) = delete;

    // The writer keeps expiry times (layout::Entry::expires_at) but applies
    // none: every pair it holds is answered here, expired or not. Whoever
    // owns the table decides when one is gone (a bucket's BucketMap deletes
    // it lazily and actively, as Redis); direct readers never see one
    // (SharedTableReader compares the time itself).

    // The value stays valid until the next change.
    std::optional<std::string_view> get(std::string_view key) const;
    bool contains(std::string_view key) const { return get(key).has_value(); }
    struct Pair {
        std::string_view value;
        std::uint64_t expires_at; // layout::never_expires, or Unix time in ms
    };
    std::optional<Pair> find(std::string_view key) const;

    enum class SetResult { stored, full };
    // Stores the pair with expiry time `expires_at` (none by default): a
    // pair with one always lives in a heap entry, which holds the time. On
    // `full` the table is unchanged: an old value is still there. `value`
    // may be a view of this key's own current value (the new copy is made
    // before the old one is let go).
    SetResult set(std::string_view key, std::string_view value, std::uint64_t expires_at = layout::never_expires);
    // Changes the expiry time of `key` (never_expires: it has none): in
    // place, one 8-byte store, when the pair is in an entry, whatever its
    // size; a small pair in its slot moves to an entry first, which may not
    // fit (`full`, nothing changed). A key that is not there: nothing to do.
    SetResult set_expiry(std::string_view key, std::uint64_t expires_at);
    bool erase(std::string_view key);
    // Removes every pair in one short write window: a fresh, small index is
    // switched in, then the old index and its entries are freed after the
    // window closes. With no heap left even for that small index, the old
    // index is wiped in place instead (still one window). Never fails.
    void clear();

    class Batch;
    // Opens a batch: one write window, opened by its first change and open
    // until the batch is committed or dropped (see Batch below). While one is
    // open, set, erase and clear on the writer itself join it (they open no
    // window of their own and are undone with it), and a batch begun inside
    // it is nested: a savepoint whose rollback undoes only its own changes,
    // whose commit leaves them to the outer batch. So a transaction's EXEC
    // can open a batch and run each queued command's handler unchanged, MSET
    // included. Batches end in the reverse order of their beginning.
    Batch begin_batch();

    std::uint64_t size() const;
    std::uint64_t bytes() const;
    // Keys with an expiry time (expired ones included, until they go).
    std::uint64_t expiring() const;
    // The segment's size: no pair larger than this can ever be stored.
    std::uint64_t segment_size() const;
    const std::string& segment_name() const { return segment_name_; }
    // Every pair, with its expiry time.
    void for_each(const std::function<void(std::string_view key, std::string_view value, std::uint64_t expires_at)>& visit) const;
    // One step of a SCAN (Redis's dictScan over the index's home slots): visits
    // every key whose home slot (hash & mask) is `cursor`'s, walking that
    // home's probe run, and returns the next cursor, 0 once the scan is done.
    // The cursor advances in reverse binary order, so a key present for the
    // whole scan is visited at least once even if the index doubles (or is
    // replaced by a smaller one) between steps: its home in the larger index
    // shares the low bits the cursor has not yet moved past. Keys may be
    // visited twice.
    std::uint64_t scan_step(std::uint64_t cursor, const std::function<void(std::string_view key, std::uint64_t expires_at)>& visit) const;
    // A key picked from the slot `random` lands on (the first live slot from
    // there on, wrapping): not uniform where keys cluster, as Redis's own
    // RANDOMKEY is not. Nothing if the table is empty.
    std::optional<std::string_view> random_key(std::uint64_t random) const;
    // One step of active expiry (Redis's activeExpireCycle walks its expires
    // table with a cursor likewise): looks at `slots` slots of the index
    // from `cursor` on (wrapping), appends to `expired` every key whose
    // expiry time is past `now`, adds to `sampled` how many keys with an
    // expiry time it saw, lowers `earliest` to the earliest time still
    // ahead among them, and returns where the next step starts. Changes
    // nothing: the owner deletes what it was given.
    std::uint64_t expired_keys(std::uint64_t cursor, std::uint64_t slots, std::uint64_t now,
        std::vector<std::string>& expired, std::uint64_t& sampled, std::uint64_t& earliest) const;
    // Slots in the index (a sweep of every key takes this many).
    std::uint64_t capacity() const;

    // Readers may now trust the table (the owner is serving).
    void publish_alive();
    // The cluster fence (TableHeader::write_deadline_ns): set by the owner
    // at start, moved by registryd afterwards.
    void set_write_deadline(std::int64_t steady_ns);
    std::int64_t write_deadline() const;

    // The segment's descriptor, for its owner to flock(2) for its whole life
    // (registryd does so on its name table: see registryd/leftovers.h).
    int descriptor() const;
    // The writer's own mapping of the segment, for a reader in this very
    // process (SharedTableReader::on_mapping: tests under ThreadSanitizer).
    const Mapping& mapping() const;

private:
    struct Segment;
    struct Savepoint {
        std::size_t undo = 0, free_on_commit = 0, free_on_rollback = 0, cleared = 0, expiry_undo = 0;
        std::uint64_t keys = 0, bytes = 0, expiring = 0, used_slots = 0, index_offset = 0, capacity = 0;
        int depth = 0;
    };
    void finish_batch(const Savepoint& savepoint, bool keep);
    std::string segment_name_;
    bool owns_name_;
    std::unique_ptr<Segment> segment_;
    Adoption adoption_ = Adoption::formatted;
    std::string discarded_why_;
};

// A batch of changes made in ONE write window of the seqlock: the sequence
// is made odd by the batch's first change and even again by commit(), so a
// direct reader (SharedTableReader) sees the table as it was before the batch
// or as it is after it, never in between. A batch that changes nothing (an
// EXEC of GETs) leaves the sequence alone: readers never wait on it. MSET,
// MSETNX, RENAME, GETDEL-style pairs and FLUSHDB use it; a transaction's
// EXEC can run its whole body in one.
//
//     auto batch = writer.begin_batch();
//     if (batch.set("a", "1") == SetResult::full || batch.set("b", "2") == SetResult::full)
//         return;          // dropped uncommitted: rolled back, nothing happened
//     batch.commit();      // both visible at once
//
// All or nothing, by an undo log rather than a room check beforehand (the
// heap's fit cannot be predicted without allocating): every slot line is
// saved (in this process's memory) before each change, and every expiry
// time changed in place in an entry, the header counters and the index's
// offset and capacity are saved at the start, and nothing is freed until the
// end. An entry replaced or erased, or an index replaced (grown or cleared),
// is freed at commit; an entry or index made inside the batch is freed on
// rollback. A batch dropped without commit() (a `full` in the middle, an
// exception) restores every saved line and counter and then closes the
// window: readers never saw any of it. Memory freed by a batch is therefore
// reusable only after it, so a batch that rewrites the same large value many
// times needs room for every copy.
//
// A reader that meets the odd sequence spins, then yields, and after its
// patience (200 ms) answers "busy" rather than wait (kvctl then asks the
// socket): a long batch delays direct readers, it never misleads them.
// Only the writer's thread uses a batch; reads through the writer (get)
// see the batch's changes at once.
class SharedTableWriter::Batch {
public:
    Batch(Batch&& other) noexcept
        : writer_(std::exchange(other.writer_, nullptr))
        , savepoint_(other.savepoint_)
    {
    }
    Batch& operator=(Batch&&) = delete;
    Batch(const Batch&) = delete;
    // Rolls back unless committed.
    ~Batch();

    // As SharedTableWriter's. On `full` that one change is not made; the
    // earlier ones in the batch still are, until the batch is dropped.
    SetResult set(std::string_view key, std::string_view value, std::uint64_t expires_at = layout::never_expires)
    {
        return writer_->set(key, value, expires_at);
    }
    SetResult set_expiry(std::string_view key, std::uint64_t expires_at) { return writer_->set_expiry(key, expires_at); }
    bool erase(std::string_view key) { return writer_->erase(key); }
    void clear() { writer_->clear(); }
    std::optional<std::string_view> get(std::string_view key) const { return writer_->get(key); }

    // The outermost batch: closes the window, so every change becomes visible
    // at once, then frees what the batch replaced. A nested one: its changes
    // stay, to be committed or undone with the outer batch.
    void commit();
    // Undoes every change made since this batch began; the outermost one then
    // closes the window (readers saw nothing). The destructor's job, made explicit.
    void rollback();

private:
    friend class SharedTableWriter;
    Batch(SharedTableWriter* writer, Savepoint savepoint) : writer_(writer), savepoint_(savepoint) {}
    SharedTableWriter* writer_;
    Savepoint savepoint_;
};

} // namespace kv
