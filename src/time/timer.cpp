// timer.cpp - runtime timers (Go's time.go, with Go 1.23's per-P locked heaps).
//
// What it owns: arming, disarming and running timers. Every sleeping goroutine, goro::Timer,
// Ticker, select timeout and Context deadline is one Timer in one P's heap.
//
// Structure: each P has a 4-ary min-heap (TimerHeap) under its own Lock; `next` mirrors the
// earliest deadline so that the scheduler can test "anything due?" with one atomic load and,
// only then, one clock read. A timer records its heap and index, so stopping is O(log n)
// under that heap's lock (no lazy deletion, no status machine).
//
// Who runs timers (no polling loop, no fixed tick):
//  1. A P's own M, at every pass of find_runnable (that is, whenever a goroutine parks,
//     yields or exits on it).
//  2. Every other M: every 8th pass of find_runnable it runs the due timers of one other P
//     (round-robin), and a stealing M those of each victim it visits. So a P busy with one
//     long goroutine (a spawn loop) does not hold its timers until the slice ends; what they
//     ready runs on the M that fired them.
//  3. The timer sleeper: the one idle M that sleeps with a timeout until the earliest
//     deadline of all heaps; all other idle Ms sleep without one. Arming a timer earlier than
//     the sleeper's deadline wakes it (wake_timer_sleeper); arming one from a plain thread
//     when no M is awake starts one (wakep), which then becomes the sleeper. See "Timers" in
//     proc.cpp's stop path.
//
// Running a timer: under the heap lock, pop it (or re-arm a periodic one), set `running`,
// unlock, call f, clear `running`. f must not block. timer_stop on a timer whose f is running
// waits for it to finish, so the owner may free the Timer as soon as timer_stop returns.
// Timers due together fire in deadline order, and so do the goroutines they ready: the first
// takes the P's runnext, the rest queue at the tail in firing order (M::timer_readies; with
// runnext for each, as Go does, the latest deadline ran first).
//
// Lock order: a heap lock is a leaf while held; f runs with no timer lock held (it may take a
// channel's lock, or sched.lock through ready()).
#include "time/timer.hpp"

#include <sched.h>

#include "base/platform.hpp"
#include "sched/proc.hpp"

namespace goro::internal {

namespace {

constexpr int kArity = 4;

void sift_up(TimerHeap* h, int i) {
  TimerHeap::Entry x = h->t[static_cast<std::size_t>(i)];
  while (i > 0) {
    int parent = (i - 1) / kArity;
    TimerHeap::Entry p = h->t[static_cast<std::size_t>(parent)];
    if (p.when <= x.when) break;
    h->t[static_cast<std::size_t>(i)] = p;
    p.t->index = i;
    i = parent;
  }
  h->t[static_cast<std::size_t>(i)] = x;
  x.t->index = i;
}

void sift_down(TimerHeap* h, int i) {
  int n = static_cast<int>(h->t.size());
  TimerHeap::Entry x = h->t[static_cast<std::size_t>(i)];
  for (;;) {
    int first = i * kArity + 1;
    if (first >= n) break;
    int best = first;
    for (int c = first + 1; c < first + kArity && c < n; c++) {
      if (h->t[static_cast<std::size_t>(c)].when < h->t[static_cast<std::size_t>(best)].when) {
        best = c;
      }
    }
    TimerHeap::Entry b = h->t[static_cast<std::size_t>(best)];
    if (b.when >= x.when) break;
    h->t[static_cast<std::size_t>(i)] = b;
    b.t->index = i;
    i = best;
  }
  h->t[static_cast<std::size_t>(i)] = x;
  x.t->index = i;
}

// (A') of the sleeper handshake in proc.cpp's stopm: sequentially consistent.
void update_next(TimerHeap* h) {
  h->next.store(h->t.empty() ? 0 : h->t[0].when, std::memory_order_seq_cst);
}

void heap_push(TimerHeap* h, Timer* t) {
  t->heap.store(h, std::memory_order_release);
  h->t.push_back({t->when, t});
  sift_up(h, static_cast<int>(h->t.size()) - 1);
  update_next(h);
}

void heap_remove(TimerHeap* h, Timer* t) {
  int i = t->index;
  TimerHeap::Entry last = h->t.back();
  h->t.pop_back();
  if (last.t != t) {
    h->t[static_cast<std::size_t>(i)] = last;
    last.t->index = i;
    sift_down(h, i);
    sift_up(h, last.t->index);
  }
  t->heap.store(nullptr, std::memory_order_release);
  t->index = -1;
  update_next(h);
}

std::atomic<std::int64_t> armed{0};

// The caller's P's heap; for a plain thread, a random P among the GOMAXPROCS active ones
// (a P's own M runs its heap at every scheduling pass, even when it is busy).
TimerHeap* heap_for_caller() {
  M* m = getm();
  if (m != nullptr && m->p != nullptr) return &m->p->timers;
  int n = sched.gomaxprocs.load(std::memory_order_acquire);
  return &sched.allp[fastrandn(static_cast<std::uint32_t>(n))]->timers;
}

}  // namespace

void timer_start(Timer* t) noexcept {
  EnterRuntime enter;
  ensure_started();
  TimerHeap* h = heap_for_caller();
  std::int64_t when = t->when;  // once pushed, t may fire and be freed (goro::after) at once
  armed.fetch_add(1, std::memory_order_relaxed);
  {
    LockGuard hold(h->lock);
    heap_push(h, t);
  }
  wake_timer_sleeper(when);
}

bool timer_stop(Timer* t) noexcept {
  EnterRuntime enter;
  bool was_armed = false;
  for (;;) {
    TimerHeap* h = t->heap.load(std::memory_order_acquire);
    if (h == nullptr) break;
    LockGuard hold(h->lock);
    if (t->heap.load(std::memory_order_relaxed) != h) continue;  // ran meanwhile
    heap_remove(h, t);
    armed.fetch_sub(1, std::memory_order_relaxed);
    was_armed = true;
    break;
  }
  // Its callback may be running right now (a one-shot that just fired, or a periodic timer,
  // re-armed before f ran). Wait without holding a heap lock: f may arm timers itself.
  while (t->running.load(std::memory_order_acquire) != 0) sched_yield();
  return was_armed;
}

std::int64_t timers_run(TimerHeap* h, std::int64_t now) noexcept {
  EnterRuntime enter;
  std::int64_t next = h->next.load(std::memory_order_acquire);
  if (next == 0 || next > now) return next;
  // The goroutines this batch readies run in deadline order (see M::timer_readies).
  M* m = getm();
  if (m != nullptr) m->timer_readies = 0;
  h->lock.lock();
  while (!h->t.empty() && h->t[0].when <= now) {
    Timer* t = h->t[0].t;
    // Count this run before the timer leaves the heap: timer_stop reads `heap` without the
    // lock, and once it sees null it trusts `running` to tell whether f is still to come (the
    // release store of heap = null below publishes this increment). A counter, not a flag: a
    // short-period timer can be due again, and run by another M, before this run ends.
    const bool counted = !(t->wakes_owner && t->period == 0);
    if (counted) t->running.fetch_add(1, std::memory_order_relaxed);
    auto f = t->f;
    void* arg = t->arg;
    auto release = t->period > 0 ? nullptr : t->release;
    if (t->period > 0) {
      // Re-arm first; a ticker that fell behind skips the ticks it missed.
      t->when += t->period;
      if (t->when <= now) t->when = now + t->period;
      h->t[0].when = t->when;
      sift_down(h, 0);
      update_next(h);
    } else {
      heap_remove(h, t);
      armed.fetch_sub(1, std::memory_order_relaxed);
    }
    h->lock.unlock();
    f(arg, now);
    // After this store the owner may free t (a timer_stop may be waiting for it).
    if (counted) t->running.fetch_sub(1, std::memory_order_release);
    if (release != nullptr) release(arg);
    h->lock.lock();
  }
  update_next(h);
  next = h->next.load(std::memory_order_relaxed);
  h->lock.unlock();
  if (m != nullptr) m->timer_readies = -1;
  return next;
}

std::int64_t timers_run_all(std::int64_t now) noexcept {
  EnterRuntime enter;
  std::int64_t earliest = 0;
  int n = sched.nallp.load(std::memory_order_acquire);
  for (int i = 0; i < n; i++) {
    std::int64_t next = timers_run(&sched.allp[i]->timers, now);
    if (next != 0 && (earliest == 0 || next < earliest)) earliest = next;
  }
  return earliest;
}

std::int64_t timers_next_all() noexcept {
  std::int64_t earliest = 0;
  int n = sched.nallp.load(std::memory_order_acquire);
  for (int i = 0; i < n; i++) {
    std::int64_t next = sched.allp[i]->timers.next.load(std::memory_order_seq_cst);
    if (next != 0 && (earliest == 0 || next < earliest)) earliest = next;
  }
  return earliest;
}

std::int64_t timers_count() noexcept {
  return armed.load(std::memory_order_relaxed);
}

void timers_move(TimerHeap* from, TimerHeap* to) noexcept {
  EnterRuntime enter;
  if (from == to) return;
  // Heap locks never nest anywhere else; take these two in address order.
  TimerHeap* first = from < to ? from : to;
  TimerHeap* second = from < to ? to : from;
  LockGuard a(first->lock);
  LockGuard b(second->lock);
  while (!from->t.empty()) {
    Timer* t = from->t.back().t;
    heap_remove(from, t);
    heap_push(to, t);
  }
}

}  // namespace goro::internal
