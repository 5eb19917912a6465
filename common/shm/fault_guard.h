// FaultGuard: reading a mapping that may shrink under the reader.
//
// A direct reader maps a segment that another process owns. If the segment
// is truncated (by its owner, or by any process of the owner's uid), touching
// a page past its new end raises SIGBUS, which would kill the reader. A
// guarded access instead runs on, and raises a flag that says so.
//
// How: one process-wide SIGBUS handler (install_fault_handler). Each thread
// has a chain of active guards, innermost first; a guard is the address range
// it covers and a flag to raise. On a missing page (a fault the kernel
// raised, not a signal sent by kill) at an address an active guard covers,
// the handler raises that guard's flag and puts private zeros over that page
// and the rest of the guard's range (a file shrinks from its end; one page
// only if that fails), then returns: the faulting instruction runs again and
// reads zeros. So the access runs to its end and nothing is abandoned
// half-way; the flag says that what it read is not the table. Any other
// SIGBUS goes on to the disposition that was there before the handler (by
// default: the process dies), so none is swallowed.
//
// Cost per guarded access: four stores to the stack and two to a
// thread-local, all inlined: no call, no sigsetjmp. (The guard used one: a
// direct GET over a large table ran at 0.6 times today's rate with it, for
// only 15 more instructions a GET; BENCHMARKS.md has the figures.)
#pragma once

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
    std::uintptr_t begin;
    std::uintptr_t end;
    std::atomic<bool>* faulted;
    FaultGuard* outer;
};

// The innermost active guard of this thread; read by the handler.
inline constinit thread_local FaultGuard* active_fault_guard = nullptr;

// Makes `outer` the active guard again when a guarded access ends, whichever
// way: normally or by an exception from `access`. So the chain never holds a
// guard whose frame is gone.
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
// mapping (plus ordinary memory that cannot fault). If a page of that range
// went away meanwhile (the segment shrank), `faulted` is set, and from then
// on that page and the rest of the range read as zeros (and take writes that
// go nowhere): `access` must cope with zeros as with any garbage (end every
// loop, follow nothing unchecked), and its caller must throw away what it
// read once `faulted` is set. The flag stays set: a reader keeps it for the
// life of its mapping, whose pages are no longer all the segment's.
template <typename Access>
void guarded_access(const void* begin, std::size_t size, std::atomic<bool>& faulted, Access&& access)
{
    detail::FaultGuard guard;
    guard.begin = reinterpret_cast<std::uintptr_t>(begin);
    guard.end = guard.begin + size;
    guard.faulted = &faulted;
    guard.outer = detail::active_fault_guard;
    const detail::GuardScope scope { guard.outer };
    std::atomic_signal_fence(std::memory_order_seq_cst); // the guard whole before the handler can see it
    detail::active_fault_guard = &guard;
    // Compiler barriers only: the handler runs on this thread, and must see
    // the guard in place before the first access and until the last one.
    std::atomic_signal_fence(std::memory_order_seq_cst);
    access();
}

// The same for a mapping used once: true if no page of it went away
// during `access`, false if one did (throw away what it read).
template <typename Access>
bool guarded_access(const void* begin, std::size_t size, Access&& access)
{
    std::atomic<bool> faulted { false };
    guarded_access(begin, size, faulted, access);
    return !faulted.load(std::memory_order_relaxed);
}

} // namespace kv
