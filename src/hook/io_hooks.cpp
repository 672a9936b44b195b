// io_hooks.cpp - transparent interposition of blocking libc calls: unmodified blocking code
// (read, recv, accept, connect, poll, select, epoll_wait, nanosleep, getaddrinfo, ...) called
// from a goroutine parks the goroutine instead of blocking its OS thread. User rules:
// docs/io.md. The poller it builds on: src/netpoll/netpoll.hpp.
//
// What it owns
// ------------
// The extern "C" definitions of the hooked libc entry points (listed in docs/io.md), the fd
// table that says which descriptors the runtime manages, and the pointers to the real libc
// functions. The program's calls bind to these definitions (the executable, or libgoro.so,
// comes before libc in symbol lookup); libc's internal calls (stdio's read, fclose's close)
// use libc's hidden aliases and are never seen.
//
// The decision, per call
// ----------------------
//  1. GORO_HOOK=0 (read once at start-up), or a child after fork(): forward to libc.
//  2. Where the call runs (Ctx):
//       kPlain   a plain thread (no goroutine, not an M's scheduler stack);
//       kNoPark  an M's g0 (the runtime itself), or a goroutine that must not park: inside
//                goro::blocking (g->insyscall: its P is already handed off), inside the
//                runtime or a NoPreempt (g->preempt_off: runtime code such as raw_log's
//                write(2) may hold runtime locks; a NoPreempt asks to keep its thread);
//       kGo      any other goroutine. One that holds a pthread mutex (g->oslocks; std::mutex
//                included) must not migrate (glibc checks the owner of recursive and
//                error-checking mutexes at unlock) and must not let another goroutine run on its
//                thread (one that locks the same mutex would block the thread for good): it is
//                pinned to its thread for the call (GoCall: lock_os_thread's fields), so while
//                it is parked its thread sleeps and hands its P to others (the scheduler's
//                locked-goroutine path), and it resumes on that thread. One thread per such
//                waiting goroutine.
//  3. What the fd is (the fd table, below): unmanaged, candidate, adopted or poll-only.
//  4. Then:
//       unmanaged fd (regular files, ttys, inherited fds, ...), kPlain/kNoPark: libc's function,
//         exactly (errno included; cancellation points stay cancellation points);
//       unmanaged fd, kGo: libc's function inside goro::blocking (the P is handed to another
//         thread if the call is slow), errno carried back (below);
//       candidate, kPlain/kNoPark: libc's function (the kernel's O_NONBLOCK is the user's;
//         if a goroutine adopts the fd meanwhile and libc's call fails with EAGAIN that the
//         user did not ask for, the call is redone as on an adopted fd);
//       candidate, kGo, user non-blocking (or MSG_DONTWAIT): one raw syscall, EAGAIN as asked;
//       candidate, kGo, user blocking: adopt it (set O_NONBLOCK on the kernel fd), then as
//         adopted;
//       adopted: loop { raw syscall; on EAGAIN (and the user did not ask for non-blocking):
//         wait } where "wait" is poll_wait on the fd's PollDesc for kGo (the goroutine parks)
//         and kPlain (the thread sleeps on its futex: close() can still wake it), and a sliced
//         ppoll(2) for kNoPark (it must not park; it re-checks for close every 20 ms).
//
// The fd table
// ------------
// An array indexed by fd, two levels (1024 chunks of 1024 entries, each chunk mmap'ed on first
// use and never freed), so an entry's address never changes and a lookup is two loads. fds
// beyond 2^20 are never managed. An entry records, for one fd:
//     state      bit 0 kLive (the entry describes the open fd), bit 1 kClosing (close() has
//                begun: no new call may start), bits 2.. calls in progress (refs)
//     kind       candidate / adopted / poll-only (HookFdKind)
//     user_nb    the user's O_NONBLOCK (socket(SOCK_NONBLOCK), pipe2(O_NONBLOCK), fcntl F_SETFL,
//                ioctl FIONBIO); F_GETFL reports it, and a user non-blocking call never waits
//     rcvtimeo,  SO_RCVTIMEO / SO_SNDTIMEO in ns (0: none), read from the kernel at adoption
//     sndtimeo   (accepted sockets inherit the listener's) and kept by the setsockopt hook;
//                each call that waits gets a deadline of its start + the timeout
//     pd         the PollDesc, opened at the first wait (after connect(), like goro::net)
//     mu         a runtime Lock: adoption, pd creation, flag changes, close's pd hand-off
//     rmu, wmu   goro::Mutex: serialize the waiting readers and the waiting writers (the
//                PollDesc admits one waiter per direction; callers that will not wait skip it)
//     closer     the goroutine or thread waiting in close() for the calls in progress
// Entries are created for fds made by hooked socket(), socketpair(), pipe(), pipe2(),
// accept(), accept4() and dup*()/F_DUPFD of a managed fd (a dup gets its own entry and
// PollDesc; the kernel's O_NONBLOCK is shared, so it inherits the state), in any context and
// without a syscall: a process that never starts the runtime only writes the table. Only a
// goroutine adopts, and only at its first call on the fd that may wait, so fds a program hands
// to child processes (pipes for stdio) stay blocking unless a goroutine itself waited on that
// very end. Inherited fds (stdin) and fds from unhooked calls (open, eventfd, ...) are never
// managed: goroutines run their calls inside goro::blocking. epoll fds a goroutine waits on in
// epoll_wait get a poll-only entry (their readiness is waited for; nothing else changes).
// A close the hooks do not see (a raw syscall, close_range, fclose of an fdopen'ed socket;
// sanitizer runtimes probe memory with pipe() and a raw close) leaves a stale entry. A hooked
// call that creates an fd retires a stale entry of its number, and adoption checks with fstat
// that the fd is a socket or FIFO (else it demotes the entry to unmanaged), so a reused number
// is never mistaken for a socket; docs/io.md asks users to close managed fds with close().
//
// Close (netpoll.hpp step 3; Go's fdMutex close)
// ----------------------------------------------
//  1. CAS kClosing into state (a second concurrent close gets EBADF; refs can only drop now).
//  2. Under mu take pd (a call racing to open one sees kClosing and does not).
//  3. poll_evict(pd): every waiter returns; the call it belonged to fails with EBADF (what a
//     later call on a closed fd gets) after returning any bytes already transferred.
//  4. Wait until refs == 0: the last call's decref exchanges `closer` with kCloserDone and
//     readies the closer if it had parked (its park's unlock function installs it by CAS from 0,
//     which fails, cancelling the park, if the decref came first). kNoPark closers yield-sleep.
//  5. poll_close(pd), clear the entry (state = 0), then close(2) through libc. The fd number
//     cannot be reused while a call is inside a syscall on it.
// Calls forwarded to libc on candidates hold no reference: a plain thread blocked in the kernel
// on a socket another thread closes stays blocked, exactly as with libc.
// dup2/dup3 onto a managed fd run steps 1-4 on the target, then the real dup2, then clear it.
//
// errno
// -----
// A goroutine that parked may resume on another OS thread, and errno is per thread. Two
// separate problems:
//  (a) The hook's own code must not write errno through an address computed before a park:
//      every goroutine-path hook ends in errno_exit(), an out-of-line (noipa) function called
//      after the last park, which calls __errno_location() afresh and stores the call's errno
//      there (the error, or on success the value the caller had at entry: a call that
//      succeeds leaves errno as it was, as libc does, even though the thread changed).
//  (b) The caller's compiler may have computed &errno before the call (glibc declares
//      __errno_location const, so GCC and Clang keep it in a callee-saved register or a
//      stack slot across the call: `errno = 0; n = read(...); if (n < 0) use(errno)` does).
//      It would then read the old thread's errno, which another goroutine now owns. So when
//      errno_exit finds that the call resumed on another M, it rewrites every word on the
//      goroutine's stack, from its own frame up to stack_hi, that equals the entry thread's
//      errno address, into the current thread's (goro_hook_errno_fixup: pushes the
//      callee-saved registers, scans, pops them). Those are exactly the cached copies of
//      "&errno" the callers up the stack hold, whether in registers (saved by some frame or
//      still live, pushed by the fixup) or in spill slots; no other value can equal a thread's
//      TLS errno address. What it cannot reach: copies outside the goroutine's stack (a
//      pointer to errno stored in the heap or a global), and an address cached before an
//      earlier migration that was not a hooked call (a goro::Mutex, channel, sleep_for, or an
//      asynchronous preemption): the general TLS rule of docs/preemption.md covers those.
//  Forwarded calls run on one thread (kPlain, kNoPark, or inside goro::blocking, whose
//  errno is captured inside the blocking function and carried out by errno_exit like the
//  above, since exitsyscall may resume on another M).
//
// Signals and cancellation
// ------------------------
// A goroutine parked in a hooked call is not a thread: no signal interrupts it, so it never
// fails with EINTR (SA_RESTART or not); deadlines (SO_RCVTIMEO/SO_SNDTIMEO, the poll timeout)
// and close() end the wait. The sigmask of ppoll/pselect/epoll_pwait is ignored in goroutines.
// Plain threads waiting on an adopted fd (futex) are likewise not interrupted. Forwarded calls
// are libc's own, so their EINTR and pthread_cancel semantics are unchanged; raw syscalls in the
// managed loops are non-blocking and retry EINTR. pthread_cancel of an M is not supported.
//
// Real functions
// --------------
// Resolved once by a constructor with dlsym(RTLD_NEXT) (no allocation on success; before it has
// run, or where dlsym finds nothing, as in a static executable, the syscall-level functions fall
// back to raw syscalls, netpoll.hpp's sys(), which never re-enter a hook). The managed paths use
// raw syscalls only (they return -errno: no errno is read across a park). Under ASan the next
// definition is ASan's interceptor, which forwards to libc (and checks the buffers).
//
// poll, select, epoll_wait from a goroutine
// -----------------------------------------
// A zero-timeout call first. If nothing is ready and the call names one managed fd in one
// direction (the usual "wait until this socket is readable"), it waits on that fd's own
// PollDesc, as a read would (wait_one: no syscall beyond the zero-timeout calls). Otherwise
// poll/ppoll/select/pselect build a private epoll set (epoll_create1 + one EPOLL_CTL_ADD per
// fd, level-triggered; the poll bits map 1:1 onto epoll's) and wait for that epoll fd to become
// readable through the poller (poll_open on it: nested epoll); either way they then repeat the
// zero-timeout call, until it reports something or the deadline passes. select writes the
// remaining time back, as Linux does. Cost of the private set: 4 + n syscalls per call that has
// to wait, no thread. If it cannot be built (EPERM, ENOSPC) the real call runs inside
// goro::blocking (one thread for its duration). epoll_wait waits for the user's epoll fd itself
// (a poll-only entry, registered once, waiters serialized by rmu).
//
// Lock order: rmu / wmu (goro::Mutex) ▸ an entry's mu ▸ a PollDesc's lock ▸ timer heap ▸
// sched.lock. mu is never held across a park (nor is any runtime Lock).
//
// Threads: everything runs on the calling goroutine or thread; wake-ups come from the poller,
// timers and closers. Code that holds mu runs with asynchronous preemption off (NoAsync).
//
// Not built under ThreadSanitizer (see src/CMakeLists.txt): TSan intercepts these functions and
// models synchronization through file descriptors; raw syscalls would hide it.
#undef _FORTIFY_SOURCE
#include "hook/io_hooks.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <optional>

#include "base/lock.hpp"
#include "base/platform.hpp"
#include "goro/blocking.hpp"
#include "goro/sync.hpp"
#include "goro/time.hpp"
#include "netpoll/netpoll.hpp"
#include "sched/proc.hpp"

extern "C" {
[[noreturn]] void __chk_fail(void);
// Rewrites the words in [its own frame, hi) equal to old_loc into new_loc (see "errno").
void goro_hook_errno_fixup(int* old_loc, int* new_loc, std::uintptr_t hi);
}

#if defined(__clang__)
#define GORO_HOOK_OPAQUE __attribute__((noinline))
#else
#define GORO_HOOK_OPAQUE __attribute__((noinline, noipa))
#endif

namespace goro::internal {
namespace {

// ---------------------------------------------------------------------------------------------
// Configuration and counters.

std::atomic<bool> hooks_active{true};
std::atomic<bool> errno_fixup_on{true};
std::atomic<bool> atfork_registered{false};
std::atomic<std::uint64_t> stat_parks{0}, stat_handoffs{0}, stat_adoptions{0}, stat_fixups{0};

inline bool hooks_on() {
  return hooks_active.load(std::memory_order_relaxed);
}

inline void bump(std::atomic<std::uint64_t>& c) {
  c.fetch_add(1, std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------------------------
// Real functions (see "Real functions").

#define GORO_HOOK_REALS(X)                                                                   \
  X(read, ssize_t, (int, void*, size_t))                                                     \
  X(write, ssize_t, (int, const void*, size_t))                                              \
  X(readv, ssize_t, (int, const iovec*, int))                                                \
  X(writev, ssize_t, (int, const iovec*, int))                                               \
  X(pread64, ssize_t, (int, void*, size_t, off_t))                                           \
  X(pwrite64, ssize_t, (int, const void*, size_t, off_t))                                    \
  X(recvfrom, ssize_t, (int, void*, size_t, int, sockaddr*, socklen_t*))                     \
  X(recvmsg, ssize_t, (int, msghdr*, int))                                                   \
  X(sendto, ssize_t, (int, const void*, size_t, int, const sockaddr*, socklen_t))            \
  X(sendmsg, ssize_t, (int, const msghdr*, int))                                             \
  X(accept4, int, (int, sockaddr*, socklen_t*, int))                                         \
  X(connect, int, (int, const sockaddr*, socklen_t))                                         \
  X(poll, int, (pollfd*, nfds_t, int))                                                       \
  X(ppoll, int, (pollfd*, nfds_t, const timespec*, const sigset_t*))                         \
  X(select, int, (int, fd_set*, fd_set*, fd_set*, timeval*))                                 \
  X(pselect, int, (int, fd_set*, fd_set*, fd_set*, const timespec*, const sigset_t*))        \
  X(epoll_wait, int, (int, epoll_event*, int, int))                                          \
  X(epoll_pwait, int, (int, epoll_event*, int, int, const sigset_t*))                        \
  X(nanosleep, int, (const timespec*, timespec*))                                            \
  X(clock_nanosleep, int, (clockid_t, int, const timespec*, timespec*))                      \
  X(usleep, int, (useconds_t))                                                               \
  X(sleep, unsigned, (unsigned))                                                             \
  X(close, int, (int))                                                                       \
  X(fcntl, int, (int, int, ...))                                                             \
  X(ioctl, int, (int, unsigned long, ...))                                                   \
  X(dup, int, (int))                                                                         \
  X(dup2, int, (int, int))                                                                   \
  X(dup3, int, (int, int, int))                                                              \
  X(socket, int, (int, int, int))                                                            \
  X(socketpair, int, (int, int, int, int*))                                                  \
  X(pipe2, int, (int*, int))                                                                 \
  X(setsockopt, int, (int, int, int, const void*, socklen_t))                                \
  X(getaddrinfo, int, (const char*, const char*, const addrinfo*, addrinfo**))               \
  X(getnameinfo, int, (const sockaddr*, socklen_t, char*, socklen_t, char*, socklen_t, int)) \
  X(gethostbyname, hostent*, (const char*))                                                  \
  X(gethostbyname2, hostent*, (const char*, int))                                            \
  X(gethostbyaddr, hostent*, (const void*, socklen_t, int))                                  \
  X(gethostbyname_r, int, (const char*, hostent*, char*, size_t, hostent**, int*))           \
  X(gethostbyname2_r, int, (const char*, int, hostent*, char*, size_t, hostent**, int*))     \
  X(gethostbyaddr_r, int, (const void*, socklen_t, int, hostent*, char*, size_t, hostent**, int*))

struct Reals {
#define GORO_HOOK_DECLARE_REAL(name, ret, args) std::atomic<ret(*) args> name{nullptr};
  GORO_HOOK_REALS(GORO_HOOK_DECLARE_REAL)
#undef GORO_HOOK_DECLARE_REAL
};
Reals reals;

#define REAL(name) reals.name.load(std::memory_order_relaxed)

template <class Fn>
void resolve_one(const char* name, std::atomic<Fn>& slot, void* self) {
  void* p = dlsym(RTLD_NEXT, name);
  if (p == self) p = nullptr;  // never call ourselves
  slot.store(reinterpret_cast<Fn>(p), std::memory_order_relaxed);
}

// A raw syscall's result as libc returns it: -1 with errno set on this thread.
inline long libc_ret(long r) {
  if (r < 0) {
    errno = static_cast<int>(-r);
    return -1;
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// errno (see "errno").

GORO_HOOK_OPAQUE int* errno_loc() noexcept {
  return __errno_location();
}

GORO_HOOK_OPAQUE int errno_now() noexcept {
  return *__errno_location();
}

GORO_HOOK_OPAQUE int* h_errno_loc() noexcept {
  return __h_errno_location();
}

// What a goroutine-path call remembers from its entry.
struct ErrnoCtx {
  M* m;
  int* loc;
  int saved;
};

// Keeps asynchronous preemption off without serving a pending request at the end (so it never
// moves the goroutine): around mu, and around errno_exit's store and rewrite.
class NoAsync {
 public:
  NoAsync() noexcept : g_(getg()) {
    if (g_ != nullptr) {
      g_->preempt_off.store(g_->preempt_off.load(std::memory_order_relaxed) + 1,
                            std::memory_order_relaxed);
      std::atomic_signal_fence(std::memory_order_seq_cst);
    }
  }
  ~NoAsync() {
    if (g_ == nullptr) return;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    g_->preempt_off.store(g_->preempt_off.load(std::memory_order_relaxed) - 1,
                          std::memory_order_relaxed);
  }
  NoAsync(const NoAsync&) = delete;
  NoAsync& operator=(const NoAsync&) = delete;

 private:
  G* g_;
};

// A goroutine-path call: its errno context and, for a goroutine that holds a pthread mutex
// (G::oslocks, counted by pthread_hooks.cpp), a pin to its thread for the call
// (lock_os_thread's fields; see Ctx::kGo).
class GoCall : public ErrnoCtx {
 public:
  GoCall() noexcept : ErrnoCtx{}, g_(getg()) {
    if (g_ != nullptr && g_->oslocks != 0) {
      NoAsync na;
      if (g_->lockdepth++ == 0) {
        M* cur = getm();
        g_->lockedm = cur;
        cur->lockedg = g_;
      }
      pinned_ = true;
    }
    loc = errno_loc();
    m = getm();
    saved = *loc;
  }
  ~GoCall() {
    if (!pinned_) return;
    NoAsync na;
    if (--g_->lockdepth == 0) {
      g_->lockedm->lockedg = nullptr;
      g_->lockedm = nullptr;
    }
  }
  GoCall(const GoCall&) = delete;
  GoCall& operator=(const GoCall&) = delete;

 private:
  G* g_;
  bool pinned_ = false;
};

// Leaves err in the current thread's errno and returns r; called after the call's last park.
GORO_HOOK_OPAQUE long errno_exit(const ErrnoCtx& c, long r, int err) noexcept {
  NoAsync na;
  int* loc = errno_loc();
  *loc = err;
  if (getm() != c.m && c.loc != loc && errno_fixup_on.load(std::memory_order_relaxed)) {
    if (G* g = getg()) {
      bump(stat_fixups);
      goro_hook_errno_fixup(c.loc, loc, g->stack_hi);
    }
  }
  return r;
}

// Result of a managed call (r >= 0, or -errno) returned from the goroutine path.
inline long go_exit(const ErrnoCtx& c, long r) {
  return errno_exit(c, r < 0 ? -1 : r, r < 0 ? static_cast<int>(-r) : c.saved);
}

// Runs libc's call f (libc-style result) inside goro::blocking, errno carried back: the
// caller's value goes in first (the goroutine may be on another thread than at entry by now),
// so what f leaves is exactly what libc would.
template <class F>
long go_forward(const ErrnoCtx& c, F&& f) {
  long r = 0;
  int err = 0;
  bump(stat_handoffs);
  goro::blocking([&] {
    *errno_loc() = c.saved;
    r = static_cast<long>(f());
    err = errno_now();
  });
  return errno_exit(c, r, err);
}

// ---------------------------------------------------------------------------------------------
// Where the call runs (see "The decision, per call").

enum class Ctx : std::uint8_t { kPlain, kNoPark, kGo };

inline Ctx ctx_of(G* g) {
  if (g == nullptr) return getm() == nullptr ? Ctx::kPlain : Ctx::kNoPark;
  if (g->insyscall || g->preempt_off.load(std::memory_order_relaxed) != 0) return Ctx::kNoPark;
  return Ctx::kGo;  // pinned to its thread by GoCall if it holds a pthread mutex
}

// ---------------------------------------------------------------------------------------------
// The fd table (see "The fd table").

constexpr std::uint64_t kLive = 1;
constexpr std::uint64_t kClosing = 2;
constexpr std::uint64_t kRef = 4;

constexpr std::uint8_t kKindNone = 0;
constexpr std::uint8_t kKindCandidate = 1;
constexpr std::uint8_t kKindAdopted = 2;
constexpr std::uint8_t kKindPollOnly = 3;

constexpr std::uintptr_t kCloserDone = 1;

struct FdEntry {
  std::atomic<std::uint64_t> state{0};
  std::atomic<std::uint8_t> kind{kKindNone};  // written under mu (or before kLive is set)
  std::atomic<bool> user_nb{false};           // written under mu (or before kLive is set)
  std::atomic<std::int64_t> rcvtimeo{0};      // ns, 0 none
  std::atomic<std::int64_t> sndtimeo{0};
  std::atomic<PollDesc*> pd{nullptr};  // written under mu
  std::atomic<std::uintptr_t> closer{0};
  Lock mu;
  goro::Mutex rmu;
  goro::Mutex wmu;
  // How many waits on pd have returned, per direction (Io::wait: whether a call must retry
  // its syscall before waiting). Written under rmu / wmu.
  std::atomic<std::uint32_t> rwaits{0};
  std::atomic<std::uint32_t> wwaits{0};
};

constexpr int kChunkShift = 10;
constexpr int kChunkSize = 1 << kChunkShift;
constexpr int kMaxFds = 1 << 20;
constexpr int kChunks = kMaxFds / kChunkSize;

std::atomic<FdEntry*> chunks[kChunks];

FdEntry* slot(int fd) {
  if (fd < 0 || fd >= kMaxFds) return nullptr;
  FdEntry* c = chunks[fd >> kChunkShift].load(std::memory_order_acquire);
  return c == nullptr ? nullptr : &c[fd & (kChunkSize - 1)];
}

FdEntry* slot_create(int fd) {
  if (fd < 0 || fd >= kMaxFds) return nullptr;
  std::atomic<FdEntry*>& cp = chunks[fd >> kChunkShift];
  FdEntry* c = cp.load(std::memory_order_acquire);
  if (c == nullptr) {
    // Raw mmap: async-signal-safe, no malloc (a hook may run in a forked child or early).
    std::size_t bytes = sizeof(FdEntry) * kChunkSize;
    long p =
        sys(SYS_mmap, nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p < 0 && p > -4096) return nullptr;
    auto* fresh = reinterpret_cast<FdEntry*>(p);
    for (int i = 0; i < kChunkSize; i++) new (&fresh[i]) FdEntry;
    FdEntry* expect = nullptr;
    if (cp.compare_exchange_strong(expect, fresh, std::memory_order_acq_rel)) {
      c = fresh;
    } else {
      sys(SYS_munmap, fresh, bytes);  // FdEntry is trivially destructible in practice
      c = expect;
    }
  }
  return &c[fd & (kChunkSize - 1)];
}

inline bool is_io_kind(std::uint8_t k) {
  return k == kKindCandidate || k == kKindAdopted;
}

// The entry of a live candidate or adopted fd, or null.
FdEntry* io_entry(int fd) {
  FdEntry* e = slot(fd);
  if (e == nullptr || (e->state.load(std::memory_order_acquire) & kLive) == 0) return nullptr;
  return is_io_kind(e->kind.load(std::memory_order_acquire)) ? e : nullptr;
}

FdEntry* adopted_entry(int fd) {
  FdEntry* e = io_entry(fd);
  return e != nullptr && e->kind.load(std::memory_order_acquire) == kKindAdopted ? e : nullptr;
}

inline bool closing(const FdEntry* e) {
  return (e->state.load(std::memory_order_acquire) & kClosing) != 0;
}

// 1: a reference taken; 0: not live (forward); -1: being closed (EBADF).
int incref(FdEntry* e) {
  std::uint64_t s = e->state.load(std::memory_order_relaxed);
  do {
    if ((s & kLive) == 0) return 0;
    if ((s & kClosing) != 0) return -1;
  } while (!e->state.compare_exchange_weak(s, s + kRef, std::memory_order_acquire,
                                           std::memory_order_relaxed));
  return 1;
}

void decref(FdEntry* e) {
  std::uint64_t s = e->state.fetch_sub(kRef, std::memory_order_acq_rel) - kRef;
  if ((s & kClosing) != 0 && s / kRef == 0) {
    std::uintptr_t w = e->closer.exchange(kCloserDone, std::memory_order_seq_cst);
    if (w > kCloserDone) ready(reinterpret_cast<G*>(w));
  }
}

class RefGuard {
 public:
  explicit RefGuard(FdEntry* e) : e_(e) {}
  ~RefGuard() { decref(e_); }
  RefGuard(const RefGuard&) = delete;
  RefGuard& operator=(const RefGuard&) = delete;

 private:
  FdEntry* e_;
};

void child_after_fork() {
  // The runtime's threads and poller belong to the parent (the epoll set is even shared with
  // it): the child only forwards to libc.
  hooks_active.store(false, std::memory_order_relaxed);
}

// Opens the PollDesc on first need. Null if the fd is closing or the poller refused it.
PollDesc* ensure_pd(FdEntry* e, int fd) {
  PollDesc* pd = e->pd.load(std::memory_order_acquire);
  if (pd != nullptr) return pd;
  NoAsync na;
  LockGuard hold(e->mu);
  pd = e->pd.load(std::memory_order_relaxed);
  if (pd != nullptr || closing(e)) return pd;
  int err = 0;
  pd = poll_open(fd, &err);
  if (pd == nullptr) return nullptr;
  e->pd.store(pd, std::memory_order_release);
  if (!atfork_registered.exchange(true, std::memory_order_relaxed)) {
    pthread_atfork(nullptr, nullptr, child_after_fork);
  }
  return pd;
}

std::int64_t timeval_ns(const timeval& tv) {
  if (tv.tv_sec < 0) return 1;  // Linux: a negative timeout expires at once
  if (tv.tv_sec == 0 && tv.tv_usec == 0) return 0;
  if (tv.tv_sec > 1'000'000'000) return 0;  // effectively none
  return static_cast<std::int64_t>(tv.tv_sec) * 1'000'000'000 +
         static_cast<std::int64_t>(tv.tv_usec) * 1000;
}

std::int64_t sock_timeo(int fd, int opt) {
  timeval tv{};
  socklen_t len = sizeof(tv);
  if (sys(SYS_getsockopt, fd, SOL_SOCKET, opt, &tv, &len) != 0) return 0;
  return timeval_ns(tv);
}

// Switches a candidate to O_NONBLOCK (kGo only). False if the kernel refused, or if the fd is
// not a socket or pipe: then the entry was left behind by a close the hooks did not see (a
// sanitizer's pipe closed by a raw syscall, fclose of an fdopen'ed socket) and the number now
// names something else; the entry is demoted (kind none: unmanaged) and the call forwarded.
bool adopt(FdEntry* e, int fd) {
  NoAsync na;
  LockGuard hold(e->mu);
  std::uint8_t k = e->kind.load(std::memory_order_relaxed);
  if (k == kKindAdopted) return true;
  if (k != kKindCandidate) return false;
  struct stat st {};
  if (sys(SYS_fstat, fd, &st) != 0 || !(S_ISSOCK(st.st_mode) || S_ISFIFO(st.st_mode))) {
    e->kind.store(kKindNone, std::memory_order_release);
    return false;
  }
  int one = 1;
  if (sys(SYS_ioctl, fd, FIONBIO, &one) != 0) return false;
  e->rcvtimeo.store(sock_timeo(fd, SO_RCVTIMEO), std::memory_order_relaxed);
  e->sndtimeo.store(sock_timeo(fd, SO_SNDTIMEO), std::memory_order_relaxed);
  e->kind.store(kKindAdopted, std::memory_order_release);
  bump(stat_adoptions);
  return true;
}

// Close steps 1-4 (see "Close").
enum class CloseStart { kNotManaged, kBusy, kOk };

bool commit_closer(G* g, void* arg) {
  auto* e = static_cast<FdEntry*>(arg);
  std::uintptr_t expect = 0;
  return e->closer.compare_exchange_strong(expect, reinterpret_cast<std::uintptr_t>(g),
                                           std::memory_order_seq_cst);
}

void wait_refs(FdEntry* e, Ctx ctx) {
  for (int spins = 0;; spins++) {
    if (e->state.load(std::memory_order_seq_cst) / kRef == 0) break;
    if (ctx == Ctx::kNoPark) {
      if (spins < 50) {
        sched_yield();
      } else {
        timespec ts{0, 50'000};
        sys(SYS_nanosleep, &ts, nullptr);
      }
      continue;
    }
    park(commit_closer, e, WaitReason::kSemacquire);
  }
  e->closer.store(0, std::memory_order_relaxed);
}

CloseStart begin_close(FdEntry* e, Ctx ctx) {
  std::uint64_t s = e->state.load(std::memory_order_acquire);
  do {
    if ((s & kLive) == 0) return CloseStart::kNotManaged;
    if ((s & kClosing) != 0) return CloseStart::kBusy;
  } while (!e->state.compare_exchange_weak(s, s | kClosing, std::memory_order_seq_cst,
                                           std::memory_order_acquire));
  PollDesc* pd;
  {
    NoAsync na;
    LockGuard hold(e->mu);
    pd = e->pd.load(std::memory_order_relaxed);
  }
  if (pd != nullptr) poll_evict(pd);
  wait_refs(e, ctx);
  if (pd != nullptr) {
    poll_close(pd);
    e->pd.store(nullptr, std::memory_order_relaxed);
  }
  return CloseStart::kOk;
}

void end_close(FdEntry* e) {
  e->kind.store(kKindNone, std::memory_order_relaxed);
  e->user_nb.store(false, std::memory_order_relaxed);
  e->rcvtimeo.store(0, std::memory_order_relaxed);
  e->sndtimeo.store(0, std::memory_order_relaxed);
  e->state.store(0, std::memory_order_release);
}

// Drops an entry left live by a close the hooks did not see (fclose of an fdopen'ed socket,
// close_range, a raw syscall), now that the kernel handed the number out again.
void retire_stale(FdEntry* e) {
  Ctx ctx = ctx_of(getg());
  for (;;) {
    switch (begin_close(e, ctx)) {
      case CloseStart::kNotManaged:
        return;
      case CloseStart::kOk:
        end_close(e);
        return;
      case CloseStart::kBusy:
        sched_yield();
        break;
    }
  }
}

struct FdInit {
  std::uint8_t kind;
  bool user_nb;
  std::int64_t rcvtimeo = 0;
  std::int64_t sndtimeo = 0;
};

void register_fd(int fd, const FdInit& in) {
  FdEntry* e = slot_create(fd);
  if (e == nullptr) return;
  if (e->state.load(std::memory_order_acquire) != 0) retire_stale(e);
  e->kind.store(in.kind, std::memory_order_relaxed);
  e->user_nb.store(in.user_nb, std::memory_order_relaxed);
  e->rcvtimeo.store(in.rcvtimeo, std::memory_order_relaxed);
  e->sndtimeo.store(in.sndtimeo, std::memory_order_relaxed);
  e->closer.store(0, std::memory_order_relaxed);
  e->state.store(kLive, std::memory_order_release);
}

void register_new(int fd, bool user_nb) {
  if (fd >= 0 && hooks_on()) register_fd(fd, FdInit{kKindCandidate, user_nb});
}

// newfd now refers to oldfd's open file (dup, dup2, dup3, F_DUPFD): same kind and flags.
void derive(int newfd, int oldfd) {
  if (newfd < 0 || !hooks_on()) return;
  if (FdEntry* o = io_entry(oldfd)) {
    register_fd(newfd, FdInit{o->kind.load(std::memory_order_acquire),
                              o->user_nb.load(std::memory_order_relaxed),
                              o->rcvtimeo.load(std::memory_order_relaxed),
                              o->sndtimeo.load(std::memory_order_relaxed)});
    return;
  }
  if (FdEntry* n = slot(newfd); n != nullptr && n->state.load(std::memory_order_acquire) != 0) {
    retire_stale(n);
  }
}

// ---------------------------------------------------------------------------------------------
// Waiting for one fd (see "The decision, per call").

constexpr std::int64_t kThreadWaitSlice = 20'000'000;  // kNoPark: re-check close every 20 ms

// Sliced ppoll for contexts that must not park. 0: try again; -EBADF; -ETIMEDOUT.
int thread_wait(FdEntry* e, int fd, int mode, std::int64_t deadline) {
  short events = mode == kPollRead ? POLLIN : POLLOUT;
  for (;;) {
    if (e != nullptr && closing(e)) return -EBADF;
    std::int64_t slice = kThreadWaitSlice;
    if (deadline != 0) {
      std::int64_t left = deadline - nanotime();
      if (left <= 0) return -ETIMEDOUT;
      if (left < slice) slice = left;
    }
    timespec ts{static_cast<time_t>(slice / 1'000'000'000),
                static_cast<long>(slice % 1'000'000'000)};
    pollfd p{fd, events, 0};
    long r = sys(SYS_ppoll, &p, 1, &ts, nullptr, 8);
    if (r > 0 || (r < 0 && r != -EINTR)) return 0;  // ready, or let the syscall report it
  }
}

// One managed call's waiting state: the direction's mutex, the PollDesc, the deadline.
class Io {
 public:
  // before_first_try: constructed before the call's first syscall, which lets wait() skip
  // a syscall (see there).
  Io(FdEntry* e, int fd, int mode, Ctx ctx, bool nb, std::int64_t deadline = -1,
     bool before_first_try = true)
      : e_(e),
        fd_(fd),
        mode_(mode),
        ctx_(ctx),
        nb_(nb),
        before_first_try_(before_first_try),
        deadline_(deadline),
        waits0_(waits().load(std::memory_order_relaxed)) {}
  ~Io() {
    if (dl_set_) poll_set_deadline(pd_, 0, mode_);
    if (locked_) mu().unlock();
  }
  Io(const Io&) = delete;
  Io& operator=(const Io&) = delete;

  bool nb() const { return nb_; }
  int fd() const { return fd_; }
  bool closed() const { return closing(e_); }
  bool can_park() const { return ctx_ == Ctx::kGo; }
  // This call's absolute deadline (0: none), fixed at the first ask.
  std::int64_t deadline() {
    if (deadline_ < 0) {
      std::int64_t t =
          (mode_ == kPollRead ? e_->rcvtimeo : e_->sndtimeo).load(std::memory_order_relaxed);
      deadline_ = t > 0 ? nanotime() + t : 0;
    }
    return deadline_;
  }

  // Waits until the fd may be ready in this call's direction. 0: try the syscall again;
  // -EAGAIN: the caller asked not to wait; -EBADF: closed meanwhile; -ETIMEDOUT: the
  // deadline (SO_RCVTIMEO/SO_SNDTIMEO from the first wait, or the one given) passed.
  int wait() {
    if (nb_) return -EAGAIN;
    deadline();
    if (ctx_ == Ctx::kNoPark || fallback_) return wait_thread();
    if (!locked_) {
      mu().lock();
      locked_ = true;
      pd_ = ensure_pd(e_, fd_);
      if (pd_ == nullptr) {
        if (closing(e_)) return -EBADF;
        fallback_ = true;
        return 0;
      }
      if (deadline_ != 0) {
        poll_set_deadline(pd_, deadline_, mode_);
        dl_set_ = true;
      }
      // Readiness that came after our failed syscall is still recorded in the PollDesc (a
      // new PollDesc's registration reports the fd's state), unless a waiter that held the
      // mutex meanwhile consumed it: that one may have left data (or room), so try the
      // syscall again first. Otherwise wait at once: a syscall now could only fail again.
      if (!before_first_try_ || waits().load(std::memory_order_relaxed) != waits0_) return 0;
    }
    bump(stat_parks);
    int r = poll_wait(pd_, mode_);
    waits().store(waits().load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    if (r == kPollOk) return 0;
    return r == kPollClosing ? -EBADF : -ETIMEDOUT;
  }

 private:
  goro::Mutex& mu() { return mode_ == kPollRead ? e_->rmu : e_->wmu; }
  std::atomic<std::uint32_t>& waits() { return mode_ == kPollRead ? e_->rwaits : e_->wwaits; }

  int wait_thread() {
    if (ctx_ != Ctx::kGo) return thread_wait(e_, fd_, mode_, deadline_);
    int r = 0;
    bump(stat_handoffs);
    goro::blocking([&] { r = thread_wait(e_, fd_, mode_, deadline_); });
    return r;
  }

  FdEntry* e_;
  int fd_;
  int mode_;
  Ctx ctx_;
  bool nb_;
  bool before_first_try_;
  bool locked_ = false;
  bool dl_set_ = false;
  bool fallback_ = false;
  std::int64_t deadline_;  // -1: not computed yet; 0: none
  std::uint32_t waits0_;   // waits() before the first syscall
  PollDesc* pd_ = nullptr;
};

// Runs op(io) on a managed fd (holding a reference). False: forward to libc instead.
template <class Op>
bool run_managed(FdEntry* e, int fd, int mode, Ctx ctx, bool call_nb, Op& op, long* out) {
  int rc = incref(e);
  if (rc < 0) {
    *out = -EBADF;
    return true;
  }
  if (rc == 0) return false;
  RefGuard ref(e);
  std::uint8_t k = e->kind.load(std::memory_order_acquire);
  if (!is_io_kind(k)) return false;
  bool nb = call_nb || e->user_nb.load(std::memory_order_relaxed);
  if (k == kKindCandidate && !nb) {
    if (ctx != Ctx::kGo || !adopt(e, fd)) return false;
  }
  Io io(e, fd, mode, ctx, nb);
  *out = op(io);
  return true;
}

// The dispatcher of the fd calls: fwd() is libc's call (libc-style result), op(Io&) the
// managed loop (result or -errno).
template <class Fwd, class Op>
long fd_call(int fd, int mode, bool call_nb, Fwd&& fwd, Op&& op) {
  if (!hooks_on()) return static_cast<long>(fwd());
  FdEntry* e = io_entry(fd);
  Ctx ctx = ctx_of(getg());
  if (ctx != Ctx::kGo) {
    if (e == nullptr || e->kind.load(std::memory_order_acquire) != kKindAdopted) {
      int saved = errno;
      long r = static_cast<long>(fwd());
      // A goroutine may have adopted the fd while this call was on its way into the kernel,
      // which then saw the runtime's O_NONBLOCK instead of the user's blocking mode: wait as
      // a call on an adopted fd does. An adoption still in progress (it holds mu from setting
      // O_NONBLOCK until it marks the entry adopted) is waited for first.
      if (r < 0 && errno == EAGAIN && e != nullptr && !call_nb &&
          !e->user_nb.load(std::memory_order_relaxed)) {
        if (e->kind.load(std::memory_order_acquire) == kKindCandidate) {
          NoAsync na;
          LockGuard hold(e->mu);
        }
        if (e->kind.load(std::memory_order_acquire) == kKindAdopted) {
          long m = 0;
          errno = saved;
          if (run_managed(e, fd, mode, ctx, call_nb, op, &m)) return libc_ret(m);
        }
        errno = EAGAIN;
      }
      return r;
    }
    long r = 0;
    if (!run_managed(e, fd, mode, ctx, call_nb, op, &r)) return static_cast<long>(fwd());
    return libc_ret(r);
  }
  GoCall c;
  if (e == nullptr) return go_forward(c, fwd);
  long r = 0;
  bool done;
  {
    EnterRuntime rt;
    done = run_managed(e, fd, mode, ctx, call_nb, op, &r);
  }
  if (!done) return go_forward(c, fwd);
  return go_exit(c, r);
}

// --- Managed loops (the caller holds a reference; each returns a result or -errno).

// Calls that return as soon as something was transferred (read, recv, accept, ...).
template <class Once>
long loop_once(Io& io, Once&& once) {
  for (;;) {
    long r = once();
    if (r == -EINTR) continue;
    if (r != -EAGAIN || io.nb()) return r;
    int w = io.wait();
    if (w == -ETIMEDOUT) return -EAGAIN;  // SO_RCVTIMEO / SO_SNDTIMEO: EAGAIN, as Linux
    if (w < 0) return w;
  }
}

// Calls that transfer everything unless an error, the end of the stream or the timeout stops
// them (write, send, MSG_WAITALL): once(done) moves bytes from offset done.
template <class Once>
long loop_all(Io& io, std::size_t total, Once&& once) {
  std::size_t done = 0;
  for (;;) {
    long r = once(done);
    if (r > 0) {
      done += static_cast<std::size_t>(r);
      if (done >= total) return static_cast<long>(done);
      continue;
    }
    if (r == 0) return static_cast<long>(done);  // end of stream (a write of 0: nothing to do)
    if (r == -EINTR) continue;
    if (r != -EAGAIN || io.nb()) return done > 0 ? static_cast<long>(done) : r;
    int w = io.wait();
    if (w < 0) {
      if (done > 0) return static_cast<long>(done);
      return w == -ETIMEDOUT ? -EAGAIN : w;
    }
  }
}

// An iovec array that can be advanced past bytes already transferred (writev, sendmsg,
// recvmsg with MSG_WAITALL). Up to kInline entries on the stack.
class IovCursor {
 public:
  IovCursor(const iovec* iov, int n) : n_(n < 0 ? 0 : n) {
    v_ = n_ <= kInline ? inline_ : new (std::nothrow) iovec[static_cast<std::size_t>(n_)];
    if (v_ == nullptr) {
      n_ = 0;
      v_ = inline_;
      ok_ = false;
      return;
    }
    for (int i = 0; i < n_; i++) {
      v_[i] = iov[i];
      total_ += iov[i].iov_len;
    }
  }
  ~IovCursor() {
    if (v_ != inline_) delete[] v_;
  }
  IovCursor(const IovCursor&) = delete;
  IovCursor& operator=(const IovCursor&) = delete;

  bool ok() const { return ok_; }
  std::size_t total() const { return total_; }
  // The remaining vector after `done` bytes in all (monotonic calls).
  iovec* at(std::size_t done, int* count) {
    std::size_t skip = done - consumed_;
    while (first_ < n_ && skip >= v_[first_].iov_len) {
      skip -= v_[first_].iov_len;
      consumed_ += v_[first_].iov_len;
      first_++;
    }
    if (first_ < n_ && skip > 0) {
      v_[first_].iov_base = static_cast<char*>(v_[first_].iov_base) + skip;
      v_[first_].iov_len -= skip;
      consumed_ += skip;
    }
    *count = n_ - first_;
    return v_ + first_;
  }

 private:
  static constexpr int kInline = 16;
  iovec inline_[kInline];
  iovec* v_;
  int n_;
  int first_ = 0;
  std::size_t consumed_ = 0;
  std::size_t total_ = 0;
  bool ok_ = true;
};

// ---------------------------------------------------------------------------------------------
// Waiting for many fds: poll, select (see "poll, select, epoll_wait from a goroutine").

class MultiWait {
 public:
  MultiWait() = default;
  ~MultiWait() {
    if (pd_ != nullptr) {
      poll_evict(pd_);
      poll_close(pd_);
    }
    if (epfd_ >= 0) sys(SYS_close, epfd_);
  }
  MultiWait(const MultiWait&) = delete;
  MultiWait& operator=(const MultiWait&) = delete;

  bool init() {
    long r = sys(SYS_epoll_create1, EPOLL_CLOEXEC);
    if (r < 0) return false;
    epfd_ = static_cast<int>(r);
    return true;
  }
  // Adds fd; *exists: it was added before (the caller merges the events and calls modify).
  bool add(int fd, std::uint32_t events, bool* exists) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    long r = sys(SYS_epoll_ctl, epfd_, EPOLL_CTL_ADD, fd, &ev);
    *exists = r == -EEXIST;
    return r == 0 || *exists;
  }
  bool modify(int fd, std::uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    return sys(SYS_epoll_ctl, epfd_, EPOLL_CTL_MOD, fd, &ev) == 0;
  }
  // Registers the set with the poller, with an absolute deadline (0: none).
  bool arm(std::int64_t deadline) {
    int err = 0;
    pd_ = poll_open(epfd_, &err);
    if (pd_ == nullptr) return false;
    if (deadline != 0) poll_set_deadline(pd_, deadline, kPollRead);
    return true;
  }
  // 0: something may be ready; -ETIMEDOUT: the deadline passed.
  int wait() {
    bump(stat_parks);
    return poll_wait(pd_, kPollRead) == kPollOk ? 0 : -ETIMEDOUT;
  }

 private:
  int epfd_ = -1;
  PollDesc* pd_ = nullptr;
};

constexpr std::uint32_t kPollBits = POLLIN | POLLPRI | POLLOUT | POLLRDNORM | POLLRDBAND |
                                    POLLWRNORM | POLLWRBAND | POLLMSG | POLLRDHUP;
static_assert(POLLIN == EPOLLIN && POLLPRI == EPOLLPRI && POLLOUT == EPOLLOUT &&
                  POLLRDNORM == EPOLLRDNORM && POLLRDBAND == EPOLLRDBAND &&
                  POLLWRNORM == EPOLLWRNORM && POLLWRBAND == EPOLLWRBAND && POLLMSG == EPOLLMSG &&
                  POLLRDHUP == EPOLLRDHUP,
              "poll and epoll event bits coincide on Linux");

// Forever, for a goroutine (poll(NULL, 0, -1) and friends).
constexpr std::int64_t kForever = INT64_MAX;

std::int64_t deadline_after(std::int64_t ns) {
  if (ns == kForever) return 0;
  std::int64_t now = nanotime();
  return ns > INT64_MAX - now ? 0 : now + ns;
}

void sleep_ns(std::int64_t ns) {
  // Chunks of a day keep steady_clock arithmetic far from overflow.
  constexpr std::int64_t kDay = 86'400'000'000'000;
  while (ns > 0) {
    std::int64_t d = ns > kDay ? kDay : ns;
    goro::sleep_for(std::chrono::nanoseconds(d));
    if (ns != kForever) ns -= d;
  }
}

void sleep_until_deadline(std::int64_t deadline) {
  if (deadline == 0) {
    sleep_ns(kForever);
    return;
  }
  goro::sleep_until(std::chrono::steady_clock::time_point(std::chrono::nanoseconds(deadline)));
}

// One managed fd waited for in one direction (the common poll/select of a single socket):
// on its own PollDesc, serialized with its other waiters, no private epoll set. recheck() is
// the zero-timeout call (its result, or -errno). False if this fast path does not apply.
template <class Recheck>
bool wait_one(int fd, int mode, std::int64_t deadline, Recheck&& recheck, long* out) {
  FdEntry* e = io_entry(fd);
  if (e == nullptr || incref(e) != 1) return false;
  RefGuard ref(e);
  Io io(e, fd, mode, Ctx::kGo, false, deadline, false);
  for (;;) {
    int w = io.wait();  // the first call only takes the direction's lock
    long r = recheck();
    if (r != 0 || w != 0) {  // ready (or an error), the deadline, or closed meanwhile
      *out = r;
      return true;
    }
  }
}

// The direction a poll event mask waits for, if exactly one (else 0).
int poll_mode(short events) {
  bool rd = (events & (POLLIN | POLLRDNORM | POLLRDHUP)) != 0;
  bool wr = (events & (POLLOUT | POLLWRNORM)) != 0;
  if ((events & (POLLPRI | POLLRDBAND | POLLWRBAND | POLLMSG)) != 0 || rd == wr) return 0;
  return rd ? kPollRead : kPollWrite;
}

// poll from a goroutine; timeout_ns: kForever, or >= 0. *fallback: use the real call.
long poll_go(pollfd* fds, nfds_t n, std::int64_t timeout_ns, std::int64_t deadline,
             bool* fallback) {
  long r = sys(SYS_poll, fds, n, 0);
  if (r != 0 || timeout_ns == 0) return r;
  if (n == 0) {
    sleep_until_deadline(deadline);
    return 0;
  }
  if (n == 1 && fds[0].fd >= 0) {
    if (int mode = poll_mode(fds[0].events); mode != 0) {
      long out = 0;
      if (wait_one(
              fds[0].fd, mode, deadline, [&] { return sys(SYS_poll, fds, 1, 0); }, &out)) {
        return out;
      }
    }
  }
  MultiWait w;
  if (!w.init()) {
    *fallback = true;
    return 0;
  }
  for (nfds_t i = 0; i < n; i++) {
    if (fds[i].fd < 0) continue;
    std::uint32_t ev = static_cast<std::uint16_t>(fds[i].events) & kPollBits;
    bool exists = false;
    bool ok = w.add(fds[i].fd, ev, &exists);
    if (ok && exists) {
      for (nfds_t j = 0; j < i; j++) {
        if (fds[j].fd == fds[i].fd) ev |= static_cast<std::uint16_t>(fds[j].events) & kPollBits;
      }
      ok = w.modify(fds[i].fd, ev);
    }
    if (!ok) {
      *fallback = true;
      return 0;
    }
  }
  if (!w.arm(deadline)) {
    *fallback = true;
    return 0;
  }
  for (;;) {
    int wr = w.wait();
    r = sys(SYS_poll, fds, n, 0);
    if (r != 0 || wr != 0) return r;
  }
}

// select from a goroutine: as poll_go, over fd_sets (restored before every retry).
long select_go(int nfds, fd_set* rs, fd_set* ws, fd_set* es, std::int64_t timeout_ns,
               std::int64_t deadline, bool* fallback) {
  if (nfds < 0) return -EINVAL;
  std::size_t words = (static_cast<std::size_t>(nfds) + 63) / 64;
  constexpr std::size_t kInlineWords = 1024 / 64;
  std::uint64_t inline_copy[3 * kInlineWords];
  std::uint64_t* copy = inline_copy;
  std::uint64_t* heap = nullptr;
  if (words > kInlineWords) {
    heap = new (std::nothrow) std::uint64_t[3 * words];
    if (heap == nullptr) {
      *fallback = true;
      return 0;
    }
    copy = heap;
  }
  struct Free {
    std::uint64_t* p;
    ~Free() { delete[] p; }
  } free_heap{heap};
  fd_set* sets[3] = {rs, ws, es};
  for (int k = 0; k < 3; k++) {
    if (sets[k] != nullptr) std::memcpy(copy + k * words, sets[k], words * 8);
  }
  auto restore = [&] {
    for (int k = 0; k < 3; k++) {
      if (sets[k] != nullptr) std::memcpy(sets[k], copy + k * words, words * 8);
    }
  };
  timeval zero{0, 0};
  long r = sys(SYS_select, nfds, rs, ws, es, &zero);
  if (r != 0 || timeout_ns == 0) return r;
  // One fd in one set (select_read/select_write helpers): wait on its own PollDesc.
  int only = -1;
  int only_mode = 0;
  int count = 0;
  for (int k = 0; k < 3 && count < 2; k++) {
    if (sets[k] == nullptr) continue;
    for (std::size_t wd = 0; wd < words && count < 2; wd++) {
      std::uint64_t bits = copy[k * words + wd];
      while (bits != 0 && count < 2) {
        only = static_cast<int>(wd * 64) + __builtin_ctzll(bits);
        only_mode = k == 0 ? kPollRead : k == 1 ? kPollWrite : 0;
        bits &= bits - 1;
        count++;
      }
    }
  }
  if (count == 1 && only_mode != 0 && only < nfds) {
    long out = 0;
    auto recheck = [&] {
      restore();
      return sys(SYS_select, nfds, rs, ws, es, &zero);
    };
    if (wait_one(only, only_mode, deadline, recheck, &out)) return out;
    restore();
  }
  MultiWait w;
  if (!w.init()) {
    restore();
    *fallback = true;
    return 0;
  }
  for (int fd = 0; fd < nfds; fd++) {
    std::uint64_t bit = std::uint64_t{1} << (fd % 64);
    std::size_t word = static_cast<std::size_t>(fd) / 64;
    std::uint32_t ev = 0;
    if (rs != nullptr && (copy[0 * words + word] & bit) != 0) ev |= EPOLLIN;
    if (ws != nullptr && (copy[1 * words + word] & bit) != 0) ev |= EPOLLOUT;
    if (es != nullptr && (copy[2 * words + word] & bit) != 0) ev |= EPOLLPRI;
    if (ev == 0) continue;
    bool exists = false;
    if (!w.add(fd, ev, &exists) || exists) {
      restore();
      *fallback = true;
      return 0;
    }
  }
  if (!w.arm(deadline)) {
    restore();
    *fallback = true;
    return 0;
  }
  for (;;) {
    int wr = w.wait();
    restore();
    r = sys(SYS_select, nfds, rs, ws, es, &zero);
    if (r != 0 || wr != 0) return r;  // on timeout the last select cleared the sets
  }
}

// The poll-only entry of a user's epoll fd (created on first use), referenced; or null.
FdEntry* epoll_entry(int epfd, int* rc) {
  FdEntry* e = slot_create(epfd);
  if (e == nullptr) {
    *rc = 0;
    return nullptr;
  }
  if (e->state.load(std::memory_order_acquire) == 0) {
    NoAsync na;
    LockGuard hold(e->mu);
    if (e->state.load(std::memory_order_acquire) == 0) {
      e->kind.store(kKindPollOnly, std::memory_order_relaxed);
      e->user_nb.store(false, std::memory_order_relaxed);
      e->closer.store(0, std::memory_order_relaxed);
      e->state.store(kLive, std::memory_order_release);
    }
  }
  *rc = incref(e);
  return *rc == 1 ? e : nullptr;
}

// epoll_wait from a goroutine. *fallback: use the real call.
long epoll_go(int epfd, epoll_event* events, int max, std::int64_t timeout_ns,
              std::int64_t deadline, bool* fallback) {
  long r = sys(SYS_epoll_wait, epfd, events, max, 0);
  if (r != 0 || timeout_ns == 0) return r;
  int rc = 0;
  FdEntry* e = epoll_entry(epfd, &rc);
  if (rc < 0) return -EBADF;
  if (e == nullptr) {
    *fallback = true;
    return 0;
  }
  RefGuard ref(e);
  Io io(e, epfd, kPollRead, Ctx::kGo, false, deadline, false);
  for (;;) {
    int w = io.wait();
    if (w == -EBADF) return w;
    r = sys(SYS_epoll_wait, epfd, events, max, 0);
    if (r != 0 || w == -ETIMEDOUT) return r;
  }
}

// Remaining time of a deadline for the real call in a fallback, in ms (-1: forever).
int remaining_ms(std::int64_t deadline, std::int64_t timeout_ns) {
  if (timeout_ns == kForever) return -1;
  std::int64_t left = deadline - nanotime();
  if (left <= 0) return 0;
  std::int64_t ms = (left + 999'999) / 1'000'000;
  return ms > INT32_MAX ? INT32_MAX : static_cast<int>(ms);
}

std::int64_t ts_ns(const timespec* ts) {
  if (ts == nullptr) return kForever;
  if (ts->tv_sec < 0) return 0;
  if (ts->tv_sec > 9'000'000'000) return kForever;
  return static_cast<std::int64_t>(ts->tv_sec) * 1'000'000'000 + ts->tv_nsec;
}

bool ts_valid(const timespec* ts) {
  return ts->tv_nsec >= 0 && ts->tv_nsec < 1'000'000'000 && ts->tv_sec >= 0;
}

// ---------------------------------------------------------------------------------------------
// Resolver functions (see "getaddrinfo" in docs/io.md): libc's, inside goro::blocking.

std::atomic<GetaddrinfoFn> test_getaddrinfo{nullptr};

template <class Fn>
Fn resolver(std::atomic<Fn>& slot, const char* name) {
  Fn f = slot.load(std::memory_order_relaxed);
  if (f == nullptr) {  // a call before the constructor ran
    f = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, name));
    slot.store(f, std::memory_order_relaxed);
  }
  return f;
}

// Runs f() (returns int or a pointer) where it cannot stall a P; errno and h_errno carried.
template <class F>
auto resolve_call(F&& f) -> decltype(f()) {
  if (!hooks_on() || ctx_of(getg()) != Ctx::kGo) return f();
  GoCall c;
  decltype(f()) r{};
  int err = 0;
  int herr = 0;
  bump(stat_handoffs);
  goro::blocking([&] {
    r = f();
    err = errno_now();
    herr = *h_errno_loc();
  });
  *h_errno_loc() = herr;
  errno_exit(c, 0, err);
  return r;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Internal interface (io_hooks.hpp).

bool hook_enabled() noexcept {
  return hooks_on();
}

HookFdKind hook_fd_kind(int fd) noexcept {
  if (!hooks_on()) return HookFdKind::kUnmanaged;
  FdEntry* e = slot(fd);
  if (e == nullptr || (e->state.load(std::memory_order_acquire) & kLive) == 0) {
    return HookFdKind::kUnmanaged;
  }
  return static_cast<HookFdKind>(e->kind.load(std::memory_order_acquire));
}

bool hook_fd_user_nonblock(int fd) noexcept {
  FdEntry* e = io_entry(fd);
  return e != nullptr && e->user_nb.load(std::memory_order_relaxed);
}

HookStats hook_stats() noexcept {
  return HookStats{
      stat_parks.load(std::memory_order_relaxed), stat_handoffs.load(std::memory_order_relaxed),
      stat_adoptions.load(std::memory_order_relaxed), stat_fixups.load(std::memory_order_relaxed)};
}

bool hook_set_errno_fixup(bool on) noexcept {
  return errno_fixup_on.exchange(on, std::memory_order_relaxed);
}

void hook_set_getaddrinfo_for_test(GetaddrinfoFn f) noexcept {
  test_getaddrinfo.store(f, std::memory_order_relaxed);
}

}  // namespace goro::internal

using namespace goro::internal;

// The errno address rewrite (see "errno"): pushes the callee-saved registers so that the scan
// sees (and fixes) the ones no frame has saved yet, scans [rsp, hi), pops them back.
extern "C" __attribute__((visibility("hidden"), no_sanitize("address", "undefined"))) void
goro_hook_errno_scan(std::uintptr_t old_loc, std::uintptr_t new_loc, std::uintptr_t* lo,
                     std::uintptr_t* hi) {
  for (std::uintptr_t* p = lo; p < hi; p++) {
    if (*p == old_loc) *p = new_loc;
  }
}

__asm__(R"(
  .text
  .p2align 4
  .globl goro_hook_errno_fixup
  .hidden goro_hook_errno_fixup
  .type goro_hook_errno_fixup, @function
goro_hook_errno_fixup:
  .cfi_startproc
  pushq %rbx
  .cfi_adjust_cfa_offset 8
  .cfi_rel_offset %rbx, 0
  pushq %rbp
  .cfi_adjust_cfa_offset 8
  .cfi_rel_offset %rbp, 0
  pushq %r12
  .cfi_adjust_cfa_offset 8
  .cfi_rel_offset %r12, 0
  pushq %r13
  .cfi_adjust_cfa_offset 8
  .cfi_rel_offset %r13, 0
  pushq %r14
  .cfi_adjust_cfa_offset 8
  .cfi_rel_offset %r14, 0
  pushq %r15
  .cfi_adjust_cfa_offset 8
  .cfi_rel_offset %r15, 0
  subq $8, %rsp
  .cfi_adjust_cfa_offset 8
  movq %rdx, %rcx
  leaq 8(%rsp), %rdx
  call goro_hook_errno_scan
  addq $8, %rsp
  .cfi_adjust_cfa_offset -8
  popq %r15
  .cfi_adjust_cfa_offset -8
  popq %r14
  .cfi_adjust_cfa_offset -8
  popq %r13
  .cfi_adjust_cfa_offset -8
  popq %r12
  .cfi_adjust_cfa_offset -8
  popq %rbp
  .cfi_adjust_cfa_offset -8
  popq %rbx
  .cfi_adjust_cfa_offset -8
  ret
  .cfi_endproc
  .size goro_hook_errno_fixup, .-goro_hook_errno_fixup
)");

// ---------------------------------------------------------------------------------------------
// Start-up.

namespace {

// Priority 101: before the program's own constructors (which may already do I/O).
__attribute__((constructor(101))) void io_hooks_init() {
  if (const char* v = std::getenv("GORO_HOOK"); v != nullptr && std::strcmp(v, "0") == 0) {
    hooks_active.store(false, std::memory_order_relaxed);
  }
#define GORO_HOOK_RESOLVE(name, ret, args) \
  resolve_one(#name, reals.name, reinterpret_cast<void*>(static_cast<ret(*) args>(&::name)));
  GORO_HOOK_REALS(GORO_HOOK_RESOLVE)
#undef GORO_HOOK_RESOLVE
}

// --- libc's functions, or raw syscalls where none was found.

ssize_t fwd_read(int fd, void* b, size_t n) {
  if (auto f = REAL(read)) return f(fd, b, n);
  return libc_ret(sys(SYS_read, fd, b, n));
}
ssize_t fwd_write(int fd, const void* b, size_t n) {
  if (auto f = REAL(write)) return f(fd, b, n);
  return libc_ret(sys(SYS_write, fd, b, n));
}
ssize_t fwd_readv(int fd, const iovec* v, int n) {
  if (auto f = REAL(readv)) return f(fd, v, n);
  return libc_ret(sys(SYS_readv, fd, v, n));
}
ssize_t fwd_writev(int fd, const iovec* v, int n) {
  if (auto f = REAL(writev)) return f(fd, v, n);
  return libc_ret(sys(SYS_writev, fd, v, n));
}
ssize_t fwd_pread(int fd, void* b, size_t n, off_t off) {
  if (auto f = REAL(pread64)) return f(fd, b, n, off);
  return libc_ret(sys(SYS_pread64, fd, b, n, off));
}
ssize_t fwd_pwrite(int fd, const void* b, size_t n, off_t off) {
  if (auto f = REAL(pwrite64)) return f(fd, b, n, off);
  return libc_ret(sys(SYS_pwrite64, fd, b, n, off));
}
ssize_t fwd_recvfrom(int fd, void* b, size_t n, int fl, sockaddr* a, socklen_t* al) {
  if (auto f = REAL(recvfrom)) return f(fd, b, n, fl, a, al);
  return libc_ret(sys(SYS_recvfrom, fd, b, n, fl, a, al));
}
ssize_t fwd_recvmsg(int fd, msghdr* m, int fl) {
  if (auto f = REAL(recvmsg)) return f(fd, m, fl);
  return libc_ret(sys(SYS_recvmsg, fd, m, fl));
}
ssize_t fwd_sendto(int fd, const void* b, size_t n, int fl, const sockaddr* a, socklen_t al) {
  if (auto f = REAL(sendto)) return f(fd, b, n, fl, a, al);
  return libc_ret(sys(SYS_sendto, fd, b, n, fl, a, al));
}
ssize_t fwd_sendmsg(int fd, const msghdr* m, int fl) {
  if (auto f = REAL(sendmsg)) return f(fd, m, fl);
  return libc_ret(sys(SYS_sendmsg, fd, m, fl));
}
int fwd_accept4(int fd, sockaddr* a, socklen_t* al, int fl) {
  if (auto f = REAL(accept4)) return f(fd, a, al, fl);
  return static_cast<int>(libc_ret(sys(SYS_accept4, fd, a, al, fl)));
}
int fwd_connect(int fd, const sockaddr* a, socklen_t al) {
  if (auto f = REAL(connect)) return f(fd, a, al);
  return static_cast<int>(libc_ret(sys(SYS_connect, fd, a, al)));
}
int fwd_poll(pollfd* p, nfds_t n, int t) {
  if (auto f = REAL(poll)) return f(p, n, t);
  return static_cast<int>(libc_ret(sys(SYS_poll, p, n, t)));
}
int fwd_ppoll(pollfd* p, nfds_t n, const timespec* t, const sigset_t* m) {
  if (auto f = REAL(ppoll)) return f(p, n, t, m);
  timespec copy{};
  if (t != nullptr) copy = *t;  // glibc leaves the caller's timeout alone
  return static_cast<int>(
      libc_ret(sys(SYS_ppoll, p, n, t != nullptr ? &copy : nullptr, m, m != nullptr ? 8 : 0)));
}
int fwd_select(int n, fd_set* r, fd_set* w, fd_set* e, timeval* t) {
  if (auto f = REAL(select)) return f(n, r, w, e, t);
  return static_cast<int>(libc_ret(sys(SYS_select, n, r, w, e, t)));
}
int fwd_pselect(int n, fd_set* r, fd_set* w, fd_set* e, const timespec* t, const sigset_t* m) {
  if (auto f = REAL(pselect)) return f(n, r, w, e, t, m);
  timespec copy{};
  if (t != nullptr) copy = *t;
  struct {
    const sigset_t* set;
    std::size_t size;
  } data{m, 8};
  return static_cast<int>(
      libc_ret(sys(SYS_pselect6, n, r, w, e, t != nullptr ? &copy : nullptr, &data)));
}
int fwd_epoll_wait(int ep, epoll_event* ev, int max, int t) {
  if (auto f = REAL(epoll_wait)) return f(ep, ev, max, t);
  return static_cast<int>(libc_ret(sys(SYS_epoll_wait, ep, ev, max, t)));
}
int fwd_epoll_pwait(int ep, epoll_event* ev, int max, int t, const sigset_t* m) {
  if (auto f = REAL(epoll_pwait)) return f(ep, ev, max, t, m);
  return static_cast<int>(libc_ret(sys(SYS_epoll_pwait, ep, ev, max, t, m, 8)));
}
int fwd_nanosleep(const timespec* req, timespec* rem) {
  if (auto f = REAL(nanosleep)) return f(req, rem);
  return static_cast<int>(libc_ret(sys(SYS_nanosleep, req, rem)));
}
int fwd_clock_nanosleep(clockid_t c, int fl, const timespec* req, timespec* rem) {
  if (auto f = REAL(clock_nanosleep)) return f(c, fl, req, rem);
  if (c == CLOCK_THREAD_CPUTIME_ID) return EINVAL;
  return static_cast<int>(-sys(SYS_clock_nanosleep, c, fl, req, rem));
}
int fwd_usleep(useconds_t us) {
  if (auto f = REAL(usleep)) return f(us);
  timespec ts{static_cast<time_t>(us / 1'000'000), static_cast<long>(us % 1'000'000) * 1000};
  return static_cast<int>(libc_ret(sys(SYS_nanosleep, &ts, nullptr)));
}
unsigned fwd_sleep(unsigned s) {
  if (auto f = REAL(sleep)) return f(s);
  timespec ts{static_cast<time_t>(s), 0};
  timespec rem{};
  if (sys(SYS_nanosleep, &ts, &rem) == 0) return 0;
  return static_cast<unsigned>(rem.tv_sec) + (rem.tv_nsec > 0 ? 1 : 0);
}
int fwd_close(int fd) {
  if (auto f = REAL(close)) return f(fd);
  return static_cast<int>(libc_ret(sys(SYS_close, fd)));
}
int fwd_fcntl(int fd, int cmd, void* arg) {
  if (auto f = REAL(fcntl)) return f(fd, cmd, arg);
  if (cmd == F_GETOWN) {  // as glibc: F_GETOWN_EX, so a process group comes back negative
    f_owner_ex ex{};
    long r = sys(SYS_fcntl, fd, F_GETOWN_EX, &ex);
    if (r < 0) return static_cast<int>(libc_ret(r));
    return ex.type == F_OWNER_PGRP ? -ex.pid : ex.pid;
  }
  return static_cast<int>(libc_ret(sys(SYS_fcntl, fd, cmd, arg)));
}
int fwd_ioctl(int fd, unsigned long req, void* arg) {
  if (auto f = REAL(ioctl)) return f(fd, req, arg);
  return static_cast<int>(libc_ret(sys(SYS_ioctl, fd, req, arg)));
}
int fwd_dup(int fd) {
  if (auto f = REAL(dup)) return f(fd);
  return static_cast<int>(libc_ret(sys(SYS_dup, fd)));
}
int fwd_dup2(int a, int b) {
  if (auto f = REAL(dup2)) return f(a, b);
  return static_cast<int>(libc_ret(sys(SYS_dup2, a, b)));
}
int fwd_dup3(int a, int b, int fl) {
  if (auto f = REAL(dup3)) return f(a, b, fl);
  return static_cast<int>(libc_ret(sys(SYS_dup3, a, b, fl)));
}
int fwd_socket(int d, int t, int p) {
  if (auto f = REAL(socket)) return f(d, t, p);
  return static_cast<int>(libc_ret(sys(SYS_socket, d, t, p)));
}
int fwd_socketpair(int d, int t, int p, int* sv) {
  if (auto f = REAL(socketpair)) return f(d, t, p, sv);
  return static_cast<int>(libc_ret(sys(SYS_socketpair, d, t, p, sv)));
}
int fwd_pipe2(int* fds, int fl) {
  if (auto f = REAL(pipe2)) return f(fds, fl);
  return static_cast<int>(libc_ret(sys(SYS_pipe2, fds, fl)));
}
int fwd_setsockopt(int fd, int lvl, int opt, const void* v, socklen_t l) {
  if (auto f = REAL(setsockopt)) return f(fd, lvl, opt, v, l);
  return static_cast<int>(libc_ret(sys(SYS_setsockopt, fd, lvl, opt, v, l)));
}

// --- Shared bodies.

ssize_t hooked_recvfrom(int fd, void* buf, size_t n, int flags, sockaddr* addr, socklen_t* alen) {
  bool nb = (flags & MSG_DONTWAIT) != 0;
  return fd_call(
      fd, kPollRead, nb, [&] { return fwd_recvfrom(fd, buf, n, flags, addr, alen); },
      [&](Io& io) {
        if ((flags & MSG_WAITALL) != 0 && !io.nb()) {
          return loop_all(io, n, [&](std::size_t done) {
            return sys(SYS_recvfrom, fd, static_cast<char*>(buf) + done, n - done, flags, addr,
                       alen);
          });
        }
        return loop_once(io, [&] { return sys(SYS_recvfrom, fd, buf, n, flags, addr, alen); });
      });
}

ssize_t hooked_sendto(int fd, const void* buf, size_t n, int flags, const sockaddr* addr,
                      socklen_t alen) {
  bool nb = (flags & MSG_DONTWAIT) != 0;
  return fd_call(
      fd, kPollWrite, nb, [&] { return fwd_sendto(fd, buf, n, flags, addr, alen); },
      [&](Io& io) {
        return loop_all(io, n, [&](std::size_t done) {
          return sys(SYS_sendto, fd, static_cast<const char*>(buf) + done, n - done, flags, addr,
                     alen);
        });
      });
}

int hooked_accept4(int fd, sockaddr* addr, socklen_t* alen, int flags) {
  bool nb = (flags & SOCK_NONBLOCK) != 0;
  return static_cast<int>(fd_call(
      fd, kPollRead, false,
      [&] {
        int r = fwd_accept4(fd, addr, alen, flags);
        if (r >= 0) {
          int saved = errno_now();
          register_new(r, nb);
          *errno_loc() = saved;
        }
        return r;
      },
      [&](Io& io) {
        long r = loop_once(io, [&] { return sys(SYS_accept4, fd, addr, alen, flags); });
        if (r >= 0) register_new(static_cast<int>(r), nb);
        return r;
      }));
}

// connect on a managed socket: EINPROGRESS → wait for writability → SO_ERROR (a wake-up may
// be spurious: 0 is trusted only if getpeername agrees). A Unix socket whose listener's
// backlog is full answers EAGAIN and gives no readiness edge: it is retried after short sleeps.
long connect_managed(Io& io, const sockaddr* addr, socklen_t alen) {
  int fd = io.fd();
  long r = sys(SYS_connect, fd, addr, alen);
  if (r == -EINTR) r = -EINPROGRESS;  // the connection goes on asynchronously
  if (io.nb()) return r;
  std::int64_t backoff = 1'000'000;
  while (r == -EAGAIN) {
    if (io.closed()) return -EBADF;
    std::int64_t d = io.deadline();
    if (d != 0 && nanotime() >= d) return -EAGAIN;
    if (io.can_park()) {
      goro::sleep_for(std::chrono::nanoseconds(backoff));
    } else {
      timespec ts{0, static_cast<long>(backoff)};
      sys(SYS_nanosleep, &ts, nullptr);
    }
    if (backoff < 16'000'000) backoff *= 2;
    r = sys(SYS_connect, fd, addr, alen);
  }
  if (r != -EINPROGRESS) return r;
  for (;;) {
    int w = io.wait();
    if (w == -EBADF) return w;
    if (w == -ETIMEDOUT) return -EINPROGRESS;  // SO_SNDTIMEO: as Linux
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (long g = sys(SYS_getsockopt, fd, SOL_SOCKET, SO_ERROR, &soerr, &sl); g != 0) {
      soerr = static_cast<int>(-g);
    }
    if (soerr == EINPROGRESS || soerr == EALREADY || soerr == EINTR) continue;
    if (soerr != 0) return -soerr;
    sockaddr_storage peer;
    socklen_t pl = sizeof(peer);
    if (sys(SYS_getpeername, fd, &peer, &pl) == 0) return 0;
  }
}

// A call that creates fds (socket, pipe, dup, F_DUPFD): f() is libc's; after(r) records the
// new fd(s), which may wait (a stale entry is retired); errno stays what f() left.
template <class F, class After>
long create_call(F&& f, After&& after) {
  if (!hooks_on()) return static_cast<long>(f());
  if (ctx_of(getg()) != Ctx::kGo) {
    long r = static_cast<long>(f());
    if (r >= 0) {
      int saved = errno_now();
      after(r);
      *errno_loc() = saved;
    }
    return r;
  }
  GoCall c;
  long r = static_cast<long>(f());
  int err = errno_now();
  if (r >= 0) {
    EnterRuntime rt;
    after(r);
  }
  return errno_exit(c, r, err);
}

// fcntl/fcntl64 (see "The fd table": F_GETFL and F_SETFL show and keep the user's flag).
int hooked_fcntl(int fd, int cmd, void* arg) {
  if (!hooks_on()) return fwd_fcntl(fd, cmd, arg);
  switch (cmd) {
    case F_GETFL: {
      int r = fwd_fcntl(fd, cmd, arg);
      if (r >= 0) {
        if (FdEntry* e = adopted_entry(fd)) {
          r = (r & ~O_NONBLOCK) | (e->user_nb.load(std::memory_order_relaxed) ? O_NONBLOCK : 0);
        }
      }
      return r;
    }
    case F_SETFL: {
      FdEntry* e = io_entry(fd);
      if (e == nullptr) return fwd_fcntl(fd, cmd, arg);
      int flags = static_cast<int>(reinterpret_cast<std::intptr_t>(arg));
      NoAsync na;
      LockGuard hold(e->mu);
      bool adopted = e->kind.load(std::memory_order_relaxed) == kKindAdopted;
      int pass = adopted ? flags | O_NONBLOCK : flags;
      int r = fwd_fcntl(fd, cmd, reinterpret_cast<void*>(static_cast<std::intptr_t>(pass)));
      if (r == 0) e->user_nb.store((flags & O_NONBLOCK) != 0, std::memory_order_relaxed);
      return r;
    }
    case F_DUPFD:
    case F_DUPFD_CLOEXEC:
      return static_cast<int>(create_call([&] { return fwd_fcntl(fd, cmd, arg); },
                                          [&](long r) { derive(static_cast<int>(r), fd); }));
    case F_SETLKW:
    case F_OFD_SETLKW:
      if (ctx_of(getg()) == Ctx::kGo) {
        GoCall c;
        return static_cast<int>(go_forward(c, [&] { return fwd_fcntl(fd, cmd, arg); }));
      }
      return fwd_fcntl(fd, cmd, arg);
    default:
      return fwd_fcntl(fd, cmd, arg);
  }
}

int hooked_dup2(int oldfd, int newfd, int flags, bool three) {
  auto fwd = [&] { return three ? fwd_dup3(oldfd, newfd, flags) : fwd_dup2(oldfd, newfd); };
  if (!hooks_on() || oldfd == newfd) return fwd();
  FdEntry* target = slot(newfd);
  if (target == nullptr || (target->state.load(std::memory_order_acquire) & kLive) == 0) {
    int r = fwd();
    if (r >= 0) {
      int saved = errno_now();
      derive(r, oldfd);
      *errno_loc() = saved;
    }
    return r;
  }
  // newfd is managed: it is implicitly closed, so run the close protocol on it first; but
  // only if oldfd is valid (dup2 with a bad oldfd leaves newfd alone).
  if (sys(SYS_fcntl, oldfd, F_GETFD) < 0) {
    errno = EBADF;
    return -1;
  }
  Ctx ctx = ctx_of(getg());
  std::optional<GoCall> c;
  if (ctx == Ctx::kGo) c.emplace();
  CloseStart st;
  {
    EnterRuntime rt;
    st = begin_close(target, ctx);
  }
  int r;
  int err;
  if (st == CloseStart::kBusy) {
    r = -1;
    err = EBUSY;  // Linux's answer to a dup2 racing with an open/close of newfd
  } else {
    r = fwd();
    err = errno_now();
    if (st == CloseStart::kOk) end_close(target);
    if (r >= 0) derive(r, oldfd);
  }
  if (c) return static_cast<int>(errno_exit(*c, r, err));
  *errno_loc() = err;
  return r;
}

template <class Fn>
int dispatch_sleep(Fn fwd, std::int64_t ns) {
  if (!hooks_on() || ctx_of(getg()) != Ctx::kGo) return fwd();
  GoCall c;
  sleep_ns(ns);
  return static_cast<int>(errno_exit(c, 0, c.saved));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The hooked entry points. Each is libc's contract (see docs/io.md for the differences in a
// goroutine); the comments say only what the hook adds.

extern "C" {

// Named by the goro target's link options (--undefined) so that a static link always pulls this
// object in; visible, so that the same option resolves against a shared libgoro too.
__attribute__((visibility("default"))) extern const int goro_io_hooks_anchor = 1;

#define GORO_HOOK_API __attribute__((visibility("default")))
// The resolver hooks are weak: in a dynamic link they interpose like the others, and in a static
// one libc.a's definitions (pulled in by freeaddrinfo and friends) win instead of clashing.
#define GORO_HOOK_WEAK_API __attribute__((visibility("default"), weak))

GORO_HOOK_API ssize_t read(int fd, void* buf, size_t n) {
  return fd_call(
      fd, kPollRead, false, [&] { return fwd_read(fd, buf, n); },
      [&](Io& io) { return loop_once(io, [&] { return sys(SYS_read, fd, buf, n); }); });
}

GORO_HOOK_API ssize_t write(int fd, const void* buf, size_t n) {
  return fd_call(
      fd, kPollWrite, false, [&] { return fwd_write(fd, buf, n); },
      [&](Io& io) {
        return loop_all(io, n, [&](std::size_t done) {
          return sys(SYS_write, fd, static_cast<const char*>(buf) + done, n - done);
        });
      });
}

GORO_HOOK_API ssize_t readv(int fd, const iovec* iov, int n) {
  return fd_call(
      fd, kPollRead, false, [&] { return fwd_readv(fd, iov, n); },
      [&](Io& io) { return loop_once(io, [&] { return sys(SYS_readv, fd, iov, n); }); });
}

GORO_HOOK_API ssize_t writev(int fd, const iovec* iov, int n) {
  return fd_call(
      fd, kPollWrite, false, [&] { return fwd_writev(fd, iov, n); },
      [&](Io& io) -> long {
        IovCursor cur(iov, n);
        if (!cur.ok() || io.nb()) {
          return loop_once(io, [&] { return sys(SYS_writev, fd, iov, n); });
        }
        return loop_all(io, cur.total(), [&](std::size_t done) {
          int cnt = 0;
          iovec* v = cur.at(done, &cnt);
          return sys(SYS_writev, fd, v, cnt);
        });
      });
}

// pread/pwrite: meaningful on regular files only (ESPIPE on pipes and sockets), which are
// never managed: from a goroutine they run inside goro::blocking.
GORO_HOOK_API ssize_t pread64(int fd, void* buf, size_t n, off_t off) {
  return fd_call(
      fd, kPollRead, true, [&] { return fwd_pread(fd, buf, n, off); },
      [&](Io&) { return sys(SYS_pread64, fd, buf, n, off); });
}

GORO_HOOK_API ssize_t pread(int fd, void* buf, size_t n, off_t off) {
  return pread64(fd, buf, n, off);
}

GORO_HOOK_API ssize_t pwrite64(int fd, const void* buf, size_t n, off_t off) {
  return fd_call(
      fd, kPollWrite, true, [&] { return fwd_pwrite(fd, buf, n, off); },
      [&](Io&) { return sys(SYS_pwrite64, fd, buf, n, off); });
}

GORO_HOOK_API ssize_t pwrite(int fd, const void* buf, size_t n, off_t off) {
  return pwrite64(fd, buf, n, off);
}

GORO_HOOK_API ssize_t recv(int fd, void* buf, size_t n, int flags) {
  return hooked_recvfrom(fd, buf, n, flags, nullptr, nullptr);
}

GORO_HOOK_API ssize_t recvfrom(int fd, void* buf, size_t n, int flags, sockaddr* addr,
                               socklen_t* alen) {
  return hooked_recvfrom(fd, buf, n, flags, addr, alen);
}

GORO_HOOK_API ssize_t recvmsg(int fd, msghdr* msg, int flags) {
  bool nb = (flags & MSG_DONTWAIT) != 0;
  return fd_call(
      fd, kPollRead, nb, [&] { return fwd_recvmsg(fd, msg, flags); },
      [&](Io& io) -> long {
        if ((flags & MSG_WAITALL) == 0 || io.nb()) {
          return loop_once(io, [&] { return sys(SYS_recvmsg, fd, msg, flags); });
        }
        IovCursor cur(msg->msg_iov, static_cast<int>(msg->msg_iovlen));
        if (!cur.ok()) return loop_once(io, [&] { return sys(SYS_recvmsg, fd, msg, flags); });
        msghdr m = *msg;
        long r = loop_all(io, cur.total(), [&](std::size_t done) {
          int cnt = 0;
          m.msg_iov = cur.at(done, &cnt);
          m.msg_iovlen = static_cast<std::size_t>(cnt);
          return sys(SYS_recvmsg, fd, &m, flags);
        });
        msg->msg_namelen = m.msg_namelen;
        msg->msg_controllen = m.msg_controllen;
        msg->msg_flags = m.msg_flags;
        return r;
      });
}

GORO_HOOK_API ssize_t send(int fd, const void* buf, size_t n, int flags) {
  return hooked_sendto(fd, buf, n, flags, nullptr, 0);
}

GORO_HOOK_API ssize_t sendto(int fd, const void* buf, size_t n, int flags, const sockaddr* addr,
                             socklen_t alen) {
  return hooked_sendto(fd, buf, n, flags, addr, alen);
}

GORO_HOOK_API ssize_t sendmsg(int fd, const msghdr* msg, int flags) {
  bool nb = (flags & MSG_DONTWAIT) != 0;
  return fd_call(
      fd, kPollWrite, nb, [&] { return fwd_sendmsg(fd, msg, flags); },
      [&](Io& io) -> long {
        IovCursor cur(msg->msg_iov, static_cast<int>(msg->msg_iovlen));
        if (!cur.ok() || io.nb()) {
          return loop_once(io, [&] { return sys(SYS_sendmsg, fd, msg, flags); });
        }
        msghdr m = *msg;
        return loop_all(io, cur.total(), [&](std::size_t done) {
          int cnt = 0;
          m.msg_iov = cur.at(done, &cnt);
          m.msg_iovlen = static_cast<std::size_t>(cnt);
          if (done > 0) {  // ancillary data goes with the first byte only
            m.msg_control = nullptr;
            m.msg_controllen = 0;
          }
          return sys(SYS_sendmsg, fd, &m, flags);
        });
      });
}

GORO_HOOK_API int accept(int fd, sockaddr* addr, socklen_t* alen) {
  return hooked_accept4(fd, addr, alen, 0);
}

GORO_HOOK_API int accept4(int fd, sockaddr* addr, socklen_t* alen, int flags) {
  return hooked_accept4(fd, addr, alen, flags);
}

GORO_HOOK_API int connect(int fd, const sockaddr* addr, socklen_t alen) {
  return static_cast<int>(fd_call(
      fd, kPollWrite, false, [&] { return fwd_connect(fd, addr, alen); },
      [&](Io& io) { return connect_managed(io, addr, alen); }));
}

// poll and ppoll from a goroutine: parks in poll_go, or runs libc's poll inside blocking()
// when poll_go cannot watch the descriptors (fallback). tns: the timeout (kForever: none).
int poll_from_goroutine(GoCall& c, pollfd* fds, nfds_t n, std::int64_t tns) {
  std::int64_t deadline = deadline_after(tns);
  bool fallback = false;
  long r;
  {
    EnterRuntime rt;
    r = poll_go(fds, n, tns, deadline, &fallback);
  }
  if (fallback) {
    return static_cast<int>(
        go_forward(c, [&] { return fwd_poll(fds, n, remaining_ms(deadline, tns)); }));
  }
  return static_cast<int>(go_exit(c, r));
}

GORO_HOOK_API int poll(pollfd* fds, nfds_t n, int timeout) {
  if (!hooks_on() || ctx_of(getg()) != Ctx::kGo) return fwd_poll(fds, n, timeout);
  GoCall c;
  return poll_from_goroutine(
      c, fds, n, timeout < 0 ? kForever : static_cast<std::int64_t>(timeout) * 1'000'000);
}

GORO_HOOK_API int ppoll(pollfd* fds, nfds_t n, const timespec* tmo, const sigset_t* mask) {
  if (!hooks_on() || ctx_of(getg()) != Ctx::kGo) return fwd_ppoll(fds, n, tmo, mask);
  if (tmo != nullptr && !ts_valid(tmo)) {
    errno = EINVAL;
    return -1;
  }
  GoCall c;
  return poll_from_goroutine(c, fds, n, ts_ns(tmo));
}

GORO_HOOK_API int select(int nfds, fd_set* rs, fd_set* ws, fd_set* es, timeval* tv) {
  if (!hooks_on() || ctx_of(getg()) != Ctx::kGo) return fwd_select(nfds, rs, ws, es, tv);
  if (tv != nullptr && (tv->tv_sec < 0 || tv->tv_usec < 0)) {
    errno = EINVAL;
    return -1;
  }
  GoCall c;
  std::int64_t tns = kForever;
  if (tv != nullptr) {
    tns = tv->tv_sec > 9'000'000'000
              ? kForever
              : static_cast<std::int64_t>(tv->tv_sec) * 1'000'000'000 + tv->tv_usec * 1000;
  }
  std::int64_t deadline = deadline_after(tns);
  bool fallback = false;
  long r;
  {
    EnterRuntime rt;
    r = select_go(nfds, rs, ws, es, tns, deadline, &fallback);
  }
  if (fallback) {
    return static_cast<int>(go_forward(c, [&] {
      timeval left{};
      timeval* lp = nullptr;
      if (tns != kForever) {
        std::int64_t ns = deadline - nanotime();
        if (ns < 0) ns = 0;
        left.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
        left.tv_usec = static_cast<suseconds_t>(ns % 1'000'000'000 / 1000);
        lp = &left;
      }
      int rr = fwd_select(nfds, rs, ws, es, lp);
      if (tv != nullptr && lp != nullptr) *tv = left;
      return rr;
    }));
  }
  if (tv != nullptr && tns != kForever && r >= 0) {  // Linux writes the time not slept back
    std::int64_t ns = r > 0 ? deadline - nanotime() : 0;
    if (ns < 0) ns = 0;
    tv->tv_sec = static_cast<time_t>(ns / 1'000'000'000);
    tv->tv_usec = static_cast<suseconds_t>(ns % 1'000'000'000 / 1000);
  }
  return static_cast<int>(go_exit(c, r));
}

GORO_HOOK_API int pselect(int nfds, fd_set* rs, fd_set* ws, fd_set* es, const timespec* tmo,
                          const sigset_t* mask) {
  if (!hooks_on() || ctx_of(getg()) != Ctx::kGo) return fwd_pselect(nfds, rs, ws, es, tmo, mask);
  if (tmo != nullptr && !ts_valid(tmo)) {
    errno = EINVAL;
    return -1;
  }
  GoCall c;
  std::int64_t tns = ts_ns(tmo);
  std::int64_t deadline = deadline_after(tns);
  bool fallback = false;
  long r;
  {
    EnterRuntime rt;
    r = select_go(nfds, rs, ws, es, tns, deadline, &fallback);
  }
  if (fallback) {
    return static_cast<int>(go_forward(c, [&] {
      timespec left{};
      const timespec* lp = nullptr;
      if (tns != kForever) {
        std::int64_t ns = deadline - nanotime();
        if (ns < 0) ns = 0;
        left.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
        left.tv_nsec = static_cast<long>(ns % 1'000'000'000);
        lp = &left;
      }
      return fwd_pselect(nfds, rs, ws, es, lp, nullptr);
    }));
  }
  return static_cast<int>(go_exit(c, r));
}

GORO_HOOK_API int epoll_wait(int epfd, epoll_event* events, int max, int timeout) {
  if (!hooks_on() || ctx_of(getg()) != Ctx::kGo) return fwd_epoll_wait(epfd, events, max, timeout);
  GoCall c;
  std::int64_t tns = timeout < 0 ? kForever : static_cast<std::int64_t>(timeout) * 1'000'000;
  std::int64_t deadline = deadline_after(tns);
  bool fallback = false;
  long r;
  {
    EnterRuntime rt;
    r = epoll_go(epfd, events, max, tns, deadline, &fallback);
  }
  if (fallback) {
    return static_cast<int>(go_forward(
        c, [&] { return fwd_epoll_wait(epfd, events, max, remaining_ms(deadline, tns)); }));
  }
  return static_cast<int>(go_exit(c, r));
}

GORO_HOOK_API int epoll_pwait(int epfd, epoll_event* events, int max, int timeout,
                              const sigset_t* mask) {
  if (!hooks_on() || ctx_of(getg()) != Ctx::kGo)
    return fwd_epoll_pwait(epfd, events, max, timeout, mask);
  return epoll_wait(epfd, events, max, timeout);
}

GORO_HOOK_API int nanosleep(const timespec* req, timespec* rem) {
  if (!hooks_on() || ctx_of(getg()) != Ctx::kGo) return fwd_nanosleep(req, rem);
  if (req == nullptr) {
    errno = EFAULT;
    return -1;
  }
  if (!ts_valid(req)) {
    errno = EINVAL;
    return -1;
  }
  return dispatch_sleep([&] { return fwd_nanosleep(req, rem); }, ts_ns(req));
}

GORO_HOOK_API int clock_nanosleep(clockid_t clk, int flags, const timespec* req, timespec* rem) {
  if (!hooks_on() || ctx_of(getg()) != Ctx::kGo) return fwd_clock_nanosleep(clk, flags, req, rem);
  if (clk == CLOCK_THREAD_CPUTIME_ID) return EINVAL;
  if (clk != CLOCK_MONOTONIC && clk != CLOCK_REALTIME && clk != CLOCK_BOOTTIME &&
      clk != CLOCK_TAI) {
    // CPU-time and alarm clocks: libc's call, where it cannot stall a P.
    GoCall c;
    return static_cast<int>(
        go_forward(c, [&] { return fwd_clock_nanosleep(clk, flags, req, rem); }));
  }
  if (req == nullptr) return EFAULT;
  if (!ts_valid(req)) return EINVAL;
  GoCall c;
  if ((flags & TIMER_ABSTIME) == 0) {
    sleep_ns(ts_ns(req));
  } else if (clk == CLOCK_MONOTONIC) {
    goro::sleep_until(std::chrono::steady_clock::time_point(std::chrono::nanoseconds(ts_ns(req))));
  } else {
    // Other clocks: the distance now (a later step of that clock is not followed).
    timespec now{};
    clock_gettime(clk, &now);
    std::int64_t d = (static_cast<std::int64_t>(req->tv_sec) - now.tv_sec) * 1'000'000'000 +
                     (req->tv_nsec - now.tv_nsec);
    if (d > 0) sleep_ns(d);
  }
  return static_cast<int>(errno_exit(c, 0, c.saved));
}

GORO_HOOK_API int usleep(useconds_t us) {
  return dispatch_sleep([&] { return fwd_usleep(us); }, static_cast<std::int64_t>(us) * 1000);
}

GORO_HOOK_API unsigned sleep(unsigned s) {
  return static_cast<unsigned>(dispatch_sleep([&] { return static_cast<int>(fwd_sleep(s)); },
                                              static_cast<std::int64_t>(s) * 1'000'000'000));
}

GORO_HOOK_API int close(int fd) {
  if (!hooks_on()) return fwd_close(fd);
  FdEntry* e = slot(fd);
  bool managed = e != nullptr && (e->state.load(std::memory_order_acquire) & kLive) != 0;
  Ctx ctx = ctx_of(getg());
  if (ctx != Ctx::kGo) {
    if (managed) {
      CloseStart st = begin_close(e, ctx);
      if (st == CloseStart::kBusy) {
        errno = EBADF;
        return -1;
      }
      if (st == CloseStart::kOk) end_close(e);
    }
    return fwd_close(fd);
  }
  GoCall c;
  if (managed) {
    CloseStart st;
    {
      EnterRuntime rt;
      st = begin_close(e, ctx);
    }
    if (st == CloseStart::kBusy) return static_cast<int>(errno_exit(c, -1, EBADF));
    if (st == CloseStart::kOk) end_close(e);
  }
  return static_cast<int>(go_forward(c, [&] { return fwd_close(fd); }));
}

GORO_HOOK_API int fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  return hooked_fcntl(fd, cmd, arg);
}

GORO_HOOK_API int fcntl64(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  return hooked_fcntl(fd, cmd, arg);
}

GORO_HOOK_API int ioctl(int fd, unsigned long req, ...) noexcept {
  va_list ap;
  va_start(ap, req);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  if (!hooks_on()) return fwd_ioctl(fd, req, arg);
  if (req == FIONBIO && arg != nullptr) {
    if (FdEntry* e = io_entry(fd)) {
      NoAsync na;
      LockGuard hold(e->mu);
      int on = *static_cast<int*>(arg);
      int r;
      if (e->kind.load(std::memory_order_relaxed) == kKindAdopted) {
        int one = 1;  // the kernel fd stays non-blocking; only the user's view changes
        r = static_cast<int>(libc_ret(sys(SYS_ioctl, fd, FIONBIO, &one)));
      } else {
        r = fwd_ioctl(fd, req, arg);
      }
      if (r == 0) e->user_nb.store(on != 0, std::memory_order_relaxed);
      return r;
    }
    return fwd_ioctl(fd, req, arg);
  }
  if (io_entry(fd) == nullptr && ctx_of(getg()) == Ctx::kGo) {
    // A tty drain (TCSBRK, TCSETSW) or a device may block: where it cannot stall a P.
    GoCall c;
    return static_cast<int>(go_forward(c, [&] { return fwd_ioctl(fd, req, arg); }));
  }
  return fwd_ioctl(fd, req, arg);
}

GORO_HOOK_API int dup(int fd) noexcept {
  return static_cast<int>(
      create_call([&] { return fwd_dup(fd); }, [&](long r) { derive(static_cast<int>(r), fd); }));
}

GORO_HOOK_API int dup2(int oldfd, int newfd) noexcept {
  return hooked_dup2(oldfd, newfd, 0, false);
}

GORO_HOOK_API int dup3(int oldfd, int newfd, int flags) noexcept {
  return hooked_dup2(oldfd, newfd, flags, true);
}

GORO_HOOK_API int socket(int domain, int type, int proto) noexcept {
  bool nb = (type & SOCK_NONBLOCK) != 0;
  return static_cast<int>(create_call([&] { return fwd_socket(domain, type, proto); },
                                      [&](long r) { register_new(static_cast<int>(r), nb); }));
}

GORO_HOOK_API int socketpair(int domain, int type, int proto, int sv[2]) noexcept {
  bool nb = (type & SOCK_NONBLOCK) != 0;
  return static_cast<int>(create_call([&] { return fwd_socketpair(domain, type, proto, sv); },
                                      [&](long) {
                                        register_new(sv[0], nb);
                                        register_new(sv[1], nb);
                                      }));
}

GORO_HOOK_API int pipe(int fds[2]) noexcept {
  return static_cast<int>(create_call([&] { return fwd_pipe2(fds, 0); },
                                      [&](long) {
                                        register_new(fds[0], false);
                                        register_new(fds[1], false);
                                      }));
}

GORO_HOOK_API int pipe2(int fds[2], int flags) noexcept {
  bool nb = (flags & O_NONBLOCK) != 0;
  return static_cast<int>(create_call([&] { return fwd_pipe2(fds, flags); },
                                      [&](long) {
                                        register_new(fds[0], nb);
                                        register_new(fds[1], nb);
                                      }));
}

GORO_HOOK_API int setsockopt(int fd, int level, int opt, const void* val, socklen_t len) noexcept {
  int r = fwd_setsockopt(fd, level, opt, val, len);
  if (r == 0 && hooks_on() && level == SOL_SOCKET && val != nullptr &&
      len >= static_cast<socklen_t>(sizeof(timeval))) {
    // SO_RCVTIMEO and SO_SNDTIMEO (and their _NEW forms, the same layout on x86-64).
    bool rcv = opt == SO_RCVTIMEO || opt == 66;
    bool snd = opt == SO_SNDTIMEO || opt == 67;
    if (rcv || snd) {
      if (FdEntry* e = io_entry(fd)) {
        std::int64_t ns = timeval_ns(*static_cast<const timeval*>(val));
        (rcv ? e->rcvtimeo : e->sndtimeo).store(ns, std::memory_order_relaxed);
      }
    }
  }
  return r;
}

GORO_HOOK_WEAK_API int getaddrinfo(const char* node, const char* service, const addrinfo* hints,
                                   addrinfo** res) {
  GetaddrinfoFn f = test_getaddrinfo.load(std::memory_order_relaxed);
  if (f == nullptr) f = resolver(reals.getaddrinfo, "getaddrinfo");
  if (f == nullptr) {
    errno = ENOSYS;
    return EAI_SYSTEM;
  }
  return resolve_call([&] { return f(node, service, hints, res); });
}

GORO_HOOK_WEAK_API int getnameinfo(const sockaddr* sa, socklen_t salen, char* host,
                                   socklen_t hostlen, char* serv, socklen_t servlen, int flags) {
  auto f = resolver(reals.getnameinfo, "getnameinfo");
  if (f == nullptr) {
    errno = ENOSYS;
    return EAI_SYSTEM;
  }
  return resolve_call([&] { return f(sa, salen, host, hostlen, serv, servlen, flags); });
}

GORO_HOOK_WEAK_API hostent* gethostbyname(const char* name) {
  auto f = resolver(reals.gethostbyname, "gethostbyname");
  if (f == nullptr) {
    h_errno = NO_RECOVERY;
    return nullptr;
  }
  return resolve_call([&] { return f(name); });
}

GORO_HOOK_WEAK_API hostent* gethostbyname2(const char* name, int af) {
  auto f = resolver(reals.gethostbyname2, "gethostbyname2");
  if (f == nullptr) {
    h_errno = NO_RECOVERY;
    return nullptr;
  }
  return resolve_call([&] { return f(name, af); });
}

GORO_HOOK_WEAK_API hostent* gethostbyaddr(const void* addr, socklen_t len, int type) {
  auto f = resolver(reals.gethostbyaddr, "gethostbyaddr");
  if (f == nullptr) {
    h_errno = NO_RECOVERY;
    return nullptr;
  }
  return resolve_call([&] { return f(addr, len, type); });
}

GORO_HOOK_WEAK_API int gethostbyname_r(const char* name, hostent* ret, char* buf, size_t len,
                                       hostent** result, int* herr) {
  auto f = resolver(reals.gethostbyname_r, "gethostbyname_r");
  if (f == nullptr) return ENOSYS;
  return resolve_call([&] { return f(name, ret, buf, len, result, herr); });
}

GORO_HOOK_WEAK_API int gethostbyname2_r(const char* name, int af, hostent* ret, char* buf,
                                        size_t len, hostent** result, int* herr) {
  auto f = resolver(reals.gethostbyname2_r, "gethostbyname2_r");
  if (f == nullptr) return ENOSYS;
  return resolve_call([&] { return f(name, af, ret, buf, len, result, herr); });
}

GORO_HOOK_WEAK_API int gethostbyaddr_r(const void* addr, socklen_t alen, int type, hostent* ret,
                                       char* buf, size_t len, hostent** result, int* herr) {
  auto f = resolver(reals.gethostbyaddr_r, "gethostbyaddr_r");
  if (f == nullptr) return ENOSYS;
  return resolve_call([&] { return f(addr, alen, type, ret, buf, len, result, herr); });
}

// _FORTIFY_SOURCE's checked variants (callers compiled with it call these instead).
GORO_HOOK_API ssize_t __read_chk(int fd, void* buf, size_t n, size_t buflen) {
  if (n > buflen) __chk_fail();
  return read(fd, buf, n);
}

GORO_HOOK_API ssize_t __pread_chk(int fd, void* buf, size_t n, off_t off, size_t buflen) {
  if (n > buflen) __chk_fail();
  return pread64(fd, buf, n, off);
}

GORO_HOOK_API ssize_t __pread64_chk(int fd, void* buf, size_t n, off_t off, size_t buflen) {
  if (n > buflen) __chk_fail();
  return pread64(fd, buf, n, off);
}

GORO_HOOK_API ssize_t __recv_chk(int fd, void* buf, size_t n, size_t buflen, int flags) {
  if (n > buflen) __chk_fail();
  return recv(fd, buf, n, flags);
}

GORO_HOOK_API ssize_t __recvfrom_chk(int fd, void* buf, size_t n, size_t buflen, int flags,
                                     sockaddr* addr, socklen_t* alen) {
  if (n > buflen) __chk_fail();
  return recvfrom(fd, buf, n, flags, addr, alen);
}

GORO_HOOK_API int __poll_chk(pollfd* fds, nfds_t n, int timeout, size_t fdslen) {
  if (fdslen / sizeof(*fds) < n) __chk_fail();
  return poll(fds, n, timeout);
}

GORO_HOOK_API int __ppoll_chk(pollfd* fds, nfds_t n, const timespec* tmo, const sigset_t* mask,
                              size_t fdslen) {
  if (fdslen / sizeof(*fds) < n) __chk_fail();
  return ppoll(fds, n, tmo, mask);
}

}  // extern "C"
