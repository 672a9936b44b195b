// goro/blocking.hpp - running a blocking call without stalling other goroutines (Go's
// entersyscall/exitsyscall), and the bound on OS threads.
#pragma once

#include <cstdint>
#include <functional>
#include <utility>

#include "goro/export.hpp"

namespace goro {

namespace internal {
// site: the code address that goro::stats() reports for this call (null: entersyscall's own
// return address, i.e. where it was called from).
GORO_API void entersyscall(const void* site) noexcept;
GORO_API void exitsyscall() noexcept;
}  // namespace internal

/// Runs f(args...) as a blocking call and returns its result (exceptions propagate).
///
/// Use it around work that blocks the OS thread in ways the runtime cannot see: a system call
/// on a file, a call into a C library that waits, a CPU-heavy section that must not be
/// preempted. While f runs, the calling goroutine keeps its thread but releases its processor
/// (P): if f returns quickly (under about 20 us) the goroutine takes the same P back at the cost
/// of two atomic operations; if it takes longer and other goroutines are waiting (or after
/// 10 ms in any case), the runtime's monitor hands the P to another thread, starting one if
/// needed, so the other goroutines keep running. On return the goroutine takes its P back, or
/// any idle P, or waits in the global run queue for one.
///
/// Restrictions: f must not wait on goro primitives (channels, goro::Mutex, WaitGroup, sleep,
/// ...): that is a fatal error naming the goroutine. It may start goroutines and use
/// non-blocking operations. f is never preempted. Called from a plain thread, it just calls
/// f. Thread-safe. Each blocking call in progress can hold one OS thread, up to
/// set_max_threads().
// always_inline: the call site recorded for stats is the return address of entersyscall, which
// must lie in the caller's code, also in unoptimized builds.
template <class F, class... Args>
[[gnu::always_inline]] inline decltype(auto) blocking(F&& f, Args&&... args) {
  struct Exit {
    ~Exit() { internal::exitsyscall(); }
  };
  // No site: entersyscall records its own return address, which lies here, inlined into the
  // caller's code at the blocking() call (__builtin_return_address(0) here would name the
  // caller's caller once blocking() is inlined).
  internal::entersyscall(nullptr);
  Exit exit;
  return std::invoke(std::forward<F>(f), std::forward<Args>(args)...);
}

/// Sets the most OS threads the runtime may have running goroutines or blocking calls at once
/// (Go's debug.SetMaxThreads; default 10,000) and returns the previous limit. Creating a
/// thread beyond it is a fatal error ("program exceeds N-thread limit"), as in Go: unbounded
/// thread growth means a bug (e.g. thousands of goroutines stuck in blocking calls). Throws
/// std::invalid_argument if n < 1. Thread-safe.
GORO_API int set_max_threads(int n);

/// How many times, since the process started, the runtime's monitor handed a processor away
/// from a goroutine inside blocking() (so that others could run). Thread-safe; never blocks.
GORO_API std::uint64_t blocking_handoffs() noexcept;

}  // namespace goro
