// stack.cpp - goroutine stack slots.
//
// What it owns: every goroutine stack, from mapping to reuse to release, and the SIGSEGV
// handler that turns a guard-page hit into "goroutine N: stack overflow".
//
// Slots. A slot is `size` bytes of address space (default 256 KiB) mapped with MAP_NORESERVE
// and MADV_NOHUGEPAGE (a transparent huge page would turn each stack into 2 MiB of RSS). The
// kernel commits pages as the goroutine touches them. The G record lives at the top of its
// slot, a small closure just below it, and the stack grows down from there, so a goroutine
// that uses little stack costs exactly one page:
//
//     slot_base                                                     slot_base + size
//     | guard page (PROT_NONE) | ......... stack grows down <- | closure | G header |
//                               ^stack_lo                                ^stack_hi
//
// Default-size slots are carved from slabs (one mapping of up to 64 slots), so a million
// goroutines take thousands of mmap calls, not a million; slabs are never unmapped.
// Non-default sizes get a mapping of their own, unmapped when the goroutine ends.
//
// Guard pages and vm.max_map_count. Each guard page splits its mapping, costing two of the
// process's vm.max_map_count mappings (65530 by default), which caps guarded stacks near 32k:
// the failure brpc, folly and others hit. Policy: slots get a guard page while the number of
// guarded slots stays within a budget of (max_map_count - 16384) / 2, leaving 16384 mappings
// for the rest of the process (GORO_STACK_GUARD_BUDGET overrides it). Past the budget slots
// have no guard page; instead the lowest 64 bytes of the slot are a canary that must stay
// zero, checked whenever the goroutine switches out. Zero costs nothing: untouched memory
// reads as zero without committing a page, so an unguarded slot still costs one page. The
// first unguarded slot prints one warning naming the sysctl to raise. A canary detects an
// overflow after the fact (it may already have damaged the slot below); a guard page stops it
// at the first touch. Either way the process ends with a message, never runs on corrupted.
//
// Caches. A dead G keeps its slot: it goes to its P's cache (64 entries, owner-only, no lock),
// and overflow moves half of that cache to the global pool (under pool_lock). The pool keeps
// 4096 slots resident for good; slots beyond that which the pool did not need for a whole
// scavenge period (500 ms, judged by the pool's low-water mark) are released to the kernel
// (MADV_DONTNEED over runs of neighbouring slots, headers included) and remembered by address
// for reuse. So a burst reuses its slots while it lasts and gives them back after it.
//
// Trimming. A slot whose goroutine recursed deeply keeps those pages. On every 32nd reuse
// of a slot (counted per slot, wherever it is cached), the page 32 KiB below the top is tested
// with mincore(2); if it is resident, everything below that line is released. So one
// deep recursion pins its memory for at most 32 short goroutines, and the check costs about
// one system call per 32 goroutine exits.
//
// Threads: stack_get/stack_put run on the goroutine's M (P cache: owner only) or a plain
// thread (global pool: pool_lock). The SIGSEGV handler is async-signal-safe up to the point
// where it has printed the goroutine id; it then symbolizes the creation site (which
// allocates) since the process is ending anyway.
//
// Lock order: sched.lock ▸ pool_lock (stack_flush_cache is called under sched.lock).
#include "stack/stack.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <system_error>
#include <unordered_set>
#include <vector>

#include "base/platform.hpp"
#include "base/raw_log.hpp"

#if defined(GORO_ASAN)
#include <sanitizer/asan_interface.h>
#endif

namespace goro::internal {

namespace {

constexpr std::size_t kSlabBytes = 16 << 20;  // slots per slab = max(1, 16 MiB / size), max 64
constexpr std::size_t kPoolKeep = 4096;
constexpr std::size_t kTrimKeep = 32 * 1024;
constexpr std::int64_t kScavengePeriodNs = 500'000'000;
constexpr std::size_t kCanaryBytes = 64;
constexpr std::size_t kAltStackSize = 128 * 1024;

std::atomic<std::size_t> default_size{kDefaultStackSize};

struct Slab {
  std::uintptr_t base;
  std::size_t slot_size;
  std::size_t nslots;
  std::size_t carved;  // slots handed out so far
};

struct SizeClass {
  std::size_t size;
  std::vector<G*> live;                  // dead Gs with resident headers
  std::vector<std::uintptr_t> released;  // slot base | kind, header released to the kernel
  std::vector<std::uintptr_t> pending;   // slot base | kind, being released in a batch
  std::size_t low_water = 0;             // smallest live.size() since the last scavenge
  std::int64_t last_scavenge = 0;
  Slab* carving = nullptr;               // slab with uncarved slots left
};

Lock pool_lock;
std::vector<Slab*>* slabs;             // under pool_lock
std::vector<SizeClass*>* classes;      // under pool_lock
std::unordered_set<G*>* custom_slots;  // under pool_lock
std::atomic<std::size_t> guarded_slots{0};
std::atomic<std::size_t> unguarded_slots{0};
std::atomic<std::size_t> reserved_bytes{0};
std::atomic<std::int64_t> cached_slots{0};
std::atomic<std::int64_t> used_slots{0};
std::size_t guard_budget = 0;
std::atomic<bool> warned_unguarded{false};
struct sigaction old_segv, old_bus;

std::size_t round_up(std::size_t n, std::size_t a) {
  return (n + a - 1) / a * a;
}

// Decides whether a new slot gets a guard page, counting it. Warns once when we run out.
bool take_guard() {
  std::size_t n = guarded_slots.load(std::memory_order_relaxed);
  while (n < guard_budget) {
    if (guarded_slots.compare_exchange_weak(n, n + 1, std::memory_order_relaxed)) return true;
  }
  if (!warned_unguarded.exchange(true)) {
    long max_maps = 0;
    if (FILE* f = std::fopen("/proc/sys/vm/max_map_count", "r")) {
      if (std::fscanf(f, "%ld", &max_maps) != 1) max_maps = 0;
      std::fclose(f);
    }
    RawBuf b;
    b.str("goro: ")
        .udec(guard_budget)
        .str(" goroutine stacks have guard pages, the most that vm.max_map_count (")
        .dec(max_maps)
        .str(
            ") allows; further stacks have no guard page and overflow is detected by a canary "
            "checked at each switch. To keep guard pages, raise the limit: "
            "sysctl -w vm.max_map_count=<higher>\n");
    b.flush();
  }
  return false;
}

void give_back_guard(std::uint8_t kind) {
  if (kind == kStackGuarded || kind == kStackCustom) {
    guarded_slots.fetch_sub(1, std::memory_order_relaxed);
  } else {
    unguarded_slots.fetch_sub(1, std::memory_order_relaxed);
  }
}

// Lays a fresh G over the header area of a slot and sets its stack fields.
G* init_header(std::uintptr_t base, std::size_t size, std::uint8_t kind, std::uint32_t reuses) {
  std::size_t header = round_up(sizeof(G), 64);
  auto* g = ::new (reinterpret_cast<void*>(base + size - header)) G;
  g->slot_base = base;
  g->slot_size = size;
  g->stack_kind = kind;
  g->reuses = reuses;
  bool guarded = kind == kStackGuarded || kind == kStackCustom;
  g->stack_lo = base + (guarded ? page_size() : kCanaryBytes);
  g->stack_hi = base + size - header;
#if defined(GORO_ASAN)
  // Frames of the goroutine that last used this slot never returned: clear their poisoning.
  ASAN_UNPOISON_MEMORY_REGION(reinterpret_cast<void*>(g->stack_lo), g->stack_hi - g->stack_lo);
#endif
  return g;
}

// Reuses a cached G: a fresh record, same slot.
G* reinit(G* g) {
  return init_header(g->slot_base, g->slot_size, g->stack_kind, g->reuses + 1);
}

// Releases everything below the top kTrimKeep bytes if the goroutine went that deep.
void trim_if_deep(G* g) {
  std::size_t page = page_size();
  std::uintptr_t line = (g->stack_hi - kTrimKeep) & ~(page - 1);
  if (line <= g->stack_lo + page) return;
  unsigned char vec = 0;
  if (::mincore(reinterpret_cast<void*>(line - page), page, &vec) != 0 || (vec & 1) == 0) return;
  std::uintptr_t lo = g->stack_lo & ~(page - 1);
  ::madvise(reinterpret_cast<void*>(lo), line - lo, MADV_DONTNEED);
}

SizeClass* size_class(std::size_t size) {
  for (SizeClass* c : *classes) {
    if (c->size == size) return c;
  }
  auto* c = new SizeClass{size, {}, {}, {}, 0, nanotime(), nullptr};
  classes->push_back(c);
  return c;
}

// Under pool_lock: a G for a default-size-class slot from the pool, released slots or a slab.
G* pool_get(SizeClass* c) {
  if (!c->live.empty()) {
    G* g = c->live.back();
    c->live.pop_back();
    cached_slots.fetch_sub(1, std::memory_order_relaxed);
    return reinit(g);
  }
  if (!c->pending.empty()) {
    std::uintptr_t e = c->pending.back();
    c->pending.pop_back();
    return reinit(
        reinterpret_cast<G*>((e & ~std::uintptr_t{0xfff}) + c->size - round_up(sizeof(G), 64)));
  }
  if (!c->released.empty()) {
    std::uintptr_t e = c->released.back();
    c->released.pop_back();
    std::uintptr_t base = e & ~std::uintptr_t{0xfff};
    return init_header(base, c->size, static_cast<std::uint8_t>(e & 0xfff), 0);
  }
  if (c->carving == nullptr || c->carving->carved == c->carving->nslots) {
    std::size_t nslots = kSlabBytes / c->size;
    if (nslots < 1) nslots = 1;
    if (nslots > 64) nslots = 64;
    std::size_t bytes = nslots * c->size;
    void* mem = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) {
      throw std::system_error(errno, std::generic_category(),
                              "goro::go: cannot map goroutine stacks");
    }
    ::madvise(mem, bytes, MADV_NOHUGEPAGE);
    reserved_bytes.fetch_add(bytes, std::memory_order_relaxed);
    c->carving = new Slab{reinterpret_cast<std::uintptr_t>(mem), c->size, nslots, 0};
    slabs->push_back(c->carving);
  }
  Slab* s = c->carving;
  std::uintptr_t base = s->base + s->carved * s->slot_size;
  std::uint8_t kind = kStackCanary;
  if (take_guard()) {
    if (::mprotect(reinterpret_cast<void*>(base), page_size(), PROT_NONE) == 0) {
      kind = kStackGuarded;
    } else {
      // Out of mappings after all (the rest of the process used more than we left it).
      guarded_slots.fetch_sub(1, std::memory_order_relaxed);
    }
  }
  if (kind == kStackCanary) unguarded_slots.fetch_add(1, std::memory_order_relaxed);
  s->carved++;
  return init_header(base, s->slot_size, kind, 0);
}

G* custom_get(std::size_t size) {
  void* mem = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) {
    throw std::system_error(errno, std::generic_category(),
                            "goro::go: cannot map a goroutine stack");
  }
  ::madvise(mem, size, MADV_NOHUGEPAGE);
  std::uint8_t kind = kStackCustomCanary;
  if (take_guard()) {
    if (::mprotect(mem, page_size(), PROT_NONE) == 0) {
      kind = kStackCustom;
    } else {
      guarded_slots.fetch_sub(1, std::memory_order_relaxed);
    }
  }
  if (kind == kStackCustomCanary) unguarded_slots.fetch_add(1, std::memory_order_relaxed);
  reserved_bytes.fetch_add(size, std::memory_order_relaxed);
  G* g = init_header(reinterpret_cast<std::uintptr_t>(mem), size, kind, 0);
  LockGuard hold(pool_lock);
  custom_slots->insert(g);
  return g;
}

// Under pool_lock: releases the pending slots to the kernel, coalescing neighbours (slots of
// one slab are contiguous, so a burst of exits costs one madvise per slab, not per slot).
void flush_release(SizeClass* c) {
  std::vector<std::uintptr_t>& v = c->pending;
  std::sort(v.begin(), v.end());
  std::size_t page = page_size();
  for (std::size_t i = 0; i < v.size();) {
    std::uintptr_t first = v[i] & ~std::uintptr_t{0xfff};
    std::uintptr_t end = first + c->size;
    std::size_t j = i + 1;
    while (j < v.size() && (v[j] & ~std::uintptr_t{0xfff}) == end) {
      end += c->size;
      j++;
    }
    // A guard page at the very bottom stays as it is; guard pages inside the run are
    // PROT_NONE mappings that MADV_DONTNEED passes over harmlessly.
    std::uintptr_t lo = (v[i] & 0xfff) == kStackGuarded ? first + page : first;
    ::madvise(reinterpret_cast<void*>(lo), end - lo, MADV_DONTNEED);
    for (std::size_t k = i; k < j; k++) c->released.push_back(v[k]);
    i = j;
  }
  v.clear();
}

// Under pool_lock: releases the slots the pool did not need lately. Slots that stayed in the
// pool through a whole scavenge period (its low-water mark) beyond kPoolKeep go back to the
// kernel, oldest first; a burst's slots are therefore reused while the burst lasts and
// released soon after it ends, instead of being released and faulted in again mid-burst.
void scavenge(SizeClass* c, std::int64_t now) {
  std::size_t idle = c->low_water < c->live.size() ? c->low_water : c->live.size();
  if (idle > kPoolKeep) {
    std::size_t n = idle - kPoolKeep;
    for (std::size_t i = 0; i < n; i++) {
      G* g = c->live[i];
      c->pending.push_back(g->slot_base | g->stack_kind);
    }
    c->live.erase(c->live.begin(), c->live.begin() + static_cast<std::ptrdiff_t>(n));
    cached_slots.fetch_sub(static_cast<std::int64_t>(n), std::memory_order_relaxed);
    flush_release(c);
  }
  c->low_water = c->live.size();
  c->last_scavenge = now;
}

// Under pool_lock: a dead default-class G into the pool.
void pool_put(G* g) {
  SizeClass* c = size_class(g->slot_size);
  c->live.push_back(g);
  cached_slots.fetch_add(1, std::memory_order_relaxed);
  if (c->live.size() > kPoolKeep) {
    std::int64_t now = nanotime();
    if (now - c->last_scavenge > kScavengePeriodNs) scavenge(c, now);
  }
}

bool is_slab_kind(std::uint8_t kind) {
  return kind == kStackGuarded || kind == kStackCanary;
}

// The SIGSEGV/SIGBUS handler: a fault in the current goroutine's guard page is a stack
// overflow; anything else goes to the previous handler.
void segv_handler(int sig, siginfo_t* info, void* uctx) {
  auto addr = reinterpret_cast<std::uintptr_t>(info->si_addr);
  G* g = getg();
  if (g != nullptr && g->stack_kind != kStackThread && addr >= g->slot_base && addr < g->stack_lo) {
    RawBuf b;
    b.str("goroutine ")
        .udec(g->goid)
        .str(": stack overflow (fault at ")
        .hex(addr)
        .str(", stack of ")
        .udec(g->slot_size)
        .str(" bytes at ")
        .hex(g->slot_base)
        .str(")\n");
    b.flush();
    print_goroutine_header(g, "");
    die();
  }
  struct sigaction* old = sig == SIGBUS ? &old_bus : &old_segv;
  if ((old->sa_flags & SA_SIGINFO) != 0 && old->sa_sigaction != nullptr) {
    old->sa_sigaction(sig, info, uctx);
    return;
  }
  if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
    old->sa_handler(sig);
    return;
  }
  // Default action: reinstall it and return; the faulting instruction faults again and the
  // kernel ends the process with the usual signal (and core dump).
  ::signal(sig, SIG_DFL);
}

}  // namespace

std::size_t stack_default_size() noexcept {
  return default_size.load(std::memory_order_relaxed);
}

void stack_set_default_size(std::size_t bytes) {
  default_size.store(round_up(bytes, page_size()), std::memory_order_relaxed);
}

void stack_init() noexcept {
  slabs = new std::vector<Slab*>;
  classes = new std::vector<SizeClass*>;
  custom_slots = new std::unordered_set<G*>;
  long max_maps = 65530;
  if (FILE* f = std::fopen("/proc/sys/vm/max_map_count", "r")) {
    if (std::fscanf(f, "%ld", &max_maps) != 1) max_maps = 65530;
    std::fclose(f);
  }
  guard_budget = max_maps > 16384 ? static_cast<std::size_t>(max_maps - 16384) / 2 : 0;
  if (const char* env = std::getenv("GORO_STACK_GUARD_BUDGET"); env != nullptr && *env != 0) {
    char* end = nullptr;
    unsigned long v = std::strtoul(env, &end, 10);
    if (end != nullptr && *end == 0) guard_budget = v;
  }
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = segv_handler;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGSEGV, &sa, &old_segv);
  ::sigaction(SIGBUS, &sa, &old_bus);
}

void stack_init_thread(M* m) noexcept {
  void* mem = ::mmap(nullptr, kAltStackSize, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) return;  // no alternate stack: overflows then kill without a message
  stack_t ss;
  ss.ss_sp = mem;
  ss.ss_size = kAltStackSize;
  ss.ss_flags = 0;
  if (::sigaltstack(&ss, nullptr) == 0) m->altstack = mem;
}

G* stack_get(P* p, std::size_t size) {
  std::size_t def = default_size.load(std::memory_order_relaxed);
  size = size == 0 ? def : round_up(size, page_size());
  used_slots.fetch_add(1, std::memory_order_relaxed);
  try {
    if (size != def) return custom_get(size);
    if (p != nullptr) {
      while (p->ngcache > 0) {
        G* g = p->gcache[--p->ngcache];
        if (g->slot_size == size) {
          cached_slots.fetch_sub(1, std::memory_order_relaxed);
          return reinit(g);
        }
        // The default size changed since this slot was cached.
        cached_slots.fetch_sub(1, std::memory_order_relaxed);
        LockGuard hold(pool_lock);
        pool_put(g);
      }
      // Refill half the cache from the pool in one lock hold.
      LockGuard hold(pool_lock);
      SizeClass* c = size_class(size);
      while (p->ngcache < kStackCacheSize / 2 && !c->live.empty()) {
        p->gcache[p->ngcache++] = c->live.back();
        c->live.pop_back();
      }
      if (c->live.size() < c->low_water) c->low_water = c->live.size();
      if (p->ngcache > 0) {
        // Counted as cached still; take one.
        G* g = p->gcache[--p->ngcache];
        cached_slots.fetch_sub(1, std::memory_order_relaxed);
        return reinit(g);
      }
      return pool_get(c);
    }
    LockGuard hold(pool_lock);
    return pool_get(size_class(size));
  } catch (...) {
    used_slots.fetch_sub(1, std::memory_order_relaxed);
    throw;
  }
}

void stack_put(P* p, G* g) noexcept {
  used_slots.fetch_sub(1, std::memory_order_relaxed);
  if (!is_slab_kind(g->stack_kind)) {
    {
      LockGuard hold(pool_lock);
      custom_slots->erase(g);
    }
    give_back_guard(g->stack_kind);
    reserved_bytes.fetch_sub(g->slot_size, std::memory_order_relaxed);
    ::munmap(reinterpret_cast<void*>(g->slot_base), g->slot_size);
    return;
  }
  cached_slots.fetch_add(1, std::memory_order_relaxed);
  if (p != nullptr) {
    if ((g->reuses & 31) == 31) trim_if_deep(g);
    if (p->ngcache < kStackCacheSize) {
      p->gcache[p->ngcache++] = g;
      return;
    }
    // Full: move half to the global pool together with g.
    LockGuard hold(pool_lock);
    cached_slots.fetch_sub(1, std::memory_order_relaxed);
    pool_put(g);
    for (int i = 0; i < kStackCacheSize / 2; i++) {
      cached_slots.fetch_sub(1, std::memory_order_relaxed);
      pool_put(p->gcache[--p->ngcache]);
    }
    return;
  }
  LockGuard hold(pool_lock);
  cached_slots.fetch_sub(1, std::memory_order_relaxed);
  pool_put(g);
}

void stack_flush_cache(P* p) noexcept {
  LockGuard hold(pool_lock);
  while (p->ngcache > 0) {
    cached_slots.fetch_sub(1, std::memory_order_relaxed);
    pool_put(p->gcache[--p->ngcache]);
  }
}

void stack_for_each_g(void (*fn)(G*, void*), void* arg) noexcept {
  if (slabs == nullptr) return;
  LockGuard hold(pool_lock);
  std::size_t header = round_up(sizeof(G), 64);
  for (Slab* s : *slabs) {
    for (std::size_t i = 0; i < s->carved; i++) {
      auto* g = reinterpret_cast<G*>(s->base + (i + 1) * s->slot_size - header);
      std::uint32_t st = g->status.load(std::memory_order_acquire);
      if (st != kGIdle && st != kGDead) fn(g, arg);
    }
  }
  for (G* g : *custom_slots) {
    std::uint32_t st = g->status.load(std::memory_order_acquire);
    if (st != kGIdle && st != kGDead) fn(g, arg);
  }
}

StackStats stack_stats() noexcept {
  StackStats s{};
  s.slots_in_use = static_cast<std::size_t>(used_slots.load(std::memory_order_relaxed));
  s.slots_cached = static_cast<std::size_t>(cached_slots.load(std::memory_order_relaxed));
  s.guarded = guarded_slots.load(std::memory_order_relaxed);
  s.unguarded = unguarded_slots.load(std::memory_order_relaxed);
  s.reserved_bytes = reserved_bytes.load(std::memory_order_relaxed);
  return s;
}

}  // namespace goro::internal
