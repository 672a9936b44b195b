// stack.hpp - goroutine stack slots: allocation, caching, trimming, overflow detection.
// The design essay is at the top of stack.cpp.
#pragma once

#include <cstddef>
#include <cstdint>

#include "sched/proc.hpp"

namespace goro::internal {

inline constexpr std::size_t kMinStackSize = 16 * 1024;
inline constexpr std::size_t kMaxStackSize = std::size_t{1} << 30;
inline constexpr std::size_t kDefaultStackSize = 256 * 1024;
// Bytes at the top of a slot, below the G header, where a small closure is stored.
inline constexpr std::size_t kClosureArea = 512;

// The default slot size for new goroutines.
std::size_t stack_default_size() noexcept;
void stack_set_default_size(std::size_t bytes);  // validated by the caller

// Returns a G at the top of a stack slot of `size` bytes (0 = default), with its stack and
// slot fields set and every other field reset. p is the caller's P (for its cache) or null.
// Throws std::system_error if memory cannot be mapped.
G* stack_get(P* p, std::size_t size);

// Returns a dead G's slot: to p's cache (p may be null), to the global pool, or to the kernel.
void stack_put(P* p, G* g) noexcept;

// Moves all of p's cached slots to the global pool (when p is retired).
void stack_flush_cache(P* p) noexcept;

// Process set-up: map budget, SIGSEGV handler. Called once at runtime start.
void stack_init() noexcept;
// Per-M set-up: the alternate signal stack the overflow handler runs on.
void stack_init_thread(M* m) noexcept;

// Whether g's canary is intact: for slots without a guard page, the lowest 64 bytes of the
// slot must still be zero (see stack.cpp). Checked whenever a goroutine switches out.
inline bool stack_canary_ok(const G* g) noexcept {
  if (g->stack_kind != kStackCanary && g->stack_kind != kStackCustomCanary) return true;
  const auto* w = reinterpret_cast<const std::uint64_t*>(g->slot_base);
  std::uint64_t any = 0;
  for (int i = 0; i < 8; i++) any |= w[i];
  return any == 0;
}

// Calls fn(g, arg) for every G that lives in a stack slot and is not idle (runnable, running,
// waiting or dead-in-cache). Takes the allocator's lock; fn must not start goroutines.
void stack_for_each_g(void (*fn)(G*, void*), void* arg) noexcept;

struct StackStats {
  std::size_t slots_in_use;    // goroutines alive
  std::size_t slots_cached;    // dead, in P caches or the global pool
  std::size_t guarded;         // slots with a guard page
  std::size_t unguarded;       // slots with a canary only
  std::size_t reserved_bytes;  // virtual bytes of all slots
};
StackStats stack_stats() noexcept;

}  // namespace goro::internal
