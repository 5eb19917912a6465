#include "table_header.h"

#include "fault_guard.h"
#include "mapped_table.h"

namespace kv {

namespace {

// Maps the header page of the table `fd` holds and visits it, guarded: the
// bucket (the table's owner) can truncate the segment meanwhile. False if
// `fd` holds no table of this layout, cannot be mapped, or the page went away.
template <typename Visit>
bool with_header(int fd, Access access, Visit visit)
{
    install_fault_handler();
    const auto info = stat_table_file(fd);
    if (!info)
        return false;
    const Mapping mapping = map_table(fd, *info, MapExtent::header_page, access);
    if (!mapping)
        return false;
    return check_table(mapping, static_cast<std::uint64_t>(info->st_size), [&](TableHeader& header) {
        visit(header);
        return true;
    });
}

} // namespace

std::optional<TableStats> read_table_stats(int fd)
{
    TableStats stats;
    if (!with_header(fd, Access::read_only, [&](const TableHeader& header) {
            stats.keys = header.keys.load(std::memory_order_relaxed);
            stats.bytes = header.bytes.load(std::memory_order_relaxed);
        }))
        return std::nullopt;
    return stats;
}

std::optional<ProcessIdentity> read_table_owner(int fd)
{
    ProcessIdentity owner;
    if (!with_header(fd, Access::read_only, [&](const TableHeader& header) {
            owner.pid = header.owner_pid;
            owner.start_time = header.owner_start_time;
        }))
        return std::nullopt;
    return owner;
}

bool set_write_deadline(int fd, std::int64_t steady_ns)
{
    return with_header(fd, Access::read_write,
        [steady_ns](TableHeader& header) { header.write_deadline_ns.store(steady_ns, std::memory_order_relaxed); });
}

bool mark_table_gone(int fd)
{
    return with_header(fd, Access::read_write,
        [](TableHeader& header) { header.alive.store(0, std::memory_order_release); });
}

} // namespace kv
