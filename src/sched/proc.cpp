// proc.cpp - the goroutine scheduler: Gs, Ms and Ps, park/ready, run queues, spinning Ms.
//
// Design (read beside Go's src/runtime/proc.go, whose model this follows)
// =======================================================================
// G: a goroutine: a function, a stack slot (the G record lives at the slot's top), a saved
//    stack pointer. M: an OS thread; its own thread stack ("g0") runs the scheduler loop.
//    P: a logical processor; an M must hold one to run goroutines. There are GOMAXPROCS Ps.
//    Each P has a 256-slot lock-free run queue plus `runnext`; there is also a global run
//    queue under sched.lock.
//
//    goro::go / ready ──► runnext of the current P (older runnext ► tail; full ► half to global)
//                         or the global queue when called from a plain thread
//    M loop on g0:        find_runnable ─► execute(G) ─► G runs ─► mcall(fn) ─► fn on g0 ─┐
//                         ▲                                                              │
//                         └──────────────────────────────────────────────────────────────┘
//
// find_runnable, in order: every 61st tick one G from the global queue (fairness); the local
// queue; the global queue (a batch); stealing half of a random victim's queue (4 passes in a
// random coprime order, a victim's runnext only in the last pass); then park the M.
//
// Worker parking/unparking (the "delicate dance")
// -----------------------------------------------
// We want enough running Ms to use the available Ps, but not so many that idle Ms burn CPU
// and contend. Rules:
//  1. An M looking for work without having found any is "spinning" (counted in
//     sched.nmspinning). At most half of the busy Ps' worth of Ms spin (Go's rule:
//     2*nmspinning < gomaxprocs - npidle).
//  2. Whoever makes work available (ready, go, a spinning M that found work) calls wakep(),
//     which starts an M only if there is an idle P and no M is spinning. One spinning M is
//     enough: when it finds work it stops spinning and calls wakep() again (chaining), so
//     bursts ramp up without a thundering herd.
//  3. A spinning M that gives up: (a) puts its P on the idle list under sched.lock, after
//     checking the global queue under that same lock; (b) decrements nmspinning; (c) only
//     then re-checks every P's queue and the global queue, and if anything is there, takes an
//     idle P back and spins again. Step (c) closes the race with a submitter that queued work
//     while nmspinning was still non-zero and so did not wake anyone:
//
//        spinning M                          submitter
//        ----------                          ---------
//        queues look empty                   push G onto its P's queue        (A)
//        nmspinning--                  (B)   wakep(): nmspinning != 0 → no wake
//        re-check all queues           (B')
//     Both sides use sequentially consistent operations on the queue indices and nmspinning,
//     so either the submitter sees nmspinning == 0 and wakes an M, or the M's re-check (B')
//     sees the G pushed at (A).
//  4. An M with no P parks on its note (futex) in sched.midle; startm hands it a P in
//     m->nextp and wakes the note.
//
// Park and ready
// --------------
// Every blocking primitive queues a waiter record (the G: waiter()) in its own structure under
// its own lock, then calls park(unlockf, lock). For a goroutine, park switches to g0 (mcall);
// g0 marks the G waiting and only then runs unlockf, which releases the primitive's lock (or,
// when runnext holds a goroutine that has run before, park switches straight to it and that
// goroutine does g0's part when it resumes: "The direct switch", at park_direct). A
// waker, which must take that lock to find the G, can therefore never ready a G that is still
// running on its stack. ready() marks it runnable and queues it on the current P's runnext
// (inheriting the time slice, so a ping-pong pair runs back to back) and calls wakep(). A
// plain thread has a heap "thread G" (stack_kind kStackThread) instead; park sleeps on a futex
// on its status word and ready() stores kGRunnable and wakes it. So goroutines and threads
// wait for each other through exactly the same queues.
//
// Per-thread state across switches
// --------------------------------
// A goroutine may resume on a different M than it parked on. Two kinds of per-thread state
// must not be carried over by the compiler:
//  * The runtime's own current M/G: read only through getm(), which is out of line and opaque
//    to interprocedural analysis (noipa), and getg(), an asm load relative to the thread
//    pointer (proc.hpp), so no caller can keep a thread-local address computed before a
//    switch.
//  * The C++ exception globals (__cxa_get_globals: caught exceptions and the uncaught count):
//    copied into the G when it switches out and back into the running thread when it switches
//    in, so `throw;` inside a catch block and std::uncaught_exceptions() work after a park.
// errno is the libc hooks' concern (they save and restore it around parks).
//
// Threads: the main thread is never an M; Ms are created on demand, up to one per P plus
// those blocked in the kernel. An M that cannot be created when go() needs one makes go()
// throw before the goroutine is published, so a goroutine that go() reports as failed never
// runs.
//
// Lock order: sched.lock ▸ stack pool lock. Primitive locks (sema buckets) are taken before
// sched.lock (ready() may take sched.lock while a bucket lock is held) and never after it.
#include "sched/proc.hpp"

#include <cxxabi.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <stdexcept>
#include <system_error>
#include <typeinfo>
#include <vector>

#include "arch/context.hpp"
#include "base/platform.hpp"
#include "base/raw_log.hpp"
#include "debug/leak.hpp"
#include "debug/symbolize.hpp"
#include "debug/traceback.hpp"
#include "goro/preempt.hpp"
#include "goro/runtime.hpp"
#include "netpoll/netpoll.hpp"
#include "stack/stack.hpp"

#if defined(GORO_ASAN)
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(GORO_TSAN)
#include <sanitizer/tsan_interface.h>
#endif

extern "C" abi::__cxa_eh_globals* __cxa_get_globals() noexcept;

namespace goro::internal {

Sched sched;

extern "C" {
thread_local G* goro_tls_g = nullptr;
}

namespace {

thread_local M* tls_m = nullptr;
// Set by retake_syscall_p around its hand-off: the goro::blocking call site that a thread newm
// creates meanwhile is charged to (stats).
thread_local const void* tls_newm_cause = nullptr;

#if defined(GORO_CHAOS)
constexpr bool kChaos = true;
#else
constexpr bool kChaos = false;
#endif

// Checking builds (unoptimized, sanitizers, chaos) take a goroutine from waiting to runnable
// with a compare-and-swap, so that two wakers racing to ready one goroutine - a bug in a
// primitive - die with a message instead of queueing it twice. Release builds pay one
// plain load and store on that path.
#if !defined(NDEBUG) || defined(GORO_ASAN) || defined(GORO_TSAN) || defined(GORO_CHAOS)
constexpr bool kCheckedReady = true;
#else
constexpr bool kCheckedReady = false;
#endif

}  // namespace

// noipa: GCC must not infer that getm only reads memory and fold two calls around a switch;
// noinline alone keeps clang from caching the thread-local address.
#if defined(__clang__)
#define GORO_OPAQUE __attribute__((noinline))
#else
#define GORO_OPAQUE __attribute__((noinline, noipa))
#endif

GORO_OPAQUE M* getm() noexcept {
  M* m = tls_m;
  asm volatile("" : "+r"(m));
  return m;
}

const char* wait_reason_string(WaitReason r) noexcept {
  switch (r) {
    case WaitReason::kNone:
      return "running";
    case WaitReason::kMutex:
      return "sync.Mutex.Lock";
    case WaitReason::kWaitGroup:
      return "sync.WaitGroup.Wait";
    case WaitReason::kSemacquire:
      return "semacquire";
    case WaitReason::kOnce:
      return "sync.Once";
    case WaitReason::kSleep:
      return "sleep";
    case WaitReason::kChanReceive:
      return "chan receive";
    case WaitReason::kChanSend:
      return "chan send";
    case WaitReason::kSelect:
      return "select";
    case WaitReason::kSelectNoCases:
      return "select (no cases)";
    case WaitReason::kChanReceiveNil:
      return "chan receive (nil chan)";
    case WaitReason::kChanSendNil:
      return "chan send (nil chan)";
    case WaitReason::kIORead:
      return "IO wait (read)";
    case WaitReason::kIOWrite:
      return "IO wait (write)";
  }
  return "unknown";
}

// ---------------------------------------------------------------------------------------------
// Global run queue and idle lists (all under sched.lock).

namespace {

G* inject_pop();

void globrunqput(G* gp) {
  // Keep the global queue FIFO across both of its parts: what plain threads injected earlier
  // goes ahead of gp (a goroutine yielding in a loop must not starve them).
  while (G* inj = inject_pop()) {
    inj->schedlink = nullptr;
    if (sched.runq_tail != nullptr) {
      sched.runq_tail->schedlink = inj;
    } else {
      sched.runq_head = inj;
    }
    sched.runq_tail = inj;
  }
  gp->schedlink = nullptr;
  if (sched.runq_tail != nullptr) {
    sched.runq_tail->schedlink = gp;
  } else {
    sched.runq_head = gp;
  }
  sched.runq_tail = gp;
  sched.runqsize.fetch_add(1, std::memory_order_seq_cst);
}

void globrunqputbatch(G* head, G* tail, int n) {
  tail->schedlink = nullptr;
  if (sched.runq_tail != nullptr) {
    sched.runq_tail->schedlink = head;
  } else {
    sched.runq_head = head;
  }
  sched.runq_tail = tail;
  sched.runqsize.fetch_add(n, std::memory_order_seq_cst);
}

// As globrunqputbatch, but at the head of the queue (runqput's overflow of woken goroutines).
void globrunqputbatch_front(G* head, G* tail, int n) {
  tail->schedlink = sched.runq_head;
  sched.runq_head = head;
  if (sched.runq_tail == nullptr) sched.runq_tail = tail;
  sched.runqsize.fetch_add(n, std::memory_order_seq_cst);
}

// The injection queue: goroutines made runnable by threads without a P (go() and ready()
// called from plain threads) are pushed here without a lock; consumers pop under sched.lock,
// so there is one consumer at a time. Dmitry Vyukov's intrusive MPSC queue with a stub node:
//   push: x->next = null; prev = tail.exchange(x); prev->next = x;
// Between a producer's exchange and its link the queue looks empty to the consumer even though
// runqsize counts x; consumers then treat it as empty, and the producer's wakep() after the
// link starts an M for it.
G inject_stub;
G* inject_head = &inject_stub;              // consumer side, under sched.lock
std::atomic<G*> inject_tail{&inject_stub};  // producer side

void inject_push(G* gp) {
  gp->injectlink.store(nullptr, std::memory_order_relaxed);
  G* prev = inject_tail.exchange(gp, std::memory_order_acq_rel);
  prev->injectlink.store(gp, std::memory_order_release);
}

G* inject_pop() {
  G* h = inject_head;
  G* next = h->injectlink.load(std::memory_order_acquire);
  if (h == &inject_stub) {
    if (next == nullptr) return nullptr;
    inject_head = next;
    h = next;
    next = next->injectlink.load(std::memory_order_acquire);
  }
  if (next != nullptr) {
    inject_head = next;
    return h;
  }
  if (h != inject_tail.load(std::memory_order_acquire)) return nullptr;  // a push in progress
  inject_push(&inject_stub);
  next = h->injectlink.load(std::memory_order_acquire);
  if (next != nullptr) {
    inject_head = next;
    return h;
  }
  return nullptr;
}

// Pops from the global queue: the locked list first, then the injection queue.
G* globrunqpop() {
  G* gp = sched.runq_head;
  if (gp != nullptr) {
    sched.runq_head = gp->schedlink;
    if (sched.runq_head == nullptr) sched.runq_tail = nullptr;
  } else {
    gp = inject_pop();
    if (gp == nullptr) return nullptr;
  }
  sched.runqsize.fetch_sub(1, std::memory_order_seq_cst);
  return gp;
}

// Makes gp runnable from a thread without a P: no lock.
void injectglist(G* gp) {
  sched.runqsize.fetch_add(1, std::memory_order_seq_cst);
  inject_push(gp);
}

// Under sched.lock: takes a batch from the global queue: one to return, the rest onto p's
// local queue.
G* globrunqget(P* p, int max) {
  int size = sched.runqsize.load(std::memory_order_relaxed);
  if (size == 0) return nullptr;
  int procs = sched.gomaxprocs.load(std::memory_order_relaxed);
  int n = size / procs + 1;
  if (n > size) n = size;
  if (max > 0 && n > max) n = max;
  if (n > 128) n = 128;
  G* gp = globrunqpop();
  for (int i = 1; gp != nullptr && i < n; i++) {
    G* more = globrunqpop();
    if (more == nullptr) break;
    // Straight onto the ring (we hold sched.lock, so not runqput: its overflow and chaos
    // paths take the lock). It has room: n <= 128 and the ring was just found empty or
    // nearly so; if not, the G goes back to the global queue.
    if (!p->runq.push(more)) globrunqput(more);
  }
  if (gp != nullptr) pstat_add(p->stats.global_takes);
  return gp;
}

void pidleput(P* p) {
  p->status.store(kPIdle, std::memory_order_relaxed);
  p->m.store(nullptr, std::memory_order_relaxed);
  p->link = sched.pidle;
  sched.pidle = p;
  sched.npidle.fetch_add(1, std::memory_order_seq_cst);
  if (sched.timer_sleeper != nullptr && !sched.sleeper_polls && !sched.sleeper_repoll &&
      netpoll_inited()) {
    // The sleeper sleeps on its note because every P was busy polling for itself; now one
    // is idle, and readiness must wake someone: it goes back to sleep in the poller (stopm).
    sched.sleeper_repoll = true;  // one wake-up is enough
    sched.timer_sleeper->park.wakeup();
  }
}

// Takes an idle P for an M that will acquirep it; from here on it counts as running (so
// set_gomaxprocs retires it through its M, not behind the M's back).
P* pidleget() {
  P* p = sched.pidle;
  if (p != nullptr) {
    sched.pidle = p->link;
    p->status.store(kPRunning, std::memory_order_relaxed);
    sched.npidle.fetch_sub(1, std::memory_order_seq_cst);
    if (sched.sysmonwait) {
      // A P gets busy: sysmon, asleep while all were idle, watches again.
      sched.sysmonwait = false;
      sched.coarse_now.store(nanotime(), std::memory_order_relaxed);
      sched.sysmon_note.wakeup();
    }
  }
  return p;
}

void mput(M* m) {
  m->idle_listed = true;
  m->schedlink = sched.midle;
  sched.midle = m;
  sched.nmidle.fetch_add(1, std::memory_order_relaxed);
}

M* mget() {
  M* m = sched.midle;
  if (m != nullptr) {
    m->idle_listed = false;
    sched.midle = m->schedlink;
    sched.nmidle.fetch_sub(1, std::memory_order_relaxed);
  }
  return m;
}

// ---------------------------------------------------------------------------------------------
// Local run queue.

void runqput(P* p, G* gp, bool next) {
  if constexpr (kChaos) {
    // Randomized order: sometimes skip runnext, sometimes go through the global queue.
    switch (fastrandn(3)) {
      case 0:
        next = false;
        break;
      case 1: {
        LockGuard hold(sched.lock);
        globrunqput(gp);
        return;
      }
      default:
        break;
    }
  }
  if (next) {
    gp = p->runq.put_next(gp, sched.gomaxprocs.load(std::memory_order_relaxed) == 1);
    if (gp == nullptr) return;
  }
  for (;;) {
    if (p->runq.push(gp)) return;
    // Full: take the older half of the queue (Go's runqputslow) and move it, with gp, to the
    // global queue in one batch - except goroutines that have run before (woken by a timer, a
    // channel, the poller: someone waits for them), which go back here, behind the newer half,
    // when the batch has not-yet-started ones to move instead. A spawn burst keeps the queue
    // full; Go's rule put the goroutines its timers woke behind every new goroutine of the
    // burst in the global queue (the 100,000-timer storm's p99 was that wait: 1,000-3,000
    // woken goroutines moved per run). Only the overflow path reads the Gs; the owner alone
    // pushes, so the half it took out leaves room for those it puts back.
    constexpr std::uint32_t kHalf = decltype(p->runq)::kCapacity / 2;
    G* batch[kHalf + 1];
    std::uint32_t n = p->runq.take_half(batch);
    if (n == 0) continue;
    batch[n++] = gp;
    G* keep[kHalf + 1];
    std::uint32_t nkeep = 0, nmove = 0;
    for (std::uint32_t i = 0; i < n; i++) {
      if (batch[i]->sp != nullptr) {
        keep[nkeep++] = batch[i];
      } else {
        batch[nmove++] = batch[i];
      }
    }
    bool front = false;
    if (nmove == 0) {
      // All have run: more woken goroutines than the queue holds (a heap's worth of timers
      // fired at once). They go to the head of the global queue, where the other Ps look
      // first; at its tail they would wait for every new goroutine queued there. (With
      // nothing moved, batch still holds all n in order.)
      nmove = n;
      nkeep = 0;
      front = true;
    }
    for (std::uint32_t i = 0; i + 1 < nmove; i++) batch[i]->schedlink = batch[i + 1];
    {
      LockGuard hold(sched.lock);
      if (front) {
        globrunqputbatch_front(batch[0], batch[nmove - 1], static_cast<int>(nmove));
      } else {
        globrunqputbatch(batch[0], batch[nmove - 1], static_cast<int>(nmove));
      }
    }
    for (std::uint32_t i = 0; i < nkeep; i++) {
      if (!p->runq.push(keep[i])) fatal("runqput: no room for a goroutine put back");
    }
    return;
  }
}

P* allp_at(int i) {
  return sched.allp[i];
}

void acquirep(M* m, P* p) {
  if (p->m.load(std::memory_order_relaxed) != nullptr ||
      p->status.load(std::memory_order_relaxed) != kPRunning) {
    fatal("acquirep: invalid p state");
  }
  m->p = p;
  p->m.store(m, std::memory_order_release);  // sysmon reads the M through it
}

// Detaches m from its P and returns it (Go's releasep).
P* releasep(M* m) {
  P* p = m->p;
  m->p = nullptr;
  p->m.store(nullptr, std::memory_order_relaxed);
  return p;
}

// ---------------------------------------------------------------------------------------------
// G records (Go's gfget/gfput and allgs). Records come from 64 KiB chunks that are never freed,
// so dumps can walk every G ever allocated, and a stale G pointer is never unmapped memory. A
// free G is cached in its P (owner-only) or the global free list (under glock).

constexpr std::size_t kGChunkBytes = 64 * 1024;
constexpr std::size_t kGsPerChunk = kGChunkBytes / sizeof(G);

Lock glock;
G* gfree_global = nullptr;           // under glock, linked through schedlink
std::vector<G*>* gchunks = nullptr;  // under glock

// Under glock: carves a new chunk onto the free list.
void galloc_chunk() {
  void* mem = ::operator new (kGChunkBytes, std::align_val_t{64});
  auto* gs = static_cast<G*>(mem);
  for (std::size_t i = 0; i < kGsPerChunk; i++) {
    G* g = ::new (&gs[i]) G;
    g->status.store(kGDead, std::memory_order_relaxed);
    g->schedlink = gfree_global;
    gfree_global = g;
  }
  if (gchunks == nullptr) gchunks = new std::vector<G*>;
  gchunks->push_back(gs);
}

G* gfget(LocalCache* p) {
  G* g = nullptr;
  if (p != nullptr && p->ngfree > 0) {
    g = p->gfree[--p->ngfree];
  } else {
    LockGuard hold(glock);
    if (gfree_global == nullptr) galloc_chunk();
    // Refill half of p's cache in the same lock hold.
    while (p != nullptr && p->ngfree < kGCacheSize / 2 && gfree_global->schedlink != nullptr) {
      p->gfree[p->ngfree++] = gfree_global;
      gfree_global = gfree_global->schedlink;
    }
    g = gfree_global;
    gfree_global = g->schedlink;
  }
  // Reset to a fresh record but keep the slot-independent identity of the memory.
  g->~G();
  return ::new (g) G;
}

void gfput(LocalCache* p, G* g) {
  g->status.store(kGDead, std::memory_order_release);
  if (p != nullptr && p->ngfree < kGCacheSize) {
    p->gfree[p->ngfree++] = g;
    return;
  }
  LockGuard hold(glock);
  g->schedlink = gfree_global;
  gfree_global = g;
  while (p != nullptr && p->ngfree > kGCacheSize / 2) {
    G* x = p->gfree[--p->ngfree];
    x->schedlink = gfree_global;
    gfree_global = x;
  }
}

void gflush(LocalCache* p) {
  LockGuard hold(glock);
  while (p->ngfree > 0) {
    G* x = p->gfree[--p->ngfree];
    x->schedlink = gfree_global;
    gfree_global = x;
  }
}

[[noreturn]] void goroutine_entry(void* arg) noexcept;

// ---------------------------------------------------------------------------------------------
// Ms.

void* mstart(void* arg);

// Every M record ever created, for stats and schedtrace (for_each_m): an append-only list of
// immutable nodes, so readers walk it without a lock while newm pushes.
struct AllM {
  M* m;
  AllM* next;
};
std::atomic<AllM*> allm_head{nullptr};

void allm_register(M* m) {
  auto* n = new (std::nothrow) AllM{m, allm_head.load(std::memory_order_relaxed)};
  if (n == nullptr) return;  // out of memory: the M is only missing from stats
  while (!allm_head.compare_exchange_weak(n->next, n, std::memory_order_release,
                                          std::memory_order_relaxed)) {
  }
}

// Creates an M. With p == null it starts idle (queued in midle before it runs). Returns false
// if the thread cannot be created (errno-style code in *err).
bool newm(P* p, bool spinning, int* err) {
  M* m = nullptr;
  {
    LockGuard hold(sched.lock);
    if (sched.mfree != nullptr) {
      m = sched.mfree;
      sched.mfree = m->freelink;
    }
  }
  const bool reused = m != nullptr;  // already in the all-M registry (for_each_m)
  if (m != nullptr) {
    // A record whose thread exited: start afresh (sysmon may still read its atomics).
    m->~M();
    new (m) M;
  } else {
    m = new (std::nothrow) M;
  }
  if (m == nullptr) {
    *err = ENOMEM;
    return false;
  }
  m->nextp.store(p, std::memory_order_relaxed);
  m->spinning = spinning;
  m->start_idle = p == nullptr;
  {
    LockGuard hold(sched.lock);
    if (sched.mlive >= sched.maxmcount) {
      RawBuf b;
      b.str("runtime: program exceeds ")
          .dec(sched.maxmcount)
          .str("-thread limit (goro::set_max_threads)\nfatal error: thread exhaustion\n");
      b.flush();
      die();
    }
    sched.mlive++;
    m->id = sched.mnext++;
    if (p == nullptr) mput(m);
  }
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  // The g0 stack only runs the scheduler and mcall functions (signal handlers use the
  // alternate stack): 256 KiB is plenty and keeps an idle M's footprint small.
  pthread_attr_setstacksize(&attr, 256 * 1024);
  // Start with every signal blocked except synchronous faults; mstart unblocks the rest, so
  // that no signal arrives before the thread's TLS and alternate stack exist.
  sigset_t all, old;
  sigfillset(&all);
  sigdelset(&all, SIGSEGV);
  sigdelset(&all, SIGBUS);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(&m->thread, &attr, mstart, m);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    if (p == nullptr) {
      LockGuard hold(sched.lock);
      // Remove it from midle again (it may no longer be first).
      M** pp = &sched.midle;
      while (*pp != nullptr && *pp != m) pp = &(*pp)->schedlink;
      if (*pp == m) {
        m->idle_listed = false;
        *pp = m->schedlink;
        sched.nmidle.fetch_sub(1, std::memory_order_relaxed);
      } else {
        // A startm already took it and handed it a P; the thread will never run. Give the P
        // back. (Rare: only when thread creation fails.)
        if (P* np = m->nextp.load(std::memory_order_relaxed)) pidleput(np);
        if (m->spinning) sched.nmspinning.fetch_sub(1);
      }
    }
    {
      LockGuard hold(sched.lock);
      sched.mlive--;
    }
    if (reused) {
      LockGuard hold(sched.lock);  // registered in allm: never freed, back to mfree
      m->freelink = sched.mfree;
      sched.mfree = m;
    } else {
      delete m;
    }
    *err = rc;
    return false;
  }
  pthread_detach(m->thread);
  if (!reused) allm_register(m);
  if (tls_newm_cause != nullptr) stats_note_blocking_thread(tls_newm_cause);
  return true;
}

// Starts an M to run p (or an idle P if p is null). If spinning, the caller already counted
// it in nmspinning, and the count is dropped again if nothing can be started.
void startm(P* p, bool spinning) {
  sched.lock.lock();
  if (p == nullptr) {
    p = pidleget();
    if (p == nullptr) {
      sched.lock.unlock();
      if (spinning) sched.nmspinning.fetch_sub(1, std::memory_order_seq_cst);
      return;
    }
  }
  M* nm = mget();
  // The timer sleeper may be blocked in the network poller, out of its note's reach (stopm).
  bool in_poller = nm != nullptr && nm == sched.timer_sleeper && sched.sleeper_polls;
  sched.lock.unlock();
  if (nm == nullptr) {
    int err = 0;
    if (!newm(p, spinning, &err)) {
      static std::atomic<bool> warned{false};
      if (!warned.exchange(true)) {
        RawBuf b;
        b.str("goro: cannot create an OS thread (error ").dec(err).str("); running with fewer\n");
        b.flush();
      }
      LockGuard hold(sched.lock);
      pidleput(p);
      if (spinning) sched.nmspinning.fetch_sub(1, std::memory_order_seq_cst);
    }
    return;
  }
  nm->spinning = spinning;
  nm->nextp.store(p, std::memory_order_release);  // publishes nm->spinning too
  nm->park.wakeup();
  if (in_poller) netpoll_break();
}

// Sleeps on m's note until startm has handed it a P, and takes it. A wake-up can be stale (the
// timer sleeper's, see stopm), so it is not proof that nextp is there yet.
P* wait_nextp(M* m) {
  for (;;) {
    m->park.sleep();
    m->park.clear();
    if (P* p = m->nextp.exchange(nullptr, std::memory_order_acquire)) return p;
  }
}

// Idle Ms beyond what the load needs do not stay forever (Go keeps every M it ever made,
// golang/go#14592): an idle M that no startm has taken for kIdleMExitNs leaves midle and its
// thread exits, as long as more than kKeepIdleMs idle Ms remain (the timer sleeper is not in
// that count's reach: it never times out here). So a burst of blocking calls that needed
// hundreds of threads leaves two or three behind a few seconds later.
constexpr std::int64_t kIdleMExitNs = 2'000'000'000;
constexpr int kKeepIdleMs = 1;

// As wait_nextp for an idle M in midle, but returns null when the M should exit instead
// (then it is no longer in midle).
P* wait_nextp_or_exit(M* m) {
  for (;;) {
    if (m->park.sleep_for(kIdleMExitNs)) {
      m->park.clear();
      if (P* p = m->nextp.exchange(nullptr, std::memory_order_acquire)) return p;
      continue;
    }
    LockGuard hold(sched.lock);
    if (m->idle_listed && sched.nmidle.load(std::memory_order_relaxed) > kKeepIdleMs) {
      M** pp = &sched.midle;
      while (*pp != m) pp = &(*pp)->schedlink;
      *pp = m->schedlink;
      m->idle_listed = false;
      sched.nmidle.fetch_sub(1, std::memory_order_relaxed);
      return nullptr;
    }
    // Taken by a startm meanwhile (its wake-up is on the way), or needed as the spare.
  }
}

enum class StopResult { kGotP, kNoP, kExit };

// Parks m until startm hands it a P, and returns true with the P acquired. The first M to
// park while no other is the timer sleeper becomes it: it sleeps at most until the earliest
// timer deadline, and returns false (no P, not in midle) when it woke without being handed a
// P, so that the caller runs the due timers.
//
// Timers armed while the sleeper goes to sleep are not missed: the sleeper publishes itself
// with sleep_until = "never" (A) before it reads the heaps' deadlines (B); timer_start
// publishes its heap's deadline (A') before reading sleep_until (B'). All four are
// sequentially consistent, so either (B) sees the new timer or (B') sees the sleeper and
// wake_timer_sleeper wakes it. (B') reading kNoTimerSleeper (no sleeper yet, or one that has
// left: it stores that value before it runs the due timers itself) puts (A) of the next sleeper
// after it, so that sleeper's (B) sees the timer.
//
// Once the network poller exists the sleeper sleeps in it (Go's blocking netpoll in
// findRunnable) while some P is idle: fd readiness wakes it as well as the deadline, and
// whoever would wake its note also calls netpoll_break() (wake_timer_sleeper, startm). While
// every P is busy it sleeps on its note instead, as Go's Ms do then: the busy Ps poll without
// blocking whenever their queues run dry (find_runnable), which they skip while an M is
// blocked in the poller. A sleeper in the poller with every P busy woke for each handful of
// events only to queue them for those Ps (an echo server at 1,000 connections: ~9,000
// wake-ups a second of a thread competing with the Ps for the CPU). pidleput wakes a sleeper
// on its note, which then goes back to sleep in the poller. netpoll_inited() is read after
// (A): the first poll_open sets it, then wakes the sleeper it finds.
StopResult stopm(M* m) {
  bool sleeper = false;
  bool polls = false;
  {
    LockGuard hold(sched.lock);
    mput(m);
    if (sched.timer_sleeper == nullptr) {
      sched.timer_sleeper = m;
      sched.sleep_until.store(INT64_MAX, std::memory_order_seq_cst);  // (A)
      sched.sleeper_polls = netpoll_inited() && sched.npidle.load(std::memory_order_relaxed) > 0;
      sched.sleeper_repoll = false;
      polls = sched.sleeper_polls;
      sleeper = true;
    }
  }
  if (sleeper) {
    std::int64_t until = timers_next_all();  // (B)
    if (until != 0) {
      std::int64_t cur = INT64_MAX;
      sched.sleep_until.compare_exchange_strong(cur, until, std::memory_order_seq_cst);
    }
    G* polled = nullptr;
    int npolled = 0;
    if (polls) {
      std::int64_t delay = -1;
      if (until != 0) delay = std::max<std::int64_t>(until - nanotime(), 0);
      npolled = netpoll(delay, &polled);
    } else if (until != 0) {
      std::int64_t left = until - nanotime();
      if (left > 0) m->park.sleep_for(left);
    } else {
      m->park.sleep();
    }
    bool taken = true;
    {
      LockGuard hold(sched.lock);
      if (sched.timer_sleeper == m) {
        sched.timer_sleeper = nullptr;
        sched.sleep_until.store(kNoTimerSleeper, std::memory_order_seq_cst);
      }
      if (m->idle_listed) {
        // Timed out, or woken by wake_timer_sleeper or the poller: nobody took us from midle.
        M** pp = &sched.midle;
        while (*pp != m) pp = &(*pp)->schedlink;
        *pp = m->schedlink;
        m->idle_listed = false;
        sched.nmidle.fetch_sub(1, std::memory_order_relaxed);
        m->park.clear();
        taken = false;
      }
    }
    // Goroutines the poller readied: global queue, Ms for idle Ps but one; this M takes a P
    // for that one (stopm_until_work, or the one startm hands it).
    if (npolled > 0) inject_netpoll_batch(polled, npolled);
    if (!taken) return StopResult::kNoP;
    // A startm took us from midle; its wake-up (and m->nextp) is on its way.
    acquirep(m, wait_nextp(m));
    return StopResult::kGotP;
  }
  P* p = wait_nextp_or_exit(m);
  if (p == nullptr) return StopResult::kExit;
  acquirep(m, p);
  return StopResult::kGotP;
}

// Parks m without a P until it is handed one, serving as the timer sleeper while timers are
// armed: when the earliest deadline passes, it runs the due timers of every P itself (what
// they ready goes to the injection queue) and takes an idle P if that left work.
// Returns false when m's thread should exit instead (idle too long; see wait_nextp_or_exit).
[[nodiscard]] bool stopm_until_work(M* m) {
  for (;;) {
    StopResult r = stopm(m);
    if (r == StopResult::kGotP) return true;
    if (r == StopResult::kExit) return false;
    timers_run_all(nanotime());
    if (sched.runqsize.load(std::memory_order_seq_cst) > 0) {
      sched.lock.lock();
      P* p = pidleget();
      sched.lock.unlock();
      if (p != nullptr) {
        acquirep(m, p);
        return true;
      }
    }
  }
}

}  // namespace

// Tries to add one more M to run goroutines, if a P is idle and no M is spinning.
void wakep() noexcept {
  if (sched.npidle.load(std::memory_order_seq_cst) == 0) return;
  int zero = 0;
  if (sched.nmspinning.load(std::memory_order_seq_cst) != 0 ||
      !sched.nmspinning.compare_exchange_strong(zero, 1, std::memory_order_seq_cst)) {
    return;
  }
  startm(nullptr, true);
}

// Takes sched.lock only when there is a sleeper and `when` comes before its deadline: with no
// sleeper (kNoTimerSleeper) the comparison fails, so a burst of timers armed while every M is
// busy (a 100,000-timer storm) does not line up on sched.lock.
void wake_timer_sleeper(std::int64_t when) noexcept {
  if (when < sched.sleep_until.load(std::memory_order_seq_cst)) {  // (B')
    bool woke = false;
    bool in_poller = false;
    {
      LockGuard hold(sched.lock);
      if (sched.timer_sleeper != nullptr &&
          when < sched.sleep_until.load(std::memory_order_relaxed)) {
        sched.timer_sleeper->park.wakeup();
        sched.sleep_until.store(when, std::memory_order_relaxed);  // one wake-up is enough
        woke = true;
        in_poller = sched.sleeper_polls;
      }
    }
    if (woke) {
      if (in_poller) netpoll_break();  // it sleeps in the network poller, not on its note
      return;
    }
  }
  // No sleeper: an M that is awake will see the timer when it parks; if none is awake (a
  // plain thread armed it), start one, which becomes the sleeper.
  if (getm() == nullptr) wakep();
}

void inject_netpoll_batch(G* list, int n) noexcept {
  if (list == nullptr || n <= 0) return;
  M* m = getm();
  P* p = m != nullptr ? m->p : nullptr;
  // How many go to the global queue, and how many Ms to start for them (Go's injectglist).
  int nglobal = n;
  int nstart = m != nullptr ? n - 1 : n;  // an M without a P takes a P for one itself
  if (p != nullptr) {
    nglobal = std::min(n, sched.npidle.load(std::memory_order_seq_cst));
    nstart = nglobal;
  }
  G* rest = list;
  if (nglobal > 0) {
    G* tail = list;
    for (int i = 1; i < nglobal; i++) tail = tail->schedlink;
    rest = tail->schedlink;
    LockGuard hold(sched.lock);
    globrunqputbatch(list, tail, nglobal);
  }
  for (int i = 0; i < nstart && sched.npidle.load(std::memory_order_seq_cst) > 0; i++) {
    startm(nullptr, false);
  }
  while (rest != nullptr) {
    G* next = rest->schedlink;
    rest->schedlink = nullptr;
    runqput(p, rest, false);
    rest = next;
  }
}

namespace {

void reset_spinning(M* m) {
  m->spinning = false;
  if (sched.nmspinning.fetch_sub(1, std::memory_order_seq_cst) <= 0) {
    fatal("findrunnable: negative nmspinning");
  }
  // We found work and stop spinning: let another M spin for the rest (rule 2).
  wakep();
}

// Retires m's P (GOMAXPROCS shrank): its queued goroutines move to the global queue.
void retirep(M* m) {
  P* p = m->p;
  G* batch_head = nullptr;
  G* batch_tail = nullptr;
  int n = 0;
  while (G* gp = p->runq.pop()) {
    gp->schedlink = nullptr;
    if (batch_tail != nullptr) {
      batch_tail->schedlink = gp;
    } else {
      batch_head = gp;
    }
    batch_tail = gp;
    n++;
  }
  stack_flush_cache(&p->cache);
  gflush(&p->cache);
  // Its timers go to P 0, which always stays active (GOMAXPROCS >= 1).
  timers_move(&p->timers, &sched.allp[0]->timers);
  LockGuard hold(sched.lock);
  if (n > 0) globrunqputbatch(batch_head, batch_tail, n);
  m->p = nullptr;
  p->m.store(nullptr, std::memory_order_relaxed);
  if (p->id < sched.gomaxprocs.load(std::memory_order_relaxed)) {
    // Revived while we were getting here.
    p->retire.store(false, std::memory_order_relaxed);
    pidleput(p);
  } else {
    p->status.store(kPRetired, std::memory_order_relaxed);
  }
}

// Sleeps the calling thread (an M on g0) for ns < 1 s, through the raw system call: the
// interposed nanosleep is for goroutines.
void os_sleep_ns(long ns) {
  struct timespec ts = {0, ns};
  sys(SYS_nanosleep, &ts, nullptr);
}

// The ~3 us pause before stealing a running victim's runnext (it is probably about to run it).
// A sleep, as Go's usleep(3), not a spin: spinning 3 us, this M stole the runnext of a pair
// of goroutines handing work back and forth every few microseconds and split the pair across
// threads (ping-pong at GOMAXPROCS 2 took 1.3x its GOMAXPROCS 1 time, buffered select4 2-3x).
// The kernel's timer slack (50 us by default) makes the sleep longer than asked, so such a
// theft is rare and takes a runnext that has really waited.
void steal_pause() {
  os_sleep_ns(3000);
}

G* steal_work(P* p) {
  int n = sched.nallp.load(std::memory_order_acquire);
  if (n <= 1) return nullptr;
  for (int pass = 0; pass < 4; pass++) {
    bool last = pass == 3;
    // A random start and a stride coprime to n visits every P once.
    std::uint32_t start = fastrandn(static_cast<std::uint32_t>(n));
    std::uint32_t stride = 1;
    for (std::uint32_t s = 1 + fastrandn(static_cast<std::uint32_t>(n));
         s <= static_cast<std::uint32_t>(n); s++) {
      std::uint32_t a = s, b = static_cast<std::uint32_t>(n);
      while (b != 0) {
        std::uint32_t t = a % b;
        a = b;
        b = t;
      }
      if (a == 1) {
        stride = s;
        break;
      }
    }
    for (int i = 0; i < n; i++) {
      P* victim = allp_at(static_cast<int>((start + static_cast<std::uint32_t>(i) * stride) %
                                           static_cast<std::uint32_t>(n)));
      if (victim == p || victim == nullptr) continue;
      // A victim busy with a long goroutine does not get to its timers: run the due ones.
      if (std::int64_t next = victim->timers.next.load(std::memory_order_relaxed);
          next != 0 && next <= nanotime()) {
        timers_run(&victim->timers, nanotime());
        if (G* gp = p->runq.pop()) return gp;
      }
      bool victim_running = victim->status.load(std::memory_order_relaxed) == kPRunning;
      G* gp = p->runq.steal_from(victim->runq, last, [&] {
        if (victim_running) steal_pause();
      });
      if (gp != nullptr) {
        pstat_add(p->stats.steals);
        return gp;
      }
    }
  }
  return nullptr;
}

bool any_local_work() {
  int n = sched.nallp.load(std::memory_order_acquire);
  for (int i = 0; i < n; i++) {
    P* pp = allp_at(i);
    if (pp != nullptr && !pp->runq.empty()) return true;
  }
  return false;
}

// Finds a goroutine to run; parks the M while there is none. Returns with m->p held. *inherit
// is set when the goroutine came from runnext: it continues the current time slice. Returns
// null, without a P, when the M stayed idle long enough that its thread should exit.
G* find_runnable(M* m, bool* inherit) {
  *inherit = false;
  for (;;) {
    P* p = m->p;
    if (p->retire.load(std::memory_order_relaxed)) {
      if (m->spinning) {
        m->spinning = false;
        sched.nmspinning.fetch_sub(1, std::memory_order_seq_cst);
      }
      // Its queue went to the global queue, and this M may have been the one woken for work
      // elsewhere: hand the search on, or the wake-up would be lost with the retired P.
      retirep(m);
      wakep();
      if (!stopm_until_work(m)) return nullptr;
      continue;
    }
    G* gp = nullptr;
    // Due timers of this P first: what they ready lands in its run queue.
    if (std::int64_t next = p->timers.next.load(std::memory_order_relaxed); next != 0) {
      timers_run(&p->timers, nanotime());
    }
    // Every 8th pass, one other P's due timers (round-robin, so every heap is watched by every
    // M without an O(GOMAXPROCS) scan, and a fast ping-pong's passes pay nearly nothing).
    // While that P's M runs one long goroutine - a spawn loop, a computation - its own passes
    // do not come; its timers would wait for the end of the slice and then ready a slice's
    // worth of sleepers at once, most of them overflowing to the back of the global queue
    // (the 100,000-timer storm's p99 was that).
    if (int np = sched.nallp.load(std::memory_order_acquire);
        np > 1 && (++p->timer_probe_pass & 7) == 0) {
      if (p->timer_probe >= np) p->timer_probe = 1;
      int i = p->id + p->timer_probe++;
      P* other = allp_at(i >= np ? i - np : i);
      if (other != nullptr && other != p &&
          other->timers.next.load(std::memory_order_relaxed) != 0) {
        timers_run(&other->timers, nanotime());
      }
    }
    // Fairness: every 61 ticks look at the global queue first, so two goroutines readying
    // each other through runnext cannot starve it.
    if (p->schedtick % 61 == 0 && sched.runqsize.load(std::memory_order_relaxed) > 0) {
      LockGuard hold(sched.lock);
      gp = globrunqget(p, 1);
    }
    if (gp == nullptr) gp = p->runq.pop(inherit);
    if (gp == nullptr && sched.runqsize.load(std::memory_order_relaxed) > 0) {
      LockGuard hold(sched.lock);
      gp = globrunqget(p, 0);
    }
    // The network, without blocking, before stealing (as in Go's findRunnable): readiness no
    // M has collected yet runs here, without waking a thread or turning this M spinning (a
    // spinning M that finds work wakes another, which would then sleep in the poller and take
    // every next event through a thread wake-up). Skipped while an M is blocked in the poller:
    // that one collects it.
    if (gp == nullptr && netpoll_inited() && netpoll_any_waiters() && !netpoll_blocked()) {
      G* list = nullptr;
      if (int n = netpoll(0, &list); n > 0) {
        gp = list;
        list = gp->schedlink;
        gp->schedlink = nullptr;
        inject_netpoll_batch(list, n - 1);
      }
    }
    if (gp == nullptr) {
      int procs = sched.gomaxprocs.load(std::memory_order_relaxed);
      if (m->spinning || 2 * sched.nmspinning.load(std::memory_order_relaxed) <
                             procs - sched.npidle.load(std::memory_order_relaxed)) {
        if (!m->spinning) {
          m->spinning = true;
          sched.nmspinning.fetch_add(1, std::memory_order_seq_cst);
        }
        gp = steal_work(p);
      }
    }
    if (gp != nullptr) {
      // GOMAXPROCS shrank while this M searched (a steal can follow a pause of tens of
      // microseconds): a retired P starts nothing new. gp goes to the global queue, the P
      // retires at the top of the loop.
      if (p->retire.load(std::memory_order_relaxed)) [[unlikely]] {
        *inherit = false;
        LockGuard hold(sched.lock);
        globrunqput(gp);
        continue;
      }
      return gp;
    }

    // Nothing: give up the P and park (rules 3 and 4 of the design essay).
    sched.lock.lock();
    // set_gomaxprocs sets retire under sched.lock: checked here, it is exact.
    if (p->retire.load(std::memory_order_relaxed)) {
      sched.lock.unlock();
      continue;
    }
    if (sched.runqsize.load(std::memory_order_relaxed) > 0) {
      gp = globrunqget(p, 0);
      if (gp != nullptr) {
        sched.lock.unlock();
        return gp;
      }
    }
    m->p = nullptr;
    pidleput(p);
    sched.lock.unlock();
    bool was_spinning = m->spinning;
    if (m->spinning) {
      m->spinning = false;
      if (sched.nmspinning.fetch_sub(1, std::memory_order_seq_cst) <= 0) {
        fatal("findrunnable: negative nmspinning");
      }
    }
    if (was_spinning && (sched.runqsize.load(std::memory_order_seq_cst) > 0 || any_local_work())) {
      sched.lock.lock();
      P* np = pidleget();
      sched.lock.unlock();
      if (np != nullptr) {
        acquirep(m, np);
        m->spinning = true;
        sched.nmspinning.fetch_add(1, std::memory_order_seq_cst);
        continue;
      }
    }
    if (!stopm_until_work(m)) return nullptr;
  }
}

// ---------------------------------------------------------------------------------------------
// Switching.

inline void save_eh(M* m, G* gp) {
  auto* t = m->eh;
  gp->eh = *t;
  *t = EhGlobals{};
}

inline void restore_eh(M* m, G* gp) {
  *m->eh = gp->eh;
}

// Records one sampled runnable→running latency in bucket i: <= 2^(7+i) ns (the last: more).
inline void record_sched_latency(PStats* s, std::int64_t ns) {
  if (ns < 0) ns = 0;
  int b = ns <= 128 ? 0 : std::bit_width(static_cast<std::uint64_t>(ns - 1)) - 7;
  if (b >= kSchedLatBuckets) b = kSchedLatBuckets - 1;
  pstat_add(s->lat[b]);
  pstat_add(s->lat_sum_ns, static_cast<std::uint64_t>(ns));
}

// gp becomes m's running goroutine (from g0 in execute, from the parking goroutine in
// park_direct): the bookkeeping of a switch-in, short of the switch itself. A goroutine that
// does not inherit the time slice starts a new one: the P's schedtick, which sysmon watches,
// moves on.
inline void begin_run(M* m, G* gp, bool inherit) {
  if constexpr (kCheckedReady) {
    std::uint32_t st = kGRunnable;
    if (!gp->status.compare_exchange_strong(st, kGRunning, std::memory_order_acq_rel)) {
      RawBuf b;
      b.str("fatal error: execute: goroutine ")
          .udec(gp->goid)
          .str(" is not runnable (status ")
          .udec(st)
          .str(")\n");
      b.flush();
      print_goroutine_header(gp, "");
      die();
    }
  }
  m->curg.store(gp, std::memory_order_relaxed);
  goro_tls_g = gp;
  gp->m = m;
  gp->status.store(kGRunning, std::memory_order_relaxed);
  gp->preempt.store(false, std::memory_order_relaxed);
  if (!inherit) {
    m->p->schedtick.store(m->p->schedtick.load(std::memory_order_relaxed) + 1,
                          std::memory_order_relaxed);
  }
  pstat_add(m->p->stats.switches);
  if (gp->runnable_since != 0) {
    record_sched_latency(&m->p->stats, nanotime() - gp->runnable_since);
    gp->runnable_since = 0;
  }
  restore_eh(m, gp);
}

// Asks the cache for the top of the saved stack of the goroutine queued next on p, while gp
// runs: resuming a goroutine first reads its saved registers and then returns through the
// frames above them (park, the poller, the I/O call), and with a thousand goroutines taking
// turns (a server, a connection each) those lines are no longer cached - a miss of ~100 ns
// per line per switch. gp's run (a syscall or two) gives the prefetch time to land. A hint
// only: the goroutine may be stolen, or even run and park again meanwhile, so its sp is read
// racily (the record is never unmapped) and the lines prefetched may go unused; prefetching
// never faults. Not under TSan, which would rightly flag the racy read.
inline void prefetch_next(P* p) {
#if !defined(GORO_TSAN)
  constexpr int kLines = 8;  // the saved frame and the runtime frames above it
  // Only behind a backlog: two or three goroutines taking turns (a yield or channel ping-pong)
  // have their stacks cached already, and the prefetch cost them ~4 ns a switch.
  constexpr std::uint32_t kMinQueued = 4;
  G* n = p->runq.peek_head(kMinQueued);
  if (n == nullptr) return;
  const char* sp = static_cast<const char*>(__atomic_load_n(&n->sp, __ATOMIC_RELAXED));
  if (sp == nullptr) return;
  for (int i = 0; i < kLines; i++) __builtin_prefetch(sp + 64 * i);
#else
  (void)p;
#endif
}

// stack_bind found no free slot near and could not map one (the address space is used up):
// the free slot gp's credit guarantees is in another P's cache ("Shortage" in stack.cpp).
// Every running M flushes its cache at its next schedule() while this waits; the idle Ps'
// caches, which no M will flush, are flushed here under sched.lock (which owns idle Ps).
// A slot turns up within a preemption period or so. If none does in 10 s, a goroutine that
// cannot be preempted holds its P (and its slots), and this ends the process rather than hang.
void wait_for_stack_slot(M* m, G* gp) {
  stack_slot_waiters.fetch_add(1, std::memory_order_relaxed);
  const std::int64_t deadline = nanotime() + 10'000'000'000;
  while (true) {
    {
      LockGuard hold(sched.lock);
      for (P* p = sched.pidle; p != nullptr; p = p->link) stack_flush_cache(&p->cache);
    }
    if (stack_bind(&m->p->cache, gp)) break;
    if (nanotime() > deadline) {
      RawBuf b;
      b.str("fatal error: goroutine ")
          .udec(gp->goid)
          .str(
              ": no stack: a new slab cannot be mapped and no other P gave a free slot "
              "back in 10 s\n");
      b.flush();
      print_goroutine_header(gp, "");
      die();
    }
    os_sleep_ns(100'000);
  }
  stack_slot_waiters.fetch_sub(1, std::memory_order_relaxed);
}

// g0 → gp. Returns (on g0) when gp calls mcall.
void execute(M* m, G* gp, bool inherit) {
  if (gp->sp == nullptr) {
    // First run: bind a stack slot now, on the M that runs it (see stack.cpp).
    if (!stack_bind(&m->p->cache, gp)) [[unlikely]] {
      wait_for_stack_slot(m, gp);
    }
    gp->sp = make_context(reinterpret_cast<void*>(gp->stack_hi), goroutine_entry, gp);
    gp->started.store(true, std::memory_order_relaxed);
  }
  begin_run(m, gp, inherit);
  prefetch_next(m->p);
#if defined(GORO_ASAN)
  __sanitizer_start_switch_fiber(&m->asan_g0_fake_stack, reinterpret_cast<void*>(gp->stack_lo),
                                 gp->stack_hi - gp->stack_lo);
#endif
#if defined(GORO_TSAN)
  __tsan_switch_to_fiber(gp->tsan_fiber, 0);
#endif
  goro_switch_from_g0(&m->g0_sp, gp->sp, &m->control_words);
#if defined(GORO_ASAN)
  __sanitizer_finish_switch_fiber(m->asan_g0_fake_stack, nullptr, nullptr);
#endif
}

void finish_direct_park(M* m, G* self);

// First thing a goroutine does when it resumes (from mcall or park_direct): if the goroutine
// that ran before it on this M parked by switching straight to it, finish that park here.
inline void after_switch_in(G* self) {
  M* m = self->m;
  if (m->direct_prev != nullptr) [[unlikely]] {
    finish_direct_park(m, self);
  }
}

// The caller's side of a switch back to g0: on return the goroutine has been resumed, maybe
// by another M.
void mcall(G* gp, G* (*fn)(M*, G*), bool dying = false) {
  M* m = gp->m;
  if (!stack_canary_ok(gp)) {
    RawBuf b;
    b.str("goroutine ")
        .udec(gp->goid)
        .str(": stack overflow (canary at the bottom of its ")
        .udec(gp->slot_size)
        .str("-byte stack was overwritten)\n");
    b.flush();
    print_goroutine_header(gp, "");
    die();
  }
  if (gp->oslocks != 0) oslock_switch(gp, dying);  // GORO_DEBUG_OSLOCK (deadlock.cpp)
  m->mcall_fn = fn;
  save_eh(m, gp);
#if defined(GORO_ASAN)
  __sanitizer_start_switch_fiber(dying ? nullptr : &gp->asan_fake_stack, m->g0_stack_bottom,
                                 m->g0_stack_size);
#else
  (void)dying;
#endif
#if defined(GORO_TSAN)
  __tsan_switch_to_fiber(m->tsan_g0_fiber, 0);
#endif
  goro_switch_to_g0(&gp->sp, m->g0_sp, &m->control_words);
#if defined(GORO_ASAN)
  __sanitizer_finish_switch_fiber(gp->asan_fake_stack, nullptr, nullptr);
#endif
  after_switch_in(gp);
}

// Hands m's P to another M (or the idle list) while m blocks without running goroutines (a
// locked M whose goroutine parked, or one whose thread exits). Go's handoffp.
void handoffp(P* p) {
  // Work to do, or a retirement to carry out: an M must run the P.
  if (!p->runq.empty() || sched.runqsize.load(std::memory_order_relaxed) > 0 ||
      p->retire.load(std::memory_order_relaxed)) {
    startm(p, false);
    return;
  }
  // Nobody spinning and no idle P: this P is the only one that could pick up new work.
  int zero = 0;
  if (sched.nmspinning.load(std::memory_order_relaxed) + sched.npidle.load() == 0 &&
      sched.nmspinning.compare_exchange_strong(zero, 1, std::memory_order_seq_cst)) {
    startm(p, true);
    return;
  }
  sched.lock.lock();
  if (sched.runqsize.load(std::memory_order_relaxed) > 0) {
    sched.lock.unlock();
    startm(p, false);
    return;
  }
  pidleput(p);
  bool sleeper = sched.timer_sleeper != nullptr;
  sched.lock.unlock();
  // Its timers must still fire: make sure an idle M watches them.
  if (std::int64_t next = p->timers.next.load(std::memory_order_relaxed); next != 0) {
    wake_timer_sleeper(next);
    if (!sleeper) wakep();
  }
}

// The current M picked gp, which is locked to another M: hand gp's M our P (it runs gp next)
// and park (Go's startlockedm). Returns false when m should exit (see stopm_until_work).
[[nodiscard]] bool startlockedm(M* m, G* gp) {
  M* lm = gp->lockedm;
  P* p = releasep(m);
  lm->nextp.store(p, std::memory_order_release);
  lm->park.wakeup();
  return stopm_until_work(m);
}

// m's locked goroutine is not running: give the P away and sleep until startlockedm hands a P
// back with the goroutine runnable (Go's stoplockedm).
void stoplockedm(M* m) {
  if (m->p != nullptr) handoffp(releasep(m));  // none after a blocking call lost it
  acquirep(m, wait_nextp(m));
}

// The thread of m exits: its goroutine returned while locked to it.
void mexit(M* m) {
  handoffp(releasep(m));
  m->lockedg = nullptr;
}

// The M's scheduling loop. Returns (without a P) when the thread should exit: its locked
// goroutine returned, or it stayed idle too long.
void schedule_loop_body(M* m) {
  G* next = nullptr;
  for (;;) {
    G* gp = next;
    bool inherit = true;
    if (gp == nullptr) {
      if (stack_slots_wanted()) [[unlikely]] {
        stack_flush_cache(&m->p->cache);
      }
      gp = find_runnable(m, &inherit);
      if (gp == nullptr) return;
      if (m->spinning) reset_spinning(m);
      if (gp->lockedm != nullptr && gp->lockedm != m) {
        if (!startlockedm(m, gp)) return;
        continue;
      }
      if constexpr (kChaos) {
        // Bounce a goroutine off the M it last ran on, a few times, so it resumes elsewhere.
        if (gp->lastm == m && sched.gomaxprocs.load(std::memory_order_relaxed) > 1 &&
            gp->migrate_tries < 4) {
          gp->migrate_tries++;
          {
            LockGuard hold(sched.lock);
            globrunqput(gp);
          }
          wakep();
          continue;
        }
        gp->migrate_tries = 0;
        gp->lastm = m;
      }
    }
    execute(m, gp, inherit);
    // The goroutine that switched back is m's current one: not gp when gp parked by a direct
    // switch to another goroutine (park_direct), which then called mcall.
    gp = m->curg.load(std::memory_order_relaxed);
    auto fn = m->mcall_fn;
    m->mcall_fn = nullptr;
    m->curg.store(nullptr, std::memory_order_relaxed);
    goro_tls_g = nullptr;
    next = fn(m, gp);
    if (m->exiting) {
      m->exiting = false;
      mexit(m);
      return;
    }
    if (m->lockedg != nullptr && next == nullptr) {
      // The locked goroutine parked or yielded: this M runs nothing else meanwhile.
      stoplockedm(m);
      next = m->lockedg;
    } else if (m->p == nullptr) {
      // Back from a blocking call without a P (exitsyscall0): wait for one.
      if (!stopm_until_work(m)) return;
    }
  }
}

void init_m_thread(M* m) {
  tls_m = m;
  m->tid.store(static_cast<int>(gettid()), std::memory_order_relaxed);
  m->eh = reinterpret_cast<EhGlobals*>(__cxa_get_globals());
  m->control_words = current_control_words();
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    void* addr = nullptr;
    size_t size = 0;
    pthread_attr_getstack(&attr, &addr, &size);
    m->g0_stack_bottom = addr;
    m->g0_stack_size = size;
    pthread_attr_destroy(&attr);
  }
#if defined(GORO_TSAN)
  m->tsan_g0_fiber = __tsan_get_current_fiber();
#endif
  stack_init_thread(m);
  sigset_t none;
  sigemptyset(&none);
  pthread_sigmask(SIG_SETMASK, &none, nullptr);
}

void* mstart(void* arg) {
  auto* m = static_cast<M*>(arg);
  init_m_thread(m);
  // Started idle (queued in midle by newm): wait for startm's P.
  acquirep(m, m->start_idle ? wait_nextp(m) : m->nextp.exchange(nullptr));
  schedule_loop_body(m);
  // The thread ends (a locked goroutine returned, or it was idle too long); its record waits
  // for reuse by newm.
  stack_exit_thread(m);
  tls_m = nullptr;
  LockGuard hold(sched.lock);
  sched.mlive--;
  m->freelink = sched.mfree;
  sched.mfree = m;
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// mcall functions (run on g0 after the goroutine switched out).

struct ParkArgs {
  bool (*unlockf)(G*, void*);
  void* arg;
};

G* park_m(M* m, G* gp) {
  // The parking goroutine left its arguments in M-independent storage: its own G.
  auto* a = reinterpret_cast<ParkArgs*>(gp->param);
  gp->waitsince = sched.coarse_now.load(std::memory_order_relaxed);
  gp->parkgen.store(gp->parkgen.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  gp->status.store(kGWaiting, std::memory_order_release);
  if (a->unlockf != nullptr && !a->unlockf(gp, a->arg)) {
    gp->status.store(kGRunnable, std::memory_order_relaxed);
    (void)m;
    return gp;  // cancelled: run it again at once
  }
  return nullptr;
}

// The direct switch
// -----------------
// A goroutine that parks while its P's runnext holds a goroutine that has run before (the
// partner of a ping-pong, the waiter a send or unlock just readied) switches straight to it,
// skipping g0: one switch instead of two, and no find_runnable. park_m's work - marking the
// parker waiting, then running its unlock function - must still happen after the parker's
// registers are saved, so the next goroutine does it on its own stack first thing when it
// resumes (after_switch_in → finish_direct_park, through m->direct_prev).
//  1. park_direct (on the parker's stack) checks that g0 has nothing to do that this switch
//     would skip: the M is not locked to a goroutine, the P is not being retired, runnext is
//     not locked to another M, and fewer than kDirectStreak direct switches ran since the M
//     last went through g0 (so find_runnable's timers, global-queue fairness and netpoll
//     checks still run at least every kDirectStreak parks). Chaos builds never take it.
//  2. It takes runnext (the CAS find_runnable's pop makes; a thief may have taken it: then
//     g0's path), raises next's preempt_off (a preemption signal must not divert next while
//     it finishes the park, which is runtime code), does execute's bookkeeping (begin_run:
//     next inherits the time slice, as from runnext) and switches.
//  3. next, resumed on the same M, finds m->direct_prev: it marks the parker waiting, runs
//     the unlock function (false: the park is cancelled and the parker goes back to runnext),
//     and lowers its preempt_off.
// A goroutine therefore resumes in mcall or in park_direct, never elsewhere, and both end
// with after_switch_in. Goroutines never run (sp == null) go through g0: their first code is
// goroutine_entry.
constexpr std::uint32_t kDirectStreak = 64;

void finish_direct_park(M* m, G* self) {
  G* gp = m->direct_prev;
  m->direct_prev = nullptr;
  if (park_m(m, gp) != nullptr) {
    // Cancelled (the unlock function found the wake-up already there): runnable again.
    sched_track_runnable(gp);
    runqput(m->p, gp, true);
  }
  self->preempt_off.store(self->preempt_off.load(std::memory_order_relaxed) - 1,
                          std::memory_order_relaxed);
}

// Parks gp (its ParkArgs in gp->param) by switching straight to runnext; returns false, having
// changed nothing, when g0's path must be taken. Returns after gp was readied and resumed.
bool park_direct(G* gp) {
  if constexpr (kChaos) return false;
  M* m = gp->m;
  P* p = m->p;
  if (m->direct_streak >= kDirectStreak) {
    m->direct_streak = 0;
    return false;
  }
  if (m->lockedg != nullptr || gp->oslocks != 0 || !stack_canary_ok(gp) ||
      p->retire.load(std::memory_order_relaxed)) {
    return false;
  }
  // Until take_next succeeds a thief may be running `next`, so only its atomics may be read
  // (`started`: a fresh goroutine, the common case after go(), goes through g0).
  G* next = p->runq.peek_next();
  if (next == nullptr || !next->started.load(std::memory_order_relaxed) ||
      !p->runq.take_next(next)) {
    return false;
  }
  if (next->sp == nullptr || next->lockedm != nullptr) {
    // Never run after all (the relaxed load may be older than take_next's acquire) or wired
    // to another M (g0's path hands it over: startlockedm).
    runqput(p, next, true);
    return false;
  }
  m->direct_streak++;
  next->preempt_off.store(next->preempt_off.load(std::memory_order_relaxed) + 1,
                          std::memory_order_relaxed);
  save_eh(m, gp);
  m->direct_prev = gp;
  begin_run(m, next, true);
#if defined(GORO_ASAN)
  __sanitizer_start_switch_fiber(&gp->asan_fake_stack, reinterpret_cast<void*>(next->stack_lo),
                                 next->stack_hi - next->stack_lo);
#endif
#if defined(GORO_TSAN)
  __tsan_switch_to_fiber(next->tsan_fiber, 0);
#endif
  goro_switch_g_to_g(&gp->sp, next->sp, &m->control_words);
#if defined(GORO_ASAN)
  __sanitizer_finish_switch_fiber(gp->asan_fake_stack, nullptr, nullptr);
#endif
  after_switch_in(gp);
  return true;
}

// Gives up the P without blocking (yield and preemption): gp becomes runnable behind the work
// that waited. If the global queue has work, gp queues behind it (Go's Gosched and
// gopreempt_m always do); otherwise at the tail of the local queue (not runnext), so that a
// goroutine that yields or is preempted in a loop takes turns with its queue-mates and leaves
// the global queue its fairness share.
G* requeue_m(M* m, G* gp) {
  gp->parkgen.store(gp->parkgen.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  gp->status.store(kGRunnable, std::memory_order_release);
  sched_track_runnable(gp);
  if (sched.runqsize.load(std::memory_order_relaxed) > 0) {
    LockGuard hold(sched.lock);
    globrunqput(gp);
  } else {
    runqput(m->p, gp, false);
  }
  return nullptr;
}

}  // namespace

// A preempted goroutine queues behind everything that waited: behind the global queue when
// that has work (Go's gopreempt_m always uses it), else at the tail of its P's local queue.
// Deviation from Go, on purpose: with the global queue otherwise empty, a preempted goroutine
// put there would be picked again by the next 1-in-61 fairness tick ahead of the local queue it
// just held up, and a goroutine that waited one full slice would wait a second one (a spinner
// at GOMAXPROCS 1 delayed its queue-mate 20 ms instead of 10 in about one preemption in 61).
// The same rule as yield_m's, so that one policy serves both ways of giving up the P.
// An idle P is woken to take the preempted goroutine or its queue-mates.
G* preempt_m(M* m, G* gp) {
  requeue_m(m, gp);
  wakep();
  return nullptr;
}

namespace {

G* yield_m(M* m, G* gp) {
  return requeue_m(m, gp);
}

G* goexit_m(M* m, G* gp) {
  gp->status.store(kGDead, std::memory_order_relaxed);
  gp->m = nullptr;
  if (gp->lockedm != nullptr) {
    // Returned while locked: the thread goes with it (schedule_loop_body sees `exiting`).
    gp->lockedm = nullptr;
    gp->lockdepth = 0;
    m->exiting = true;
  }
#if defined(GORO_TSAN)
  __tsan_destroy_fiber(gp->tsan_fiber);
  gp->tsan_fiber = nullptr;
#endif
  LocalCache* lc = &m->p->cache;
  lc->ngoroutines.store(lc->ngoroutines.load(std::memory_order_relaxed) - 1,
                        std::memory_order_relaxed);
  stack_release(lc, gp);
  gfput(&m->p->cache, gp);
  return nullptr;
}

void demangled_type(const std::type_info* ti, RawBuf& b) {
  if (ti == nullptr) {
    b.str("unknown");
    return;
  }
  int status = 0;
  char* d = abi::__cxa_demangle(ti->name(), nullptr, nullptr, &status);
  b.str(d != nullptr ? d : ti->name());
  std::free(d);
}

std::size_t closure_heap_align(std::size_t align) {
  return align < 16 ? 16 : align;
}

void free_closure(G* gp) {
  if (gp->closure_on_heap) ::operator delete (gp->closure, std::align_val_t{gp->closure_align});
  gp->closure = nullptr;
}

// The first frame of every goroutine (entered from goro_trampoline).
[[noreturn]] void goroutine_entry(void* arg) noexcept {
  auto* gp = static_cast<G*>(arg);
#if defined(GORO_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  gp->preempt_off.store(0, std::memory_order_relaxed);  // see newproc_start
#endif
  try {
    gp->run(gp->closure);
  } catch (...) {
    // An exception must not unwind past this frame (there is nothing above it but the
    // trampoline). Like an unrecovered Go panic, it ends the process.
    RawBuf b;
    b.str("panic: goroutine ").udec(gp->goid).str(": uncaught exception of type ");
    demangled_type(abi::__cxa_current_exception_type(), b);
    try {
      throw;
    } catch (const std::exception& e) {
      b.str(": ").str(e.what());
    } catch (...) {
    }
    b.str("\n");
    b.flush();
    print_goroutine_header(gp, "");
    die();
  }
  // From here on runtime code runs on this stack: no preemption (it would migrate mcall).
  if (gp->preempt_off.load(std::memory_order_relaxed) != 0) {
    RawBuf b;
    b.str("fatal error: goroutine ").udec(gp->goid).str(" returned with a goro::NoPreempt alive\n");
    b.flush();
    print_goroutine_header(gp, "");
    die();
  }
  gp->preempt_off.store(1, std::memory_order_relaxed);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  free_closure(gp);
  mcall(gp, goexit_m, /*dying=*/true);
  fatal("goexit: dead goroutine resumed");
}

// ---------------------------------------------------------------------------------------------
// Thread Gs: the waiter records of plain threads. Pooled and never freed, so a late
// futex_wake by a waker always targets valid memory (see ready()).

Lock thread_g_lock;
G* thread_g_free = nullptr;

struct ThreadGHolder {
  G* g = nullptr;
  ~ThreadGHolder() {
    if (g == nullptr) return;
    LockGuard hold(thread_g_lock);
    g->schedlink = thread_g_free;
    thread_g_free = g;
  }
};

thread_local ThreadGHolder tls_thread_g;

// The LocalCache of a plain thread that starts goroutines; registered (for num_goroutine) and
// flushed when the thread exits.
struct ThreadCache;
Lock thread_caches_lock;
ThreadCache* thread_caches = nullptr;  // under thread_caches_lock

struct ThreadCache {
  LocalCache cache;
  ThreadCache* next = nullptr;
  ThreadCache* prev = nullptr;
  bool registered = false;
  ~ThreadCache() {
    if (!registered) return;
    stack_flush_cache(&cache);
    gflush(&cache);
    LockGuard hold(thread_caches_lock);
    sched.ngoroutines_retired.fetch_add(cache.ngoroutines.load(std::memory_order_relaxed),
                                        std::memory_order_relaxed);
    sched.created_retired.fetch_add(cache.created.load(std::memory_order_relaxed),
                                    std::memory_order_relaxed);
    if (prev != nullptr) {
      prev->next = next;
    } else {
      thread_caches = next;
    }
    if (next != nullptr) next->prev = prev;
  }
};

thread_local ThreadCache tls_cache;

GORO_OPAQUE LocalCache* thread_cache() {
  ThreadCache* tc = &tls_cache;
  if (!tc->registered) {
    LockGuard hold(thread_caches_lock);
    tc->registered = true;
    tc->next = thread_caches;
    if (thread_caches != nullptr) thread_caches->prev = tc;
    thread_caches = tc;
  }
  return &tc->cache;
}

GORO_OPAQUE G* thread_g() {
  ThreadGHolder& h = tls_thread_g;
  if (h.g == nullptr) {
    G* g = nullptr;
    {
      LockGuard hold(thread_g_lock);
      g = thread_g_free;
      if (g != nullptr) thread_g_free = g->schedlink;
    }
    if (g == nullptr) g = new G;
    g->schedlink = nullptr;
    g->stack_kind = kStackThread;
    g->status.store(kGRunning, std::memory_order_relaxed);
    h.g = g;
  }
  return h.g;
}

// ---------------------------------------------------------------------------------------------
// Start-up.

Lock start_lock;

void start_runtime() {
  LockGuard hold(start_lock);
  if (sched.started.load(std::memory_order_relaxed)) return;
  int procs = default_procs();
  if (const char* env = std::getenv("GOMAXPROCS"); env != nullptr && *env != 0) {
    char* end = nullptr;
    errno = 0;
    long v = std::strtol(env, &end, 10);
    if (errno == 0 && end != nullptr && *end == 0 && v >= 1 && v <= kMaxProcs) {
      procs = static_cast<int>(v);
    } else {
      RawBuf b;
      b.str("goro: ignoring GOMAXPROCS=")
          .str(env)
          .str(": want an integer in [1, ")
          .dec(kMaxProcs)
          .str("]\n");
      b.flush();
    }
  }
  if (procs > kMaxProcs) procs = kMaxProcs;
  stack_init();
  {
    LockGuard hold2(sched.lock);
    for (int i = procs - 1; i >= 0; i--) {
      P* p = new P;
      p->id = i;
      sched.allp[i] = p;
      pidleput(p);
    }
    sched.nallp.store(procs, std::memory_order_release);
    sched.gomaxprocs.store(procs, std::memory_order_relaxed);
  }
  sysmon_init();
  sched.started.store(true, std::memory_order_release);
  debug_init();
  stats_init();
}

// go() must not publish a goroutine that no M will ever run. If waking an M for it would need
// a new thread (an idle P, no idle or spinning M), create that thread now, idle, and fail
// before publishing if it cannot be created.
void ensure_m_for_wakeup() {
  if (sched.npidle.load(std::memory_order_relaxed) == 0 ||
      sched.nmspinning.load(std::memory_order_relaxed) != 0) {
    return;
  }
  if (sched.nmidle.load(std::memory_order_relaxed) > 0) return;
  int err = 0;
  if (!newm(nullptr, false, &err)) {
    // Only fatal to this go() when no M exists at all or we are on a plain thread: a goroutine
    // spawning from an M can always be run by that M later.
    if (getm() == nullptr) {
      throw std::system_error(err, std::generic_category(),
                              "goro::go: cannot create an OS thread to run the goroutine");
    }
  }
}

}  // namespace

void ensure_started() noexcept {
  if (!sched.started.load(std::memory_order_acquire)) start_runtime();
}

// ---------------------------------------------------------------------------------------------
// Park / ready.

LocalCache* local_cache() noexcept {
  M* m = getm();
  if (m != nullptr && m->p != nullptr) return &m->p->cache;
  return thread_cache();
}

G* waiter() noexcept {
  G* gp = getg();
  return gp != nullptr ? gp : thread_g();
}

void park(bool (*unlockf)(G*, void*), void* arg, WaitReason reason) noexcept {
  park_self(waiter(), unlockf, arg, reason);
}

void park_self(G* self, bool (*unlockf)(G*, void*), void* arg, WaitReason reason) noexcept {
  if (self->stack_kind != kStackThread) {
    G* gp = self;
    if (gp->insyscall) {
      RawBuf b;
      b.str("fatal error: goroutine ")
          .udec(gp->goid)
          .str(" would block (")
          .str(wait_reason_string(reason))
          .str(
              ") inside goro::blocking: the function run by blocking() must not wait on goro "
              "primitives\n");
      b.flush();
      print_goroutine_header(gp, "");
      die();
    }
    ParkArgs a{unlockf, arg};
    gp->param = reinterpret_cast<std::uintptr_t>(&a);
    gp->waitreason = reason;
    if (!park_direct(gp)) mcall(gp, park_m);
    gp->waitreason = WaitReason::kNone;
    return;
  }
  G* tg = self;
  tg->waitreason = reason;
  tg->status.store(kGWaiting, std::memory_order_release);
  // Counted as a thread waiting on goro (deadlock.cpp) before a waker can find it; ready()
  // uncounts it, so a woken thread that has not run yet is not counted as blocked.
  deadlock_thread_wait(+1);
  if (unlockf != nullptr && !unlockf(tg, arg)) {
    deadlock_thread_wait(-1);
    tg->status.store(kGRunning, std::memory_order_relaxed);
    return;
  }
  deadlock_thread_parked();
  while (tg->status.load(std::memory_order_acquire) == kGWaiting) {
    futex_wait(&tg->status, kGWaiting);
  }
  tg->status.store(kGRunning, std::memory_order_relaxed);
  tg->waitreason = WaitReason::kNone;
}

void ready(G* gp) noexcept {
  if (gp->stack_kind == kStackThread) {
    deadlock_thread_wait(-1);  // see park()
    gp->status.store(kGRunnable, std::memory_order_release);
    futex_wake(&gp->status, 1);
    return;
  }
  std::uint32_t st = gp->status.load(std::memory_order_acquire);
  bool ok = st == kGWaiting;
  if constexpr (kCheckedReady) {
    ok = gp->status.compare_exchange_strong(st, kGRunnable, std::memory_order_acq_rel);
  } else if (ok) {
    gp->status.store(kGRunnable, std::memory_order_relaxed);
  }
  if (!ok) {
    RawBuf b;
    b.str("fatal error: ready: goroutine ")
        .udec(gp->goid)
        .str(" is not waiting (status ")
        .udec(st)
        .str(")\n");
    b.flush();
    print_goroutine_header(gp, "");
    die();
  }
  sched_track_runnable(gp);
  M* m = getm();
  if (m != nullptr && m->p != nullptr) {
    runqput(m->p, gp, m->timer_readies < 0 || m->timer_readies++ == 0);
  } else {
    injectglist(gp);
  }
  wakep();
}

void gosched() noexcept {
  G* gp = getg();
  if (gp == nullptr) {
    sched_yield();
    return;
  }
  mcall(gp, yield_m);
}

void mcall_from(G* (*fn)(M*, G*)) noexcept {
  mcall(getg(), fn);
}

// ---------------------------------------------------------------------------------------------
// Blocking calls (Go's entersyscall / exitsyscall).
//
//  1. entersyscall: the goroutine stays on its M, which keeps nothing but a note of its P
//     (m->oldp); the P goes to kPSyscall with no M. The goroutine is not preemptible meanwhile
//     (it runs no scheduled code) and must not park.
//  2. If the call is short, exitsyscall takes the P back with one CAS kPSyscall → kPRunning.
//  3. sysmon (retake) takes a P that has stayed in kPSyscall for one of its rounds (>= 20 us)
//     when the P has queued work or no M is idle or spinning to pick up new work, and after
//     10 ms in any case, by the same CAS, and hands it to another M (handoffp).
//  4. Then exitsyscall takes any idle P; failing that, the goroutine goes to the global run
//     queue (exitsyscall0) and its M parks.
// A goroutine called from a plain thread or g0 runs the function directly.

G* exitsyscall0(M* m, G* gp) {
  (void)m;
  gp->status.store(kGRunnable, std::memory_order_relaxed);
  LockGuard hold(sched.lock);
  globrunqput(gp);
  return nullptr;
}

bool retake_syscall_p(P* p) {
  std::uint32_t st = kPSyscall;
  if (!p->status.compare_exchange_strong(st, kPRunning, std::memory_order_acq_rel)) return false;
  tls_newm_cause = p->syscall_site;  // a thread started for this P is the call's (stats)
  handoffp(p);
  tls_newm_cause = nullptr;
  return true;
}

void entersyscall(const void* site) noexcept {
  G* gp = getg();
  if (gp == nullptr) return;
  if (site == nullptr) site = __builtin_return_address(0);  // the blocking() call (stats)
  gp->preempt_off.store(gp->preempt_off.load(std::memory_order_relaxed) + 1,
                        std::memory_order_relaxed);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  M* m = gp->m;
  P* p = releasep(m);
  m->oldp = p;
  gp->syscall_site = site;
  gp->insyscall = true;
  p->syscall_site = site;
  p->syscalltick.store(p->syscalltick.load(std::memory_order_relaxed) + 1,
                       std::memory_order_relaxed);
  p->status.store(kPSyscall, std::memory_order_release);
}

void exitsyscall() noexcept {
  G* gp = getg();
  if (gp == nullptr) return;
  M* m = gp->m;
  P* p = m->oldp;
  m->oldp = nullptr;
  gp->insyscall = false;
  std::uint32_t st = kPSyscall;
  if (p->status.compare_exchange_strong(st, kPRunning, std::memory_order_acq_rel)) {
    acquirep(m, p);  // the fast path: nobody took it
  } else {
    sched.lock.lock();
    P* np = pidleget();
    sched.lock.unlock();
    if (np != nullptr) {
      acquirep(m, np);
    } else {
      mcall(gp, exitsyscall0);  // resumes on an M that holds a P
    }
  }
  std::atomic_signal_fence(std::memory_order_seq_cst);
  std::uint32_t n = gp->preempt_off.load(std::memory_order_relaxed) - 1;
  gp->preempt_off.store(n, std::memory_order_relaxed);
  if (n == 0 && gp->preempt.load(std::memory_order_relaxed)) preempt_yield();
}

// Go's sync_runtime_canSpin, less one condition: Go also refuses to spin while the P's local
// run queue holds goroutines, so as not to delay them. Measured here (bench/goro/mutex.cpp,
// 8 goroutines on one goro::Mutex, GOMAXPROCS 2 and 8), that rule made most contended
// lock_slow calls park at once: the local queue is rarely empty when more goroutines than Ps
// share a lock, and a park costs the waiter a place behind that queue plus a ready by the next
// unlock, where the holder on another P releases within nanoseconds. Spinning anyway took the
// benchmark from 1.2x Go's time per operation to parity. What the queued goroutines lose is
// bounded: at most 4 rounds of 30 pauses (a few microseconds) per contended lock, against the
// time slice they are already waiting out. The rule that remains - some other P must be
// running, where the holder may be - is what makes a spin able to succeed.
bool can_spin(int iter) noexcept {
  if (iter >= 4 || num_cpu() <= 1) return false;
  M* m = getm();
  if (m == nullptr || m->p == nullptr) return true;  // plain thread: a short spin is fine
  return sched.gomaxprocs.load(std::memory_order_relaxed) >
         sched.npidle.load(std::memory_order_relaxed) +
             sched.nmspinning.load(std::memory_order_relaxed) + 1;
}

// ---------------------------------------------------------------------------------------------
// Diagnostics.

void pin_for_fatal() noexcept {
  G* self = getg();
  if (self == nullptr) return;
  self->preempt_off.store(self->preempt_off.load(std::memory_order_relaxed) + 1,
                          std::memory_order_relaxed);
  std::atomic_signal_fence(std::memory_order_seq_cst);
}

void print_goroutine_header(G* g, const char* what) noexcept {
  pin_for_fatal();
  RawBuf b;
  b.str("goroutine ").udec(g->goid);
  if (g->name[0] != 0) b.str(" \"").str(g->name).str("\"");
  b.str(what).str(" created at ");
  if (g->site.file != nullptr) {
    b.str(g->site.file).str(":").udec(g->site.line);
    if (g->site.function != nullptr) b.str(" in ").str(g->site.function);
    b.str("\n");
    b.flush();
    return;
  }
  b.ptr(g->site.pc);
  b.flush();
  // Symbolizing allocates; only reached on fatal paths.
  std::string line = symbolize_line(g->site.pc, true);
  b.str(" ").str(line).str("\n");
  b.flush();
}

void print_current_goroutine_context() noexcept {
  G* g = getg();
  if (g == nullptr) return;
  print_goroutine_header(g, " [running]:");
}

// ---------------------------------------------------------------------------------------------
// goro::go.

G* newproc_alloc(const GoOptions* opts, std::size_t size, std::size_t align, void** closure,
                 SpawnSite site) {
  EnterRuntime enter;
  ensure_started();
  std::size_t stack_size = 0;
  if (opts != nullptr && opts->stack_size != 0) {
    stack_size = opts->stack_size;
    if (stack_size < kMinStackSize || stack_size > kMaxStackSize) {
      throw std::invalid_argument("goro::go: stack_size must be within [16 KiB, 1 GiB]");
    }
  }
  LocalCache* p = local_cache();
  G* gp = gfget(p);
  try {
    stack_reserve(p, gp, stack_size);
  } catch (...) {
    gfput(p, gp);
    throw;
  }
  if (site.pc == nullptr) site.pc = __builtin_return_address(0);
  gp->site = site;
  if (opts != nullptr && !opts->name.empty()) {
    std::size_t n = std::min(opts->name.size(), sizeof(gp->name) - 1);
    std::memcpy(gp->name, opts->name.data(), n);
    gp->name[n] = 0;
  }
  gp->closure_size = static_cast<std::uint32_t>(size);
  if (size <= kInlineClosure && align <= 16) {
    gp->closure = gp->closure_buf;
    gp->closure_on_heap = false;
  } else {
    gp->closure = ::operator new (size, std::align_val_t{closure_heap_align(align)});
    gp->closure_on_heap = true;
    gp->closure_align = static_cast<std::uint32_t>(closure_heap_align(align));
  }
  *closure = gp->closure;
  // Where the caller keeps that pointer (spawn's `mem`, in the caller's frame): newproc_start
  // clears it, so that no stale pointer to the closure outlives go() there (leak.cpp treats a
  // pointer into a parked goroutine's closure as a reference to it).
  gp->param = reinterpret_cast<std::uintptr_t>(closure);
  return gp;
}

void newproc_abort(G* gp) noexcept {
  EnterRuntime enter;
  free_closure(gp);
  LocalCache* p = local_cache();
  stack_unreserve(p, gp);
  gfput(p, gp);
}

std::uint64_t newproc_start(G* gp, void (*run)(void*), void (*destroy)(void*)) {
  EnterRuntime enter;
  try {
    ensure_m_for_wakeup();
  } catch (...) {
    destroy(gp->closure);
    newproc_abort(gp);
    throw;
  }
  if (gp->param != 0) *reinterpret_cast<void**>(gp->param) = nullptr;  // see newproc_alloc
  gp->param = 0;
  gp->run = run;
  gp->destroy = destroy;
#if defined(GORO_ASAN)
  // Not preemptible until goroutine_entry has finished ASan's fiber switch: a preemption
  // before that would start another switch inside it.
  gp->preempt_off.store(1, std::memory_order_relaxed);
#else
  gp->preempt_off.store(0, std::memory_order_relaxed);
#endif
  gp->preempt.store(false, std::memory_order_relaxed);
  gp->oslocks = 0;
  gp->lockedm = nullptr;
  gp->lockdepth = 0;
  LocalCache* lc = local_cache();
  if (lc->goid_next == lc->goid_end) {
    constexpr std::uint64_t kBatch = 16;
    lc->goid_next = sched.goidgen.fetch_add(kBatch, std::memory_order_relaxed) + 1;
    lc->goid_end = lc->goid_next + kBatch;
  }
  gp->goid = lc->goid_next++;
  gp->sp = nullptr;  // the stack is bound when it first runs
  gp->started.store(false, std::memory_order_relaxed);
#if defined(GORO_TSAN)
  gp->tsan_fiber = __tsan_create_fiber(0);
#endif
  lc->ngoroutines.store(lc->ngoroutines.load(std::memory_order_relaxed) + 1,
                        std::memory_order_relaxed);
  pstat_add(lc->created);
  std::uint64_t id = gp->goid;
  gp->trackseq = static_cast<std::uint8_t>(id);  // 1 in 64 sampled at creation (see G)
  sched_track_runnable(gp);
  gp->status.store(kGRunnable, std::memory_order_release);
  M* m = getm();
  if (m != nullptr && m->p != nullptr) {
    runqput(m->p, gp, true);
  } else {
    injectglist(gp);
  }
  wakep();
  return id;
}

void for_each_g_chunk(void (*fn)(const void* lo, std::size_t bytes, void* arg),
                      void* arg) noexcept {
  LockGuard hold(glock);
  if (gchunks == nullptr) return;
  for (G* chunk : *gchunks) fn(chunk, kGChunkBytes, arg);
}

void for_each_g(void (*fn)(G*, void*), void* arg) noexcept {
  // No preemption while holding glock: a holder preempted by signal would leave every M that
  // then needs glock (go()) blocked with its P, and could never run again to release it.
  EnterRuntime enter;
  LockGuard hold(glock);
  if (gchunks == nullptr) return;
  for (G* chunk : *gchunks) {
    for (std::size_t i = 0; i < kGsPerChunk; i++) {
      G* g = &chunk[i];
      std::uint32_t st = g->status.load(std::memory_order_acquire);
      if (st == kGRunnable || st == kGRunning || st == kGWaiting) fn(g, arg);
    }
  }
}

std::size_t g_chunks(G** out, std::size_t cap, std::size_t* per_chunk) noexcept {
  EnterRuntime enter;  // no preemption while holding glock
  *per_chunk = kGsPerChunk;
  LockGuard hold(glock);
  if (gchunks == nullptr) return 0;
  const std::size_t n = gchunks->size();
  for (std::size_t i = 0; i < n && i < cap; i++) out[i] = (*gchunks)[i];
  return n;
}

void for_each_m(void (*fn)(M*, void*), void* arg) noexcept {
  for (AllM* n = allm_head.load(std::memory_order_acquire); n != nullptr; n = n->next) {
    fn(n->m, arg);
  }
}

std::uint64_t goroutines_created() noexcept {
  EnterRuntime enter;
  std::uint64_t n = sched.created_retired.load(std::memory_order_relaxed);
  const int np = sched.nallp.load(std::memory_order_acquire);
  for (int i = 0; i < np; i++) n += sched.allp[i]->cache.created.load(std::memory_order_relaxed);
  LockGuard hold(thread_caches_lock);
  for (ThreadCache* tc = thread_caches; tc != nullptr; tc = tc->next) {
    n += tc->cache.created.load(std::memory_order_relaxed);
  }
  return n;
}

}  // namespace goro::internal

// ---------------------------------------------------------------------------------------------
// Public API (goro/runtime.hpp).

namespace goro {

using namespace internal;

void yield() noexcept {
  EnterRuntime enter;
  gosched();
}

int gomaxprocs() noexcept {
  ensure_started();
  return sched.gomaxprocs.load(std::memory_order_relaxed);
}

int max_procs() noexcept {
  return kMaxProcs;
}

int set_gomaxprocs(int n) {
  EnterRuntime enter;
  if (n < 1 || n > kMaxProcs) {
    throw std::invalid_argument("goro::set_gomaxprocs: n must be within [1, max_procs()]");
  }
  ensure_started();
  int old;
  {
    LockGuard hold(sched.lock);
    old = sched.gomaxprocs.load(std::memory_order_relaxed);
    int have = sched.nallp.load(std::memory_order_relaxed);
    for (int i = have; i < n; i++) {
      P* p = new P;
      p->id = i;
      sched.allp[i] = p;
      p->status.store(kPRetired, std::memory_order_relaxed);
    }
    if (n > have) sched.nallp.store(n, std::memory_order_release);
    sched.gomaxprocs.store(n, std::memory_order_relaxed);
    int total = sched.nallp.load(std::memory_order_relaxed);
    for (int i = 0; i < total; i++) {
      P* p = sched.allp[i];
      if (i < n) {
        p->retire.store(false, std::memory_order_relaxed);
        if (p->status.load(std::memory_order_relaxed) == kPRetired) pidleput(p);
      } else if (p->status.load(std::memory_order_relaxed) == kPIdle) {
        // Unlink from the idle list and retire at once.
        P** pp = &sched.pidle;
        while (*pp != nullptr && *pp != p) pp = &(*pp)->link;
        if (*pp == p) {
          *pp = p->link;
          sched.npidle.fetch_sub(1, std::memory_order_seq_cst);
        }
        p->status.store(kPRetired, std::memory_order_relaxed);
        stack_flush_cache(&p->cache);
        gflush(&p->cache);
        timers_move(&p->timers, &sched.allp[0]->timers);
      } else if (p->status.load(std::memory_order_relaxed) == kPRunning ||
                 p->status.load(std::memory_order_relaxed) == kPSyscall) {
        p->retire.store(true, std::memory_order_relaxed);
      }
    }
  }
  // New Ps: wake Ms if there is work for them.
  for (int i = old; i < n; i++) wakep();
  return old;
}

int num_cpu() noexcept {
  return internal::num_cpu();
}

std::int64_t num_goroutine() noexcept {
  EnterRuntime enter;
  // Per-cache counts (see LocalCache): live plain threads' caches are registered in
  // thread_caches, exited ones were folded into ngoroutines_retired.
  std::int64_t n = sched.ngoroutines_retired.load(std::memory_order_relaxed);
  int np = sched.nallp.load(std::memory_order_acquire);
  for (int i = 0; i < np; i++)
    n += sched.allp[i]->cache.ngoroutines.load(std::memory_order_relaxed);
  {
    LockGuard hold(thread_caches_lock);
    for (ThreadCache* tc = thread_caches; tc != nullptr; tc = tc->next) {
      n += tc->cache.ngoroutines.load(std::memory_order_relaxed);
    }
  }
  return n < 0 ? 0 : n;
}

int num_threads() noexcept {
  return count_threads();
}

bool in_goroutine() noexcept {
  return getg() != nullptr;
}

std::size_t default_stack_size() noexcept {
  return stack_default_size();
}

void set_default_stack_size(std::size_t bytes) {
  if (bytes < kMinStackSize || bytes > kMaxStackSize) {
    throw std::invalid_argument("goro::set_default_stack_size: must be within [16 KiB, 1 GiB]");
  }
  EnterRuntime enter;
  ensure_started();  // the stack classes exist from start-up on: no race with it
  stack_set_default_size(bytes);
}

namespace {
thread_local int tls_thread_lockdepth = 0;  // lock_os_thread() on a plain thread only counts
}  // namespace

void lock_os_thread() {
  EnterRuntime enter;
  G* g = getg();
  int& depth = g != nullptr ? g->lockdepth : tls_thread_lockdepth;
  if (depth == INT32_MAX) throw std::logic_error("goro::lock_os_thread: nesting overflow");
  if (depth++ == 0 && g != nullptr) {
    M* m = getm();
    g->lockedm = m;
    m->lockedg = g;
  }
}

void unlock_os_thread() {
  EnterRuntime enter;
  G* g = getg();
  int& depth = g != nullptr ? g->lockdepth : tls_thread_lockdepth;
  if (depth == 0) {
    throw std::logic_error("goro::unlock_os_thread: not locked (unbalanced with lock_os_thread)");
  }
  if (--depth == 0 && g != nullptr) {
    g->lockedm->lockedg = nullptr;
    g->lockedm = nullptr;
  }
}

int set_max_threads(int n) {
  if (n < 1) throw std::invalid_argument("goro::set_max_threads: n must be >= 1");
  LockGuard hold(sched.lock);
  int old = sched.maxmcount;
  sched.maxmcount = n;
  return old;
}

int os_thread_lock_depth() noexcept {
  G* g = getg();
  return g != nullptr ? g->lockdepth : tls_thread_lockdepth;
}

int os_thread_id() noexcept {
  M* m = getm();
  return m != nullptr ? m->tid.load(std::memory_order_relaxed) : static_cast<int>(gettid());
}

namespace this_goroutine {
std::uint64_t id() noexcept {
  G* g = getg();
  return g != nullptr ? g->goid : 0;
}
}  // namespace this_goroutine

}  // namespace goro
