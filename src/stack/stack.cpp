// stack.cpp - goroutine stack slots.
//
// What it owns: every goroutine stack, from mapping to reuse to release, and the SIGSEGV
// handler that turns a guard-page hit into "goroutine N: stack overflow" (and any other fault
// the application does not handle into a crash report, debug/crash.hpp).
//
// Slots. A slot is `size` bytes of address space (default 256 KiB) mapped with MAP_NORESERVE
// and MADV_NOHUGEPAGE (a transparent huge page would turn each stack into 2 MiB of RSS). The
// kernel commits pages as the goroutine touches them, so a goroutine that uses little stack
// costs one page:
//
//     slot_base                                               slot_base + size = stack_hi
//     | guard page (PROT_NONE) | .............. stack grows down <- | first frames |
//                               ^stack_lo
//
// Default-size slots are carved from slabs (one mapping of up to 64 slots), so a million
// goroutines take thousands of mmap calls, not a million; slabs are never unmapped.
// Non-default sizes get a mapping of their own, unmapped when the goroutine ends.
//
// Reserve at go(), bind at first run. A goroutine gets its slot only when it first runs, on
// the M that runs it, usually the slot the previous goroutine on that P just gave back. A
// burst of spawns that outruns the Ms therefore costs G records, not fresh stack pages. So
// that go() can still fail cleanly when memory cannot be mapped, go() takes a *credit*: the
// right to one slot that already exists in a mapped slab. Credits are counted per size class
// (an atomic) and handed to Ps in batches of 32 (owner-only, no atomics on the fast path); a
// finished goroutine gives its credit back to its P. When no credit is left, go() maps a new
// slab under pool_lock, and an mmap failure becomes std::system_error from go(). Binding
// then never fails.
//
// Guard pages and vm.max_map_count. Where the kernel has guard regions (Linux 6.13+,
// madvise(MADV_GUARD_INSTALL), probed once at start-up) a guard page is a page-table marker:
// no mapping is split, so every slot gets one, and arming it takes the mmap lock only for
// reading (it does not stall the page faults of goroutines starting on other Ms, as the
// mprotect below does: a 100,000-goroutine spawn spent a quarter of its CPU there). Guard
// markers survive the MADV_DONTNEED of releases and trims. Where process_madvise(2) works on
// the calling process (Linux 6.14+), a new slab's guards are installed all at once, one
// system call per 64 slots instead of one per slot (arm_slab). Elsewhere a guard page is an
// mprotect(PROT_NONE) that splits its mapping, costing two of the process's vm.max_map_count
// mappings (65530 by default), which caps guarded stacks near 32k: the failure brpc, folly
// and others hit. Policy there: slots get a guard page while the number of guarded slots
// stays within a budget of (max_map_count - 16384) / 2, leaving 16384 mappings for the rest
// of the process. GORO_STACK_GUARD_BUDGET=<n> caps guarded slots with either kind of guard
// (tests use it to exercise the canary). Past the budget slots
// have no guard page; instead the lowest 64 bytes of the slot are a canary that must stay
// zero, checked whenever the goroutine switches out. Zero costs nothing: untouched memory
// reads as zero without committing a page, so an unguarded slot still costs one page. The
// first unguarded slot prints one warning naming the sysctl to raise. A canary detects an
// overflow after the fact (it may already have damaged the slot below); a guard page stops it
// at the first touch. Either way the process ends with a message, never runs on corrupted.
//
// Caches. A free slot goes to its P's cache (64 entries, owner-only, no lock); overflow moves
// half of that cache to the global pool (under pool_lock). The pool keeps 4096 slots resident
// for good; slots beyond that which the pool did not need for a whole scavenge period
// (500 ms, judged by the pool's low-water mark) are released to the kernel (MADV_DONTNEED
// over runs of neighbouring slots) and remembered by address for reuse. So a burst reuses its
// slots while it lasts and gives them back after it.
//
// Shortage. Credits bound the number of promised slots, not where the free ones lie: a
// goroutine can be stolen to a P whose cache is empty while the free slots sit in other Ps'
// caches. Binding then maps a new slab, and where that fails (the address space is used up,
// RLIMIT_AS) the binding M waits instead of failing, since a free slot exists somewhere
// (credits never exceed slots): it counts itself in stack_slot_waiters, which makes every
// running M move its P's cache to the pool at its next schedule(), moves the idle Ps' caches
// itself, and retries (proc.cpp, wait_for_stack_slot). So go() remains the one place where
// running out of stack memory shows, as std::system_error.
//
// Trimming. A slot whose goroutine recursed deeply keeps those pages. Every 32nd slot that a
// P's cache takes back is tested: mincore(2) on the page 32 KiB below the top; if it is
// resident, everything below that line is released. A deep slot reused over and over by one
// P is caught within 32 reuses, at the cost of about one system call per 32 goroutine exits.
//
// Threads: the P caches and credits are touched only by the P's M (or, for a retired P, under
// sched.lock); everything else is under pool_lock or atomic. The SIGSEGV handler is
// async-signal-safe up to the point where it has printed the goroutine id; it then symbolizes
// the creation site (which allocates) since the process is ending anyway.
//
// Lock order: sched.lock ▸ pool_lock (stack_flush_cache is called under sched.lock).
#include "stack/stack.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <system_error>
#include <vector>

#include "base/platform.hpp"
#include "base/raw_log.hpp"
#include "debug/crash.hpp"

#if defined(GORO_ASAN)
#include <sanitizer/asan_interface.h>
#endif

namespace goro::internal {

struct StackClass {
  std::size_t size;
  std::atomic<std::int64_t> credit{0};   // slots in this class's slabs promised to nobody
  std::vector<std::uintptr_t> live;      // free slots, resident (base | kind); pool_lock
  std::vector<std::uintptr_t> released;  // free slots given back to the kernel; pool_lock
  std::size_t low_water = 0;             // smallest live.size() since the last scavenge
  std::int64_t last_scavenge = 0;
  std::uintptr_t carve_next = 0;  // next uncarved slot in the newest slab
  std::uintptr_t carve_end = 0;
  bool carve_armed = false;  // the newest slab's slots got their guard pages when it was mapped
};

std::atomic<int> stack_slot_waiters{0};

namespace {

constexpr std::size_t kSlabBytes = 16 << 20;  // slots per slab = clamp(16 MiB / size, 1, 64)
constexpr std::size_t kMaxSlabSlots = 64;
constexpr std::size_t kPoolKeep = 4096;
constexpr std::int64_t kScavengePeriodNs = 500'000'000;
constexpr std::size_t kTrimKeep = 32 * 1024;
constexpr std::size_t kCanaryBytes = 64;
constexpr int kCreditBatch = 32;
constexpr std::uintptr_t kKindMask = 0xfff;

std::atomic<std::size_t> default_size{kDefaultStackSize};
std::atomic<StackClass*> default_class{nullptr};

Lock pool_lock;
std::vector<StackClass*>* classes;  // under pool_lock; never shrinks
std::atomic<std::size_t> guarded_slots{0};
std::atomic<std::size_t> unguarded_slots{0};
std::atomic<std::size_t> reserved_bytes{0};
std::atomic<std::int64_t> bound_slots{0};
std::atomic<std::int64_t> cached_slots{0};
std::size_t guard_budget = 0;
bool guard_regions = false;    // written once by stack_init: MADV_GUARD_INSTALL works here
bool batch_guards = false;     // written once by stack_init: so does process_madvise on ourselves
bool budget_from_env = false;  // written once by stack_init: GORO_STACK_GUARD_BUDGET is set
// Linux 6.13's value; older headers do not define it.
constexpr int kMadvGuardInstall = 102;
// PIDFD_SELF_THREAD_GROUP (Linux 6.14): the calling process, without an fd (so a child after
// fork(2) advises its own memory, not its parent's).
constexpr int kPidfdSelf = -10001;
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
    b.str("goro: ").udec(guard_budget);
    if (budget_from_env) {
      b.str(" goroutine stacks have guard pages, the most that GORO_STACK_GUARD_BUDGET allows");
    } else {
      b.str(" goroutine stacks have guard pages, the most that vm.max_map_count (")
          .dec(max_maps)
          .str(") allows");
    }
    b.str(
        "; further stacks have no guard page and overflow is detected by a canary checked at "
        "each switch.");
    if (!budget_from_env) {
      b.str(" To keep guard pages, raise the limit: sysctl -w vm.max_map_count=<higher>");
    }
    b.str("\n");
    b.flush();
  }
  return false;
}

// Puts a guard page at the bottom of a new slot if the budget allows; returns its kind.
std::uint8_t arm_slot(std::uintptr_t base, bool custom) {
  if (take_guard()) {
    void* page = reinterpret_cast<void*>(base);
    if (guard_regions ? ::madvise(page, page_size(), kMadvGuardInstall) == 0
                      : ::mprotect(page, page_size(), PROT_NONE) == 0) {
      return custom ? kStackCustom : kStackGuarded;
    }
    // Out of mappings after all (the rest of the process used more than we left it).
    guarded_slots.fetch_sub(1, std::memory_order_relaxed);
  }
  unguarded_slots.fetch_add(1, std::memory_order_relaxed);
  return custom ? kStackCustomCanary : kStackCanary;
}

void set_stack_fields(G* g, std::uintptr_t base, std::size_t size, std::uint8_t kind) {
  g->slot_base = base;
  g->slot_size = size;
  g->stack_kind = kind;
  bool guarded = kind == kStackGuarded || kind == kStackCustom;
  g->stack_lo = base + (guarded ? page_size() : kCanaryBytes);
  g->stack_hi = base + size;
#if defined(GORO_ASAN)
  // Frames of the goroutine that last used this slot never returned: clear their poisoning.
  ASAN_UNPOISON_MEMORY_REGION(reinterpret_cast<void*>(g->stack_lo), g->stack_hi - g->stack_lo);
#endif
}

// Releases everything below the top kTrimKeep bytes if the slot's goroutine went that deep.
void trim_if_deep(std::uintptr_t e, std::size_t size) {
  std::uintptr_t base = e & ~kKindMask;
  std::size_t page = page_size();
  std::uintptr_t line = (base + size - kTrimKeep) & ~(page - 1);
  std::uintptr_t lo = base + page;  // keep the guard page (or canary) as it is
  if (line <= lo + page) return;
  unsigned char vec = 0;
  if (::mincore(reinterpret_cast<void*>(line - page), page, &vec) != 0 || (vec & 1) == 0) return;
  ::madvise(reinterpret_cast<void*>(lo), line - lo, MADV_DONTNEED);
}

// Under pool_lock: the class for a size, created on first use.
StackClass* class_for(std::size_t size) {
  for (StackClass* c : *classes) {
    if (c->size == size) return c;
  }
  auto* c = new StackClass;
  c->size = size;
  c->last_scavenge = nanotime();
  classes->push_back(c);
  return c;
}

StackClass* class_for_locked(std::size_t size) {
  LockGuard hold(pool_lock);
  return class_for(size);
}

// Installs the guard pages of a whole new slab in one process_madvise(2) where the kernel
// allows it, instead of one madvise per slot as the slots are first used (a 100,000-timer
// storm made 45,000 of those system calls, the largest share of its CPU time beyond Go's).
// Only where every slot gets a guard anyway (guard regions, no GORO_STACK_GUARD_BUDGET).
// False: the slots are armed one by one (arm_fresh); a partial success leaves some guards
// installed, which arming them again keeps.
bool arm_slab(std::uintptr_t base, std::size_t nslots, std::size_t size) {
  if (!batch_guards || budget_from_env) return false;
  iovec iov[kMaxSlabSlots];
  for (std::size_t i = 0; i < nslots; i++) {
    iov[i].iov_base = reinterpret_cast<void*>(base + i * size);
    iov[i].iov_len = page_size();
  }
  long r = ::syscall(SYS_process_madvise, kPidfdSelf, iov, nslots, kMadvGuardInstall, 0);
  if (r != static_cast<long>(nslots * page_size())) return false;
  guarded_slots.fetch_add(nslots, std::memory_order_relaxed);
  return true;
}

// A slab mapped (and its guards installed) outside pool_lock: both are system calls that
// spawners and exiting goroutines on other Ms would otherwise wait for.
struct Slab {
  std::uintptr_t base;
  std::size_t nslots;
  bool armed;
};

// Maps a new slab of `size`-byte slots. Throws.
Slab map_slab(std::size_t size) {
  std::size_t nslots = std::clamp<std::size_t>(kSlabBytes / size, 1, kMaxSlabSlots);
  std::size_t bytes = nslots * size;
  void* mem = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) {
    throw std::system_error(errno, std::generic_category(),
                            "goro::go: cannot map goroutine stacks");
  }
  ::madvise(mem, bytes, MADV_NOHUGEPAGE);
  reserved_bytes.fetch_add(bytes, std::memory_order_relaxed);
  auto base = reinterpret_cast<std::uintptr_t>(mem);
  return Slab{base, nslots, arm_slab(base, nslots, size)};
}

// Under pool_lock: makes s c's slab being carved and adds its slots to c's credit.
void add_slab(StackClass* c, const Slab& s) {
  // Slots left uncarved in the previous slab stay counted in the credit; carve them first by
  // keeping them in `released` (they are untouched, i.e. already "released").
  for (std::uintptr_t a = c->carve_next; a < c->carve_end; a += c->size) {
    c->released.push_back(a | (c->carve_armed ? std::uintptr_t{kStackGuarded} : kKindMask));
  }
  c->carve_next = s.base;
  c->carve_end = s.base + s.nslots * c->size;
  c->carve_armed = s.armed;
  c->credit.fetch_add(static_cast<std::int64_t>(s.nslots), std::memory_order_release);
}

// Takes up to `want` credits from c, mapping a slab if there are none. Throws. Two spawners
// that find no credit at once both map one; the second slab's slots are credit for later
// (address space only: untouched slots cost no memory).
int take_credits(StackClass* c, int want) {
  for (;;) {
    std::int64_t avail = c->credit.load(std::memory_order_relaxed);
    while (avail > 0) {
      std::int64_t n = avail < want ? avail : want;
      if (c->credit.compare_exchange_weak(avail, avail - n, std::memory_order_acquire,
                                          std::memory_order_relaxed)) {
        return static_cast<int>(n);
      }
    }
    Slab s = map_slab(c->size);
    LockGuard hold(pool_lock);
    add_slab(c, s);
  }
}

// Under pool_lock: releases the slots the pool did not need lately. Slots that stayed in the
// pool through a whole scavenge period (its low-water mark) beyond kPoolKeep go back to the
// kernel, oldest first, coalescing neighbours into one madvise (slots of one slab are
// contiguous); guard pages inside a run are PROT_NONE mappings that MADV_DONTNEED passes over.
void scavenge(StackClass* c, std::int64_t now) {
  std::size_t idle = std::min(c->low_water, c->live.size());
  if (idle > kPoolKeep) {
    std::size_t n = idle - kPoolKeep;
    std::vector<std::uintptr_t> v(c->live.begin(),
                                  c->live.begin() + static_cast<std::ptrdiff_t>(n));
    c->live.erase(c->live.begin(), c->live.begin() + static_cast<std::ptrdiff_t>(n));
    cached_slots.fetch_sub(static_cast<std::int64_t>(n), std::memory_order_relaxed);
    std::sort(v.begin(), v.end());
    for (std::size_t i = 0; i < v.size();) {
      std::uintptr_t first = v[i] & ~kKindMask;
      std::uintptr_t end = first + c->size;
      std::size_t j = i + 1;
      while (j < v.size() && (v[j] & ~kKindMask) == end) {
        end += c->size;
        j++;
      }
      std::uintptr_t lo = first + page_size();  // the first guard page (or canary) stays
      ::madvise(reinterpret_cast<void*>(lo), end - lo, MADV_DONTNEED);
      i = j;
    }
    c->released.insert(c->released.end(), v.begin(), v.end());
  }
  c->low_water = c->live.size();
  c->last_scavenge = now;
}

// Under pool_lock: a free slot into the pool.
void pool_put(StackClass* c, std::uintptr_t e) {
  c->live.push_back(e);
  cached_slots.fetch_add(1, std::memory_order_relaxed);
  if (c->live.size() > kPoolKeep) {
    std::int64_t now = nanotime();
    if (now - c->last_scavenge > kScavengePeriodNs) scavenge(c, now);
  }
}

// Under pool_lock: a free slot from the pool, released slots or the slab being carved, or 0
// when none is there and no slab can be mapped (the caller's credit then guarantees a free
// slot in some other P's cache; see "Shortage" above).
std::uintptr_t pool_get(StackClass* c) {
  if (!c->live.empty()) {
    std::uintptr_t e = c->live.back();
    c->live.pop_back();
    c->low_water = std::min(c->low_water, c->live.size());
    cached_slots.fetch_sub(1, std::memory_order_relaxed);
    return e;
  }
  std::uintptr_t e;
  if (!c->released.empty()) {
    e = c->released.back();
    c->released.pop_back();
  } else {
    if (c->carve_next == c->carve_end) {
      // Every free slot sits in some other P's cache. Map more (credits only bound the total
      // of promised slots, not where the free ones lie).
      try {
        add_slab(c, map_slab(c->size));
      } catch (const std::system_error&) {
        return 0;
      }
    }
    // Never used: armed with its slab, or by the caller (arm_fresh).
    e = c->carve_next | (c->carve_armed ? std::uintptr_t{kStackGuarded} : kKindMask);
    c->carve_next += c->size;
  }
  return e;
}

// Gives a slot fresh from its slab (kind kKindMask) its guard page or canary. Outside
// pool_lock: a system call (an mprotect also takes the mmap lock for writing and splits a
// mapping), which a spawn burst on another P would otherwise spend waiting for pool_lock.
std::uintptr_t arm_fresh(std::uintptr_t e) {
  if ((e & kKindMask) != kKindMask) return e;
  std::uintptr_t base = e & ~kKindMask;
  return base | arm_slot(base, false);
}

bool is_custom(std::uint8_t kind) {
  return kind == kStackCustom || kind == kStackCustomCanary;
}

// The SIGSEGV/SIGBUS handler: a fault in the current goroutine's guard page is a stack
// overflow; anything else goes to the previous handler, or, where that is the default action,
// is reported (debug/crash.hpp) before the process ends with the signal.
void segv_handler(int sig, siginfo_t* info, void* uctx) {
  auto addr = reinterpret_cast<std::uintptr_t>(info->si_addr);
  G* g = getg();
  if (g != nullptr && g->slot_base != 0 && addr >= g->slot_base && addr < g->stack_lo) {
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
  // Default action: reinstall it, report, and return; the faulting instruction faults again
  // and the kernel ends the process with the usual signal (and core dump).
  ::signal(sig, SIG_DFL);
  crash_report(sig, info, uctx);
}

// Whether madvise(MADV_GUARD_INSTALL) works on an anonymous private mapping (Linux 6.13+;
// EINVAL before). A probe mapping of its own, so that no slot depends on the answer. Also
// sets batch_guards: whether process_madvise(2) accepts it for the calling process
// (PIDFD_SELF_THREAD_GROUP, Linux 6.14+).
bool probe_guard_regions() {
  std::size_t page = page_size();
  void* mem = ::mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) return false;
  bool ok = ::madvise(mem, page, kMadvGuardInstall) == 0;
  if (ok) {
    iovec iov{mem, page};
    batch_guards = ::syscall(SYS_process_madvise, kPidfdSelf, &iov, 1, kMadvGuardInstall, 0) ==
                   static_cast<long>(page);
  }
  ::munmap(mem, 2 * page);
  return ok;
}

}  // namespace

std::size_t stack_default_size() noexcept {
  return default_size.load(std::memory_order_relaxed);
}

void stack_set_default_size(std::size_t bytes) {
  std::size_t size = round_up(bytes, page_size());
  default_size.store(size, std::memory_order_relaxed);
  if (classes != nullptr) default_class.store(class_for_locked(size), std::memory_order_release);
}

void stack_init() noexcept {
  classes = new std::vector<StackClass*>;
  default_class.store(class_for_locked(default_size.load()), std::memory_order_release);
  long max_maps = 65530;
  if (FILE* f = std::fopen("/proc/sys/vm/max_map_count", "r")) {
    if (std::fscanf(f, "%ld", &max_maps) != 1) max_maps = 65530;
    std::fclose(f);
  }
  guard_regions = probe_guard_regions();
  guard_budget = guard_regions      ? SIZE_MAX
                 : max_maps > 16384 ? static_cast<std::size_t>(max_maps - 16384) / 2
                                    : 0;
  if (const char* env = std::getenv("GORO_STACK_GUARD_BUDGET"); env != nullptr && *env != 0) {
    char* end = nullptr;
    unsigned long v = std::strtoul(env, &end, 10);
    if (end != nullptr && *end == 0) {
      guard_budget = v;
      budget_from_env = true;
    }
  }
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = segv_handler;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  crash_prepare();
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

void stack_exit_thread(M* m) noexcept {
  if (m->altstack == nullptr) return;
  stack_t ss{};
  ss.ss_flags = SS_DISABLE;
  ::sigaltstack(&ss, nullptr);
  ::munmap(m->altstack, kAltStackSize);
  m->altstack = nullptr;
}

void stack_reserve(LocalCache* p, G* g, std::size_t size) {
  StackClass* c = default_class.load(std::memory_order_acquire);
  if (size == 0 || round_up(size, page_size()) == c->size) {
    g->slot_size = c->size;
    g->slot_base = 0;
    if (p->credit_class != c) {
      if (p->credit_class != nullptr && p->credit > 0) {
        p->credit_class->credit.fetch_add(p->credit, std::memory_order_release);
      }
      p->credit_class = c;
      p->credit = 0;
    }
    if (p->credit == 0) p->credit = take_credits(c, kCreditBatch);
    p->credit--;
    return;
  }
  size = round_up(size, page_size());
  void* mem = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) {
    throw std::system_error(errno, std::generic_category(),
                            "goro::go: cannot map a goroutine stack");
  }
  ::madvise(mem, size, MADV_NOHUGEPAGE);
  reserved_bytes.fetch_add(size, std::memory_order_relaxed);
  auto base = reinterpret_cast<std::uintptr_t>(mem);
  set_stack_fields(g, base, size, arm_slot(base, true));
}

void stack_unreserve(LocalCache* p, G* g) noexcept {
  if (g->slot_base != 0 && is_custom(g->stack_kind)) {
    if (g->stack_kind == kStackCustom) {
      guarded_slots.fetch_sub(1, std::memory_order_relaxed);
    } else {
      unguarded_slots.fetch_sub(1, std::memory_order_relaxed);
    }
    reserved_bytes.fetch_sub(g->slot_size, std::memory_order_relaxed);
    ::munmap(reinterpret_cast<void*>(g->slot_base), g->slot_size);
    g->slot_base = 0;
    return;
  }
  // A default-class credit.
  if (p->credit_class != nullptr && p->credit_class->size == g->slot_size) {
    if (++p->credit > 2 * kCreditBatch) {
      p->credit_class->credit.fetch_add(kCreditBatch, std::memory_order_release);
      p->credit -= kCreditBatch;
    }
    return;
  }
  class_for_locked(g->slot_size)->credit.fetch_add(1, std::memory_order_release);
}

bool stack_bind(LocalCache* p, G* g) noexcept {
  if (g->slot_base != 0) {  // custom size: bound at go() time
    bound_slots.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  std::uintptr_t e = 0;
  if (p->nslots > 0 && p->slot_class->size == g->slot_size) {
    e = p->slots[--p->nslots];
    cached_slots.fetch_sub(1, std::memory_order_relaxed);
  } else {
    LockGuard hold(pool_lock);
    StackClass* c = class_for(g->slot_size);
    if (p->nslots == 0) {
      // Refill half of p's cache in the same lock hold.
      p->slot_class = c;
      while (p->nslots < kStackCacheSize / 2 && !c->live.empty()) {
        p->slots[p->nslots++] = c->live.back();
        c->live.pop_back();
      }
      c->low_water = std::min(c->low_water, c->live.size());
    }
    if (p->nslots > 0 && p->slot_class == c) {
      e = p->slots[--p->nslots];
      cached_slots.fetch_sub(1, std::memory_order_relaxed);
    } else {
      e = pool_get(c);
      if (e == 0) return false;
    }
  }
  e = arm_fresh(e);
  bound_slots.fetch_add(1, std::memory_order_relaxed);
  set_stack_fields(g, e & ~kKindMask, g->slot_size, static_cast<std::uint8_t>(e & kKindMask));
  return true;
}

void stack_release(LocalCache* p, G* g) noexcept {
  bound_slots.fetch_sub(1, std::memory_order_relaxed);
  if (is_custom(g->stack_kind)) {
    stack_unreserve(p, g);
    return;
  }
  std::uintptr_t e = g->slot_base | g->stack_kind;
  g->slot_base = 0;
  stack_unreserve(p, g);  // the credit
  cached_slots.fetch_add(1, std::memory_order_relaxed);
  if ((p->slot_class == nullptr || p->slot_class->size == g->slot_size)) {
    if ((++p->slot_puts & 31) == 0) trim_if_deep(e, g->slot_size);
    if (p->slot_class == nullptr) p->slot_class = class_for_locked(g->slot_size);
    if (p->nslots < kStackCacheSize) {
      p->slots[p->nslots++] = e;
      return;
    }
    // Full: move half to the pool together with this one.
    LockGuard hold(pool_lock);
    cached_slots.fetch_sub(1 + kStackCacheSize / 2, std::memory_order_relaxed);
    pool_put(p->slot_class, e);
    for (int i = 0; i < kStackCacheSize / 2; i++) pool_put(p->slot_class, p->slots[--p->nslots]);
    return;
  }
  LockGuard hold(pool_lock);
  cached_slots.fetch_sub(1, std::memory_order_relaxed);
  pool_put(class_for(g->slot_size), e);
}

void stack_flush_cache(LocalCache* p) noexcept {
  LockGuard hold(pool_lock);
  while (p->nslots > 0) {
    cached_slots.fetch_sub(1, std::memory_order_relaxed);
    pool_put(p->slot_class, p->slots[--p->nslots]);
  }
  if (p->credit_class != nullptr && p->credit > 0) {
    p->credit_class->credit.fetch_add(p->credit, std::memory_order_release);
  }
  p->credit = 0;
}

StackStats stack_stats() noexcept {
  StackStats s{};
  s.bound = static_cast<std::size_t>(bound_slots.load(std::memory_order_relaxed));
  s.cached = static_cast<std::size_t>(cached_slots.load(std::memory_order_relaxed));
  s.guarded = guarded_slots.load(std::memory_order_relaxed);
  s.unguarded = unguarded_slots.load(std::memory_order_relaxed);
  s.reserved_bytes = reserved_bytes.load(std::memory_order_relaxed);
  s.guard_regions = guard_regions;
  return s;
}

}  // namespace goro::internal
