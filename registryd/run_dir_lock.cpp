#include "run_dir_lock.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>

#include "run_dir.h"
#include "system_error.h"

namespace kv {

RunDirLock::RunDirLock(const std::string& run_dir)
{
    std::string path = lock_file_path(run_dir);
    fd_ = UniqueFd(check(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600), "unable to open lock file", path));
    if (::flock(fd_.get(), LOCK_EX | LOCK_NB) == -1) {
        if (errno != EWOULDBLOCK)
            throw SystemError("unable to lock", path, errno);
        char holder[32] = {};
        [[maybe_unused]] auto read = ::pread(fd_.get(), holder, sizeof holder - 1, 0);
        std::string pid(holder, strcspn(holder, "\n"));
        throw std::runtime_error("unable to start on run directory " + run_dir + ": another registryd"
            + (pid.empty() ? "" : " (pid " + pid + ")") + " is running there");
    }
    std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd_.get(), 0) == -1 || ::pwrite(fd_.get(), pid.data(), pid.size(), 0) == -1)
        throw SystemError("unable to write lock file", path, errno);
}

std::size_t remove_leftovers(const std::string& run_dir)
{
    std::size_t removed = 0;
    std::string prefix = segment_prefix(run_dir).substr(1); // as listed in /dev/shm, without the '/'
    if (DIR* shm = ::opendir("/dev/shm")) {
        while (dirent* entry = ::readdir(shm)) {
            if (std::strncmp(entry->d_name, prefix.c_str(), prefix.size()) == 0)
                removed += ::shm_unlink(("/" + std::string(entry->d_name)).c_str()) == 0;
        }
        ::closedir(shm);
    }
    std::string buckets = run_dir + "/buckets";
    if (DIR* sockets = ::opendir(buckets.c_str())) {
        while (dirent* entry = ::readdir(sockets)) {
            std::string name = entry->d_name;
            if (name.size() > 5 && name.compare(name.size() - 5, 5, ".sock") == 0)
                removed += ::unlink((buckets + "/" + name).c_str()) == 0;
        }
        ::closedir(sockets);
    }
    return removed;
}

} // namespace kv
