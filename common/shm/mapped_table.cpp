#include "mapped_table.h"

namespace kv {

std::optional<struct stat> stat_table_file(int fd)
{
    struct stat info;
    if (::fstat(fd, &info) == -1 || !S_ISREG(info.st_mode) || static_cast<std::uint64_t>(info.st_size) < table_header_size)
        return std::nullopt;
    return info;
}

Mapping map_table(int fd, const struct stat& info, MapExtent extent, Access access) noexcept
{
    const std::size_t size = extent == MapExtent::whole_segment ? static_cast<std::size_t>(info.st_size) : table_header_size;
    return Mapping::try_map(fd, size, access);
}

} // namespace kv
