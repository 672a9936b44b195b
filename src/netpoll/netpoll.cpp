// netpoll.cpp - the network poller: poll descriptors, waiting for readiness, deadlines, and
// the scheduler's poll (Go's runtime/netpoll.go). The kernel side is netpoll_epoll.cpp or, with
// GORO_NETPOLL=io_uring, netpoll_uring.cpp (netpoll_backend.cpp chooses).
//
// What it owns
// ------------
// One PollDesc per watched fd: two wait semaphores (rg for read, wg for write), a closing flag,
// a read and a write deadline with one runtime timer each. The fd is registered once,
// edge-triggered for both directions (no epoll_ctl per wait). Readiness is recorded in the
// semaphores, so an edge that arrives while nobody waits is not lost: the next waiter consumes
// it and returns at once. Descriptors come from chunks that are never freed and are reused
// through a free list; each reuse bumps `gen`, which is part of the tag the kernel returns with
// an event, so an event collected for a descriptor that was closed meanwhile is dropped.
//
// The wait semaphores (rg, wg)
// ----------------------------
// A semaphore holds one of
//     0        nothing: no readiness recorded, nobody waiting
//     kReady   readiness arrived and nobody has consumed it
//     kWait    a waiter is about to park (it has not committed yet)
//     G*       that goroutine or plain thread ("thread G") is parked on it
// and moves only by compare-and-swap, so no lock is needed on the I/O path:
//
//     waiter (poll_wait)                           waker (event, deadline, close)
//     1. CAS kReady→0: consumed, return ok         a. read the state S
//        else CAS 0→kWait                          b. S == kReady: nothing to do
//     2. check closing / deadline (the errors)     c. CAS S→(event ? kReady : 0)
//     3. park; its unlock function commits:        d. S was a G*: ready it
//        CAS kWait→G* (fails: a waker came, the       (S == kWait: the waiter has not
//        park is cancelled, we run on)                parked yet; it sees the new value)
//     4. woken: S' = exchange(0); ok iff S' == kReady, else go back to the error check
//
// Step 2 after step 1's CAS pairs with the wakers' "store closing / deadline, then read the
// semaphore" (all sequentially consistent): either the waiter sees the error, or the waker
// sees kWait/G* and takes it away, so a close or an expired deadline never leaves a waiter
// parked. Only one waiter per semaphore may exist (users serialize readers and writers, as
// Go's fdMutex does); a second one is a fatal "double wait".
//
// Deadlines
// ---------
// rd/wd: 0 none, > 0 the armed deadline (nanotime), -1 expired. poll_set_deadline runs under
// the descriptor's lock (serializing setters, evict and close, and with them the Timer, which
// must not be started twice): it stops the old timer (timer_stop also waits for a callback in
// progress), stores the new value and arms the timer for it, or, for a deadline already past,
// stores -1 and wakes the waiter itself. The timer callback takes no lock: it expires the
// deadline only if the current value has passed (0 < d <= now, CAS d → -1), so a callback of a
// timer armed for an older deadline is harmless whichever way it races with a setter. A
// waiter woken by a deadline that was extended before it ran finds no error and waits again.
//
// Closing (poll_evict, then poll_close)
// -------------------------------------
//  1. poll_evict: under the lock, closing = true, take both waiters away (c. with "no event"),
//     stop both timers, unlock, ready the waiters; they return kPollClosing, and so does every
//     later poll_reset/poll_wait.
//  2. The user waits until nobody is inside a poll_* call on the descriptor any more (its own
//     reference count), then poll_close: EPOLL_CTL_DEL, gen++, back to the free list; then the
//     user closes the fd. A late event for the old fd carries the old gen and is dropped; a
//     stale kReady cannot leak into the next use, since poll_open resets the semaphores.
//
// The scheduler's side
// --------------------
// netpoll(delay) asks the backend for events and wakes, per event, the waiter of each ready
// direction: plain threads at once (futex), goroutines collected into one batch that the caller
// queues in one go (proc.cpp's inject_netpoll_batch: on its P or the global queue, starting Ms
// for idle Ps). Who calls it (see proc.cpp):
//  1. find_runnable, with a P, when its local and the global queue are empty, before it
//     steals (as Go does): netpoll(0), if any waiter exists and no M is blocked in the poller
//     already. Two goroutines talking over a socket then run on one M through these polls,
//     without a thread wake-up per message (polling only after stealing made the M
//     "spinning", whose find woke a second M, which then slept in the poller and took every
//     next event through a kernel wake-up: twice the round-trip time).
//  2. The timer sleeper (the one idle M without a P that sleeps until the next timer): once
//     the poller is initialized it blocks in netpoll(until the next timer) instead of its futex.
//     Whoever used to wake it (an earlier timer, startm handing it a P) also calls
//     netpoll_break(), an eventfd write that ends the kernel wait. A break is written at most
//     once until the blocking poller consumes it (wake_sig), so a burst of wake-ups costs one
//     syscall. The first poll_open wakes the sleeper, so that it starts sleeping in the poller.
//  3. Nobody else: while every P is busy and no M is idle, readiness waits for the next
//     scheduling pass that finds the queues empty. Go's sysmon polls when nobody has for
//     10 ms (netpoll_last_poll is there for that).
//
// Lock order: a descriptor's lock ▸ a timer heap's lock ▸ sched.lock (timer_start may wake the
// sleeper); pdcache_lock and init_lock are leaves. Deadline callbacks and netpoll take no
// descriptor lock. ready() is called with no lock of this file held.
//
// Threads: poll_* run on the goroutine or plain thread doing I/O; timer callbacks and netpoll
// run on an M's g0 (with or without a P). All syscalls go through sys() (netpoll.hpp): no errno
// across parks, no libc wrapper that a future interposition layer could redirect.
#include "netpoll/netpoll.hpp"

#include <unistd.h>

#include <cerrno>
#include <new>

#include "base/lock.hpp"
#include "base/platform.hpp"
#include "base/raw_log.hpp"
#include "time/timer.hpp"

#if defined(GORO_TSAN)
#include <sanitizer/tsan_interface.h>
#endif

namespace goro::internal {

namespace {

constexpr std::uintptr_t kReady = 1;
constexpr std::uintptr_t kWait = 2;

// The kernel carries a descriptor's tag from poll_open's registration to netpoll's event;
// ThreadSanitizer cannot see that hand-off, so it is annotated (release at registration,
// acquire on each event).
inline void tsan_publish(const void* p) {
#if defined(GORO_TSAN)
  __tsan_release(const_cast<void*>(p));
#else
  (void)p;
#endif
}
inline void tsan_receive(const void* p) {
#if defined(GORO_TSAN)
  __tsan_acquire(const_cast<void*>(p));
#else
  (void)p;
#endif
}

constexpr int kTagShift = 48;
constexpr std::uint64_t kTagPtrMask = (std::uint64_t{1} << kTagShift) - 1;

}  // namespace

struct alignas(64) PollDesc {
  // --- Wait semaphores (lock-free; see "The wait semaphores").
  std::atomic<std::uintptr_t> rg{0};
  std::atomic<std::uintptr_t> wg{0};
  // --- Closing and deadlines: written under `lock` (the deadline callback also CASes rd/wd to
  // -1), read without it.
  std::atomic<bool> closing{false};
  // An event carried kPollHup (sticky until the next poll_open). Written by netpoll before it
  // records the event's read readiness in rg.
  std::atomic<bool> hup{false};
  std::atomic<std::int64_t> rd{0};  // 0 none, > 0 deadline, -1 expired
  std::atomic<std::int64_t> wd{0};
  // --- Identity: fd is written by poll_open before the descriptor is registered; gen is
  // bumped by poll_close and read by netpoll (stale-event check).
  int fd = -1;
  std::atomic<std::uint32_t> gen{0};
  // --- Serializes poll_set_deadline, poll_evict and poll_close, and with them rt/wt.
  Lock lock;
  Timer rt;
  Timer wt;
  PollDesc* link = nullptr;  // in the free list, under pdcache_lock
};

namespace {

// Descriptors: never freed (an event may name one after it was closed), reused via a list.
constexpr int kPdChunk = 64;
Lock pdcache_lock;
PollDesc* pdfree = nullptr;  // under pdcache_lock

Lock init_lock;
std::atomic<bool> inited{false};
std::atomic<int> nwaiters{0};            // parked waiters (committed G* in a semaphore)
std::atomic<int> nblocked{0};            // Ms inside a blocking netpoll
std::atomic<std::uint32_t> wake_sig{0};  // 1: a break is written and not yet consumed
std::atomic<std::int64_t> last_poll{0};

std::atomic<std::int64_t> stat_blocking{0}, stat_nonblocking{0}, stat_readied{0}, stat_breaks{0};

PollDesc* pd_alloc() {
  LockGuard hold(pdcache_lock);
  if (pdfree == nullptr) {
    auto* chunk = new (std::nothrow) PollDesc[kPdChunk];
    if (chunk == nullptr) return nullptr;
    for (int i = 0; i < kPdChunk; i++) {
      chunk[i].link = pdfree;
      pdfree = &chunk[i];
    }
  }
  PollDesc* pd = pdfree;
  pdfree = pd->link;
  pd->link = nullptr;
  return pd;
}

void pd_free(PollDesc* pd) {
  LockGuard hold(pdcache_lock);
  pd->link = pdfree;
  pdfree = pd;
}

std::uint64_t pd_tag(PollDesc* pd) {
  auto p = reinterpret_cast<std::uint64_t>(pd);
  if ((p & ~kTagPtrMask) != 0) fatal("netpoll: descriptor address does not fit an event tag");
  return p | (static_cast<std::uint64_t>(pd->gen.load(std::memory_order_relaxed) & 0xffff)
              << kTagShift);
}

std::atomic<std::uintptr_t>* sem(PollDesc* pd, int mode) {
  return mode == kPollRead ? &pd->rg : &pd->wg;
}

// Waker side (a.-d.): takes whatever waits on *gpp away; ioready records readiness for the
// next waiter. Returns the parked G to ready, or null.
G* unblock(std::atomic<std::uintptr_t>* gpp, bool ioready) {
  for (;;) {
    std::uintptr_t old = gpp->load(std::memory_order_seq_cst);
    if (old == kReady) return nullptr;
    if (old == 0 && !ioready) return nullptr;  // only readiness is worth recording
    std::uintptr_t nv = ioready ? kReady : 0;
    if (gpp->compare_exchange_strong(old, nv, std::memory_order_seq_cst)) {
      if (old == 0 || old == kWait) return nullptr;
      nwaiters.fetch_sub(1, std::memory_order_relaxed);
      return reinterpret_cast<G*>(old);
    }
  }
}

int check_err(PollDesc* pd, int mode) {
  if (pd->closing.load(std::memory_order_seq_cst)) return kPollClosing;
  std::atomic<std::int64_t>* d = mode == kPollRead ? &pd->rd : &pd->wd;
  if (d->load(std::memory_order_seq_cst) < 0) return kPollTimeout;
  return kPollOk;
}

// Park's unlock function (step 3): commit, or cancel the park if a waker came first.
bool commit_wait(G* gp, void* arg) {
  auto* gpp = static_cast<std::atomic<std::uintptr_t>*>(arg);
  std::uintptr_t expect = kWait;
  if (gpp->compare_exchange_strong(expect, reinterpret_cast<std::uintptr_t>(gp),
                                   std::memory_order_seq_cst)) {
    nwaiters.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  return false;
}

// Steps 1-4 once. Returns true if readiness was consumed.
bool block(PollDesc* pd, int mode) {
  std::atomic<std::uintptr_t>* gpp = sem(pd, mode);
  for (;;) {
    std::uintptr_t v = kReady;
    if (gpp->compare_exchange_strong(v, 0, std::memory_order_seq_cst)) return true;
    v = 0;
    if (gpp->compare_exchange_strong(v, kWait, std::memory_order_seq_cst)) break;
    v = gpp->load(std::memory_order_relaxed);
    if (v != kReady && v != 0) fatal("netpoll: double wait (two waiters on one fd direction)");
  }
  if (check_err(pd, mode) == kPollOk) {
    park(commit_wait, gpp, mode == kPollRead ? WaitReason::kIORead : WaitReason::kIOWrite);
  }
  std::uintptr_t old = gpp->exchange(0, std::memory_order_seq_cst);
  if (old > kWait) fatal("netpoll: corrupted wait semaphore");
  return old == kReady;
}

// Deadline callbacks: run by the scheduler with no lock held (see "Deadlines").
void deadline_fired(std::atomic<std::int64_t>* d, std::atomic<std::uintptr_t>* gpp,
                    std::int64_t now) {
  std::int64_t v = d->load(std::memory_order_seq_cst);
  if (v <= 0 || v > now) return;  // cleared, expired already, or replaced by a later one
  if (!d->compare_exchange_strong(v, -1, std::memory_order_seq_cst)) return;
  if (G* gp = unblock(gpp, false)) ready(gp);
}

void read_deadline_fired(void* arg, std::int64_t now) {
  auto* pd = static_cast<PollDesc*>(arg);
  deadline_fired(&pd->rd, &pd->rg, now);
}

void write_deadline_fired(void* arg, std::int64_t now) {
  auto* pd = static_cast<PollDesc*>(arg);
  deadline_fired(&pd->wd, &pd->wg, now);
}

// Under pd->lock: replaces one direction's deadline. Returns a waiter to ready (unlocked).
G* set_one(std::atomic<std::int64_t>* d, Timer* t, std::atomic<std::uintptr_t>* gpp,
           std::int64_t v) {
  timer_stop(t);  // also waits for a callback in progress (it takes no descriptor lock)
  d->store(v, std::memory_order_seq_cst);
  if (v > 0) {
    t->when = v;
    timer_start(t);
    return nullptr;
  }
  return v < 0 ? unblock(gpp, false) : nullptr;
}

// Returns 0 or an errno value.
int init_once() {
  if (inited.load(std::memory_order_acquire)) return 0;
  {
    LockGuard hold(init_lock);
    if (inited.load(std::memory_order_relaxed)) return 0;
    if (int err = netpoll_backend_init(); err != 0) return err;
    ensure_started();
    inited.store(true, std::memory_order_seq_cst);
  }
  // The timer sleeper may be asleep on its futex, where readiness cannot reach it: wake it (0
  // is earlier than any deadline) so that it goes back to sleep in the poller. With no M
  // awake at all (plain threads only), this starts one, which becomes the sleeper.
  wake_timer_sleeper(0);
  return 0;
}

struct Batch {
  G* head = nullptr;
  G* tail = nullptr;
  int n = 0;
};

void add_ready(Batch* b, G* gp) {
  stat_readied.fetch_add(1, std::memory_order_relaxed);
  if (gp->stack_kind == kStackThread) {
    ready(gp);  // a plain thread: its futex
    return;
  }
  std::uint32_t st = gp->status.load(std::memory_order_acquire);
  if (st != kGWaiting) fatal("netpoll: readied goroutine is not waiting");
  gp->status.store(kGRunnable, std::memory_order_relaxed);
  sched_track_runnable(gp);  // scheduling latency sample (stats)
  gp->schedlink = nullptr;
  if (b->tail != nullptr) {
    b->tail->schedlink = gp;
  } else {
    b->head = gp;
  }
  b->tail = gp;
  b->n++;
}

void on_event(std::uint64_t tag, int modes, void* arg) {
  auto* b = static_cast<Batch*>(arg);
  auto* pd = reinterpret_cast<PollDesc*>(tag & kTagPtrMask);
  if (pd == nullptr) return;
  tsan_receive(pd);
  auto g = static_cast<std::uint32_t>(tag >> kTagShift);
  if ((pd->gen.load(std::memory_order_acquire) & 0xffff) != g) return;  // closed since: stale
  // Before rg's update, which publishes it to the reader that consumes this readiness.
  if ((modes & kPollHup) != 0) pd->hup.store(true, std::memory_order_release);
  if ((modes & kPollRead) != 0) {
    if (G* gp = unblock(&pd->rg, true)) add_ready(b, gp);
  }
  if ((modes & kPollWrite) != 0) {
    if (G* gp = unblock(&pd->wg, true)) add_ready(b, gp);
  }
}

}  // namespace

PollDesc* poll_open(int fd, int* err) noexcept {
  EnterRuntime rt;  // no asynchronous preemption while a runtime lock is held
  if (int e = init_once(); e != 0) {
    *err = e;
    return nullptr;
  }
  PollDesc* pd = pd_alloc();
  if (pd == nullptr) {
    *err = ENOMEM;
    return nullptr;
  }
  {
    LockGuard hold(pd->lock);
    pd->fd = fd;
    pd->rg.store(0, std::memory_order_relaxed);
    pd->wg.store(0, std::memory_order_relaxed);
    pd->closing.store(false, std::memory_order_relaxed);
    pd->hup.store(false, std::memory_order_relaxed);
    pd->rd.store(0, std::memory_order_relaxed);
    pd->wd.store(0, std::memory_order_relaxed);
    pd->rt.f = read_deadline_fired;
    pd->rt.arg = pd;
    pd->wt.f = write_deadline_fired;
    pd->wt.arg = pd;
  }
  tsan_publish(pd);
  if (int e = netpoll_backend_open(fd, pd_tag(pd)); e != 0) {
    pd->gen.fetch_add(1, std::memory_order_release);
    pd_free(pd);
    *err = e;
    return nullptr;
  }
  return pd;
}

void poll_close(PollDesc* pd) noexcept {
  EnterRuntime rt;
  if (!pd->closing.load(std::memory_order_acquire)) fatal("netpoll: close without evict");
  std::uintptr_t r = pd->rg.load(std::memory_order_acquire);
  std::uintptr_t w = pd->wg.load(std::memory_order_acquire);
  if (r > kReady || w > kReady) fatal("netpoll: close with a waiter still blocked");
  netpoll_backend_close(pd->fd);
  {
    LockGuard hold(pd->lock);
    timer_stop(&pd->rt);
    timer_stop(&pd->wt);
    pd->fd = -1;
  }
  pd->gen.fetch_add(1, std::memory_order_release);
  pd_free(pd);
}

void poll_evict(PollDesc* pd) noexcept {
  EnterRuntime rt;
  G* gr = nullptr;
  G* gw = nullptr;
  {
    LockGuard hold(pd->lock);
    if (pd->closing.load(std::memory_order_relaxed)) return;
    pd->closing.store(true, std::memory_order_seq_cst);
    gr = unblock(&pd->rg, false);
    gw = unblock(&pd->wg, false);
    timer_stop(&pd->rt);
    timer_stop(&pd->wt);
  }
  if (gr != nullptr) ready(gr);
  if (gw != nullptr) ready(gw);
}

int poll_reset(PollDesc* pd, int mode) noexcept {
  int e = check_err(pd, mode);
  if (e != kPollOk) return e;
  // A readiness recorded before this attempt is stale: the syscall is about to see for itself.
  std::uintptr_t v = kReady;
  sem(pd, mode)->compare_exchange_strong(v, 0, std::memory_order_relaxed);
  return kPollOk;
}

int poll_check(PollDesc* pd, int mode) noexcept {
  return check_err(pd, mode);
}

bool poll_hup(const PollDesc* pd) noexcept {
  return pd->hup.load(std::memory_order_acquire);
}

int poll_wait(PollDesc* pd, int mode) noexcept {
  int e = check_err(pd, mode);
  if (e != kPollOk) return e;
  while (!block(pd, mode)) {
    e = check_err(pd, mode);
    if (e != kPollOk) return e;
    // Woken without readiness and without an error: a deadline fired and was extended before
    // we ran. Wait again.
  }
  return kPollOk;
}

void poll_set_deadline(PollDesc* pd, std::int64_t when, int mode) noexcept {
  EnterRuntime rt;
  std::int64_t v = when;
  if (when != 0 && when <= nanotime()) v = -1;
  G* gr = nullptr;
  G* gw = nullptr;
  {
    LockGuard hold(pd->lock);
    if (pd->closing.load(std::memory_order_relaxed)) return;
    if ((mode & kPollRead) != 0) gr = set_one(&pd->rd, &pd->rt, &pd->rg, v);
    if ((mode & kPollWrite) != 0) gw = set_one(&pd->wd, &pd->wt, &pd->wg, v);
  }
  if (gr != nullptr) ready(gr);
  if (gw != nullptr) ready(gw);
}

int poll_fd(const PollDesc* pd) noexcept {
  return pd->fd;
}

bool netpoll_inited() noexcept {
  return inited.load(std::memory_order_seq_cst);
}

bool netpoll_any_waiters() noexcept {
  return nwaiters.load(std::memory_order_relaxed) > 0;
}

bool netpoll_blocked() noexcept {
  return nblocked.load(std::memory_order_relaxed) > 0;
}

std::int64_t netpoll_last_poll() noexcept {
  return last_poll.load(std::memory_order_relaxed);
}

int netpoll(std::int64_t delay_ns, G** list) noexcept {
  *list = nullptr;
  if (!inited.load(std::memory_order_acquire)) return 0;
  Batch b;
  int breaks = 0;
  if (delay_ns != 0) {
    nblocked.fetch_add(1, std::memory_order_relaxed);
    stat_blocking.fetch_add(1, std::memory_order_relaxed);
  } else {
    stat_nonblocking.fetch_add(1, std::memory_order_relaxed);
  }
  netpoll_backend_poll(delay_ns, on_event, &b, &breaks);
  if (delay_ns != 0) nblocked.fetch_sub(1, std::memory_order_relaxed);
  if (breaks > 0) {
    stat_breaks.fetch_add(breaks, std::memory_order_relaxed);
    wake_sig.store(0, std::memory_order_seq_cst);
  }
  last_poll.store(nanotime(), std::memory_order_relaxed);
  *list = b.head;
  return b.n;
}

void netpoll_break() noexcept {
  if (!inited.load(std::memory_order_acquire)) return;
  std::uint32_t zero = 0;
  if (!wake_sig.compare_exchange_strong(zero, 1, std::memory_order_seq_cst)) return;
  netpoll_backend_break();
}

namespace sysdetail {

long raw6(long nr, long a1, long a2, long a3, long a4, long a5, long a6) noexcept {
#if defined(__x86_64__)
  long ret;
  register long r10 asm("r10") = a4;
  register long r8 asm("r8") = a5;
  register long r9 asm("r9") = a6;
  asm volatile("syscall"
               : "=a"(ret)
               : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
               : "rcx", "r11", "memory");
  return ret;
#else
  // Out of line, errno is read on the thread that made the call.
  int saved = errno;
  long r = ::syscall(nr, a1, a2, a3, a4, a5, a6);
  if (r == -1) r = -errno;
  errno = saved;
  return r;
#endif
}

}  // namespace sysdetail

NetpollStats netpoll_stats() noexcept {
  return NetpollStats{stat_blocking.load(std::memory_order_relaxed),
                      stat_nonblocking.load(std::memory_order_relaxed),
                      stat_readied.load(std::memory_order_relaxed),
                      stat_breaks.load(std::memory_order_relaxed)};
}

}  // namespace goro::internal
