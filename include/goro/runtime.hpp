// goro/runtime.hpp - the scheduler's knobs and counters (Go's package runtime).
//
// goro multiplexes goroutines M:N onto OS threads. GOMAXPROCS logical processors (Ps) run
// goroutines; each P is served by one OS thread (an M) at a time. The runtime starts on first
// use (any call in this header or goro::go); main() stays a plain thread that may wait on
// goroutines with the primitives in <goro/sync.hpp>.
//
// Thread-safety: every function here may be called from any goroutine or plain thread at any
// time, concurrently. None of them blocks, except yield(), which lets other goroutines run.
#pragma once

#include <cstddef>
#include <cstdint>

#include "goro/export.hpp"

namespace goro {

/// Yields the processor: the calling goroutine goes to the back of its P's run queue and other
/// runnable goroutines run first (Go's runtime.Gosched). On a plain thread it calls
/// sched_yield(). Never blocks indefinitely.
GORO_API void yield() noexcept;

/// The number of Ps (logical processors) that run goroutines at once. The default is the number
/// of CPUs this process may use (its affinity mask, capped by the cgroup v2 cpu.max quota
/// rounded up); the environment variable GOMAXPROCS=<positive integer> overrides it (any other
/// value is ignored with one warning on stderr).
GORO_API int gomaxprocs() noexcept;

/// Changes GOMAXPROCS while goroutines run and returns the previous value. Growing takes effect
/// at once; when shrinking, each retired P stops as soon as its running goroutine next enters
/// the scheduler, and its queued goroutines move to the global run queue (no stop-the-world).
/// Throws std::invalid_argument if n < 1 or n > max_procs().
GORO_API int set_gomaxprocs(int n);

/// The most Ps a process may have (a compile-time constant, 1024).
GORO_API int max_procs() noexcept;

/// The number of CPUs this process may run on: the size of its affinity mask (Go's NumCPU).
GORO_API int num_cpu() noexcept;

/// The number of goroutines that exist now: started and not yet returned, whether running,
/// runnable or parked. Plain threads (main included) are not goroutines and are not counted,
/// unlike Go, whose main is a goroutine.
GORO_API std::int64_t num_goroutine() noexcept;

/// The number of OS threads of the whole process, as the kernel counts them
/// (/proc/self/task), whoever created them. Returns -1 if /proc is not mounted.
GORO_API int num_threads() noexcept;

/// True when called from a goroutine, false on a plain thread (including main and the
/// runtime's own scheduler stacks).
GORO_API bool in_goroutine() noexcept;

/// The default stack reservation for new goroutines, in bytes (256 KiB unless changed). Stack
/// memory is reserved virtually and committed by the kernel page by page as it is touched.
GORO_API std::size_t default_stack_size() noexcept;

/// Sets the default stack reservation for goroutines started afterwards. The size is rounded
/// up to a multiple of the page size; it must be between 16 KiB and 1 GiB or
/// std::invalid_argument is thrown. Thread-safe; goroutines already running keep their stacks.
GORO_API void set_default_stack_size(std::size_t bytes);

namespace this_goroutine {

/// The calling goroutine's id: unique for the process lifetime, starting at 1, never reused.
/// Returns 0 on a plain thread.
GORO_API std::uint64_t id() noexcept;

}  // namespace this_goroutine

}  // namespace goro
