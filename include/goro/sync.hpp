// goro/sync.hpp - WaitGroup, Mutex and Once (Go's package sync).
//
// Every primitive here works from goroutines and from plain threads, and both may meet on the
// same object: a goroutine that must wait is parked (its OS thread runs other goroutines); a
// plain thread that must wait blocks in the kernel (futex). All of them rest on one park/ready
// mechanism inside the runtime.
//
// Memory ordering: each primitive synchronizes like its Go and C++ counterparts. Mutex::unlock
// happens-before the Mutex::lock that acquires it next; WaitGroup::done (and an add that brings
// the counter to zero) happens-before every wait() it releases returns; the function run by
// Once::call happens-before every call() returns.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <utility>

#include "goro/export.hpp"

namespace goro {

namespace internal {

/// The runtime semaphore count that goro's sync primitives embed. Its waiters queue in the
/// library, keyed by this object's address, so that a releaser never touches the primitive
/// after publishing the count (the primitive may be destroyed by then). Internal; never touch.
struct Sema {
  std::atomic<std::uint32_t> count{0};
};

}  // namespace internal

/// Waits for a collection of goroutines (or threads) to finish, like Go's sync.WaitGroup.
/// add(n) before starting work, done() when each piece ends, wait() to block until the counter
/// is zero. Thread-safe. Not copyable or movable: share it by reference.
///
/// Errors (fatal, like Go's panics, since they mean the program's accounting is broken): the
/// counter going below zero ends the process with "sync: negative WaitGroup counter"; add() with
/// a positive delta from zero racing with a wait() that is already blocked ends it with
/// "sync: WaitGroup misuse: add called concurrently with wait".
class GORO_API WaitGroup {
 public:
  WaitGroup() = default;
  WaitGroup(const WaitGroup&) = delete;
  WaitGroup& operator=(const WaitGroup&) = delete;
  /// Destroying a WaitGroup while waiters are blocked on it is undefined.
  ~WaitGroup() = default;

  /// Adds delta (which may be negative) to the counter. When the counter reaches zero, every
  /// blocked wait() is released. Never blocks.
  void add(std::int64_t delta = 1) noexcept;
  /// add(-1).
  void done() noexcept { add(-1); }
  /// Blocks until the counter is zero; returns at once if it already is. Parks a goroutine;
  /// blocks a plain thread.
  void wait() noexcept;

 private:
  std::atomic<std::uint64_t> state_{0};  // high 32 bits: counter; low 32 bits: waiters
  internal::Sema sema_;
};

/// A mutual exclusion lock that parks goroutines instead of blocking their threads, like Go's
/// sync.Mutex: a brief spin (on a multi-core machine, while another P is running where the holder
/// may be: at most 4 rounds of 30 pause instructions, a few microseconds, ending as soon as the
/// mutex is seen unlocked), then FIFO parking;
/// a waiter that has waited more than 1 ms switches the mutex into starvation mode, where
/// unlock hands ownership directly to the first waiter, until the queue drains or a waiter got
/// it quickly. Satisfies the C++ Lockable requirements
/// (std::lock_guard, std::unique_lock, std::scoped_lock work). Not recursive. Thread-safe.
///
/// A Mutex is not tied to the goroutine or thread that locked it: another may unlock it (as in
/// Go). Unlocking an unlocked Mutex ends the process with "sync: unlock of unlocked mutex".
class GORO_API Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;
  ~Mutex() = default;

  /// Acquires the lock, parking the goroutine (or blocking the thread) while another holds it.
  void lock() noexcept {
    std::int32_t expected = 0;
    if (state_.compare_exchange_strong(expected, kLocked, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
      return;
    }
    lock_slow();
  }
  /// Acquires the lock if it is free right now; never blocks. Returns whether it did.
  bool try_lock() noexcept;
  /// Releases the lock; if goroutines or threads wait, readies one of them.
  void unlock() noexcept {
    std::int32_t n = state_.fetch_sub(kLocked, std::memory_order_release) - kLocked;
    if (n != 0) unlock_slow(n);
  }

 private:
  static constexpr std::int32_t kLocked = 1;
  void lock_slow() noexcept;
  void unlock_slow(std::int32_t new_state) noexcept;

  // Bit layout: bit 0 locked, bit 1 woken (a waiter was readied and is competing), bit 2
  // starving, bits 3..31 the number of parked waiters.
  std::atomic<std::int32_t> state_{0};
  internal::Sema sema_;
};

/// Runs a function exactly once among all callers, like Go's sync.Once, with std::call_once's
/// exception rule: if the function throws, the exception reaches that caller, the Once stays
/// not-done, and a later call() runs a function again. Concurrent callers wait (parking) until
/// the running call finishes. Thread-safe.
class GORO_API Once {
 public:
  Once() = default;
  Once(const Once&) = delete;
  Once& operator=(const Once&) = delete;

  /// Runs f(args...) if no call has completed yet; otherwise returns at once. When call()
  /// returns, a call has completed (or this one threw).
  template <class F, class... Args>
  void call(F&& f, Args&&... args) {
    if (done_.load(std::memory_order_acquire)) return;
    std::lock_guard<Mutex> hold(m_);
    if (done_.load(std::memory_order_relaxed)) return;
    std::invoke(std::forward<F>(f), std::forward<Args>(args)...);
    done_.store(true, std::memory_order_release);
  }
  /// Whether a call has completed.
  bool done() const noexcept { return done_.load(std::memory_order_acquire); }

 private:
  std::atomic<bool> done_{false};
  Mutex m_;
};

}  // namespace goro
