// goro/preempt.hpp - preemption control and wiring a goroutine to its OS thread.
//
// Preemption (docs/preemption.md has the full rules)
// --------------------------------------------------
// A goroutine that runs for more than 10 ms without entering the scheduler is preempted, as in
// Go: the runtime's monitor thread (sysmon) asks it to yield. The request is honoured
//  * cooperatively at the next runtime entry (a channel, lock, timer, go() or yield() call):
//    when that call returns, the goroutine goes to the back of the run queue: the global one
//    when it holds work, else its processor's local queue (as goro::yield() does);
//  * asynchronously, for a goroutine that makes no such calls: sysmon sends its thread SIGURG
//    and the handler diverts the goroutine into the scheduler, but only at a safe point: the
//    interrupted instruction is in the main executable's code (never inside libc, libstdc++
//    or any other shared object, never in the runtime, never mid-switch), no NoPreempt is
//    alive, no pthread mutex taken through pthread_mutex_lock is held (counted by the
//    runtime's interposer; std::mutex included), and the stack has room. Otherwise the signal
//    handler returns and sysmon asks again at its next tick. Every register, general purpose
//    and vector, is saved and restored around the diversion; the goroutine may resume on
//    another OS thread.
//
// Consequence for user code: between any two instructions of a goroutine's own code, it may
// move to another OS thread. A thread_local variable named in the source is re-read correctly
// after a switch only if the compiler recomputes its address; code that caches a TLS address
// (or errno's) across a long loop, or that depends on staying on one thread, must hold a
// NoPreempt or lock_os_thread().
//
// Environment: GORO_ASYNCPREEMPT=0 turns the signal off (cooperative preemption only, like
// GODEBUG=asyncpreemptoff=1). Under ThreadSanitizer asynchronous preemption is always off
// (TSan defers signal handlers, so the interrupted context is not available).
#pragma once

#include <cstdint>

#include "goro/export.hpp"

namespace goro {

/// RAII guard: while at least one NoPreempt is alive in the calling goroutine, that goroutine
/// is never preempted, neither asynchronously (signal) nor cooperatively (runtime entries do
/// not yield for a pending preemption request; it is served when the last guard is
/// destroyed). It does not stop the goroutine from blocking: a channel operation or lock that
/// must wait still parks it, and it may then resume on another thread.
///
/// Guards nest. They are per goroutine: create and destroy one on the same goroutine (a
/// goroutine that exits with a guard alive is a fatal error). On a plain thread a guard has no
/// effect. Not copyable or movable. Cost: a few nanoseconds.
class GORO_API NoPreempt {
 public:
  NoPreempt() noexcept;
  ~NoPreempt();
  NoPreempt(const NoPreempt&) = delete;
  NoPreempt& operator=(const NoPreempt&) = delete;

 private:
  void* g_;
};

/// Wires the calling goroutine to the OS thread it is running on (Go's runtime.LockOSThread):
/// until the matching unlock_os_thread(), the goroutine runs only on this thread and the
/// thread runs no other goroutine (while the goroutine is parked, the thread sleeps and its P
/// serves other threads). Calls nest: the goroutine is unlocked when every lock_os_thread()
/// has been matched. A goroutine that returns while locked takes its thread with it: the
/// thread exits instead of returning to the pool (Go's rule), so thread state the goroutine
/// changed (setns, unshare, signal masks, thread-affine libraries) never leaks to others.
///
/// On a plain thread it only counts (the thread is its own already), so lock/unlock pairs
/// still balance. Thread-safe; never blocks. Throws std::logic_error if the nesting count
/// would overflow (2^31 levels).
GORO_API void lock_os_thread();

/// Undoes one lock_os_thread() of the calling goroutine (or plain thread). When the count
/// drops to zero the goroutine may again run on any thread. Throws std::logic_error when the
/// caller holds no lock_os_thread() (unbalanced call; Go silently ignores it).
GORO_API void unlock_os_thread();

/// The calling goroutine's (or plain thread's) current lock_os_thread() nesting depth, 0 when
/// unlocked.
GORO_API int os_thread_lock_depth() noexcept;

/// The Linux thread id (gettid) of the OS thread running the caller right now. A goroutine
/// not locked to its thread may observe different values over time. Never blocks.
GORO_API int os_thread_id() noexcept;

/// Counters of preemption since the process started (monotonic, approximate under
/// concurrency; see also goro::stats once it exists).
struct PreemptCounts {
  std::uint64_t requested;     ///< preemption requests made by sysmon (10 ms slices exceeded)
  std::uint64_t cooperative;   ///< requests served at a runtime entry
  std::uint64_t async;         ///< goroutines diverted by the signal handler
  std::uint64_t signals_sent;  ///< SIGURG signals sent by sysmon
};

/// A snapshot of the preemption counters. Thread-safe; never blocks.
GORO_API PreemptCounts preempt_counts() noexcept;

}  // namespace goro
