// The password of kv's TCP listeners (registryd --password-file), from the
// file an operator wrote to the descriptor each bucket reads it from.
//
// The file is trusted only as far as the project's rule for anything in a
// shared place allows: it must be a regular file owned by us (or root) that
// nobody else may read or write, so no other user can learn the password
// or set it. The password reaches a bucket through a descriptor, never
// through argv or the environment, which /proc/PID/cmdline and environ show.
#pragma once

#include <cstddef>
#include <string>

#include "unique_fd.h"

namespace kv {

// The longest password kv reads: a longer first line is refused rather than
// cut, so what the operator wrote is what clients must send.
inline constexpr std::size_t longest_password = 4096;

// The first line of the file at `path`, without its line ending ("\n" or
// "\r\n"). Throws std::runtime_error with one line naming the file and why
// ("password file /etc/kv/pw: readable or writable by group or others
// (mode 0644); chmod 600 it") if it is not a regular file, is owned by
// another user than ours and root, has any group or other permission bit,
// cannot be read, or its password is empty or too long.
std::string read_password_file(const std::string& path);

// A sealed memfd holding `password`, close-on-exec, for registryd to hand
// to each bucket. Throws SystemError.
UniqueFd password_descriptor(const std::string& password);

// The whole content of `fd` from offset 0 (what password_descriptor wrote):
// bucketd's side. Throws SystemError, or std::runtime_error if it is empty
// or longer than longest_password.
std::string read_password(int fd);

} // namespace kv
