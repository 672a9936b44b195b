// runq.hpp - a P's local run queue: a fixed ring that its owner pushes and pops without locks
// and that any thread may steal half of, plus the `runnext` slot (Go's runq/runnext).
//
// Ownership: only the owning P's M writes `tail_` and the slots at and after tail; consumers
// (the owner popping, thieves stealing) claim slots by advancing `head_` with a CAS. A slot is
// read by a consumer only inside [head, tail), which the producer cannot overwrite until head
// moves past it, so a thief that loses its CAS simply discards what it read.
//
// Memory ordering: the producer fills a slot, then publishes it with a release store of tail
// (A); consumers load tail with acquire (A') before reading slots. A consumer's successful
// release CAS of head (B) pairs with the producer's acquire load of head (B') before it reuses
// the freed slots. Slots are atomics read and written relaxed, so a thief's read racing a
// producer's overwrite (which only happens when the thief's CAS will fail) is not a data race.
//
// Capacity is a template parameter so that tests can shrink it to reach the overflow paths.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace goro::internal {

template <class T, std::uint32_t N>
class RunQueue {
  static_assert((N & (N - 1)) == 0, "capacity must be a power of two");

 public:
  static constexpr std::uint32_t kCapacity = N;

  // Owner: puts x at the tail. Returns false when the ring is full (x not queued).
  bool push(T* x) noexcept {
    std::uint32_t h = head_.load(std::memory_order_acquire);  // (B')
    std::uint32_t t = tail_.load(std::memory_order_relaxed);
    if (t - h >= N) return false;
    slots_[t % N].store(x, std::memory_order_relaxed);
    tail_.store(t + 1, std::memory_order_release);  // (A)
    return true;
  }

  // Owner: when the ring is full, removes the older half into out[0..N/2) (so the caller can
  // move them to the global queue). Returns the number taken, 0 if a thief raced (retry push).
  std::uint32_t take_half(T** out) noexcept {
    std::uint32_t h = head_.load(std::memory_order_acquire);
    std::uint32_t t = tail_.load(std::memory_order_relaxed);
    std::uint32_t n = (t - h) / 2;
    if (n != N / 2) return 0;
    for (std::uint32_t i = 0; i < n; i++)
      out[i] = slots_[(h + i) % N].load(std::memory_order_relaxed);
    if (!head_.compare_exchange_strong(h, h + n, std::memory_order_release,
                                       std::memory_order_relaxed)) {
      return 0;
    }
    return n;
  }

  // Owner: takes runnext if set, else the head. Sets *from_next accordingly.
  T* pop(bool* from_next = nullptr) noexcept {
    T* next = runnext_.load(std::memory_order_relaxed);
    if (next != nullptr &&
        runnext_.compare_exchange_strong(next, nullptr, std::memory_order_acquire,
                                         std::memory_order_relaxed)) {
      if (from_next != nullptr) *from_next = true;
      return next;
    }
    if (from_next != nullptr) *from_next = false;
    for (;;) {
      std::uint32_t h = head_.load(std::memory_order_acquire);
      std::uint32_t t = tail_.load(std::memory_order_relaxed);
      if (t == h) return nullptr;
      T* x = slots_[h % N].load(std::memory_order_relaxed);
      if (head_.compare_exchange_strong(h, h + 1, std::memory_order_release,
                                        std::memory_order_relaxed)) {
        return x;
      }
    }
  }

  // Owner: the goroutine at the head of the ring when at least `min` are queued, else null; a
  // thief may take it at any moment, so this is a hint (prefetching), never a claim.
  T* peek_head(std::uint32_t min) const noexcept {
    std::uint32_t h = head_.load(std::memory_order_relaxed);
    if (tail_.load(std::memory_order_relaxed) - h < min) return nullptr;
    return slots_[h % N].load(std::memory_order_relaxed);
  }

  // Owner: runnext as it is now (a thief may take it at any moment; take_next decides).
  T* peek_next() const noexcept { return runnext_.load(std::memory_order_relaxed); }

  // Owner: takes runnext if it still holds x (false: a thief took it).
  bool take_next(T* x) noexcept {
    return runnext_.compare_exchange_strong(x, nullptr, std::memory_order_acquire,
                                            std::memory_order_relaxed);
  }

  // Owner: makes x runnext and returns the goroutine it displaced (to be pushed), or null.
  // `alone`: the caller knows no other P exists (GOMAXPROCS 1). Then an empty runnext is
  // filled by a plain store, not an exchange: only the owner ever makes runnext non-null, so
  // an empty one stays empty until it writes, and with no other P there is no spinning M whose
  // re-check (proc.cpp, rule 3) needs the store ordered before the caller's wakep() reads.
  // Should GOMAXPROCS grow meanwhile, a new thief's CAS still sees either null or x.
  T* put_next(T* x, bool alone = false) noexcept {
    if (alone && runnext_.load(std::memory_order_relaxed) == nullptr) {
      runnext_.store(x, std::memory_order_release);
      return nullptr;
    }
    return runnext_.exchange(x, std::memory_order_acq_rel);
  }

  // Thief (the caller owns `this`, its own queue, usually empty): steals half of victim's
  // queue, at most as many as fit in this one, and returns one of the stolen items to run (the
  // rest are queued here), or null. The victim's runnext is taken only when steal_next is set
  // and its queue is empty; `before_next_steal` is called first (Go pauses ~3 us there: the
  // victim is probably about to run it).
  template <class Pause>
  T* steal_from(RunQueue& victim, bool steal_next, Pause&& before_next_steal) noexcept {
    std::uint32_t t = tail_.load(std::memory_order_relaxed);
    std::uint32_t room = N - (t - head_.load(std::memory_order_acquire));
    if (room == 0) return nullptr;
    std::uint32_t n = victim.grab(slots_, t, room, steal_next, before_next_steal);
    if (n == 0) return nullptr;
    n--;
    T* x = slots_[(t + n) % N].load(std::memory_order_relaxed);
    if (n == 0) return x;
    tail_.store(t + n, std::memory_order_release);
    return x;
  }

  bool empty() const noexcept {
    // Consistent snapshot: head, tail, runnext, then head again unchanged.
    for (;;) {
      std::uint32_t h = head_.load(std::memory_order_acquire);
      std::uint32_t t = tail_.load(std::memory_order_acquire);
      T* next = runnext_.load(std::memory_order_acquire);
      if (tail_.load(std::memory_order_acquire) == t) return h == t && next == nullptr;
    }
  }

  std::uint32_t size() const noexcept {
    std::uint32_t h = head_.load(std::memory_order_acquire);
    std::uint32_t t = tail_.load(std::memory_order_acquire);
    std::uint32_t n = t - h;
    return (n > N ? 0 : n) + (runnext_.load(std::memory_order_relaxed) != nullptr ? 1 : 0);
  }

 private:
  // Copies up to half of this queue (at most max) into dst ring starting at dst_tail, claims
  // them, returns how many.
  template <class Pause>
  std::uint32_t grab(std::atomic<T*>* dst, std::uint32_t dst_tail, std::uint32_t max,
                     bool steal_next, Pause& before_next_steal) noexcept {
    for (;;) {
      std::uint32_t h = head_.load(std::memory_order_acquire);
      std::uint32_t t = tail_.load(std::memory_order_acquire);  // (A')
      std::uint32_t n = t - h;
      n = n - n / 2;
      if (n == 0) {
        if (steal_next) {
          T* next = runnext_.load(std::memory_order_acquire);
          if (next != nullptr) {
            before_next_steal();
            if (!runnext_.compare_exchange_strong(next, nullptr, std::memory_order_acq_rel,
                                                  std::memory_order_relaxed)) {
              continue;
            }
            dst[dst_tail % N].store(next, std::memory_order_relaxed);
            return 1;
          }
        }
        return 0;
      }
      if (n > N / 2) continue;  // read head and tail inconsistently: retry
      if (n > max) n = max;
      for (std::uint32_t i = 0; i < n; i++) {
        dst[(dst_tail + i) % N].store(slots_[(h + i) % N].load(std::memory_order_relaxed),
                                      std::memory_order_relaxed);
      }
      if (head_.compare_exchange_strong(h, h + n, std::memory_order_acq_rel,
                                        std::memory_order_relaxed)) {  // (B)
        return n;
      }
    }
  }

  alignas(64) std::atomic<std::uint32_t> head_{0};
  alignas(64) std::atomic<std::uint32_t> tail_{0};
  std::atomic<T*> runnext_{nullptr};
  std::atomic<T*> slots_[N] = {};
};

}  // namespace goro::internal
