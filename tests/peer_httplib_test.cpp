// peer_httplib_test.cpp - the unmodified cpp-httplib server (Debian's libcpp-httplib, compiled
// library) with a TaskQueue whose enqueue() runs each connection as a goroutine, its accept
// loop in a goroutine too, loaded by real clients: httplib's own Client (on plain threads),
// raw idle sockets, and wrk.
//
// httplib knows nothing of goro: it waits for requests in poll() (with a 10 ms timeout and a
// 1 ms std::this_thread::sleep_for between polls while a keep-alive connection is idle), reads
// with recv(), writes with send(), accepts with accept(); goro's libc interposer
// (src/hook/io_hooks.cpp, docs/io.md) parks the goroutine in each. What is checked, with
// GOMAXPROCS=2:
//  * ClientsOnThreads: 16 plain threads with an httplib::Client each send 50 requests to a route
//    with a parameter; every status and body is checked.
//  * ClientsInGoroutines: the same from 100 goroutines (20 requests each on one keep-alive
//    connection; connects 4 at a time, for httplib's listen backlog of 5); each costs a thread
//    while it waits with httplib's request mutex held (explained above the test).
//  * IdleConnectionsPark: 1,000 idle keep-alive connections (opened by the main thread, which
//    sends nothing) each hold a connection goroutine waiting in httplib's keep-alive loop; a
//    request on connection 1,001 must still be answered within 20 s, and its handler must see
//    all 1,001 connection goroutines alive. If poll() blocked OS threads, the 2 Ps would be stuck
//    in the first idle connections' keep-alive waits (300 s) and the request would time out.
//  * WrkLoad: wrk with 1,000 connections for a few seconds: requests are served, no error
//    responses, no socket errors.
// In every test the process never has more than GOMAXPROCS + 8 OS threads. The comparison with
// httplib's own thread pool is a benchmark (bench/goro/httplib.cpp, bench/README.md).
//
// Skips only when wrk is missing (WrkLoad); under ThreadSanitizer the libc hooks are not built
// (skipped with a message). Counts scale with GORO_TEST_SCALE.
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "goro/goro.hpp"
#include "hook/io_hooks.hpp"
#include "peer_util.hpp"
#include "servers.hpp"
#include "test_util.hpp"

namespace {

using goro_test::kProcs;
using goro_test::kThreadSlack;
using goro_test::ProcsScope;
using goro_test::scaled;

// httplib's TaskQueue, one goroutine per task (a task is one connection's whole life:
// keep-alive loop, requests, close). shutdown() waits for every connection goroutine.
class GoroutineTaskQueue : public httplib::TaskQueue {
 public:
  explicit GoroutineTaskQueue(std::atomic<int>* in_flight) : in_flight_(in_flight) {}
  void enqueue(std::function<void()> fn) override {
    wg_.add(1);
    goro::go([this, fn = std::move(fn)] {
      in_flight_->fetch_add(1);
      fn();
      in_flight_->fetch_sub(1);
      wg_.done();
    });
  }
  void shutdown() override { wg_.wait(); }

 private:
  std::atomic<int>* in_flight_;
  goro::WaitGroup wg_;
};

// The server under test: routes /hello, /double/<n>, /inflight; accept loop in a goroutine.
class GoroServer {
 public:
  explicit GoroServer(time_t keep_alive_s = 5, std::size_t keep_alive_max_count = 5) {
    svr_.new_task_queue = [this] { return new GoroutineTaskQueue(&in_flight_); };
    svr_.set_keep_alive_timeout(keep_alive_s);
    svr_.set_keep_alive_max_count(keep_alive_max_count);
    svr_.Get("/hello", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("hello", "text/plain");
    });
    svr_.Get(R"(/double/(\d+))", [](const httplib::Request& req, httplib::Response& res) {
      res.set_content(std::to_string(2 * std::stol(req.matches[1].str())), "text/plain");
    });
    svr_.Get("/inflight", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(std::to_string(in_flight_.load()), "text/plain");
    });
    port_ = svr_.bind_to_any_port("127.0.0.1");
    if (port_ > 0) {
      goro::go([this] {
        svr_.listen_after_bind();
        listening_.store(false);
      });
    }
  }
  ~GoroServer() {
    svr_.stop();  // closes the listening socket: the accept loop ends, then shutdown() waits
    goro_test::wait_or_die([&] { return !listening_.load(); }, 60, "httplib server stopping");
  }
  int port() const { return port_; }
  int in_flight() const { return in_flight_.load(); }

 private:
  httplib::Server svr_;
  std::atomic<int> in_flight_{0};
  std::atomic<bool> listening_{true};
  int port_ = -1;
};

class HttplibPeer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { goro_test::raise_fd_limit(8192); }
  void SetUp() override {
    if (!goro::internal::io_hooks_built()) {
      GTEST_SKIP() << "the libc I/O hooks are not built in this configuration (ThreadSanitizer): "
                      "httplib would block OS threads instead of parking goroutines";
    }
    // The thread bounds below count the whole process: when an earlier test of this binary
    // pinned one M per client (ClientsInGoroutines), let those Ms reach their idle exit (2 s)
    // first. Only a whole-binary run waits; ctest starts each test in a fresh process.
    goro_test::wait_until([] { return goro::num_threads() <= kProcs + kThreadSlack; }, 10);
  }
};

// n clients of `requests` GET /double/<x> each, on plain threads or in goroutines; returns the
// first failure ("" if none) and counts the OS threads seen while they ran. At most
// `connecting` clients make their first request (their connect) at once: httplib listens with
// a backlog of 5, and a connect beyond it can be left established on the client's side only
// (its final ACK dropped under a full accept queue), its request unanswered until the read
// timeout. (0: no limit.)
std::string run_clients(int port, int n, int requests, bool goroutines, time_t read_timeout_s,
                        int* max_threads, int connecting = 0) {
  std::atomic<int> done{0};
  std::atomic<int> failures{0};
  std::string first_failure;
  goro::Mutex mu;
  goro::Semaphore connect_gate(connecting > 0 ? connecting : n);
  auto client = [&](int i) {
    httplib::Client cli("127.0.0.1", port);
    cli.set_read_timeout(read_timeout_s);
    for (int k = 0; k < requests; k++) {
      const long x = i * 1000L + k;
      if (k == 0) connect_gate.acquire();
      auto res = cli.Get("/double/" + std::to_string(x));
      if (k == 0) connect_gate.release();
      if (!res || res->status != 200 || res->body != std::to_string(2 * x)) {
        failures.fetch_add(1);
        std::lock_guard<goro::Mutex> g(mu);
        if (first_failure.empty()) {
          first_failure = "client " + std::to_string(i) + " request " + std::to_string(k) + ": " +
                          (res ? "status " + std::to_string(res->status) + " body " + res->body
                               : "error " + httplib::to_string(res.error()));
        }
        break;
      }
    }
    done.fetch_add(1);
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < n; i++) {
    if (goroutines) {
      goro::go(client, i);
    } else {
      threads.emplace_back(client, i);
    }
  }
  *max_threads = goro::num_threads();
  goro_test::wait_or_die(
      [&] {
        *max_threads = std::max(*max_threads, goro::num_threads());
        return done.load() == n;
      },
      120, "httplib clients finishing");
  for (auto& t : threads) t.join();
  if (failures.load() == 0) return {};
  return std::to_string(failures.load()) + " of " + std::to_string(n) +
         " clients failed; first: " + first_failure;
}

TEST_F(HttplibPeer, ClientsOnThreads) {
  ProcsScope procs(kProcs);
  GoroServer server;
  ASSERT_GT(server.port(), 0);
  const int n = static_cast<int>(std::min<std::int64_t>(16, scaled(16)));
  int max_threads = 0;
  EXPECT_EQ(run_clients(server.port(), n, static_cast<int>(scaled(50)), false, 30, &max_threads),
            "");
  EXPECT_LE(max_threads, kProcs + kThreadSlack + n)
      << "OS threads peaked at " << max_threads << " (" << n << " of them the clients)";
}

// httplib::Client holds a std::recursive_mutex (ClientImpl::request_mutex_) for the whole of
// each request, so its goroutine has a pthread mutex locked when it waits for the response in
// poll(). The hooks park it pinned to its thread (docs/io.md, "A goroutine that holds a pthread
// mutex"): its P serves the server's goroutines meanwhile, and the mutex is unlocked by the
// thread that locked it. The price, checked here as the bound, is one OS thread per client
// waiting with the mutex held; every request must still succeed.
TEST_F(HttplibPeer, ClientsInGoroutines) {
  ProcsScope procs(kProcs);
  // One connection per client for all of its requests; connects paced (see run_clients).
  GoroServer server(/*keep_alive_s=*/60, /*keep_alive_max_count=*/1000);
  ASSERT_GT(server.port(), 0);
  const int n = static_cast<int>(scaled(100));
  int max_threads = 0;
  EXPECT_EQ(run_clients(server.port(), n, 20, true, 60, &max_threads, /*connecting=*/4), "");
  EXPECT_LE(max_threads, kProcs + kThreadSlack + n) << "OS threads peaked at " << max_threads;
}

// A blocking TCP connection from the calling (plain) thread, or -1.
int dial_plain(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

TEST_F(HttplibPeer, IdleConnectionsPark) {
  ProcsScope procs(kProcs);
  // Keep-alive far longer than the test: no idle connection may time out before the probe.
  GoroServer server(/*keep_alive_s=*/300);
  ASSERT_GT(server.port(), 0);
  const int n = static_cast<int>(goro_test::live_cap(scaled(1000)));
  std::vector<int> idle;
  for (int i = 0; i < n; i++) {
    int fd = dial_plain(server.port());
    ASSERT_GE(fd, 0) << "connection " << i << ": " << std::strerror(errno);
    idle.push_back(fd);
    // httplib listens with a backlog of 5: let its accept loop keep up, or connects beyond it
    // would wait for a SYN retransmission (1 s).
    goro_test::wait_until([&] { return server.in_flight() > i - 3; }, 10);
  }
  int max_threads = goro::num_threads();
  bool all_started = goro_test::wait_until(
      [&] {
        max_threads = std::max(max_threads, goro::num_threads());
        return server.in_flight() >= n;
      },
      60);
  EXPECT_TRUE(all_started) << "only " << server.in_flight() << " of " << n
                           << " connection goroutines started";
  // Connection n+1, from this plain thread.
  httplib::Client probe("127.0.0.1", server.port());
  probe.set_read_timeout(20);
  auto res = probe.Get("/inflight");
  max_threads = std::max(max_threads, goro::num_threads());
  ASSERT_TRUE(res) << "no answer while " << n
                   << " connections were idle: " << httplib::to_string(res.error())
                   << " (goroutines waiting in poll() hold their OS threads?)";
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, std::to_string(n + 1))
      << "the handler did not see every idle connection's goroutine alive";
  probe.stop();
  for (int fd : idle) ::close(fd);  // each keep-alive loop sees end of stream and returns
  goro_test::wait_or_die([&] { return server.in_flight() == 0; }, 60,
                         "connection goroutines ending after their clients closed");
  EXPECT_LE(max_threads, kProcs + kThreadSlack) << "OS threads peaked at " << max_threads;
  std::printf(
      "[ httplib  ] answered a request while %d keep-alive connections were idle in "
      "goroutines; OS threads at most %d\n",
      n, max_threads);
}

TEST_F(HttplibPeer, WrkLoad) {
  if (goro_test::wrk_binary().empty()) {
    GTEST_SKIP() << "wrk is not installed (apt-get install wrk; tools/deps.sh installs it)";
  }
  ProcsScope procs(kProcs);
  GoroServer server;
  ASSERT_GT(server.port(), 0);
  const int conns = static_cast<int>(goro_test::live_cap(scaled(1000)));
  const int seconds = 3;
  std::atomic<bool> stop{false};
  std::atomic<int> max_threads{goro::num_threads()};
  std::thread sampler([&] {  // wrk runs in the foreground of this thread's sibling (main)
    while (!stop.load()) {
      int t = goro::num_threads() - 1;  // not counting the sampler itself
      if (t > max_threads.load()) max_threads.store(t);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  goro_test::WrkResult r = goro_test::run_wrk(
      "http://127.0.0.1:" + std::to_string(server.port()) + "/hello", conns, 2, seconds);
  stop.store(true);
  sampler.join();
  ASSERT_TRUE(r.ran) << r.output;
  EXPECT_GT(r.requests, 0) << r.output;
  EXPECT_EQ(r.non_2xx, 0) << r.output;
  EXPECT_EQ(r.socket_errors(), 0) << r.output;
  EXPECT_LE(max_threads.load(), kProcs + kThreadSlack) << "OS threads peaked at " << max_threads;
  std::printf(
      "[ httplib  ] wrk, %d connections, %d s: %ld requests, %.0f req/s, p50 %.0f us, "
      "p99 %.0f us; OS threads at most %d\n",
      conns, seconds, r.requests, r.req_per_s, r.p50_us, r.p99_us, max_threads.load());
}

}  // namespace
