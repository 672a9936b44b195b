// sema.cpp - the runtime semaphore (Go's sema.go, with the queue inside each primitive).
//
// Go keys its semaphores by address in a global table of treaps so that sync types stay tiny.
// goro embeds the queue in the primitive instead (internal::Sema: a count, a waiter count, a
// futex lock and a FIFO of waiter records): every operation is O(1) and touches only the
// primitive's own cache lines, with no hashing and no sharing between unrelated objects. A
// waiter record (SemaWaiter) lives on the waiter's own stack, which cannot move while parked.
//
// Protocol (acquire):
//  1. Fast path: CAS the count down if it is positive.
//  2. Increment nwait (A), lock, try the CAS again (a release may have come in between), else
//     queue the record and park; the lock is released by park's unlock function after the
//     goroutine is switched out (see "Park and ready" in proc.cpp).
//  3. When readied: if the releaser handed the count over (ticket), done; else retry from 2.
// Protocol (release):
//  1. Add to the count (B), then read nwait (B'); zero means nobody can be waiting: return.
//  2. Lock, dequeue up to n waiters, unlock, ready them.
// (A)/(B) and their loads are sequentially consistent: either the releaser sees nwait != 0, or
// the waiter's CAS in step 2 sees the incremented count.
//
// Lock order: a Sema lock ▸ sched.lock (ready may take it). Sema locks are never nested.
#include "sync/sema.hpp"

#include <type_traits>

#include "base/lock.hpp"

namespace goro::internal {

namespace {

struct SemaWaiter {
  G* g;
  SemaWaiter* next = nullptr;
  bool ticket = false;  // the releaser handed the count to us
};

static_assert(sizeof(Lock) == sizeof(std::atomic<std::uint32_t>) &&
              std::is_standard_layout_v<Lock>);
Lock& lock_of(Sema* s) {
  return *reinterpret_cast<Lock*>(&s->lock);
}

bool can_acquire(Sema* s) {
  std::uint32_t v = s->count.load(std::memory_order_relaxed);
  while (v != 0) {
    if (s->count.compare_exchange_weak(v, v - 1, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
      return true;
    }
  }
  return false;
}

void enqueue(Sema* s, SemaWaiter* w, bool lifo) {
  auto* head = static_cast<SemaWaiter*>(s->head);
  if (head == nullptr) {
    s->head = s->tail = w;
  } else if (lifo) {
    w->next = head;
    s->head = w;
  } else {
    static_cast<SemaWaiter*>(s->tail)->next = w;
    s->tail = w;
  }
}

SemaWaiter* dequeue(Sema* s) {
  auto* w = static_cast<SemaWaiter*>(s->head);
  if (w != nullptr) {
    s->head = w->next;
    if (s->head == nullptr) s->tail = nullptr;
  }
  return w;
}

bool unlock_sema(G*, void* arg) {
  lock_of(static_cast<Sema*>(arg)).unlock();
  return true;
}

}  // namespace

void semacquire(Sema* s, bool lifo, WaitReason reason) noexcept {
  if (can_acquire(s)) return;
  for (;;) {
    s->nwait.fetch_add(1, std::memory_order_seq_cst);  // (A)
    lock_of(s).lock();
    if (can_acquire(s)) {
      s->nwait.fetch_sub(1, std::memory_order_relaxed);
      lock_of(s).unlock();
      return;
    }
    SemaWaiter w{waiter()};
    enqueue(s, &w, lifo);
    park(unlock_sema, s, reason);
    if (w.ticket || can_acquire(s)) return;
    lifo = true;  // waited once already: go to the front next time
  }
}

void semrelease(Sema* s, bool handoff, std::uint32_t n) noexcept {
  s->count.fetch_add(n, std::memory_order_seq_cst);           // (B)
  if (s->nwait.load(std::memory_order_seq_cst) == 0) return;  // (B')
  // Dequeue under the lock, ready after unlocking: a readied goroutine may run at once on
  // another M and contend for the lock.
  SemaWaiter* batch = nullptr;
  SemaWaiter** tail = &batch;
  lock_of(s).lock();
  for (std::uint32_t i = 0; i < n; i++) {
    SemaWaiter* w = dequeue(s);
    if (w == nullptr) break;
    s->nwait.fetch_sub(1, std::memory_order_relaxed);
    *tail = w;
    tail = &w->next;
  }
  *tail = nullptr;
  lock_of(s).unlock();
  bool handed = false;
  while (batch != nullptr) {
    SemaWaiter* w = batch;
    batch = w->next;
    G* g = w->g;  // w lives on the waiter's stack: never touch it after ready()
    if (handoff && can_acquire(s)) {
      w->ticket = true;
      handed = true;
    }
    ready(g);
  }
  if (handed) gosched();  // let the waiter we handed the count to run now
}

}  // namespace goro::internal
