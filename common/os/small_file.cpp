#include "small_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "unique_fd.h"

namespace kv {

std::optional<std::string> read_up_to(int fd, std::size_t limit, int& error)
{
    error = 0;
    std::string text;
    char buffer[4096];
    for (;;) {
        const ssize_t size = ::pread(fd, buffer, sizeof buffer, static_cast<off_t>(text.size()));
        if (size == -1 && errno == EINTR)
            continue;
        if (size == -1) {
            error = errno;
            return std::nullopt;
        }
        if (size == 0)
            return text;
        text.append(buffer, static_cast<std::size_t>(size));
        if (text.size() > limit)
            return text;
    }
}

std::optional<std::string> read_small_file(const std::string& path, std::size_t limit, int& error)
{
    const UniqueFd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!file) {
        error = errno;
        return std::nullopt;
    }
    return read_up_to(file.get(), limit, error);
}

} // namespace kv
