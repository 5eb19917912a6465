#include "shared_table_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <stdexcept>
#include <utility>
#include <vector>

#include <boost/interprocess/managed_external_buffer.hpp>

#include "mapping.h"
#include "process_identity.h"
#include "segment_file.h"
#include "system_error.h"

namespace kv {

namespace bip = boost::interprocess;

using layout::deleted_slot;
using layout::empty_slot;
using layout::Entry;
using layout::holds_entry;
using layout::inline_capacity;
using layout::inline_slot;
using layout::never_expires;
using layout::Slot;
using layout::store_shared;
using layout::store_shared_bytes;
using layout::zero_shared_bytes;

namespace {

constexpr std::uint64_t initial_capacity = 64;
// Pages creation touches are reserved, so a full /dev/shm is ENOSPC, not SIGBUS.
constexpr std::size_t reserved_at_creation = 64 * 1024;
// What the heap may touch beyond a block it hands out: block headers and the
// split-off free block's header.
constexpr std::uint64_t block_slack = 4096;
// So formatting never needs more backing than creation reserved: the first
// index cannot fail for want of /dev/shm pages, only for want of heap.
static_assert(table_header_size + initial_capacity * sizeof(Slot) + block_slack <= reserved_at_creation);

// No slot: find_slot's answer when the index has no free slot for a key.
constexpr std::uint64_t no_slot = ~0ULL;

// Every message of a writer that could not make its table says which segment and why.
[[noreturn]] void refuse(const std::string& name, const std::string& why)
{
    throw std::runtime_error("unable to create segment " + name + ": " + why);
}

} // namespace

struct SharedTableWriter::Segment {
    explicit Segment(UniqueFd segment_fd) : fd(std::move(segment_fd)) {}

    // Members in this order: the heap goes before the mapping, the mapping
    // before the descriptor.
    UniqueFd fd;
    Mapping mapping;
    bip::managed_external_buffer heap;
    char* base = nullptr; // mapping.base()
    TableHeader* header = nullptr;

    // `first_sequence`: where the seqlock's sequence starts (even): past the
    // last one a reader may have seen in this object, when it held a table.
    void format(const std::string& name, std::size_t size, TableKind kind, std::uint64_t first_sequence = 0);

    Slot* slots() const { return reinterpret_cast<Slot*>(base + header->index_offset.load(std::memory_order_relaxed)); }
    std::uint64_t capacity() const { return header->capacity.load(std::memory_order_relaxed); }
    Entry* entry(std::uint64_t offset) const { return reinterpret_cast<Entry*>(base + offset); }
    std::string_view slot_key(const Slot& slot) const
    {
        std::uint64_t offset = slot.entry.load(std::memory_order_relaxed);
        if (offset == inline_slot)
            return { slot.bytes, slot.key_size };
        return key_of(entry(offset));
    }
    std::string_view slot_value(const Slot& slot) const
    {
        std::uint64_t offset = slot.entry.load(std::memory_order_relaxed);
        if (offset == inline_slot)
            return { slot.bytes + slot.key_size, slot.value_size };
        return value_of(entry(offset));
    }
    std::uint64_t slot_expiry(const Slot& slot) const
    {
        std::uint64_t offset = slot.entry.load(std::memory_order_relaxed);
        return offset == inline_slot ? never_expires : entry(offset)->expires_at;
    }
    // A fresh index: every slot empty (all-zero bytes). Null if the heap has
    // no room for it, or /dev/shm no pages to back it.
    Slot* make_index(std::uint64_t capacity)
    {
        if (!reserve_for(capacity * sizeof(Slot)))
            return nullptr;
        void* memory = heap.allocate_aligned(capacity * sizeof(Slot), alignof(Slot), std::nothrow);
        if (memory) {
            note_block(memory, capacity * sizeof(Slot));
            // Readers may still be reading this memory as what it held before.
            zero_shared_bytes(static_cast<char*>(memory), capacity * sizeof(Slot));
        }
        return static_cast<Slot*>(memory);
    }

    // The segment is sparse, and touching a page when /dev/shm is full is a
    // SIGBUS. Before the heap may hand out `size` more bytes, the pages past
    // the highest block handed out so far are backed with posix_fallocate, a
    // little ahead: Boost's best fit carves new blocks from the start of the
    // free space above that mark, and holes below it were backed already. A
    // full /dev/shm is then a FULL reply, not a crash.
    bool reserve_for(std::size_t size)
    {
        const std::uint64_t needed = std::min<std::uint64_t>(header->size, high_water + size + block_slack);
        if (needed <= reserved_until)
            return true;
        // Ahead by a quarter of what is backed already, 64 KiB to 1 MiB at a time.
        const std::uint64_t step = std::clamp<std::uint64_t>(reserved_until / 4, 64 * 1024, 1 << 20);
        std::uint64_t target = std::min<std::uint64_t>(header->size, std::max<std::uint64_t>(needed, reserved_until + step));
        if (::posix_fallocate(fd.get(), static_cast<off_t>(reserved_until), static_cast<off_t>(target - reserved_until)) != 0) {
            target = needed;
            if (::posix_fallocate(fd.get(), static_cast<off_t>(reserved_until), static_cast<off_t>(target - reserved_until)) != 0)
                return false;
        }
        reserved_until = target;
        // Release: a reader that sees the new limit sees pages that exist.
        header->reserved_limit.store(reserved_until, std::memory_order_release);
        return true;
    }
    void note_block(const void* block, std::size_t size) { high_water = std::max<std::uint64_t>(high_water, offset_of(block) + size); }

    std::uint64_t reserved_until = 0; // bytes from the start backed by /dev/shm pages
    std::uint64_t high_water = 0;     // end of the highest block handed out
    static std::string_view key_of(const Entry* e) { return { reinterpret_cast<const char*>(e + 1), e->key_size }; }
    static std::string_view value_of(const Entry* e)
    {
        return { reinterpret_cast<const char*>(e + 1) + e->key_size, e->value_size };
    }
    std::uint64_t offset_of(const void* p) const { return static_cast<std::uint64_t>(static_cast<const char*>(p) - base); }

    struct SlotSearch {
        std::uint64_t slot;
        bool found;
    };
    // Where `key` is (found), or else the first free slot for it: the first
    // tombstone on its probe path, or the empty slot that ends the path;
    // no_slot if the index has neither.
    SlotSearch find_slot(std::string_view key, std::uint64_t tag) const
    {
        const std::uint64_t mask = capacity() - 1;
        std::uint64_t free_slot = no_slot;
        Slot* index = slots();
        for (std::uint64_t probe = 0, i = tag & mask; probe <= mask; ++probe, i = (i + 1) & mask) {
            std::uint64_t offset = index[i].entry.load(std::memory_order_relaxed);
            if (offset == empty_slot)
                return { free_slot != no_slot ? free_slot : i, false };
            if (offset == deleted_slot) {
                if (free_slot == no_slot)
                    free_slot = i;
                continue;
            }
            if (index[i].tag.load(std::memory_order_relaxed) == tag && slot_key(index[i]) == key)
                return { i, true };
        }
        return { free_slot, false };
    }

    // The open batches' undo log (SharedTableWriter::Batch): what to put back
    // and what to free, either way. Kept across batches so that their
    // vectors keep their capacity.
    struct UndoLine {
        std::uint64_t index_offset; // which index the slot belongs to
        std::uint64_t slot;
        char line[sizeof(Slot)];
    };
    struct BatchLog {
        int depth = 0; // open batches
        bool window_open = false; // the batches' window: opened by their first change
        std::vector<UndoLine> undo;
        std::vector<std::uint64_t> free_on_commit;   // offsets of entries and indexes
        std::vector<std::uint64_t> free_on_rollback; // made inside the batch
        std::vector<std::pair<std::uint64_t, std::uint64_t>> cleared; // indexes (offset, capacity) whose entries go at commit
        std::vector<std::pair<std::uint64_t, std::uint64_t>> expiry_undo; // (entry offset, expires_at before) of times changed in place
    } log;
    bool in_batch() const { return log.depth > 0; }

    // A change outside a batch gets a window of its own. Inside one, the
    // first change opens the batch's window, which stays open until the
    // outermost batch ends: a batch that changes nothing (an EXEC of GETs)
    // never makes a reader wait.
    void open_window()
    {
        if (in_batch() && log.window_open)
            return;
        if (in_batch())
            mark(); // the batch's: held until its last free (finish_batch)
        begin_write();
        log.window_open = in_batch();
    }
    void close_window()
    {
        if (!in_batch())
            end_write();
    }
    // Before slot `slot` of the current index changes: its line, for a rollback.
    void save_line(std::uint64_t slot)
    {
        if (!in_batch())
            return;
        UndoLine& undo = log.undo.emplace_back();
        undo.index_offset = header->index_offset.load(std::memory_order_relaxed);
        undo.slot = slot;
        std::memcpy(undo.line, static_cast<const void*>(&slots()[slot]), sizeof(Slot));
    }
    // A block (entry or index) nothing refers to any more: freed now, or at
    // the batch's commit (a rollback makes it reachable again).
    void release(std::uint64_t offset)
    {
        if (in_batch())
            log.free_on_commit.push_back(offset);
        else
            heap.deallocate(base + offset);
    }
    // A block made now: a rollback frees it.
    void made(std::uint64_t offset)
    {
        if (in_batch())
            log.free_on_rollback.push_back(offset);
    }
    // Frees every entry an index still refers to, then the index.
    void free_index_and_entries(std::uint64_t offset, std::uint64_t capacity)
    {
        const Slot* index = reinterpret_cast<const Slot*>(base + offset);
        for (std::uint64_t i = 0; i < capacity; ++i) {
            std::uint64_t entry_offset = index[i].entry.load(std::memory_order_relaxed);
            if (holds_entry(entry_offset))
                heap.deallocate(base + entry_offset);
        }
        heap.deallocate(base + offset);
    }

    // The change mark (TableHeader::changing), counted so that nested
    // changes (set inside set_expiry, every change inside a batch) set it
    // once and clear it once. What must hold is only an order: the mark is
    // stored before the change's first store and cleared after its last, for
    // whoever looks after this process was killed at any instruction. The
    // release fence and the release store give that order (on x86-64 they
    // only stop the compiler from moving stores: its stores are seen in
    // program order).
    int marks = 0;
    void mark()
    {
        if (marks++ == 0) {
            header->changing.store(1, std::memory_order_relaxed);
            std::atomic_thread_fence(std::memory_order_release);
        }
    }
    void unmark()
    {
        if (--marks == 0)
            header->changing.store(0, std::memory_order_release);
    }
    struct Marked {
        explicit Marked(Segment& segment) : segment(segment) { segment.mark(); }
        ~Marked() { segment.unmark(); }
        Segment& segment;
    };

    std::optional<std::string> adopt(const std::string& name, std::size_t size, TableKind kind);
    std::optional<std::string> verify(std::uint64_t* used = nullptr) const;

    void begin_write()
    {
        header->sequence.store(header->sequence.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_release);
    }
    void end_write()
    {
        header->sequence.store(header->sequence.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    }

    Entry* make_entry(std::string_view key, std::string_view value, std::uint64_t expires_at)
    {
        const std::size_t size = sizeof(Entry) + key.size() + value.size();
        if (!reserve_for(size))
            return nullptr;
        void* memory = heap.allocate(size, std::nothrow);
        if (!memory)
            return nullptr;
        note_block(memory, size);
        auto* e = static_cast<Entry*>(memory);
        // Not linked yet, but a reader that raced a free may still be
        // reading this memory as the entry it was: shared stores.
        store_shared(e->key_size, static_cast<std::uint32_t>(key.size()));
        store_shared(e->value_size, static_cast<std::uint32_t>(value.size()));
        store_shared(e->expires_at, expires_at);
        store_shared_bytes(reinterpret_cast<char*>(e + 1), key.data(), key.size());
        store_shared_bytes(reinterpret_cast<char*>(e + 1) + key.size(), value.data(), value.size());
        return e;
    }

    // Keeps the index at most 70% full (live entries plus tombstones) by
    // building a new one and switching to it in one write. False if there is
    // no room for the new index.
    bool reserve_slot(std::uint64_t used_after)
    {
        if (used_after * 10 <= capacity() * 7)
            return true;
        std::uint64_t live = header->keys.load(std::memory_order_relaxed);
        std::uint64_t new_capacity = capacity();
        while ((live + 1) * 10 > new_capacity * 5)
            new_capacity *= 2;
        Slot* fresh = make_index(new_capacity);
        if (!fresh)
            return false;
        Slot* old = slots();
        const std::uint64_t old_capacity = capacity();
        for (std::uint64_t i = 0; i < old_capacity; ++i) {
            std::uint64_t offset = old[i].entry.load(std::memory_order_relaxed);
            if (offset == empty_slot || offset == deleted_slot)
                continue;
            std::uint64_t tag = old[i].tag.load(std::memory_order_relaxed);
            std::uint64_t j = tag & (new_capacity - 1);
            while (fresh[j].entry.load(std::memory_order_relaxed) != empty_slot)
                j = (j + 1) & (new_capacity - 1);
            // Nobody reads the new index as an index yet, but a reader that
            // raced a free may still read this memory as what it was.
            store_shared_bytes(reinterpret_cast<char*>(&fresh[j]), reinterpret_cast<const char*>(&old[i]), sizeof(Slot));
        }
        made(offset_of(fresh));
        open_window();
        header->index_offset.store(offset_of(fresh), std::memory_order_relaxed);
        header->capacity.store(new_capacity, std::memory_order_relaxed);
        close_window();
        used_slots = live;
        release(offset_of(old));
        return true;
    }

    std::uint64_t used_slots = 0; // live entries plus tombstones; the writer's own count
};

// Sizes, reserves and maps the empty object `fd` is open on, and lays a
// table out in it, owned by this process. Every failure names the segment
// and says why.
void SharedTableWriter::Segment::format(const std::string& name, std::size_t size, TableKind kind, std::uint64_t first_sequence)
{
    if (size < table_header_size + reserved_at_creation)
        refuse(name, "size " + std::to_string(size) + " is below the "
                + std::to_string((table_header_size + reserved_at_creation) / 1024) + " KiB minimum");
    struct stat info;
    check(::fstat(fd.get(), &info), "unable to inspect segment", name);
    if (!S_ISREG(info.st_mode) || info.st_size != 0)
        throw std::runtime_error("unable to adopt segment " + name + ": it is not an empty shared-memory object");
    check(::ftruncate(fd.get(), static_cast<off_t>(size)), "unable to size segment", name);
    // Sparse: /dev/shm pages are taken when touched, and touching one when
    // /dev/shm is full is a SIGBUS. Reserve what formatting touches (the
    // header, Boost's bookkeeping, the first index, its end marker in the last page).
    int reserve_error = ::posix_fallocate(fd.get(), 0, static_cast<off_t>(reserved_at_creation));
    if (reserve_error == 0)
        reserve_error = ::posix_fallocate(fd.get(), static_cast<off_t>(size - 4096), 4096);
    if (reserve_error != 0)
        throw SystemError("unable to reserve segment", name, reserve_error);
    mapping = Mapping::map(fd.get(), size, Access::read_write, "segment " + name);
    base = mapping.base();
    const ProcessIdentity owner = self_identity();
    header = new (base) TableHeader {};
    // Marked until the table is whole: a bucketd killed while it formats
    // leaves nothing a KEEP restart would adopt.
    mark();
    header->sequence.store(first_sequence, std::memory_order_relaxed);
    header->magic = TableHeader::expected_magic;
    header->version = TableHeader::expected_version;
    header->kind = kind;
    header->owner_pid = owner.pid;
    header->owner_start_time = owner.start_time;
    header->size = size;
    try {
        heap = bip::managed_external_buffer(bip::create_only, base + table_header_size, size - table_header_size);
    } catch (const std::exception& error) {
        refuse(name, "no heap can be laid out in its " + std::to_string(size - table_header_size) + " bytes: " + error.what());
    }
    reserved_until = reserved_at_creation;
    header->reserved_limit.store(reserved_until, std::memory_order_relaxed);
    high_water = table_header_size;
    // Cannot fail for want of /dev/shm pages (see the static_assert above).
    Slot* slots = make_index(initial_capacity);
    if (!slots)
        refuse(name, "no room for its first index (size " + std::to_string(size) + ")");
    header->index_offset.store(offset_of(slots), std::memory_order_relaxed);
    header->capacity.store(initial_capacity, std::memory_order_relaxed);
    unmark(); // a release store: everything above comes first
}

SharedTableWriter::SharedTableWriter(std::string segment_name, std::size_t size, TableKind kind)
    : segment_name_(std::move(segment_name))
    , owns_name_(true)
{
    auto segment = std::make_unique<Segment>(create_segment(segment_name_));
    try {
        segment->format(segment_name_, size, kind);
    } catch (...) {
        remove_segment_if_same(segment_name_, segment->fd.get());
        throw;
    }
    segment_ = std::move(segment);
}

SharedTableWriter::SharedTableWriter(UniqueFd segment_fd, std::string segment_name, std::size_t size, TableKind kind)
    : segment_name_(std::move(segment_name))
    , owns_name_(false)
{
    // It may have been inherited across exec: close-on-exec from now on, like every descriptor kv holds.
    check(::fcntl(segment_fd.get(), F_SETFD, FD_CLOEXEC), "unable to set close-on-exec on segment", segment_name_);
    auto segment = std::make_unique<Segment>(std::move(segment_fd));
    segment->format(segment_name_, size, kind);
    segment_ = std::move(segment);
}

SharedTableWriter::SharedTableWriter(UniqueFd segment_fd, std::string segment_name, std::size_t size, TableKind kind, KeepData)
    : segment_name_(std::move(segment_name))
    , owns_name_(false)
{
    check(::fcntl(segment_fd.get(), F_SETFD, FD_CLOEXEC), "unable to set close-on-exec on segment", segment_name_);
    auto segment = std::make_unique<Segment>(std::move(segment_fd));
    auto why = segment->adopt(segment_name_, size, kind);
    if (!why) {
        adoption_ = Adoption::kept;
        segment_ = std::move(segment);
        return;
    }
    // Nothing of it can be trusted: start over in the same object. A reader
    // that still maps it must never see a sequence it saw before (it would
    // take a read across the change for a clean one): the new table's
    // sequence starts past the old one's.
    std::uint64_t first_sequence = 0;
    if (segment->header)
        first_sequence = (segment->header->sequence.load(std::memory_order_relaxed) | 1) + 1;
    UniqueFd fd = std::move(segment->fd);
    segment.reset();
    if (!why->empty()) {
        adoption_ = Adoption::discarded;
        discarded_why_ = *why;
        check(::ftruncate(fd.get(), 0), "unable to empty segment", segment_name_);
    }
    segment = std::make_unique<Segment>(std::move(fd));
    segment->format(segment_name_, size, kind, first_sequence);
    segment_ = std::move(segment);
}

// Takes over the table a writer left in this object: nullopt once adopted;
// else why not ("" if the object is empty: there was nothing to keep).
std::optional<std::string> SharedTableWriter::Segment::adopt(const std::string& name, std::size_t size, TableKind kind)
{
    struct stat info;
    check(::fstat(fd.get(), &info), "unable to inspect segment", name);
    if (!S_ISREG(info.st_mode))
        throw std::runtime_error("unable to adopt segment " + name + ": it is not a shared-memory object");
    if (info.st_size == 0)
        return std::string();
    if (static_cast<std::uint64_t>(info.st_size) != size || size < table_header_size + reserved_at_creation)
        return "its size is " + std::to_string(info.st_size) + " bytes, not " + std::to_string(size);
    // Its first pages must be backed before any is read: a writer killed
    // between sizing and reserving them left holes, and reading a hole of
    // a full /dev/shm is a SIGBUS.
    if (static_cast<std::uint64_t>(info.st_blocks) * 512 < reserved_at_creation)
        return std::string("it was never completely made");
    mapping = Mapping::map(fd.get(), size, Access::read_write, "segment " + name);
    base = mapping.base();
    header = reinterpret_cast<TableHeader*>(base);
    if (header->magic != TableHeader::expected_magic || header->version != TableHeader::expected_version
        || header->kind != kind || header->size != size)
        return std::string("it does not hold a table of this layout and version");
    if (header->changing.load(std::memory_order_acquire) != 0 || header->sequence.load(std::memory_order_acquire) % 2 != 0)
        return std::string("a write was in flight");
    reserved_until = header->reserved_limit.load(std::memory_order_acquire);
    if (reserved_until < reserved_at_creation || reserved_until > size)
        return "its reserved limit " + std::to_string(reserved_until) + " is out of bounds";
    try {
        heap = bip::managed_external_buffer(bip::open_only, base + table_header_size, size - table_header_size);
    } catch (const std::exception& error) {
        return std::string("its heap cannot be opened: ") + error.what();
    }
    // Every block handed out lies below what was reserved for it.
    high_water = reserved_until;
    if (auto fault = verify(&used_slots))
        return "its table is inconsistent: " + *fault;
    const ProcessIdentity owner = self_identity();
    header->alive.store(0, std::memory_order_relaxed);
    header->owner_pid = owner.pid;
    header->owner_start_time = owner.start_time;
    std::atomic_thread_fence(std::memory_order_release);
    return std::nullopt;
}

std::optional<std::string> SharedTableWriter::Segment::verify(std::uint64_t* used) const
{
    const std::uint64_t limit = header->reserved_limit.load(std::memory_order_relaxed);
    const std::uint64_t index_offset = header->index_offset.load(std::memory_order_relaxed);
    const std::uint64_t slot_count = capacity();
    if (slot_count == 0 || (slot_count & (slot_count - 1)) != 0)
        return "index capacity " + std::to_string(slot_count) + " is not a power of two";
    if (index_offset < table_header_size || index_offset % alignof(Slot) != 0 || index_offset > limit
        || slot_count > (limit - index_offset) / sizeof(Slot))
        return "index at " + std::to_string(index_offset) + " lies outside the reserved pages";
    std::uint64_t keys = 0, bytes = 0, expiring = 0, taken = 0;
    const Slot* index = slots();
    // First every slot's own bounds, so that the probe walks below (which
    // read the keys of other slots) read nothing unchecked.
    for (std::uint64_t i = 0; i < slot_count; ++i) {
        const std::uint64_t offset = index[i].entry.load(std::memory_order_relaxed);
        if (offset == empty_slot || offset == deleted_slot)
            continue;
        if (offset == inline_slot) {
            if (std::uint64_t(index[i].key_size) + index[i].value_size > inline_capacity)
                return "slot " + std::to_string(i) + " holds an inline pair longer than a slot";
            continue;
        }
        if (offset < table_header_size || offset % alignof(Entry) != 0 || offset > limit - sizeof(Entry))
            return "slot " + std::to_string(i) + " refers to an entry outside the reserved pages";
        const Entry* e = entry(offset);
        if (std::uint64_t(e->key_size) + e->value_size > limit - offset - sizeof(Entry))
            return "slot " + std::to_string(i) + "'s entry runs past the reserved pages";
    }
    for (std::uint64_t i = 0; i < slot_count; ++i) {
        const std::uint64_t offset = index[i].entry.load(std::memory_order_relaxed);
        if (offset == empty_slot)
            continue;
        ++taken;
        if (offset == deleted_slot)
            continue;
        const std::string_view key = slot_key(index[i]);
        const std::uint64_t value_size = slot_value(index[i]).size();
        if (offset != inline_slot && entry(offset)->expires_at != never_expires)
            ++expiring;
        if (index[i].tag.load(std::memory_order_relaxed) != hash_key(key))
            return "slot " + std::to_string(i) + "'s tag is not its key's hash";
        // Reachable from its home slot, and the only slot of its key.
        const SlotSearch search = find_slot(key, hash_key(key));
        if (!search.found || search.slot != i)
            return "slot " + std::to_string(i) + "'s key is not found where a lookup looks";
        ++keys;
        bytes += key.size() + value_size;
    }
    // Boost's own walk of the heap's free blocks (a managed_external_buffer
    // has no lock: a null mutex; only this writer allocates).
    if (!const_cast<bip::managed_external_buffer&>(heap).check_sanity())
        return std::string("its heap's free blocks are inconsistent");
    if (keys != header->keys.load(std::memory_order_relaxed) || bytes != header->bytes.load(std::memory_order_relaxed)
        || expiring != header->expiring.load(std::memory_order_relaxed))
        return "its counters (" + std::to_string(header->keys.load()) + " keys, " + std::to_string(header->bytes.load())
            + " bytes, " + std::to_string(header->expiring.load()) + " expiring) are not what its slots hold ("
            + std::to_string(keys) + ", " + std::to_string(bytes) + ", " + std::to_string(expiring) + ")";
    if (used)
        *used = taken;
    return std::nullopt;
}

std::optional<std::string> SharedTableWriter::verify() const { return segment_->verify(); }

SharedTableWriter::~SharedTableWriter()
{
    segment_->header->alive.store(0, std::memory_order_release);
    if (owns_name_)
        remove_segment_if_same(segment_name_, segment_->fd.get());
}

int SharedTableWriter::descriptor() const { return segment_->fd.get(); }

const Mapping& SharedTableWriter::mapping() const { return segment_->mapping; }

void SharedTableWriter::publish_alive() { segment_->header->alive.store(1, std::memory_order_release); }

void SharedTableWriter::set_write_deadline(std::int64_t steady_ns) { segment_->header->write_deadline_ns.store(steady_ns, std::memory_order_relaxed); }

std::int64_t SharedTableWriter::write_deadline() const { return segment_->header->write_deadline_ns.load(std::memory_order_relaxed); }

std::optional<std::string_view> SharedTableWriter::get(std::string_view key) const
{
    const auto [slot, found] = segment_->find_slot(key, hash_key(key));
    if (!found)
        return std::nullopt;
    return segment_->slot_value(segment_->slots()[slot]);
}

std::optional<SharedTableWriter::Pair> SharedTableWriter::find(std::string_view key) const
{
    const auto [slot, found] = segment_->find_slot(key, hash_key(key));
    if (!found)
        return std::nullopt;
    const Slot& target = segment_->slots()[slot];
    return Pair { segment_->slot_value(target), segment_->slot_expiry(target) };
}

SharedTableWriter::SetResult SharedTableWriter::set(std::string_view key, std::string_view value, std::uint64_t expires_at)
{
    Segment& s = *segment_;
    Segment::Marked marked(s);
    if (key.size() > UINT32_MAX || value.size() > UINT32_MAX)
        return SetResult::full;
    const std::uint64_t tag = hash_key(key);
    auto [slot, found] = s.find_slot(key, tag);
    if (!found) {
        bool reuses_tombstone = slot != no_slot && s.slots()[slot].entry.load(std::memory_order_relaxed) == deleted_slot;
        if (!reuses_tombstone) {
            if (!s.reserve_slot(s.used_slots + 1))
                return SetResult::full;
            slot = s.find_slot(key, tag).slot; // in the new index, if it grew; still not found
        }
    }
    // A large pair, or one that expires, is written completely in the heap
    // before it becomes reachable (`value` may be the old entry's bytes: it
    // is freed only below).
    const bool fits_inline = key.size() + value.size() <= inline_capacity && expires_at == never_expires;
    Entry* fresh = nullptr;
    if (!fits_inline) {
        fresh = s.make_entry(key, value, expires_at);
        if (!fresh)
            return SetResult::full;
        s.made(s.offset_of(fresh));
    }
    Slot& target = s.slots()[slot];
    const std::uint64_t old_offset = target.entry.load(std::memory_order_relaxed);
    const std::size_t old_value_size = found ? s.slot_value(target).size() : 0;
    const bool expiring_before = found && s.slot_expiry(target) != never_expires;
    const bool expires_now = expires_at != never_expires;
    s.save_line(slot);
    s.open_window();
    target.tag.store(tag, std::memory_order_relaxed);
    if (fits_inline) {
        store_shared(target.key_size, static_cast<std::uint8_t>(key.size()));
        store_shared(target.value_size, static_cast<std::uint8_t>(value.size()));
        store_shared_bytes(target.bytes, key.data(), key.size());
        store_shared_bytes(target.bytes + key.size(), value.data(), value.size());
        target.entry.store(inline_slot, std::memory_order_relaxed);
    } else {
        target.entry.store(s.offset_of(fresh), std::memory_order_relaxed);
    }
    if (expires_now && !expiring_before)
        s.header->expiring.fetch_add(1, std::memory_order_relaxed);
    else if (expiring_before && !expires_now)
        s.header->expiring.fetch_sub(1, std::memory_order_relaxed);
    if (found) {
        s.header->bytes.fetch_add(value.size() - old_value_size, std::memory_order_relaxed);
    } else {
        if (old_offset == empty_slot)
            ++s.used_slots;
        s.header->keys.fetch_add(1, std::memory_order_relaxed);
        s.header->bytes.fetch_add(key.size() + value.size(), std::memory_order_relaxed);
    }
    s.close_window();
    // Unreachable now; a reader still looking at it will see the sequence move.
    if (found && holds_entry(old_offset))
        s.release(old_offset);
    return SetResult::stored;
}

SharedTableWriter::SetResult SharedTableWriter::set_expiry(std::string_view key, std::uint64_t expires_at)
{
    Segment& s = *segment_;
    Segment::Marked marked(s);
    const auto [slot, found] = s.find_slot(key, hash_key(key));
    if (!found)
        return SetResult::stored;
    Slot& target = s.slots()[slot];
    const std::uint64_t offset = target.entry.load(std::memory_order_relaxed);
    if (!holds_entry(offset)) {
        if (expires_at == never_expires)
            return SetResult::stored; // an inline pair has no time to remove
        // Only an entry holds a time: the pair moves there (its bytes are
        // copied from the slot before the slot changes).
        return set(key, s.slot_value(target), expires_at);
    }
    Entry* e = s.entry(offset);
    const std::uint64_t before = e->expires_at;
    if (before == expires_at)
        return SetResult::stored;
    if (s.in_batch())
        s.log.expiry_undo.emplace_back(offset, before);
    s.open_window();
    store_shared(e->expires_at, expires_at);
    if (before == never_expires)
        s.header->expiring.fetch_add(1, std::memory_order_relaxed);
    else if (expires_at == never_expires)
        s.header->expiring.fetch_sub(1, std::memory_order_relaxed);
    s.close_window();
    return SetResult::stored;
}

bool SharedTableWriter::erase(std::string_view key)
{
    Segment& s = *segment_;
    Segment::Marked marked(s);
    const auto [slot, found] = s.find_slot(key, hash_key(key));
    if (!found)
        return false;
    Slot& target = s.slots()[slot];
    const std::uint64_t old_offset = target.entry.load(std::memory_order_relaxed);
    const std::size_t old_bytes = s.slot_key(target).size() + s.slot_value(target).size();
    const bool expiring = s.slot_expiry(target) != never_expires;
    s.save_line(slot);
    s.open_window();
    target.entry.store(deleted_slot, std::memory_order_relaxed);
    if (expiring)
        s.header->expiring.fetch_sub(1, std::memory_order_relaxed);
    s.header->keys.fetch_sub(1, std::memory_order_relaxed);
    s.header->bytes.fetch_sub(old_bytes, std::memory_order_relaxed);
    s.close_window();
    if (holds_entry(old_offset))
        s.release(old_offset);
    return true;
}

void SharedTableWriter::clear()
{
    Segment& s = *segment_;
    Segment::Marked marked(s);
    const std::uint64_t old_offset = s.header->index_offset.load(std::memory_order_relaxed);
    const std::uint64_t old_capacity = s.capacity();
    if (Slot* fresh = s.make_index(initial_capacity)) {
        // The usual way: a short window that switches to an empty index.
        s.made(s.offset_of(fresh));
        s.open_window();
        s.header->index_offset.store(s.offset_of(fresh), std::memory_order_relaxed);
        s.header->capacity.store(initial_capacity, std::memory_order_relaxed);
        s.header->keys.store(0, std::memory_order_relaxed);
        s.header->bytes.store(0, std::memory_order_relaxed);
        s.header->expiring.store(0, std::memory_order_relaxed);
        s.close_window();
        s.used_slots = 0;
        if (s.in_batch())
            s.log.cleared.emplace_back(old_offset, old_capacity);
        else
            s.free_index_and_entries(old_offset, old_capacity);
        return;
    }
    // No heap even for a small index: empty the slots where they are (each
    // line saved first inside a batch), in one window, and free after it.
    std::vector<std::uint64_t> entries;
    Slot* index = s.slots();
    s.open_window();
    for (std::uint64_t i = 0; i < old_capacity; ++i) {
        const std::uint64_t offset = index[i].entry.load(std::memory_order_relaxed);
        if (offset == empty_slot)
            continue;
        s.save_line(i);
        if (holds_entry(offset))
            entries.push_back(offset);
        index[i].entry.store(empty_slot, std::memory_order_relaxed);
    }
    s.header->keys.store(0, std::memory_order_relaxed);
    s.header->bytes.store(0, std::memory_order_relaxed);
    s.header->expiring.store(0, std::memory_order_relaxed);
    s.close_window();
    s.used_slots = 0;
    for (std::uint64_t offset : entries)
        s.release(offset);
}

SharedTableWriter::Batch SharedTableWriter::begin_batch()
{
    Segment& s = *segment_;
    if (!s.in_batch()) {
        s.log.undo.clear();
        s.log.free_on_commit.clear();
        s.log.free_on_rollback.clear();
        s.log.cleared.clear();
        s.log.expiry_undo.clear();
        // No window yet: the first change opens it (open_window).
    }
    Savepoint savepoint;
    savepoint.undo = s.log.undo.size();
    savepoint.free_on_commit = s.log.free_on_commit.size();
    savepoint.free_on_rollback = s.log.free_on_rollback.size();
    savepoint.cleared = s.log.cleared.size();
    savepoint.expiry_undo = s.log.expiry_undo.size();
    savepoint.keys = s.header->keys.load(std::memory_order_relaxed);
    savepoint.bytes = s.header->bytes.load(std::memory_order_relaxed);
    savepoint.expiring = s.header->expiring.load(std::memory_order_relaxed);
    savepoint.used_slots = s.used_slots;
    savepoint.index_offset = s.header->index_offset.load(std::memory_order_relaxed);
    savepoint.capacity = s.capacity();
    savepoint.depth = s.log.depth++;
    return Batch(this, savepoint);
}

void SharedTableWriter::finish_batch(const Savepoint& savepoint, bool keep)
{
    Segment& s = *segment_;
    if (s.log.depth != savepoint.depth + 1)
        throw std::logic_error("SharedTableWriter: batches must end in the reverse order of their beginning");
    auto& log = s.log;
    if (!keep && log.window_open) { // no window open: nothing changed since the savepoint
        // Expiry times changed in place, latest first (their entries are
        // still allocated: nothing is freed before the end).
        for (std::size_t i = log.expiry_undo.size(); i-- > savepoint.expiry_undo;) {
            const auto& [offset, expires_at] = log.expiry_undo[i];
            store_shared(s.entry(offset)->expires_at, expires_at);
        }
        // Latest first, so each slot ends with the line it had at the
        // savepoint. Lines of indexes made since then go with those indexes.
        for (std::size_t i = log.undo.size(); i-- > savepoint.undo;) {
            const Segment::UndoLine& undo = log.undo[i];
            // Readers may be reading this line (they will throw the read
            // away: the window is open), so it is stored as shared bytes.
            if (undo.index_offset == savepoint.index_offset)
                store_shared_bytes(reinterpret_cast<char*>(reinterpret_cast<Slot*>(s.base + undo.index_offset) + undo.slot),
                    reinterpret_cast<const char*>(undo.line), sizeof(Slot));
        }
        s.header->index_offset.store(savepoint.index_offset, std::memory_order_relaxed);
        s.header->capacity.store(savepoint.capacity, std::memory_order_relaxed);
        s.header->keys.store(savepoint.keys, std::memory_order_relaxed);
        s.header->bytes.store(savepoint.bytes, std::memory_order_relaxed);
        s.header->expiring.store(savepoint.expiring, std::memory_order_relaxed);
        s.used_slots = savepoint.used_slots;
        for (std::size_t i = savepoint.free_on_rollback; i < log.free_on_rollback.size(); ++i)
            s.heap.deallocate(s.base + log.free_on_rollback[i]);
        log.undo.resize(savepoint.undo);
        log.free_on_commit.resize(savepoint.free_on_commit);
        log.free_on_rollback.resize(savepoint.free_on_rollback);
        log.cleared.resize(savepoint.cleared);
        log.expiry_undo.resize(savepoint.expiry_undo);
    }
    --log.depth;
    if (log.depth > 0)
        return; // a nested batch: the outer one commits or undoes the rest
    const bool changed = std::exchange(log.window_open, false);
    if (changed)
        s.end_write();
    // Unreachable now; a reader still looking at any of it will see the sequence move.
    for (std::uint64_t offset : log.free_on_commit)
        s.heap.deallocate(s.base + offset);
    for (const auto& [offset, capacity] : log.cleared)
        s.free_index_and_entries(offset, capacity);
    log.undo.clear();
    log.free_on_commit.clear();
    log.free_on_rollback.clear();
    log.cleared.clear();
    log.expiry_undo.clear();
    if (changed)
        s.unmark(); // the batch's mark, set when its window opened
}

SharedTableWriter::Batch::~Batch()
{
    if (writer_)
        rollback();
}

void SharedTableWriter::Batch::commit()
{
    std::exchange(writer_, nullptr)->finish_batch(savepoint_, true);
}

void SharedTableWriter::Batch::rollback()
{
    std::exchange(writer_, nullptr)->finish_batch(savepoint_, false);
}

std::uint64_t SharedTableWriter::size() const { return segment_->header->keys.load(std::memory_order_relaxed); }

std::uint64_t SharedTableWriter::segment_size() const { return segment_->header->size; }

std::uint64_t SharedTableWriter::bytes() const { return segment_->header->bytes.load(std::memory_order_relaxed); }

std::uint64_t SharedTableWriter::expiring() const { return segment_->header->expiring.load(std::memory_order_relaxed); }

std::uint64_t SharedTableWriter::capacity() const { return segment_->capacity(); }

void SharedTableWriter::for_each(const std::function<void(std::string_view, std::string_view, std::uint64_t)>& visit) const
{
    const Segment& s = *segment_;
    const Slot* index = s.slots();
    for (std::uint64_t i = 0; i < s.capacity(); ++i) {
        std::uint64_t offset = index[i].entry.load(std::memory_order_relaxed);
        if (offset != empty_slot && offset != deleted_slot)
            visit(s.slot_key(index[i]), s.slot_value(index[i]), s.slot_expiry(index[i]));
    }
}

namespace {

std::uint64_t reverse_bits(std::uint64_t v)
{
    v = ((v >> 1) & 0x5555555555555555ULL) | ((v & 0x5555555555555555ULL) << 1);
    v = ((v >> 2) & 0x3333333333333333ULL) | ((v & 0x3333333333333333ULL) << 2);
    v = ((v >> 4) & 0x0F0F0F0F0F0F0F0FULL) | ((v & 0x0F0F0F0F0F0F0F0FULL) << 4);
    v = ((v >> 8) & 0x00FF00FF00FF00FFULL) | ((v & 0x00FF00FF00FF00FFULL) << 8);
    v = ((v >> 16) & 0x0000FFFF0000FFFFULL) | ((v & 0x0000FFFF0000FFFFULL) << 16);
    return (v >> 32) | (v << 32);
}

} // namespace

std::uint64_t SharedTableWriter::scan_step(std::uint64_t cursor, const std::function<void(std::string_view, std::uint64_t)>& visit) const
{
    const Segment& s = *segment_;
    const Slot* index = s.slots();
    const std::uint64_t mask = s.capacity() - 1;
    const std::uint64_t home = cursor & mask;
    // A key sits at its home or after it, with no empty slot in between
    // (erase leaves tombstones), so the run from its home holds it.
    for (std::uint64_t i = home;;) {
        const std::uint64_t offset = index[i].entry.load(std::memory_order_relaxed);
        if (offset == empty_slot)
            break;
        if (offset != deleted_slot && (index[i].tag.load(std::memory_order_relaxed) & mask) == home)
            visit(s.slot_key(index[i]), s.slot_expiry(index[i]));
        i = (i + 1) & mask;
        if (i == home)
            break;
    }
    // Increment the bits above the mask's complement, from the top down.
    cursor |= ~mask;
    cursor = reverse_bits(cursor);
    ++cursor;
    return reverse_bits(cursor);
}

std::optional<std::string_view> SharedTableWriter::random_key(std::uint64_t random) const
{
    const Segment& s = *segment_;
    if (size() == 0)
        return std::nullopt;
    const Slot* index = s.slots();
    const std::uint64_t mask = s.capacity() - 1;
    for (std::uint64_t probe = 0, i = random & mask; probe <= mask; ++probe, i = (i + 1) & mask) {
        std::uint64_t offset = index[i].entry.load(std::memory_order_relaxed);
        if (offset != empty_slot && offset != deleted_slot)
            return s.slot_key(index[i]);
    }
    return std::nullopt;
}

std::uint64_t SharedTableWriter::expired_keys(std::uint64_t cursor, std::uint64_t slots, std::uint64_t now,
    std::vector<std::string>& expired, std::uint64_t& sampled, std::uint64_t& earliest) const
{
    const Segment& s = *segment_;
    const Slot* index = s.slots();
    const std::uint64_t mask = s.capacity() - 1;
    slots = std::min(slots, mask + 1);
    std::uint64_t i = cursor & mask;
    for (std::uint64_t n = 0; n < slots; ++n, i = (i + 1) & mask) {
        // Only a heap entry has an expiry time: an inline slot costs a load.
        const std::uint64_t offset = index[i].entry.load(std::memory_order_relaxed);
        if (!holds_entry(offset))
            continue;
        const Entry* e = s.entry(offset);
        if (e->expires_at == never_expires)
            continue;
        ++sampled;
        if (layout::has_expired(e->expires_at, now))
            expired.emplace_back(Segment::key_of(e));
        else
            earliest = std::min(earliest, e->expires_at);
    }
    return i;
}

} // namespace kv
