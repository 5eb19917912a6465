// For unit tests that need another process: a forked child that does
// something, says so, and waits until the test lets it go.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <functional>

#include "unique_fd.h"

namespace kv::test {

// Forks a child that runs `setup` (if given), tells the parent, then waits
// until the parent closes `release`'s write end and exits 0 with _exit(2):
// no destructor runs, so whatever `setup` made is left as a killed process
// leaves it. Returns the child's pid once `setup` has returned, -1 if the
// fork failed or `setup` threw (the child then exits 3). The parent keeps
// `release.write_end`; reset it to let the child exit, then reap the child.
inline pid_t spawn_waiting_child(Pipe& release, const std::function<void()>& setup = {})
{
    Pipe ready = make_pipe("ready");
    pid_t child = ::fork();
    if (child == 0) {
        release.write_end.reset();
        try {
            if (setup)
                setup();
        } catch (...) {
            ::_exit(3);
        }
        char byte = 1;
        if (::write(ready.write_end.get(), &byte, 1) != 1)
            ::_exit(2);
        (void)::read(release.read_end.get(), &byte, 1); // until the parent closes its end
        ::_exit(0);
    }
    release.read_end.reset();
    ready.write_end.reset();
    char byte = 0;
    if (child > 0 && ::read(ready.read_end.get(), &byte, 1) != 1) {
        ::waitpid(child, nullptr, 0);
        return -1;
    }
    return child;
}

} // namespace kv::test
