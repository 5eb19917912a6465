// A segment's name in /dev/shm, which every user can write to: a segment is
// created under a name that did not exist, and a name is removed only while
// it still refers to the object its creator holds.
//
// registryd creates a bucket's segment and keeps a descriptor of it: it never
// opens by name anything it did not create. A SharedTableWriter that creates
// its own segment (the name table, tests) goes through the same two calls.
#pragma once

#include <string>

#include "mapping.h"
#include "unique_fd.h"

namespace kv {

// shm_open(name, O_CREAT|O_EXCL|O_RDWR|O_CLOEXEC, 0600): a new empty object,
// never one that was there. Throws SystemError
// "unable to create segment NAME: ..." (File exists if the name is taken).
UniqueFd create_segment(const std::string& name);

// An existing segment, never through a symlink planted under the name
// (O_NOFOLLOW; glibc's shm_open adds it too, said here because trust
// depends on it) and never hanging on a FIFO planted there (O_NONBLOCK).
// `access` is Access::read_only or read_write (mapping.h). Invalid if there
// is no such segment or it cannot be opened; the caller checks what it is.
UniqueFd open_segment(const std::string& name, Access access);

// shm_unlink(name), but only if `name` still refers to the object `fd` is
// open on (same st_dev and st_ino). False if it does not, or is gone. (Only
// the owner's uid or root can replace an entry of the sticky /dev/shm
// between the check and the unlink.)
bool remove_segment_if_same(const std::string& name, int fd);

} // namespace kv
