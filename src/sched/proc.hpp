// proc.hpp - the scheduler's core structures (Go's runtime2.go) and its internal entry points.
// The design essay is at the top of proc.cpp.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "base/lock.hpp"
#include "base/platform.hpp"
#include "goro/go.hpp"
#include "sched/runq.hpp"
#include "time/timer.hpp"

namespace goro::internal {

struct M;
struct P;

// G status words. Each is a statement of who owns the G (and may write its fields).
enum GStatus : std::uint32_t {
  kGIdle = 0,  // fresh or released stack slot; owned by the stack allocator
  kGRunnable,  // in a run queue or being handed over; owned by that queue
  kGRunning,   // executing on g->m; owned by that M
  kGWaiting,   // parked; owned by whoever holds the reference that will ready it
  kGDead,      // finished; in a stack cache; owned by that cache
};

// Why a G is waiting (shown in dumps and stats).
enum class WaitReason : std::uint8_t {
  kNone,
  kMutex,
  kWaitGroup,
  kSemacquire,
  kOnce,
  kSleep,
  kChanReceive,
  kChanSend,
  kSelect,
  kSelectNoCases,
  kChanReceiveNil,
  kChanSendNil,
  kIORead,   // netpoll: waiting for an fd to become readable (or its deadline, or close)
  kIOWrite,  // netpoll: waiting for an fd to become writable
};
const char* wait_reason_string(WaitReason r) noexcept;

// Where a stack slot came from; decides what freeing and overflow detection mean.
enum StackKind : std::uint8_t {
  kStackGuarded = 0,       // default size, from a slab, PROT_NONE guard page at the bottom
  kStackCanary = 1,        // default size, from a slab, no guard page (past the map budget); canary
  kStackCustom = 2,        // non-default size, its own mapping with a guard page; unmapped at exit
  kStackCustomCanary = 3,  // as kStackCustom but past the map budget: no guard page
  kStackThread = 4,        // not a goroutine: a plain thread's waiter record (see thread_g)
};

// The C++ ABI's per-thread exception state (__cxa_eh_globals in libstdc++ and libc++/libcxxrt
// on x86-64): the chain of caught exceptions and the uncaught count. It follows its goroutine
// across switches (see "Per-thread state" in proc.cpp).
struct EhGlobals {
  void* caught_exceptions;
  unsigned int uncaught_exceptions;
};

// Bytes of closure stored in the G record itself; larger closures go to the heap.
inline constexpr std::size_t kInlineClosure = 64;

// A goroutine record. Allocated from chunks that are never freed (so a G pointer stays valid
// memory for the process lifetime) and reused through free lists (gfget/gfput in proc.cpp).
// Its stack slot is bound when it first runs (stack.cpp).
struct alignas(64) G {
  // --- Switch state: written by the M that switches it out, read by the one switching in.
  void* sp = nullptr;           // saved stack pointer while not running
  std::uintptr_t stack_lo = 0;  // lowest usable stack address
  std::uintptr_t stack_hi = 0;  // one past the highest usable address (this G's header)
  std::atomic<std::uint32_t> status{kGIdle};  // GStatus; also the futex word of a thread G
  M* m = nullptr;                             // the M running it, while kGRunning
  G* schedlink = nullptr;               // link in the global run queue or a batch; owned with the G
  std::atomic<G*> injectlink{nullptr};  // link in the injection queue (see proc.cpp)
  EhGlobals eh{};                       // C++ exception state while switched out
  std::uint64_t goid = 0;
  WaitReason waitreason = WaitReason::kNone;
  std::uint8_t stack_kind = kStackGuarded;
  // Whether it has run (its stack is bound and sp saved): set by execute on the first run,
  // cleared by newproc. Atomic because the direct switch (park_direct) reads it while a thief
  // may be starting the goroutine.
  std::atomic<bool> started{false};
  bool closure_on_heap = false;
  std::uint32_t closure_align = 0;  // alignment of a closure on the heap
  std::uint8_t migrate_tries = 0;   // chaos builds: how often it was bounced off its last M
  M* lastm = nullptr;               // chaos builds: the M it last ran on

  // --- Entry: set at creation, read once by the goroutine itself.
  void (*run)(void*) = nullptr;
  void (*destroy)(void*) = nullptr;
  void* closure = nullptr;

  // --- Debug: immutable while the goroutine lives.
  SpawnSite site{};
  char name[32] = {};

  // --- Stack slot: set by stack_reserve / stack_bind, immutable while the goroutine runs.
  std::uintptr_t slot_base = 0;  // lowest address of the slot (guard page or canary); 0 unbound
  std::size_t slot_size = 0;     // the slot's size, known from go() on

  // --- Sanitizer fiber state.
  void* asan_fake_stack = nullptr;
  void* tsan_fiber = nullptr;

  // --- Park/ready handshake (param passed by the readier, e.g. a semaphore ticket).
  std::uintptr_t param = 0;

  // --- Debug: when it last parked (nanotime(), to about 10 ms: sched.coarse_now) and how many
  // times it has parked (incremented before status becomes kGWaiting, so a reader that sees
  // the same parkgen around a read of a waiting G's stack knows the G did not run meanwhile).
  std::int64_t waitsince = 0;
  std::atomic<std::uint32_t> parkgen{0};

  // --- Scheduling latency sampling (stats): 1 in 64 of a G's runnable transitions are stamped
  // (sched_track_runnable) by whoever makes it runnable, and recorded by execute(). Owned with
  // the G. trackseq starts from the goid, so 1 in 64 goroutines is sampled at creation. (Go
  // samples 1 in 8; a stamp and a record cost two clock reads, ~45 ns here, which at 1 in 8
  // was 10% of a channel ping-pong round trip, at 1 in 64 about 1%.)
  std::int64_t runnable_since = 0;  // nanotime() of a sampled transition to runnable; 0: none
  std::uint8_t trackseq = 0;

  // --- Preemption (see "Preemption" in sysmon.cpp).
  // Runtime entries and NoPreempt guards in progress on this goroutine. Written only by the
  // goroutine itself (plain load/store, followed by a signal fence), read by the SIGURG handler
  // on the same thread.
  std::atomic<std::uint32_t> preempt_off{0};
  // Set by sysmon: yield at the next safe point. Cleared when the goroutine next runs.
  std::atomic<bool> preempt{false};
  // pthread mutexes (and rwlocks) held, counted by the interposer (hook/pthread_hooks.cpp).
  std::uint32_t oslocks = 0;

  // --- goro::blocking: set while the goroutine runs a blocking call (no P held), and where
  // the call was made (for stats: the sites responsible for extra threads).
  bool insyscall = false;
  const void* syscall_site = nullptr;

  // --- LockOSThread: the M it is wired to, and the nesting depth. Written by the goroutine.
  M* lockedm = nullptr;
  std::int32_t lockdepth = 0;

  // --- A small closure, stored here instead of on the heap.
  alignas(16) unsigned char closure_buf[kInlineClosure];
  // Bytes of the closure (set at creation; the leak finder reads a heap closure's extent).
  std::uint32_t closure_size = 0;
};

// A P: a logical processor. An M must hold a P to run goroutines.
enum PStatus : std::uint32_t {
  kPIdle = 0,  // in sched.pidle; owned by the scheduler lock
  kPRunning,   // held by p->m, or taken by pidleget and being handed to an M
  kPRetired,   // beyond GOMAXPROCS; owned by the scheduler lock; may be revived
  kPSyscall,   // its M runs a goroutine inside goro::blocking; owned by nobody: the M takes it
               // back by CAS to kPRunning when the call returns, or sysmon (or another M's
               // exitsyscall) takes it first by the same CAS and hands it on
};

inline constexpr int kStackCacheSize = 64;
inline constexpr int kGCacheSize = 64;
struct StackClass;

// Free G records, free stack slots and slot credits kept close to a spawner: each P has one
// (touched only by the M holding the P) and each plain thread that starts goroutines has one
// (thread-local). See gfget/gfput in proc.cpp and stack.cpp.
struct LocalCache {
  G* gfree[kGCacheSize];
  int ngfree = 0;
  std::uintptr_t slots[kStackCacheSize];  // base | kind, of slot_class
  int nslots = 0;
  StackClass* slot_class = nullptr;
  std::uint32_t slot_puts = 0;
  int credit = 0;  // slot credits of credit_class
  StackClass* credit_class = nullptr;
  // Goroutine ids handed out in batches (Go's goidcache): [goid_next, goid_end).
  std::uint64_t goid_next = 0;
  std::uint64_t goid_end = 0;
  // Goroutines started minus goroutines ended through this cache; summed by num_goroutine().
  // Written only by the owner (relaxed stores, no read-modify-write), read by anyone.
  std::atomic<std::int64_t> ngoroutines{0};
  // Goroutines started through this cache (monotonic; same discipline). goroutines_created().
  std::atomic<std::uint64_t> created{0};
};

// Scheduler counters of one P, summed by goro::stats() (src/debug/stats.cpp). Written only by
// the M holding the P, by relaxed load + store (pstat_add: no read-modify-write, so no locked
// instruction on the hot path); read by anyone. Handing the P to another M (sched.lock, the
// status CAS, startm's release) orders one owner's writes before the next owner's.
inline constexpr int kSchedLatBuckets = 25;  // bucket i < 24: latency <= 2^(7+i) ns; 24: more
struct PStats {
  std::atomic<std::uint64_t> switches{0};      // goroutines switched to (execute)
  std::atomic<std::uint64_t> steals{0};        // successful steals from another P's run queue
  std::atomic<std::uint64_t> global_takes{0};  // takes from the global run queue (globrunqget)
  std::atomic<std::uint64_t> lat_sum_ns{0};    // sum of the sampled latencies recorded in lat
  std::atomic<std::uint64_t> lat[kSchedLatBuckets]{};  // sampled runnable→running latencies
};
inline void pstat_add(std::atomic<std::uint64_t>& c, std::uint64_t d = 1) noexcept {
  c.store(c.load(std::memory_order_relaxed) + d, std::memory_order_relaxed);
}

struct alignas(64) P {
  std::int32_t id = 0;
  std::atomic<std::uint32_t> status{kPIdle};
  std::atomic<bool> retire{false};  // set by set_gomaxprocs: stop at the next schedule
  P* link = nullptr;                // in sched.pidle; under sched.lock
  std::atomic<M*> m{nullptr};       // holder while running (written by it; sysmon reads it)
  // Incremented by its M each time it starts a goroutine on a new time slice; read by sysmon.
  std::atomic<std::uint32_t> schedtick{0};
  // find_runnable's look at other Ps' timers (its M's only): passes since the last look, and
  // the offset (1..nallp-1) of the P it looks at next.
  std::uint32_t timer_probe_pass = 0;
  std::int32_t timer_probe = 1;
  // Incremented by its M at each goro::blocking entry; read by sysmon.
  std::atomic<std::uint32_t> syscalltick{0};
  // The goro::blocking call site of the goroutine that left it in kPSyscall: written by its M
  // before the status store (release), read by whoever takes the P by CAS (stats: threads
  // created for blocking calls are charged to it).
  const void* syscall_site = nullptr;
  RunQueue<G, 256> runq;
  TimerHeap timers;  // its own lock
  LocalCache cache;  // owner only
  PStats stats;      // owner-only writes (pstat_add), read by stats.cpp and schedtrace
};

// An M: an OS thread that runs goroutines. Its own thread stack is its "g0": the scheduler
// loop and the code that runs between goroutines (mcall functions) run there.
struct M {
  void* g0_sp = nullptr;          // the g0 context's saved stack pointer while a goroutine runs
  std::atomic<G*> curg{nullptr};  // the goroutine running on it; written only by this M
  P* p = nullptr;                 // the P it holds; written by this M (or before it starts)
  P* oldp = nullptr;              // during goro::blocking: the P it left in kPSyscall
  // A P handed over by startm (written before its park.wakeup(), read after park wakes; a
  // stale wake-up can come first, so the reader waits until it is non-null).
  std::atomic<P*> nextp{nullptr};
  bool spinning = false;     // looking for work; counted in sched.nmspinning
  bool start_idle = false;   // created without a P (queued in midle before its thread ran)
  bool idle_listed = false;  // in sched.midle; under sched.lock
  Note park;                 // idle Ms sleep here
  M* schedlink = nullptr;    // in sched.midle; under sched.lock
  std::int64_t id = 0;
  std::atomic<int> tid{0};  // read by sysmon to signal it
  pthread_t thread{};
  // LockOSThread: the goroutine wired to this M (it runs nothing else), written by that
  // goroutine; `exiting` is set when it returned while locked, so the thread exits.
  G* lockedg = nullptr;
  bool exiting = false;
  // Set by sysmon just before it sends SIGURG to this thread, consumed by the handler: tells
  // a preemption signal from one the application (or the kernel, for TCP urgent data) sent.
  std::atomic<bool> preempt_signal{false};
  M* freelink = nullptr;  // in sched.mfree once its thread exited; under sched.lock
  // What to run on g0 after the current goroutine switched away; returns a G to run at once
  // (a cancelled park) or null to schedule.
  G* (*mcall_fn)(M*, G*) = nullptr;
  // The direct switch (proc.cpp, park_direct): the goroutine that parked by switching straight
  // to this M's next goroutine, whose park that next goroutine finishes (the unlock that park_m
  // runs on g0) first thing when it resumes; null otherwise. direct_streak counts the direct
  // switches since the M last went through g0. Both are this M's own (its running goroutines).
  G* direct_prev = nullptr;
  std::uint32_t direct_streak = 0;
  // While this M runs a heap's due timers (timers_run): how many goroutines they readied so
  // far; -1 outside. The first takes runnext, the rest queue at the tail in the order they
  // fired (deadline order): each taking runnext would run the latest deadline first.
  int timer_readies = -1;
  EhGlobals* eh = nullptr;          // this thread's __cxa_eh_globals
  std::uint64_t control_words = 0;  // the thread's current MXCSR | x87 CW << 32 (arch switch)
  void* altstack = nullptr;
  // Sanitizer state for the g0 stack.
  const void* g0_stack_bottom = nullptr;
  std::size_t g0_stack_size = 0;
  void* asan_g0_fake_stack = nullptr;
  void* tsan_g0_fiber = nullptr;
};

inline constexpr int kMaxProcs = 1024;

// sched.sleep_until while no M is the timer sleeper: below every deadline, so that arming a
// timer then takes no lock (an M that parks later becomes the sleeper and sees the timer).
inline constexpr std::int64_t kNoTimerSleeper = INT64_MIN;

// Process-wide scheduler state (Go's schedt).
struct Sched {
  Lock lock;
  // Idle Ms, under lock.
  M* midle = nullptr;
  std::atomic<int> nmidle{0};  // written under lock, also read without it
  std::int64_t mnext = 0;      // Ms created so far (also the next M id)
  int mlive = 0;               // Ms whose thread exists or is being created, under lock
  int maxmcount = 10000;       // goro::set_max_threads, under lock
  // Idle Ps, under lock; npidle is also read without it.
  P* pidle = nullptr;
  std::atomic<int> npidle{0};
  std::atomic<int> nmspinning{0};
  // Global run queue, under lock (plus the lock-free injection queue in proc.cpp); runqsize
  // counts both and is also read without the lock.
  G* runq_head = nullptr;
  G* runq_tail = nullptr;
  std::atomic<int> runqsize{0};
  std::atomic<int> gomaxprocs{0};
  std::atomic<int> nallp{0};  // Ps created so far (never freed)
  P* allp[kMaxProcs] = {};
  std::atomic<std::int64_t> ngoroutines_retired{0};  // counts of flushed thread caches
  std::atomic<std::uint64_t> created_retired{0};     // LocalCache::created of flushed ones
  std::atomic<std::uint64_t> goidgen{0};
  std::atomic<bool> started{false};
  // The idle M that sleeps until the earliest timer (see "Timers" in proc.cpp), under lock;
  // sleep_until is its deadline (INT64_MAX while it has none), or kNoTimerSleeper while no M
  // is the sleeper; also read without the lock.
  M* timer_sleeper = nullptr;
  std::atomic<std::int64_t> sleep_until{kNoTimerSleeper};
  // Whether the timer sleeper sleeps in the network poller (some P was idle when it went to
  // sleep) rather than on its note (every P busy: they poll for themselves; see stopm), and
  // whether pidleput has woken it on its note to move it there. Under lock.
  bool sleeper_polls = false;
  bool sleeper_repoll = false;
  // M records whose threads exited (LockOSThread), for newm to reuse: M records are never
  // freed, so sysmon may read a stale p->m. Under lock.
  M* mfree = nullptr;
  // sysmon sleeps on sysmon_note while every P is idle (sysmonwait, under lock); pidleget
  // wakes it. coarse_now is nanotime() as of sysmon's last tick (or that wake-up).
  bool sysmonwait = false;
  Note sysmon_note;
  std::atomic<std::int64_t> coarse_now{0};
};

extern Sched sched;

// The calling thread's running goroutine, or null (g0, plain threads): written only by its
// own thread, wherever m->curg changes (begin_run; g0 after a switch back). C linkage so that
// getg's assembly can name it; initial-exec, so that its offset from the thread pointer is a
// link-time constant (one static TLS slot, also in a shared build).
extern "C" {
extern thread_local G* goro_tls_g __attribute__((tls_model("initial-exec"), visibility("hidden")));
}

// The current M, read so that the compiler cannot cache a thread-local address across a
// switch (see "Per-thread state" in proc.cpp).
M* getm() noexcept;

// The current goroutine (null on g0 and plain threads). Inline, one load: the thread-pointer
// relative read is an asm statement, so the compiler never keeps goro_tls_g's address (which
// is per thread) across a switch that moved the goroutine to another M. Keeping the *value*
// would be harmless: a goroutine is the same G on every M, and this runs only on it. A single
// load is also atomic with respect to an asynchronous preemption.
inline G* getg() noexcept {
  std::uintptr_t off;
  asm("movq goro_tls_g@gottpoff(%%rip), %0" : "=r"(off));
  G* g;
  asm volatile("movq %%fs:(%1), %0" : "=r"(g) : "r"(off));
  return g;
}

// Starts the runtime if it is not running yet. Cheap after the first call.
void ensure_started() noexcept;

// The one park/ready mechanism. park() blocks the caller: a goroutine switches to its g0,
// which runs unlockf(g, arg) after the goroutine is fully switched out (so a waker that
// finds g through a structure protected by that lock can ready it only after it is parked);
// a plain thread sleeps on a futex. If unlockf returns false the park is cancelled. ready()
// makes a parked G runnable; it may be called from anywhere, including plain threads.
// waiter() is the record of the calling goroutine or plain thread to queue before park().
G* waiter() noexcept;
void park(bool (*unlockf)(G*, void*), void* arg, WaitReason reason) noexcept;
// park() for a caller that already has its waiter() record (saves looking it up again).
void park_self(G* self, bool (*unlockf)(G*, void*), void* arg, WaitReason reason) noexcept;
void ready(G* gp) noexcept;

// A timer was armed for `when`: wake the timer sleeper if it would sleep past it, or start an
// M if no M is awake to see it (timer.cpp).
void wake_timer_sleeper(std::int64_t when) noexcept;

// Tries to add an M to run goroutines, if a P is idle and no M is spinning (Go's wakep).
void wakep() noexcept;

// Queues a batch of goroutines that the network poller made runnable (netpoll(): status
// kGRunnable, linked through schedlink, n of them) and starts Ms for idle Ps to run them (Go's
// injectglist). With a P (the caller's), as many as there are idle Ps go to the global queue,
// each with an M started for it, the rest to the P's run queue. Without a P, all go to the
// global queue and Ms are started for all but one: the caller is expected to take an idle P
// for that one itself (the timer sleeper does). proc.cpp.
void inject_netpoll_batch(G* list, int n) noexcept;

// Lets the calling goroutine run others and come back (Gosched). Plain threads sched_yield.
void gosched() noexcept;

// Preemption (sysmon.cpp). EnterRuntime brackets every runtime entry point that may run on a
// goroutine: while one is alive the goroutine is not preempted asynchronously, and when the
// outermost one ends, a pending preemption request is served (the goroutine yields to the
// global queue). So runtime code never migrates in the middle of touching its P or holding a
// Lock, except by parking, which it does deliberately.
void preempt_yield() noexcept;
class EnterRuntime {
 public:
  EnterRuntime() noexcept : g_(getg()) {
    if (g_ != nullptr) {
      g_->preempt_off.store(g_->preempt_off.load(std::memory_order_relaxed) + 1,
                            std::memory_order_relaxed);
      std::atomic_signal_fence(std::memory_order_seq_cst);
    }
  }
  ~EnterRuntime() {
    if (g_ == nullptr) return;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    std::uint32_t n = g_->preempt_off.load(std::memory_order_relaxed) - 1;
    g_->preempt_off.store(n, std::memory_order_relaxed);
    if (n == 0 && g_->preempt.load(std::memory_order_relaxed)) preempt_yield();
  }
  // The calling goroutine (null on a plain thread or g0): the same G for the whole scope,
  // whichever M it runs on.
  G* g() const noexcept { return g_; }
  EnterRuntime(const EnterRuntime&) = delete;
  EnterRuntime& operator=(const EnterRuntime&) = delete;

 private:
  G* g_;
};

// Starts sysmon and installs the preemption signal handler (sysmon.cpp); start_runtime calls
// it once.
void sysmon_init() noexcept;
// sysmon's view, for tests and stats: whether asynchronous preemption is enabled.
bool async_preempt_enabled() noexcept;
// The mcall function that queues a preempted goroutine on the global run queue (proc.cpp).
G* preempt_m(M* m, G* gp);
// Calls mcall(fn) for the calling goroutine (proc.cpp).
void mcall_from(G* (*fn)(M*, G*)) noexcept;
// sysmon: takes a P that sits in kPSyscall and hands it to another M. False if its M (or
// another) took it first.
bool retake_syscall_p(P* p);

// Whether a spinning wait on a contended lock is worthwhile (Go's sync_runtime_canSpin).
bool can_spin(int iter) noexcept;

// The calling thread's LocalCache: its P's, or the plain thread's own.
LocalCache* local_cache() noexcept;

// Calls fn(g, arg) for every goroutine that exists (runnable, running or waiting), under the
// G allocator's lock; fn must not start goroutines.
void for_each_g(void (*fn)(G*, void*), void* arg) noexcept;
// Calls fn(lo, bytes, arg) for every chunk of G records (live and free ones), under the G
// allocator's lock (the leak finder skips them: they hold stale stack addresses of dead Gs).
void for_each_g_chunk(void (*fn)(const void* lo, std::size_t bytes, void* arg), void* arg) noexcept;

// --- Observability (src/debug/stats.cpp, schedtrace.cpp).
// Copies up to cap pointers to the G record chunks (kGsPerChunk records each, returned in
// *per_chunk) into out under the G allocator's lock, and returns how many chunks exist: a
// reader then walks every record without the lock (records are never freed; their fields are
// read racily, status atomically).
std::size_t g_chunks(G** out, std::size_t cap, std::size_t* per_chunk) noexcept;
// Calls fn(m, arg) for every M record ever created (lock-free; a record whose thread exited,
// or that newm is reusing, is still visited: its fields are read racily).
void for_each_m(void (*fn)(M*, void*), void* arg) noexcept;
// Goroutines started since the process began (sum of LocalCache::created).
std::uint64_t goroutines_created() noexcept;
// Marks gp, which the caller is making runnable, for the scheduling latency sample (see G).
inline void sched_track_runnable(G* gp) noexcept {
  if ((gp->trackseq++ & 63) == 0) gp->runnable_since = nanotime();
}
// Runtime start: reads GORO_SCHEDTRACE / GORO_SCHEDDETAIL / GORO_DEBUG_ADDR and starts what
// they ask for; nothing when unset (schedtrace.cpp). Called once by start_runtime.
void stats_init() noexcept;
// newm created a thread to take over a P from the goro::blocking call at `site` (stats.cpp).
void stats_note_blocking_thread(const void* site) noexcept;

// The process is ending: the calling goroutine, if any, stays on this thread and this stack
// from here on (its preempt_off is raised for good, so it is never preempted and the I/O
// hooks never park it). Fatal reports call it before they symbolize: libdw reads the
// executable through the hooked read and pread, and a report made in a signal handler runs
// on the thread's alternate stack, which a goroutine resumed on another thread would no
// longer own. Async-signal-safe.
void pin_for_fatal() noexcept;
// Prints, raw, the current goroutine's id, state and creation site (for fatal messages).
void print_current_goroutine_context() noexcept;
// Prints g's id, name and creation site (symbolized if needed: it may allocate). Only for
// fatal paths: it pins the calling goroutine (pin_for_fatal).
void print_goroutine_header(G* g, const char* what) noexcept;

}  // namespace goro::internal
