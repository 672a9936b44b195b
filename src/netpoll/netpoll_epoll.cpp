// netpoll_epoll.cpp - the Linux epoll backend of the network poller (Go's netpoll_epoll.go).
// The contract is in netpoll.hpp, the descriptor and wait protocol in netpoll.cpp. Its functions
// are epoll_backend_*: netpoll_backend.cpp picks this backend or io_uring's (netpoll_uring.cpp).
//
// What it owns: one epoll instance for the process and one eventfd, the break channel.
//
//  * Every fd is added once, EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLRDHUP | EPOLLET, with the
//  descriptor's
//    tag (pointer | generation << 48) as event data; it stays registered until poll_close
//    (EPOLL_CTL_DEL). Edge-triggered: the kernel reports a change of readiness once, and the
//    descriptor's semaphore remembers it until a waiter consumes it.
//  * The eventfd is registered level-triggered with data 0. netpoll_break writes 1 to it; it
//    stays readable until a *blocking* poll reads it, so a break that comes before the sleeper
//    reaches epoll_wait still ends that wait. Non-blocking polls leave it alone.
//  * Events map to directions as in Go: IN, RDHUP, HUP and ERR ready the reader; OUT, HUP and
//    ERR the writer. An error is thus reported by the syscall the woken waiter retries. PRI
//    (TCP urgent data) readies the reader too; PRI, RDHUP, HUP and ERR also set kPollHup.
//  * Timeouts have nanosecond resolution through epoll_pwait2 (Linux 5.11); where that is
//    missing (ENOSYS, or EPERM from a seccomp filter that does not know it) epoll_wait is used
//    with the delay rounded *up* to whole milliseconds, so a timer is never run early.
//
// Threads: epoll_backend_poll runs on an M's g0 (several Ms may poll at once: epoll is
// thread-safe; each edge goes to one of them). open/close/break run anywhere. All calls are
// raw syscalls: interposed libc wrappers (a later hook layer) must never re-enter the runtime.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>

#include <atomic>
#include <cerrno>
#include <cstdint>

#include "base/raw_log.hpp"
#include "netpoll/netpoll.hpp"
#include "netpoll/netpoll_backend.hpp"

namespace goro::internal {

namespace {

int epfd = -1;  // written once by epoll_backend_init (under netpoll.cpp's init lock)
int evfd = -1;
std::atomic<bool> have_pwait2{true};

constexpr int kMaxEvents = 128;

// Returns the number of events, or -errno.
long wait_events(epoll_event* evs, std::int64_t delay_ns) {
  if (have_pwait2.load(std::memory_order_relaxed)) {
    struct timespec ts;
    struct timespec* tsp = nullptr;
    if (delay_ns >= 0) {
      ts.tv_sec = delay_ns / 1000000000;
      ts.tv_nsec = delay_ns % 1000000000;
      tsp = &ts;
    }
    long n = sys(SYS_epoll_pwait2, epfd, evs, kMaxEvents, tsp, nullptr, 8);
    if (n != -ENOSYS && n != -EPERM) return n;
    have_pwait2.store(false, std::memory_order_relaxed);
  }
  long ms = -1;
  if (delay_ns == 0) {
    ms = 0;
  } else if (delay_ns > 0) {
    std::int64_t up = (delay_ns + 999999) / 1000000;
    ms = up > 1000000000 ? 1000000000 : static_cast<long>(up);
  }
  return sys(SYS_epoll_pwait, epfd, evs, kMaxEvents, ms, nullptr, 8);
}

[[noreturn]] void backend_fatal(const char* what, long err) {
  RawBuf b;
  b.str("fatal error: netpoll: ").str(what).str(" failed, errno ").dec(-err).str("\n");
  b.flush();
  die();
}

}  // namespace

int epoll_backend_init() noexcept {
  long ep = sys(SYS_epoll_create1, EPOLL_CLOEXEC);
  if (ep < 0) return static_cast<int>(-ep);
  long ev = sys(SYS_eventfd2, 0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (ev < 0) {
    sys(SYS_close, ep);
    return static_cast<int>(-ev);
  }
  epoll_event e{};
  e.events = EPOLLIN;
  e.data.u64 = 0;
  if (long r = sys(SYS_epoll_ctl, ep, EPOLL_CTL_ADD, ev, &e); r != 0) {
    sys(SYS_close, ev);
    sys(SYS_close, ep);
    return static_cast<int>(-r);
  }
  epfd = static_cast<int>(ep);
  evfd = static_cast<int>(ev);
  return 0;
}

int epoll_backend_open(int fd, std::uint64_t tag) noexcept {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = tag;
  return static_cast<int>(-sys(SYS_epoll_ctl, epfd, EPOLL_CTL_ADD, fd, &ev));
}

int epoll_backend_close(int fd) noexcept {
  epoll_event ev{};  // non-null for kernels before 2.6.9
  return static_cast<int>(-sys(SYS_epoll_ctl, epfd, EPOLL_CTL_DEL, fd, &ev));
}

int epoll_backend_poll(std::int64_t delay_ns, void (*ready)(std::uint64_t, int, void*), void* arg,
                       int* breaks) noexcept {
  epoll_event evs[kMaxEvents];
  long n = wait_events(evs, delay_ns);
  if (n < 0) {
    if (n != -EINTR) backend_fatal("epoll wait", n);
    return 0;  // a signal: the caller re-examines its state and polls again
  }
  int got = 0;
  for (long i = 0; i < n; i++) {
    const epoll_event& e = evs[i];
    if (e.data.u64 == 0) {
      if (delay_ns != 0) {
        std::uint64_t v = 0;
        sys(SYS_read, evfd, &v, sizeof(v));  // -EAGAIN: another poller drained it
        (*breaks)++;
      }
      continue;
    }
    int modes = 0;
    if ((e.events & (EPOLLIN | EPOLLPRI | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) {
      modes |= kPollRead;
    }
    if ((e.events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0) modes |= kPollWrite;
    if ((e.events & (EPOLLPRI | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) modes |= kPollHup;
    if (modes != 0) {
      ready(e.data.u64, modes, arg);
      got++;
    }
  }
  return got;
}

void epoll_backend_break() noexcept {
  std::uint64_t one = 1;
  for (;;) {
    long n = sys(SYS_write, evfd, &one, sizeof(one));
    if (n == sizeof(one) || n == -EAGAIN) return;  // -EAGAIN: the counter is full: readable
    if (n != -EINTR) backend_fatal("eventfd write", n);
  }
}

}  // namespace goro::internal
