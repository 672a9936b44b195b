// timer.hpp - runtime timers: per-P heaps, run by the scheduler. Design essay in timer.cpp.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "base/lock.hpp"

namespace goro::internal {

struct TimerHeap;

// A timer. The owner (sleep, a goro::Timer, a select timeout, a Context deadline) embeds it and
// keeps it alive until timer_stop() returned or the callback ran for the last time.
struct Timer {
  std::int64_t when = 0;    // nanotime() deadline
  std::int64_t period = 0;  // > 0: fires again every period (a Ticker)
  // Runs on whatever thread runs timers (an M's g0, or an M without a P): must not block,
  // may ready goroutines and do non-blocking channel sends. `now` is the time it ran.
  void (*f)(void* arg, std::int64_t now) = nullptr;
  void* arg = nullptr;
  // Optional: called after f's last run of a one-shot timer, once the timer is no longer
  // touched, so a timer that owns itself (goro::after) can free itself there.
  void (*release)(void* arg) = nullptr;
  // A one-shot timer whose f readies the goroutine parked on it and then touches neither the
  // timer nor arg (goro::sleep_until): that goroutine cannot get past its park, and so cannot
  // stop or free the timer, before f readied it. Its run is not counted in `running`, so the
  // woken goroutine's timer_stop returns at once instead of waiting out the rest of f (the
  // ready's wake-up of another M) in sched_yield.
  bool wakes_owner = false;

  // --- Written under the heap's lock; `heap` is also read without it (timer_stop).
  std::atomic<TimerHeap*> heap{nullptr};  // the heap it is queued in, or null
  int index = -1;                         // its position in heap->t
  // How many runs of f are in progress (timer_stop waits for zero, so the owner may free the
  // timer).
  std::atomic<std::uint32_t> running{0};
};

// A 4-ary min-heap of timers by `when`, one per P. Each entry carries a copy of its timer's
// deadline, so that sifting compares within the array (a node's four children share a cache
// line) instead of dereferencing every child's Timer.
struct TimerHeap {
  struct Entry {
    std::int64_t when;  // == t->when while t is in the heap
    Timer* t;
  };
  Lock lock;
  std::vector<Entry> t;               // under lock
  std::atomic<std::int64_t> next{0};  // t[0]->when, or 0 when empty; read without the lock
};

// Arms t (not armed now) at t->when, on the caller's P's heap (any P's for a plain thread).
void timer_start(Timer* t) noexcept;
// Disarms t. Returns true if it was armed (it will not fire), false if it had fired or was
// never armed. If its callback is running on another thread, waits for it to finish first.
bool timer_stop(Timer* t) noexcept;
// Runs the timers of h that are due at `now`. Returns the next deadline (0: none left).
std::int64_t timers_run(TimerHeap* h, std::int64_t now) noexcept;
// Runs due timers of every P; returns the earliest deadline left over all Ps (0: none).
std::int64_t timers_run_all(std::int64_t now) noexcept;
// The earliest deadline over all Ps (0: none).
std::int64_t timers_next_all() noexcept;
// Moves every timer of `from` into `to` (a retired P hands its timers to an active one).
void timers_move(TimerHeap* from, TimerHeap* to) noexcept;
// Counts armed timers (for stats and tests).
std::int64_t timers_count() noexcept;

}  // namespace goro::internal
