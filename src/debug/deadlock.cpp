// deadlock.cpp - "all goroutines are asleep - deadlock!" (goro::debug::set_deadlock_mode), and
// the debug check for goroutines that switch away while holding an OS lock
// (goro::debug::set_oslock_check).
//
// Deadlock: what must hold, and who looks
// ----------------------------------------
// Go's checkdead counts Ms under the scheduler lock: Go owns every thread, so "no M is running"
// is the whole story. goro shares the process with plain threads that the runtime does not
// own, any of which may send on a channel or unlock a Mutex at any time. So the verdict needs,
// at one moment and stable for a while:
//  (a) every P idle, the global and every local run queue empty, every M parked idle
//      (sched.nmidle == sched.mlive: no M runs a goroutine, a blocking call, a timer callback,
//      or is being created or retired), no timer armed, no goroutine waiting for I/O;
//  (b) every goroutine parked (kGWaiting) on a goro primitive: a channel, select, Mutex,
//      RWMutex, WaitGroup, Once, Cond, Semaphore, Group (not sleeping, not in I/O wait);
//  (c) every thread outside the runtime blocked in a goro primitive: the threads of the
//      process (/proc/self/task) minus the runtime's own (the Ms, sysmon, the SIGQUIT dump
//      thread, this file's confirmation thread; in sanitizer builds the sanitizer's threads)
//      equal the plain threads parked in park() and not yet readied (deadlock_thread_wait:
//      park counts a thread before its waiter can be found, ready() uncounts it, so a thread
//      that was woken but not scheduled yet, however long the OS starves it, is not blocked).
//      A thread that is not (running, sleeping, joining, in a std::mutex, in a system call)
//      could still wake a goroutine: then there is no verdict, only a warning in kReport mode;
//  (d) nothing moved for 50 ms: the same goroutines with the same park generations and
//      states, the same threads, the same count of thread parks and wake-ups.
// Signal handlers cannot use goro primitives (they are not async-signal-safe), so they can wake
// goroutines only through file descriptors, which (a) covers.
//
// Protocol, in steps:
//  1. sysmon, when every P is idle, calls deadlock_idle_check before it sleeps. The cheap part
//     of (a) and the thread count of (c) run there (no allocation, a 64 KiB stack). If (c)
//     holds (or, in kReport mode, if only outside threads are missing), it starts the
//     confirmation thread (1 MiB stack, for the dump) and sleeps.
//  2. The confirmation thread takes snapshot 1 of (a)-(c), sleeps 50 ms, takes snapshot 2,
//     and checks (d). Certain: it prints "fatal error: all goroutines are asleep - deadlock!",
//     a goroutine dump (Detail::kFull) and how many plain threads are blocked too, and calls
//     _exit(2) (Go's status; no destructors or atexit handlers run, as on a Go fatal error).
//     Uncertain only because of outside threads, in kReport mode: one warning per process.
//  3. What can turn an idle process into a deadlock without a P becoming busy: a plain thread
//     parking (deadlock_thread_parked wakes sysmon when every P is idle), an outside thread
//     ending, or an M settling (parking after its P went idle, exiting, returning from a
//     blocking call whose P was taken): while outside threads or unsettled Ms are all that is
//     missing, sysmon looks again after a back-off of 100 ms doubling to 10 s.
// A plain thread's first park also starts the runtime (when detection is on), so that a
// program of plain threads deadlocked on goro channels is caught too.
// Not judged: while a goroutine wired by lock_os_thread is parked (its M waits outside the
// idle list, so (a) never holds), with GORO_SYSMON=0, and when other runtime helpers that are
// not counted here (an HTTP debug endpoint's thread) exist: all of these only withhold the
// verdict, never invent one.
//
// Parking with an OS lock held
// ----------------------------
// hook/pthread_hooks.cpp counts each goroutine's pthread mutexes and rwlocks (G::oslocks) so
// that asynchronous preemption never moves a goroutine holding one. A goroutine can still
// switch away holding one on its own: park (a channel operation inside a std::lock_guard),
// yield, a cooperative preemption at a runtime entry, the end of goro::blocking, or its exit.
// The lock then stays held by an OS thread that runs other goroutines: the next goroutine there
// that takes it blocks the thread in the kernel (with GOMAXPROCS=1 the program hangs), and the
// eventual unlock happens on another thread (undefined for a pthread mutex).
// With the check on (GORO_DEBUG_OSLOCK=1/warn/fatal or set_oslock_check), the hooks record in
// a side table, per goroutine, up to 4 held locks with the call chain of the lock call (6
// return addresses from the call site outwards, by the C++ unwinder: a few microseconds per
// lock, debug mode only);
// mcall, which every switch goes through, calls oslock_switch when G::oslocks != 0, and that
// reports the goroutine, the lock and the symbolized site (the first frame outside the C++
// standard headers), once per site. kWarn continues (the program may have been written so
// that nothing else takes the lock); kFatal ends the process after printing the goroutine's
// creation site. Off, the cost is the branch on G::oslocks in mcall (a field of the G being
// switched, already in cache) and one relaxed load per counted pthread lock operation.
// Symbolizing needs stack: with less than 96 KiB left on the goroutine's stack the site is
// printed as an address.
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <unwind.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "base/lock.hpp"
#include "base/platform.hpp"
#include "base/raw_log.hpp"
#include "debug/leak.hpp"
#include "debug/symbolize.hpp"
#include "debug/traceback.hpp"
#include "goro/debug.hpp"
#include "netpoll/netpoll.hpp"
#include "sched/proc.hpp"
#include "time/timer.hpp"

#if defined(GORO_TSAN)
// Exported by the TSan runtimes of GCC and Clang (not declared in their public headers).
extern "C" void __tsan_ignore_thread_begin();
extern "C" void __tsan_ignore_thread_end();
#endif

namespace goro::internal {
namespace {

// ---------------------------------------------------------------------------------------------
// Mode.

constexpr int kModeUnset = -1;
std::atomic<int> g_mode{kModeUnset};  // goro::debug::DeadlockMode, or unset (read from env)

int mode() noexcept {
  int m = g_mode.load(std::memory_order_relaxed);
  if (m != kModeUnset) return m;
  // Fatal by default, as Go's "all goroutines are asleep - deadlock!".
  int want = static_cast<int>(goro::debug::DeadlockMode::kFatal);
  if (const char* e = std::getenv("GORO_DEADLOCK"); e != nullptr && *e != 0) {
    if (std::strcmp(e, "0") == 0 || std::strcmp(e, "off") == 0) {
      want = static_cast<int>(goro::debug::DeadlockMode::kOff);
    } else if (std::strcmp(e, "report") == 0) {
      want = static_cast<int>(goro::debug::DeadlockMode::kReport);
    } else {
      want = static_cast<int>(goro::debug::DeadlockMode::kFatal);
    }
  }
  int expect = kModeUnset;
  g_mode.compare_exchange_strong(expect, want, std::memory_order_relaxed);
  return g_mode.load(std::memory_order_relaxed);
}

constexpr int kOff = static_cast<int>(goro::debug::DeadlockMode::kOff);
constexpr int kReport = static_cast<int>(goro::debug::DeadlockMode::kReport);

// ---------------------------------------------------------------------------------------------
// Plain threads parked in goro primitives.

std::atomic<int> g_thread_waiting{0};
std::atomic<std::uint64_t> g_thread_events{0};  // every park and wake-up of a plain thread

std::atomic<bool> g_checker_active{false};
std::atomic<bool> g_reported{false};
std::int64_t g_backoff = 0;  // sysmon only

constexpr std::int64_t kConfirmNs = 50'000'000;
constexpr std::int64_t kBackoffMinNs = 100'000'000;
constexpr std::int64_t kBackoffMaxNs = 10'000'000'000;

int gettid_() {
  return static_cast<int>(::syscall(SYS_gettid));
}

// The threads of the process: how many, and how many are the runtime's helpers (by name:
// the SIGQUIT dump thread; the confirmation thread and sysmon are known by tid).
struct Threads {
  int total = 0;
  int helpers = 0;
  std::uint64_t tid_hash = 0;  // to see that the set did not change
};

#if defined(GORO_ASAN) || defined(GORO_TSAN)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

// Whether thread tid blocks SIGURG (/proc/self/task/<tid>/status), the cheap sign of a
// sanitizer runtime thread, for sysmon's quick look (which has no stack to symbolize).
bool blocks_sigurg(int tid) {
  char path[64], text[2048];
  std::snprintf(path, sizeof path, "/proc/self/task/%d/status", tid);
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = ::read(fd, text, sizeof text - 1);
  ::close(fd);
  if (n <= 0) return false;
  text[n] = 0;
  const char* p = std::strstr(text, "SigBlk:");
  return p != nullptr &&
         (std::strtoull(p + 7, nullptr, 16) & (std::uint64_t{1} << (SIGURG - 1))) != 0;
}

// In sanitizer builds the sanitizer runtime's own threads (TSan's background thread) count as
// helpers: exactly (by where they are blocked) with `precise`, else every thread that blocks
// SIGURG (more helpers, so sysmon may start a confirmation that then finds no deadlock).
//
// File descriptors: the detector looks while the program may be using every descriptor it may
// have (a test that exhausts RLIMIT_NOFILE), and a descriptor it borrows for a moment would be
// one the program then misses. So it keeps /proc/self/task open for good (rewound for each
// look) and classifies each thread once (its name, and in sanitizer builds whether it is the
// sanitizer's), remembering the result while the thread exists: after the first look it opens
// nothing unless threads appear. A thread names itself just after it starts, so a "no" is
// only tentative: it is asked once more a second later, then kept. A classification that fails
// (no descriptor) is retried at the next look and counts the thread as outside the runtime
// meanwhile (no verdict, never a false one). A reused tid inherits nothing: entries of threads
// absent from a listing are dropped, and helper threads never exit.
constexpr std::int8_t kUnknown = -1, kNo = 0, kYes = 1, kSureNo = 2, kMaybeYes = 3;
constexpr std::int64_t kRecheckNs = 1'000'000'000;
struct TidInfo {
  int tid;
  std::int8_t named;         // the SIGQUIT dump thread ("goro-sigquit")
  std::int8_t san;           // a sanitizer runtime thread (by the precise test)
  std::int64_t named_since;  // when a tentative kNo was read, for each
  std::int64_t san_since;
  bool seen;
};
constexpr int kTidCache = 1024;
Lock threads_lock;             // guards task_fd and the cache (sysmon and the checker count)
int task_fd = -1;              // /proc/self/task, open for good once opened
TidInfo tid_cache[kTidCache];  // under threads_lock
int ntid_cache = 0;

TidInfo* tid_info(int tid) {
  for (int i = 0; i < ntid_cache; i++) {
    if (tid_cache[i].tid == tid) return &tid_cache[i];
  }
  if (ntid_cache == kTidCache) return nullptr;
  tid_cache[ntid_cache] = TidInfo{tid, kUnknown, kUnknown, 0, 0, false};
  return &tid_cache[ntid_cache++];
}

std::int8_t named_helper(int tid) {
  char path[64], comm[32] = {};
  std::snprintf(path, sizeof path, "/proc/self/task/%d/comm", tid);
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return kUnknown;
  ssize_t k = ::read(fd, comm, sizeof comm - 1);
  ::close(fd);
  if (k <= 0) return kUnknown;
  return std::strncmp(comm, "goro-sigquit", 12) == 0 ? kYes : kNo;
}

// Updates a classification: unknown, or a tentative answer older than kRecheckNs, is asked
// (again); two equal answers a second apart are kept for good. A "yes" is tentative too when
// confirm_yes (a user thread can be caught for a moment where a helper sleeps: inside a
// sanitizer interceptor); only a kept kYes makes a helper.
template <class Ask>
void classify(std::int8_t& v, std::int64_t& since, std::int64_t now, bool confirm_yes, Ask ask) {
  if (v == kYes || v == kSureNo) return;
  if ((v == kNo || v == kMaybeYes) && now - since < kRecheckNs) return;
  const std::int8_t was = v;
  const std::int8_t a = ask();
  if (a == kUnknown) return;  // ask again next time
  if (a == kNo) {
    v = was == kNo ? kSureNo : kNo;
  } else {
    v = !confirm_yes || was == kMaybeYes ? kYes : kMaybeYes;
  }
  since = now;
}

Threads count_threads(int sysmon_tid, int checker_tid, bool precise) {
  Threads t;
  LockGuard hold(threads_lock);
  if (task_fd < 0) {
    task_fd = ::open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (task_fd < 0) return Threads{-1, 0, 0};
  }
  if (::lseek(task_fd, 0, SEEK_SET) != 0) return Threads{-1, 0, 0};
  for (int i = 0; i < ntid_cache; i++) tid_cache[i].seen = false;
  char buf[2048];
  for (;;) {
    long n = ::syscall(SYS_getdents64, task_fd, buf, sizeof buf);
    if (n < 0) return Threads{-1, 0, 0};
    if (n == 0) break;
    for (long off = 0; off < n;) {
      const auto* e = reinterpret_cast<const struct dirent64*>(buf + off);
      off += e->d_reclen;
      int tid = std::atoi(e->d_name);
      if (tid <= 0) continue;
      t.total++;
      t.tid_hash = t.tid_hash * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(tid);
      if (tid == sysmon_tid || tid == checker_tid) {
        t.helpers++;
        continue;
      }
      TidInfo scratch{tid, kUnknown, kUnknown, 0, 0, false};
      TidInfo* ti = tid_info(tid);
      if (ti == nullptr) ti = &scratch;  // cache full: classify afresh
      ti->seen = true;
      const std::int64_t now = nanotime();
      classify(ti->named, ti->named_since, now, false, [&] { return named_helper(tid); });
      if (ti->named == kYes) {
        t.helpers++;
        continue;
      }
      if (kSanitized) {
        if (precise) {
          classify(ti->san, ti->san_since, now, true,
                   [&] { return static_cast<std::int8_t>(sanitizer_runtime_thread(tid)); });
        }
        if (ti->san == kYes || (!precise && ti->san != kSureNo && blocks_sigurg(tid))) {
          t.helpers++;
        }
      }
    }
  }
  int kept = 0;
  for (int i = 0; i < ntid_cache; i++) {
    if (tid_cache[i].seen) tid_cache[kept++] = tid_cache[i];
  }
  ntid_cache = kept;
  return t;
}

// Condition (a), the cheap counters.
struct Idle {
  bool idle = false;
  // Not idle only because an M or a P is between states (parking, exiting, a blocking call,
  // a locked goroutine's thread): nothing is sure to hand a P out when that settles, so sysmon
  // must look again by itself.
  bool unsettled = false;
  int mlive = 0;
};

Idle idle_now() {
  Idle r;
  const int procs = sched.gomaxprocs.load(std::memory_order_seq_cst);
  if (sched.npidle.load(std::memory_order_seq_cst) != procs) {
    r.unsettled = true;
    return r;
  }
  if (sched.runqsize.load(std::memory_order_seq_cst) != 0) return r;
  {
    LockGuard hold(sched.lock);
    if (sched.nmidle.load(std::memory_order_relaxed) != sched.mlive) {
      r.unsettled = true;
      return r;
    }
    r.mlive = sched.mlive;
  }
  const int np = sched.nallp.load(std::memory_order_acquire);
  for (int i = 0; i < np; i++) {
    if (P* p = sched.allp[i]; p != nullptr && !p->runq.empty()) return r;
  }
  if (timers_count() != 0) return r;
  if (netpoll_inited() && netpoll_any_waiters()) return r;
  r.idle = true;
  return r;
}

// Condition (b) for one goroutine: parked on a goro primitive.
bool primitive_wait(WaitReason w) {
  switch (w) {
    case WaitReason::kMutex:
    case WaitReason::kWaitGroup:
    case WaitReason::kSemacquire:
    case WaitReason::kOnce:
    case WaitReason::kChanReceive:
    case WaitReason::kChanSend:
    case WaitReason::kSelect:
    case WaitReason::kSelectNoCases:
    case WaitReason::kChanReceiveNil:
    case WaitReason::kChanSendNil:
      return true;
    default:
      return false;
  }
}

struct GSnap {
  G* g;
  std::uint64_t goid;
  std::uint32_t parkgen, status;
  WaitReason reason;
  bool insyscall, thread;
  bool operator==(const GSnap&) const = default;
};

GORO_RACY_READ GSnap read_gsnap(const G* g) {
  GSnap s;
  s.g = const_cast<G*>(g);
  s.parkgen = g->parkgen.load(std::memory_order_acquire);
  s.status = g->status.load(std::memory_order_acquire);
  s.goid = g->goid;
  s.reason = g->waitreason;
  s.insyscall = g->insyscall;
  s.thread = g->stack_kind == kStackThread;
  return s;
}

struct Snapshot {
  bool idle = false;
  int mlive = 0;
  Threads threads;
  int waiting = 0;
  std::uint64_t events = 0;
  std::vector<GSnap> gs;
  bool all_parked = true;
};

void collect_gsnap(G* g, void* arg) {
  auto* v = static_cast<std::vector<GSnap>*>(arg);
  if (v->size() < v->capacity()) v->push_back(read_gsnap(g));
}

Snapshot take(int sysmon_tid, int checker_tid) {
  Snapshot s;
  s.events = g_thread_events.load(std::memory_order_seq_cst);
  s.waiting = g_thread_waiting.load(std::memory_order_seq_cst);
  Idle i = idle_now();
  s.idle = i.idle;
  s.mlive = i.mlive;
  s.threads = count_threads(sysmon_tid, checker_tid, true);
  for (std::size_t cap = 1024;; cap *= 4) {
    s.gs.clear();
    s.gs.reserve(cap);
    for_each_g(collect_gsnap, &s.gs);
    if (s.gs.size() < cap) break;
  }
  for (const GSnap& g : s.gs) {
    if (g.thread) continue;
    if (g.status != kGWaiting || g.insyscall || !primitive_wait(g.reason)) s.all_parked = false;
  }
  if (g_thread_events.load(std::memory_order_seq_cst) != s.events) s.idle = false;
  return s;
}

int outside_threads(const Snapshot& s) {
  // Every thread but the runtime's: its Ms, sysmon and the confirmation thread (helpers), the
  // SIGQUIT dump thread (helpers).
  return s.threads.total - s.threads.helpers - s.mlive;
}

void write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    ssize_t k = ::write(fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return;
    p += k;
    n -= static_cast<std::size_t>(k);
  }
}

struct CheckerArgs {
  int sysmon_tid;
};

void* checker_main(void* arg) {
#if defined(GORO_TSAN)
  // Like sysmon, it reads G records that their owners are recycling (gfget reconstructs them
  // outside the G allocator's lock): benign by design (parkgen and the 50 ms re-check decide),
  // not something TSan can know.
  __tsan_ignore_thread_begin();
#endif
  const int sysmon_tid = static_cast<CheckerArgs*>(arg)->sysmon_tid;
  delete static_cast<CheckerArgs*>(arg);
  const int self = gettid_();
  Snapshot a = take(sysmon_tid, self);
  struct timespec ts {
    0, kConfirmNs
  };
  while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
  Snapshot b = take(sysmon_tid, self);
  const bool stable = a.idle && b.idle && a.all_parked && b.all_parked && a.gs == b.gs &&
                      a.threads.total == b.threads.total &&
                      a.threads.tid_hash == b.threads.tid_hash && a.waiting == b.waiting &&
                      a.events == b.events && a.mlive == b.mlive && b.threads.total > 0;
  if (stable && outside_threads(b) == b.waiting) {
    std::string s = "fatal error: all goroutines are asleep - deadlock!\n\n";
    try {
      s += goro::debug::goroutines(goro::debug::Detail::kFull);
    } catch (...) {
    }
    if (b.waiting > 0) {
      s += std::to_string(b.waiting) +
           " plain thread(s) (not shown) are blocked on goro primitives too.\n";
    }
    write_all(2, s.data(), s.size());
#if defined(GORO_TSAN)
    __tsan_ignore_thread_end();
#endif
    ::_exit(2);
  }
  if (stable && outside_threads(b) > b.waiting && mode() == kReport && !g_reported.exchange(true)) {
    const int n = outside_threads(b) - b.waiting;
    std::string s = "goro: all goroutines are asleep, but " + std::to_string(n) +
                    " thread(s) outside the runtime are not blocked on goro primitives and may "
                    "still wake them: no deadlock verdict (GORO_DEADLOCK=report)\n";
    try {
      s += goro::debug::goroutines(goro::debug::Detail::kGrouped);
    } catch (...) {
    }
    write_all(2, s.data(), s.size());
  }
#if defined(GORO_TSAN)
  __tsan_ignore_thread_end();
#endif
  g_checker_active.store(false, std::memory_order_release);
  return nullptr;
}

void start_checker(int sysmon_tid) {
  if (g_checker_active.exchange(true, std::memory_order_acq_rel)) return;
  auto* args = new (std::nothrow) CheckerArgs{sysmon_tid};
  pthread_attr_t attr;
  if (args == nullptr || pthread_attr_init(&attr) != 0) {
    delete args;
    g_checker_active.store(false);
    return;
  }
  pthread_attr_setstacksize(&attr, 1 << 20);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t t;
  int rc = pthread_create(&t, &attr, checker_main, args);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    delete args;
    g_checker_active.store(false);
    return;
  }
  pthread_setname_np(t, "goro-deadlock");
}

}  // namespace

void deadlock_thread_wait(int delta) noexcept {
  g_thread_waiting.fetch_add(delta, std::memory_order_seq_cst);
  g_thread_events.fetch_add(1, std::memory_order_seq_cst);
}

void deadlock_thread_parked() noexcept {
  if (mode() == kOff) return;
  if (!sched.started.load(std::memory_order_acquire)) {
    ensure_started();  // a program of plain threads alone can deadlock on goro too
  }
  // Every P idle: sysmon may be asleep until a P is handed out. Let it look again.
  if (sched.npidle.load(std::memory_order_relaxed) ==
      sched.gomaxprocs.load(std::memory_order_relaxed)) {
    sched.sysmon_note.wakeup();
  }
}

std::int64_t deadlock_idle_check() noexcept {
  if (mode() == kOff) return -1;
  if (g_checker_active.load(std::memory_order_acquire)) return kBackoffMinNs;
  Idle i = idle_now();
  auto backoff = [] {
    g_backoff = g_backoff == 0 ? kBackoffMinNs : std::min(g_backoff * 2, kBackoffMaxNs);
    return g_backoff;
  };
  if (!i.idle) {
    if (i.unsettled) return backoff();  // an M or P between states: look again
    g_backoff = 0;
    return -1;  // work queued, a timer armed or an I/O wait: a P will be handed out again
  }
  const int self = gettid_();
  Threads t = count_threads(self, 0, false);
  if (t.total < 0) return -1;
  const int outside = t.total - t.helpers - i.mlive;
  const int waiting = g_thread_waiting.load(std::memory_order_seq_cst);
  if (outside == waiting) {
    start_checker(self);
    return kBackoffMinNs;
  }
  if (outside < waiting) return 10'000'000;  // a thread is being created or is exiting
  if (mode() == kReport && !g_reported.load(std::memory_order_relaxed)) start_checker(self);
  return backoff();
}

// ---------------------------------------------------------------------------------------------
// Parking with an OS lock held.

std::atomic<int> oslock_check{0};

namespace {

constexpr int kMaxHeld = 4;
constexpr std::size_t kTableSize = 4096;  // goroutines holding pthread locks at once
constexpr std::size_t kMaxSites = 1024;   // distinct lock sites reported

constexpr int kSitePcs = 6;  // return addresses kept per lock, from the lock call outwards

struct Held {
  const void* lock;
  const void* site;
  const void* pcs[kSitePcs];  // the call chain from `site` (unoptimized code: std::mutex::lock
  int npcs;                   // and lock_guard are frames of their own)
  bool rwlock;
};

struct Entry {
  G* g;  // null: empty slot
  std::uint64_t goid;
  int n;  // held locks recorded in `held`
  Held held[kMaxHeld];
};

Lock table_lock;
Entry* table = nullptr;  // kTableSize entries, allocated when the check is first turned on
const void* reported_sites[kMaxSites];  // under table_lock
std::size_t nreported = 0;

std::size_t slot_of(const G* g) {
  return (reinterpret_cast<std::uintptr_t>(g) >> 6) * 0x9E3779B97F4A7C15ull % kTableSize;
}

// Under table_lock: g's entry, or null.
Entry* find(const G* g) {
  if (table == nullptr) return nullptr;
  for (std::size_t i = slot_of(g), k = 0; k < kTableSize; i = (i + 1) % kTableSize, k++) {
    if (table[i].g == g) return &table[i];
    if (table[i].g == nullptr) return nullptr;
  }
  return nullptr;
}

void erase(Entry* e) {
  std::size_t hole = static_cast<std::size_t>(e - table);
  for (std::size_t j = (hole + 1) % kTableSize; table[j].g != nullptr; j = (j + 1) % kTableSize) {
    const std::size_t home = slot_of(table[j].g);
    const bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
    if (!stays) {
      table[hole] = table[j];
      hole = j;
    }
  }
  table[hole].g = nullptr;
}

bool ensure_table() {
  if (table != nullptr) return true;
  table = static_cast<Entry*>(std::calloc(kTableSize, sizeof(Entry)));
  return table != nullptr;
}

__attribute__((constructor)) void oslock_from_env() {
  const char* e = std::getenv("GORO_DEBUG_OSLOCK");
  if (e == nullptr || e[0] == 0 || std::strcmp(e, "0") == 0) return;
  int m = std::strcmp(e, "fatal") == 0 ? 2 : 1;
  LockGuard hold(table_lock);
  if (ensure_table()) oslock_check.store(m, std::memory_order_relaxed);
}

bool std_header(const std::string& file) {
  return file.find("/include/c++/") != std::string::npos || file.starts_with("/usr/include/") ||
         file.find("/bits/") != std::string::npos;
}

// "function (file:line)" of the first frame of the lock site outside the standard headers.
std::string site_text(const Held& h) {
  for (int i = 0; i < h.npcs; i++) {
    for (const SymFrame& f : symbolize(h.pcs[i], true)) {
      if (f.file.empty() || std_header(f.file)) continue;
      return f.function + " (" + f.file + ":" + std::to_string(f.line) + ")";
    }
  }
  return symbolize_line(h.site, true);
}

// The call chain of the lock call, from `site` outwards, by the C++ unwinder. Not re-entered
// on one thread: the unwinder may take a pthread mutex of its own (libgcc's object list).
thread_local bool tls_unwinding = false;

struct Chain {
  const void* site;
  const void** pcs;
  int n;
  bool found;
};

_Unwind_Reason_Code chain_frame(_Unwind_Context* ctx, void* arg) {
  auto* c = static_cast<Chain*>(arg);
  const auto ip = reinterpret_cast<const void*>(_Unwind_GetIP(ctx));
  if (!c->found) {
    if (ip != c->site) return _URC_NO_REASON;  // the hook's own frames
    c->found = true;
  }
  c->pcs[c->n++] = ip;
  return c->n < kSitePcs ? _URC_NO_REASON : _URC_END_OF_STACK;
}

int call_chain(const void* site, const void** pcs) {
  pcs[0] = site;
  if (tls_unwinding) return 1;
  tls_unwinding = true;
  Chain c{site, pcs, 0, false};
  _Unwind_Backtrace(chain_frame, &c);
  tls_unwinding = false;
  if (c.n == 0) {
    pcs[0] = site;
    return 1;
  }
  return c.n;
}

}  // namespace

void oslock_acquired(G* g, const void* lock, const void* site, bool rwlock) noexcept {
  Held h{lock, site, {}, 0, rwlock};
  h.npcs = call_chain(site, h.pcs);
  LockGuard hold(table_lock);
  if (table == nullptr) return;
  Entry* e = find(g);
  if (e != nullptr && e->goid != g->goid) e->n = 0;  // a record reused by a new goroutine
  if (e == nullptr) {
    std::size_t i = slot_of(g);
    for (std::size_t k = 0; k < kTableSize && table[i].g != nullptr; k++) i = (i + 1) % kTableSize;
    if (table[i].g != nullptr) return;  // full: not recorded
    e = &table[i];
    e->g = g;
    e->n = 0;
  }
  e->goid = g->goid;
  if (e->n < kMaxHeld) e->held[e->n++] = h;
}

void oslock_released(G* g, const void* lock) noexcept {
  LockGuard hold(table_lock);
  Entry* e = find(g);
  if (e == nullptr) return;
  for (int i = e->n - 1; i >= 0; i--) {
    if (e->held[i].lock != lock) continue;
    for (int j = i; j + 1 < e->n; j++) e->held[j] = e->held[j + 1];
    e->n--;
    break;
  }
  if (e->n == 0) erase(e);
}

void oslock_switch(G* g, bool dying) noexcept {
  const int m = oslock_check.load(std::memory_order_relaxed);
  if (m == 0) return;
  Held held[kMaxHeld];
  int n = 0;
  bool report = false;
  {
    LockGuard hold(table_lock);
    Entry* e = find(g);
    if (e != nullptr && e->goid == g->goid) {
      n = e->n;
      std::copy(e->held, e->held + n, held);
    }
    // Once per site (a goroutine holding only locks from before the check: once per G record).
    const void* key = n > 0 ? held[n - 1].site : static_cast<const void*>(g);
    report = true;
    for (std::size_t i = 0; i < nreported; i++) report = report && reported_sites[i] != key;
    if (report && nreported < kMaxSites) reported_sites[nreported++] = key;
    if (dying && e != nullptr) erase(e);
  }
  if (!report && m != 2) return;
  RawBuf b;
  b.str("goro: goroutine ").udec(g->goid);
  if (dying) {
    b.str(" returns");
  } else if (g->waitreason != WaitReason::kNone) {
    b.str(" parks (").str(wait_reason_string(g->waitreason)).str(")");
  } else {
    b.str(" is switched out (a yield, a preemption, or the end of goro::blocking)");
  }
  b.str(" while holding ").udec(g->oslocks).str(" pthread lock(s)");
  if (n == 0) b.str(" (taken while GORO_DEBUG_OSLOCK was off: sites unknown)");
  b.str("\n");
  b.flush();
  // Symbolizing allocates and recurses: only with room left on the goroutine's stack.
  const auto sp = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
  const bool room = sp > g->stack_lo && sp - g->stack_lo > 96 * 1024;
  for (int i = n - 1; i >= 0; i--) {
    b.str("  ").str(held[i].rwlock ? "pthread rwlock " : "pthread mutex ").ptr(held[i].lock);
    b.str(" locked at ");
    if (room) {
      std::string text = site_text(held[i]);
      b.str(text.c_str());
    } else {
      b.ptr(held[i].site);
    }
    b.str("\n");
    b.flush();
  }
  if (m == 2) {
    b.str("fatal error: a goroutine switched away while holding an OS lock (GORO_DEBUG_OSLOCK)\n");
    b.flush();
    print_goroutine_header(g, "");
    die();
  }
}

}  // namespace goro::internal

// ---------------------------------------------------------------------------------------------
// Public API (goro/debug.hpp).

namespace goro::debug {

DeadlockMode set_deadlock_mode(DeadlockMode m) noexcept {
  const int old = internal::mode();
  internal::g_mode.store(static_cast<int>(m), std::memory_order_relaxed);
  return static_cast<DeadlockMode>(old);
}

OsLockCheck set_oslock_check(OsLockCheck m) noexcept {
  using namespace internal;
  LockGuard hold(table_lock);
  const int old = oslock_check.load(std::memory_order_relaxed);
  if (m != OsLockCheck::kOff && !ensure_table()) return static_cast<OsLockCheck>(old);
  oslock_check.store(static_cast<int>(m), std::memory_order_relaxed);
  return static_cast<OsLockCheck>(old);
}

}  // namespace goro::debug
