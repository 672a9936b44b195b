// netpoll_backend.hpp - the two kernel backends of the network poller, behind netpoll.hpp's
// backend contract (netpoll_backend_*). Private to src/netpoll/: netpoll_backend.cpp chooses
// one when the poller starts (GORO_NETPOLL=epoll|io_uring) and forwards every call to it.
// Each set of functions has exactly the contract of its netpoll_backend_* namesake.
#pragma once

#include <cstdint>

namespace goro::internal {

// netpoll_epoll.cpp: epoll + an eventfd.
int epoll_backend_init() noexcept;
int epoll_backend_open(int fd, std::uint64_t tag) noexcept;
int epoll_backend_close(int fd) noexcept;
int epoll_backend_poll(std::int64_t delay_ns, void (*ready)(std::uint64_t tag, int modes, void*),
                       void* arg, int* breaks) noexcept;
void epoll_backend_break() noexcept;

// netpoll_uring.cpp: io_uring, multishot poll requests. uring_backend_init fails (an errno
// value, and nothing is left open) where the kernel refuses io_uring or lacks a needed feature.
int uring_backend_init() noexcept;
int uring_backend_open(int fd, std::uint64_t tag) noexcept;
int uring_backend_close(int fd) noexcept;
int uring_backend_poll(std::int64_t delay_ns, void (*ready)(std::uint64_t tag, int modes, void*),
                       void* arg, int* breaks) noexcept;
void uring_backend_break() noexcept;

}  // namespace goro::internal
