// UniqueFd: the one owner of a file descriptor in this project.
//
// Every descriptor kv opens lives in a UniqueFd (or in an Asio object that
// took it over with release()). It is move-only and closes on destruction, so
// no code path can leak or double-close a descriptor. Helpers that create
// descriptors create them close-on-exec: nothing leaks into a bucketd.
#pragma once

#include <unistd.h>

#include <utility>

namespace kv {

class UniqueFd {
public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    UniqueFd& operator=(UniqueFd&& other) noexcept
    {
        if (this != &other)
            reset(std::exchange(other.fd_, -1));
        return *this;
    }
    ~UniqueFd() { reset(); }

    int get() const { return fd_; }
    bool valid() const { return fd_ >= 0; }
    explicit operator bool() const { return valid(); }

    // Gives up ownership: the caller (usually an Asio descriptor) closes it.
    int release() { return std::exchange(fd_, -1); }

    void reset(int fd = -1)
    {
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = fd;
    }

private:
    int fd_ = -1;
};

struct Pipe {
    UniqueFd read_end;
    UniqueFd write_end;
};

// pipe2(O_CLOEXEC); throws SystemError naming `what` on failure.
Pipe make_pipe(const char* what);

} // namespace kv
