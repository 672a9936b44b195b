// sched_test.cpp - the scheduler under load, parameterised over GOMAXPROCS 1, 2 and 8: a million
// goroutines, spawn storms, work stealing, threads and goroutines waiting on each other,
// changing GOMAXPROCS while goroutines run, goroutine and thread counts, defaults.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "goro/goro.hpp"
#include "test_util.hpp"

namespace {

using goro_test::run_testprog;
using goro_test::scaled;
using goro_test::sys_gettid;

// A little work that the compiler cannot remove.
std::uint64_t work(std::uint64_t x) {
  for (int i = 0; i < 16; i++) x = x * 6364136223846793005ull + 1442695040888963407ull;
  return x;
}

class SchedTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { goro::set_gomaxprocs(GetParam()); }
  void TearDown() override {
    EXPECT_TRUE(goro_test::wait_until([] { return goro::num_goroutine() == 0; }))
        << "goroutines left: " << goro::num_goroutine();
  }
  int procs() const { return GetParam(); }
};

TEST_P(SchedTest, GomaxprocsIsSet) {
  EXPECT_EQ(goro::gomaxprocs(), procs());
  EXPECT_EQ(goro::max_procs(), 1024);
  EXPECT_GE(goro::num_cpu(), 1);
}

TEST_P(SchedTest, MillionGoroutines) {
  const std::int64_t total = scaled(1'000'000);
  // Spawned in batches from the main thread, so at most kBatch stacks are live at once.
  const std::int64_t kBatch = 50'000;
  std::atomic<std::uint64_t> sum{0};
  std::atomic<std::int64_t> ran{0};
  std::uint64_t want = 0;
  for (std::int64_t start = 0; start < total; start += kBatch) {
    std::int64_t end = std::min(total, start + kBatch);
    goro::WaitGroup wg;
    wg.add(end - start);
    for (std::int64_t i = start; i < end; i++) {
      want += work(static_cast<std::uint64_t>(i));
      goro::go([&sum, &ran, &wg, i] {
        sum.fetch_add(work(static_cast<std::uint64_t>(i)), std::memory_order_relaxed);
        ran.fetch_add(1, std::memory_order_relaxed);
        wg.done();
      });
    }
    wg.wait();
  }
  EXPECT_EQ(ran.load(), total);
  EXPECT_EQ(sum.load(), want);
}

TEST_P(SchedTest, SpawnStorm) {
  const int kSpawners = 100;
  const std::int64_t per = scaled(10'000);
  std::atomic<std::int64_t> ran{0};
  goro::WaitGroup wg;
  wg.add(kSpawners * (per + 1));
  for (int s = 0; s < kSpawners; s++) {
    goro::go([&] {
      for (std::int64_t i = 0; i < per; i++) {
        goro::go([&] {
          ran.fetch_add(1, std::memory_order_relaxed);
          wg.done();
        });
      }
      wg.done();
    });
  }
  wg.wait();
  EXPECT_EQ(ran.load(), kSpawners * per);
}

// Goroutines spawned by one goroutine end up on several OS threads: the others steal them.
TEST_P(SchedTest, StealingSpreadsWorkOfOneSpawner) {
  const int kChildren = 200;
  std::set<int> tids;
  int tries = 0;
  for (; tries < 20; tries++) {
    std::mutex mu;
    tids.clear();
    goro::WaitGroup wg;
    wg.add(1);
    goro::go([&] {
      goro::WaitGroup children;
      children.add(kChildren);
      for (int i = 0; i < kChildren; i++) {
        goro::go([&] {
          // ~50 us of work without yielding, so the spawner's P cannot run them all quickly.
          auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
          while (std::chrono::steady_clock::now() < until) {
          }
          std::lock_guard<std::mutex> hold(mu);
          tids.insert(sys_gettid());
          children.done();
        });
      }
      children.wait();
      wg.done();
    });
    wg.wait();
    if (procs() < 2 || tids.size() > 1) break;
  }
  if (procs() >= 2) {
    EXPECT_GT(tids.size(), 1u) << "all children ran on one thread in " << tries + 1 << " tries";
  } else {
    EXPECT_EQ(tids.size(), 1u);
  }
}

TEST_P(SchedTest, ThreadWaitsForGoroutinesAndViceVersa) {
  const int kRounds = static_cast<int>(scaled(200));
  for (int r = 0; r < kRounds; r++) {
    // A std::thread waits on goroutines.
    goro::WaitGroup by_goroutines;
    std::atomic<int> gdone{0};
    by_goroutines.add(8);
    for (int i = 0; i < 8; i++) {
      goro::go([&] {
        gdone++;
        by_goroutines.done();
      });
    }
    std::thread t([&] {
      by_goroutines.wait();
      EXPECT_EQ(gdone.load(), 8);
    });
    // A goroutine waits on std::threads.
    goro::WaitGroup by_threads, goroutine_saw;
    std::atomic<int> tdone{0};
    by_threads.add(3);
    goroutine_saw.add(1);
    goro::go([&] {
      by_threads.wait();
      EXPECT_EQ(tdone.load(), 3);
      goroutine_saw.done();
    });
    std::vector<std::thread> ts;
    for (int i = 0; i < 3; i++) {
      ts.emplace_back([&] {
        tdone++;
        by_threads.done();
      });
    }
    goroutine_saw.wait();
    t.join();
    for (auto& x : ts) x.join();
  }
}

// A Mutex used as a binary semaphore, handed back and forth between a std::thread and a
// goroutine (goro::Mutex may be unlocked by another goroutine or thread, as in Go).
TEST_P(SchedTest, MutexPassedBetweenThreadAndGoroutine) {
  const int kRounds = static_cast<int>(scaled(20'000));
  goro::Mutex to_goroutine, to_thread;
  to_goroutine.lock();
  to_thread.lock();
  int counter = 0;  // plain: protected by the hand-off
  goro::WaitGroup gdone;
  gdone.add(1);
  goro::go([&] {
    for (int i = 0; i < kRounds; i++) {
      to_goroutine.lock();  // wait for the thread's turn to end
      counter++;
      to_thread.unlock();  // hand over
    }
    gdone.done();
  });
  std::thread t([&] {
    for (int i = 0; i < kRounds; i++) {
      to_goroutine.unlock();
      to_thread.lock();
      if (counter != i + 1) {
        ADD_FAILURE() << "round " << i << ": counter " << counter;
        break;
      }
    }
  });
  t.join();
  gdone.wait();
  EXPECT_EQ(counter, kRounds);
  // Both end locked by the hand-off.
  EXPECT_FALSE(to_goroutine.try_lock());
  EXPECT_FALSE(to_thread.try_lock());
  to_goroutine.unlock();
  to_thread.unlock();
}

// The same with the roles swapped and several pairs at once.
TEST_P(SchedTest, MutexPingPongPairs) {
  const int kRounds = static_cast<int>(scaled(5'000));
  const int kPairs = 4;
  std::vector<std::thread> threads;
  goro::WaitGroup wg;
  wg.add(kPairs);
  struct Pair {
    goro::Mutex a, b;
    int counter = 0;
  };
  std::vector<Pair> pairs(kPairs);
  for (int p = 0; p < kPairs; p++) {
    Pair& pr = pairs[static_cast<std::size_t>(p)];
    pr.a.lock();
    pr.b.lock();
    // The goroutine drives, the thread answers.
    threads.emplace_back([&pr, kRounds] {
      for (int i = 0; i < kRounds; i++) {
        pr.a.lock();
        pr.counter++;
        pr.b.unlock();
      }
    });
    goro::go([&pr, &wg, kRounds] {
      for (int i = 0; i < kRounds; i++) {
        pr.a.unlock();
        pr.b.lock();
        if (pr.counter != i + 1) {
          ADD_FAILURE() << "round " << i << ": counter " << pr.counter;
          break;
        }
      }
      wg.done();
    });
  }
  wg.wait();
  for (auto& t : threads) t.join();
  for (auto& pr : pairs) {
    EXPECT_EQ(pr.counter, kRounds);
    pr.a.unlock();
    pr.b.unlock();
  }
}

TEST_P(SchedTest, SetGomaxprocsWhileRunning) {
  const std::int64_t total = scaled(100'000);
  std::atomic<std::int64_t> finished{0};
  std::atomic<bool> stop{false};
  goro::WaitGroup wg;
  // Spawned from a goroutine and from the main thread, while another thread flips GOMAXPROCS.
  std::thread flipper([&] {
    const int seq[] = {1, 8, 2, 1, 4};
    int k = 0;
    while (!stop.load()) {
      goro::set_gomaxprocs(seq[k++ % 5]);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  wg.add(total);
  auto body = [&] {
    for (int i = 0; i < 5; i++) goro::yield();
    finished.fetch_add(1, std::memory_order_relaxed);
    wg.done();
  };
  goro::WaitGroup spawned;
  spawned.add(1);
  goro::go([&] {
    for (std::int64_t i = 0; i < total / 2; i++) goro::go(body);
    spawned.done();
  });
  for (std::int64_t i = total / 2; i < total; i++) goro::go(body);
  spawned.wait();
  wg.wait();
  stop = true;
  flipper.join();
  EXPECT_EQ(finished.load(), total);
  // The explicit sequence, with return values.
  goro::set_gomaxprocs(1);
  EXPECT_EQ(goro::set_gomaxprocs(8), 1);
  EXPECT_EQ(goro::gomaxprocs(), 8);
  EXPECT_EQ(goro::set_gomaxprocs(2), 8);
  EXPECT_EQ(goro::set_gomaxprocs(1), 2);
  EXPECT_EQ(goro::set_gomaxprocs(4), 1);
  EXPECT_EQ(goro::gomaxprocs(), 4);
  // Still works afterwards, at this test's setting.
  goro::set_gomaxprocs(procs());
  goro::WaitGroup after;
  after.add(1000);
  for (int i = 0; i < 1000; i++) goro::go([&] { after.done(); });
  after.wait();
}

// Shrinking GOMAXPROCS right after waking Ms (while a P is being handed to an M).
TEST_P(SchedTest, GomaxprocsFlappingWhileMsWake) {
  const int kRounds = static_cast<int>(scaled(3000));
  std::atomic<int> ran{0};
  for (int r = 0; r < kRounds; r++) {
    goro::set_gomaxprocs(procs() + 1 + r % 3);
    goro::WaitGroup wg;
    wg.add(4);
    for (int i = 0; i < 4; i++) {
      goro::go([&] {
        ran++;
        wg.done();
      });
    }
    goro::set_gomaxprocs(procs());
    wg.wait();
  }
  EXPECT_EQ(ran.load(), 4 * kRounds);
}

TEST_P(SchedTest, NumGoroutineReturnsToZero) {
  ASSERT_TRUE(goro_test::wait_until([] { return goro::num_goroutine() == 0; }));
  const int kN = static_cast<int>(scaled(10'000));
  goro::WaitGroup started, release, done;
  started.add(kN);
  release.add(1);
  done.add(kN);
  for (int i = 0; i < kN; i++) {
    goro::go([&] {
      started.done();
      release.wait();
      done.done();
    });
  }
  started.wait();
  EXPECT_EQ(goro::num_goroutine(), kN);
  release.done();
  done.wait();
  EXPECT_TRUE(goro_test::wait_until([] { return goro::num_goroutine() == 0; }, 2.0))
      << goro::num_goroutine();
}

TEST_P(SchedTest, ThreadCountStaysBoundedWhileGoroutinesPark) {
  // Runtime threads exist only per P (plus a few): parked goroutines cost no thread. Idle Ms
  // left over from earlier tests in the same process (at a larger GOMAXPROCS) are tolerated.
  const int threads_before = goro::num_threads();
  ASSERT_GT(threads_before, 0);
  const int limit = std::max(goro::gomaxprocs() + 6, threads_before + 1);
  const int kN = static_cast<int>(scaled(10'000));
  goro::WaitGroup started, release, done;
  goro::Mutex mu;
  started.add(kN);
  release.add(1);
  done.add(kN);
  mu.lock();
  for (int i = 0; i < kN; i++) {
    goro::go([&, i] {
      started.done();
      if (i % 2 == 0) {
        release.wait();
      } else {
        mu.lock();
        mu.unlock();
      }
      done.done();
    });
  }
  started.wait();
  int max_threads = goro::num_threads();
  for (int i = 0; i < 20; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    max_threads = std::max(max_threads, goro::num_threads());
  }
  EXPECT_LT(max_threads, limit) << "threads before: " << threads_before;
  EXPECT_EQ(goro::num_goroutine(), kN);
  release.done();
  mu.unlock();
  done.wait();
  EXPECT_LT(goro::num_threads(), limit);
}

TEST_P(SchedTest, YieldFromPlainThread) {
  for (int i = 0; i < 100; i++) goro::yield();
  std::thread t([] {
    for (int i = 0; i < 100; i++) goro::yield();
    EXPECT_FALSE(goro::in_goroutine());
  });
  t.join();
  // And from a goroutine, with nothing else to run.
  goro::WaitGroup wg;
  wg.add(1);
  goro::go([&] {
    for (int i = 0; i < 100; i++) goro::yield();
    wg.done();
  });
  wg.wait();
}

INSTANTIATE_TEST_SUITE_P(Procs, SchedTest, ::testing::Values(1, 2, 8),
                         [](const auto& info) { return "P" + std::to_string(info.param); });

// ---- not parameterised -------------------------------------------------------------------

// Yield gives others a turn: with one P, two goroutines that yield alternate.
TEST(SchedSingleP, YieldLetsOthersRun) {
  goro::set_gomaxprocs(1);
  std::atomic<int> turn{0};
  std::atomic<int> bad{0};
  goro::WaitGroup wg;
  wg.add(2);
  for (int me = 0; me < 2; me++) {
    goro::go([&, me] {
      for (int i = 0; i < 1000; i++) {
        // Wait (by yielding) for our turn; bounded so a failure cannot hang.
        int spins = 0;
        while (turn.load() % 2 != me && spins++ < 100000) goro::yield();
        if (turn.load() % 2 != me) bad++;
        turn++;
      }
      wg.done();
    });
  }
  wg.wait();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(turn.load(), 2000);
}

TEST(SchedDefaults, GomaxprocsDefaultsToNumCpu) {
  auto r = run_testprog("print_procs", {{"GOMAXPROCS", std::nullopt}});
  ASSERT_TRUE(r.exited && r.exit_code == 0) << r.describe();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex("gomaxprocs=([0-9]+) num_cpu=([0-9]+)")))
      << r.describe();
  int procs = std::stoi(m[1].str()), ncpu = std::stoi(m[2].str());
  EXPECT_EQ(ncpu, goro::num_cpu());
  // num_cpu(), capped by a cgroup v2 CPU quota if the process has one.
  EXPECT_EQ(procs, goro_test::expected_default_procs(ncpu)) << r.describe();
  EXPECT_TRUE(r.err.empty()) << r.describe();
}

TEST(SchedDefaults, GomaxprocsFromEnvironment) {
  for (int n : {1, 3, 17}) {
    auto r = run_testprog("print_procs", {{"GOMAXPROCS", std::to_string(n)}});
    ASSERT_TRUE(r.exited && r.exit_code == 0) << r.describe();
    EXPECT_NE(r.out.find("gomaxprocs=" + std::to_string(n) + " "), std::string::npos)
        << r.describe();
    EXPECT_NE(r.out.find("ran=1"), std::string::npos) << r.describe();
    EXPECT_TRUE(r.err.empty()) << r.describe();
  }
}

TEST(SchedDefaults, SetGomaxprocsRejectsOutOfRange) {
  int before = goro::gomaxprocs();
  EXPECT_THROW(goro::set_gomaxprocs(0), std::invalid_argument);
  EXPECT_THROW(goro::set_gomaxprocs(-1), std::invalid_argument);
  EXPECT_THROW(goro::set_gomaxprocs(goro::max_procs() + 1), std::invalid_argument);
  EXPECT_EQ(goro::gomaxprocs(), before);
}

}  // namespace
