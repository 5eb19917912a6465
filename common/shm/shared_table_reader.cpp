#include "shared_table_reader.h"

#include "segment_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <sched.h>

#include <chrono>
#include <algorithm>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <utility>

#include "fault_guard.h"
#include "mapped_table.h"
#include "process_identity.h"
#include "unique_fd.h"

namespace kv {

using layout::deleted_slot;
using layout::empty_slot;
using layout::Entry;
using layout::inline_capacity;
using layout::inline_slot;
using layout::load_shared;
using layout::load_shared_bytes;
using layout::shared_bytes_equal;
using layout::Slot;

namespace {

// A reader that keeps meeting writes in progress gives up after this long
// (the writer may have been preempted mid-write, or have died there).
constexpr auto read_patience = std::chrono::milliseconds(200);

// Paces a reader's retries: spins at first, then yields the CPU (a writer
// preempted mid-write needs it), and says when patience has run out. Costs
// nothing, not even a clock read, on the first attempts.
class Retry {
public:
    bool again()
    {
        if (++attempts_ < 64)
            return true;
        if (attempts_ == 64)
            deadline_ = std::chrono::steady_clock::now() + read_patience;
        ::sched_yield();
        return std::chrono::steady_clock::now() < deadline_;
    }

private:
    unsigned attempts_ = 0;
    std::chrono::steady_clock::time_point deadline_;
};

// The index as one read sees it: where it is and how big, loaded once
// from the header and checked, with the bounds every later step keeps to.
struct IndexView {
    const Slot* slots = nullptr;
    std::uint64_t mask = 0;        // capacity - 1
    std::uint64_t limit = 0;       // nothing is followed past this offset
    std::uint64_t table_bytes = 0; // nor is more copied than the table holds
};

// Every shared length and offset is loaded once (load_shared or an atomic),
// checked, and only then followed: what we read may be a write in progress,
// or garbage, and only the sequence can tell. The key and value bytes are
// compared and copied within bounds checked here, read as relaxed atomics
// too (a plain memcpy racing a write would be a data race): a small pair's
// as one private copy of its slot (SlotLine), a large one's with
// load_shared_bytes. A copy that raced a write is thrown away. Nothing is
// followed past the writer's reserved limit: below it every page exists,
// above it touching one may allocate it (SIGBUS with /dev/shm full).
//
// Fills `view`, or says what the read answers instead: nullopt to start
// over, gone for a corrupt table.
template <typename Unchanged>
bool load_index(const char* base, std::size_t size, const TableHeader& header, Unchanged& unchanged, IndexView& view,
    std::optional<SharedTableReader::Result>& instead)
{
    const std::uint64_t limit = std::min<std::uint64_t>(size, header.reserved_limit.load(std::memory_order_acquire));
    const std::uint64_t index_offset = header.index_offset.load(std::memory_order_relaxed);
    const std::uint64_t capacity = header.capacity.load(std::memory_order_relaxed);
    // The pair is switched in one write window: torn, it may name the
    // new index with the old capacity, or memory freed since. Re-check
    // before following it.
    if (!unchanged()) {
        instead = std::nullopt;
        return false;
    }
    if (capacity == 0 || (capacity & (capacity - 1)) || index_offset < table_header_size
        || index_offset % alignof(Slot) != 0 || index_offset > limit
        || capacity > (limit - index_offset) / sizeof(Slot)) {
        instead = SharedTableReader::Result::gone; // if consistent, a corrupt table: not one of ours any more
        return false;
    }
    view.slots = reinterpret_cast<const Slot*>(base + index_offset);
    view.mask = capacity - 1;
    view.limit = limit;
    view.table_bytes = header.bytes.load(std::memory_order_relaxed);
    return true;
}

// One key's probe of the index (hashed to `tag`): found (its value copied
// into `value`, if given) or missing; nullopt to start over; gone for a
// corrupt table.
template <typename Unchanged>
std::optional<SharedTableReader::Result> probe(const char* base, const IndexView& view, std::string_view key, std::uint64_t tag,
    std::string* value, Unchanged& unchanged)
{
    using Result = SharedTableReader::Result;
    const Slot* const index = view.slots;
    const std::uint64_t mask = view.mask;
    const std::uint64_t limit = view.limit;
    const std::uint64_t table_bytes = view.table_bytes;
    // A pair out of bounds: garbage read during a write (start over), or,
    // if no write happened, a corrupt table (gone, as above).
    auto corrupt = [&]() -> std::optional<Result> {
        if (unchanged())
            return Result::gone;
        return std::nullopt;
    };
    for (std::uint64_t probe = 0, i = tag & mask; probe <= mask; ++probe, i = (i + 1) & mask) {
        const std::uint64_t offset = index[i].entry.load(std::memory_order_relaxed);
        if (offset == empty_slot)
            break;
        if (offset == deleted_slot || index[i].tag.load(std::memory_order_relaxed) != tag)
            continue;
        if (offset == inline_slot) {
            // A small pair, in the slot itself: the hot path. One
            // private copy of the slot's sizes and bytes (six relaxed
            // word loads, see SlotLine), then everything from the copy:
            // no shared byte is read twice, and no size is used
            // unchecked. Racy: the writer may be storing these bytes
            // (relaxed atomics too, so no data race, and TSan sees
            // none). Relaxed is enough: the acquire fence in
            // unchanged() keeps these loads before its re-read of the
            // sequence, so if any of them saw a store of a write that
            // began after `before`, the sequence has moved and the
            // answer is thrown away; one that began and ended before
            // `before` is visible through the acquire load of it. The
            // six words are inside the slot, which the index bounds
            // above cover.
            const layout::SlotLine line = layout::load_slot_line(index[i]);
            const std::uint64_t key_size = line.key_size(), value_size = line.value_size();
            if (key_size + value_size > inline_capacity)
                return corrupt();
            if (key_size != key.size() || !layout::small_bytes_equal(line.pair(), key.data(), key_size))
                continue;
            if (value) {
                // At most 46 bytes, from private memory: no check
                // first. (resize is a call even when the size is
                // already right, as it is for a reader that keeps
                // reading values of one size into one string.)
                if (value->size() != value_size)
                    value->resize(value_size);
                layout::small_bytes_copy(value->data(), line.pair() + key_size, value_size);
            }
            return Result::found;
        }
        // A larger pair, in a heap entry: its sizes loaded once and
        // checked, its bytes compared and copied as relaxed word loads
        // (load_shared_bytes).
        if (offset < table_header_size || offset % alignof(Entry) != 0 || offset > limit
            || limit - offset < sizeof(Entry))
            return corrupt();
        const auto* e = reinterpret_cast<const Entry*>(base + offset);
        const std::uint64_t key_size = load_shared(e->key_size);
        const std::uint64_t value_size = load_shared(e->value_size);
        if (key_size + value_size > limit - offset - sizeof(Entry))
            return corrupt();
        const char* bytes = base + offset + sizeof(Entry);
        if (key_size != key.size() || !shared_bytes_equal(bytes, key))
            continue;
        // A pair past its expiry time is not there, whether or not its
        // owner has deleted it yet (it does so lazily, and in steps).
        // The clock is read only for a pair that has a time.
        const std::uint64_t expires_at = load_shared(e->expires_at);
        if (expires_at != layout::never_expires && layout::has_expired(expires_at, layout::unix_time_ms()))
            return Result::missing;
        if (value) {
            if (value_size > table_bytes)
                return corrupt();
            // A large copy is worth a check first: its size may be garbage.
            if (value_size > inline_capacity && !unchanged())
                return std::nullopt;
            value->resize(value_size);
            load_shared_bytes(value->data(), bytes + key_size, value_size);
        }
        return Result::found;
    }
    return Result::missing;
}

} // namespace

std::unique_ptr<SharedTableReader> SharedTableReader::open(const std::string& segment_name, TableKind kind, uid_t expected_owner)
{
    install_fault_handler();
    UniqueFd fd = open_segment(segment_name, Access::read_only); // no link followed, no FIFO waited on
    if (!fd)
        return nullptr;
    const auto info = stat_table_file(fd.get());
    if (!info || info->st_uid != expected_owner || (info->st_mode & (S_IRWXG | S_IRWXO)) != 0)
        return nullptr;
    Mapping mapping = map_table(fd.get(), *info, MapExtent::whole_segment, Access::read_only);
    if (!mapping)
        return nullptr;
    // The owner's uid may truncate the segment while we look at it: check_table is guarded.
    ProcessIdentity owner;
    const bool trusted = check_table(mapping, static_cast<std::uint64_t>(info->st_size), [&](const TableHeader& header) {
        if (header.kind != kind || header.owner_pid <= 0)
            return false;
        owner.pid = header.owner_pid;
        owner.start_time = header.owner_start_time;
        return true;
    });
    // A table whose owner is not running (died before it could clear
    // `alive`, even if its pid now names another process or a zombie) is
    // not the truth: one check here, none per read.
    if (!trusted || !is_running(owner))
        return nullptr;
    const char* base = mapping.base();
    const std::size_t size = mapping.size();
    return std::unique_ptr<SharedTableReader>(new SharedTableReader(std::move(mapping), base, size, owner.pid));
}

std::unique_ptr<SharedTableReader> SharedTableReader::on_mapping(const Mapping& mapping, pid_t owner_pid)
{
    install_fault_handler();
    return std::unique_ptr<SharedTableReader>(new SharedTableReader(Mapping(), mapping.base(), mapping.size(), owner_pid));
}

SharedTableReader::SharedTableReader(Mapping mapping, const char* base, std::size_t size, pid_t owner_pid)
    : mapping_(std::move(mapping))
    , base_(base)
    , size_(size)
    , owner_pid_(owner_pid)
{
}

SharedTableReader::~SharedTableReader() = default;

bool SharedTableReader::alive() const
{
    bool alive = false;
    guarded_access(base_, size_, shrunk_, [&] {
        alive = reinterpret_cast<const TableHeader*>(base_)->alive.load(std::memory_order_acquire) == 1;
    });
    return alive && !shrunk_.load(std::memory_order_relaxed);
}

// The read side of the seqlock, in one place: `read` runs on what may be a
// write in progress, and its answer counts only if no write began or ended
// meanwhile and the owner is still serving. `read` may ask `unchanged()`
// whether that still holds (before it follows a pair it loaded, or copies a
// lot), and answers nullopt to start over. All of it runs guarded: a
// segment that shrank under us is `gone` (now and from then on), and what
// went away reads as zeros meanwhile, which `read` must get through like
// any garbage (see guarded_access).
template <typename Read>
SharedTableReader::Result SharedTableReader::consistent_read(Read read) const
{
    if (shrunk_.load(std::memory_order_relaxed))
        return Result::gone;
    Result result = Result::gone;
    guarded_access(base_, size_, shrunk_, [&] {
        const auto* header = reinterpret_cast<const TableHeader*>(base_);
        for (Retry retry; retry.again() && !shrunk_.load(std::memory_order_relaxed);) {
            if (header->alive.load(std::memory_order_acquire) != 1) {
                result = Result::gone;
                return;
            }
            const std::uint64_t before = header->sequence.load(std::memory_order_acquire);
            if (before & 1)
                continue; // a write is in progress
            auto unchanged = [&] {
                std::atomic_thread_fence(std::memory_order_acquire);
                return header->sequence.load(std::memory_order_relaxed) == before;
            };
            const std::optional<Result> attempt = read(*header, unchanged);
            if (attempt && unchanged()) {
                result = header->alive.load(std::memory_order_relaxed) == 1 ? *attempt : Result::gone;
                return;
            }
        }
        result = header->alive.load(std::memory_order_relaxed) == 1 ? Result::busy : Result::gone;
    });
    return shrunk_.load(std::memory_order_relaxed) ? Result::gone : result;
}

SharedTableReader::Result SharedTableReader::lookup(std::string_view key, std::string* value) const
{
    const std::uint64_t tag = hash_key(key);
    return consistent_read([&](const TableHeader& header, auto unchanged) -> std::optional<Result> {
        IndexView view;
        std::optional<Result> instead;
        if (!load_index(base_, size_, header, unchanged, view, instead))
            return instead;
        return probe(base_, view, key, tag, value, unchanged);
    });
}

SharedTableReader::Result SharedTableReader::get_many(std::span<const std::string_view> keys, std::span<std::string> values,
    std::span<Result> results) const
{
    // With a large table, each key costs a cache miss and a TLB miss on its
    // index slot, and one key's probe waits for its own. So the slots of a
    // group of keys are prefetched first, as each key is hashed, and probed
    // after: the misses overlap instead of following one another (as
    // hash joins do). Sixteen at a time: about what a core keeps in flight.
    constexpr std::size_t group = 16;
    if (values.size() != keys.size() || results.size() != keys.size())
        throw std::invalid_argument("get_many: keys, values and results must be the same size");
    return consistent_read([&](const TableHeader& header, auto unchanged) -> std::optional<Result> {
        IndexView view;
        std::optional<Result> instead;
        if (!load_index(base_, size_, header, unchanged, view, instead))
            return instead;
        std::uint64_t tags[group];
        for (std::size_t first = 0; first < keys.size(); first += group) {
            if (shrunk_.load(std::memory_order_relaxed))
                return std::nullopt; // the rest would only read zeros
            const std::size_t count = std::min(group, keys.size() - first);
            for (std::size_t i = 0; i < count; ++i) {
                tags[i] = hash_key(keys[first + i]);
                __builtin_prefetch(view.slots + (tags[i] & view.mask)); // never faults, whatever the address
            }
            for (std::size_t i = 0; i < count; ++i) {
                const std::optional<Result> result = probe(base_, view, keys[first + i], tags[i], &values[first + i], unchanged);
                if (!result || *result == Result::gone)
                    return result;
                results[first + i] = *result;
            }
        }
        return Result::found;
    });
}

SharedTableReader::Result SharedTableReader::get(std::string_view key, std::string& value) const
{
    return lookup(key, &value);
}

SharedTableReader::Result SharedTableReader::exists(std::string_view key) const { return lookup(key, nullptr); }

SharedTableReader::Result SharedTableReader::size(std::uint64_t& keys) const
{
    return consistent_read([&](const TableHeader& header, auto) -> std::optional<Result> {
        keys = header.keys.load(std::memory_order_relaxed);
        return Result::found;
    });
}

} // namespace kv
