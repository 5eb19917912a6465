#include "bucket_map.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <boost/container/map.hpp>
#include <boost/container/string.hpp>
#include <boost/interprocess/allocators/allocator.hpp>
#include <boost/interprocess/managed_external_buffer.hpp>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>

#include "segment_header.h"
#include "system_error.h"

namespace kv {

namespace bip = boost::interprocess;

constexpr std::size_t reserved_at_creation = 64 * 1024;

namespace {

using SegmentManager = bip::managed_external_buffer::segment_manager;
using CharAllocator = bip::allocator<char, SegmentManager>;
using SharedString = boost::container::basic_string<char, std::char_traits<char>, CharAllocator>;
using Entry = std::pair<const SharedString, SharedString>;
using EntryAllocator = bip::allocator<Entry, SegmentManager>;

std::string_view view(const SharedString& s) { return { s.data(), s.size() }; }

// Transparent, so lookups with a string_view never allocate in the segment.
struct KeyLess {
    using is_transparent = void;
    bool operator()(const SharedString& a, const SharedString& b) const { return view(a) < view(b); }
    bool operator()(const SharedString& a, std::string_view b) const { return view(a) < b; }
    bool operator()(std::string_view a, const SharedString& b) const { return a < view(b); }
};

using Map = boost::container::map<SharedString, SharedString, KeyLess, EntryAllocator>;

} // namespace

struct BucketMap::Segment {
    bip::shared_memory_object object;
    bip::mapped_region region;
    SegmentHeader* header = nullptr;
    bip::managed_external_buffer heap;
    Map* map = nullptr;
};

BucketMap::BucketMap(std::string segment_name, std::size_t size)
    : segment_name_(std::move(segment_name))
{
    if (size < segment_header_size + 64 * 1024)
        throw std::runtime_error("unable to create segment " + segment_name_ + ": size "
            + std::to_string(size) + " is below the 68 KiB minimum");
    bip::shared_memory_object::remove(segment_name_.c_str());
    auto segment = std::make_unique<Segment>();
    try {
        bip::permissions owner_only(0600);
        segment->object = bip::shared_memory_object(bip::create_only, segment_name_.c_str(), bip::read_write, owner_only);
        segment->object.truncate(static_cast<bip::offset_t>(size));
    } catch (const bip::interprocess_exception& error) {
        bip::shared_memory_object::remove(segment_name_.c_str());
        throw std::runtime_error("unable to create segment " + segment_name_ + ": " + error.what());
    }
    // The segment is sparse: /dev/shm pages are taken only when touched, and
    // touching one when /dev/shm is full is a SIGBUS. Reserve the pages that
    // creation touches (header, Boost's bookkeeping, the map's root, the end
    // marker) so a full
    // /dev/shm is a clean error here rather than a crash.
    // Boost's allocator also writes an end marker in the last page.
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
        bip::shared_memory_object::remove(segment_name_.c_str());
        throw std::runtime_error("unable to map segment " + segment_name_ + ": " + error.what());
    }
    auto* base = static_cast<char*>(segment->region.get_address());
    segment->header = new (base) SegmentHeader {};
    segment->header->magic = SegmentHeader::expected_magic;
    segment->header->version = SegmentHeader::expected_version;
    segment->header->owner_pid = ::getpid();
    segment->header->size = size;
    try {
        segment->heap = bip::managed_external_buffer(bip::create_only, base + segment_header_size, size - segment_header_size);
        segment->map = segment->heap.construct<Map>(bip::unique_instance)(segment->heap.get_segment_manager());
    } catch (const std::exception& error) {
        bip::shared_memory_object::remove(segment_name_.c_str());
        throw std::runtime_error("unable to create segment " + segment_name_ + ": " + error.what());
    }
    segment_ = std::move(segment);
}

BucketMap::~BucketMap()
{
    segment_.reset();
    bip::shared_memory_object::remove(segment_name_.c_str());
}

std::optional<std::string_view> BucketMap::get(std::string_view key) const
{
    auto it = segment_->map->find(key);
    if (it == segment_->map->end())
        return std::nullopt;
    return view(it->second);
}

BucketMap::SetResult BucketMap::set(std::string_view key, std::string_view value)
{
    auto& map = *segment_->map;
    auto& header = *segment_->header;
    try {
        auto it = map.find(key);
        if (it != map.end()) {
            auto old_size = it->second.size();
            // assign() allocates the new buffer before it lets go of the old
            // one, so a full segment leaves the old value in place.
            it->second.assign(value.data(), value.size());
            header.bytes.fetch_add(value.size() - old_size, std::memory_order_relaxed);
            return SetResult::stored;
        }
        CharAllocator allocator(segment_->heap.get_segment_manager());
        map.emplace(SharedString(key.data(), key.size(), allocator), SharedString(value.data(), value.size(), allocator));
        header.keys.fetch_add(1, std::memory_order_relaxed);
        header.bytes.fetch_add(key.size() + value.size(), std::memory_order_relaxed);
        return SetResult::stored;
    } catch (const bip::bad_alloc&) {
        return SetResult::full;
    } catch (const std::length_error&) {
        // A value larger than the whole free space fails the size check
        // before any allocation is tried: the segment is just as full.
        return SetResult::full;
    }
}

bool BucketMap::erase(std::string_view key)
{
    auto& map = *segment_->map;
    auto it = map.find(key);
    if (it == map.end())
        return false;
    segment_->header->keys.fetch_sub(1, std::memory_order_relaxed);
    segment_->header->bytes.fetch_sub(it->first.size() + it->second.size(), std::memory_order_relaxed);
    map.erase(it);
    return true;
}

bool BucketMap::contains(std::string_view key) const { return segment_->map->find(key) != segment_->map->end(); }

std::uint64_t BucketMap::size() const { return segment_->header->keys.load(std::memory_order_relaxed); }

std::uint64_t BucketMap::bytes() const { return segment_->header->bytes.load(std::memory_order_relaxed); }

void BucketMap::for_each_key(const std::function<void(std::string_view)>& visit) const
{
    for (const auto& entry : *segment_->map)
        visit(view(entry.first));
}

bool glob_match(std::string_view pattern, std::string_view text)
{
    std::size_t p = 0, t = 0;
    std::size_t star_p = std::string_view::npos, star_t = 0;
    while (t < text.size()) {
        if (p < pattern.size()) {
            char c = pattern[p];
            if (c == '*') {
                star_p = p++;
                star_t = t;
                continue;
            }
            if (c == '?') {
                ++p;
                ++t;
                continue;
            }
            if (c == '[') {
                std::size_t q = p + 1;
                bool negate = q < pattern.size() && pattern[q] == '^';
                if (negate)
                    ++q;
                bool matched = false;
                while (q < pattern.size() && pattern[q] != ']') {
                    if (pattern[q] == '\\' && q + 1 < pattern.size()) {
                        matched |= pattern[q + 1] == text[t];
                        q += 2;
                    } else if (q + 2 < pattern.size() && pattern[q + 1] == '-' && pattern[q + 2] != ']') {
                        auto low = static_cast<unsigned char>(std::min(pattern[q], pattern[q + 2]));
                        auto high = static_cast<unsigned char>(std::max(pattern[q], pattern[q + 2]));
                        auto ch = static_cast<unsigned char>(text[t]);
                        matched |= ch >= low && ch <= high;
                        q += 3;
                    } else {
                        matched |= pattern[q] == text[t];
                        ++q;
                    }
                }
                if (q < pattern.size() && matched != negate) {
                    p = q + 1;
                    ++t;
                    continue;
                }
            } else {
                if (c == '\\' && p + 1 < pattern.size())
                    c = pattern[++p];
                if (c == text[t]) {
                    ++p;
                    ++t;
                    continue;
                }
            }
        }
        if (star_p == std::string_view::npos)
            return false;
        p = star_p + 1;
        t = ++star_t;
    }
    while (p < pattern.size() && pattern[p] == '*')
        ++p;
    return p == pattern.size();
}

} // namespace kv
