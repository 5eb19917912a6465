// Reading a small file whole: the files of /proc kv looks at (a process's
// stat and environment, its own statm) and the password file.
//
// One loop for all of them: pread from offset 0 (the descriptor's offset may
// be shared with other processes), again after EINTR, until the end or until
// more than `limit` bytes are in, so a file that grows without end cannot
// make a reader hold more than `limit` plus one read.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

namespace kv {

// What `fd` holds from offset 0, up to its end or to the first read that
// passes `limit` bytes (a caller tells "too long" by size() > limit). Empty,
// with `error` the errno, if a read fails.
std::optional<std::string> read_up_to(int fd, std::size_t limit, int& error);

// The same for `path`, opened read-only and close-on-exec. Empty, with
// `error` the errno, if it cannot be opened or read (ENOENT, or ESRCH for a
// /proc file of a process reaped meanwhile).
std::optional<std::string> read_small_file(const std::string& path, std::size_t limit, int& error);

} // namespace kv
