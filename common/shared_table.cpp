#include "shared_table.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include <boost/interprocess/managed_external_buffer.hpp>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>

#include "system_error.h"
#include "unique_fd.h"

namespace kv {

namespace bip = boost::interprocess;

namespace {

// Offsets 0 and 1 are never entries (they are inside the header page).
constexpr std::uint64_t empty_slot = 0;
constexpr std::uint64_t deleted_slot = 1;
constexpr std::uint64_t initial_capacity = 64;
// Pages creation touches are reserved, so a full /dev/shm is ENOSPC, not SIGBUS.
constexpr std::size_t reserved_at_creation = 64 * 1024;
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

// Offset 2 in a slot means "the pair is inline, in the slot itself".
constexpr std::uint64_t inline_slot = 2;
constexpr std::size_t inline_capacity = 46;

// One cache line. A small pair (key plus value up to 46 bytes) lives in the
// slot itself, so a direct read of it costs one cache miss, not two; a
// larger one lives in an Entry in the heap.
struct alignas(64) Slot {
    std::atomic<std::uint64_t> tag;
    std::atomic<std::uint64_t> entry; // empty, deleted, inline, or an Entry's offset
    std::uint8_t key_size;            // inline pairs only
    std::uint8_t value_size;
    char bytes[inline_capacity];
};
static_assert(sizeof(Slot) == 64);

struct Entry {
    std::uint32_t key_size;
    std::uint32_t value_size;
    // key bytes, then value bytes
};

std::uint64_t mix(std::uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

} // namespace

std::uint64_t hash_key(std::string_view key)
{
    std::uint64_t hash = 0x9e3779b97f4a7c15ULL ^ key.size();
    std::size_t i = 0;
    for (; i + 8 <= key.size(); i += 8) {
        std::uint64_t word;
        std::memcpy(&word, key.data() + i, 8);
        hash = mix(hash ^ word);
    }
    std::uint64_t tail = 0;
    std::memcpy(&tail, key.data() + i, key.size() - i);
    return mix(hash ^ tail);
}

// ---- writer ----

struct SharedTableWriter::Segment {
    bip::shared_memory_object object;
    bip::mapped_region region;
    bip::managed_external_buffer heap;
    char* base = nullptr;
    TableHeader* header = nullptr;

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
    static bool holds_entry(std::uint64_t offset) { return offset > inline_slot; }
    // A fresh index: every slot empty (all-zero bytes).
    Slot* make_index(std::uint64_t capacity)
    {
        if (!reserve_for(capacity * sizeof(Slot)))
            return nullptr;
        void* memory = heap.allocate_aligned(capacity * sizeof(Slot), alignof(Slot), std::nothrow);
        if (memory) {
            note_block(memory, capacity * sizeof(Slot));
            std::memset(memory, 0, capacity * sizeof(Slot));
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
        const std::uint64_t slack = 4096; // block headers and the split-off free block's header
        const std::uint64_t needed = std::min<std::uint64_t>(header->size, high_water + size + slack);
        if (needed <= reserved_until)
            return true;
        // Ahead by a quarter of what is backed already, 64 KiB to 1 MiB at a time.
        const std::uint64_t step = std::clamp<std::uint64_t>(reserved_until / 4, 64 * 1024, 1 << 20);
        std::uint64_t target = std::min<std::uint64_t>(header->size, std::max<std::uint64_t>(needed, reserved_until + step));
        if (::posix_fallocate(shm_fd, static_cast<off_t>(reserved_until), static_cast<off_t>(target - reserved_until)) != 0) {
            target = needed;
            if (::posix_fallocate(shm_fd, static_cast<off_t>(reserved_until), static_cast<off_t>(target - reserved_until)) != 0)
                return false;
        }
        reserved_until = target;
        return true;
    }
    void note_block(const void* block, std::size_t size) { high_water = std::max<std::uint64_t>(high_water, offset_of(block) + size); }

    int shm_fd = -1;
    std::uint64_t reserved_until = 0; // bytes from the start backed by /dev/shm pages
    std::uint64_t high_water = 0;     // end of the highest block handed out
    static std::string_view key_of(const Entry* e) { return { reinterpret_cast<const char*>(e + 1), e->key_size }; }
    static std::string_view value_of(const Entry* e)
    {
        return { reinterpret_cast<const char*>(e + 1) + e->key_size, e->value_size };
    }
    std::uint64_t offset_of(const void* p) const { return static_cast<std::uint64_t>(static_cast<const char*>(p) - base); }

    // Where `key` is, or the first free slot for it (npos if the index is full).
    std::uint64_t find_slot(std::string_view key, std::uint64_t tag, bool& found) const
    {
        const std::uint64_t mask = capacity() - 1;
        std::uint64_t free_slot = ~0ULL;
        Slot* index = slots();
        for (std::uint64_t probe = 0, i = tag & mask; probe <= mask; ++probe, i = (i + 1) & mask) {
            std::uint64_t offset = index[i].entry.load(std::memory_order_relaxed);
            if (offset == empty_slot) {
                found = false;
                return free_slot != ~0ULL ? free_slot : i;
            }
            if (offset == deleted_slot) {
                if (free_slot == ~0ULL)
                    free_slot = i;
                continue;
            }
            if (index[i].tag.load(std::memory_order_relaxed) == tag && slot_key(index[i]) == key) {
                found = true;
                return i;
            }
        }
        found = false;
        return free_slot;
    }

    void begin_write()
    {
        header->sequence.store(header->sequence.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_release);
    }
    void end_write()
    {
        header->sequence.store(header->sequence.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    }

    Entry* make_entry(std::string_view key, std::string_view value)
    {
        const std::size_t size = sizeof(Entry) + key.size() + value.size();
        if (!reserve_for(size))
            return nullptr;
        void* memory = heap.allocate(size, std::nothrow);
        if (!memory)
            return nullptr;
        note_block(memory, size);
        auto* e = static_cast<Entry*>(memory);
        e->key_size = static_cast<std::uint32_t>(key.size());
        e->value_size = static_cast<std::uint32_t>(value.size());
        std::memcpy(reinterpret_cast<char*>(e + 1), key.data(), key.size());
        std::memcpy(reinterpret_cast<char*>(e + 1) + key.size(), value.data(), value.size());
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
            // Nobody reads the new index yet: a plain copy of the line will do.
            std::memcpy(static_cast<void*>(&fresh[j]), static_cast<const void*>(&old[i]), sizeof(Slot));
        }
        begin_write();
        header->index_offset.store(offset_of(fresh), std::memory_order_relaxed);
        header->capacity.store(new_capacity, std::memory_order_relaxed);
        end_write();
        used_slots = live;
        heap.deallocate(old);
        return true;
    }

    std::uint64_t used_slots = 0; // live entries plus tombstones; the writer's own count
};

SharedTableWriter::SharedTableWriter(std::string segment_name, std::size_t size, TableKind kind)
    : segment_name_(std::move(segment_name))
{
    if (size < table_header_size + reserved_at_creation)
        throw std::runtime_error("unable to create segment " + segment_name_ + ": size " + std::to_string(size)
            + " is below the " + std::to_string((table_header_size + reserved_at_creation) / 1024) + " KiB minimum");
    bip::shared_memory_object::remove(segment_name_.c_str());
    auto segment = std::make_unique<Segment>();
    auto fail = [&](const std::string& what) {
        bip::shared_memory_object::remove(segment_name_.c_str());
        throw std::runtime_error("unable to " + what + " segment " + segment_name_);
    };
    try {
        bip::permissions owner_only(0600);
        segment->object = bip::shared_memory_object(bip::create_only, segment_name_.c_str(), bip::read_write, owner_only);
        segment->object.truncate(static_cast<bip::offset_t>(size));
    } catch (const bip::interprocess_exception& error) {
        bip::shared_memory_object::remove(segment_name_.c_str());
        throw std::runtime_error("unable to create segment " + segment_name_ + ": " + error.what());
    }
    // Sparse: /dev/shm pages are taken when touched, and touching one when
    // /dev/shm is full is a SIGBUS. Reserve what creation touches (the header,
    // Boost's bookkeeping, the first index, its end marker in the last page).
    const int shm_fd = segment->object.get_mapping_handle().handle;
    int reserve_error = ::posix_fallocate(shm_fd, 0, static_cast<off_t>(reserved_at_creation));
    if (reserve_error == 0)
        reserve_error = ::posix_fallocate(shm_fd, static_cast<off_t>(size - 4096), 4096);
    if (reserve_error != 0) {
        bip::shared_memory_object::remove(segment_name_.c_str());
        throw SystemError("unable to reserve segment", segment_name_, reserve_error);
    }
    try {
        segment->region = bip::mapped_region(segment->object, bip::read_write);
    } catch (const bip::interprocess_exception& error) {
        fail(std::string("map"));
    }
    segment->base = static_cast<char*>(segment->region.get_address());
    segment->header = new (segment->base) TableHeader {};
    TableHeader& header = *segment->header;
    header.magic = TableHeader::expected_magic;
    header.version = TableHeader::expected_version;
    header.kind = kind;
    header.owner_pid = ::getpid();
    header.size = size;
    try {
        segment->heap = bip::managed_external_buffer(bip::create_only, segment->base + table_header_size, size - table_header_size);
    } catch (const std::exception& error) {
        fail("manage");
    }
    segment->shm_fd = shm_fd;
    segment->reserved_until = reserved_at_creation;
    segment->high_water = table_header_size;
    Slot* slots = segment->make_index(initial_capacity);
    if (!slots)
        fail("index");
    header.index_offset.store(segment->offset_of(slots), std::memory_order_relaxed);
    header.capacity.store(initial_capacity, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    segment_ = std::move(segment);
}

SharedTableWriter::~SharedTableWriter()
{
    segment_->header->alive.store(0, std::memory_order_release);
    segment_.reset();
    bip::shared_memory_object::remove(segment_name_.c_str());
}

void SharedTableWriter::publish_alive() { segment_->header->alive.store(1, std::memory_order_release); }

std::optional<std::string_view> SharedTableWriter::get(std::string_view key) const
{
    bool found = false;
    std::uint64_t slot = segment_->find_slot(key, hash_key(key), found);
    if (!found)
        return std::nullopt;
    return segment_->slot_value(segment_->slots()[slot]);
}

SharedTableWriter::SetResult SharedTableWriter::set(std::string_view key, std::string_view value)
{
    Segment& s = *segment_;
    if (key.size() > UINT32_MAX || value.size() > UINT32_MAX)
        return SetResult::full;
    const std::uint64_t tag = hash_key(key);
    bool found = false;
    std::uint64_t slot = s.find_slot(key, tag, found);
    if (!found) {
        bool reuses_tombstone = slot != ~0ULL && s.slots()[slot].entry.load(std::memory_order_relaxed) == deleted_slot;
        if (!reuses_tombstone) {
            if (!s.reserve_slot(s.used_slots + 1))
                return SetResult::full;
            slot = s.find_slot(key, tag, found);
        }
    }
    // A large pair is written completely in the heap before it becomes reachable.
    const bool fits_inline = key.size() + value.size() <= inline_capacity;
    Entry* fresh = nullptr;
    if (!fits_inline) {
        fresh = s.make_entry(key, value);
        if (!fresh)
            return SetResult::full;
    }
    Slot& target = s.slots()[slot];
    const std::uint64_t old_offset = target.entry.load(std::memory_order_relaxed);
    const std::size_t old_value_size = found ? s.slot_value(target).size() : 0;
    s.begin_write();
    target.tag.store(tag, std::memory_order_relaxed);
    if (fits_inline) {
        target.key_size = static_cast<std::uint8_t>(key.size());
        target.value_size = static_cast<std::uint8_t>(value.size());
        std::memcpy(target.bytes, key.data(), key.size());
        std::memcpy(target.bytes + key.size(), value.data(), value.size());
        target.entry.store(inline_slot, std::memory_order_relaxed);
    } else {
        target.entry.store(s.offset_of(fresh), std::memory_order_relaxed);
    }
    if (found) {
        s.header->bytes.fetch_add(value.size() - old_value_size, std::memory_order_relaxed);
    } else {
        if (old_offset == empty_slot)
            ++s.used_slots;
        s.header->keys.fetch_add(1, std::memory_order_relaxed);
        s.header->bytes.fetch_add(key.size() + value.size(), std::memory_order_relaxed);
    }
    s.end_write();
    // Unreachable now; a reader still looking at it will see the sequence move.
    if (found && Segment::holds_entry(old_offset))
        s.heap.deallocate(s.entry(old_offset));
    return SetResult::stored;
}

bool SharedTableWriter::erase(std::string_view key)
{
    Segment& s = *segment_;
    bool found = false;
    std::uint64_t slot = s.find_slot(key, hash_key(key), found);
    if (!found)
        return false;
    Slot& target = s.slots()[slot];
    const std::uint64_t old_offset = target.entry.load(std::memory_order_relaxed);
    const std::size_t old_bytes = s.slot_key(target).size() + s.slot_value(target).size();
    s.begin_write();
    target.entry.store(deleted_slot, std::memory_order_relaxed);
    s.header->keys.fetch_sub(1, std::memory_order_relaxed);
    s.header->bytes.fetch_sub(old_bytes, std::memory_order_relaxed);
    s.end_write();
    if (Segment::holds_entry(old_offset))
        s.heap.deallocate(s.entry(old_offset));
    return true;
}

std::uint64_t SharedTableWriter::size() const { return segment_->header->keys.load(std::memory_order_relaxed); }

std::uint64_t SharedTableWriter::bytes() const { return segment_->header->bytes.load(std::memory_order_relaxed); }

void SharedTableWriter::for_each(const std::function<void(std::string_view, std::string_view)>& visit) const
{
    const Segment& s = *segment_;
    const Slot* index = s.slots();
    for (std::uint64_t i = 0; i < s.capacity(); ++i) {
        std::uint64_t offset = index[i].entry.load(std::memory_order_relaxed);
        if (offset != empty_slot && offset != deleted_slot)
            visit(s.slot_key(index[i]), s.slot_value(index[i]));
    }
}

// ---- reader ----

namespace {

struct Mapping {
    void* base = nullptr;
    std::size_t size = 0;
};

// Maps segment `name` (only its header page unless `whole`) if it holds a
// table of this layout; else nothing, and nothing stays mapped.
std::optional<Mapping> map_table(const std::string& name, int open_flags, int protection, bool whole)
{
    UniqueFd fd(::shm_open(name.c_str(), open_flags | O_CLOEXEC, 0));
    if (!fd)
        return std::nullopt;
    struct stat info;
    if (::fstat(fd.get(), &info) == -1 || static_cast<std::size_t>(info.st_size) < table_header_size)
        return std::nullopt;
    Mapping mapping { nullptr, whole ? static_cast<std::size_t>(info.st_size) : table_header_size };
    mapping.base = ::mmap(nullptr, mapping.size, protection, MAP_SHARED, fd.get(), 0);
    if (mapping.base == MAP_FAILED)
        return std::nullopt;
    const auto* header = static_cast<const TableHeader*>(mapping.base);
    if (header->magic != TableHeader::expected_magic || header->version != TableHeader::expected_version
        || header->size != static_cast<std::uint64_t>(info.st_size)) {
        ::munmap(mapping.base, mapping.size);
        return std::nullopt;
    }
    return mapping;
}

} // namespace

std::unique_ptr<SharedTableReader> SharedTableReader::open(const std::string& segment_name, TableKind kind)
{
    auto mapping = map_table(segment_name, O_RDONLY, PROT_READ, true);
    if (!mapping)
        return nullptr;
    const auto* header = static_cast<const TableHeader*>(mapping->base);
    // A table whose owner is dead (killed before it could clear `alive`) is
    // not the truth: one check here, none per read.
    const bool owner_alive = header->owner_pid > 0 && (::kill(header->owner_pid, 0) == 0 || errno == EPERM);
    if (header->kind != kind || !owner_alive) {
        ::munmap(mapping->base, mapping->size);
        return nullptr;
    }
    return std::unique_ptr<SharedTableReader>(new SharedTableReader(static_cast<const char*>(mapping->base), mapping->size));
}

SharedTableReader::SharedTableReader(const char* base, std::size_t size)
    : base_(base)
    , size_(size)
{
}

SharedTableReader::~SharedTableReader() { ::munmap(const_cast<char*>(base_), size_); }

pid_t SharedTableReader::owner_pid() const { return reinterpret_cast<const TableHeader*>(base_)->owner_pid; }

bool SharedTableReader::alive() const
{
    return reinterpret_cast<const TableHeader*>(base_)->alive.load(std::memory_order_acquire) == 1;
}

// The read side of the seqlock, in one place: `read` runs on what may be a
// write in progress, and its answer counts only if no write began or ended
// meanwhile and the owner is still serving.
template <typename Read>
SharedTableReader::Result SharedTableReader::consistent_read(Read read) const
{
    const auto* header = reinterpret_cast<const TableHeader*>(base_);
    for (Retry retry; retry.again();) {
        if (header->alive.load(std::memory_order_acquire) != 1)
            return Result::gone;
        const std::uint64_t before = header->sequence.load(std::memory_order_acquire);
        if (before & 1)
            continue; // a write is in progress
        const Result result = read(*header);
        std::atomic_thread_fence(std::memory_order_acquire);
        if (header->sequence.load(std::memory_order_relaxed) == before)
            return header->alive.load(std::memory_order_relaxed) == 1 ? result : Result::gone;
    }
    return alive() ? Result::busy : Result::gone;
}

SharedTableReader::Result SharedTableReader::lookup(std::string_view key, std::string* value) const
{
    const std::uint64_t tag = hash_key(key);
    return consistent_read([&](const TableHeader& header) {
        const std::uint64_t index_offset = header.index_offset.load(std::memory_order_relaxed);
        const std::uint64_t capacity = header.capacity.load(std::memory_order_relaxed);
        // Everything below is checked before it is followed: what we read may
        // be a write in progress, and only the sequence check can tell.
        if (capacity == 0 || (capacity & (capacity - 1)) || index_offset < table_header_size
            || index_offset > size_ || capacity > (size_ - index_offset) / sizeof(Slot))
            return Result::gone; // if consistent, a corrupt table: not one of ours any more
        const auto* index = reinterpret_cast<const Slot*>(base_ + index_offset);
        const std::uint64_t mask = capacity - 1;
        for (std::uint64_t probe = 0, i = tag & mask; probe <= mask; ++probe, i = (i + 1) & mask) {
            const std::uint64_t offset = index[i].entry.load(std::memory_order_relaxed);
            if (offset == empty_slot)
                break;
            if (offset == deleted_slot || index[i].tag.load(std::memory_order_relaxed) != tag)
                continue;
            // The pair: in the slot itself, or in a heap entry.
            const char* bytes;
            std::size_t key_size, value_size;
            if (offset == inline_slot) {
                bytes = index[i].bytes;
                key_size = index[i].key_size;
                value_size = index[i].value_size;
                if (key_size + value_size > inline_capacity)
                    break;
            } else {
                if (offset < table_header_size || offset > size_ - sizeof(Entry))
                    break;
                Entry e;
                std::memcpy(&e, base_ + offset, sizeof e);
                if (offset + sizeof(Entry) + std::uint64_t(e.key_size) + e.value_size > size_)
                    break;
                bytes = base_ + offset + sizeof(Entry);
                key_size = e.key_size;
                value_size = e.value_size;
            }
            if (key_size != key.size() || std::memcmp(bytes, key.data(), key_size) != 0)
                continue;
            if (value)
                value->assign(bytes + key_size, value_size);
            return Result::found;
        }
        return Result::missing;
    });
}

SharedTableReader::Result SharedTableReader::get(std::string_view key, std::string& value) const
{
    return lookup(key, &value);
}

SharedTableReader::Result SharedTableReader::exists(std::string_view key) const { return lookup(key, nullptr); }

SharedTableReader::Result SharedTableReader::size(std::uint64_t& keys) const
{
    return consistent_read([&](const TableHeader& header) {
        keys = header.keys.load(std::memory_order_relaxed);
        return Result::found;
    });
}

// ---- header-page helpers for registryd ----

namespace {

template <typename Visit>
bool with_header(const std::string& segment_name, int open_flags, int protection, Visit visit)
{
    auto mapping = map_table(segment_name, open_flags, protection, false);
    if (!mapping)
        return false;
    visit(*static_cast<TableHeader*>(mapping->base));
    ::munmap(mapping->base, mapping->size);
    return true;
}

} // namespace

std::optional<TableStats> read_table_stats(const std::string& segment_name)
{
    TableStats stats;
    if (!with_header(segment_name, O_RDONLY, PROT_READ, [&](const TableHeader& header) {
            stats.keys = header.keys.load(std::memory_order_relaxed);
            stats.bytes = header.bytes.load(std::memory_order_relaxed);
        }))
        return std::nullopt;
    return stats;
}

bool mark_table_gone(const std::string& segment_name)
{
    return with_header(segment_name, O_RDWR, PROT_READ | PROT_WRITE,
        [](TableHeader& header) { header.alive.store(0, std::memory_order_release); });
}

} // namespace kv
