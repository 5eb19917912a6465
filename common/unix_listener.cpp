#include "unix_listener.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cstring>

#include "run_dir.h"
#include "system_error.h"

namespace kv {

UniqueFd listen_at_path(const std::string& path, mode_t mode)
{
    check_socket_path_length(path);
    if (::unlink(path.c_str()) == -1 && errno != ENOENT)
        throw SystemError("unable to remove stale socket", path, errno);
    UniqueFd fd(check(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "unable to create socket", path));
    sockaddr_un address {};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path.data(), path.size());
    check(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address), "unable to bind socket", path);
    check(::chmod(path.c_str(), mode), "unable to set the mode of socket", path);
    check(::listen(fd.get(), SOMAXCONN), "unable to listen on socket", path);
    return fd;
}

} // namespace kv
