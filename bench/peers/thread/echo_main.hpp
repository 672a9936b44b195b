// echo_main.hpp - what the two hand-written echo floors (echo.cpp: epoll, echo_uring.cpp:
// io_uring) share: their command line, the listening socket and the loop threads.
//
//   run_echo_server(argc, argv, name, nonblocking, event_loop)
//
// parses [-addr ip:port] [-procs N] (default 127.0.0.1:0 and one loop per CPU), raises
// RLIMIT_NOFILE to the hard limit, listens (SOCK_NONBLOCK when `nonblocking`), prints
// "echo: listening on <ip:port>" on stdout (bench_echo_client waits for that line) and runs
// event_loop(listening fd) on N threads, the calling one included; it returns only on a usage
// error (2). Any failing call ends the process with "<name>: <call>: <error>".
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace echo_floor {

[[noreturn]] inline void die(const char* name, const char* what, int err) {
  std::fprintf(stderr, "%s: %s: %s\n", name, what, std::strerror(err));
  std::exit(1);
}

inline int run_echo_server(int argc, char** argv, const char* name, bool nonblocking,
                           void (*event_loop)(int lfd)) {
  std::string addr = "127.0.0.1:0";
  unsigned procs = std::thread::hardware_concurrency();
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if ((a == "-addr" || a == "--addr") && i + 1 < argc) {
      addr = argv[++i];
    } else if ((a == "-procs" || a == "--procs") && i + 1 < argc) {
      procs = static_cast<unsigned>(std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: %s [-addr ip:port] [-procs N]\n", argv[0]);
      return 2;
    }
  }
  if (procs == 0) procs = 1;
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  auto colon = addr.rfind(':');
  if (colon == std::string::npos) {
    std::fprintf(stderr, "%s: bad address %s (want ip:port)\n", name, addr.c_str());
    return 2;
  }
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(std::atoi(addr.c_str() + colon + 1)));
  if (inet_pton(AF_INET, addr.substr(0, colon).c_str(), &sa.sin_addr) != 1) {
    std::fprintf(stderr, "%s: bad address %s (want an IPv4 ip:port)\n", name, addr.c_str());
    return 2;
  }
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
  if (lfd < 0) die(name, "socket", errno);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(lfd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) die(name, "bind", errno);
  if (listen(lfd, 4096) != 0) die(name, "listen", errno);
  socklen_t len = sizeof sa;
  if (getsockname(lfd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    die(name, "getsockname", errno);
  }
  char ip[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
  std::printf("echo: listening on %s:%u\n", ip, ntohs(sa.sin_port));
  std::fflush(stdout);

  std::vector<std::thread> loops;
  for (unsigned i = 1; i < procs; i++) loops.emplace_back(event_loop, lfd);
  event_loop(lfd);
  return 0;
}

}  // namespace echo_floor
