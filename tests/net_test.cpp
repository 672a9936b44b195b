// net_test.cpp - goro::net over loopback, from goroutines, plain threads and both, with
// GOMAXPROCS 1, 2 and 8: echo with many concurrent connections, data integrity, end of stream
// and half-close, a peer reset (no SIGPIPE), read and write deadlines, dial timeouts (a
// listener whose backlog is full; a blackhole address), connection refused, close while
// another goroutine or thread is blocked in read, write or accept (it wakes with
// bad_file_descriptor, no hang), concurrent writers never interleave, many acceptors on one
// listener, EMFILE from accept and dial (in a child process with a lowered fd limit: the error
// surfaces unchanged and the pending connection is accepted once an fd is free), address
// parsing, and the error_code overloads.
//
// Upper bounds on durations are hang guards (seconds of slack), never timing assertions.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "goro/goro.hpp"
#include "test_util.hpp"

namespace {

using goro_test::scaled;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
namespace net = goro::net;

// ---- Harness (as in time_test.cpp) ----------------------------------------------------------

enum class Mode { kGoroutines, kThreads, kMixed };

struct Param {
  int procs;
  Mode mode;
};

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  const char* m = info.param.mode == Mode::kGoroutines ? "Goroutines"
                  : info.param.mode == Mode::kThreads  ? "Threads"
                                                       : "Mixed";
  return "P" + std::to_string(info.param.procs) + "_" + m;
}

class Tasks {
 public:
  // max_threads: in thread and mixed modes, tasks beyond this many threads run as goroutines.
  explicit Tasks(Mode mode, int max_threads = 64) : mode_(mode), max_threads_(max_threads) {}
  Tasks(const Tasks&) = delete;
  Tasks& operator=(const Tasks&) = delete;
  ~Tasks() { join(); }

  template <class F>
  bool spawn(F f) {
    bool thread = mode_ == Mode::kThreads || (mode_ == Mode::kMixed && (n_++ % 2 == 1));
    if (static_cast<int>(threads_.size()) >= max_threads_) thread = false;
    remaining_.fetch_add(1);
    if (thread) {
      threads_.emplace_back([this, f = std::move(f)]() mutable {
        f();
        remaining_.fetch_sub(1, std::memory_order_acq_rel);
      });
    } else {
      goro::go([this, f = std::move(f)]() mutable {
        f();
        remaining_.fetch_sub(1, std::memory_order_acq_rel);  // last touch of *this
      });
    }
    return thread;
  }
  void join(double timeout_s = 120) {
    goro_test::wait_or_die([this] { return remaining_.load(std::memory_order_acquire) == 0; },
                           timeout_s, "tasks did not finish (lost wake-up or deadlock?)");
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

 private:
  Mode mode_;
  int max_threads_;
  int n_ = 0;
  std::atomic<int> remaining_{0};
  std::vector<std::thread> threads_;
};

rlim_t raise_nofile() {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur;
}

// Waits for pred from a goroutine (parks between polls) or a plain thread (sleeps): never
// blocks a P's thread. Aborts after timeout_s (a hang).
template <class Pred>
void park_until(Pred&& pred, double timeout_s, const char* what) {
  auto t0 = Clock::now();
  while (!pred()) {
    if (goro_test::seconds_since(t0) > timeout_s) {
      std::fprintf(stderr, "\nTIMEOUT after %.0f s: %s\n", timeout_s, what);
      std::abort();
    }
    goro::sleep_for(1ms);
  }
}

bool has_ipv6_loopback() {
  int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in6 sa{};
  sa.sin6_family = AF_INET6;
  sa.sin6_addr = in6addr_loopback;
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0;
  ::close(fd);
  return ok;
}

// Runs f, expecting a std::system_error with code e.
template <class F>
void expect_errc(F&& f, std::errc e, const char* what) {
  try {
    f();
    ADD_FAILURE() << what << ": no exception, expected " << std::make_error_code(e).message();
  } catch (const std::system_error& ex) {
    EXPECT_EQ(ex.code(), std::make_error_code(e))
        << what << ": got " << ex.code().message() << " (" << ex.what() << ")";
  }
}

// An echo server on 127.0.0.1: one goroutine accepts, one goroutine per connection echoes
// until end of stream.
class EchoServer {
 public:
  EchoServer() : ln_(net::listen("tcp", "127.0.0.1:0")) {
    wg_.add(1);
    goro::go([this] {
      for (;;) {
        std::error_code ec;
        net::Conn c = ln_.accept(ec);
        if (ec) {
          if (ec != std::errc::bad_file_descriptor) accept_errors_++;
          break;
        }
        accepted_++;
        wg_.add(1);
        goro::go([this](net::Conn conn) { echo(conn); }, std::move(c));
      }
      wg_.done();
    });
  }
  ~EchoServer() { stop(); }
  void stop() {
    if (stopped_) return;
    stopped_ = true;
    ln_.close();
    wg_.wait();
  }
  std::string addr() const { return ln_.addr(); }
  int accepted() const { return accepted_.load(); }
  int accept_errors() const { return accept_errors_.load(); }

 private:
  void echo(net::Conn& c) {
    char buf[16384];
    for (;;) {
      std::error_code ec;
      std::size_t n = c.read(buf, sizeof(buf), ec);
      if (ec || n == 0) break;
      c.write(buf, n, ec);
      if (ec) break;
    }
    wg_.done();
  }

  net::Listener ln_;
  goro::WaitGroup wg_;
  std::atomic<int> accepted_{0};
  std::atomic<int> accept_errors_{0};
  bool stopped_ = false;
};

class NetTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override { goro::set_gomaxprocs(GetParam().procs); }
  void TearDown() override {
    EXPECT_TRUE(goro_test::wait_until([] { return goro::num_goroutine() == 0; }))
        << "goroutines left: " << goro::num_goroutine();
  }
  Mode mode() const { return GetParam().mode; }
};

// ---- Data -----------------------------------------------------------------------------------

TEST_P(NetTest, EchoManyConnections) {
  rlim_t lim = raise_nofile();
  std::int64_t n = std::min<std::int64_t>(goro_test::live_cap(scaled(1000)),
                                          (static_cast<std::int64_t>(lim) - 64) / 2);
  EchoServer srv;
  std::atomic<std::int64_t> ok{0};
  std::atomic<std::int64_t> failures{0};
  std::string first_error;
  std::atomic<bool> have_error{false};
  {
    Tasks tasks(mode());
    for (std::int64_t i = 0; i < n; i++) {
      tasks.spawn([&, i] {
        try {
          net::Conn c = net::dial("tcp", srv.addr());
          EXPECT_EQ(c.remote_addr(), srv.addr());
          std::vector<unsigned char> out, in;
          bool good = true;
          for (int k = 0; k < 4 && good; k++) {
            std::size_t len = 1 + static_cast<std::size_t>((i * 131 + k * 977) % 20000);
            out.resize(len);
            for (std::size_t j = 0; j < len; j++) {
              out[j] = static_cast<unsigned char>(i + j * 7 + static_cast<std::size_t>(k));
            }
            EXPECT_EQ(c.write(out.data(), len), len);
            in.assign(len, 0);
            std::size_t got = c.read_full(in.data(), len);
            good = got == len && in == out;
          }
          c.close_write();
          char extra;
          good = good && c.read(&extra, 1) == 0;  // the server's echo loop ends: end of stream
          if (good) ok++;
        } catch (const std::exception& e) {
          failures++;
          if (!have_error.exchange(true)) first_error = e.what();
        }
      });
    }
  }
  EXPECT_EQ(ok.load(), n) << "failures: " << failures.load() << ", first: " << first_error;
  srv.stop();
  EXPECT_EQ(srv.accepted(), n);
  EXPECT_EQ(srv.accept_errors(), 0);
}

TEST_P(NetTest, EndOfStreamAndHalfClose) {
  net::Listener ln = net::listen("tcp", "127.0.0.1:0");
  std::string addr = ln.addr();
  Tasks tasks(mode());
  tasks.spawn([&] {
    net::Conn s = ln.accept();
    char buf[64];
    // The client half-closes after "ping": read to end of stream, then answer and close.
    std::size_t n = s.read_full(buf, sizeof(buf));
    EXPECT_EQ(std::string(buf, n), "ping");
    s.write("abc");
    s.close();
  });
  tasks.spawn([&] {
    net::Conn c = net::dial("tcp", addr);
    c.write("ping");
    c.close_write();
    char buf[64];
    std::size_t n = c.read_full(buf, sizeof(buf));  // fewer than asked: end of stream
    EXPECT_EQ(std::string(buf, n), "abc");
    EXPECT_EQ(c.read(buf, sizeof(buf)), 0u);  // and again: still end of stream
    EXPECT_EQ(c.read(buf, 0), 0u);
    expect_errc([&] { c.write("x"); }, std::errc::broken_pipe, "write after close_write");
  });
  tasks.join();
}

// A read that returns fewer bytes than asked for leaves the connection "drained": the next
// read waits for the poller's edge before its syscall (net.cpp, "Reading a drained socket").
// Each step checks one way that could lose data or hang: bytes that arrive between two reads
// (their edge is recorded while nobody waits), a full read (not drained: the rest must be
// read without a new edge), read_full across segments, a deadline while drained, and the last
// bytes with the FIN behind them (the read that takes the bytes is short, and the end of
// stream must still be reported without a new edge).
TEST_P(NetTest, ReadsAfterAShortRead) {
  net::Listener ln = net::listen("tcp", "127.0.0.1:0");
  std::string addr = ln.addr();
  std::atomic<int> step{0};
  auto until = [&](int k) { park_until([&] { return step.load() >= k; }, 60, "test stalled"); };
  Tasks tasks(mode());
  tasks.spawn([&] {
    net::Conn s = ln.accept();
    s.write("a");
    until(1);
    s.write("bc");  // arrives while the client is not reading
    step = 2;
    until(3);
    goro::sleep_for(20ms);  // the client is (most likely) parked by now
    s.write("defg");
    until(4);
    s.write("h");
    goro::sleep_for(20ms);
    s.write("ij");
    until(5);
    s.write("k");
    until(6);
    s.write("l");
    until(7);
    s.write("m");  // and the FIN right behind it: one edge for both, or two
    s.close();
  });
  tasks.spawn([&] {
    net::Conn c = net::dial("tcp", addr);
    char buf[64];
    auto read = [&](std::size_t n) { return std::string(buf, c.read(buf, n)); };
    EXPECT_EQ(read(sizeof(buf)), "a");  // short: drained
    step = 1;
    until(2);
    goro::sleep_for(10ms);
    EXPECT_EQ(read(sizeof(buf)), "bc");
    step = 3;
    EXPECT_EQ(read(2), "de");  // full: not drained
    EXPECT_EQ(read(2), "fg");  // no edge comes for these
    step = 4;
    EXPECT_EQ(std::string(buf, c.read_full(buf, 3)), "hij");  // a short read, a wait, the rest
    step = 5;
    EXPECT_EQ(read(sizeof(buf)), "k");  // drained again
    c.set_read_deadline(Clock::now() + 50ms);
    expect_errc([&] { read(sizeof(buf)); }, std::errc::timed_out, "drained read past deadline");
    c.set_read_deadline(net::no_deadline);
    step = 6;
    EXPECT_EQ(read(sizeof(buf)), "l");
    step = 7;
    EXPECT_EQ(read(sizeof(buf)), "m");  // short, but the FIN may be queued behind it
    EXPECT_EQ(read(sizeof(buf)), "");   // end of stream without another edge
    EXPECT_EQ(read(sizeof(buf)), "");
  });
  tasks.join();
}

// A reset that arrives while the connection is drained: the read that reports it and every
// later read return at once (no new edge comes for a connection that is gone).
TEST_P(NetTest, ReadsAfterAResetDoNotWait) {
  net::Listener ln = net::listen("tcp", "127.0.0.1:0");
  std::string addr = ln.addr();
  std::atomic<int> step{0};
  Tasks tasks(mode());
  tasks.spawn([&] {
    net::Conn s = ln.accept();
    s.write("a");
    park_until([&] { return step.load() >= 1; }, 60, "test stalled");
    goro::sleep_for(20ms);  // the client's read is (most likely) waiting by now
    linger lg{1, 0};        // close with RST
    ASSERT_EQ(::setsockopt(s.native_handle(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    s.close();
  });
  tasks.spawn([&] {
    net::Conn c = net::dial("tcp", addr);
    char buf[64];
    EXPECT_EQ(c.read(buf, sizeof(buf)), 1u);  // short: drained
    step = 1;
    std::error_code ec;
    for (int i = 0; i < 3; i++) {
      std::size_t n = c.read(buf, sizeof(buf), ec);
      EXPECT_EQ(n, 0u);
      EXPECT_TRUE(ec == std::errc::connection_reset || (i > 0 && !ec)) << i << ": " << ec.message();
    }
  });
  tasks.join();
}

// TCP urgent data: a read stops short at the urgent mark with the bytes after it still
// queued, so a short read there must not count as draining (the poller's EPOLLPRI). The
// client corks "abc", the urgent "X" and "def" into one segment, which arrives while the
// server's read waits: one event wakes it, and the read that follows returns "abc".
TEST_P(NetTest, UrgentDataDoesNotStallReads) {
  net::Listener ln = net::listen("tcp", "127.0.0.1:0");
  std::string addr = ln.addr();
  std::atomic<bool> reading{false};
  Tasks tasks(mode());
  tasks.spawn([&] {
    net::Conn s = ln.accept();
    std::string got;
    char buf[64];
    reading = true;
    while (got.size() < 6) {
      std::size_t n = s.read(buf, sizeof(buf));
      ASSERT_GT(n, 0u) << "end of stream after \"" << got << "\"";
      got.append(buf, n);
    }
    EXPECT_EQ(got, "abcdef");  // the urgent byte is not part of the stream
    s.write("ok");
  });
  tasks.spawn([&] {
    net::Conn c = net::dial("tcp", addr);
    int fd = c.native_handle();
    park_until([&] { return reading.load(); }, 60, "test stalled");
    goro::sleep_for(20ms);  // the server's read is (most likely) waiting by now
    int on = 1;
    int off = 0;
    ASSERT_EQ(::setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on), 0);
    c.write("abc");
    ASSERT_EQ(::send(fd, "X", 1, MSG_OOB), 1);
    c.write("def");
    ASSERT_EQ(::setsockopt(fd, IPPROTO_TCP, TCP_CORK, &off, sizeof off), 0);
    char buf[2];
    EXPECT_EQ(c.read_full(buf, 2), 2u);
    EXPECT_EQ(std::string(buf, 2), "ok");
  });
  tasks.join();
}

TEST_P(NetTest, PeerResetIsAnErrorNotASignal) {
  net::Listener ln = net::listen("tcp", "127.0.0.1:0");
  std::string addr = ln.addr();
  std::atomic<bool> reset_sent{false};
  Tasks tasks(mode());
  tasks.spawn([&] {
    net::Conn s = ln.accept();
    char c;
    s.read_full(&c, 1);
    linger lg{1, 0};  // close with RST
    ASSERT_EQ(::setsockopt(s.native_handle(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    s.close();
    reset_sent = true;
  });
  tasks.spawn([&] {
    net::Conn c = net::dial("tcp", addr);
    c.write("r");
    char buf[8];
    std::error_code ec;
    std::size_t n = c.read(buf, sizeof(buf), ec);  // blocks until the RST arrives
    EXPECT_EQ(n, 0u);
    EXPECT_EQ(ec, std::errc::connection_reset) << ec.message();
    // Writing to a reset connection: an error (EPIPE or ECONNRESET), never SIGPIPE.
    std::vector<char> big(1 << 20, 'w');
    c.write(big.data(), big.size(), ec);
    c.write(big.data(), big.size(), ec);
    EXPECT_TRUE(ec == std::errc::broken_pipe || ec == std::errc::connection_reset) << ec.message();
  });
  tasks.join();
}

TEST_P(NetTest, ConcurrentWritersNeverInterleave) {
  net::Listener ln = net::listen("tcp", "127.0.0.1:0");
  std::string addr = ln.addr();
  constexpr int kWriters = 4;
  const int kMsgs = static_cast<int>(scaled(40));
  constexpr std::size_t kLen = 65536 + 3;
  std::atomic<int> bad{0}, chunks{0};
  net::Conn client;
  Tasks tasks(mode());
  tasks.spawn([&] {
    net::Conn s = ln.accept();
    std::vector<unsigned char> buf(kLen);
    for (;;) {
      std::size_t n = s.read_full(buf.data(), kLen);
      if (n == 0) break;
      if (n != kLen ||
          std::count(buf.begin(), buf.end(), buf[0]) != static_cast<std::ptrdiff_t>(kLen)) {
        bad++;
      }
      chunks++;
    }
  });
  client = net::dial("tcp", addr);
  {
    Tasks writers(mode());
    for (int w = 0; w < kWriters; w++) {
      writers.spawn([&, w] {
        std::vector<unsigned char> msg(kLen, static_cast<unsigned char>('A' + w));
        for (int k = 0; k < kMsgs; k++) client.write(msg.data(), msg.size());
      });
    }
  }
  client.close_write();
  tasks.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(chunks.load(), kWriters * kMsgs);
}

TEST_P(NetTest, ManyAcceptorsOnOneListener) {
  net::Listener ln = net::listen("tcp", "127.0.0.1:0");
  std::string addr = ln.addr();
  const int kConns = static_cast<int>(scaled(200));
  std::atomic<int> accepted{0}, closed_errors{0};
  Tasks acceptors(mode(), 8);
  for (int a = 0; a < 8; a++) {
    acceptors.spawn([&] {
      for (;;) {
        std::error_code ec;
        net::Conn c = ln.accept(ec);
        if (ec) {
          if (ec == std::errc::bad_file_descriptor) closed_errors++;
          return;
        }
        char b;
        c.read_full(&b, 1, ec);
        if (!ec) c.write(&b, 1, ec);
        accepted++;
      }
    });
  }
  {
    Tasks clients(Mode::kGoroutines);
    for (int i = 0; i < kConns; i++) {
      clients.spawn([&] {
        net::Conn c = net::dial("tcp", addr);
        char b = 'a';
        c.write(&b, 1);
        EXPECT_EQ(c.read_full(&b, 1), 1u);
      });
    }
  }
  ASSERT_TRUE(goro_test::wait_until([&] { return accepted.load() == kConns; }, 60));
  ln.close();  // wakes the 8 blocked acceptors
  acceptors.join(30);
  EXPECT_EQ(accepted.load(), kConns);
  EXPECT_EQ(closed_errors.load(), 8);
}

// ---- Deadlines and timeouts ---------------------------------------------------------------------

TEST_P(NetTest, ReadDeadline) {
  net::Listener ln = net::listen("tcp", "127.0.0.1:0");
  std::string addr = ln.addr();
  std::atomic<bool> may_write{false};
  Tasks tasks(mode());
  tasks.spawn([&] {
    net::Conn s = ln.accept();
    park_until([&] { return may_write.load(); }, 60, "test stalled");
    s.write("late");
    char b;
    s.read(&b, 1);  // until the client closes
  });
  tasks.spawn([&] {
    net::Conn c = net::dial("tcp", addr);
    auto t0 = Clock::now();  // before the deadline's base: a stall in between must not count
    c.set_read_deadline(t0 + 50ms);
    char buf[8];
    expect_errc([&] { c.read(buf, sizeof(buf)); }, std::errc::timed_out, "read past deadline");
    double waited = goro_test::seconds_since(t0);
    EXPECT_GE(waited, 0.049);
    EXPECT_LT(waited, 10.0);
    // Still expired: fails at once. Writing is unaffected.
    expect_errc([&] { c.read(buf, sizeof(buf)); }, std::errc::timed_out, "read again");
    c.write("w");
    // A new deadline far away: the data arrives first.
    c.set_read_deadline(Clock::now() + 60s);
    may_write = true;
    EXPECT_EQ(c.read_full(buf, 4), 4u);
    EXPECT_EQ(std::string(buf, 4), "late");
    c.set_deadline(net::no_deadline);
  });
  tasks.join();
}

TEST_P(NetTest, WriteDeadline) {
  net::Listener ln = net::listen("tcp", "127.0.0.1:0");
  std::string addr = ln.addr();
  std::atomic<bool> done{false};
  Tasks tasks(mode());
  tasks.spawn([&] {
    net::Conn s = ln.accept();  // never reads until the client is done
    park_until([&] { return done.load(); }, 60, "test stalled");
  });
  tasks.spawn([&] {
    net::Conn c = net::dial("tcp", addr);
    c.set_write_deadline(Clock::now() + 100ms);
    std::vector<char> big(1 << 20, 'x');
    std::error_code ec;
    std::size_t total = 0;
    for (int i = 0; i < 256 && !ec; i++) total += c.write(big.data(), big.size(), ec);
    EXPECT_EQ(ec, std::errc::timed_out) << ec.message();
    EXPECT_GT(total, 0u);
    done = true;
  });
  tasks.join();
}

TEST_P(NetTest, DeadlineSetFromAnotherTaskWakesBlockedRead) {
  net::Listener ln = net::listen("tcp", "127.0.0.1:0");
  net::Conn c = net::dial("tcp", ln.addr());
  net::Conn s = ln.accept();
  std::atomic<bool> blocked{false};
  std::error_code got;
  Tasks tasks(mode());
  tasks.spawn([&] {
    blocked = true;
    char b;
    c.read(&b, 1, got);
  });
  ASSERT_TRUE(goro_test::wait_until([&] { return blocked.load(); }));
  std::this_thread::sleep_for(20ms);
  c.set_read_deadline(Clock::now() - 1s);  // already past: the blocked read fails now
  tasks.join(30);
  EXPECT_EQ(got, std::errc::timed_out) << got.message();
}

TEST_P(NetTest, DialTimeoutToFullBacklog) {
  // A listener that never accepts, with backlog 0: once its queue holds one connection the
  // kernel drops further SYNs, so a dial hangs in SYN_SENT until our timeout.
  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(lfd, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
  ASSERT_EQ(::listen(lfd, 0), 0);
  socklen_t len = sizeof(sa);
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&sa), &len);
  std::string addr = "127.0.0.1:" + std::to_string(ntohs(sa.sin_port));
  std::atomic<int> timeouts{0}, connected{0}, other{0};
  std::atomic<double> timed_out_after{0};
  Tasks tasks(mode());
  tasks.spawn([&] {
    std::vector<net::Conn> keep;  // keep the queued ones open
    for (int i = 0; i < 8 && timeouts.load() == 0; i++) {
      auto t0 = Clock::now();
      std::error_code ec;
      net::Conn c = net::dial_timeout("tcp", addr, 150ms, ec);
      if (!ec) {
        connected++;
        keep.push_back(std::move(c));
      } else if (ec == std::errc::timed_out) {
        timeouts++;
        timed_out_after = goro_test::seconds_since(t0);
      } else {
        other++;
      }
    }
  });
  tasks.join();
  ::close(lfd);
  EXPECT_EQ(timeouts.load(), 1) << "connected " << connected.load() << ", other errors "
                                << other.load();
  EXPECT_GE(timed_out_after.load(), 0.149);
  EXPECT_LT(timed_out_after.load(), 10.0);
  EXPECT_EQ(other.load(), 0);
}

TEST_P(NetTest, DialTimeoutToBlackhole) {
  // 10.255.255.1 is not routed on most hosts: either nothing answers (timeout) or the host
  // has no route at all (network_unreachable at once). Sandboxes that intercept every
  // outgoing connection let it succeed. Whatever happens, it never hangs.
  std::error_code ec;
  auto t0 = Clock::now();
  net::Conn c;
  Tasks tasks(mode());
  tasks.spawn([&] { c = net::dial_timeout("tcp", "10.255.255.1:9", 100ms, ec); });
  tasks.join(30);
  double took = goro_test::seconds_since(t0);
  EXPECT_TRUE(!ec || ec == std::errc::timed_out || ec == std::errc::network_unreachable ||
              ec == std::errc::host_unreachable || ec == std::errc::connection_refused)
      << ec.message();
  if (ec == std::errc::timed_out) {
    EXPECT_GE(took, 0.099);
  }
  EXPECT_LT(took, 10.0);
}

TEST_P(NetTest, DialRefused) {
  net::Listener ln = net::listen("tcp", "127.0.0.1:0");
  std::string addr = ln.addr();
  ln.close();  // nobody listens on that port any more
  Tasks tasks(mode());
  tasks.spawn(
      [&] { expect_errc([&] { net::dial("tcp", addr); }, std::errc::connection_refused, "dial"); });
  tasks.join();
}

// ---- Close while blocked ----------------------------------------------------------------------

TEST_P(NetTest, CloseWakesBlockedReaderWriterAndAcceptor) {
  net::Listener ln = net::listen("tcp", "127.0.0.1:0");
  net::Listener ln2 = net::listen("tcp", "127.0.0.1:0");
  net::Conn a = net::dial("tcp", ln.addr());
  net::Conn b = net::dial("tcp", ln.addr());
  net::Conn sa = ln.accept();
  net::Conn sb = ln.accept();
  std::atomic<int> started{0};
  std::error_code rec, wec, aec;
  Tasks tasks(mode());
  tasks.spawn([&] {  // blocked in read: nothing is ever sent to a
    started++;
    char c;
    a.read(&c, 1, rec);
  });
  tasks.spawn([&] {  // blocked in write: nobody reads from sb
    started++;
    std::vector<char> big(1 << 20, 'b');
    for (int i = 0; i < 1024 && !wec; i++) b.write(big.data(), big.size(), wec);
  });
  tasks.spawn([&] {  // blocked in accept: nobody dials ln2
    started++;
    ln2.accept(aec);
  });
  ASSERT_TRUE(goro_test::wait_until([&] { return started.load() == 3; }));
  std::this_thread::sleep_for(50ms);
  auto t0 = Clock::now();
  // Close from goroutines and from this thread.
  goro::WaitGroup wg;
  wg.add(1);
  goro::go([&] {
    a.close();
    wg.done();
  });
  b.close();
  ln2.close();
  wg.wait();
  tasks.join(30);
  EXPECT_LT(goro_test::seconds_since(t0), 10.0);
  EXPECT_EQ(rec, std::errc::bad_file_descriptor) << rec.message();
  EXPECT_EQ(wec, std::errc::bad_file_descriptor) << wec.message();
  EXPECT_EQ(aec, std::errc::bad_file_descriptor) << aec.message();
  // Closed objects: every call fails the same way; closing twice too.
  char c;
  expect_errc([&] { a.read(&c, 1); }, std::errc::bad_file_descriptor, "read after close");
  expect_errc([&] { a.write("x"); }, std::errc::bad_file_descriptor, "write after close");
  expect_errc([&] { a.set_deadline(Clock::now()); }, std::errc::bad_file_descriptor,
              "set_deadline after close");
  expect_errc([&] { a.close(); }, std::errc::bad_file_descriptor, "close twice");
  expect_errc([&] { ln2.accept(); }, std::errc::bad_file_descriptor, "accept after close");
  // The peers see the close: end of stream.
  EXPECT_EQ(sa.read(&c, 1), 0u);
}

TEST_P(NetTest, CloseRacingWithReads) {
  // Close at random moments against a reader just starting: it returns data, end of stream
  // or bad_file_descriptor, never hangs; the socket is closed once, after the reader left.
  net::Listener ln = net::listen("tcp", "127.0.0.1:0");
  std::int64_t rounds = scaled(200);
  std::atomic<std::int64_t> finished{0};
  for (std::int64_t r = 0; r < rounds; r++) {
    net::Conn c = net::dial("tcp", ln.addr());
    net::Conn s = ln.accept();
    if (r % 3 == 0) s.write("d");
    Tasks tasks(r % 2 == 0 ? mode() : Mode::kGoroutines);
    tasks.spawn([&] {
      char b;
      std::error_code ec;
      c.read(&b, 1, ec);
      EXPECT_TRUE(!ec || ec == std::errc::bad_file_descriptor) << ec.message();
      finished++;
    });
    if (r % 5 == 0) std::this_thread::yield();
    c.close();
    tasks.join(30);
  }
  EXPECT_EQ(finished.load(), rounds);
}

// ---- Addresses and API shape ------------------------------------------------------------------

TEST_P(NetTest, Addresses) {
  net::Listener l4 = net::listen("tcp4", "127.0.0.1:0");
  EXPECT_EQ(l4.addr().rfind("127.0.0.1:", 0), 0u) << l4.addr();
  net::Listener lh = net::listen("tcp", "localhost:0");
  EXPECT_EQ(lh.addr().rfind("127.0.0.1:", 0), 0u) << lh.addr();
  net::Listener lany = net::listen("tcp", ":0");
  std::string port = lany.addr().substr(lany.addr().rfind(':') + 1);
  {
    // ":port" listens on every address: reachable through 127.0.0.1 (dual-stack or IPv4).
    net::Conn c = net::dial("tcp", "127.0.0.1:" + port);
    net::Conn s = lany.accept();
    EXPECT_EQ(s.remote_addr(), c.local_addr());
    EXPECT_EQ(c.remote_addr(), "127.0.0.1:" + port);
    net::Conn c2 = net::dial("tcp", ":" + port);  // empty host dials the local system
    net::Conn s2 = lany.accept();
    EXPECT_EQ(s2.local_addr(), "127.0.0.1:" + port);
  }
  if (has_ipv6_loopback()) {
    net::Listener l6 = net::listen("tcp6", "[::1]:0");
    EXPECT_EQ(l6.addr().rfind("[::1]:", 0), 0u) << l6.addr();
    net::Conn c = net::dial("tcp", l6.addr());
    net::Conn s = l6.accept();
    EXPECT_EQ(c.remote_addr(), l6.addr());
    EXPECT_EQ(s.remote_addr(), c.local_addr());
    net::Listener l6h = net::listen("tcp6", "localhost:0");
    EXPECT_EQ(l6h.addr().rfind("[::1]:", 0), 0u) << l6h.addr();
  }
  for (const char* bad :
       {"127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "::1:80", "[127.0.0.1]:80",
        "[::1:80", "example.com:80", "127.0.0.1:http", "1.2.3:80"}) {
    std::error_code ec;
    net::listen("tcp", bad, ec);
    EXPECT_EQ(ec, std::errc::invalid_argument) << bad;
    net::dial("tcp", bad, ec);
    EXPECT_EQ(ec, std::errc::invalid_argument) << bad;
  }
  std::error_code ec;
  net::listen("udp", "127.0.0.1:0", ec);
  EXPECT_EQ(ec, std::errc::invalid_argument);
  net::listen("tcp4", "[::1]:0", ec);
  EXPECT_EQ(ec, std::errc::invalid_argument);
  net::listen("tcp6", "127.0.0.1:0", ec);
  EXPECT_EQ(ec, std::errc::invalid_argument);
  expect_errc([] { net::listen("tcp", "bad"); }, std::errc::invalid_argument, "throwing form");
  // Address in use.
  net::listen("tcp", l4.addr(), ec);
  EXPECT_EQ(ec, std::errc::address_in_use) << ec.message();
}

TEST_P(NetTest, EmptyAndMovedObjects) {
  net::Conn empty;
  EXPECT_FALSE(empty.valid());
  EXPECT_EQ(empty.native_handle(), -1);
  EXPECT_EQ(empty.local_addr(), "");
  char b;
  std::error_code ec;
  empty.read(&b, 1, ec);
  EXPECT_EQ(ec, std::errc::bad_file_descriptor);
  empty.close(ec);
  EXPECT_EQ(ec, std::errc::bad_file_descriptor);
  net::Listener ln = net::listen("tcp", "127.0.0.1:0");
  net::Conn a = net::dial("tcp", ln.addr());
  net::Conn moved = std::move(a);
  EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move)
  EXPECT_TRUE(moved.valid());
  net::Conn s = ln.accept();
  moved.write("m");
  EXPECT_EQ(s.read(&b, 1), 1u);
  moved = net::Conn();  // closes the connection
  EXPECT_EQ(s.read(&b, 1), 0u);
  net::Listener l2 = std::move(ln);
  EXPECT_FALSE(ln.valid());  // NOLINT(bugprone-use-after-move)
  EXPECT_TRUE(l2.valid());
}

INSTANTIATE_TEST_SUITE_P(Procs, NetTest,
                         ::testing::Values(Param{1, Mode::kGoroutines}, Param{1, Mode::kThreads},
                                           Param{1, Mode::kMixed}, Param{2, Mode::kGoroutines},
                                           Param{2, Mode::kMixed}, Param{8, Mode::kGoroutines},
                                           Param{8, Mode::kThreads}, Param{8, Mode::kMixed}),
                         param_name);

// ---- EMFILE (child process: the fd limit is process-wide) -----------------------------------

// In the child: lowers RLIMIT_NOFILE, exhausts it, and checks that accept and dial report
// EMFILE unchanged and that the pending connection is accepted once an fd is free. Exits 0
// on success, else with a code naming the failed step.
[[noreturn]] void emfile_child(bool from_goroutine) {
  // The deadlock detector opens files under /proc (debug.hpp) when every P is idle, which can
  // take the one descriptor this child frees before its accept. Not what is tested here.
  goro::debug::set_deadlock_mode(goro::debug::DeadlockMode::kOff);
  auto body = [] {
    net::Listener ln = net::listen("tcp", "127.0.0.1:0");
    net::Conn client = net::dial("tcp", ln.addr());  // pending in the backlog
    rlimit rl{};
    getrlimit(RLIMIT_NOFILE, &rl);
    const rlimit saved = rl;
    int highest = 0;
    for (int fd = 0; fd < 4096; fd++) {
      if (::fcntl(fd, F_GETFD) >= 0) highest = fd;
    }
    rl.rlim_cur = static_cast<rlim_t>(highest + 9);
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return 10;
    std::vector<int> fillers;
    struct Restore {  // for another attempt (see below)
      std::vector<int>& fds;
      const rlimit& rl;
      ~Restore() {
        for (int fd : fds) ::close(fd);
        setrlimit(RLIMIT_NOFILE, &rl);
      }
    } restore{fillers, saved};
    for (;;) {
      int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        if (errno != EMFILE) return 11;
        break;
      }
      fillers.push_back(fd);
    }
    // Compare the raw values while no fd is free: UBSan's vptr check (behind error_code's
    // virtual comparisons) probes memory through a pipe, which fails with EMFILE.
    auto is_emfile = [](const std::error_code& e) {
      return e.value() == EMFILE && &e.category() == &std::generic_category();
    };
    std::error_code ec;
    net::Conn c = ln.accept(ec);
    if (!is_emfile(ec)) return 12;
    net::dial("tcp", ln.addr(), ec);
    if (!is_emfile(ec)) return 13;
    ::close(fillers.back());
    fillers.pop_back();
    c = ln.accept(ec);  // the connection that waited in the backlog
    if (ec || !c.valid()) return 14;
    client.write("e");
    char b = 0;
    if (c.read(&b, 1) != 1 || b != 'e') return 15;
    return 0;
  };
  // In sanitizer builds UBSan's vptr check probes memory through a pipe that it creates with
  // the hooked pipe() and closes by raw syscall, on whatever thread runs instrumented code: a
  // probe that overlaps the fill holds two descriptors and frees them later, so an accept or a
  // dial can find a descriptor free (seen: dial succeeding, 1 in ~16 runs under ASan+UBSan).
  // There, a failed attempt is repeated; three in a row fail the test.
  const int attempts = goro_test::kSanitizerBuild ? 3 : 1;
  int rc = 0;
  for (int attempt = 0; attempt < attempts; attempt++) {
    if (from_goroutine) {
      goro::WaitGroup wg;
      wg.add(1);
      goro::go([&] {
        rc = body();
        wg.done();
      });
      wg.wait();
    } else {
      rc = body();
    }
    if (rc == 0) break;
  }
  std::_Exit(rc);
}

class NetEmfileTest : public ::testing::TestWithParam<int> {};

TEST_P(NetEmfileTest, AcceptAndDialReportEmfile) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  goro::set_gomaxprocs(GetParam());
  EXPECT_EXIT(emfile_child(true), ::testing::ExitedWithCode(0), "") << "from a goroutine";
  EXPECT_EXIT(emfile_child(false), ::testing::ExitedWithCode(0), "") << "from a plain thread";
}

INSTANTIATE_TEST_SUITE_P(Procs, NetEmfileTest, ::testing::Values(1, 2, 8));

}  // namespace
