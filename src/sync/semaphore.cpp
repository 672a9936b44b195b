// semaphore.cpp - goro::Semaphore: golang.org/x/sync/semaphore.Weighted over park/ready.
//
// Owns: cur_ (units held), the FIFO head_/tail_ of waiter records (each on its waiter's own
// stack, which cannot move while it is parked) and lock_ (a runtime futex Lock guarding both).
//
// Protocol:
//  acquire(n):  1. Lock. If size - cur >= n and nobody waits: cur += n, unlock, return.
//               2. Else append a record {g, n} and park; park's unlock function releases the
//                  lock after the goroutine is switched out.
//               3. When readied, the releaser already added n to cur for us (granted): return.
//  release(n):  1. Lock. cur -= n (fatal if it goes negative).
//               2. While the head record fits (size - cur >= its n): cur += its n, unlink it,
//                  mark it granted, link it into a local batch. Stop at the first that does not
//                  fit (FIFO: a big waiter at the head blocks smaller ones behind it).
//               3. Unlock, then ready the batch (reading each record's g and next first).
//
// Invariants: 0 <= cur_ <= size_; while the queue is not empty its head does not fit (every
// operation that frees units serves the head first), so a newcomer that fits must still queue
// when anyone waits; a record is readied exactly once, after it was granted, and is never
// touched after its ready(). Units are transferred to a waiter under the lock, so there is no
// window in which a newcomer can take them.
//
// Lock order: lock_ is a leaf among primitive locks (ready() runs after it is released).
#include "goro/semaphore.hpp"

#include <stdexcept>
#include <type_traits>

#include "base/lock.hpp"
#include "base/raw_log.hpp"
#include "sched/proc.hpp"

namespace goro {

using namespace internal;

namespace {

struct SemWaiter {
  G* g;
  std::int64_t n;
  SemWaiter* next = nullptr;
  bool granted = false;  // the releaser added n to cur_ for us
};

static_assert(sizeof(Lock) == sizeof(std::atomic<std::uint32_t>) &&
              std::is_standard_layout_v<Lock>);
Lock& as_lock(std::atomic<std::uint32_t>* word) {
  return *reinterpret_cast<Lock*>(word);
}

bool unlock_word(G*, void* arg) {
  as_lock(static_cast<std::atomic<std::uint32_t>*>(arg)).unlock();
  return true;
}

std::int64_t checked_size(std::int64_t size) {
  if (size < 0) throw std::invalid_argument("goro::Semaphore: negative size");
  return size;
}

}  // namespace

Semaphore::Semaphore(std::int64_t size) : size_(checked_size(size)) {}

void Semaphore::acquire(std::int64_t n) {
  EnterRuntime enter;
  if (n < 0) throw std::invalid_argument("goro::Semaphore::acquire: negative weight");
  if (n > size_) {
    throw std::invalid_argument("goro::Semaphore::acquire: weight larger than the size");
  }
  Lock& l = as_lock(&lock_);
  l.lock();
  if (size_ - cur_ >= n && head_ == nullptr) {
    cur_ += n;
    l.unlock();
    return;
  }
  SemWaiter w{waiter(), n};
  if (tail_ == nullptr) {
    head_ = &w;
  } else {
    static_cast<SemWaiter*>(tail_)->next = &w;
  }
  tail_ = &w;
  park(unlock_word, &lock_, WaitReason::kSemacquire);
  if (!w.granted) fatal("semaphore: waiter readied without its units");
}

bool Semaphore::try_acquire(std::int64_t n) {
  EnterRuntime enter;
  if (n < 0) throw std::invalid_argument("goro::Semaphore::try_acquire: negative weight");
  LockGuard hold(as_lock(&lock_));
  if (size_ - cur_ < n || head_ != nullptr) return false;
  cur_ += n;
  return true;
}

void Semaphore::release(std::int64_t n) noexcept {
  EnterRuntime enter;
  Lock& l = as_lock(&lock_);
  l.lock();
  if (n < 0 || n > cur_) {
    l.unlock();
    fatal("semaphore: released more than held");
  }
  cur_ -= n;
  SemWaiter* batch = nullptr;
  SemWaiter** tail = &batch;
  while (head_ != nullptr) {
    auto* w = static_cast<SemWaiter*>(head_);
    if (size_ - cur_ < w->n) break;  // the head does not fit: everyone behind it waits too
    cur_ += w->n;
    head_ = w->next;
    if (head_ == nullptr) tail_ = nullptr;
    w->granted = true;
    w->next = nullptr;
    *tail = w;
    tail = &w->next;
  }
  l.unlock();
  // The batch left the queue under the lock; its owners stay parked until readied.
  while (batch != nullptr) {
    SemWaiter* w = batch;
    batch = w->next;
    ready(w->g);
  }
}

}  // namespace goro
