#include "run_dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdexcept>

#include "system_error.h"

namespace kv {

RunDirLock::RunDirLock(const RunDir& dir)
    : dir_(dir)
    , path_(dir.path() + "/" + lock_file_name)
{
    int fd = ::openat(dir.fd(), lock_file_name, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
    if (fd == -1 && errno == ELOOP)
        throw std::runtime_error("unable to use lock file " + path_ + ": it is a symbolic link; remove it");
    fd_ = UniqueFd(check(fd, "unable to open lock file", path_));
    struct stat info;
    check(::fstat(fd_.get(), &info), "unable to inspect lock file", path_);
    if (!S_ISREG(info.st_mode) || info.st_uid != ::geteuid() || info.st_nlink != 1)
        throw std::runtime_error("unable to use lock file " + path_
            + ": not a regular file of ours with a single link; remove it");
    device_ = info.st_dev;
    inode_ = info.st_ino;
    if (::flock(fd_.get(), LOCK_EX | LOCK_NB) == -1) {
        if (errno != EWOULDBLOCK)
            throw SystemError("unable to lock", path_, errno);
        auto holder = read_instance_record(fd_.get());
        throw std::runtime_error("unable to start on run directory " + dir.path() + ": another registryd"
            + (holder ? " (pid " + std::to_string(holder->pid) + ")" : "") + " is running there");
    }
    predecessor_ = read_instance_record(fd_.get());
}

void RunDirLock::publish(const InstanceRecord& record)
{
    std::string text = encode(record);
    if (::ftruncate(fd_.get(), 0) == -1 || ::pwrite(fd_.get(), text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()))
        throw SystemError("unable to write lock file", path_, errno);
}

void RunDirLock::clear() { [[maybe_unused]] int ignored = ::ftruncate(fd_.get(), 0); }

std::optional<std::string> RunDirLock::lost() const
{
    struct stat info;
    if (::fstatat(dir_.fd(), lock_file_name, &info, AT_SYMLINK_NOFOLLOW) == -1)
        return "its lock file " + path_ + " was removed";
    if (info.st_dev != device_ || info.st_ino != inode_)
        return "its lock file " + path_ + " was replaced";
    return std::nullopt;
}

} // namespace kv
