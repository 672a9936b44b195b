// cond.cpp - goro::Cond: Go's notifyList (runtime/sema.go) over park/ready.
//
// Owns: wait_ (next ticket), notify_ (next ticket to wake), lock_ (a runtime futex Lock) and
// the list head_/tail_ of waiter records, each on its waiter's own stack (it cannot move while
// the waiter is parked).
//
// Protocol:
//  wait(L):    1. With L held, take ticket t = wait_++ (add_waiter). 2. Unlock L.
//              3. Lock lock_; if t < notify_ (a signal already covered t) unlock and return.
//              4. Else append a record {g, t} and park; park's unlock function releases lock_
//                 after the goroutine is switched out. 5. When readied, relock L.
//  signal:     1. Fast path: wait_ == notify_ means no ticket is unwoken: return.
//              2. Lock lock_; t = notify_; if t == wait_ unlock and return. 3. notify_ = t + 1;
//                 find the record with ticket t, unlink it, unlock, ready it. If t's owner has
//                 not reached step 3 yet, there is no record: it will see t < notify_ there.
//  broadcast:  1. Same fast path. 2. Lock, notify_ = wait_, take the whole list, unlock,
//                 ready every record.
//
// Invariants: tickets are compared with wrap-around (int32 difference), as in Go; notify_
// never passes wait_; a record is in the list only while its ticket >= notify_, so a waiter
// is readied exactly once and never before it parked (the waker finds it under lock_, which
// its park released only after it was switched out). A signal before any waiter finds
// wait_ == notify_ and is not remembered. The waker reads a record's g and next before
// ready(); the record is never touched after.
//
// Lock order: lock_ is a leaf among primitive locks (ready() runs after it is released).
#include "goro/cond.hpp"

#include <type_traits>

#include "base/lock.hpp"
#include "sched/proc.hpp"

namespace goro {

using namespace internal;

namespace {

struct CondWaiter {
  G* g;
  std::uint32_t ticket;
  CondWaiter* next = nullptr;
};

static_assert(sizeof(Lock) == sizeof(std::atomic<std::uint32_t>) &&
              std::is_standard_layout_v<Lock>);
Lock& as_lock(std::atomic<std::uint32_t>* word) {
  return *reinterpret_cast<Lock*>(word);
}

// a < b with wrap-around.
bool less(std::uint32_t a, std::uint32_t b) {
  return static_cast<std::int32_t>(a - b) < 0;
}

bool unlock_word(G*, void* arg) {
  as_lock(static_cast<std::atomic<std::uint32_t>*>(arg)).unlock();
  return true;
}

}  // namespace

std::uint32_t Cond::add_waiter() noexcept {
  EnterRuntime enter;
  return wait_.fetch_add(1, std::memory_order_seq_cst);
}

void Cond::wait_ticket(std::uint32_t t) noexcept {
  EnterRuntime enter;
  Lock& l = as_lock(&lock_);
  l.lock();
  if (less(t, notify_.load(std::memory_order_relaxed))) {
    // Already signalled between add_waiter and here.
    l.unlock();
    return;
  }
  CondWaiter w{waiter(), t};
  if (tail_ == nullptr) {
    head_ = &w;
  } else {
    static_cast<CondWaiter*>(tail_)->next = &w;
  }
  tail_ = &w;
  park(unlock_word, &lock_, WaitReason::kSemacquire);
}

void Cond::signal() noexcept {
  EnterRuntime enter;
  if (wait_.load(std::memory_order_seq_cst) == notify_.load(std::memory_order_seq_cst)) return;
  Lock& l = as_lock(&lock_);
  l.lock();
  std::uint32_t t = notify_.load(std::memory_order_relaxed);
  if (t == wait_.load(std::memory_order_seq_cst)) {
    l.unlock();
    return;
  }
  notify_.store(t + 1, std::memory_order_seq_cst);
  CondWaiter* prev = nullptr;
  for (auto* w = static_cast<CondWaiter*>(head_); w != nullptr; prev = w, w = w->next) {
    if (w->ticket != t) continue;
    CondWaiter* next = w->next;
    if (prev != nullptr) {
      prev->next = next;
    } else {
      head_ = next;
    }
    if (next == nullptr) tail_ = prev;
    G* g = w->g;
    l.unlock();
    ready(g);
    return;
  }
  // Ticket t's owner has not queued yet; it will see t < notify_ and not park.
  l.unlock();
}

void Cond::broadcast() noexcept {
  EnterRuntime enter;
  if (wait_.load(std::memory_order_seq_cst) == notify_.load(std::memory_order_seq_cst)) return;
  Lock& l = as_lock(&lock_);
  l.lock();
  auto* w = static_cast<CondWaiter*>(head_);
  head_ = tail_ = nullptr;
  notify_.store(wait_.load(std::memory_order_seq_cst), std::memory_order_seq_cst);
  l.unlock();
  // The records left the list under lock_ and their owners stay parked until readied: only
  // this loop touches them now, and each one only before its ready().
  while (w != nullptr) {
    CondWaiter* next = w->next;
    G* g = w->g;
    ready(g);
    w = next;
  }
}

}  // namespace goro
