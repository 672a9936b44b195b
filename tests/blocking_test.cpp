// blocking_test.cpp - goro::blocking (syscall handoff through sysmon) and set_max_threads.
//
// The property under test: a goroutine inside blocking() keeps its thread but not its P, so
// other goroutines keep running even with GOMAXPROCS=1, with at most one extra thread; short
// calls take their P straight back; results, exceptions and misuse behave as documented.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>

#include "goro/goro.hpp"
#include "test_util.hpp"

namespace {

using goro_test::ProcResult;

constexpr const char* kChildEnv = "GORO_BLOCKING_CHILD";

class BlockingTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { old_ = goro::set_gomaxprocs(GetParam()); }
  void TearDown() override { goro::set_gomaxprocs(old_); }
  int old_ = 0;
};

INSTANTIATE_TEST_SUITE_P(Procs, BlockingTest, ::testing::Values(1, 2, 8),
                         [](const auto& info) { return "P" + std::to_string(info.param); });

// While one goroutine per P sits in a 300 ms blocking call, a counting goroutine keeps running:
// every P was handed to another thread. The handoff counter moves.
TEST_P(BlockingTest, OtherGoroutinesRunDuringABlockingCall) {
  const int procs = GetParam();
  std::atomic<long> count{0};
  std::atomic<bool> stop{false};
  std::atomic<int> in_call{0};
  const std::uint64_t handoffs0 = goro::blocking_handoffs();
  goro::WaitGroup wg;
  wg.add(1);
  goro::go([&] {
    while (!stop.load()) {
      count.fetch_add(1);
      goro::yield();
    }
    wg.done();
  });
  long during = 0;
  goro::WaitGroup blockers;
  blockers.add(procs);
  for (int i = 0; i < procs; i++) {
    goro::go([&] {
      goro::blocking([&] {
        in_call.fetch_add(1);
        ::usleep(300'000);
      });
      blockers.done();
    });
  }
  // Measure the counter while every blocker is inside its call.
  while (in_call.load() < procs) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  long c0 = count.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  during = count.load() - c0;
  blockers.wait();
  stop = true;
  wg.wait();
  EXPECT_GT(during, 0) << "the counting goroutine did not run while " << procs
                       << " goroutines were in blocking calls";
  EXPECT_GE(goro::blocking_handoffs(), handoffs0 + 1);
}

// Values, references and exceptions pass through; the goroutine is back on a P afterwards (it
// can park), from goroutines and plain threads.
TEST_P(BlockingTest, ResultsAndExceptionsPassThrough) {
  auto check = [] {
    int x = 5;
    int& r = goro::blocking([&]() -> int& { return x; });
    EXPECT_EQ(&r, &x);
    EXPECT_EQ(goro::blocking([](int a, int b) { return a * b; }, 6, 7), 42);
    EXPECT_THROW(goro::blocking([] { throw std::runtime_error("boom"); }), std::runtime_error);
    goro::blocking([] {});
    // A park right after: the goroutine must hold a P again.
    goro::Chan<int> ch(1);
    ch.send(1);
    EXPECT_EQ(ch.recv(), std::optional<int>(1));
    goro::sleep_for(std::chrono::microseconds(100));
  };
  check();  // plain thread
  goro::WaitGroup wg;
  for (int i = 0; i < 20; i++) {
    wg.add(1);
    goro::go([&] {
      check();
      wg.done();
    });
  }
  wg.wait();
}

// Many short blocking calls from many goroutines, mixed with channel traffic: nothing lost,
// and every goroutine finishes (exercises the fast path racing sysmon's retake).
TEST_P(BlockingTest, ShortCallsRaceTheRetake) {
  const int n = static_cast<int>(goro_test::scaled(64));
  const int iters = static_cast<int>(goro_test::scaled(20000));
  goro::Chan<int> ch(16);
  std::atomic<long> sum{0};
  goro::WaitGroup wg;
  for (int i = 0; i < n; i++) {
    wg.add(1);
    goro::go([&, i] {
      for (int k = 0; k < iters; k++) {
        int v = goro::blocking([&] { return k % 7 == 0 ? (::usleep(0), i) : i; });
        if (k % 64 == 0) {
          ch.send(v);
          sum.fetch_add(*ch.recv());
        }
      }
      wg.done();
    });
  }
  wg.wait();
  long want = 0;
  for (int i = 0; i < n; i++) want += static_cast<long>(i) * ((iters + 63) / 64);
  EXPECT_EQ(sum.load(), want);
}

// With GOMAXPROCS=1, one goroutine stuck in a long blocking call costs at most one more
// thread than the process had at rest.
TEST(BlockingThreads, OneBlockedGoroutineCostsAtMostOneThread) {
  int old = goro::set_gomaxprocs(1);
  // Warm up: the M that will run the counter exists.
  goro::WaitGroup warm;
  warm.add(1);
  goro::go([&] { warm.done(); });
  warm.wait();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const int before = goro::num_threads();
  std::atomic<bool> inside{false}, release{false};
  goro::WaitGroup wg;
  wg.add(1);
  goro::go([&] {
    goro::blocking([&] {
      inside = true;
      while (!release.load()) ::usleep(1000);
    });
    wg.done();
  });
  while (!inside.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  // Another goroutine runs meanwhile.
  goro::WaitGroup other;
  other.add(1);
  goro::go([&] { other.done(); });
  other.wait();
  const int during = goro::num_threads();
  release = true;
  wg.wait();
  goro::set_gomaxprocs(old);
  EXPECT_LE(during, before + 1) << "before " << before << ", during " << during;
}

// A burst of blocking calls needs many threads; once they return and stay idle, the extra
// threads exit (after about 2 s idle each), unlike Go's, which stay forever.
TEST(BlockingThreads, IdleThreadsExitAfterABurst) {
  int old = goro::set_gomaxprocs(2);
  goro::WaitGroup warm;
  warm.add(1);
  goro::go([&] { warm.done(); });
  warm.wait();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const int before = goro::num_threads();
  const int n = 24;
  std::atomic<int> inside{0};
  std::atomic<bool> release{false};
  goro::WaitGroup wg;
  for (int i = 0; i < n; i++) {
    wg.add(1);
    goro::go([&] {
      goro::blocking([&] {
        inside.fetch_add(1);
        while (!release.load()) ::usleep(1000);
      });
      wg.done();
    });
  }
  // Every goroutine gets into its call: each holds a thread.
  const bool all_in = goro_test::wait_until([&] { return inside.load() == n; }, 30);
  const int peak = goro::num_threads();
  release = true;
  wg.wait();
  const bool fell = goro_test::wait_until([&] { return goro::num_threads() <= before + 2; }, 20);
  goro::set_gomaxprocs(old);
  EXPECT_TRUE(all_in) << inside.load() << " of " << n << " goroutines entered their call";
  EXPECT_GE(peak, before + n - 2) << "blocking calls did not get threads of their own";
  EXPECT_TRUE(fell) << "threads: " << before << " before, " << peak << " at the peak, "
                    << goro::num_threads() << " 20 s after the burst";
}

TEST(BlockingThreads, SetMaxThreadsValidatesAndReturnsThePrevious) {
  EXPECT_THROW(goro::set_max_threads(0), std::invalid_argument);
  int old = goro::set_max_threads(5000);
  EXPECT_EQ(goro::set_max_threads(old), 5000);
}

// ---- Child processes: fatal misuse and the thread limit ------------------------------------

std::string self_exe() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "/proc/self/exe";
  buf[n] = 0;
  return buf;
}

ProcResult run_child(const std::string& mode) {
  return goro_test::run_process({self_exe(), "--gtest_filter=BlockingChild.Run"},
                                {{kChildEnv, mode}, {"GOMAXPROCS", "2"}}, 60);
}

// A goroutine that would park inside blocking(): fatal, naming the goroutine.
[[noreturn]] void child_park_inside() {
  goro::WaitGroup wg;
  wg.add(1);
  goro::go([&] {
    goro::Chan<int> ch(0);
    goro::blocking([&] { (void)ch.recv(); });
    wg.done();
  });
  wg.wait();
  std::_Exit(0);
}

// 40 goroutines in blocking calls with a 10-thread limit: thread exhaustion.
[[noreturn]] void child_thread_limit() {
  goro::set_max_threads(10);
  goro::WaitGroup wg;
  for (int i = 0; i < 40; i++) {
    wg.add(1);
    goro::go([&] {
      goro::blocking([] { ::usleep(2'000'000); });
      wg.done();
    });
  }
  wg.wait();
  std::_Exit(0);
}

TEST(BlockingChild, Run) {
  const char* mode = std::getenv(kChildEnv);
  if (mode == nullptr) GTEST_SKIP() << "only runs as a child process of the tests below";
  std::string m = mode;
  if (m == "park_inside") child_park_inside();
  if (m == "thread_limit") child_thread_limit();
  std::_Exit(3);
}

TEST(BlockingChildProcess, ParkingInsideBlockingIsFatal) {
  ProcResult r = run_child("park_inside");
  ASSERT_TRUE(r.started) << r.err;
  EXPECT_FALSE(r.exited && r.exit_code == 0) << r.describe();
  EXPECT_FALSE(r.timed_out) << r.describe();
  EXPECT_TRUE(goro_test::regex_search(r.err,
                                      "goroutine [0-9]+ would block \\(chan receive\\) "
                                      "inside goro::blocking"))
      << r.describe();
}

TEST(BlockingChildProcess, ExceedingMaxThreadsIsFatal) {
  ProcResult r = run_child("thread_limit");
  ASSERT_TRUE(r.started) << r.err;
  EXPECT_FALSE(r.exited && r.exit_code == 0) << r.describe();
  EXPECT_FALSE(r.timed_out) << r.describe();
  EXPECT_NE(r.err.find("program exceeds 10-thread limit"), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("fatal error: thread exhaustion"), std::string::npos) << r.describe();
}

}  // namespace
