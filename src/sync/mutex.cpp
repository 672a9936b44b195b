// mutex.cpp - goro::Mutex: Go's sync.Mutex algorithm over the runtime semaphore.
//
// Two modes. Normal: waiters queue FIFO, but a woken waiter competes with newly arriving
// goroutines (which are already on a CPU and usually win), so throughput is high. Starvation:
// entered when a waiter has waited more than 1 ms; unlock hands the mutex directly to the
// first waiter, newcomers queue at the tail without trying. Left when the last waiter gets
// the lock or one got it in under 1 ms.
//
// State word (see goro/sync.hpp): bit 0 locked, bit 1 woken (a waiter was readied: unlock
// need not ready another), bit 2 starving, bits 3.. waiter count.
#include "goro/sync.hpp"
#include "sched/proc.hpp"

#include "base/platform.hpp"
#include "base/raw_log.hpp"
#include "sync/sema.hpp"

namespace goro {

using namespace internal;

namespace {

constexpr std::int32_t kWoken = 2;
constexpr std::int32_t kStarving = 4;
constexpr int kWaiterShift = 3;
constexpr std::int64_t kStarvationNs = 1000000;

}  // namespace

bool Mutex::try_lock() noexcept {
  std::int32_t old = state_.load(std::memory_order_relaxed);
  if ((old & (kLocked | kStarving)) != 0) return false;
  return state_.compare_exchange_strong(old, old | kLocked, std::memory_order_acquire,
                                        std::memory_order_relaxed);
}

void Mutex::lock_slow() noexcept {
  EnterRuntime enter;
  std::int64_t wait_start = 0;
  bool starving = false;
  bool awoke = false;
  int iter = 0;
  std::int32_t old = state_.load(std::memory_order_relaxed);
  for (;;) {
    // Spin only in normal mode while locked: in starvation mode ownership is handed off, so
    // spinning cannot win.
    if ((old & (kLocked | kStarving)) == kLocked && can_spin(iter)) {
      // Set woken so that unlock does not wake another waiter while we spin.
      if (!awoke && (old & kWoken) == 0 && (old >> kWaiterShift) != 0 &&
          state_.compare_exchange_strong(old, old | kWoken, std::memory_order_relaxed)) {
        awoke = true;
      }
      // One round: 15-45 pauses (random), then one look. Looking only at the end leaves the
      // holder's cache line alone, so a holder that re-locks at once runs a burst of critical
      // sections with it local. A fixed count (Go's 30) let the two cores' loops fall into
      // step: bench_goro_mutex -procs 2 (8 goroutines, one lock) ran at 21, 37, 49 and 52 ns
      // per operation for four builds that differed only in code alignment
      // (-falign-functions / -falign-loops). Looking after every pause took that away (37-39
      // ns in all four) but pulled the line across on every pause: 26-27 ns against Go's
      // 16-18 later on this machine. The random count keeps the loops out of step: 12-13.5 ns
      // in four alignments (16, 32, 64, default; 7 interleaved runs each).
      for (int i = 0, n = 15 + static_cast<int>(fastrandn(31)); i < n; i++) cpu_relax();
      iter++;
      old = state_.load(std::memory_order_relaxed);
      continue;
    }
    std::int32_t next = old;
    if ((old & kStarving) == 0) next |= kLocked;  // newcomers do not grab a starving mutex
    if ((old & (kLocked | kStarving)) != 0) next += 1 << kWaiterShift;
    if (starving && (old & kLocked) != 0) next |= kStarving;
    if (awoke) {
      if ((next & kWoken) == 0) fatal("sync: inconsistent mutex state");
      next &= ~kWoken;
    }
    if (state_.compare_exchange_strong(old, next, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
      if ((old & (kLocked | kStarving)) == 0) return;  // got it
      bool lifo = wait_start != 0;
      if (wait_start == 0) wait_start = nanotime();
      semacquire(&sema_, lifo, WaitReason::kMutex);
      starving = starving || nanotime() - wait_start > kStarvationNs;
      old = state_.load(std::memory_order_acquire);
      if ((old & kStarving) != 0) {
        // Ownership was handed to us; the state still says unlocked with us as a waiter.
        if ((old & (kLocked | kWoken)) != 0 || (old >> kWaiterShift) == 0) {
          fatal("sync: inconsistent mutex state");
        }
        std::int32_t delta = kLocked - (1 << kWaiterShift);
        if (!starving || (old >> kWaiterShift) == 1) delta -= kStarving;  // leave starvation
        state_.fetch_add(delta, std::memory_order_acquire);
        return;
      }
      awoke = true;
      iter = 0;
    }
  }
}

void Mutex::unlock_slow(std::int32_t n) noexcept {
  EnterRuntime enter;
  if (((n + kLocked) & kLocked) == 0) fatal("sync: unlock of unlocked mutex");
  if ((n & kStarving) == 0) {
    std::int32_t old = n;
    for (;;) {
      // No waiters, or someone is already woken / got the lock: nothing to do.
      if ((old >> kWaiterShift) == 0 || (old & (kLocked | kWoken | kStarving)) != 0) return;
      std::int32_t next = (old - (1 << kWaiterShift)) | kWoken;
      if (state_.compare_exchange_strong(old, next, std::memory_order_release,
                                         std::memory_order_relaxed)) {
        semrelease(&sema_, false);
        return;
      }
    }
  }
  // Starving: hand off to the first waiter and yield to it.
  semrelease(&sema_, true);
}

}  // namespace goro
