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

// Private zeros, read-write, over [at, at + bytes) of a mapping: mmap as a
// raw system call, so no sanitizer's interceptor runs inside the handler.
// (SYS_mmap takes its six arguments directly on these two; 32-bit x86 has
// another calling convention for it, so elsewhere it is libc's.)
long map_zeros(std::uintptr_t at, std::uintptr_t bytes)
{
    constexpr long protection = PROT_READ | PROT_WRITE;
    constexpr long flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE;
#if defined(__x86_64__) || defined(__aarch64__)
    return ::syscall(SYS_mmap, static_cast<long>(at), static_cast<long>(bytes), protection, flags, -1L, 0L);
#else
    return ::mmap(reinterpret_cast<void*>(at), bytes, static_cast<int>(protection), static_cast<int>(flags), -1, 0) == MAP_FAILED
        ? -1
        : 0;
#endif
}

void on_sigbus(int signal, siginfo_t* info, void* context)
{
    // A page the kernel found missing (BUS_ADRERR: past the end of the file
    // it maps; kill and sigqueue give si_code <= 0, and another cause, such
    // as an alignment fault, would fault again on zeros) at an address a
    // guard of this thread covers: raise the guard's flag, and put private
    // zeros where the pages went away. A file shrinks from its end, so
    // every page of the guard's range from this one on is gone: they are
    // all replaced at once (MAP_NORESERVE: not charged against the commit
    // limit, unless overcommit is strict; if that fails, this page alone,
    // and the others fault one by one). Only the guard's own mapping is
    // touched: the range holds the faulting address, and mappings are
    // whole pages. Read-write, since a guarded write may be what faulted.
    // Returning runs the faulting load or store again, on the zeros.
    if (info && info->si_code == BUS_ADRERR) {
        const auto address = reinterpret_cast<std::uintptr_t>(info->si_addr);
        for (detail::FaultGuard* guard = detail::active_fault_guard; guard; guard = guard->outer) {
            if (address >= guard->begin && address < guard->end) {
                guard->faulted->store(true, std::memory_order_relaxed);
                const int saved_errno = errno;
                const std::uintptr_t page = address & ~(page_size - 1);
                const std::uintptr_t range_end = (guard->end + page_size - 1) & ~(page_size - 1);
                long zeros = map_zeros(page, range_end - page);
                if (zeros == -1 && range_end - page > page_size)
                    zeros = map_zeros(page, page_size);
                errno = saved_errno;
                if (zeros != -1)
                    return;
                break; // no memory for zeros: the fault stands, as if unguarded
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
