// sched_test.cpp - the scheduler under load, parameterised over GOMAXPROCS 1, 2 and 8: a million
// goroutines, spawn storms, work stealing, threads and goroutines waiting on each other,
// changing GOMAXPROCS while goroutines run, goroutine and thread counts, defaults.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
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
  const std::int64_t kBatch = goro_test::live_cap(50'000);
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
  // Spawners do not yield: up to all kSpawners * per goroutines may be alive at once.
  const std::int64_t per = std::min(scaled(10'000), goro_test::live_cap(1'000'000) / kSpawners);
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

// One goroutine spawns n children that each work `busy` without yielding, so that the
// spawner's P cannot run them all quickly; returns the OS threads they ran on.
std::set<int> threads_of_one_spawners_children(int n, std::chrono::microseconds busy) {
  std::mutex mu;
  std::set<int> tids;
  goro::WaitGroup wg;
  wg.add(1);
  goro::go([&] {
    goro::WaitGroup children;
    children.add(n);
    for (int i = 0; i < n; i++) {
      goro::go([&] {
        auto until = std::chrono::steady_clock::now() + busy;
        while (std::chrono::steady_clock::now() < until) {
        }
        {
          std::lock_guard<std::mutex> hold(mu);
          tids.insert(sys_gettid());
        }
        // Outside the lock: once the last done() returns, the caller may destroy mu.
        children.done();
      });
    }
    children.wait();
    wg.done();
  });
  wg.wait();
  return tids;
}

// Goroutines spawned by one goroutine end up on several OS threads: the others steal them.
TEST_P(SchedTest, StealingSpreadsWorkOfOneSpawner) {
  std::set<int> tids;
  int tries = 0;
  for (; tries < 20; tries++) {
    tids = threads_of_one_spawners_children(200, std::chrono::microseconds(50));
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
  const std::int64_t total = goro_test::live_cap(scaled(100'000));
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
  goro_test::wait_or_die([&] { return finished.load() == total; }, 60,
                         "not all goroutines finished while GOMAXPROCS changed");
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

// Shrinking GOMAXPROCS right after waking Ms (while a P is being handed to an M, or while an
// M holding a P to be retired has work queued). Every goroutine must still run: the wait has a
// deadline so that a lost wake-up fails instead of hanging.
TEST_P(SchedTest, GomaxprocsFlappingWhileMsWake) {
  const int kRounds = static_cast<int>(scaled(3000));
  std::atomic<int> ran{0};
  for (int r = 0; r < kRounds; r++) {
    goro::set_gomaxprocs(procs() + 1 + r % 3);
    for (int i = 0; i < 4; i++) goro::go([&] { ran++; });
    goro::set_gomaxprocs(procs());
    goro_test::wait_or_die([&] { return ran.load() == 4 * (r + 1); }, 20,
                           "round " + std::to_string(r) + ": only " + std::to_string(ran.load()) +
                               " of " + std::to_string(4 * (r + 1)) +
                               " goroutines ran (lost wake-up after set_gomaxprocs)");
  }
  EXPECT_EQ(ran.load(), 4 * kRounds);
}

TEST_P(SchedTest, NumGoroutineReturnsToZero) {
  ASSERT_TRUE(goro_test::wait_until([] { return goro::num_goroutine() == 0; }));
  const int kN = static_cast<int>(goro_test::live_cap(scaled(10'000)));
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

// num_goroutine() is a sum of per-P and per-thread counters: it must never go negative while
// goroutines come and go (from threads and goroutines, with GOMAXPROCS changing and threads
// that started goroutines exiting), and must be exactly 0 once all are gone.
TEST_P(SchedTest, NumGoroutineConsistentUnderChurn) {
  const int kPerSpawner = static_cast<int>(goro_test::live_cap(scaled(20'000) * 3) / 3);
  std::atomic<bool> stop{false};
  std::atomic<std::int64_t> min_seen{0}, max_seen{0};
  std::thread poller([&] {
    while (!stop.load()) {
      std::int64_t n = goro::num_goroutine();
      if (n < min_seen.load()) min_seen = n;
      if (n > max_seen.load()) max_seen = n;
    }
  });
  std::atomic<int> ran{0};
  std::vector<std::thread> spawners;
  for (int t = 0; t < 3; t++) {
    spawners.emplace_back([&, t] {
      for (int i = 0; i < kPerSpawner; i++) {
        goro::go([&ran, i] {
          if (i % 3 == 0) goro::yield();
          ran++;
        });
        if (t == 0 && i % 5000 == 4999) goro::set_gomaxprocs(1 + (i / 5000) % 4);
      }
    });
  }
  for (auto& s : spawners) s.join();  // these threads exit with goroutines still counted
  goro_test::wait_or_die([&] { return ran.load() == 3 * kPerSpawner; }, 60,
                         "goroutines did not finish");
  EXPECT_TRUE(goro_test::wait_until([] { return goro::num_goroutine() == 0; }, 5))
      << goro::num_goroutine();
  stop = true;
  poller.join();
  EXPECT_GE(min_seen.load(), 0);
  EXPECT_LE(max_seen.load(), 3 * kPerSpawner);
  goro::set_gomaxprocs(procs());
}

TEST_P(SchedTest, ThreadCountStaysBoundedWhileGoroutinesPark) {
  // Runtime threads exist only per P (plus a few): parked goroutines cost no thread. Idle Ms
  // left over from earlier tests in the same process (at a larger GOMAXPROCS) are tolerated.
  const int threads_before = goro::num_threads();
  ASSERT_GT(threads_before, 0);
  const int limit = std::max(goro::gomaxprocs() + 6, threads_before + 1);
  const int kN = static_cast<int>(goro_test::live_cap(scaled(10'000)));
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

// After GOMAXPROCS shrinks to 1, the retired Ps start nothing: Ms that were spinning on them
// when it shrank (a steal comes after a pause of tens of microseconds) do not take the single
// P's goroutines, which all run on one thread.
TEST(SchedSingleP, RetiredPsStartNothing) {
  for (int round = 0; round < 8; round++) {
    goro::set_gomaxprocs(8);
    {
      // A spawn storm keeps Ms busy on the 8 Ps; they are still spinning when it ends.
      const int kSpawners = 16, kPer = 2000;
      goro::WaitGroup storm;
      storm.add(kSpawners * (kPer + 1));
      for (int s = 0; s < kSpawners; s++) {
        goro::go([&] {
          for (int i = 0; i < kPer; i++) goro::go([&] { storm.done(); });
          storm.done();
        });
      }
      storm.wait();
    }
    goro::set_gomaxprocs(1);
    std::set<int> tids = threads_of_one_spawners_children(100, std::chrono::microseconds(20));
    ASSERT_EQ(tids.size(), 1u) << "round " << round;
  }
}

// Yield gives others a turn: with one P, two goroutines that yield alternate.
TEST(SchedSingleP, YieldLetsOthersRun) {
  goro::set_gomaxprocs(1);
  std::atomic<int> turn{0};
  std::atomic<int> bad{0};
  goro::WaitGroup wg;
  wg.add(2);
  // The wait for a turn is bounded by time, not by a count of yields: the first goroutine may
  // start while this (plain) thread, descheduled on a loaded machine, has not spawned the second
  // yet. Once the deadline passes every wait gives up at once, so a failure cannot hang.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (int me = 0; me < 2; me++) {
    goro::go([&, me] {
      for (int i = 0; i < 1000; i++) {
        while (turn.load() % 2 != me && std::chrono::steady_clock::now() < deadline) {
          goro::yield();
        }
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

// ---- go(): closures and arguments -------------------------------------------------------------

struct Counts {
  std::atomic<int> copies{0}, moves{0}, dtors{0}, calls{0};
};

struct Tracked {
  Counts* c;
  explicit Tracked(Counts* counts) : c(counts) {}
  Tracked(const Tracked& o) : c(o.c) { c->copies++; }
  Tracked(Tracked&& o) noexcept : c(o.c) { c->moves++; }
  ~Tracked() { c->dtors++; }
};

TEST(Go, ArgumentsAreDecayCopiedOrMovedAndDestroyed) {
  Counts fc, ac;
  {
    goro::WaitGroup wg;
    wg.add(2);
    Tracked lvalue(&ac);
    // Arguments reach f as rvalues (like std::thread): by value or by const reference.
    auto f = [&wg, t = Tracked(&fc)](const Tracked& a, Tracked b) {
      t.c->calls++;
      a.c->calls++;
      b.c->calls++;
      wg.done();
    };
    // The lvalue argument is copied once; the rvalue one is moved, never copied.
    goro::go(f, lvalue, Tracked(&ac));
    goro::go(std::move(f), std::ref(lvalue), Tracked(&ac));
    wg.wait();
  }
  ASSERT_TRUE(goro_test::wait_until([] { return goro::num_goroutine() == 0; }));
  EXPECT_EQ(fc.calls.load(), 2);
  EXPECT_EQ(ac.calls.load(), 4);
  EXPECT_EQ(ac.copies.load(), 1) << "one lvalue copied; rvalues and std::ref never copied";
  // Everything constructed was destroyed (closures are destroyed when the goroutine ends).
  EXPECT_EQ(fc.copies.load() + fc.moves.load() + 1, fc.dtors.load());
  EXPECT_EQ(ac.copies.load() + ac.moves.load() + 3, ac.dtors.load());
}

// Closures too big (or too aligned) for the goroutine's inline closure space live on the heap;
// they must be constructed, run and destroyed exactly like small ones (and freed with the
// deallocation function matching their allocation: ASan checks that).
TEST(Go, LargeAndOverAlignedClosures) {
  Counts c;
  std::atomic<long> sum{0};
  {
    goro::WaitGroup wg;
    const int kN = 200;
    wg.add(3 * kN);
    for (int i = 0; i < kN; i++) {
      std::array<long, 512> big{};  // 4 KiB
      big[0] = i;
      big[511] = 1;
      goro::go([&, big, t = Tracked(&c)] {
        sum += big[0] + big[511];
        wg.done();
      });
      struct alignas(64) Aligned {
        long v;
      } al{i};
      goro::go([&, al] {
        if (reinterpret_cast<std::uintptr_t>(&al) % 64 != 0) c.calls += 1000000;
        sum += al.v;
        wg.done();
      });
      // Large arguments rather than captures.
      goro::go(
          [&](std::array<long, 512> a, Tracked) {
            sum += a[0];
            wg.done();
          },
          big, Tracked(&c));
    }
    wg.wait();
  }
  ASSERT_TRUE(goro_test::wait_until([] { return goro::num_goroutine() == 0; }));
  const long n = 200;
  EXPECT_EQ(sum.load(), (n * (n - 1) / 2) * 3 + n);
  EXPECT_LT(c.calls.load(), 1000000) << "an over-aligned closure was misaligned";
  EXPECT_EQ(c.copies.load() + c.moves.load() + 2 * n, c.dtors.load());
}

struct ThrowOnCopy {
  static inline std::atomic<bool> armed{false};
  ThrowOnCopy() = default;
  ThrowOnCopy(const ThrowOnCopy&) {
    if (armed.load()) throw std::runtime_error("copy failed");
  }
};

TEST(Go, ExceptionFromCopyingArgumentsPropagatesAndNothingRuns) {
  std::atomic<int> ran{0};
  ThrowOnCopy arg;
  ThrowOnCopy::armed = true;
  for (int i = 0; i < 100; i++) {
    EXPECT_THROW(goro::go([&](const ThrowOnCopy&) { ran++; }, arg), std::runtime_error);
    std::array<char, 1024> big{};
    EXPECT_THROW(goro::go([&, big](const ThrowOnCopy&) { ran += big[0] + 1; }, arg),
                 std::runtime_error);
  }
  ThrowOnCopy::armed = false;
  EXPECT_TRUE(goro_test::wait_until([] { return goro::num_goroutine() == 0; }));
  EXPECT_EQ(ran.load(), 0);
  // The runtime is fine afterwards.
  goro::WaitGroup wg;
  wg.add(1);
  goro::go([&](const ThrowOnCopy&) { wg.done(); }, arg);
  wg.wait();
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
