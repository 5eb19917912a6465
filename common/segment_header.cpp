#include "segment_header.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "unique_fd.h"

namespace kv {

std::optional<SegmentStats> read_segment_stats(const std::string& name)
{
    UniqueFd fd(::shm_open(name.c_str(), O_RDONLY | O_CLOEXEC, 0));
    if (!fd)
        return std::nullopt;
    struct stat info;
    if (::fstat(fd.get(), &info) == -1 || static_cast<std::size_t>(info.st_size) < segment_header_size)
        return std::nullopt;
    void* page = ::mmap(nullptr, segment_header_size, PROT_READ, MAP_SHARED, fd.get(), 0);
    if (page == MAP_FAILED)
        return std::nullopt;
    const auto* header = static_cast<const SegmentHeader*>(page);
    std::optional<SegmentStats> stats;
    if (header->magic == SegmentHeader::expected_magic && header->version == SegmentHeader::expected_version)
        stats = SegmentStats { header->keys.load(std::memory_order_relaxed), header->bytes.load(std::memory_order_relaxed) };
    ::munmap(page, segment_header_size);
    return stats;
}

} // namespace kv
