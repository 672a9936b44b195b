// group.cpp - goro::Group: errgroup.Group (a WaitGroup, a limit and the first error) with one
// lock over park/ready.
//
// Owns: active_ (goroutines started or reserved and not finished), limit_, the FIFO of go()
// calls waiting for a slot (go_head_/go_tail_), the list of wait() calls waiting for the group
// to become idle (idle_waiters_), err_; lock_ (a runtime futex Lock) guards all of them. Every
// waiter record lives on its waiter's own stack, which cannot move while it is parked.
//
// Protocol:
//  go/try_go:  1. Lock. If there is no limit, or active_ < limit_ and nobody queues for a slot:
//                 active_++, unlock, start the goroutine.
//              2. Else try_go unlocks and returns false; go queues a record and parks (park's
//                 unlock function releases the lock after the goroutine is switched out).
//              3. Readied: a finishing goroutine handed its slot over (granted): start it.
//              If goro::go throws, the slot is given back exactly as a finishing goroutine
//              does (step "finish" with no exception).
//  finish:     1. The goroutine ran f, caught any exception, destroyed f and its arguments.
//              2. Lock. Keep the exception if err_ is empty. If a go() queues, hand it this
//                 slot (active_ unchanged); else active_--, and if that reaches 0 take the
//                 whole idle_waiters_ list. 3. Unlock; ready those records (reading g and next
//                 before each ready()); never touch the Group again.
//  wait:       1. Lock. If active_ == 0, copy err_, unlock, rethrow it if set.
//              2. Else queue a record, park; when readied, lock and copy err_ as in step 1.
//
// Why not a WaitGroup plus a Semaphore: the last finishing goroutine would touch the
// WaitGroup's semaphore after the counter reached zero, and a wait() that returns through the
// semaphore's fast path may already have destroyed the Group. Here, everything the finishing
// goroutine does to the Group is done under lock_, which a wait() must take to see
// active_ == 0 (only Lock::unlock's futex wake-up may reach a dead lock word, which is
// harmless: waking an address is a no-op or a spurious wake-up that futex users tolerate).
//
// Invariants: 0 <= active_; with a limit, active_ <= limit_, and go() callers queue only while
// active_ == limit_ (so active_ == 0 implies an empty slot queue); a record is readied exactly
// once and never touched after its ready().
//
// Lock order: lock_ is a leaf among primitive locks (ready() runs after it is released).
#include "goro/group.hpp"

#include <stdexcept>
#include <type_traits>

#include "base/lock.hpp"
#include "base/raw_log.hpp"
#include "sched/proc.hpp"

namespace goro {

using namespace internal;

namespace {

struct GroupWaiter {
  G* g;
  GroupWaiter* next = nullptr;
  bool granted = false;  // (go() records) a finishing goroutine handed us its slot
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

}  // namespace

Group::Group(const Context& parent, int limit) {
  auto [ctx, cancel] = with_cancel(parent);
  ctx_ = std::move(ctx);
  cancel_ = std::move(cancel);
  set_limit(limit);
}

Group::~Group() {
  EnterRuntime enter;
  (void)wait_idle();
}

void Group::set_limit(int n) {
  EnterRuntime enter;
  if (n == 0) throw std::invalid_argument("goro::Group::set_limit: limit 0 would block forever");
  Lock& l = as_lock(&lock_);
  l.lock();
  if (active_ != 0) {
    std::int64_t a = active_;
    l.unlock();
    RawBuf b;
    b.str("errgroup: modify limit while ").dec(a).str(" goroutines in the group are still active");
    fatal(b.view());
  }
  limit_ = n < 0 ? -1 : n;
  l.unlock();
}

bool Group::start(bool block) {
  EnterRuntime enter;
  Lock& l = as_lock(&lock_);
  l.lock();
  if (limit_ < 0 || (active_ < limit_ && go_head_ == nullptr)) {
    active_++;
    l.unlock();
    return true;
  }
  if (!block) {
    l.unlock();
    return false;
  }
  GroupWaiter w{waiter()};
  if (go_tail_ == nullptr) {
    go_head_ = &w;
  } else {
    static_cast<GroupWaiter*>(go_tail_)->next = &w;
  }
  go_tail_ = &w;
  park(unlock_word, &lock_, WaitReason::kSemacquire);
  if (!w.granted) fatal("errgroup: go() readied without a slot");
  return true;
}

void Group::finish(std::exception_ptr e) noexcept {
  EnterRuntime enter;
  Lock& l = as_lock(&lock_);
  GroupWaiter* wake = nullptr;
  CancelFunc cancel;  // the first failure cancels the group's context, after the unlock
  l.lock();
  if (e != nullptr && err_ == nullptr) {
    err_ = std::move(e);
    cancel = cancel_;
  }
  if (go_head_ != nullptr) {
    // Hand this slot to the first go() waiting for one; active_ stays the same.
    wake = static_cast<GroupWaiter*>(go_head_);
    go_head_ = wake->next;
    if (go_head_ == nullptr) go_tail_ = nullptr;
    wake->next = nullptr;
    wake->granted = true;
  } else if (--active_ == 0) {
    wake = static_cast<GroupWaiter*>(idle_waiters_);
    idle_waiters_ = nullptr;
  }
  l.unlock();
  // From here on the Group may be gone: touch only the records, which left its lists under
  // the lock and whose owners stay parked until readied, and the copy of the cancel function.
  cancel();
  while (wake != nullptr) {
    GroupWaiter* next = wake->next;
    G* g = wake->g;
    ready(g);
    wake = next;
  }
  // e (a later exception, dropped) is destroyed here, without the lock.
}

std::exception_ptr Group::wait_idle() noexcept {
  EnterRuntime enter;
  Lock& l = as_lock(&lock_);
  l.lock();
  if (active_ != 0) {
    GroupWaiter w{waiter()};
    w.next = static_cast<GroupWaiter*>(idle_waiters_);
    idle_waiters_ = &w;
    park(unlock_word, &lock_, WaitReason::kWaitGroup);
    l.lock();
  }
  std::exception_ptr e = err_;
  l.unlock();
  return e;
}

void Group::wait() {
  EnterRuntime enter;
  std::exception_ptr e = wait_idle();
  cancel_();
  if (e != nullptr) std::rethrow_exception(e);
}

}  // namespace goro
