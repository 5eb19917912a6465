// Leftovers: what a registryd that died without cleaning up (SIGKILL, a
// crash, a power cut of the process) left behind, found and removed by the
// next registryd on the same run dir before it serves anyone.
//
// Everything is found through the predecessor's instance id (from our lock
// file, or from the name of a dead instance's name table), and is removed
// only if it also carries our uid (the id alone proves nothing: it shows in
// world-readable /dev/shm names): segments named /kv.<instance>.* in /dev/shm,
// sockets named *.<instance>.sock in buckets/, and processes whose
// environment says KV_INSTANCE=<instance> (its buckets, also stopped ones,
// and their descendants). A process is signalled through a pidfd taken
// before its environment was read, and only if it was still running after
// the read: a pid reused by an unrelated process is never signalled.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include "bucket_launch.h" // instance_environment_variable

namespace kv {

class RunDir;

struct LeftoverCounts {
    std::size_t segments = 0;
    std::size_t sockets = 0;
    std::size_t processes = 0;
    std::size_t total() const { return segments + sockets + processes; }
};

// Kills the instance's processes (SIGKILL, waiting up to `wait` for them to
// die), then removes its segments and sockets.
LeftoverCounts remove_leftovers(const RunDir& dir, const std::string& instance,
    std::chrono::milliseconds wait = std::chrono::milliseconds(2000));

// The same for every instance of our uid that is dead, whatever run dir it
// used (one whose run dir and record were removed after it died): an
// instance is dead when its name table is not flock(2)ed by its registryd
// (which holds that lock for its whole life, in any pid namespace) and the
// owner recorded in the table is not running. Its sockets stay where they
// are (in a run dir we do not know); its segments and processes go.
LeftoverCounts remove_dead_instances(std::chrono::milliseconds wait = std::chrono::milliseconds(2000));

} // namespace kv
