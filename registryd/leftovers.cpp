#include "leftovers.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <utility>
#include <vector>

#include "pidfd.h"
#include "process_identity.h"
#include "run_dir.h"
#include "shared_table.h"
#include "small_file.h"
#include "socket_file.h"
#include "unique_fd.h"

namespace kv {

namespace {

bool ends_with(const std::string& text, const std::string& suffix)
{
    return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Calls `visit` with each entry name of `directory`, then closes it.
template <typename Visit>
void for_each_entry(DIR* directory, Visit visit)
{
    if (!directory)
        return;
    while (dirent* entry = ::readdir(directory)) {
        std::string name = entry->d_name;
        if (name != "." && name != "..")
            visit(name);
    }
    ::closedir(directory);
}

bool exited(int pidfd)
{
    pollfd entry { pidfd, POLLIN, 0 };
    return ::poll(&entry, 1, 0) != 0;
}

// The whole environment of `pid`, or empty if we may not read it.
std::string environment_of(pid_t pid)
{
    int error = 0;
    auto text = read_small_file("/proc/" + std::to_string(pid) + "/environ", 1 << 20, error);
    return text ? std::move(*text) : std::string();
}

std::size_t kill_processes(const std::string& instance, std::chrono::milliseconds wait)
{
    const std::string marker = std::string(instance_environment_variable) + "=" + instance;
    std::vector<UniqueFd> killed;
    for_each_entry(::opendir("/proc"), [&](const std::string& name) {
        if (name.find_first_not_of("0123456789") != std::string::npos)
            return;
        const pid_t pid = static_cast<pid_t>(std::stol(name));
        if (pid == ::getpid())
            return;
        struct stat info;
        if (::stat(("/proc/" + name).c_str(), &info) == -1 || info.st_uid != ::geteuid())
            return;
        // Pin the process first: if what we read below belonged to it, it is
        // still the same process as long as its pidfd has not turned readable.
        UniqueFd pidfd(::pidfd_open(pid, 0));
        if (!pidfd)
            return;
        const std::string environment = environment_of(pid);
        bool marked = false;
        for (std::size_t at = 0; at < environment.size();) {
            std::size_t end = environment.find('\0', at);
            if (end == std::string::npos)
                end = environment.size();
            marked |= environment.compare(at, end - at, marker) == 0;
            at = end + 1;
        }
        if (!marked || exited(pidfd.get()))
            return;
        if (::pidfd_send_signal(pidfd.get(), SIGKILL, nullptr, 0) == 0)
            killed.push_back(std::move(pidfd));
    });
    // Wait for them to die (not to be reaped: they are not our children), so
    // nothing of theirs still runs once we serve.
    const auto deadline = std::chrono::steady_clock::now() + wait;
    for (const auto& pidfd : killed) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        pollfd entry { pidfd.get(), POLLIN, 0 };
        while (::poll(&entry, 1, static_cast<int>(std::max<long long>(0, left.count()))) == -1 && errno == EINTR) {
        }
    }
    return killed.size();
}

// A segment of our uid at /dev/shm/`name`, or nothing: a name anyone could
// have made is believed only after this look at who did.
UniqueFd open_our_segment(const std::string& name, Access access)
{
    UniqueFd fd = open_segment("/" + name, access);
    struct stat info;
    if (!fd || ::fstat(fd.get(), &info) == -1 || !S_ISREG(info.st_mode) || info.st_uid != ::geteuid())
        return UniqueFd();
    return fd;
}

std::size_t remove_segments(const std::string& instance)
{
    const std::string prefix = segment_prefix(instance).substr(1); // as listed in /dev/shm, without the '/'
    std::size_t removed = 0;
    for_each_entry(::opendir("/dev/shm"), [&](const std::string& name) {
        if (name.compare(0, prefix.size(), prefix) != 0)
            return;
        if (!open_our_segment(name, Access::read_only))
            return; // not ours: someone copied the name; leave it
        removed += ::shm_unlink(("/" + name).c_str()) == 0;
    });
    return removed;
}

std::size_t remove_sockets(const RunDir& dir, const std::string& instance)
{
    const std::string suffix = "." + instance + ".sock";
    std::size_t removed = 0;
    UniqueFd listing(::openat(dir.buckets_fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    DIR* directory = listing ? ::fdopendir(listing.get()) : nullptr;
    if (!directory)
        return 0;
    listing.release(); // closedir() closes it now
    for_each_entry(directory, [&](const std::string& name) {
        if (ends_with(name, suffix))
            removed += remove_stale_socket(dir.buckets_fd(), name) == StaleSocket::removed;
    });
    return removed;
}

// "kv.<instance>.names.<random>" as listed in /dev/shm: the instance, or empty.
std::string instance_of_name_table(const std::string& name)
{
    auto is_hex = [](std::string_view text) {
        return text.size() == 16 && text.find_first_not_of("0123456789abcdef") == std::string_view::npos;
    };
    std::string_view view = name;
    if (view.size() != 3 + 16 + 7 + 16 || view.substr(0, 3) != "kv." || view.substr(19, 7) != ".names."
        || !is_hex(view.substr(3, 16)) || !is_hex(view.substr(26)))
        return {};
    return std::string(view.substr(3, 16));
}

} // namespace

LeftoverCounts remove_dead_instances(std::chrono::milliseconds wait)
{
    LeftoverCounts counts;
    std::vector<std::string> names;
    for_each_entry(::opendir("/dev/shm"), [&](const std::string& name) {
        if (!instance_of_name_table(name).empty())
            names.push_back(name);
    });
    for (const auto& name : names) {
        UniqueFd table = open_our_segment(name, Access::read_write);
        if (!table)
            continue; // not ours
        // A live registryd holds this lock for its whole life, in whatever pid
        // namespace it runs; the owner check covers one that has created its
        // table but not locked it yet. Held while we sweep: no two sweep one instance.
        if (::flock(table.get(), LOCK_EX | LOCK_NB) == -1)
            continue;
        auto owner = read_table_owner(table.get());
        if (!owner || is_running(*owner))
            continue;
        mark_table_gone(table.get()); // readers that still map it stop trusting it
        const std::string instance = instance_of_name_table(name);
        counts.processes += kill_processes(instance, wait);
        counts.segments += remove_segments(instance);
    }
    return counts;
}

LeftoverCounts remove_leftovers(const RunDir& dir, const std::string& instance, std::chrono::milliseconds wait)
{
    LeftoverCounts counts;
    counts.processes = kill_processes(instance, wait);
    counts.segments = remove_segments(instance);
    counts.sockets = remove_sockets(dir, instance);
    return counts;
}

} // namespace kv
