// Leftovers: what a registryd that died without cleaning up (SIGKILL, a
// crash, a power cut of the process) left behind, found and removed by the
// next registryd on the same run dir before it serves anyone.
//
// Everything is found through the predecessor's instance id, which only it
// and we could know (it is in our private lock file), and is removed only if
// it also carries our uid: segments named /kv.<instance>.* in /dev/shm,
// sockets named *.<instance>.sock in buckets/, and processes whose
// environment says KV_INSTANCE=<instance> (its buckets, also stopped ones,
// and their descendants). A process is signalled through a pidfd taken
// before its environment was read, and only if it was still running after
// the read: a pid reused by an unrelated process is never signalled.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

namespace kv {

class RunDir;

// The environment variable that marks a bucket (and its descendants) as
// belonging to one registryd instance.
inline constexpr const char* instance_environment_variable = "KV_INSTANCE";

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

} // namespace kv
