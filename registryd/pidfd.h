// pidfd system calls. glibc 2.36's <sys/pidfd.h> has no C++ linkage guard:
// without the extern "C" every call fails to link ("undefined reference to
// pidfd_open(int, unsigned int)").
#pragma once

#include <sys/types.h>

extern "C" {
#include <sys/pidfd.h>
}
