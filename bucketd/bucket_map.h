// BucketMap: a bucket's key-value map, living in a shared-memory segment
// (a SharedTable) that this process formats and writes, and that clients on
// this machine read directly (SharedTableReader, in common/shared_table.h).
//
// Only the bucketd that owns the segment allocates in it (Boost 1.74 has no
// robust mutexes: a process killed inside the allocator would wedge every
// other user). Keys and values are plain bytes, NUL included.
//
// Expiry, as Redis's: a key may have an expiry time (Unix milliseconds,
// kept with the pair in the segment). Once it has passed, the key is gone
// for everyone at once: every lookup here deletes it first (lazy expiry,
// Redis's expireIfNeeded), expire_cycle() deletes expired keys in steps
// (active expiry, bucketd/active_expiry.h), and direct readers compare the
// time themselves, so none of them ever sees an expired key.
//
// WATCH: every change is told to the watchers of its key, as Redis's
// signalModifiedKey (a stored value, even an equal one; a key that was there
// and is erased or expires; every key there when cleared). A change that is
// not made (`full`, a key that was not there) touches nothing; inside a
// batch, the keys are told when the outermost batch commits, and a rolled
// back change is never told.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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
    // KEEP: adopts `segment_fd` with the pairs a bucket of the same name
    // left in it, if its table is provably intact; else formats it afresh
    // (SharedTableWriter's adopting constructor). adoption() says which.
    BucketMap(UniqueFd segment_fd, std::string segment_name, std::size_t size, SharedTableWriter::KeepData keep);
    SharedTableWriter::Adoption adoption() const { return table_.adoption(); }
    const std::string& discarded_why() const { return table_.discarded_why(); }
    // Tells readers the table is gone; removes the segment if it created it.
    ~BucketMap();
    BucketMap(const BucketMap&) = delete;
    BucketMap& operator=(const BucketMap&) = delete;

    // An expiry time: layout::never_expires, or Unix time in milliseconds.
    static constexpr std::uint64_t never_expires = layout::never_expires;
    // Now, as an expiry time (for new times: EX, EXPIRE...).
    static std::uint64_t now() { return layout::unix_time_ms(); }

    // Whether a key has expired is judged against one instant for a whole
    // command, and for a whole EXEC (Redis's fixed_time_expire): MGET k k
    // or a transaction never sees a key both there and gone. The instant is
    // read at the first question, so a command that meets no key with a time
    // reads no clock. Frozen while one of these lives; they nest.
    class FrozenClock {
    public:
        explicit FrozenClock(BucketMap& map) : map_(map)
        {
            if (map_.clock_freezes_++ == 0)
                map_.frozen_now_ = 0;
        }
        ~FrozenClock() { --map_.clock_freezes_; }
        FrozenClock(const FrozenClock&) = delete;
        FrozenClock& operator=(const FrozenClock&) = delete;

    private:
        BucketMap& map_;
    };

    // Lookups: each deletes the key first if it has expired. The value stays
    // valid until the next change to the map (a lookup of another key may
    // be one).
    std::optional<std::string_view> get(std::string_view key);
    bool contains(std::string_view key) { return get(key).has_value(); }
    // The key's value and expiry time (never_expires if it has none).
    std::optional<SharedTableWriter::Pair> find(std::string_view key);
    // Deletes the key if it has expired (WATCH and EXEC ask, as Redis's
    // isWatchedKeyExpired). True if it did.
    bool expire_if_needed(std::string_view key);

    enum class SetResult { stored, full };
    // Stores the pair with expiry time `expires_at`: as Redis's setKey, any
    // expiry time the key had goes, unless given again (SET ... KEEPTTL passes
    // the old one). On `full` the map is unchanged: the old value, if any, is
    // still there. `value` may be a view of the key's current value.
    SetResult set(std::string_view key, std::string_view value, std::uint64_t expires_at = never_expires);
    // Changes the expiry time of `key`, which must be there (never_expires:
    // it has none): in place, whatever the value's size, except for a
    // small pair without a time, which moves from its slot to an entry
    // (`full` if that does not fit, nothing changed).
    SetResult set_expiry(std::string_view key, std::uint64_t expires_at);
    // True if the key was there (an expired key was not: it is deleted all the same).
    bool erase(std::string_view key);

    // How many keys, and how many with an expiry time: expired ones included
    // until they are deleted, as Redis's DBSIZE and INFO count them.
    std::uint64_t size() const;
    std::uint64_t expiring() const { return table_.expiring(); }
    std::uint64_t bytes() const;
    std::uint64_t segment_size() const { return table_.segment_size(); }
    const std::string& segment_name() const { return table_.segment_name(); }
    // Keys deleted because they expired (INFO's expired_keys).
    std::uint64_t expired_keys() const { return expired_keys_; }

    // Every key not expired (deleting none: KEYS, as Redis's).
    void for_each_key(const std::function<void(std::string_view)>& visit);
    // See SharedTableWriter::scan_step; expired keys met are deleted, not visited.
    std::uint64_t scan_step(std::uint64_t cursor, const std::function<void(std::string_view)>& visit);
    // See SharedTableWriter::random_key; an expired key met is deleted and
    // another one picked (Redis's dbRandomKey).
    std::optional<std::string_view> random_key(std::uint64_t random);

    // Every pair gone, in one short window (FLUSHDB).
    void clear();

    // One cycle of active expiry (Redis's activeExpireCycle): deletes
    // expired keys found by walking the index from where the last cycle
    // stopped, at least `least_slots` slots of it unless the whole index is
    // smaller, and on while more than a tenth of the keys with an expiry
    // time it meets have expired, until `budget` is spent. A whole sweep of
    // the index learns the earliest time still ahead (as does every time
    // set since): until that time comes, a cycle walks nothing, so a bucket
    // with a few long-lived times among many keys costs nothing between
    // sweeps. Returns how many keys it deleted. Never called inside a batch.
    std::uint64_t expire_cycle(std::uint64_t least_slots, std::chrono::steady_clock::duration budget);

    // The sessions watching keys of this map (WATCH, MULTI/EXEC).
    KeyWatchers& watchers() { return watchers_; }

    // Changes that land together, in one write window (MSET, RENAME, an
    // EXEC): while a batch is open, set, erase and clear above join it;
    // dropped without commit() it undoes them all, and their keys' watchers
    // are never told. See SharedTableWriter::Batch.
    class Batch {
    public:
        Batch(Batch&& other) noexcept;
        Batch& operator=(Batch&&) = delete;
        ~Batch();
        void commit();

    private:
        friend class BucketMap;
        Batch(BucketMap& map, SharedTableWriter::Batch table_batch);
        BucketMap* map_;
        SharedTableWriter::Batch table_batch_;
        std::size_t touched_mark_;
    };
    Batch begin_batch();

    // Tells direct readers the bucket is serving (once it is ready).
    void publish_alive() { table_.publish_alive(); }
    // Cluster mode: true once the fence's deadline is less than
    // fence_margin away (writes are then refused: the margin covers the
    // moment between this check and the write); never outside a cluster.
    // Inside a OneFenceDecision, the answer it took.
    static constexpr std::int64_t fence_margin_ns = 50'000'000;
    void set_write_deadline(std::int64_t boot_ns) { table_.set_write_deadline(boot_ns); }
    bool writes_fenced() const
    {
        if (decided_fence_)
            return *decided_fence_;
        const std::int64_t deadline = table_.write_deadline();
        return deadline != 0 && fence_clock_ns() + fence_margin_ns > deadline;
    }
    // EXEC decides once for its whole body: all its writes run, or none.
    class OneFenceDecision {
    public:
        explicit OneFenceDecision(BucketMap& map) : map_(map) { map_.decided_fence_ = map_.writes_fenced(); }
        ~OneFenceDecision() { map_.decided_fence_.reset(); }
        OneFenceDecision(const OneFenceDecision&) = delete;
        OneFenceDecision& operator=(const OneFenceDecision&) = delete;

    private:
        BucketMap& map_;
    };

private:
    // The watchers of `key` are told now, or at the outermost commit.
    void touch(std::string_view key);
    bool erase_expired(std::string_view key);
    // A time was set: the next cycle may have work before it thought.
    void note_expiry(std::uint64_t expires_at);
    // Now, to judge expiry by: the frozen instant, if the clock is frozen.
    std::uint64_t expiry_clock();

    SharedTableWriter table_;
    std::optional<bool> decided_fence_; // inside a OneFenceDecision
    KeyWatchers watchers_;
    int open_batches_ = 0;
    std::vector<std::string> touched_; // keys changed by the open batches, to tell at commit
    std::uint64_t expired_keys_ = 0;
    // Active expiry's sweep: where the next cycle starts, how much of the
    // index (of this capacity) the sweep has walked, the earliest time it
    // has seen still ahead, and when the next key can be due at the soonest.
    static constexpr std::uint64_t never_due = ~std::uint64_t(0);
    std::uint64_t expiry_cursor_ = 0;
    std::uint64_t sweep_capacity_ = 0;
    std::uint64_t sweep_walked_ = 0;
    std::uint64_t sweep_earliest_ = never_due;
    std::uint64_t next_due_ = 0; // 0: unknown, so the first cycle walks
    int clock_freezes_ = 0;
    std::uint64_t frozen_now_ = 0; // 0: not read yet
};

} // namespace kv
