// goro/time.hpp - sleeping and timers (Go's time.Sleep, time.After, time.Timer, time.Ticker).
//
// Time is std::chrono::steady_clock (CLOCK_MONOTONIC). A sleeping goroutine costs no CPU: it is
// parked on a runtime timer (one heap per P), and idle OS threads sleep exactly until the
// earliest timer is due (no polling loop, no fixed tick). Timers fire on whichever thread runs
// the scheduler; a timer's channel has room for one value, so firing never blocks.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

#include "goro/chan.hpp"
#include "goro/export.hpp"

namespace goro {

/// Blocks the caller until `deadline`: a goroutine parks (its thread runs other goroutines), a
/// plain thread sleeps in the kernel. A deadline in the past returns at once (a goroutine still
/// yields once). Thread-safe; never throws.
GORO_API void sleep_until(std::chrono::steady_clock::time_point deadline) noexcept;

/// sleep_until(now + d). A zero or negative d returns at once (a goroutine yields once).
template <class Rep, class Period>
void sleep_for(std::chrono::duration<Rep, Period> d) noexcept {
  auto now = std::chrono::steady_clock::now();
  if (d <= d.zero()) {
    sleep_until(now);
    return;
  }
  sleep_until(now + std::chrono::ceil<std::chrono::steady_clock::duration>(d));
}

namespace internal {
struct TimerChan;
GORO_API TimerChan* timerchan_start(std::int64_t when, std::int64_t period,
                                    Chan<std::chrono::steady_clock::time_point>* out);
GORO_API bool timerchan_stop(TimerChan* t) noexcept;
GORO_API bool timerchan_reset(TimerChan* t, std::int64_t when, std::int64_t period) noexcept;
GORO_API void timerchan_free(TimerChan* t) noexcept;
GORO_API void timerchan_after(std::int64_t when, Chan<std::chrono::steady_clock::time_point>* out);
inline std::int64_t deadline_after(std::chrono::steady_clock::duration d) {
  auto tp = std::chrono::steady_clock::now() + (d < d.zero() ? d.zero() : d);
  return std::chrono::duration_cast<std::chrono::nanoseconds>(tp.time_since_epoch()).count();
}
}  // namespace internal

/// A channel that receives the current time once, after d (Go's time.After). The timer frees
/// itself after firing; the channel keeps the value until it is received or dropped. Use a
/// goro::Timer to be able to stop it. Throws std::bad_alloc.
template <class Rep, class Period>
Chan<std::chrono::steady_clock::time_point> after(std::chrono::duration<Rep, Period> d) {
  Chan<std::chrono::steady_clock::time_point> c;
  internal::timerchan_after(
      internal::deadline_after(std::chrono::ceil<std::chrono::steady_clock::duration>(d)), &c);
  return c;
}

/// A single-shot timer with a channel (Go's time.Timer): at the deadline, the current time is
/// sent on c() (a channel with room for one value). stop() and reset() follow Go 1.23: after
/// they return, no value from before is received. Movable, not copyable; destroying a Timer
/// stops it. Thread-safe except that one Timer must not be destroyed or moved concurrently
/// with other calls on it.
class GORO_API Timer {
 public:
  /// Starts a timer that fires after d. Throws std::bad_alloc.
  template <class Rep, class Period>
  explicit Timer(std::chrono::duration<Rep, Period> d)
      : t_(internal::timerchan_start(
            internal::deadline_after(std::chrono::ceil<std::chrono::steady_clock::duration>(d)), 0,
            &c_)) {}
  Timer(Timer&&) noexcept = default;
  Timer& operator=(Timer&&) noexcept = default;
  ~Timer() = default;

  /// The channel the fire time is sent on.
  const Chan<std::chrono::steady_clock::time_point>& c() const noexcept { return c_; }
  /// Stops the timer. Returns true if that prevented it from firing, false if it had already
  /// fired or been stopped. Never blocks for long (at most until a firing in progress ends).
  bool stop() noexcept { return internal::timerchan_stop(t_.get()); }
  /// Re-arms the timer to fire after d (stopping it first). Returns true if it was still
  /// armed.
  template <class Rep, class Period>
  bool reset(std::chrono::duration<Rep, Period> d) noexcept {
    return internal::timerchan_reset(
        t_.get(),
        internal::deadline_after(std::chrono::ceil<std::chrono::steady_clock::duration>(d)), 0);
  }

 private:
  struct Free {
    void operator()(internal::TimerChan* t) const noexcept { internal::timerchan_free(t); }
  };
  Chan<std::chrono::steady_clock::time_point> c_;
  std::unique_ptr<internal::TimerChan, Free> t_;
};

/// Sends the current time on c() every period (Go's time.Ticker). A slow receiver misses ticks
/// rather than piling them up (the channel holds one). Movable; destroying it stops it.
/// Throws std::invalid_argument for a period <= 0, std::bad_alloc.
class GORO_API Ticker {
 public:
  template <class Rep, class Period>
  explicit Ticker(std::chrono::duration<Rep, Period> period)
      : t_(start(std::chrono::ceil<std::chrono::nanoseconds>(period).count())) {}
  Ticker(Ticker&&) noexcept = default;
  Ticker& operator=(Ticker&&) noexcept = default;
  ~Ticker() = default;

  const Chan<std::chrono::steady_clock::time_point>& c() const noexcept { return c_; }
  /// Stops the ticker; no tick is received after it returns.
  void stop() noexcept { internal::timerchan_stop(t_.get()); }
  /// Changes the period and restarts counting from now. Throws std::invalid_argument for a
  /// period <= 0.
  template <class Rep, class Period>
  void reset(std::chrono::duration<Rep, Period> period) {
    std::int64_t ns = std::chrono::ceil<std::chrono::nanoseconds>(period).count();
    check(ns);
    internal::timerchan_reset(t_.get(), internal::deadline_after(std::chrono::nanoseconds(ns)), ns);
  }

 private:
  struct Free {
    void operator()(internal::TimerChan* t) const noexcept { internal::timerchan_free(t); }
  };
  static void check(std::int64_t ns);
  internal::TimerChan* start(std::int64_t ns) {
    check(ns);
    return internal::timerchan_start(internal::deadline_after(std::chrono::nanoseconds(ns)), ns,
                                     &c_);
  }
  Chan<std::chrono::steady_clock::time_point> c_;
  std::unique_ptr<internal::TimerChan, Free> t_;
};

}  // namespace goro
