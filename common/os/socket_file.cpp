#include "socket_file.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "run_dir.h"
#include "system_error.h"

namespace kv {

SocketFile SocketFile::listen(int directory_fd, const std::string& name, const std::string& shown_path, mode_t mode)
{
    check_socket_path_length(shown_path);
    const std::string through = "/proc/self/fd/" + std::to_string(directory_fd) + "/" + name;
    check_socket_path_length(through);
    SocketFile file;
    file.listener_ = UniqueFd(check(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "unable to create socket", shown_path));
    sockaddr_un address {};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, through.data(), through.size());
    check(::bind(file.listener_.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address), "unable to bind socket", shown_path);
    file.directory_fd_ = directory_fd;
    file.name_ = name;
    file.shown_path_ = shown_path;
    file.bound_ = true;
    struct stat info;
    check(::fstatat(directory_fd, name.c_str(), &info, AT_SYMLINK_NOFOLLOW), "unable to inspect socket", shown_path);
    file.device_ = info.st_dev;
    file.inode_ = info.st_ino;
    // The umask (077 in registryd) made it private already; this only widens
    // it when other users are admitted.
    check(::fchmodat(directory_fd, name.c_str(), mode, 0), "unable to set the mode of socket", shown_path);
    check(::listen(file.listener_.get(), SOMAXCONN), "unable to listen on socket", shown_path);
    return file;
}

SocketFile::SocketFile(SocketFile&& other) noexcept { *this = std::move(other); }

SocketFile& SocketFile::operator=(SocketFile&& other) noexcept
{
    if (this != &other) {
        remove();
        listener_ = std::move(other.listener_);
        directory_fd_ = other.directory_fd_;
        name_ = std::move(other.name_);
        shown_path_ = std::move(other.shown_path_);
        device_ = other.device_;
        inode_ = other.inode_;
        bound_ = std::exchange(other.bound_, false);
    }
    return *this;
}

bool SocketFile::remove()
{
    if (!std::exchange(bound_, false))
        return false;
    listener_.reset();
    struct stat info;
    if (::fstatat(directory_fd_, name_.c_str(), &info, AT_SYMLINK_NOFOLLOW) == -1)
        return false;
    if (info.st_dev != device_ || info.st_ino != inode_)
        return false; // someone else's now: leave it
    return ::unlinkat(directory_fd_, name_.c_str(), 0) == 0;
}

StaleSocket remove_stale_socket(int directory_fd, const std::string& name)
{
    struct stat info;
    if (::fstatat(directory_fd, name.c_str(), &info, AT_SYMLINK_NOFOLLOW) == -1)
        return StaleSocket::absent;
    if (!S_ISSOCK(info.st_mode) || info.st_uid != ::geteuid())
        return StaleSocket::foreign;
    // Does anyone listen? Non-blocking: a full backlog (EAGAIN) is someone too.
    const std::string through = "/proc/self/fd/" + std::to_string(directory_fd) + "/" + name;
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_un address {};
    address.sun_family = AF_UNIX;
    if (!probe || through.size() >= sizeof address.sun_path)
        return StaleSocket::in_use; // cannot tell: leave it
    std::memcpy(address.sun_path, through.data(), through.size());
    if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0 || errno != ECONNREFUSED)
        return StaleSocket::in_use;
    return ::unlinkat(directory_fd, name.c_str(), 0) == 0 ? StaleSocket::removed : StaleSocket::absent;
}

} // namespace kv
