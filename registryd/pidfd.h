// pidfd system calls. glibc 2.36's <sys/pidfd.h> has no C++ linkage guard,
// hence the extern "C" (see ../shared/PITFALLS.md).
#pragma once

#include <sys/types.h>

extern "C" {
#include <sys/pidfd.h>
}
