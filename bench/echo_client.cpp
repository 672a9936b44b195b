// echo_client.cpp - the one load client of the `echo` benchmark (bench_echo_client), shared by
// every server flavour: goro's examples/echo_server.cpp (bench_goro_echo) and Go's net server
// (bench/peers/go/echo, bench_go_echo). Plain C++ on one thread with epoll, no goro: the same
// client, doing the same work, in front of each server.
//
//   bench_echo_client -server build/release/bench/bench_goro_echo -conns 1000 -seconds 5
//
// What it does:
//  1. Starts the server (-server PATH, with -procs N passed on if given), reads its first line
//     of stdout, "...listening on <ip:port>", and keeps its PID. RLIMIT_NOFILE is raised to the
//     hard limit here, and each server raises its own.
//  2. Opens -conns connections (blocking connects, TCP_NODELAY, then non-blocking, all in one
//     epoll set), and on each keeps exactly one -size byte message (64) in flight: send, wait
//     for the whole echo, check its bytes, record the round-trip time, send the next.
//  3. Runs -warmup_ms (1,000) unmeasured, then measures for -seconds (5): round trips completed
//     in the window, a latency histogram (64 sub-buckets per power of two: ~1.5% resolution),
//     and the server's CPU time from /proc/<pid>/stat (utime and stime, all its threads) read at
//     the window's start and end. On a 2-core machine the client competes with the server for
//     the CPUs, so the server's CPU time per round trip is the figure to compare, beside
//     throughput and latency.
//  4. Closes every connection with SO_LINGER 0 (a reset: no TIME_WAIT piles up across runs),
//     stops the server (SIGTERM, SIGKILL after 5 s) and prints the RESULT lines compare.py
//     reads:
//       rt_per_s              round trips per second in the window (all connections)
//       server_cpu_ns_per_rt  the server's CPU time in the window / round trips
//       server_user_ns_per_rt, server_sys_ns_per_rt  the same, split into user and kernel
//                             time: the runtime's own work is in the first, the TCP stack's
//                             (the same for every server) in the second
//       p50_us, p99_us        round-trip latency percentiles (nearest rank)
//       client_cpu_ns_per_rt  this client's CPU time / round trips (for reference)
//       max_us, conns         the slowest round trip; connections open
// Exit status 1 on any error (a connection closed or reset, a wrong echo, a server that would
// not start), with the reason on stderr.
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/bench_util.hpp"

extern char** environ;

namespace {

[[noreturn]] void die(const char* fmt, const char* arg = "") {
  std::fprintf(stderr, "echo_client: ");
  std::fprintf(stderr, fmt, arg);
  std::fprintf(stderr, "\n");
  std::exit(1);
}

// ---- Latency histogram (ns): values below 128 exactly, then 64 sub-buckets per power of two.

class Histogram {
 public:
  Histogram() : counts_(128 + 64 * 64, 0) {}
  void add(std::int64_t v) {
    if (v < 0) v = 0;
    counts_[index(static_cast<std::uint64_t>(v))]++;
    total_++;
    if (v > max_) max_ = v;
  }
  std::int64_t total() const { return total_; }
  std::int64_t max() const { return max_; }
  // The value at quantile q (nearest rank), as the middle of its bucket.
  double quantile(double q) const {
    if (total_ == 0) return 0;
    std::int64_t rank = static_cast<std::int64_t>(q * static_cast<double>(total_));
    if (rank < 1) rank = 1;
    std::int64_t seen = 0;
    for (std::size_t i = 0; i < counts_.size(); i++) {
      seen += counts_[i];
      if (seen >= rank) return middle(i);
    }
    return static_cast<double>(max_);
  }

 private:
  static std::size_t index(std::uint64_t v) {
    if (v < 128) return static_cast<std::size_t>(v);
    int e = 63 - __builtin_clzll(v);  // 7..63
    return 128 + static_cast<std::size_t>(e - 7) * 64 + ((v >> (e - 6)) & 63);
  }
  static double middle(std::size_t i) {
    if (i < 128) return static_cast<double>(i);
    int e = static_cast<int>((i - 128) / 64) + 7;
    std::uint64_t sub = (i - 128) % 64;
    double lo = static_cast<double>((64 + sub) << (e - 6));
    double width = static_cast<double>(std::uint64_t{1} << (e - 6));
    return lo + width / 2;
  }
  std::vector<std::int64_t> counts_;
  std::int64_t total_ = 0;
  std::int64_t max_ = 0;
};

// ---- The server process.

struct Server {
  pid_t pid = -1;
  std::string addr;  // "ip:port"
};

Server start_server(const std::string& path, std::int64_t procs) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) die("pipe: %s", std::strerror(errno));
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  std::vector<std::string> args = {path};
  if (procs > 0) {
    args.push_back("-procs");
    args.push_back(std::to_string(procs));
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  Server s;
  int rc = posix_spawn(&s.pid, path.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(out[1]);
  if (rc != 0) die("cannot start the server: %s", std::strerror(rc));
  // Its first line: "...listening on <addr>".
  std::string line;
  std::int64_t deadline = bench::now_ns() + 20'000'000'000;
  while (line.find('\n') == std::string::npos) {
    pollfd p{out[0], POLLIN, 0};
    int left_ms = static_cast<int>((deadline - bench::now_ns()) / 1'000'000);
    if (left_ms <= 0 || poll(&p, 1, left_ms) <= 0) die("the server printed no address in 20 s");
    char buf[256];
    ssize_t n = read(out[0], buf, sizeof buf);
    if (n <= 0) die("the server exited before printing its address");
    line.append(buf, static_cast<std::size_t>(n));
  }
  close(out[0]);  // later output goes nowhere (the server never writes more)
  line.resize(line.find('\n'));
  auto at = line.rfind("listening on ");
  if (at == std::string::npos) die("unexpected first line from the server: %s", line.c_str());
  s.addr = line.substr(at + 13);
  return s;
}

void stop_server(const Server& s) {
  kill(s.pid, SIGTERM);
  for (int i = 0; i < 500; i++) {
    if (waitpid(s.pid, nullptr, WNOHANG) == s.pid) return;
    usleep(10'000);
  }
  kill(s.pid, SIGKILL);
  waitpid(s.pid, nullptr, 0);
}

// A process's CPU time, all its threads, in ns (from clock ticks): user and kernel.
struct ProcCpu {
  std::int64_t user = 0, sys = 0;
};

ProcCpu proc_cpu(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  FILE* f = std::fopen(path, "r");
  if (f == nullptr) die("cannot read %s", path);
  char buf[1024];
  std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = 0;
  const char* p = std::strrchr(buf, ')');  // the command name may contain spaces
  if (p == nullptr) die("malformed %s", path);
  // Fields after the name: state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
  // cmajflt utime(14) stime(15).
  unsigned long long utime = 0, stime = 0;
  if (std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) !=
      2) {
    die("malformed %s", path);
  }
  const double ns_per_tick = 1'000'000'000.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
  return {static_cast<std::int64_t>(static_cast<double>(utime) * ns_per_tick),
          static_cast<std::int64_t>(static_cast<double>(stime) * ns_per_tick)};
}

std::int64_t self_cpu_ns() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1'000'000'000LL +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1'000LL;
}

int dial(const std::string& addr) {
  auto colon = addr.rfind(':');
  std::string host = addr.substr(0, colon), port = addr.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* ai = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &ai) != 0)
    die("bad address %s", addr.c_str());
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket: %s", std::strerror(errno));
  int rc;
  while ((rc = connect(fd, ai->ai_addr, ai->ai_addrlen)) != 0 && errno == EINTR) {
  }
  if (rc != 0) die("connect: %s", std::strerror(errno));
  freeaddrinfo(ai);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

struct Conn {
  int fd = -1;
  std::uint32_t seq = 0;     // the message in flight
  std::size_t got = 0;       // bytes of its echo received so far
  std::int64_t sent_at = 0;  // when it was sent
};

// The message for (connection, sequence number): 64 bytes that identify both.
void fill(char* msg, std::size_t size, std::uint32_t conn, std::uint32_t seq) {
  std::memset(msg, 'a' + static_cast<int>(seq % 26), size);
  std::memcpy(msg, &conn, sizeof conn);
  std::memcpy(msg + sizeof conn, &seq, sizeof seq);
}

}  // namespace

int main(int argc, char** argv) {
  // -server PATH is the one string flag; the rest are bench_util's integer flags.
  std::string server_path;
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if ((a == "-server" || a == "--server") && i + 1 < argc) {
      server_path = argv[++i];
    } else if (a.rfind("-server=", 0) == 0 || a.rfind("--server=", 0) == 0) {
      server_path = a.substr(a.find('=') + 1);
    } else {
      rest.push_back(argv[i]);
    }
  }
  std::vector<bench::Flag> flags = {
      {"conns", 1000, "connections, each with one message in flight"},
      {"seconds", 5, "measured seconds"},
      {"warmup_ms", 1000, "unmeasured milliseconds before the window"},
      {"size", 64, "message size in bytes"},
      {"procs", 0, "passed to the server as -procs (0: its default, all CPUs)"},
  };
  bench::parse_flags(static_cast<int>(rest.size()), rest.data(), flags);
  const std::int64_t nconns = bench::flag_value(flags, "conns");
  const std::int64_t seconds = bench::flag_value(flags, "seconds");
  const std::int64_t warmup_ms = bench::flag_value(flags, "warmup_ms");
  const auto size = static_cast<std::size_t>(bench::flag_value(flags, "size"));
  if (server_path.empty() || nconns < 1 || seconds < 1 || warmup_ms < 0 || size < 8 ||
      size > 65536) {
    std::fprintf(stderr,
                 "usage: %s -server PATH [-conns N] [-seconds S] [-warmup_ms MS] [-size B] "
                 "[-procs P]\n",
                 argv[0]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  if (static_cast<std::int64_t>(rl.rlim_cur) < nconns + 64) {
    std::fprintf(stderr, "echo_client: RLIMIT_NOFILE is %llu, too low for %lld connections\n",
                 static_cast<unsigned long long>(rl.rlim_cur), static_cast<long long>(nconns));
    return 1;
  }

  Server server = start_server(server_path, bench::flag_value(flags, "procs"));
  std::vector<Conn> conns(static_cast<std::size_t>(nconns));
  int ep = epoll_create1(EPOLL_CLOEXEC);
  for (std::size_t i = 0; i < conns.size(); i++) {
    conns[i].fd = dial(server.addr);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev) != 0)
      die("epoll_ctl: %s", std::strerror(errno));
  }

  std::vector<char> msg(size), want(size), buf(size);
  auto send_next = [&](std::size_t i, std::int64_t now) {
    Conn& c = conns[i];
    c.seq++;
    c.got = 0;
    fill(msg.data(), size, static_cast<std::uint32_t>(i), c.seq);
    c.sent_at = now;
    ssize_t n = write(c.fd, msg.data(), size);
    if (n != static_cast<ssize_t>(size)) die("write: %s", n < 0 ? std::strerror(errno) : "short");
  };
  std::int64_t t0 = bench::now_ns();
  for (std::size_t i = 0; i < conns.size(); i++) send_next(i, t0);

  const std::int64_t window_start = t0 + warmup_ms * 1'000'000;
  const std::int64_t window_end = window_start + seconds * 1'000'000'000;
  bool measuring = false;
  std::int64_t rts = 0, self_cpu0 = 0, measured_from = 0;
  ProcCpu server_cpu0;
  Histogram hist;
  std::vector<epoll_event> evs(4096);
  for (;;) {
    std::int64_t now = bench::now_ns();
    if (!measuring && now >= window_start) {
      measuring = true;
      measured_from = now;
      server_cpu0 = proc_cpu(server.pid);
      self_cpu0 = self_cpu_ns();
    }
    if (now >= window_end) break;
    int n = epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), 10);
    if (n < 0 && errno != EINTR) die("epoll_wait: %s", std::strerror(errno));
    for (int k = 0; k < n; k++) {
      std::size_t i = evs[k].data.u64;
      Conn& c = conns[i];
      ssize_t r = read(c.fd, buf.data() + c.got, size - c.got);
      if (r == 0) die("the server closed a connection");
      if (r < 0) {
        if (errno == EAGAIN || errno == EINTR) continue;
        die("read: %s", std::strerror(errno));
      }
      c.got += static_cast<std::size_t>(r);
      if (c.got < size) continue;
      std::int64_t done = bench::now_ns();
      fill(want.data(), size, static_cast<std::uint32_t>(i), c.seq);
      if (std::memcmp(buf.data(), want.data(), size) != 0) die("wrong echo");
      if (measuring && done < window_end) {
        rts++;
        hist.add(done - c.sent_at);
      }
      send_next(i, done);
    }
  }
  const std::int64_t measured_to = bench::now_ns();
  const ProcCpu server_cpu1 = proc_cpu(server.pid);
  const std::int64_t server_user = server_cpu1.user - server_cpu0.user;
  const std::int64_t server_sys = server_cpu1.sys - server_cpu0.sys;
  const std::int64_t server_cpu = server_user + server_sys;
  const std::int64_t self_cpu = self_cpu_ns() - self_cpu0;

  for (Conn& c : conns) {
    linger lg{1, 0};
    setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(c.fd);
  }
  close(ep);
  stop_server(server);
  if (rts == 0) die("no round trip completed in the window");

  const double secs = static_cast<double>(measured_to - measured_from) / 1e9;
  bench::result("rt_per_s", static_cast<double>(rts) / secs, "rt/s");
  bench::result("server_cpu_ns_per_rt", static_cast<double>(server_cpu) / rts, "ns");
  bench::result("server_user_ns_per_rt", static_cast<double>(server_user) / rts, "ns");
  bench::result("server_sys_ns_per_rt", static_cast<double>(server_sys) / rts, "ns");
  bench::result("p50_us", hist.quantile(0.50) / 1e3, "us");
  bench::result("p99_us", hist.quantile(0.99) / 1e3, "us");
  bench::result("client_cpu_ns_per_rt", static_cast<double>(self_cpu) / rts, "ns");
  bench::result("max_us", static_cast<double>(hist.max()) / 1e3, "us");
  bench::result("conns", static_cast<double>(nconns), "conns");
  std::fprintf(stderr,
               "echo_client: %s, %lld conns, %.2f s: %lld round trips (%.0f/s), server CPU %.3f s "
               "(%.0f ns/rt: user %.0f, kernel %.0f), client CPU %.3f s, p50 %.1f us, p99 %.1f us, "
               "max %.1f us\n",
               server_path.c_str(), static_cast<long long>(nconns), secs,
               static_cast<long long>(rts), static_cast<double>(rts) / secs, server_cpu / 1e9,
               static_cast<double>(server_cpu) / rts, static_cast<double>(server_user) / rts,
               static_cast<double>(server_sys) / rts, self_cpu / 1e9, hist.quantile(0.5) / 1e3,
               hist.quantile(0.99) / 1e3, hist.max() / 1e3);
  return 0;
}
