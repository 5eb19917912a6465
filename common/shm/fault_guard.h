// FaultGuard: reading a mapping that may shrink under the reader.
//
// A direct reader maps a segment that another process owns. If the segment
// is truncated (by its owner, or by any process of the owner's uid), touching
// a page past its new end raises SIGBUS, which would kill the reader. A
// guarded access instead comes back with `false` from wherever it faulted.
//
// How: one process-wide SIGBUS handler (install_fault_handler). Each thread
// has a chain of active guards, innermost first; a guard is a sigjmp_buf and
// the address range it covers. On a fault the kernel raised (not one sent by
// kill) at an address an active guard covers, the handler siglongjmps to that
// guard. Any other SIGBUS goes on to the disposition that was there before
// the handler (by default: the process dies), so none is swallowed.
//
// Cost per guarded access: one call, a sigsetjmp that saves registers and no
// signal mask (no system call), two thread-local stores. The handler is
// installed with SA_NODEFER and an empty sa_mask, so jumping out of it leaves
// the signal mask as it was.
#pragma once

#include <setjmp.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace kv {

// Installs the SIGBUS handler, once per process; later calls cost one load.
// Call it where a mapping is opened, before any guarded access to it.
// Throws SystemError if sigaction fails.
void install_fault_handler();

namespace detail {

struct FaultGuard {
    sigjmp_buf env;
    std::uintptr_t begin;
    std::uintptr_t end;
    FaultGuard* outer;
};

// The innermost active guard of this thread; read by the handler.
inline constinit thread_local FaultGuard* active_fault_guard = nullptr;

// Makes `outer` the active guard again when a guarded access ends, whichever
// way: normally, by the handler's jump, or by an exception from `access`.
// So the chain never holds a guard whose frame is gone.
struct GuardScope {
    FaultGuard* outer;
    ~GuardScope()
    {
        std::atomic_signal_fence(std::memory_order_seq_cst);
        active_fault_guard = outer;
    }
};

} // namespace detail

// Runs `access()`, which touches only [begin, begin + size) of a shared
// mapping (plus ordinary memory that cannot fault). True if it ran to its end;
// false if it touched a page that no longer exists there, in which case it
// was abandoned at that instruction. So `access` must hold nothing that needs
// a destructor or can be left half-updated when it is abandoned (a memcpy into
// a string already sized is fine; growing a string while reading the mapping
// is not: the new buffer would leak), and its caller must throw away whatever
// it wrote when the answer is false. Not inlinable: GCC never inlines a
// function that calls sigsetjmp; `access` itself is inlined into it.
template <typename Access>
bool guarded_access(const void* begin, std::size_t size, Access&& access)
{
    detail::FaultGuard guard;
    guard.begin = reinterpret_cast<std::uintptr_t>(begin);
    guard.end = guard.begin + size;
    guard.outer = detail::active_fault_guard;
    // Before sigsetjmp: the jump back does not leave its scope.
    const detail::GuardScope scope { guard.outer };
    if (sigsetjmp(guard.env, 0) != 0)
        return false; // abandoned; the handler has made guard.outer active again
    detail::active_fault_guard = &guard;
    // Compiler barriers only: the handler runs on this thread, and must see
    // the guard in place before the first access and until the last one.
    std::atomic_signal_fence(std::memory_order_seq_cst);
    access();
    return true;
}

} // namespace kv
