// goro/semaphore.hpp - Semaphore, a weighted counting semaphore (golang.org/x/sync/semaphore).
//
// A Semaphore of size n hands out up to n units; each acquire takes a weight of them. Waiters
// are served strictly in arrival order: a large request at the head of the queue blocks
// smaller requests behind it even when they would fit, so large requests are not starved.
// Works from goroutines (which park) and plain threads (which block), mixed.
//
// Deadlines (acquire_until) and cancellation will come with goro's timers and goro::Context.
#pragma once

#include <atomic>
#include <cstdint>

#include "goro/export.hpp"

namespace goro {

/// A weighted semaphore, like golang.org/x/sync/semaphore.Weighted. Thread-safe; not copyable
/// or movable.
///
/// Blocking: acquire() waits in FIFO order (parking a goroutine, blocking a plain thread) until
/// its whole weight is available and every earlier waiter was served; release() never blocks
/// and serves waiters from the head of the queue for as long as the head fits.
///
/// Errors: a weight that is negative, or (for acquire) larger than the size, throws
/// std::invalid_argument; x/sync would instead block forever (or until its context ends) on a
/// request larger than the size. Releasing more units than are held is a bug in the caller's
/// accounting and ends the process with "semaphore: released more than held" (x/sync panics).
///
/// Memory ordering: a release() happens-before the return of every acquire() or successful
/// try_acquire() that obtains any of the units it released (in fact every operation on one
/// Semaphore is totally ordered by an internal lock).
class GORO_API Semaphore {
 public:
  /// A semaphore with `size` units, all available. Throws std::invalid_argument if size < 0.
  explicit Semaphore(std::int64_t size);
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;
  /// Destroying a Semaphore while goroutines or threads wait on it is undefined. Units still
  /// held are fine.
  ~Semaphore() = default;

  /// Takes n units, waiting until they are available and every earlier waiter was served.
  /// acquire(0) returns at once unless others wait (then it queues behind them). Throws
  /// std::invalid_argument if n < 0 or n > size() (it could never be satisfied).
  void acquire(std::int64_t n = 1);
  /// Takes n units if they are available now and nobody waits; never blocks. Returns whether
  /// it did; false (not an exception) when n > size(). Throws std::invalid_argument if n < 0.
  bool try_acquire(std::int64_t n = 1);
  /// Returns n units and readies the waiters at the head of the queue that now fit. Never
  /// blocks (beyond a short internal spin lock). n < 0, or more units than are currently
  /// held, is fatal ("semaphore: released more than held").
  void release(std::int64_t n = 1) noexcept;

  /// The size given at construction.
  std::int64_t size() const noexcept { return size_; }

 private:
  const std::int64_t size_;
  std::int64_t cur_ = 0;                // units held; under lock_
  std::atomic<std::uint32_t> lock_{0};  // a futex lock guarding cur_, head_, tail_
  void* head_ = nullptr;                // FIFO of waiter records (on the waiters' stacks)
  void* tail_ = nullptr;
};

}  // namespace goro
