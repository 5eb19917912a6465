// The run directory: where a kv instance keeps its lock file, its socket and
// its buckets' sockets, and how each side comes to trust it.
//
// /tmp and /run/user/<uid> are shared places: another user may have made the
// directory first, planted links in it, or a cleaner may remove it while
// registryd runs. So a run directory is only ever used through a descriptor
// (RunDir) taken after checking who owns it, never by re-resolving its path,
// and registryd checks every second that the path still names that
// directory. Bucket names never appear here: files are named after ids and
// the instance (see bucket_socket_name).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "unique_fd.h"

namespace kv {

// --run-dir DIR, else $KV_RUN_DIR, else $XDG_RUNTIME_DIR/kv, else /run/kv for
// root; for other users /run/user/<uid>/kv if that directory is theirs, else
// $HOME/.kv, else /tmp/kv-<uid> (which another user could make first: it is
// then refused). `flag` is the --run-dir value or empty.
std::string resolve_run_dir(const std::string& flag);

enum class RunDirAccess { owner_only, traversable_by_others };

// Names inside a run directory.
inline constexpr const char* registry_socket_name = "registry.sock";
inline constexpr const char* lock_file_name = "registry.lock";
inline constexpr const char* buckets_directory_name = "buckets";

std::string registry_socket_path(const std::string& run_dir);
// "<id>.<instance>.sock": ids restart with each registryd, the instance does
// not, so two instances' sockets can never have the same name.
std::string bucket_socket_name(const std::string& instance, unsigned long long id);

class RunDir {
public:
    // registryd's side: creates the directory and its buckets/ folder if
    // missing (mode 0700), and opens both. Refuses a symbolic link, a
    // non-directory, or one owned by another user. Changes nothing that
    // exists: a registryd that is refused the lock must not touch the run
    // dir of the one that holds it. Throws SystemError or std::runtime_error
    // with a one-line message.
    static RunDir prepare(const std::string& path);

    // Once registryd holds the lock: mode 0700, or 0711 when other users are
    // admitted (they may reach the sockets by name, and SO_PEERCRED decides
    // who is served), for the directory and buckets/.
    void set_access(RunDirAccess access);

    // A client's side: the directory must exist, be no symbolic link, be
    // owned by us or by root (a root registryd may admit us), and be writable
    // by nobody else. Throws std::runtime_error with a one-line message.
    static RunDir open_trusted(const std::string& path);

    const std::string& path() const { return path_; }
    int fd() const { return fd_.get(); }                 // an O_PATH descriptor of the directory
    int buckets_fd() const { return buckets_fd_.get(); } // prepare() only
    uid_t owner() const { return owner_; }

    // Empty while `path` still names this very directory; else why not
    // ("was removed", "was replaced by another directory").
    std::optional<std::string> lost() const;

private:
    RunDir(std::string path, UniqueFd fd, uid_t owner, dev_t device, ino_t inode);

    std::string path_;
    UniqueFd fd_;
    UniqueFd buckets_fd_;
    uid_t owner_;
    dev_t device_;
    ino_t inode_;
};

// A registryd instance's identity: 16 random hex digits, new at each start.
// It names everything the instance creates, so a later registryd can tell
// its predecessor's leftovers from anything else.
std::string new_instance_id();

// Shared-memory names live in /dev/shm, which every user can write and list:
// each name ends in 16 random hex digits of its own, so nobody can create it
// first ("/kv.<instance>.<role>.<random>"). The prefix "/kv.<instance>." is
// what a later registryd sweeps, and only objects owned by its own uid.
std::string segment_prefix(const std::string& instance);
std::string new_segment_name(const std::string& instance, const std::string& role);

// Unix socket paths hold at most 107 bytes; throws a clear error past that.
void check_socket_path_length(const std::string& path);

} // namespace kv
