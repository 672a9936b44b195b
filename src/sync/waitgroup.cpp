// waitgroup.cpp - goro::WaitGroup (Go's sync.WaitGroup) over the runtime semaphore.
//
// state_: high 32 bits the counter (signed), low 32 bits the number of blocked waiters. The
// releasing add() (counter to zero with waiters) resets the state to 0 and releases the
// semaphore once per waiter; no add() may race with that (it would be a misuse).
#include "goro/sync.hpp"
#include "sched/proc.hpp"

#include "base/raw_log.hpp"
#include "sync/sema.hpp"

namespace goro {

using namespace internal;

void WaitGroup::add(std::int64_t delta) noexcept {
  EnterRuntime enter;
  std::uint64_t s =
      state_.fetch_add(static_cast<std::uint64_t>(delta) << 32, std::memory_order_acq_rel) +
      (static_cast<std::uint64_t>(delta) << 32);
  auto v = static_cast<std::int32_t>(s >> 32);
  auto w = static_cast<std::uint32_t>(s);
  if (v < 0) fatal("sync: negative WaitGroup counter");
  if (w != 0 && delta > 0 && v == static_cast<std::int32_t>(delta)) {
    fatal("sync: WaitGroup misuse: add called concurrently with wait");
  }
  if (v > 0 || w == 0) return;
  // Counter is zero and there are waiters: nobody else may touch the state now.
  if (state_.load(std::memory_order_relaxed) != s) {
    fatal("sync: WaitGroup misuse: add called concurrently with wait");
  }
  state_.store(0, std::memory_order_relaxed);
  semrelease(&sema_, false, w);
}

void WaitGroup::wait() noexcept {
  EnterRuntime enter;
  std::uint64_t s = state_.load(std::memory_order_acquire);
  for (;;) {
    if (static_cast<std::int32_t>(s >> 32) == 0) return;
    if (state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel,
                                     std::memory_order_acquire)) {
      semacquire(&sema_, false, WaitReason::kWaitGroup);
      if (state_.load(std::memory_order_acquire) != 0) {
        fatal("sync: WaitGroup is reused before previous wait has returned");
      }
      return;
    }
  }
}

}  // namespace goro
