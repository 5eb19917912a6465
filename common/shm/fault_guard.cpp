#include "fault_guard.h"

#include <signal.h>

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

void on_sigbus(int signal, siginfo_t* info, void* context)
{
    // A fault the kernel raised (si_code > 0; kill and sigqueue give <= 0) at
    // an address a guard of this thread covers: abandon that guarded access.
    if (info && info->si_code > 0) {
        const auto address = reinterpret_cast<std::uintptr_t>(info->si_addr);
        for (detail::FaultGuard* guard = detail::active_fault_guard; guard; guard = guard->outer) {
            if (address >= guard->begin && address < guard->end) {
                detail::active_fault_guard = guard->outer;
                siglongjmp(guard->env, 1);
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
        // An empty mask and SA_NODEFER: a guard's sigsetjmp(env, 0) saves no
        // signal mask, so siglongjmp restores none; the handler must block nothing.
        ::sigemptyset(&action.sa_mask);
        action.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
        check(::sigaction(SIGBUS, &action, &previous_action), "unable to install a handler for", "SIGBUS");
        return true;
    }();
    (void)installed;
}

} // namespace kv
