// sysmon.cpp - the monitor thread and preemption: time slices, cooperative requests, the
// SIGURG handler that diverts a running goroutine into the scheduler, NoPreempt.
//
// sysmon (Go's sysmon in proc.go)
// -------------------------------
// One plain thread, holding no P and running no goroutine, with every signal blocked. It
// sleeps 20 us, doubling after 50 quiet rounds up to 10 ms, and at most 1 ms while some P
// runs a goroutine (so a slice that ends is noticed within about a millisecond; each round
// costs a few microseconds). When every P has been idle for 5 ms it sleeps on
// sched.sysmon_note until pidleget() hands a P out again: an idle process costs nothing. The
// 5 ms, and keeping its back-off across that sleep (Go's sysmon does too), matter for a server
// whose Ps idle for a moment between bursts: sleeping at the first idle round and starting
// over at 20 us after each wake-up cost it ~2,000 sysmon wake-ups a second, and the P that
// woke sysmon a futex call on its way to run a goroutine. Before that sleep it asks the
// deadlock detector (src/debug/deadlock.cpp) to look, which may shorten the sleep to a
// back-off while threads outside the runtime could still act. Each round it stamps
// sched.coarse_now (used for wait durations) and looks at every running P.
//
// Time slices
// -----------
// A P's schedtick moves when its M starts a goroutine on a fresh slice (execute() without
// inheriting: a chain of goroutines readying each other through runnext shares one slice, as
// in Go). sysmon remembers, per P, the tick it last saw and when it first saw it; a P whose
// tick has not moved for forcePreemptNS (10 ms) gets its running goroutine preempted, and
// again every round until the tick moves.
//
// Blocking calls (goro::blocking; protocol in proc.cpp, "Blocking calls")
// ------------------------------------------------------------------------
// A P whose M is inside a blocking call sits in kPSyscall. sysmon gives the call one round
// (>= 20 us) to return; after that it retakes the P (CAS kPSyscall → kPRunning, handoffp) if
// the P has queued work, the global queue has work, or no M is idle or spinning to take new
// work; after 10 ms it retakes it in any case. A retake resets sysmon's back-off to 20 us.
//
// Preemption protocol
// -------------------
//  1. sysmon sets g->preempt on the P's current goroutine (m->curg).
//  2. Cooperative: every runtime entry point is bracketed by EnterRuntime (proc.hpp). When the
//     outermost bracket ends and g->preempt is set, the goroutine yields through preempt_m to
//     the global run queue. Runtime code therefore never migrates halfway through touching
//     its P or holding a Lock.
//  3. Asynchronous (unless GORO_ASYNCPREEMPT=0 or TSan): sysmon sets m->preempt_signal and
//     sends SIGURG to the M's thread (tgkill). The handler, on the thread's alternate stack,
//     consumes m->preempt_signal and checks that the interrupted point is safe:
//       - the thread runs a goroutine (m->curg) that is still asked to yield;
//       - no EnterRuntime or NoPreempt is alive (g->preempt_off == 0) and the goroutine holds
//         no pthread mutex or rwlock (g->oslocks, counted by hook/pthread_hooks.cpp);
//       - the interrupted rsp lies on the goroutine's own stack with room for the register
//         save area (so not on g0, not mid-switch);
//       - the interrupted rip lies in the main executable's code (its executable PT_LOAD
//         segments, recorded at start-up) and not in the runtime's assembly (switches and the
//         preemption stub). Code in shared objects (libc, libstdc++, the vDSO) never is:
//         malloc's locks, stdio's locks and errno's thread are out of reach.
//     If safe, it rewrites the signal context so that, when the handler returns, the
//     goroutine "calls" goro_async_preempt (arch/x86_64): the interrupted rip is stored below
//     the 128-byte red zone and rsp points at it. Otherwise it returns and sysmon asks again
//     at its next round.
//  4. goro_async_preempt saves rflags, all general-purpose registers and the full XSAVE state
//     (vector registers, MXCSR, x87) on the goroutine stack, calls async_preempt_park(), which
//     yields through preempt_m, and once resumed (on any M) restores everything and returns
//     to the interrupted instruction. The signal itself has returned long before, so it is
//     never left blocked.
//
// Signal ownership: if the application installed a SIGURG handler before the runtime started,
// ours chains to it for every SIGURG (Go documents SIGURG as possibly spurious). If the
// application replaces ours later, sysmon notices before its next signal, warns once and
// stops asynchronous preemption (cooperative preemption continues).
//
// Async-signal-safety: the handler reads only the thread's M, its current G and immutable
// start-up tables; it allocates nothing and takes no lock.
//
// Threads: sysmon runs on its own thread; the handler on whatever M it interrupts;
// async_preempt_park on the goroutine.
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cpuid.h>
#include <ucontext.h>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(GORO_TSAN)
// Exported by the TSan runtimes of GCC and Clang (not declared in their public headers).
extern "C" void __tsan_ignore_thread_begin();
#endif

#include "base/lock.hpp"
#include "base/platform.hpp"
#include "base/raw_log.hpp"
#include "debug/leak.hpp"
#include "goro/preempt.hpp"
#include "netpoll/netpoll.hpp"
#include "sched/proc.hpp"

extern "C" {
// arch/x86_64/switch_x86_64_sysv_elf.S: the preemption stub and the bounds of the runtime's
// assembly.
void goro_async_preempt();
extern const char goro_arch_text_begin[];
extern const char goro_arch_text_end[];
// Read by goro_async_preempt: the XSAVE component mask and the save area's size.
__attribute__((visibility("hidden"))) std::uint64_t goro_xsave_mask = 0;
__attribute__((visibility("hidden"))) std::uint64_t goro_xsave_size = 0;
void goro_async_preempt_park();
#if !defined(GORO_TSAN)
extern const int goro_pthread_hooks_anchor;
#endif
}

namespace goro::internal {
namespace {

constexpr std::int64_t kForcePreemptNs = 10'000'000;  // Go's forcePreemptNS
constexpr std::int64_t kMinDelayNs = 20'000;
constexpr std::int64_t kMaxDelayNs = 10'000'000;
constexpr std::int64_t kBusyDelayNs = 1'000'000;
constexpr std::int64_t kNetpollStaleNs = 10'000'000;
// How long every P must have stayed idle before sysmon sleeps until pidleget wakes it.
constexpr std::int64_t kDeepIdleNs = 5'000'000;
// Stack the diversion needs below the interrupted rsp besides the XSAVE area: red zone, saved
// registers, alignment, and the frames of async_preempt_park down to the switch.
constexpr std::uintptr_t kPreemptStackSlack = 8192;

struct Counters {
  std::atomic<std::uint64_t> requested{0};
  std::atomic<std::uint64_t> cooperative{0};
  std::atomic<std::uint64_t> async{0};
  std::atomic<std::uint64_t> signals{0};
  std::atomic<std::uint64_t> handoffs{0};
};
Counters counters;

bool sysmon_enabled = true;
std::atomic<bool> async_enabled{false};
struct sigaction prev_sigurg {};
bool chain_prev = false;

// Executable ranges of the main program, set once before the handler is installed.
struct Range {
  std::uintptr_t lo, hi;
};
constexpr int kMaxRanges = 8;
Range text_ranges[kMaxRanges];
int ntext_ranges = 0;

bool env_is_zero(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && std::strcmp(v, "0") == 0;
}

[[maybe_unused]] int collect_main_text(dl_phdr_info* info, std::size_t, void*) {
  // The first object reported is the main program.
  for (int i = 0; i < info->dlpi_phnum && ntext_ranges < kMaxRanges; i++) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD || (ph.p_flags & PF_X) == 0) continue;
    std::uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
    text_ranges[ntext_ranges++] = Range{lo, lo + ph.p_memsz};
  }
  return 1;  // stop after the main program
}

bool pc_preemptible(std::uintptr_t pc) {
  if (pc >= reinterpret_cast<std::uintptr_t>(goro_arch_text_begin) &&
      pc < reinterpret_cast<std::uintptr_t>(goro_arch_text_end)) {
    return false;
  }
  for (int i = 0; i < ntext_ranges; i++) {
    if (pc >= text_ranges[i].lo && pc < text_ranges[i].hi) return true;
  }
  return false;
}

// XSAVE support and the area size for the components the OS enabled (CPUID leaf 0xD).
[[maybe_unused]] bool init_xsave() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(1, &a, &b, &c, &d) == 0 || (c & (1u << 27)) == 0) return false;  // OSXSAVE
  std::uint32_t lo = 0, hi = 0;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  std::uint64_t xcr0 = lo | (static_cast<std::uint64_t>(hi) << 32);
  // PKRU (bit 9) is the thread's memory-protection-key state, not the goroutine's.
  goro_xsave_mask = xcr0 & ~(std::uint64_t{1} << 9);
  if (__get_cpuid_count(0xD, 0, &a, &b, &c, &d) == 0 || b < 576) return false;
  goro_xsave_size = (b + 63) & ~std::uint64_t{63};
  return true;
}

void try_async_preempt(M* m, ucontext_t* uc) {
  G* gp = m->curg.load(std::memory_order_relaxed);
  if (gp == nullptr || !gp->preempt.load(std::memory_order_relaxed)) return;
  if (gp->preempt_off.load(std::memory_order_relaxed) != 0 || gp->oslocks != 0) return;
  greg_t* r = uc->uc_mcontext.gregs;
  auto sp = static_cast<std::uintptr_t>(r[REG_RSP]);
  auto pc = static_cast<std::uintptr_t>(r[REG_RIP]);
  if (sp > gp->stack_hi || sp < gp->stack_lo + goro_xsave_size + kPreemptStackSlack) return;
  if (!pc_preemptible(pc)) return;
  // As if the interrupted instruction called goro_async_preempt, with the red zone skipped.
  std::uintptr_t nsp = sp - 128 - 8;
  *reinterpret_cast<std::uintptr_t*>(nsp) = pc;
  r[REG_RSP] = static_cast<greg_t>(nsp);
  r[REG_RIP] = reinterpret_cast<greg_t>(&goro_async_preempt);
}

void sigurg_handler(int sig, siginfo_t* info, void* ucv) {
  int saved_errno = errno;
  // goro::debug::find_leaks reading this thread's registers (src/debug/leak.cpp).
  if (leak_capture_active.load(std::memory_order_acquire)) leak_capture_signal(ucv);
  if (chain_prev) {
    if ((prev_sigurg.sa_flags & SA_SIGINFO) != 0) {
      prev_sigurg.sa_sigaction(sig, info, ucv);
    } else {
      prev_sigurg.sa_handler(sig);
    }
  }
  M* m = getm();
  if (m != nullptr && m->preempt_signal.exchange(false, std::memory_order_relaxed) &&
      async_enabled.load(std::memory_order_relaxed)) {
    try_async_preempt(m, static_cast<ucontext_t*>(ucv));
  }
  errno = saved_errno;
}

#if !defined(GORO_TSAN)
void install_handler() {
  if (!init_xsave()) return;
  dl_iterate_phdr(collect_main_text, nullptr);
  if (ntext_ranges == 0) return;
  struct sigaction old {};
  sigaction(SIGURG, nullptr, &old);
  if ((old.sa_flags & SA_SIGINFO) != 0 ||
      (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN)) {
    prev_sigurg = old;
    chain_prev = true;
  }
  struct sigaction sa {};
  sa.sa_sigaction = sigurg_handler;
  // The alternate stack: the context rewrite writes below the goroutine's rsp, which must not
  // hold the kernel's signal frame.
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  sigfillset(&sa.sa_mask);
  if (sigaction(SIGURG, &sa, nullptr) == 0) async_enabled.store(true, std::memory_order_relaxed);
}
#endif

// Whether our handler is still the installed one; warns once and turns asynchronous preemption
// off when the application replaced it.
bool handler_still_ours() {
  struct sigaction cur {};
  if (sigaction(SIGURG, nullptr, &cur) != 0) return false;
  if ((cur.sa_flags & SA_SIGINFO) != 0 && cur.sa_sigaction == sigurg_handler) return true;
  async_enabled.store(false, std::memory_order_relaxed);
  RawBuf b;
  b.str(
      "goro: the SIGURG handler was replaced; asynchronous preemption is off (a goroutine that "
      "never enters the runtime can no longer be preempted)\n");
  b.flush();
  return false;
}

void preemptone(M* m) {
  G* gp = m->curg.load(std::memory_order_relaxed);
  if (gp == nullptr) return;
  gp->preempt.store(true, std::memory_order_relaxed);
  counters.requested.fetch_add(1, std::memory_order_relaxed);
  if (!async_enabled.load(std::memory_order_relaxed) || !handler_still_ours()) return;
  int tid = m->tid.load(std::memory_order_relaxed);
  if (tid == 0) return;
  m->preempt_signal.store(true, std::memory_order_relaxed);
  if (syscall(SYS_tgkill, getpid(), tid, SIGURG) == 0) {
    counters.signals.fetch_add(1, std::memory_order_relaxed);
  }
}

// What sysmon remembers of each P (Go's sysmontick).
struct PWatch {
  std::uint32_t schedtick = 0;
  std::int64_t schedwhen = 0;
  bool seen = false;
  std::uint32_t syscalltick = 0;
  std::int64_t syscallwhen = 0;
  bool sysseen = false;
};
PWatch watch[kMaxProcs];

// One round over the Ps: ends long time slices and retakes Ps from blocking calls. Returns the
// number of Ps retaken; *next is the next time a slice may need ending (INT64_MAX: none) and
// *busy tells whether some P is in use.
int retake(std::int64_t now, std::int64_t* next, bool* busy) {
  int retaken = 0;
  *next = INT64_MAX;
  *busy = false;
  int n = sched.nallp.load(std::memory_order_acquire);
  for (int i = 0; i < n; i++) {
    P* p = sched.allp[i];
    if (p == nullptr) continue;
    PWatch& w = watch[i];
    std::uint32_t status = p->status.load(std::memory_order_acquire);
    if (status == kPSyscall) {
      *busy = true;
      w.seen = false;
      std::uint32_t t = p->syscalltick.load(std::memory_order_relaxed);
      if (!w.sysseen || w.syscalltick != t) {
        // First sight of this call: give it one round (>= 20 us) to return by itself.
        w.sysseen = true;
        w.syscalltick = t;
        w.syscallwhen = now;
        continue;
      }
      // Not worth waking a thread while nothing waits for this P and other Ms could take new
      // work, unless the call has lasted 10 ms.
      if (p->runq.empty() && sched.runqsize.load(std::memory_order_relaxed) == 0 &&
          sched.nmspinning.load(std::memory_order_relaxed) +
                  sched.npidle.load(std::memory_order_relaxed) >
              0 &&
          now - w.syscallwhen < kForcePreemptNs) {
        continue;
      }
      if (retake_syscall_p(p)) {
        counters.handoffs.fetch_add(1, std::memory_order_relaxed);
        retaken++;
      }
      w.sysseen = false;
      continue;
    }
    w.sysseen = false;
    M* m = p->m.load(std::memory_order_acquire);
    if (m == nullptr || status != kPRunning) {
      w.seen = false;
      continue;
    }
    *busy = true;
    std::uint32_t t = p->schedtick.load(std::memory_order_relaxed);
    if (!w.seen || w.schedtick != t) {
      w.seen = true;
      w.schedtick = t;
      w.schedwhen = now;
    }
    std::int64_t end = w.schedwhen + kForcePreemptNs;
    if (now >= end) {
      preemptone(m);
      // Not served yet (an unsafe point, a NoPreempt): ask again a round later, not at once.
      end = now + kBusyDelayNs;
    }
    if (end < *next) *next = end;
  }
  return retaken;
}

void* sysmon_main(void*) {
#if defined(GORO_TSAN)
  // sysmon reads Ms and Gs that their owners may be recycling (a stale m->curg, a G record
  // being reused): benign by design (a stale request costs one early yield), as in Go, but
  // not something TSan can know.
  __tsan_ignore_thread_begin();
#endif
  std::int64_t delay = kMinDelayNs;
  int idle = 0;
  std::int64_t all_idle_since = 0;  // when sysmon first saw every P idle; 0 while one is busy
  for (;;) {
    if (idle == 0) {
      delay = kMinDelayNs;
    } else if (idle > 50) {
      delay = delay * 2 > kMaxDelayNs ? kMaxDelayNs : delay * 2;
    }
    std::int64_t now = nanotime();
    bool busy = false;
    std::int64_t next = INT64_MAX;
    if (retake(now, &next, &busy) > 0) {
      idle = 0;
    } else {
      idle++;
    }
    sched.coarse_now.store(now, std::memory_order_relaxed);
    // Poll the network if nobody did for 10 ms (every P busy with CPU-bound goroutines, none
    // blocked in the poller): fd readiness, such as a debug endpoint's request, must not wait
    // for a P to run out of work (Go's sysmon does the same).
    if (netpoll_inited() && netpoll_any_waiters() && !netpoll_blocked() &&
        now - netpoll_last_poll() > kNetpollStaleNs) {
      G* list = nullptr;
      int n = netpoll(0, &list);
      if (n > 0) {
        inject_netpoll_batch(list, n);
        idle = 0;
      }
    }
    if (busy) {
      all_idle_since = 0;
    } else if (all_idle_since == 0) {
      all_idle_since = now;
    } else if (now - all_idle_since >= kDeepIdleNs) {
      sched.lock.lock();
      if (sched.npidle.load(std::memory_order_relaxed) ==
          sched.gomaxprocs.load(std::memory_order_relaxed)) {
        // Every P idle for a while: sleep until one is handed out (pidleget wakes us).
        // Everything may be asleep for good: deadlock.cpp looks, and says when to look again.
        sched.sysmon_note.clear();
        sched.sysmonwait = true;
        sched.lock.unlock();
        if (std::int64_t again = deadlock_idle_check(); again < 0) {
          sched.sysmon_note.sleep();
        } else {
          sched.sysmon_note.sleep_for(again);
        }
        all_idle_since = 0;
        continue;
      }
      sched.lock.unlock();
    }
    std::int64_t sleep = delay;
    if (busy && sleep > kBusyDelayNs) sleep = kBusyDelayNs;
    if (next != INT64_MAX && next - now < sleep)
      sleep = next - now < kMinDelayNs ? kMinDelayNs : next - now;
    struct timespec ts {
      static_cast<time_t>(sleep / 1'000'000'000), static_cast<long>(sleep % 1'000'000'000)
    };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
  }
  return nullptr;
}

}  // namespace

void sysmon_init() noexcept {
  if (env_is_zero("GORO_SYSMON")) {
    sysmon_enabled = false;
    return;
  }
#if !defined(GORO_TSAN)
  // Async preemption relies on the pthread lock counts (hook/pthread_hooks.cpp).
  if (goro_pthread_hooks_anchor != 0 && !env_is_zero("GORO_ASYNCPREEMPT")) install_handler();
#endif
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t t;
  int rc = pthread_create(&t, &attr, sysmon_main, nullptr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    sysmon_enabled = false;
    async_enabled.store(false, std::memory_order_relaxed);
    RawBuf b;
    b.str("goro: cannot start sysmon (error ").dec(rc).str("); goroutines are not preempted\n");
    b.flush();
    return;
  }
  pthread_setname_np(t, "goro-sysmon");
}

bool sigurg_handler_is(const void* handler) noexcept {
  return handler == reinterpret_cast<const void*>(&sigurg_handler);
}

bool async_preempt_enabled() noexcept {
  return async_enabled.load(std::memory_order_relaxed);
}

// Yields the calling goroutine to the global run queue for a preemption, counted in `counter`.
// preempt_off is raised around the mcall: a preemption signal must not divert the goroutine
// inside mcall after it stored m->mcall_fn and before it switched; the nested park would
// consume mcall_fn, and the interrupted switch would then reach g0 with none (g0 called
// address 0: seen in ~1 of 50 runs of SelectTest.UniformChoiceAmongReadyCases, a goroutine
// that selects without ever parking, when the cooperative yield ran with preempt_off at 0).
namespace {

void preempted_yield(std::atomic<std::uint64_t>& counter) noexcept {
  G* gp = getg();
  gp->preempt_off.store(gp->preempt_off.load(std::memory_order_relaxed) + 1,
                        std::memory_order_relaxed);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  counter.fetch_add(1, std::memory_order_relaxed);
  mcall_from(preempt_m);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  gp->preempt_off.store(gp->preempt_off.load(std::memory_order_relaxed) - 1,
                        std::memory_order_relaxed);
}

}  // namespace

// Called with preempt_off just lowered to 0 (EnterRuntime's or NoPreempt's end).
void preempt_yield() noexcept {
  preempted_yield(counters.cooperative);
}

}  // namespace goro::internal

using namespace goro::internal;

// Called by goro_async_preempt on the goroutine's stack, every register already saved.
extern "C" void goro_async_preempt_park() {
  preempted_yield(counters.async);
}

namespace goro {

NoPreempt::NoPreempt() noexcept : g_(getg()) {
  if (auto* gp = static_cast<G*>(g_)) {
    gp->preempt_off.store(gp->preempt_off.load(std::memory_order_relaxed) + 1,
                          std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);
  }
}

NoPreempt::~NoPreempt() {
  auto* gp = static_cast<G*>(g_);
  if (gp == nullptr) return;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  std::uint32_t n = gp->preempt_off.load(std::memory_order_relaxed) - 1;
  gp->preempt_off.store(n, std::memory_order_relaxed);
  if (n == 0 && gp->preempt.load(std::memory_order_relaxed)) preempt_yield();
}

std::uint64_t blocking_handoffs() noexcept {
  return counters.handoffs.load(std::memory_order_relaxed);
}

PreemptCounts preempt_counts() noexcept {
  return PreemptCounts{counters.requested.load(std::memory_order_relaxed),
                       counters.cooperative.load(std::memory_order_relaxed),
                       counters.async.load(std::memory_order_relaxed),
                       counters.signals.load(std::memory_order_relaxed)};
}

}  // namespace goro
