// lock.cpp - futex-based Lock and Note (see lock.hpp).
#include "base/lock.hpp"

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

#include "base/platform.hpp"

namespace goro::internal {

bool futex_wait(std::atomic<std::uint32_t>* addr, std::uint32_t val,
                std::int64_t timeout_ns) noexcept {
  struct timespec ts;
  struct timespec* tsp = nullptr;
  if (timeout_ns >= 0) {
    ts.tv_sec = timeout_ns / 1000000000;
    ts.tv_nsec = timeout_ns % 1000000000;
    tsp = &ts;
  }
  int saved = errno;  // futex must not disturb the caller's errno
  long r = ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(addr), FUTEX_WAIT_PRIVATE, val,
                     tsp, nullptr, 0);
  bool timed_out = r == -1 && errno == ETIMEDOUT;
  errno = saved;
  return !timed_out;
}

void futex_wake(std::atomic<std::uint32_t>* addr, int n) noexcept {
  int saved = errno;
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(addr), FUTEX_WAKE_PRIVATE, n, nullptr,
            nullptr, 0);
  errno = saved;
}

void Lock::lock_slow() noexcept {
  // Speculatively mark the lock as having sleepers once we give up spinning: a waker then
  // always issues a futex wake, which is cheaper than a lost wake-up.
  std::uint32_t v = word_.exchange(kLocked, std::memory_order_acquire);
  if (v == kUnlocked) return;
  std::uint32_t wait = v;  // kLocked or kSleeping: what we must leave behind when we get it
  const int spin = num_cpu() > 1 ? 4 : 0;
  for (;;) {
    for (int i = 0; i < spin; i++) {
      for (int k = 0; k < 30; k++) cpu_relax();
      std::uint32_t c = kUnlocked;
      if (word_.load(std::memory_order_relaxed) == kUnlocked &&
          word_.compare_exchange_strong(c, wait, std::memory_order_acquire,
                                        std::memory_order_relaxed)) {
        return;
      }
    }
    std::uint32_t c = kUnlocked;
    if (word_.load(std::memory_order_relaxed) == kUnlocked &&
        word_.compare_exchange_strong(c, wait, std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
      return;
    }
    v = word_.exchange(kSleeping, std::memory_order_acquire);
    if (v == kUnlocked) return;
    wait = kSleeping;
    futex_wait(&word_, kSleeping);
  }
}

bool Note::sleep_for(std::int64_t ns) noexcept {
  std::int64_t deadline = nanotime() + ns;
  while (key_.load(std::memory_order_acquire) == 0) {
    std::int64_t left = deadline - nanotime();
    if (left <= 0) return false;
    futex_wait(&key_, 0, left);
  }
  return true;
}

}  // namespace goro::internal
