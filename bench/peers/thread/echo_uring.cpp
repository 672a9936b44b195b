// echo_uring (thread flavour): a hand-written io_uring echo server with no runtime at all, the
// completion-based counterpart of bench/peers/thread/echo.cpp (the epoll floor). It answers
// whether submitting reads and writes through io_uring - no read(2) or write(2) per round trip,
// one io_uring_enter for a whole batch - costs the kernel less than the epoll floor does on the
// echo workload (bench_echo_client), which bounds what any readiness-based server, goro's
// included, can reach.
//
// One event-loop thread per CPU (-procs N to choose), each with its own ring in the set-up
// io_uring is fastest in: a single submitting thread (SINGLE_ISSUER) whose completions are
// posted when it asks for them (DEFER_TASKRUN), so no readiness interrupts another thread.
// Each ring holds a multishot accept on the shared listening socket; per connection one
// IORING_OP_RECV of up to 4 KiB is outstanding, and on its completion one IORING_OP_SEND of
// what it read (a short send sends the rest), then the next RECV.
//
// It prints "echo: listening on <ip:port>" on stdout as soon as it accepts connections and
// serves until killed.
#include <liburing.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "echo_main.hpp"

namespace {

[[noreturn]] void die(const char* what, int err) {
  echo_floor::die("echo_uring", what, err);
}

struct Conn {
  int fd;
  unsigned sent;  // bytes of buf[0, len) already sent
  unsigned len;
  char buf[4096];
};

// user_data: a Conn* with the operation in the low bits (Conn is 8-aligned); 0 is the accept.
enum Op : std::uintptr_t { kRecv = 1, kSend = 2 };

io_uring_sqe* get_sqe(io_uring* ring) {
  io_uring_sqe* sqe = io_uring_get_sqe(ring);
  while (sqe == nullptr) {  // the submission queue is full: hand it to the kernel first
    io_uring_submit(ring);
    sqe = io_uring_get_sqe(ring);
  }
  return sqe;
}

void arm_accept(io_uring* ring, int lfd) {
  io_uring_sqe* sqe = get_sqe(ring);
  io_uring_prep_multishot_accept(sqe, lfd, nullptr, nullptr, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, 0);
}

void arm_recv(io_uring* ring, Conn* c) {
  io_uring_sqe* sqe = get_sqe(ring);
  io_uring_prep_recv(sqe, c->fd, c->buf, sizeof c->buf, 0);
  io_uring_sqe_set_data64(sqe, reinterpret_cast<std::uintptr_t>(c) | kRecv);
}

void arm_send(io_uring* ring, Conn* c) {
  io_uring_sqe* sqe = get_sqe(ring);
  io_uring_prep_send(sqe, c->fd, c->buf + c->sent, c->len - c->sent, MSG_NOSIGNAL);
  io_uring_sqe_set_data64(sqe, reinterpret_cast<std::uintptr_t>(c) | kSend);
}

void event_loop(int lfd) {
  io_uring ring{};
  io_uring_params p{};
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
  p.cq_entries = 65536;
  if (int r = io_uring_queue_init_params(4096, &ring, &p); r < 0) die("io_uring_queue_init", -r);
  arm_accept(&ring, lfd);
  for (;;) {
    int r = io_uring_submit_and_wait(&ring, 1);
    if (r < 0 && r != -EINTR) die("io_uring_submit_and_wait", -r);
    io_uring_cqe* cqe = nullptr;
    unsigned head = 0;
    unsigned seen = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      seen++;
      std::uintptr_t ud = io_uring_cqe_get_data64(cqe);
      int res = cqe->res;
      if (ud == 0) {  // accept
        if (res >= 0) {
          auto* c = new Conn{res, 0, 0, {}};
          arm_recv(&ring, c);
        } else if (res != -EAGAIN && res != -EINTR && res != -ECONNABORTED && res != -EMFILE &&
                   res != -ENFILE) {
          die("accept", -res);
        }
        if ((cqe->flags & IORING_CQE_F_MORE) == 0) arm_accept(&ring, lfd);
        continue;
      }
      auto* c = reinterpret_cast<Conn*>(ud & ~std::uintptr_t{7});
      const bool recv = (ud & 7) == kRecv;
      if (res < 0 || (recv && res == 0)) {  // an error, or the peer closed
        close(c->fd);
        delete c;
      } else if (recv) {
        c->sent = 0;
        c->len = static_cast<unsigned>(res);
        arm_send(&ring, c);
      } else if (c->sent += static_cast<unsigned>(res); c->sent < c->len) {
        arm_send(&ring, c);
      } else {
        arm_recv(&ring, c);
      }
    }
    io_uring_cq_advance(&ring, seen);
  }
}

}  // namespace

int main(int argc, char** argv) {
  return echo_floor::run_echo_server(argc, argv, "echo_uring", /*nonblocking=*/false, event_loop);
}
