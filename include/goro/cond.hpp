// goro/cond.hpp - Cond, a condition variable (Go's sync.Cond) for goroutines and threads.
//
// A Cond is a rendezvous point for goroutines and threads waiting for a condition that other
// code changes under a lock. wait() takes the lock to release while waiting as an argument
// (like std::condition_variable_any; Go's c.L is the same idea fixed at construction), so
// one Cond may be used with goro::Mutex, goro::RWMutex (write side), or a
// std::unique_lock<goro::Mutex>.
#pragma once

#include <atomic>
#include <cstdint>

#include "goro/export.hpp"

namespace goro {

/// A condition variable with Go's sync.Cond semantics. wait(lock) atomically (with respect to
/// signal and broadcast) releases the lock and waits; on wake-up it reacquires the lock before
/// returning. signal() wakes the goroutine or thread that has waited longest; broadcast()
/// wakes all that wait now. A signal or broadcast with nobody waiting is not remembered: it
/// does not affect a later wait(). Waiters are goroutines (which park) and plain threads (which
/// block) in any mix. Thread-safe; not copyable or movable.
///
/// Unlike std::condition_variable, there are no spurious wake-ups: a wait() returns only after
/// a signal() or broadcast() that came after it started. Callers should still loop on their
/// condition (another waiter may have consumed it first): use wait(lock, pred).
///
/// Calling signal() or broadcast() with the lock held is allowed and usual, but not required.
/// Errors: calling wait() without holding `lock` is undefined (the Lockable's own rules apply:
/// unlocking an unlocked goro::Mutex is fatal).
///
/// Memory ordering: a signal() or broadcast() happens-before the return of every wait() it
/// wakes; in addition each wait() reacquires the lock, so the usual reasoning through the lock
/// applies.
class GORO_API Cond {
 public:
  Cond() = default;
  Cond(const Cond&) = delete;
  Cond& operator=(const Cond&) = delete;
  /// Destroying a Cond while goroutines or threads wait on it is undefined.
  ~Cond() = default;

  /// Releases `lock`, waits until woken by signal() or broadcast(), reacquires `lock`. The
  /// caller must hold `lock`. Lockable is any type with lock() and unlock() (Go's Locker):
  /// goro::Mutex, goro::RWMutex, std::unique_lock<goro::Mutex>, ... Parks a goroutine, blocks a
  /// plain thread. Throws only what lock.lock() or lock.unlock() throw.
  template <class Lockable>
  void wait(Lockable& lock) {
    // The ticket is taken while the lock is held, so a signal that follows the caller's
    // check of its condition (under the same lock) cannot be missed.
    std::uint32_t t = add_waiter();
    lock.unlock();
    wait_ticket(t);
    lock.lock();
  }

  /// while (!pred()) wait(lock); pred is called with `lock` held.
  template <class Lockable, class Pred>
  void wait(Lockable& lock, Pred pred) {
    while (!pred()) wait(lock);
  }

  /// Wakes the longest waiting goroutine or thread, if any. Never blocks (beyond a short
  /// internal spin lock).
  void signal() noexcept;
  /// Wakes every goroutine and thread waiting now. Never blocks (beyond a short internal spin
  /// lock).
  void broadcast() noexcept;

  /// signal(), for generic code written against std::condition_variable_any.
  void notify_one() noexcept { signal(); }
  /// broadcast(), for generic code written against std::condition_variable_any.
  void notify_all() noexcept { broadcast(); }

 private:
  std::uint32_t add_waiter() noexcept;
  void wait_ticket(std::uint32_t ticket) noexcept;

  // Go's notifyList: tickets are handed out in wait order; notify_ is the next one to wake.
  std::atomic<std::uint32_t> wait_{0};    // the next ticket to hand out
  std::atomic<std::uint32_t> notify_{0};  // the next ticket to wake; written under lock_
  std::atomic<std::uint32_t> lock_{0};    // a futex lock guarding head_, tail_, notify_
  void* head_ = nullptr;                  // waiters that reached wait_ticket, arrival order
  void* tail_ = nullptr;
};

}  // namespace goro
