// listen_at_path: a listening Unix socket bound at a path, for RespServer.
//
// Temporary: the daemons will bind relative to their run-directory
// descriptor and remove the file with an identity check instead.
#pragma once

#include <sys/types.h>

#include <string>

#include "unique_fd.h"

namespace kv {

// Removes a stale file at `path`, binds a close-on-exec AF_UNIX stream socket
// there, sets the file's mode to `mode` and listens. The caller removes the
// file when it is done. Throws SystemError naming the path on failure.
UniqueFd listen_at_path(const std::string& path, mode_t mode);

} // namespace kv
