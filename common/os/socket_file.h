// SocketFile: a listening Unix socket bound at a name inside a directory we
// hold a descriptor of, removed only while that name still is our socket.
//
// Binding goes through /proc/self/fd/<directory>/<name>, so the socket lands
// in the directory that was checked, even if its path now names another one;
// removal compares the file's device and inode with what bind made, so a
// registryd never deletes a socket another instance made at the same name.
#pragma once

#include <sys/types.h>

#include <string>

#include "unique_fd.h"

namespace kv {

class SocketFile {
public:
    SocketFile() = default;
    // Binds and listens, close-on-exec, file mode `mode`. Fails (SystemError
    // naming `shown_path`) if anything already has that name: nothing is
    // removed to make room. Throws std::runtime_error for a path too long.
    static SocketFile listen(int directory_fd, const std::string& name, const std::string& shown_path, mode_t mode);

    SocketFile(SocketFile&& other) noexcept;
    SocketFile& operator=(SocketFile&& other) noexcept;
    ~SocketFile() { remove(); }

    const std::string& path() const { return shown_path_; }
    // The listening descriptor, for a server or a child; the file stays ours.
    UniqueFd take_listener() { return std::move(listener_); }
    int listener() const { return listener_.get(); }

    // Unlinks the file if it still is the socket we bound. True if it did.
    bool remove();

private:
    UniqueFd listener_;
    int directory_fd_ = -1; // not owned: the RunDir outlives its sockets
    std::string name_;
    std::string shown_path_;
    dev_t device_ = 0;
    ino_t inode_ = 0;
    bool bound_ = false;
};

enum class StaleSocket {
    absent,  // nothing by that name
    removed, // a socket of ours that nobody listens on: what a killed server left
    in_use,  // a socket of ours that a live server listens on: left alone
    foreign, // a file, a link, or another user's socket: left alone
};

// Removes `name` in `directory_fd` only if it is a socket owned by our uid on
// which a connect() is refused, which proves nobody serves it any more.
StaleSocket remove_stale_socket(int directory_fd, const std::string& name);

} // namespace kv
