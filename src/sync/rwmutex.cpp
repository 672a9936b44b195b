// rwmutex.cpp - goro::RWMutex: Go's sync.RWMutex algorithm over the runtime semaphore.
//
// Owns: reader_count_ (readers inside, minus kMaxReaders while a writer is pending or active),
// reader_wait_ (readers the pending writer still waits for), writer_sem_ and reader_sem_; the
// inner Mutex w_ serializes writers.
//
// Protocol:
//  lock_shared:   1. reader_count_ += 1. 2. If the result is negative a writer is pending or
//                 active: wait on reader_sem_ (the writer's unlock counts us in).
//  unlock_shared: 1. reader_count_ -= 1. 2. If negative, a writer is pending: reader_wait_ -= 1;
//                 the reader that brings it to zero releases writer_sem_.
//  lock:          1. Lock w_ (one writer at a time). 2. reader_count_ -= kMaxReaders: from now
//                 on new readers queue; the old value r is the number of readers inside.
//                 3. reader_wait_ += r; if r != 0 and the result is not zero, wait on
//                 writer_sem_ for the last of those r readers.
//  unlock:        1. reader_count_ += kMaxReaders; the result r is the number of readers that
//                 arrived while the writer held the lock (all queued or about to queue).
//                 2. Release reader_sem_ r times. 3. Unlock w_.
//
// Invariants: reader_count_ >= 0 exactly when no writer is pending or active, and then it is
// the number of readers inside; while a writer is pending or active, reader_count_ +
// kMaxReaders counts the readers still inside plus those queued behind it. The r readers
// counted at step 2 of lock each decrement reader_wait_ once (they see a negative count at
// unlock_shared), and the writer adds r once, so exactly one of them sees zero: no lost
// wake-up, whichever comes first. All of it is read-modify-writes on two words, totally
// ordered per word, so acq_rel suffices.
#include "goro/rwmutex.hpp"
#include "sched/proc.hpp"

#include "base/raw_log.hpp"
#include "sync/sema.hpp"

namespace goro {

using namespace internal;

void RWMutex::lock_shared_slow() noexcept {
  EnterRuntime enter;
  // A writer is pending or active: it will release reader_sem_ once for us when it unlocks.
  semacquire(&reader_sem_, false, WaitReason::kMutex);
}

bool RWMutex::try_lock_shared() noexcept {
  std::int32_t c = reader_count_.load(std::memory_order_relaxed);
  for (;;) {
    if (c < 0) return false;  // a writer is pending or active
    if (reader_count_.compare_exchange_weak(c, c + 1, std::memory_order_acquire,
                                            std::memory_order_relaxed)) {
      return true;
    }
  }
}

void RWMutex::unlock_shared_slow(std::int32_t r) noexcept {
  EnterRuntime enter;
  if (r + 1 == 0 || r + 1 == -kMaxReaders) {
    // No reader held it (with or without a pending writer). Undo nothing: the state is broken.
    fatal("sync: RUnlock of unlocked RWMutex");
  }
  // A writer is pending: the last reader it waits for hands over.
  if (reader_wait_.fetch_sub(1, std::memory_order_acq_rel) - 1 == 0) {
    semrelease(&writer_sem_, false);
  }
}

void RWMutex::lock() noexcept {
  EnterRuntime enter;
  w_.lock();
  std::int32_t r = reader_count_.fetch_sub(kMaxReaders, std::memory_order_acq_rel);
  if (r != 0 && reader_wait_.fetch_add(r, std::memory_order_acq_rel) + r != 0) {
    semacquire(&writer_sem_, false, WaitReason::kMutex);
  }
}

bool RWMutex::try_lock() noexcept {
  if (!w_.try_lock()) return false;
  std::int32_t zero = 0;
  if (!reader_count_.compare_exchange_strong(zero, -kMaxReaders, std::memory_order_acquire,
                                             std::memory_order_relaxed)) {
    w_.unlock();
    return false;
  }
  return true;
}

void RWMutex::unlock() noexcept {
  EnterRuntime enter;
  std::int32_t r = reader_count_.fetch_add(kMaxReaders, std::memory_order_acq_rel) + kMaxReaders;
  if (r >= kMaxReaders) fatal("sync: Unlock of unlocked RWMutex");
  // Let in the readers that queued behind this writer (each took one unit of reader_sem_'s
  // debt when it saw a negative count).
  if (r > 0) semrelease(&reader_sem_, false, static_cast<std::uint32_t>(r));
  w_.unlock();
}

}  // namespace goro
