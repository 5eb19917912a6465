// A table mapped by a process that does not own it: a reader, or registryd
// looking at a bucket's header page. The checks it makes before it believes
// anything the mapping says, in one place.
//
// The owner's uid can truncate the segment at any moment, so every look at
// such a mapping is a guarded access (fault_guard.h): a page that went away
// is an answer ("not a table"), never a SIGBUS. Callers install the SIGBUS
// handler (install_fault_handler) before they call check_table.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <optional>

#include "fault_guard.h"
#include "mapping.h"
#include "table_layout.h"

namespace kv {

// How much of a segment to map: its header page alone (registryd's helpers,
// which read counters and the owner and clear `alive`), or all of it (a
// reader, which follows the index into the heap).
enum class MapExtent { header_page, whole_segment };

// fstat of the segment `fd` is open on, if it may hold a table: a regular
// file at least a header page long. Empty otherwise, and if fstat fails.
std::optional<struct stat> stat_table_file(int fd);

// Maps `extent` of the segment `fd` is open on (`info`, from
// stat_table_file). Empty if mmap fails: to a caller that does not own the
// table, a segment it cannot map is no table.
Mapping map_table(int fd, const struct stat& info, MapExtent extent, Access access) noexcept;

// The checks every user of a mapped table makes: a table of this layout and
// version, whose recorded size is the segment's size (`file_size`, from
// fstat). Reads the mapping: call it inside a guarded access.
inline bool is_table(const TableHeader& header, std::uint64_t file_size)
{
    return header.magic == TableHeader::expected_magic && header.version == TableHeader::expected_version
        && header.size == file_size;
}

// True if `mapping` holds a table (is_table) and `accept(header)` returns
// true, both in one guarded access; false if either says no or a page went
// away meanwhile. `accept` may read the header or write it (through a
// read-write mapping); what went away reads as zeros meanwhile (see guarded_access).
template <typename Accept>
bool check_table(const Mapping& mapping, std::uint64_t file_size, Accept accept)
{
    bool accepted = false;
    const bool whole = guarded_access(mapping.base(), mapping.size(), [&] {
        auto& header = *reinterpret_cast<TableHeader*>(mapping.base());
        accepted = is_table(header, file_size) && accept(header);
    });
    return whole && accepted;
}

} // namespace kv
