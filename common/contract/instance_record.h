// The instance record: what registryd writes in <run-dir>/registry.lock, the
// file whose lock it holds for its whole life, so that its successor can find
// what it leaves behind and clients can find its name table:
//
//   pid 4200
//   instance 0123456789abcdef
//   names /kv.0123456789abcdef.names.fedcba9876543210
//
// A clean shutdown empties it; a record found by a new registryd therefore
// belongs to one that died without cleaning up.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

namespace kv {

class RunDir;

struct InstanceRecord {
    pid_t pid = 0;
    std::string instance;      // 16 hex digits (new_instance_id)
    std::string names_segment; // the name table; always under segment_prefix(instance)

    bool operator==(const InstanceRecord&) const = default;
};

std::string encode(const InstanceRecord& record);
// Empty for anything encode() would not write (a bad instance id, a names
// segment outside the instance's prefix, a missing line).
std::optional<InstanceRecord> decode_instance_record(std::string_view text);

// Reads the record at `file_descriptor` (the lock file, opened by the caller).
std::optional<InstanceRecord> read_instance_record(int file_descriptor);

// A client's side: the record of the registryd on `dir`, if it is there and
// can be trusted: registry.lock a regular file (no link), owned by the run
// directory's owner, writable by nobody else. Empty otherwise, also when we
// may not read it (a user admitted only to the sockets).
std::optional<InstanceRecord> read_instance_record(const RunDir& dir);

} // namespace kv
