// Where a kv instance keeps its sockets: the run directory, and the names
// derived from it. Bucket names never appear here: a bucket's socket and
// segment are named after its numeric id only.
#pragma once

#include <string>

namespace kv {

// --run-dir DIR, else $KV_RUN_DIR, else $XDG_RUNTIME_DIR/kv, else /run/kv for
// root and /tmp/kv-<uid> otherwise. `flag` is the --run-dir value or empty.
std::string resolve_run_dir(const std::string& flag);

enum class RunDirAccess { owner_only, traversable_by_others };

// Creates the run directory and its buckets/ folder if missing, mode 0700
// (0711 when other users are admitted: they may reach the sockets by name,
// and SO_PEERCRED decides who is served); refuses one owned by another user.
// Throws SystemError or std::runtime_error with a one-line message.
void prepare_run_dir(const std::string& run_dir, RunDirAccess access = RunDirAccess::owner_only);

std::string registry_socket_path(const std::string& run_dir);
std::string lock_file_path(const std::string& run_dir);
std::string bucket_socket_path(const std::string& run_dir, unsigned long long id);

// Every segment of every registryd that ever ran on this run dir starts with
// this prefix ("/kv.<16 hex digits of the run dir's hash>."), so a new
// registryd can find and remove what a killed one left, and never touches
// the segments of a registryd on another run dir.
std::string segment_prefix(const std::string& run_dir);
std::string segment_name(const std::string& run_dir, int registry_pid, unsigned long long id);

// Unix socket paths hold at most 107 bytes; throws a clear error past that.
void check_socket_path_length(const std::string& path);

} // namespace kv
