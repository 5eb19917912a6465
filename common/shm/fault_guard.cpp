#include "fault_guard.h"

#include <errno.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "system_error.h"

namespace kv {

namespace {

// The disposition before ours: every SIGBUS that is not a guarded fault goes there.
struct sigaction previous_action {};

bool is_function(const struct sigaction& action)
{
    return (action.sa_flags & SA_SIGINFO) ? action.sa_sigaction != nullptr
                                          : action.sa_handler != SIG_DFL && action.sa_handler != SIG_IGN;
}

// The page size, read once when the handler is installed (sysconf is not
// one of the calls a signal handler may make).
std::uintptr_t page_size = 4096;

void on_sigbus(int signal, siginfo_t* info, void* context)
{
    // A fault the kernel raised (si_code > 0; kill and sigqueue give <= 0) at
    // an address a guard of this thread covers: raise the guard's flag, and
    // put a private page of zeros where the page went away (MAP_FIXED
    // replaces that one page of the guard's mapping, nothing else). Returning
    // runs the faulting load or store again, on the zeros. A raw system
    // call: no sanitizer's interceptor runs inside this handler.
    if (info && info->si_code > 0) {
        const auto address = reinterpret_cast<std::uintptr_t>(info->si_addr);
        for (detail::FaultGuard* guard = detail::active_fault_guard; guard; guard = guard->outer) {
            if (address >= guard->begin && address < guard->end) {
                guard->faulted->store(true, std::memory_order_relaxed);
                const int saved_errno = errno;
                const long zeros = ::syscall(SYS_mmap, address & ~(page_size - 1), page_size, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
                errno = saved_errno;
                if (zeros != -1)
                    return;
                break; // no memory for a page of zeros: the fault stands, as if unguarded
            }
        }
    }
    // Not ours: to whatever was there before.
    if (is_function(previous_action)) {
        if (previous_action.sa_flags & SA_SIGINFO)
            previous_action.sa_sigaction(signal, info, context);
        else
            previous_action.sa_handler(signal);
        return;
    }
    // SIG_DFL or SIG_IGN: reinstate it. A signal sent by a process is sent
    // again, and delivered at once (SA_NODEFER: SIGBUS is not blocked here).
    // For a fault, returning runs the faulting instruction again, and it
    // faults into that disposition, with the fault's own address.
    ::sigaction(SIGBUS, &previous_action, nullptr);
    if (!info || info->si_code <= 0)
        ::raise(SIGBUS);
}

} // namespace

void install_fault_handler()
{
    static const bool installed = [] {
        struct sigaction action {};
        action.sa_sigaction = on_sigbus;
        page_size = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
        // An empty mask and SA_NODEFER: the handler blocks nothing, so a
        // SIGBUS that is not ours is delivered again at once (below).
        ::sigemptyset(&action.sa_mask);
        action.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
        check(::sigaction(SIGBUS, &action, &previous_action), "unable to install a handler for", "SIGBUS");
        return true;
    }();
    (void)installed;
}

} // namespace kv
