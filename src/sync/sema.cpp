// sema.cpp - the runtime semaphore (Go's sema.go): the waiting layer of package sync.
//
// A semaphore is a 32-bit count embedded in a primitive (internal::Sema). Its waiters are kept
// here, in a table of 4096 buckets keyed by the count's address, never in the primitive
// itself: once a releaser has published the count, a waiter may take it (even without
// parking), return, and destroy the primitive, so the releaser must not touch the primitive
// again. Everything it touches after that step lives in this never-freed table. (An earlier
// version kept the queue inside the primitive and read it after the release: a use-after-free
// for the common `WaitGroup wg; ...; wg.wait();` on the stack.)
//
// Each bucket has a Lock, a count of waiters (read without the lock, so an uncontended release
// costs one atomic add and one load), and a list of per-address FIFO queues. With 4096 buckets
// even many thousands of distinct semaphores with waiters (a fork-join recursion) keep the
// per-bucket lists short. A waiter record (SemaWaiter) lives on the waiter's own stack, which
// cannot move while it is parked.
//
// Protocol (acquire):
//  1. Fast path: CAS the count down if it is positive.
//  2. Increment bucket.nwait (A), lock the bucket, try the CAS again (a release may have come
//     in between), else queue the record and park; the bucket lock is released by park's
//     unlock function after the goroutine is switched out.
//  3. When readied: if the releaser handed the count over (ticket), done; else retry from 2.
// Protocol (release):
//  1. Add to the count (B) — the last touch of the primitive — then read bucket.nwait (B');
//     zero means nobody can be waiting: return.
//  2. Lock the bucket, dequeue up to n waiters for this address, unlock, ready them.
// (A)/(B) and their loads are sequentially consistent: either the releaser sees nwait != 0, or
// the waiter's CAS in step 2 sees the incremented count.
//
// Lock order: bucket lock ▸ sched.lock (ready, after unlocking). Bucket locks never nest.
#include "sync/sema.hpp"
#include "sched/proc.hpp"

#include "base/lock.hpp"

namespace goro::internal {

namespace {

struct SemaWaiter {
  std::atomic<std::uint32_t>* addr;
  G* g;
  SemaWaiter* next = nullptr;       // next waiter for the same address
  SemaWaiter* tail = nullptr;       // last waiter for this address (valid in queue heads)
  SemaWaiter* next_head = nullptr;  // next address queue in the bucket (valid in heads)
  bool ticket = false;              // the releaser handed the count to us
};

struct alignas(64) Bucket {
  Lock lock;
  std::atomic<std::uint32_t> nwait{0};
  SemaWaiter* heads = nullptr;
};

constexpr std::size_t kBuckets = 4096;
Bucket buckets[kBuckets];

Bucket& bucket_for(const void* addr) {
  auto a = reinterpret_cast<std::uintptr_t>(addr);
  return buckets[((a >> 3) ^ (a >> 15)) % kBuckets];
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
  } else if (lifo) {
    // w becomes the head of this address's queue.
    w->next = h;
    w->tail = h->tail;
    w->next_head = h->next_head;
    *pp = w;
  } else {
    h->tail->next = w;
    h->tail = w;
  }
}

SemaWaiter* dequeue(Bucket& b, std::atomic<std::uint32_t>* addr) {
  SemaWaiter** pp = &b.heads;
  while (*pp != nullptr && (*pp)->addr != addr) pp = &(*pp)->next_head;
  SemaWaiter* h = *pp;
  if (h == nullptr) return nullptr;
  if (SemaWaiter* n = h->next) {
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

void semacquire(Sema* s, bool lifo, WaitReason reason) noexcept {
  EnterRuntime enter;
  std::atomic<std::uint32_t>* addr = &s->count;
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

void semrelease(Sema* s, bool handoff, std::uint32_t n) noexcept {
  EnterRuntime enter;
  std::atomic<std::uint32_t>* addr = &s->count;
  Bucket& b = bucket_for(addr);
  addr->fetch_add(n, std::memory_order_seq_cst);             // (B): last touch of *s...
  if (b.nwait.load(std::memory_order_seq_cst) == 0) return;  // (B')
  // ...except a handoff, below, which only a waiter we hold off can complete.
  SemaWaiter* batch = nullptr;
  SemaWaiter** tail = &batch;
  b.lock.lock();
  for (std::uint32_t i = 0; i < n; i++) {
    SemaWaiter* w = dequeue(b, addr);
    if (w == nullptr) break;
    b.nwait.fetch_sub(1, std::memory_order_relaxed);
    *tail = w;
    tail = &w->next;
  }
  *tail = nullptr;
  // A starving Mutex hands the count to the first waiter: take it back from the count on the
  // waiter's behalf while it is still queued-but-dequeued (it cannot return before ready).
  bool handed = handoff && batch != nullptr && can_acquire(addr);
  if (handed) batch->ticket = true;
  b.lock.unlock();
  while (batch != nullptr) {
    SemaWaiter* w = batch;
    batch = w->next;
    G* g = w->g;  // w lives on the waiter's stack: never touch it after ready()
    ready(g);
  }
  if (handed) gosched();  // let the waiter we handed the count to run now
}

}  // namespace goro::internal
