// http_debug_test.cpp - goro::debug::serve: the endpoints, HTTP behaviour (keep-alive,
// pipelining, HEAD, errors), Prometheus output checked by a real Prometheus parser (the Python
// client's, python3-prometheus-client; promtool too when installed), answering while every P
// runs CPU-bound goroutines, and shutting down.
//
// The client is plain POSIX sockets on the test's main thread (a plain thread, not a
// goroutine), with receive timeouts, so a server that does not answer fails the test instead
// of hanging it.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "goro/goro.hpp"
#include "test_util.hpp"

namespace {

using goro_test::ProcResult;
using goro_test::wait_until;

// ---------------------------------------------------------------------------------------------
// A minimal HTTP client.

struct Reply {
  bool ok = false;  // a complete response was read
  int status = 0;
  std::string headers;  // the head, status line included
  std::string body;
};

int port_of(const std::string& addr) {
  return std::atoi(addr.substr(addr.rfind(':') + 1).c_str());
}

// Connects to 127.0.0.1:port with a receive/send timeout; -1 on failure.
int connect_to(int port, double timeout_s = 20) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  timeval tv{static_cast<time_t>(timeout_s), 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool send_all(int fd, const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<std::size_t>(n);
  }
  return true;
}

// Reads one response from fd; `pending` keeps bytes read past it (pipelining).
Reply read_reply(int fd, std::string& pending, bool head_request = false) {
  Reply r;
  std::size_t head_end;
  while ((head_end = pending.find("\r\n\r\n")) == std::string::npos) {
    char buf[65536];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return r;
    pending.append(buf, static_cast<std::size_t>(n));
  }
  r.headers = pending.substr(0, head_end + 2);
  pending.erase(0, head_end + 4);
  std::sscanf(r.headers.c_str(), "HTTP/1.1 %d", &r.status);
  std::size_t len = 0;
  if (auto p = r.headers.find("Content-Length: "); p != std::string::npos) {
    len = std::strtoul(r.headers.c_str() + p + 16, nullptr, 10);
  }
  if (head_request) len = 0;
  while (pending.size() < len) {
    char buf[65536];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return r;
    pending.append(buf, static_cast<std::size_t>(n));
  }
  r.body = pending.substr(0, len);
  pending.erase(0, len);
  r.ok = true;
  return r;
}

Reply request(int port, const std::string& method, const std::string& target,
              double timeout_s = 20) {
  int fd = connect_to(port, timeout_s);
  if (fd < 0) return Reply{};
  std::string pending;
  Reply r;
  if (send_all(fd,
               method + " " + target + " HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")) {
    r = read_reply(fd, pending, method == "HEAD");
  }
  ::close(fd);
  return r;
}

Reply get(int port, const std::string& target, double timeout_s = 20) {
  return request(port, "GET", target, timeout_s);
}

bool contains(const std::string& s, const std::string& needle) {
  return s.find(needle) != std::string::npos;
}

// ---------------------------------------------------------------------------------------------
// Prometheus validation.

// Parses the exposition with prometheus_client's parser, checks what the format requires and
// the parser tolerates (declared families, one TYPE/HELP each, valid names, unique series,
// histogram buckets ascending and cumulative, +Inf == _count), and prints every sample as
// "name{k=v,...} value", sorted labels, one per line.
constexpr const char* kValidator = R"PY(
import math, re, sys
from prometheus_client.parser import text_string_to_metric_families
text = open(sys.argv[1]).read()
name_re = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*$')
types, helps, series = {}, {}, set()
for line in text.splitlines():
    if line.startswith('# TYPE '):
        _, _, n, t = line.split(' ', 3)
        assert n not in types, 'TYPE twice: ' + n
        assert t in ('counter', 'gauge', 'histogram', 'summary', 'untyped'), t
        types[n] = t
    elif line.startswith('# HELP '):
        n = line.split(' ', 3)[2]
        assert n not in helps, 'HELP twice: ' + n
        helps[n] = True
    elif line.startswith('#') or not line.strip():
        continue
fams = list(text_string_to_metric_families(text))
assert fams, 'no metrics'
out = []
for f in fams:
    for s in f.samples:
        assert name_re.match(s.name), s.name
        key = (s.name, tuple(sorted(s.labels.items())))
        assert key not in series, 'duplicate series: %r' % (key,)
        series.add(key)
        base = s.name
        for suf in ('_bucket', '_sum', '_count'):
            if f.type == 'histogram' and base.endswith(suf):
                base = base[:-len(suf)]
        assert base in types or f.name in types, 'undeclared: ' + s.name
        assert base in helps or f.name in helps, 'no HELP: ' + s.name
        if f.type == 'counter':
            assert s.name.endswith('_total'), 'counter without _total: ' + s.name
            assert s.value >= 0
        labels = ','.join('%s=%s' % kv for kv in sorted(s.labels.items()))
        out.append('%s{%s} %r' % (s.name, labels, s.value))
    if f.type == 'histogram':
        buckets = [(float(s.labels['le']), s.value) for s in f.samples if s.name.endswith('_bucket')]
        assert buckets and buckets[-1][0] == math.inf, 'no +Inf bucket'
        for (a, ca), (b, cb) in zip(buckets, buckets[1:]):
            assert a < b and ca <= cb, 'buckets not ascending/cumulative'
        count = [s.value for s in f.samples if s.name.endswith('_count')]
        assert count and count[0] == buckets[-1][1], '+Inf != _count'
        assert [s for s in f.samples if s.name.endswith('_sum')], 'no _sum'
print('\n'.join(out))
print('VALID')
)PY";

struct Validation {
  bool ran = false;  // the validator could run at all
  ProcResult result;
};

Validation validate_prometheus(const std::string& text) {
  Validation v;
  if (::access("/usr/bin/python3", X_OK) != 0) return v;
  const std::string dir = ::testing::TempDir();
  const std::string script = dir + "goro_prom_validate.py";
  const std::string data = dir + "goro_metrics_" + std::to_string(::getpid()) + ".txt";
  std::ofstream(script) << kValidator;
  std::ofstream(data) << text;
  ProcResult probe =
      goro_test::run_process({"/usr/bin/python3", "-c", "import prometheus_client.parser"});
  if (!probe.exited || probe.exit_code != 0) return v;
  v.ran = true;
  v.result = goro_test::run_process({"/usr/bin/python3", script, data});
  return v;
}

// The value of one series in the validator's listing, or NaN.
double sample(const std::string& listing, const std::string& series) {
  const std::string key = "\n" + series + " ";
  const std::size_t p = ("\n" + listing).find(key);
  if (p == std::string::npos) return std::nan("");
  return std::strtod(listing.c_str() + p - 1 + key.size(), nullptr);
}

// ---------------------------------------------------------------------------------------------

class HttpDebugTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = goro::debug::serve("127.0.0.1:0");
    port_ = port_of(server_.addr());
  }
  goro::debug::Server server_;
  int port_ = 0;
};

TEST_F(HttpDebugTest, ListensOnLoopback) {
  EXPECT_TRUE(server_.valid());
  EXPECT_TRUE(server_.addr().starts_with("127.0.0.1:")) << server_.addr();
  EXPECT_GT(port_, 0);
  // No host means loopback, not every interface.
  goro::debug::Server s2 = goro::debug::serve(":0");
  EXPECT_TRUE(s2.addr().starts_with("127.0.0.1:")) << s2.addr();
  const Reply r = get(port_of(s2.addr()), "/");
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(contains(r.body, "/metrics"));
}

TEST_F(HttpDebugTest, RuntimeTextAndJson) {
  goro::Chan<int> ch(0);
  goro::WaitGroup exited;
  constexpr int kN = 50;
  exited.add(kN);
  for (int i = 0; i < kN; i++) {
    goro::go([ch, &exited] {
      (void)ch.recv();
      exited.done();
    });
  }
  ASSERT_TRUE(wait_until(
      [] { return goro::stats().goroutines.count(goro::GoroutineState::kChanReceive) == kN; }, 20));
  const Reply t = get(port_, "/debug/runtime");
  ASSERT_TRUE(t.ok);
  EXPECT_EQ(t.status, 200);
  EXPECT_TRUE(contains(t.headers, "Content-Type: text/plain")) << t.headers;
  EXPECT_TRUE(contains(t.body, "\ngoroutines_chan_receive=50\n")) << t.body;
  EXPECT_TRUE(goro_test::regex_search(t.body, "\ngoroutines=[0-9]+\n")) << t.body;
  EXPECT_TRUE(goro_test::regex_search(t.body, "\nthreads=[0-9]+\n")) << t.body;
  EXPECT_TRUE(contains(t.body, "\ngomaxprocs=" + std::to_string(goro::gomaxprocs()) + "\n"));
  EXPECT_TRUE(goro_test::regex_search(t.body, "\nmemory_resident_bytes=[1-9][0-9]*\n"));
  EXPECT_TRUE(goro_test::regex_search(t.body, "\nlargest_stack=[0-9]+ goroutine [0-9]+ "));

  const Reply j = get(port_, "/debug/runtime?format=json");
  ASSERT_TRUE(j.ok);
  EXPECT_EQ(j.status, 200);
  EXPECT_TRUE(contains(j.headers, "Content-Type: application/json")) << j.headers;
  EXPECT_TRUE(contains(j.body, "\"chan_receive\":50")) << j.body;
  if (::access("/usr/bin/python3", X_OK) == 0) {
    const std::string file = ::testing::TempDir() + "goro_runtime.json";
    std::ofstream(file) << j.body;
    const ProcResult r =
        goro_test::run_process({"/usr/bin/python3", "-c",
                                "import json,sys; d=json.load(open(sys.argv[1])); "
                                "assert d['goroutines']['by_state']['chan_receive']==50; "
                                "assert d['gomaxprocs']>=1; assert d['threads']['os']>=2; "
                                "assert len(d['sched']['latencies']['buckets'])==25; print('ok')",
                                file});
    EXPECT_TRUE(r.exited && r.exit_code == 0) << r.describe() << j.body;
  }
  EXPECT_EQ(get(port_, "/debug/runtime?format=xml").status, 400);
  ch.close();
  exited.wait();
}

__attribute__((noinline)) void httptest_named_waiter(goro::Chan<int> ch, goro::WaitGroup* wg) {
  (void)ch.recv();
  wg->done();
}

TEST_F(HttpDebugTest, Goroutines) {
  goro::Chan<int> ch(0);
  goro::WaitGroup exited;
  exited.add(3);
  for (int i = 0; i < 3; i++)
    goro::go({.name = "http-test-waiter"}, httptest_named_waiter, ch, &exited);
  ASSERT_TRUE(wait_until(
      [] { return goro::stats().goroutines.count(goro::GoroutineState::kChanReceive) == 3; }, 20));
  const Reply g1 = get(port_, "/debug/goroutines?debug=1");
  ASSERT_TRUE(g1.ok);
  EXPECT_EQ(g1.status, 200);
  EXPECT_TRUE(contains(g1.body, "goroutine profile: total ")) << g1.body;
  EXPECT_TRUE(contains(g1.body, "\n3 @ ")) << g1.body;
  EXPECT_TRUE(contains(g1.body, "httptest_named_waiter")) << g1.body;
  EXPECT_EQ(get(port_, "/debug/goroutines").body.substr(0, 25), "goroutine profile: total ");
  const Reply g2 = get(port_, "/debug/goroutines?debug=2");
  ASSERT_TRUE(g2.ok);
  EXPECT_TRUE(contains(g2.body, "\"http-test-waiter\" [chan receive]:\n")) << g2.body;
  // The connection's own goroutine dumps itself as running.
  EXPECT_TRUE(contains(g2.body, "\"goro.debug.conn\" [running]:\n")) << g2.body;
  EXPECT_EQ(get(port_, "/debug/goroutines?debug=3").status, 400);
  ch.close();
  exited.wait();
}

TEST_F(HttpDebugTest, SchedDetail) {
  const Reply r = get(port_, "/debug/sched");
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(goro_test::regex_search(r.body, "^SCHED [0-9]+ms: gomaxprocs=[0-9]+ ")) << r.body;
  EXPECT_TRUE(contains(r.body, "\n  P0: status=")) << r.body;
  EXPECT_TRUE(goro_test::regex_search(r.body, "\n  G[0-9]+: status=2 m=[0-9]+ ")) << r.body;
}

TEST_F(HttpDebugTest, PrometheusMetricsParse) {
  goro::Chan<int> ch(0);
  goro::WaitGroup exited;
  constexpr int kN = 100;
  exited.add(kN);
  for (int i = 0; i < kN; i++) {
    goro::go([ch, &exited] {
      (void)ch.recv();
      exited.done();
    });
  }
  ASSERT_TRUE(wait_until(
      [] { return goro::stats().goroutines.count(goro::GoroutineState::kChanReceive) == kN; }, 20));
  const Reply m = get(port_, "/metrics");
  ASSERT_TRUE(m.ok);
  EXPECT_EQ(m.status, 200);
  EXPECT_TRUE(contains(m.headers, "Content-Type: text/plain; version=0.0.4")) << m.headers;
  for (const char* name :
       {"goro_goroutines ", "goro_threads ", "goro_sched_latencies_seconds_bucket{le=\"+Inf\"} ",
        "goro_stack_resident_bytes ", "goro_sched_gomaxprocs_threads ",
        "goro_goroutines_created_total ", "process_resident_memory_bytes "}) {
    EXPECT_TRUE(contains(m.body, name)) << name;
  }
  const Validation v = validate_prometheus(m.body);
  if (!v.ran) GTEST_SKIP() << "python3-prometheus-client is not installed (tools/deps.sh)";
  ASSERT_TRUE(v.result.exited && v.result.exit_code == 0) << v.result.describe() << m.body;
  const std::string& listing = v.result.out;
  EXPECT_TRUE(contains(listing, "VALID"));
  EXPECT_EQ(sample(listing, "goro_goroutines_by_state{state=chan_receive}"), kN) << listing;
  EXPECT_GE(sample(listing, "goro_goroutines{}"), kN + 2);  // + the server's two
  EXPECT_GE(sample(listing, "goro_threads{}"), 2);
  EXPECT_GT(sample(listing, "goro_stack_resident_bytes{}"), kN * 4096.0);
  EXPECT_GT(sample(listing, "goro_sched_latencies_seconds_count{}"), 0);
  EXPECT_EQ(sample(listing, "goro_sched_gomaxprocs_threads{}"), goro::gomaxprocs());
  // promtool (Debian's prometheus package) when present: the Go parser and its linter.
  if (::access("/usr/bin/promtool", X_OK) == 0) {
    const std::string file = ::testing::TempDir() + "goro_metrics_promtool.txt";
    std::ofstream(file) << m.body;
    const ProcResult r =
        goro_test::run_process({"/bin/sh", "-c", "/usr/bin/promtool check metrics < " + file});
    EXPECT_TRUE(r.exited && r.exit_code == 0) << r.describe();
  }
  ch.close();
  exited.wait();
}

// Every P runs a CPU-bound goroutine that never calls the runtime: the server still answers
// (its goroutines get a P at the next preemption).
TEST_F(HttpDebugTest, AnswersWhileEveryPIsBusy) {
  const int procs = goro::gomaxprocs();
  std::atomic<bool> stop{false};
  std::atomic<int> spinning{0};
  goro::WaitGroup exited;
  exited.add(procs);
  for (int i = 0; i < procs; i++) {
    goro::go([&] {
      spinning.fetch_add(1);
      std::uint64_t x = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        x = x * 6364136223846793005ull + 1;
        // Under TSan there is no asynchronous preemption: a runtime entry lets the
        // cooperative kind work.
        if (goro_test::kTsanBuild && (x & 0xffff) == 0) (void)goro::num_goroutine();
      }
      exited.done();
    });
  }
  ASSERT_TRUE(wait_until([&] { return spinning.load() == procs; }, 20));
  for (int k = 0; k < 3; k++) {
    const auto t0 = std::chrono::steady_clock::now();
    const Reply r = get(port_, "/metrics", 30);
    const double dt = goro_test::seconds_since(t0);
    ASSERT_TRUE(r.ok) << "no answer while every P is busy";
    EXPECT_EQ(r.status, 200);
    EXPECT_TRUE(
        goro_test::regex_search(r.body, "goro_goroutines_by_state\\{state=\"running\"\\} [1-9]"))
        << r.body;
    std::fprintf(stderr, "answer %d with %d busy Ps: %.1f ms\n", k, procs, dt * 1e3);
  }
  stop.store(true);
  exited.wait();
}

TEST_F(HttpDebugTest, KeepAlivePipeliningHeadAndErrors) {
  int fd = connect_to(port_);
  ASSERT_GE(fd, 0);
  std::string pending;
  // Two requests on one connection, the second pipelined with a third.
  ASSERT_TRUE(send_all(fd, "GET /debug/runtime HTTP/1.1\r\nHost: x\r\n\r\n"));
  Reply a = read_reply(fd, pending);
  ASSERT_TRUE(a.ok);
  EXPECT_EQ(a.status, 200);
  EXPECT_TRUE(contains(a.headers, "Connection: keep-alive"));
  ASSERT_TRUE(send_all(
      fd, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n"));
  Reply b = read_reply(fd, pending, true);
  ASSERT_TRUE(b.ok);
  EXPECT_EQ(b.status, 200);
  EXPECT_TRUE(b.body.empty());
  EXPECT_TRUE(goro_test::regex_search(b.headers, "Content-Length: [1-9][0-9]*")) << b.headers;
  Reply c = read_reply(fd, pending);
  ASSERT_TRUE(c.ok);
  EXPECT_EQ(c.status, 404);
  ::close(fd);

  Reply post = request(port_, "POST", "/metrics");
  EXPECT_EQ(post.status, 405);
  EXPECT_TRUE(contains(post.headers, "Allow: GET, HEAD"));

  fd = connect_to(port_);
  ASSERT_GE(fd, 0);
  pending.clear();
  ASSERT_TRUE(send_all(fd, "THIS IS NOT HTTP\r\n\r\n"));
  Reply bad = read_reply(fd, pending);
  EXPECT_EQ(bad.status, 400);
  ::close(fd);

  // A head that never ends.
  fd = connect_to(port_);
  ASSERT_GE(fd, 0);
  pending.clear();
  std::string big = "GET / HTTP/1.1\r\nX-Filler: " + std::string(32 * 1024, 'a');
  send_all(fd, big);
  Reply huge = read_reply(fd, pending);
  EXPECT_TRUE(huge.status == 431 || huge.status == 400) << huge.status;
  ::close(fd);

  // HTTP/1.0 without keep-alive: the server closes after answering.
  fd = connect_to(port_);
  ASSERT_GE(fd, 0);
  pending.clear();
  ASSERT_TRUE(send_all(fd, "GET / HTTP/1.0\r\n\r\n"));
  Reply old = read_reply(fd, pending);
  EXPECT_EQ(old.status, 200);
  EXPECT_TRUE(contains(old.headers, "Connection: close"));
  char byte;
  EXPECT_EQ(::recv(fd, &byte, 1, 0), 0);  // end of stream
  ::close(fd);
}

TEST_F(HttpDebugTest, ManyConcurrentClients) {
  constexpr int kClients = 8;
  const int kEach = static_cast<int>(goro_test::scaled(10));
  std::atomic<int> ok{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < kClients; i++) {
    ts.emplace_back([&] {
      for (int k = 0; k < kEach; k++) {
        if (get(port_, k % 2 == 0 ? "/metrics" : "/debug/runtime").status == 200) ok.fetch_add(1);
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok.load(), kClients * kEach);
}

TEST_F(HttpDebugTest, CloseStopsEverything) {
  // An idle keep-alive connection is open when the server closes.
  int fd = connect_to(port_);
  ASSERT_GE(fd, 0);
  std::string pending;
  ASSERT_TRUE(send_all(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_EQ(read_reply(fd, pending).status, 200);
  ASSERT_TRUE(wait_until([] { return goro::num_goroutine() == 2; }, 20));  // accept + conn
  server_.close();
  // close() returned after the server's goroutines did their last step (WaitGroup::done);
  // they are gone a moment later.
  EXPECT_TRUE(wait_until([] { return goro::num_goroutine() == 0; }, 20));
  char byte;
  EXPECT_LE(::recv(fd, &byte, 1, 0), 0);  // closed by the server
  ::close(fd);
  EXPECT_LT(connect_to(port_, 2), 0);  // nobody listens
  server_.close();                     // idempotent
  goro::debug::Server empty;
  EXPECT_FALSE(empty.valid());
  EXPECT_EQ(empty.addr(), "");
  empty.close();
}

TEST_F(HttpDebugTest, ServeFromAGoroutineAndMove) {
  goro::debug::Server moved;
  goro::WaitGroup done;
  done.add(1);
  goro::go([&] {
    moved = goro::debug::serve("127.0.0.1:0");
    done.done();
  });
  done.wait();
  EXPECT_EQ(get(port_of(moved.addr()), "/debug/runtime").status, 200);
  goro::debug::Server other = std::move(moved);
  EXPECT_FALSE(moved.valid());
  EXPECT_EQ(get(port_of(other.addr()), "/").status, 200);
  // A busy address fails with address_in_use.
  try {
    goro::debug::Server dup = goro::debug::serve(other.addr());
    ADD_FAILURE() << "second server on " << other.addr();
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::address_in_use) << e.what();
  }
  done.add(1);
  goro::go([&] {
    other.close();  // from a goroutine: parks until the server's goroutines ended
    done.done();
  });
  done.wait();
  EXPECT_FALSE(get(port_of(server_.addr()), "/nothing").status == 0);
}

}  // namespace
