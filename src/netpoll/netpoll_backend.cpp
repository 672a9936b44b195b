// netpoll_backend.cpp - chooses the network poller's kernel backend and forwards netpoll.hpp's
// backend contract (netpoll_backend_*) to it: epoll (netpoll_epoll.cpp) or io_uring
// (netpoll_uring.cpp).
//
// The choice is made once, by netpoll_backend_init (netpoll.cpp calls it under its init lock
// when the first poll_open starts the poller), from GORO_NETPOLL: "epoll" or "io_uring"; unset
// or anything else: the default, kDefault below. If io_uring is asked for but the kernel
// refuses it (io_uring_setup fails: an old kernel, a seccomp filter, kernel.io_uring_disabled,
// or a missing feature), epoll is used silently. `active` is written before netpoll.cpp
// publishes `inited`, and every other backend call comes after a thread saw `inited`, so a
// plain variable suffices; each call then costs one well-predicted branch.
#include <cstdlib>
#include <cstring>

#include "netpoll/netpoll.hpp"
#include "netpoll/netpoll_backend.hpp"

namespace goro::internal {

namespace {

enum class Backend : int { kEpoll, kUring };

// The default when GORO_NETPOLL is unset: epoll, which the echo benchmark measured as cheaper
// per round trip and faster (docs/io.md, "io_uring backend").
constexpr Backend kDefault = Backend::kEpoll;

Backend active = Backend::kEpoll;

Backend wanted() {
  const char* e = std::getenv("GORO_NETPOLL");
  if (e == nullptr) return kDefault;
  if (std::strcmp(e, "epoll") == 0) return Backend::kEpoll;
  if (std::strcmp(e, "io_uring") == 0 || std::strcmp(e, "uring") == 0) return Backend::kUring;
  return kDefault;
}

}  // namespace

int netpoll_backend_init() noexcept {
  if (wanted() == Backend::kUring && uring_backend_init() == 0) {
    active = Backend::kUring;
    return 0;
  }
  active = Backend::kEpoll;
  return epoll_backend_init();
}

int netpoll_backend_open(int fd, std::uint64_t tag) noexcept {
  if (active == Backend::kUring) return uring_backend_open(fd, tag);
  return epoll_backend_open(fd, tag);
}

int netpoll_backend_close(int fd) noexcept {
  if (active == Backend::kUring) return uring_backend_close(fd);
  return epoll_backend_close(fd);
}

int netpoll_backend_poll(std::int64_t delay_ns, void (*ready)(std::uint64_t, int, void*), void* arg,
                         int* breaks) noexcept {
  if (active == Backend::kUring) return uring_backend_poll(delay_ns, ready, arg, breaks);
  return epoll_backend_poll(delay_ns, ready, arg, breaks);
}

void netpoll_backend_break() noexcept {
  if (active == Backend::kUring) {
    uring_backend_break();
    return;
  }
  epoll_backend_break();
}

}  // namespace goro::internal
