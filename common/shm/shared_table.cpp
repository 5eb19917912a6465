#include "shared_table.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <utility>

#include <boost/interprocess/managed_external_buffer.hpp>

#include "fault_guard.h"
#include "process_identity.h"
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

namespace {

// One shared mapping of a segment, unmapped when it goes. The descriptor it
// was made from may be closed meanwhile.
class Mapping {
public:
    Mapping() = default;
    Mapping(int fd, std::size_t size, int protection)
    {
        void* base = ::mmap(nullptr, size, protection, MAP_SHARED, fd, 0);
        if (base != MAP_FAILED) {
            base_ = static_cast<char*>(base);
            size_ = size;
        }
    }
    Mapping(Mapping&& other) noexcept
        : base_(std::exchange(other.base_, nullptr))
        , size_(std::exchange(other.size_, 0))
    {
    }
    Mapping& operator=(Mapping&& other) noexcept
    {
        if (this != &other) {
            reset();
            base_ = std::exchange(other.base_, nullptr);
            size_ = std::exchange(other.size_, 0);
        }
        return *this;
    }
    ~Mapping() { reset(); }

    char* base() const { return base_; }
    std::size_t size() const { return size_; }
    explicit operator bool() const { return base_ != nullptr; }
    // The caller unmaps it now.
    char* release()
    {
        size_ = 0;
        return std::exchange(base_, nullptr);
    }

private:
    void reset()
    {
        if (base_)
            ::munmap(base_, size_);
        base_ = nullptr;
        size_ = 0;
    }
    char* base_ = nullptr;
    std::size_t size_ = 0;
};

// The checks every user of a mapped table makes: a table of this layout and
// version, whose recorded size is the segment's size. Reads the mapping: a
// caller that does not own it calls this inside a guarded access.
bool is_table(const TableHeader& header, std::uint64_t file_size)
{
    return header.magic == TableHeader::expected_magic && header.version == TableHeader::expected_version
        && header.size == file_size;
}

} // namespace

// ---- writer ----

struct SharedTableWriter::Segment {
    explicit Segment(UniqueFd segment_fd) : fd(std::move(segment_fd)) {}

    // Members in this order: the heap goes before the mapping, the mapping
    // before the descriptor.
    UniqueFd fd;
    Mapping mapping;
    bip::managed_external_buffer heap;
    char* base = nullptr;
    TableHeader* header = nullptr;

    void format(const std::string& name, std::size_t size, TableKind kind);

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
        if (::posix_fallocate(fd.get(), static_cast<off_t>(reserved_until), static_cast<off_t>(target - reserved_until)) != 0) {
            target = needed;
            if (::posix_fallocate(fd.get(), static_cast<off_t>(reserved_until), static_cast<off_t>(target - reserved_until)) != 0)
                return false;
        }
        reserved_until = target;
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

// Sizes, reserves and maps the empty object `fd` is open on, and lays a
// table out in it, owned by this process.
void SharedTableWriter::Segment::format(const std::string& name, std::size_t size, TableKind kind)
{
    if (size < table_header_size + reserved_at_creation)
        throw std::runtime_error("unable to create segment " + name + ": size " + std::to_string(size)
            + " is below the " + std::to_string((table_header_size + reserved_at_creation) / 1024) + " KiB minimum");
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
    mapping = Mapping(fd.get(), size, PROT_READ | PROT_WRITE);
    if (!mapping)
        throw SystemError("unable to map segment", name, errno);
    base = mapping.base();
    const ProcessIdentity owner = self_identity();
    header = new (base) TableHeader {};
    header->magic = TableHeader::expected_magic;
    header->version = TableHeader::expected_version;
    header->kind = kind;
    header->owner_pid = owner.pid;
    header->owner_start_time = owner.start_time;
    header->size = size;
    try {
        heap = bip::managed_external_buffer(bip::create_only, base + table_header_size, size - table_header_size);
    } catch (const std::exception&) {
        throw std::runtime_error("unable to manage segment " + name);
    }
    reserved_until = reserved_at_creation;
    high_water = table_header_size;
    Slot* slots = make_index(initial_capacity);
    if (!slots)
        throw std::runtime_error("unable to index segment " + name);
    header->index_offset.store(offset_of(slots), std::memory_order_relaxed);
    header->capacity.store(initial_capacity, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
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

SharedTableWriter::~SharedTableWriter()
{
    segment_->header->alive.store(0, std::memory_order_release);
    if (owns_name_)
        remove_segment_if_same(segment_name_, segment_->fd.get());
}

int SharedTableWriter::descriptor() const { return segment_->fd.get(); }

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

// ---- segments ----

UniqueFd create_segment(const std::string& name)
{
    UniqueFd fd(::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600));
    if (!fd)
        throw SystemError("unable to create segment", name, errno);
    return fd;
}

bool remove_segment_if_same(const std::string& name, int fd)
{
    struct stat ours, named;
    if (::fstat(fd, &ours) == -1)
        return false;
    UniqueFd current(::shm_open(name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0));
    if (!current || ::fstat(current.get(), &named) == -1)
        return false;
    if (named.st_dev != ours.st_dev || named.st_ino != ours.st_ino)
        return false;
    return ::shm_unlink(name.c_str()) == 0;
}

// ---- reader ----

std::unique_ptr<SharedTableReader> SharedTableReader::open(const std::string& segment_name, TableKind kind, uid_t expected_owner)
{
    install_fault_handler();
    // O_NOFOLLOW: a symlink planted under the name is not followed (glibc's
    // shm_open adds it too; said here because trust depends on it).
    // O_NONBLOCK: a FIFO planted under the name must not hang the open.
    UniqueFd fd(::shm_open(segment_name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0));
    if (!fd)
        return nullptr;
    struct stat info;
    if (::fstat(fd.get(), &info) == -1 || !S_ISREG(info.st_mode) || info.st_uid != expected_owner
        || (info.st_mode & (S_IRWXG | S_IRWXO)) != 0 || static_cast<std::uint64_t>(info.st_size) < table_header_size)
        return nullptr;
    Mapping mapping(fd.get(), static_cast<std::size_t>(info.st_size), PROT_READ);
    if (!mapping)
        return nullptr;
    // The owner's uid may truncate the segment while we look at it.
    bool trusted = false;
    ProcessIdentity owner;
    const bool whole = guarded_access(mapping.base(), mapping.size(), [&] {
        const auto* header = reinterpret_cast<const TableHeader*>(mapping.base());
        if (!is_table(*header, static_cast<std::uint64_t>(info.st_size)) || header->kind != kind || header->owner_pid <= 0)
            return;
        owner.pid = header->owner_pid;
        owner.start_time = header->owner_start_time;
        trusted = true;
    });
    // A table whose owner is not running (died before it could clear
    // `alive`, even if its pid now names another process or a zombie) is
    // not the truth: one check here, none per read.
    if (!whole || !trusted || !is_running(owner))
        return nullptr;
    const std::size_t size = mapping.size();
    return std::unique_ptr<SharedTableReader>(new SharedTableReader(mapping.release(), size, owner.pid));
}

SharedTableReader::SharedTableReader(const char* base, std::size_t size, pid_t owner_pid)
    : base_(base)
    , size_(size)
    , owner_pid_(owner_pid)
{
}

SharedTableReader::~SharedTableReader() { ::munmap(const_cast<char*>(base_), size_); }

bool SharedTableReader::alive() const
{
    bool alive = false;
    const bool whole = guarded_access(base_, size_, [&] {
        alive = reinterpret_cast<const TableHeader*>(base_)->alive.load(std::memory_order_acquire) == 1;
    });
    return whole && alive;
}

// The read side of the seqlock, in one place: `read` runs on what may be a
// write in progress, and its answer counts only if no write began or ended
// meanwhile and the owner is still serving. All of it runs guarded: a
// segment that shrank under us is `gone`, and `read` must be abandonable
// (see guarded_access).
template <typename Read>
SharedTableReader::Result SharedTableReader::consistent_read(Read read) const
{
    Result result = Result::gone;
    const bool whole = guarded_access(base_, size_, [&] {
        const auto* header = reinterpret_cast<const TableHeader*>(base_);
        for (Retry retry; retry.again();) {
            if (header->alive.load(std::memory_order_acquire) != 1) {
                result = Result::gone;
                return;
            }
            const std::uint64_t before = header->sequence.load(std::memory_order_acquire);
            if (before & 1)
                continue; // a write is in progress
            const Result attempt = read(*header);
            std::atomic_thread_fence(std::memory_order_acquire);
            if (header->sequence.load(std::memory_order_relaxed) == before) {
                result = header->alive.load(std::memory_order_relaxed) == 1 ? attempt : Result::gone;
                return;
            }
        }
        result = header->alive.load(std::memory_order_relaxed) == 1 ? Result::busy : Result::gone;
    });
    return whole ? result : Result::gone;
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
            if (value) {
                // Sized first, then filled: if the copy faults (the segment
                // shrank), the string is whole, only its bytes are not.
                value->resize(value_size);
                std::memcpy(value->data(), bytes + key_size, value_size);
            }
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

// Maps the header page of the table `fd` holds and visits it, guarded: the
// bucket (the table's owner) can truncate the segment meanwhile. False if
// `fd` holds no table of this layout or the page went away.
template <typename Visit>
bool with_header(int fd, int protection, Visit visit)
{
    install_fault_handler();
    struct stat info;
    if (::fstat(fd, &info) == -1 || !S_ISREG(info.st_mode) || static_cast<std::uint64_t>(info.st_size) < table_header_size)
        return false;
    Mapping mapping(fd, table_header_size, protection);
    if (!mapping)
        return false;
    bool visited = false;
    const bool whole = guarded_access(mapping.base(), mapping.size(), [&] {
        auto* header = reinterpret_cast<TableHeader*>(mapping.base());
        if (!is_table(*header, static_cast<std::uint64_t>(info.st_size)))
            return;
        visit(*header);
        visited = true;
    });
    return whole && visited;
}

} // namespace

std::optional<TableStats> read_table_stats(int fd)
{
    TableStats stats;
    if (!with_header(fd, PROT_READ, [&](const TableHeader& header) {
            stats.keys = header.keys.load(std::memory_order_relaxed);
            stats.bytes = header.bytes.load(std::memory_order_relaxed);
        }))
        return std::nullopt;
    return stats;
}

std::optional<ProcessIdentity> read_table_owner(int fd)
{
    ProcessIdentity owner;
    if (!with_header(fd, PROT_READ, [&](const TableHeader& header) {
            owner.pid = header.owner_pid;
            owner.start_time = header.owner_start_time;
        }))
        return std::nullopt;
    return owner;
}

bool mark_table_gone(int fd)
{
    return with_header(fd, PROT_READ | PROT_WRITE,
        [](TableHeader& header) { header.alive.store(0, std::memory_order_release); });
}

} // namespace kv
