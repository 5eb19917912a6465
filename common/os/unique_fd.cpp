#include "unique_fd.h"

#include <fcntl.h>
#include <unistd.h>

#include "system_error.h"

namespace kv {

Pipe make_pipe(const char* what)
{
    int fds[2];
    check(::pipe2(fds, O_CLOEXEC), "unable to create pipe for", what);
    return Pipe { UniqueFd(fds[0]), UniqueFd(fds[1]) };
}

} // namespace kv
