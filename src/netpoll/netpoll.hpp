// netpoll.hpp - the network poller's contract: per-fd poll descriptors that goroutines (and
// plain threads) wait on for readiness, with read/write deadlines and a close that wakes every
// waiter; and the scheduler's side (netpoll, netpoll_break). The design essay is at the top of
// netpoll.cpp; the epoll backend is netpoll_epoll.cpp.
//
// Users of this contract (goro::net in src/net/net.cpp, later the libc hooks) follow Go's
// internal/poll discipline for one fd:
//  1. poll_open(fd) once the fd is non-blocking; keep the PollDesc beside the fd.
//  2. For each I/O attempt: poll_reset(pd, mode) (fails if closing or the deadline passed),
//     then loop { syscall; on EAGAIN: poll_wait(pd, mode) }. At most ONE waiter per mode at a
//     time: serialize readers among themselves and writers among themselves.
//  3. To close: poll_evict(pd) (every waiter wakes with kPollClosing, later waits fail at
//     once), wait until no thread is inside a poll_* call or a syscall on the fd any more (a
//     reference count), then poll_close(pd) and only then close(2) the fd.
//
// Memory ordering: a successful poll_wait happens after the readiness event that ended it was
// observed by the poller (the I/O syscall that follows sees the data). poll_evict and
// poll_set_deadline happen-before the wake-ups they cause.
#pragma once

#include <cstdint>
#include <type_traits>

#include "sched/proc.hpp"

namespace goro::internal {

// --- Raw system calls, for code that waits through the poller (step 2 above).
// A goroutine that parks may resume on another OS thread, while compilers treat the address of
// errno (glibc's __errno_location() is declared const) as fixed for the whole function: in a
// loop "syscall; read errno; on EAGAIN poll_wait", the errno read after a park may be the old
// thread's. So the runtime's own I/O never reads errno: sys() returns the result or -errno.
// Being a raw syscall, it is also never redirected into the runtime by a libc interposer.
namespace sysdetail {
template <class T>
inline long arg(T v) noexcept {
  if constexpr (std::is_pointer_v<T>) {
    return reinterpret_cast<long>(v);
  } else if constexpr (std::is_null_pointer_v<T>) {
    return 0;
  } else {
    return static_cast<long>(v);
  }
}
long raw6(long nr, long a1, long a2, long a3, long a4, long a5, long a6) noexcept;
}  // namespace sysdetail

template <class... A>
inline long sys(long nr, A... args) noexcept {
  static_assert(sizeof...(A) <= 6, "sys: at most 6 arguments");
  long a[6] = {sysdetail::arg(args)...};
  return sysdetail::raw6(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}

struct PollDesc;

// Which direction a wait or a deadline is about (Go's 'r', 'w', 'r'+'w').
enum PollMode : int { kPollRead = 1, kPollWrite = 2, kPollReadWrite = 3 };

// In a backend event's modes, beside kPollRead/kPollWrite: the kernel reported the end of the
// peer's stream, an error or TCP urgent data (EPOLLRDHUP, EPOLLHUP, EPOLLERR, EPOLLPRI), or a
// poll that failed: conditions after which a read may return less than the receive queue
// holds, or something other than data, without a new event.
constexpr int kPollHup = 4;

// Results of poll_reset and poll_wait (Go's pollNoError, pollErrClosing, pollErrTimeout).
enum PollResult : int {
  kPollOk = 0,       // ready (poll_wait) or clear to try the syscall (poll_reset)
  kPollClosing = 1,  // poll_evict was called: the fd is being closed
  kPollTimeout = 2,  // the deadline of this direction has passed
};

// --- Descriptors (any thread; goroutines and plain threads alike).

// Registers fd (which the caller has made O_NONBLOCK) with the poller, edge-triggered for
// read and write readiness, starting the poller on first use. Returns the descriptor, or null
// with *err set (EPERM for fds epoll cannot watch, such as regular files; ENOMEM, ENOSPC).
// Never blocks for long.
PollDesc* poll_open(int fd, int* err) noexcept;

// Unregisters and frees pd. Preconditions: poll_evict(pd) was called and no thread is inside
// poll_reset/poll_wait/poll_set_deadline on pd. The caller closes the fd afterwards.
void poll_close(PollDesc* pd) noexcept;

// Marks pd closing: readies the goroutine or thread waiting in each direction (they return
// kPollClosing), stops the deadline timers, and makes every later poll_reset/poll_wait fail
// with kPollClosing. Idempotent. Never blocks for long.
void poll_evict(PollDesc* pd) noexcept;

// Before an I/O attempt in `mode` (kPollRead or kPollWrite): returns kPollClosing or
// kPollTimeout if the attempt must not be made, else drops a stale readiness notification
// (the syscall is about to find out for itself) and returns kPollOk.
int poll_reset(PollDesc* pd, int mode) noexcept;

// poll_reset without dropping the readiness notification: for a caller that may wait on it
// later without a syscall in between (goro::net's read of a drained socket).
int poll_check(PollDesc* pd, int mode) noexcept;

// Whether an event with kPollHup has arrived since poll_open (sticky). It is recorded before
// the read readiness of the same event is: a caller that consumed that readiness (its
// poll_wait returned kPollOk) and then reads false knows the event carried no hang-up.
bool poll_hup(const PollDesc* pd) noexcept;

// Blocks the caller until the fd may be ready in `mode` (kPollRead or kPollWrite), its
// deadline passes, or pd is evicted. A goroutine parks (WaitReason kIORead/kIOWrite); a plain
// thread sleeps on its futex. A kPollOk return may be spurious: retry the syscall and wait
// again on EAGAIN. Fatal ("netpoll: double wait") if another waiter is already in this mode.
int poll_wait(PollDesc* pd, int mode) noexcept;

// Sets the deadline of `mode` (kPollRead, kPollWrite or kPollReadWrite): `when` is an absolute
// nanotime(); 0 clears it; a time not after now expires it at once (a waiter wakes with
// kPollTimeout). A deadline set later replaces an earlier one, also while a waiter is blocked
// (extending it keeps the waiter parked). Ignored once pd is closing. Thread-safe.
void poll_set_deadline(PollDesc* pd, std::int64_t when, int mode) noexcept;

// The fd pd was opened for (diagnostics).
int poll_fd(const PollDesc* pd) noexcept;

// --- The scheduler's side (called from proc.cpp; see "The scheduler's side" in netpoll.cpp).

// Whether poll_open has ever succeeded in starting the poller. Once true, stays true.
bool netpoll_inited() noexcept;

// Whether any goroutine or thread is parked in poll_wait (a cheap gate for non-blocking polls).
bool netpoll_any_waiters() noexcept;

// Whether some M is blocked in a netpoll(delay != 0) right now: it will see readiness itself.
bool netpoll_blocked() noexcept;

// nanotime() when the last netpoll returned (0: never). For a monitor that polls when nobody
// has for a while (Go's sysmon does so after 10 ms): if netpoll_any_waiters() and
// !netpoll_blocked() and the last poll is old, netpoll(0) and inject_netpoll_batch the result.
std::int64_t netpoll_last_poll() noexcept;

// Collects readiness: waits at most delay_ns (< 0: until netpoll_break or readiness; 0: does
// not block). Readies plain threads directly; returns the goroutines it made runnable (status
// kGRunnable, linked through schedlink, oldest first) in *list and their count. The caller
// queues them (inject_netpoll_batch in proc.cpp). Runs on an M's g0, with or without a P.
int netpoll(std::int64_t delay_ns, G** list) noexcept;

// Interrupts a netpoll blocked in the kernel (or the next one, if none is blocked now). Cheap
// when a break is already pending; a no-op before the poller started. Any thread.
void netpoll_break() noexcept;

// Counters (tests, diagnostics): blocking and non-blocking polls, waiters readied by readiness
// events, break events consumed by blocking polls. Relaxed reads; monotonic.
struct NetpollStats {
  std::int64_t blocking_polls;
  std::int64_t nonblocking_polls;
  std::int64_t readied;  // waiters made ready by readiness events
  std::int64_t breaks;
};
NetpollStats netpoll_stats() noexcept;

// --- Backend contract (netpoll_epoll.cpp, netpoll_uring.cpp; netpoll_backend.cpp picks one).
// Tags identify a descriptor in the kernel's event data: (pointer | generation << 48), so an
// event that names a descriptor since closed and reused is recognized as stale.

// Creates the kernel poller and the break channel. Returns 0 or an errno value.
int netpoll_backend_init() noexcept;
// Starts watching fd for pd (edge-triggered read+write readiness, with hang-ups, errors and
// urgent data). Returns 0 or an errno.
int netpoll_backend_open(int fd, std::uint64_t tag) noexcept;
// Stops watching fd. Returns 0 or an errno value.
int netpoll_backend_close(int fd) noexcept;
// Waits as netpoll describes, and calls ready(tag, modes) for each descriptor event
// (modes: kPollRead|kPollWrite|kPollHup bits); returns the number of descriptor events. A break
// event is consumed (and counted in *breaks) only when delay_ns != 0, so a pending break still ends
// the next blocking poll.
int netpoll_backend_poll(std::int64_t delay_ns, void (*ready)(std::uint64_t tag, int modes, void*),
                         void* arg, int* breaks) noexcept;
// Makes the break channel readable (see netpoll_break).
void netpoll_backend_break() noexcept;

}  // namespace goro::internal
