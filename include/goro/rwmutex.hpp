// goro/rwmutex.hpp - RWMutex, a reader/writer lock with writer preference (Go's sync.RWMutex).
//
// Any number of readers or one writer hold it. A writer that asks for the lock stops new
// readers at once (writer preference) and gets it as soon as the readers already inside leave,
// so a stream of readers cannot starve writers; the readers it stopped go in together when it
// unlocks. Works from goroutines (which park) and plain threads (which block), mixed.
#pragma once

#include <atomic>
#include <cstdint>

#include "goro/export.hpp"
#include "goro/sync.hpp"

namespace goro {

/// A reader/writer mutual exclusion lock, like Go's sync.RWMutex: lock()/unlock() for one
/// writer, lock_shared()/unlock_shared() for any number of readers. Satisfies the C++
/// SharedLockable and Lockable requirements, so std::shared_lock, std::unique_lock,
/// std::lock_guard and std::scoped_lock work. Not recursive: a reader that calls lock_shared()
/// again while a writer waits deadlocks (the writer waits for it, the new read waits for the
/// writer), exactly as in Go. Thread-safe; not copyable or movable.
///
/// Blocking: lock() waits (parking a goroutine, blocking a plain thread) while readers or a
/// writer hold the lock; lock_shared() waits while a writer holds it or is waiting for it.
/// Writers queue FIFO on an inner goro::Mutex (with its starvation mode).
///
/// Like Mutex, an RWMutex is not tied to the goroutine or thread that locked it: another may
/// unlock it. Errors (fatal, like Go's panics): unlock() of an RWMutex not write-locked ends
/// the process with "sync: Unlock of unlocked RWMutex"; unlock_shared() without a reader
/// holding it ends it with "sync: RUnlock of unlocked RWMutex".
///
/// Memory ordering: the n-th unlock() happens-before the return of the (n+1)-th lock(), and
/// happens-before the return of every lock_shared() that acquires the lock after it; every
/// unlock_shared() happens-before the return of the lock() that acquires the lock after it.
/// Readers are not ordered with each other.
class GORO_API RWMutex {
 public:
  RWMutex() = default;
  RWMutex(const RWMutex&) = delete;
  RWMutex& operator=(const RWMutex&) = delete;
  /// Destroying an RWMutex that is held or waited on is undefined.
  ~RWMutex() = default;

  /// Acquires the lock for writing: waits for the current writer (if any) to leave, stops new
  /// readers, then waits for the readers inside to leave.
  void lock() noexcept;
  /// Acquires the lock for writing if no writer and no reader holds it and no writer waits;
  /// never blocks. Returns whether it did.
  bool try_lock() noexcept;
  /// Releases a write lock; readies the readers that queued behind it, then the next writer.
  void unlock() noexcept;

  /// Acquires the lock for reading; waits while a writer holds it or waits for it.
  void lock_shared() noexcept {
    if (reader_count_.fetch_add(1, std::memory_order_acq_rel) + 1 < 0) lock_shared_slow();
  }
  /// Acquires the lock for reading if no writer holds it or waits for it; never blocks.
  /// Returns whether it did.
  bool try_lock_shared() noexcept;
  /// Releases one read lock; the last reader out readies a waiting writer.
  void unlock_shared() noexcept {
    std::int32_t r = reader_count_.fetch_sub(1, std::memory_order_acq_rel) - 1;
    if (r < 0) unlock_shared_slow(r);
  }

 private:
  // Go's rwmutexMaxReaders: a writer subtracts it from reader_count_ to announce itself.
  static constexpr std::int32_t kMaxReaders = 1 << 30;
  void lock_shared_slow() noexcept;
  void unlock_shared_slow(std::int32_t r) noexcept;

  Mutex w_;  // held by the writer, pending or active
  // Readers inside (and queued), minus kMaxReaders while a writer is pending or active.
  std::atomic<std::int32_t> reader_count_{0};
  std::atomic<std::int32_t> reader_wait_{0};  // readers a pending writer still waits for
  internal::Sema writer_sem_;                 // the writer waits here for departing readers
  internal::Sema reader_sem_;                 // readers wait here for the writer to unlock
};

}  // namespace goro
