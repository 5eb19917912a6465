#include "password_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "small_file.h"
#include "system_error.h"

namespace kv {

namespace {

// `fd` from offset 0, up to past `limit` bytes (small_file.h); throws
// SystemError naming `what` if a read fails.
std::string read_from_start(int fd, std::size_t limit, const std::string& what)
{
    int error = 0;
    auto text = read_up_to(fd, limit, error);
    if (!text)
        throw SystemError("unable to read", what, error);
    return std::move(*text);
}

} // namespace

std::string read_password_file(const std::string& path)
{
    const auto fail = [&path](const std::string& why) { return std::runtime_error("password file " + path + ": " + why); };
    // O_NOFOLLOW: a symlink could point anywhere; the checks are of the
    // file itself, made on the descriptor read from (no race with a rename).
    UniqueFd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK));
    if (!file)
        throw fail(errno == ELOOP ? "is a symbolic link; name the file itself" : std::strerror(errno));
    struct stat status {};
    if (::fstat(file.get(), &status) == -1)
        throw fail(std::strerror(errno));
    if (!S_ISREG(status.st_mode))
        throw fail("not a regular file");
    if (status.st_uid != ::geteuid() && status.st_uid != 0)
        throw fail("owned by uid " + std::to_string(status.st_uid) + ", not by our uid " + std::to_string(::geteuid())
            + " or root; another user could set the password");
    if ((status.st_mode & 077) != 0) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(status.st_mode & 07777));
        throw fail(std::string("readable or writable by group or others (mode ") + mode + "); chmod 600 it");
    }
    std::string text = read_from_start(file.get(), longest_password + 2, path);
    if (const auto newline = text.find('\n'); newline != std::string::npos)
        text.resize(newline);
    else if (text.size() > longest_password)
        throw fail("first line longer than " + std::to_string(longest_password) + " bytes");
    if (!text.empty() && text.back() == '\r')
        text.pop_back();
    if (text.size() > longest_password)
        throw fail("first line longer than " + std::to_string(longest_password) + " bytes");
    if (text.empty())
        throw fail("the password (its first line) is empty");
    return text;
}

UniqueFd password_descriptor(const std::string& password)
{
    UniqueFd memory(::memfd_create("kv-password", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!memory)
        throw SystemError("unable to make", "the password descriptor (memfd_create)", errno);
    for (std::size_t written = 0; written < password.size();) {
        const ssize_t size = ::write(memory.get(), password.data() + written, password.size() - written);
        if (size == -1 && errno == EINTR)
            continue;
        if (size == -1)
            throw SystemError("unable to write", "the password descriptor", errno);
        written += static_cast<std::size_t>(size);
    }
    // Sealed: no bucket can change what the next one reads.
    if (::fcntl(memory.get(), F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) == -1)
        throw SystemError("unable to seal", "the password descriptor", errno);
    return memory;
}

std::string read_password(int fd)
{
    std::string password = read_from_start(fd, longest_password, "the password descriptor " + std::to_string(fd));
    if (password.empty() || password.size() > longest_password)
        throw std::runtime_error("the password descriptor " + std::to_string(fd) + " holds no password of 1 to "
            + std::to_string(longest_password) + " bytes");
    return password;
}

} // namespace kv
