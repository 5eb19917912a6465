// A table's header page, for registryd, which holds a descriptor of every
// bucket's segment (it created them: segment_file.h) and of the name tables
// of dead instances it sweeps. It reads counters for LIST, reads the owner
// to tell a dead instance from a live one, and clears `alive` for a table
// whose owner died without doing so.
//
// Each call maps the header page alone and looks at it guarded: the table's
// owner (a bucket, or any process of its uid) can truncate the segment
// meanwhile, and that is an empty answer, not a SIGBUS.
#pragma once

#include <cstdint>
#include <optional>

#include "process_identity.h"

namespace kv {

struct TableStats {
    std::uint64_t keys = 0;
    std::uint64_t bytes = 0;
};

// Reads the counters from the header page alone. Empty if `fd` does not
// (yet, or any more) hold a table of this layout.
std::optional<TableStats> read_table_stats(int fd);

// Clears `alive` in the header of a table whose owner died without doing it
// (registryd, when it reaps a bucket); `fd` must be open read-write. False if
// `fd` does not hold a table of this layout.
bool mark_table_gone(int fd);

// Moves the cluster fence of the table at `fd` (TableHeader::write_deadline_ns):
// registryd, with each keepalive etcd confirms. False if `fd` does not hold a
// table of this layout (a bucket still formatting its segment).
bool set_write_deadline(int fd, std::int64_t steady_ns);

// The owner recorded in the header of the table at `fd`. Empty if it is not
// a table of this layout and version (a table being created, or another
// version's): then nobody can say its owner is dead.
std::optional<ProcessIdentity> read_table_owner(int fd);

} // namespace kv
