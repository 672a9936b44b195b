// goro/time.hpp - sleeping (Go's time.Sleep).
//
// Time is std::chrono::steady_clock (CLOCK_MONOTONIC). A sleeping goroutine costs no CPU: it is
// parked on a runtime timer, and idle OS threads sleep exactly until the earliest timer is due
// (no polling loop, no fixed tick).
#pragma once

#include <chrono>

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

}  // namespace goro
