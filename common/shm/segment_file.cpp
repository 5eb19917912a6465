#include "segment_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>

#include "system_error.h"

namespace kv {

UniqueFd create_segment(const std::string& name)
{
    UniqueFd fd(::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600));
    if (!fd)
        throw SystemError("unable to create segment", name, errno);
    return fd;
}

UniqueFd open_segment(const std::string& name, Access access)
{
    const int mode = access == Access::read_write ? O_RDWR : O_RDONLY;
    return UniqueFd(::shm_open(name.c_str(), mode | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0));
}

bool remove_segment_if_same(const std::string& name, int fd)
{
    struct stat ours, named;
    if (::fstat(fd, &ours) == -1)
        return false;
    UniqueFd current = open_segment(name, Access::read_only);
    if (!current || ::fstat(current.get(), &named) == -1)
        return false;
    if (named.st_dev != ours.st_dev || named.st_ino != ours.st_ino)
        return false;
    return ::shm_unlink(name.c_str()) == 0;
}

} // namespace kv
