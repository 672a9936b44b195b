// lock.hpp - the runtime's own low-level locks and notes, built on futex(2).
//
// Lock is Go's lock_futex: a word with three states (unlocked, locked, locked with sleepers).
// It spins briefly, then sleeps in the kernel. It is held only for short critical sections
// inside the runtime and NEVER across a park: a goroutine that must wait releases its lock from
// the scheduler stack after switching away (park's unlock function), so a Lock is never held by
// a parked goroutine and never migrates threads while held.
//
// Note is a one-shot wakeup between threads (Go's note): one sleeper, one waker. Ms sleep on
// their note when idle; the M that hands them work wakes it.
//
// Memory ordering: Lock::lock is an acquire, unlock a release. Note::wakeup happens-before the
// return of the sleep it ends.
#pragma once

#include <atomic>
#include <cstdint>

namespace goro::internal {

// Sleeps while *addr == val (FUTEX_WAIT, private). timeout_ns < 0 means no timeout. Returns
// false on timeout. Spurious wake-ups are possible: callers loop.
bool futex_wait(std::atomic<std::uint32_t>* addr, std::uint32_t val,
                std::int64_t timeout_ns = -1) noexcept;
// Wakes up to n sleepers on addr (FUTEX_WAKE, private).
void futex_wake(std::atomic<std::uint32_t>* addr, int n) noexcept;

class Lock {
 public:
  void lock() noexcept {
    std::uint32_t c = kUnlocked;
    if (!word_.compare_exchange_strong(c, kLocked, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
      lock_slow();
    }
  }
  bool try_lock() noexcept {
    std::uint32_t c = kUnlocked;
    return word_.compare_exchange_strong(c, kLocked, std::memory_order_acquire,
                                         std::memory_order_relaxed);
  }
  void unlock() noexcept {
    if (word_.exchange(kUnlocked, std::memory_order_release) == kSleeping) {
      futex_wake(&word_, 1);
    }
  }

 private:
  static constexpr std::uint32_t kUnlocked = 0, kLocked = 1, kSleeping = 2;
  void lock_slow() noexcept;
  std::atomic<std::uint32_t> word_{kUnlocked};
};

// RAII holder for Lock (std::lock_guard would do, but this keeps the runtime's headers small).
class LockGuard {
 public:
  explicit LockGuard(Lock& l) noexcept : l_(l) { l_.lock(); }
  ~LockGuard() { l_.unlock(); }
  LockGuard(const LockGuard&) = delete;
  LockGuard& operator=(const LockGuard&) = delete;

 private:
  Lock& l_;
};

class Note {
 public:
  void clear() noexcept { key_.store(0, std::memory_order_relaxed); }
  void wakeup() noexcept {
    if (key_.exchange(1, std::memory_order_release) == 0) futex_wake(&key_, 1);
  }
  // Sleeps until wakeup() was called since the last clear().
  void sleep() noexcept {
    while (key_.load(std::memory_order_acquire) == 0) futex_wait(&key_, 0);
  }
  // Sleeps at most ns nanoseconds. Returns whether the note was woken.
  bool sleep_for(std::int64_t ns) noexcept;

 private:
  std::atomic<std::uint32_t> key_{0};
};

}  // namespace goro::internal
