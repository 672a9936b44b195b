// echo_server.cpp - a TCP echo server written the way Go's net package is used: one goroutine
// per connection, each with a plain blocking read/write loop. goro::net parks the goroutine
// whenever the socket is not ready, so 10,000 idle connections cost 10,000 small goroutine
// stacks and no thread each.
//
//   echo_server                        listens on 127.0.0.1 with a port the system picks
//   echo_server -addr 0.0.0.0:7000     listens there
//   echo_server -procs 1               GOMAXPROCS=1
//
// It prints "echo_server: listening on <ip:port>" on stdout as soon as it accepts connections
// (bench/echo_client reads that line) and serves until it is killed. This program is also the
// goro side of the `echo` benchmark (bench_goro_echo, bench/README.md), against Go's net server
// in bench/peers/go/echo/main.go.
#include <sys/resource.h>
#include <unistd.h>

#include <goro/goro.hpp>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>
#include <utility>

namespace {

// One connection's whole life: read whatever arrived, write it back, until the peer closes
// (read returns 0) or an error (a reset peer). The Conn closes its socket when it goes out of
// scope.
void serve(goro::net::Conn conn) {
  char buf[4096];
  std::error_code ec;
  for (;;) {
    std::size_t n = conn.read(buf, sizeof buf, ec);
    if (ec || n == 0) return;
    conn.write(buf, n, ec);
    if (ec) return;
  }
}

// RLIMIT_NOFILE's soft limit up to the hard limit: one descriptor per connection.
void raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

[[noreturn]] void usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s [-addr HOST:PORT] [-procs N]\n", argv0);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::string addr = "127.0.0.1:0";
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if ((a == "-addr" || a == "--addr") && i + 1 < argc) {
      addr = argv[++i];
    } else if ((a == "-procs" || a == "--procs") && i + 1 < argc) {
      int procs = std::atoi(argv[++i]);
      if (procs < 1) usage(argv[0]);
      goro::set_gomaxprocs(procs);
    } else {
      usage(argv[0]);
    }
  }
  raise_fd_limit();

  std::error_code ec;
  goro::net::Listener ln = goro::net::listen("tcp", addr, ec);
  if (ec) {
    std::fprintf(stderr, "echo_server: listen %s: %s\n", addr.c_str(), ec.message().c_str());
    return 1;
  }
  std::printf("echo_server: listening on %s\n", ln.addr().c_str());
  std::fflush(stdout);

  // The accept loop runs on main, a plain thread: accept() blocks it (the runtime's poller
  // wakes it), and each connection gets its own goroutine.
  for (;;) {
    goro::net::Conn conn = ln.accept(ec);
    if (ec == std::errc::too_many_files_open || ec == std::errc::too_many_files_open_in_system) {
      usleep(1000);  // out of descriptors: the connection stays queued; try again shortly
      continue;
    }
    if (ec) {
      std::fprintf(stderr, "echo_server: accept: %s\n", ec.message().c_str());
      return 1;
    }
    goro::go(serve, std::move(conn));
  }
}
