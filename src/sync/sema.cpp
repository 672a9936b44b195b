// sema.cpp - semaphores keyed by address (Go's sema.go), the waiting layer of package sync.
//
// A semaphore is any 32-bit counter. Waiters for all counters hash into 251 buckets; each
// bucket has a Lock, a count of waiters (read without the lock by releasers, so an
// uncontended release costs one atomic add and one load), and a list of per-address FIFO
// queues. A waiter record (SemaWaiter) lives on the waiter's own stack, which cannot move
// while it is parked.
//
// Protocol (acquire):
//  1. Fast path: CAS the counter down if it is positive.
//  2. Increment bucket.nwait (A), lock the bucket, try the CAS again (a release may have come
//     in between), else queue the record and park; the bucket lock is released by park's
//     unlock function after the goroutine is switched out.
//  3. When readied: if the releaser handed the count over (ticket), done; else retry from 2.
// Protocol (release):
//  1. Increment the counter (B), then read bucket.nwait (B'); zero means nobody can be
//     waiting, return.
//  2. Lock, dequeue the first waiter for this address, unlock, ready it.
// (A)/(B) are sequentially consistent: either the releaser sees nwait != 0, or the waiter's
// CAS in step 2 sees the incremented counter.
//
// Lock order: bucket lock ▸ sched.lock (ready may take it). Bucket locks are never nested.
#include "sync/sema.hpp"

#include "base/lock.hpp"
#include "base/platform.hpp"

namespace goro::internal {

namespace {

struct SemaWaiter {
  std::atomic<std::uint32_t>* addr;
  G* g;
  SemaWaiter* next = nullptr;       // next waiter on the same address
  SemaWaiter* tail = nullptr;       // last waiter on this address (valid in queue heads)
  SemaWaiter* next_head = nullptr;  // next address queue in the bucket (valid in heads)
  bool ticket = false;              // the releaser handed the count to us
};

struct alignas(64) Bucket {
  Lock lock;
  std::atomic<std::uint32_t> nwait{0};
  SemaWaiter* heads = nullptr;
};

constexpr int kBuckets = 251;
Bucket buckets[kBuckets];

Bucket& bucket_for(const void* addr) {
  return buckets[(reinterpret_cast<std::uintptr_t>(addr) >> 3) % kBuckets];
}

bool can_acquire(std::atomic<std::uint32_t>* addr) {
  std::uint32_t v = addr->load(std::memory_order_relaxed);
  while (v != 0) {
    if (addr->compare_exchange_weak(v, v - 1, std::memory_order_acquire,
                                    std::memory_order_relaxed)) {
      return true;
    }
  }
  return false;
}

void enqueue(Bucket& b, SemaWaiter* w, bool lifo) {
  SemaWaiter** pp = &b.heads;
  while (*pp != nullptr && (*pp)->addr != w->addr) pp = &(*pp)->next_head;
  SemaWaiter* h = *pp;
  if (h == nullptr) {
    w->tail = w;
    *pp = w;
    return;
  }
  if (lifo) {
    // w becomes the head of this address's queue.
    w->next = h;
    w->tail = h->tail;
    w->next_head = h->next_head;
    *pp = w;
    return;
  }
  h->tail->next = w;
  h->tail = w;
}

SemaWaiter* dequeue(Bucket& b, std::atomic<std::uint32_t>* addr) {
  SemaWaiter** pp = &b.heads;
  while (*pp != nullptr && (*pp)->addr != addr) pp = &(*pp)->next_head;
  SemaWaiter* h = *pp;
  if (h == nullptr) return nullptr;
  SemaWaiter* n = h->next;
  if (n != nullptr) {
    n->tail = h->tail;
    n->next_head = h->next_head;
    *pp = n;
  } else {
    *pp = h->next_head;
  }
  return h;
}

bool unlock_bucket(G*, void* arg) {
  static_cast<Bucket*>(arg)->lock.unlock();
  return true;
}

}  // namespace

void semacquire(std::atomic<std::uint32_t>* addr, bool lifo, WaitReason reason) noexcept {
  if (can_acquire(addr)) return;
  Bucket& b = bucket_for(addr);
  for (;;) {
    b.nwait.fetch_add(1, std::memory_order_seq_cst);  // (A)
    b.lock.lock();
    if (can_acquire(addr)) {
      b.nwait.fetch_sub(1, std::memory_order_relaxed);
      b.lock.unlock();
      return;
    }
    SemaWaiter w{addr, waiter()};
    enqueue(b, &w, lifo);
    park(unlock_bucket, &b, reason);
    if (w.ticket || can_acquire(addr)) return;
    lifo = true;  // waited once already: go to the front next time
  }
}

void semrelease(std::atomic<std::uint32_t>* addr, bool handoff) noexcept {
  addr->fetch_add(1, std::memory_order_seq_cst);  // (B)
  Bucket& b = bucket_for(addr);
  if (b.nwait.load(std::memory_order_seq_cst) == 0) return;  // (B')
  b.lock.lock();
  if (b.nwait.load(std::memory_order_relaxed) == 0) {
    b.lock.unlock();
    return;
  }
  SemaWaiter* w = dequeue(b, addr);
  if (w != nullptr) b.nwait.fetch_sub(1, std::memory_order_relaxed);
  b.lock.unlock();
  if (w == nullptr) return;
  bool handed = handoff && can_acquire(addr);
  w->ticket = handed;
  G* g = w->g;  // w lives on the waiter's stack: do not touch it after ready()
  ready(g);
  if (handed) gosched();  // let the waiter we handed the lock to run now
}

}  // namespace goro::internal
