// peer_redis_test.cpp - the unmodified hiredis synchronous client (Debian's libhiredis, its
// redisConnect/redisCommand blocking API) called from goroutines, against a real redis-server
// started on loopback by the test (tests/servers.hpp) and stopped by its PID.
//
// hiredis knows nothing of goro: its connect(), poll(), read() and write() are libc's, bound at
// run time to goro's interposer (src/hook/io_hooks.cpp, docs/io.md), which parks the calling
// goroutine instead of its OS thread. What is checked, with GOMAXPROCS=2:
//  * SetGetRoundTrips: 1,000 goroutines, each with its own connection, do 1,000 round trips
//    (500 SET and 500 GET, alternating) on their own keys; every reply is checked (SET answers
//    +OK, GET the value just set);
//    the process never has more than GOMAXPROCS + 8 OS threads (the Ms, sysmon, main, and a
//    few for blocking calls such as getaddrinfo) - 1,000 blocked std::threads would be 1,000.
//  * BlockedReadsPark: 1,000 goroutines block in BLPOP on keys nobody has pushed yet; redis
//    itself (INFO clients: blocked_clients) must see all 1,000 waiting at once, which is only
//    possible if each goroutine's read() parked: a read that blocked its OS thread would leave
//    at most a handful of the 2 Ps' goroutines able to send their BLPOP. Then the main thread
//    (a plain thread, its own hiredis connection) pushes every key and every goroutine must get
//    its own value.
// Throughput against 1,000 std::threads is a benchmark, not a test: bench/goro/redis.cpp and
// bench/peers/thread/redis.cpp (bench/README.md).
//
// Skips (GTEST_SKIP) only when redis-server is not installed; under ThreadSanitizer the libc
// hooks are not built, so goroutines would block their threads: skipped there with a message.
// Counts scale with GORO_TEST_SCALE.
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>

#include "goro/goro.hpp"
#include "hook/io_hooks.hpp"
#include "peer_util.hpp"
#include "servers.hpp"
#include "test_util.hpp"

namespace {

using goro_test::Failures;
using goro_test::ProcsScope;
using goro_test::scaled;
using goro_test::wait_sampling_threads;

using goro_test::hook_parks;
using goro_test::kProcs;
using goro_test::kThreadSlack;

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;
struct ContextDeleter {
  void operator()(redisContext* c) const { redisFree(c); }
};
using Context = std::unique_ptr<redisContext, ContextDeleter>;

Reply command(redisContext* c, const char* fmt, const std::string& a) {
  return Reply(static_cast<redisReply*>(redisCommand(c, fmt, a.c_str())));
}
Reply command(redisContext* c, const char* fmt, const std::string& a, const std::string& b) {
  return Reply(static_cast<redisReply*>(redisCommand(c, fmt, a.c_str(), b.c_str())));
}

class RedisPeer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    goro_test::raise_fd_limit(8192);
    if (goro_test::RedisServer::binary().empty()) return;
    if (!goro::internal::io_hooks_built()) return;  // SetUp skips every test
    server_ = new goro_test::RedisServer;
    started_ = server_->start(&error_);
  }
  static void TearDownTestSuite() {
    delete server_;  // SIGTERM to its PID, SIGKILL if it lingers
    server_ = nullptr;
  }
  void SetUp() override {
    if (goro_test::RedisServer::binary().empty()) {
      GTEST_SKIP() << "redis-server is not installed (apt-get install redis-server; "
                      "tools/deps.sh installs it)";
    }
    if (!goro::internal::io_hooks_built()) {
      GTEST_SKIP() << "the libc I/O hooks are not built in this configuration (ThreadSanitizer): "
                      "hiredis would block OS threads instead of parking goroutines";
    }
    ASSERT_TRUE(started_) << "could not start redis-server: " << error_;
  }

  // A connection from the calling goroutine or thread (null with *err on failure).
  static Context connect(std::string* err) {
    Context c(redisConnect("127.0.0.1", server_->port()));
    if (!c || c->err != 0) {
      *err = std::string("redisConnect: ") + (c ? c->errstr : "out of memory");
      return nullptr;
    }
    return c;
  }

  static inline goro_test::RedisServer* server_ = nullptr;
  static inline bool started_ = false;
  static inline std::string error_;
};

TEST_F(RedisPeer, SetGetRoundTrips) {
  ProcsScope procs(kProcs);
  const int n = static_cast<int>(goro_test::live_cap(scaled(1000)));
  const int pairs = static_cast<int>(scaled(500));  // 2 round trips each: SET, then GET
  Failures failures;
  std::atomic<int> done{0};
  std::atomic<long> replies{0};
  const auto parks0 = hook_parks();
  const int threads0 = goro::num_threads();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; i++) {
    goro::go([&, i] {
      std::string err;
      Context c = connect(&err);
      if (!c) {
        failures.add("goroutine " + std::to_string(i) + ": " + err);
        done.fetch_add(1);
        return;
      }
      long ok = 0;
      for (int j = 0; j < pairs; j++) {
        std::string key = "rt:" + std::to_string(i) + ":" + std::to_string(j % 16);
        std::string val = "v" + std::to_string(i) + "." + std::to_string(j);
        Reply set = command(c.get(), "SET %s %s", key, val);
        if (!set || set->type != REDIS_REPLY_STATUS || std::string(set->str) != "OK") {
          failures.add("goroutine " + std::to_string(i) + " SET " + key + ": " +
                       (set ? "unexpected reply type " + std::to_string(set->type)
                            : std::string(c->errstr)));
          break;
        }
        Reply get = command(c.get(), "GET %s", key);
        if (!get || get->type != REDIS_REPLY_STRING || std::string(get->str, get->len) != val) {
          failures.add(
              "goroutine " + std::to_string(i) + " GET " + key + ": expected " + val + ", got " +
              (get ? (get->type == REDIS_REPLY_STRING ? std::string(get->str, get->len)
                                                      : "type " + std::to_string(get->type))
                   : std::string(c->errstr)));
          break;
        }
        ok += 2;
      }
      replies.fetch_add(ok);
      done.fetch_add(1);
    });
  }
  int max_threads = wait_sampling_threads(done, n, 200, "SetGetRoundTrips goroutines finishing");
  double secs = goro_test::seconds_since(t0);
  const auto parks = hook_parks() - parks0;

  EXPECT_EQ(failures.count(), 0) << "first failure: " << failures.first();
  EXPECT_EQ(replies.load(), 2L * n * pairs);
  EXPECT_LE(max_threads, kProcs + kThreadSlack)
      << "OS threads peaked at " << max_threads << " (before: " << threads0 << ")";
  std::printf(
      "[ redis    ] %d goroutines x %d round trips (GOMAXPROCS=%d): %.2f s, %.0f round trips/s, "
      "%llu hook parks, OS threads at most %d (before %d)\n",
      n, 2 * pairs, kProcs, secs, 2.0 * n * pairs / secs, static_cast<unsigned long long>(parks),
      max_threads, threads0);
}

// blocked_clients from INFO clients, or -1.
long blocked_clients(redisContext* c) {
  Reply r(static_cast<redisReply*>(redisCommand(c, "INFO clients")));
  if (!r || r->type != REDIS_REPLY_STRING) return -1;
  std::string s(r->str, r->len);
  auto pos = s.find("blocked_clients:");
  if (pos == std::string::npos) return -1;
  return std::strtol(s.c_str() + pos + 16, nullptr, 10);
}

TEST_F(RedisPeer, BlockedReadsPark) {
  ProcsScope procs(kProcs);
  const int n = static_cast<int>(goro_test::live_cap(scaled(1000)));
  std::string err;
  Context main_conn = connect(&err);  // main is a plain thread: libc's blocking calls
  ASSERT_TRUE(main_conn) << err;
  Reply flush(static_cast<redisReply*>(redisCommand(main_conn.get(), "FLUSHALL")));
  ASSERT_TRUE(flush);
  ASSERT_EQ(blocked_clients(main_conn.get()), 0);

  Failures failures;
  std::atomic<int> done{0};
  std::atomic<int> max_threads{goro::num_threads()};
  for (int i = 0; i < n; i++) {
    goro::go([&, i] {
      std::string err;
      Context c = connect(&err);
      if (!c) {
        failures.add("goroutine " + std::to_string(i) + ": " + err);
        done.fetch_add(1);
        return;
      }
      std::string key = "q:" + std::to_string(i);
      Reply r = command(c.get(), "BLPOP %s 0", key);  // blocks in redis until main pushes
      if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
          std::string(r->element[0]->str, r->element[0]->len) != key ||
          std::string(r->element[1]->str, r->element[1]->len) != "v" + std::to_string(i)) {
        failures.add("goroutine " + std::to_string(i) + ": unexpected BLPOP reply" +
                     (r ? "" : std::string(": ") + c->errstr));
      }
      done.fetch_add(1);
    });
  }
  // Every goroutine must be waiting in BLPOP at once. The main thread polls redis itself.
  long blocked = 0;
  int threads_seen = goro::num_threads();
  bool all_blocked = goro_test::wait_until(
      [&] {
        threads_seen = std::max(threads_seen, goro::num_threads());
        blocked = blocked_clients(main_conn.get());
        return blocked == n || failures.count() > 0;
      },
      120);
  EXPECT_TRUE(all_blocked && blocked == n)
      << "redis saw " << blocked << " of " << n << " goroutines blocked in BLPOP at once: "
      << "goroutines blocked in read() hold their OS threads (are the libc hooks active?); "
      << "first failure: " << failures.first();
  // Release them all (also on failure, so that no goroutine outlives the test).
  for (int i = 0; i < n; i++) {
    Reply r =
        command(main_conn.get(), "RPUSH %s %s", "q:" + std::to_string(i), "v" + std::to_string(i));
    ASSERT_TRUE(r && r->type == REDIS_REPLY_INTEGER) << main_conn->errstr;
  }
  threads_seen = std::max(threads_seen, wait_sampling_threads(done, n, 120, "BLPOP goroutines"));
  EXPECT_EQ(failures.count(), 0) << "first failure: " << failures.first();
  EXPECT_LE(threads_seen, kProcs + kThreadSlack) << "OS threads peaked at " << threads_seen;
  std::printf("[ redis    ] %d goroutines blocked in BLPOP at once; OS threads at most %d\n", n,
              threads_seen);
}

}  // namespace
