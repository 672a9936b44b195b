// echo (thread flavour): a hand-written epoll echo server with no runtime at all, the floor
// that goro's examples/echo_server.cpp (bench_goro_echo) and Go's net server (bench_go_echo)
// are measured against by the one load client, bench_echo_client.
//
// One event-loop thread per CPU (-procs N to choose), each with its own epoll set holding the
// shared listening socket (EPOLLEXCLUSIVE: one loop is woken per connection) and the
// connections it accepted. Level-triggered: per readable connection one read of up to 4 KiB
// and one write of what it read, so a round trip costs the kernel exactly one read and one
// write, plus a share of an epoll_wait - the least any server that reads and writes sockets
// can ask of it. A write that would block (never seen with 64-byte messages) waits in poll(2).
//
// It prints "echo: listening on <ip:port>" on stdout as soon as it accepts connections and
// serves until killed.
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "echo_main.hpp"

namespace {

[[noreturn]] void die(const char* what) {
  echo_floor::die("echo", what, errno);
}

// Writes all of buf[0, n) to a non-blocking socket; false when the peer is gone.
bool write_all(int fd, const char* buf, ssize_t n) {
  while (n > 0) {
    ssize_t w = write(fd, buf, static_cast<std::size_t>(n));
    if (w > 0) {
      buf += w;
      n -= w;
    } else if (w < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      poll(&p, 1, -1);
    } else if (w < 0 && errno == EINTR) {
      continue;
    } else {
      return false;
    }
  }
  return true;
}

void event_loop(int lfd) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  epoll_event lev{};
  lev.events = EPOLLIN | EPOLLEXCLUSIVE;
  lev.data.fd = lfd;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) != 0) die("epoll_ctl(listener)");
  std::vector<epoll_event> evs(256);
  char buf[4096];
  for (;;) {
    int n = epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int k = 0; k < n; k++) {
      int fd = evs[k].data.fd;
      if (fd == lfd) {
        int c = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) {
          if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) continue;
          if (errno == EMFILE || errno == ENFILE) {
            usleep(1000);  // out of descriptors: the connection stays queued; try again
            continue;
          }
          die("accept4");
        }
        epoll_event cev{};
        cev.events = EPOLLIN;
        cev.data.fd = c;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev) != 0) die("epoll_ctl(conn)");
        continue;
      }
      ssize_t r = read(fd, buf, sizeof buf);
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (r <= 0 || !write_all(fd, buf, r)) close(fd);  // close also leaves the epoll set
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  return echo_floor::run_echo_server(argc, argv, "echo", /*nonblocking=*/true, event_loop);
}
