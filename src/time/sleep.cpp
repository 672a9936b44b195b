// sleep.cpp - goro::sleep_until: a goroutine parks on a runtime timer; a plain thread sleeps in
// the kernel.
#include <time.h>

#include <cerrno>

#include "base/platform.hpp"
#include "goro/time.hpp"
#include "sched/proc.hpp"
#include "time/timer.hpp"

namespace goro {

using namespace internal;

namespace {

struct Sleeper {
  G* g;
  internal::Timer t;
};

void wake_sleeper(void* arg, std::int64_t) {
  ready(static_cast<Sleeper*>(arg)->g);
}

// Runs on g0 once the goroutine is parked: only now may the timer fire and ready it.
bool arm_sleep_timer(G*, void* arg) {
  timer_start(&static_cast<Sleeper*>(arg)->t);
  return true;
}

}  // namespace

void sleep_until(std::chrono::steady_clock::time_point deadline) noexcept {
  EnterRuntime enter;
  std::int64_t when =
      std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.time_since_epoch()).count();
  G* g = getg();
  if (g == nullptr) {
    // A plain thread: CLOCK_MONOTONIC is steady_clock's clock in libstdc++ and libc++.
    struct timespec ts;
    ts.tv_sec = when / 1000000000;
    ts.tv_nsec = when % 1000000000;
    int saved = errno;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
    }
    errno = saved;
    return;
  }
  if (when <= nanotime()) {
    gosched();  // like Go's time.Sleep(0): at least a scheduling point
    return;
  }
  Sleeper s{g, {}};
  s.t.when = when;
  s.t.f = wake_sleeper;
  s.t.arg = &s;
  s.t.wakes_owner = true;  // wake_sleeper's ready is its last touch of s
  park(arm_sleep_timer, &s, WaitReason::kSleep);
  // Only the timer's callback readies us, and the runner let go of the Timer (which lives in
  // this frame) before calling it (wakes_owner): this finds it off its heap and returns at
  // once. Kept so that the frame never dies under a timer whatever woke us.
  timer_stop(&s.t);
}

}  // namespace goro
