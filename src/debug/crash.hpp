// crash.hpp - the report a process prints when it dies of a fault nobody handles: a SIGSEGV or
// SIGBUS that is not a goroutine stack overflow (stack/stack.cpp owns the handler and decides)
// and that the application installed no handler of its own for. Internal to the goro library.
#pragma once

#include <signal.h>

namespace goro::internal {

// Loads what the report needs before it is needed: glibc's backtrace() dlopen()s the unwinder
// (libgcc_s) on its first call, which allocates and takes the loader's lock, neither of which
// a fault handler may do safely. Called once when the runtime starts.
void crash_prepare() noexcept;

// Prints, to stderr: the signal, its code, the fault address and pc; the goroutine that was
// running (id, name, creation site) or the M whose scheduler stack faulted, or that the thread
// is not one of the runtime's; then the faulting stack, symbolized, innermost first. Called
// from the signal handler, on the thread's alternate signal stack, after the handler restored
// the signal's default action: the caller returns and the faulting instruction ends the process
// with its usual signal and core dump. A fault inside the report itself therefore ends it at
// once. Symbolizing allocates and locks (not async-signal-safe): the process is ending, and a
// watchdog (alarm(2) with SIGALRM's default action) ends it if the report deadlocks on a lock
// the faulting code held. The first lines are written before anything that allocates.
void crash_report(int sig, const siginfo_t* info, const void* uctx) noexcept;

}  // namespace goro::internal
