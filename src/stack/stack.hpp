// stack.hpp - goroutine stack slots: reservation, binding, caching, trimming, overflow
// detection. The design essay is at the top of stack.cpp.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "sched/proc.hpp"

namespace goro::internal {

inline constexpr std::size_t kMinStackSize = 16 * 1024;
inline constexpr std::size_t kMaxStackSize = std::size_t{1} << 30;
inline constexpr std::size_t kDefaultStackSize = 256 * 1024;
// Each M's alternate signal stack (its own mapping; symbolizing in the overflow handler needs
// room). goro::debug::find_leaks skips exactly this range: the kernel may merge the mapping
// with a neighbouring anonymous one (a malloc arena), which must still be scanned.
inline constexpr std::size_t kAltStackSize = 1024 * 1024;

// The default slot size for new goroutines.
std::size_t stack_default_size() noexcept;
void stack_set_default_size(std::size_t bytes);  // validated by the caller

// Reserves a slot for a new goroutine (go() time) and records its size in g->slot_size:
// default-size slots by taking a credit (mapping a new slab when none is left), other sizes
// by mapping and binding the goroutine's own slot at once. Throws std::system_error when the
// memory cannot be mapped. lc is the caller's local cache.
void stack_reserve(LocalCache* lc, G* g, std::size_t size);
// Gives back what stack_reserve took, for a goroutine that will never run.
void stack_unreserve(LocalCache* lc, G* g) noexcept;

// Binds a slot to g before it first runs (default size: from lc's slots, the pool or a new
// slab) and sets g's stack fields. Returns false, changing nothing, when none of those has a
// slot and no slab can be mapped: the free slot g's credit guarantees is then in another
// LocalCache (see "Shortage" in stack.cpp).
[[nodiscard]] bool stack_bind(LocalCache* lc, G* g) noexcept;
// Returns a finished goroutine's slot and credit.
void stack_release(LocalCache* lc, G* g) noexcept;

// Moves lc's cached slots and credits to the global pool (a retired P, an exiting thread, a
// P whose M sees stack_slots_wanted()).
void stack_flush_cache(LocalCache* lc) noexcept;

// The number of Ms waiting for a free slot after stack_bind failed; while it is non-zero,
// every M flushes its P's cache at its next schedule().
extern std::atomic<int> stack_slot_waiters;
inline bool stack_slots_wanted() noexcept {
  return stack_slot_waiters.load(std::memory_order_relaxed) != 0;
}

// Process set-up: map budget, SIGSEGV handler. Called once at runtime start.
void stack_init() noexcept;
// Per-M set-up: the alternate signal stack the overflow handler runs on.
void stack_init_thread(M* m) noexcept;
// Undoes stack_init_thread on an M whose thread is about to exit.
void stack_exit_thread(M* m) noexcept;

// Whether g's canary is intact: for slots without a guard page, the lowest 64 bytes of the
// slot must still be zero (see stack.cpp). Checked whenever a goroutine switches out.
inline bool stack_canary_ok(const G* g) noexcept {
  if (g->stack_kind != kStackCanary && g->stack_kind != kStackCustomCanary) return true;
  const auto* w = reinterpret_cast<const std::uint64_t*>(g->slot_base);
  std::uint64_t any = 0;
  for (int i = 0; i < 8; i++) any |= w[i];
  return any == 0;
}

struct StackStats {
  std::size_t bound;           // slots bound to goroutines that have started
  std::size_t cached;          // free slots kept resident in P caches and the pool
  std::size_t guarded;         // slots with a guard page
  std::size_t unguarded;       // slots with a canary only
  std::size_t reserved_bytes;  // virtual bytes of all slots
  bool guard_regions;          // guard pages are MADV_GUARD_INSTALL markers (no budget)
};
StackStats stack_stats() noexcept;

}  // namespace goro::internal
