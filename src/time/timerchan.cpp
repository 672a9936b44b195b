// timerchan.cpp - timers that send on a channel: goro::after, goro::Timer, goro::Ticker.
//
// A TimerChan is a runtime Timer plus the channel it sends on (capacity 1). Firing does a
// non-blocking send of the current time: a value nobody has received yet makes the new one
// drop (a Ticker misses ticks instead of queueing them; a one-shot Timer can only fire once
// per arming anyway). stop() and reset() then drain the channel, so that, as in Go 1.23, no
// value from before the call is received after it returns.
#include <stdexcept>

#include "base/lock.hpp"
#include "goro/time.hpp"
#include "sched/proc.hpp"
#include "time/timer.hpp"

namespace goro::internal {

struct TimerChan {
  Lock mu;  // serializes stop/reset/free (the timer may be armed only once at a time)
  Timer t;
  Chan<std::chrono::steady_clock::time_point> c;
};

namespace {

void fire(void* arg, std::int64_t now) {
  auto* tc = static_cast<TimerChan*>(arg);
  std::chrono::steady_clock::time_point tp{std::chrono::nanoseconds(now)};
  tc->c.try_send(tp);  // never blocks: a value still unreceived means this one is dropped
}

void free_after(void* arg) {
  delete static_cast<TimerChan*>(arg);
}

void drain(TimerChan* tc) {
  while (tc->c.try_recv()) {
  }
}

}  // namespace

TimerChan* timerchan_start(std::int64_t when, std::int64_t period,
                           Chan<std::chrono::steady_clock::time_point>* out) {
  EnterRuntime enter;
  auto* tc = new TimerChan;
  tc->c = Chan<std::chrono::steady_clock::time_point>(1);
  *out = tc->c;
  tc->t.when = when;
  tc->t.period = period;
  tc->t.f = fire;
  tc->t.arg = tc;
  timer_start(&tc->t);
  return tc;
}

void timerchan_after(std::int64_t when, Chan<std::chrono::steady_clock::time_point>* out) {
  EnterRuntime enter;
  auto* tc = new TimerChan;
  tc->c = Chan<std::chrono::steady_clock::time_point>(1);
  *out = tc->c;
  tc->t.when = when;
  tc->t.f = fire;
  tc->t.release = free_after;
  tc->t.arg = tc;
  timer_start(&tc->t);
}

bool timerchan_stop(TimerChan* tc) noexcept {
  EnterRuntime enter;
  if (tc == nullptr) return false;
  LockGuard hold(tc->mu);
  bool was = timer_stop(&tc->t);
  drain(tc);
  return was;
}

bool timerchan_reset(TimerChan* tc, std::int64_t when, std::int64_t period) noexcept {
  EnterRuntime enter;
  LockGuard hold(tc->mu);
  bool was = timer_stop(&tc->t);
  drain(tc);
  tc->t.when = when;
  tc->t.period = period;
  timer_start(&tc->t);
  return was;
}

void timerchan_free(TimerChan* tc) noexcept {
  EnterRuntime enter;
  if (tc == nullptr) return;
  {
    LockGuard hold(tc->mu);
    timer_stop(&tc->t);
  }
  delete tc;
}

}  // namespace goro::internal

namespace goro {

void Ticker::check(std::int64_t ns) {
  if (ns <= 0) throw std::invalid_argument("goro::Ticker: period must be positive");
}

}  // namespace goro
