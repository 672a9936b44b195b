// sync_test.cpp - Mutex, WaitGroup and Once, parameterised over GOMAXPROCS 1, 2 and 8, each used
// from goroutines and plain std::threads at the same time.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "goro/goro.hpp"
#include "goro/testing.hpp"
#include "test_util.hpp"

namespace {

using goro_test::scaled;
using Clock = std::chrono::steady_clock;

class SyncTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { goro::set_gomaxprocs(GetParam()); }
  void TearDown() override {
    // Every test ends its goroutines: they get 5 s to return.
    goro::testing::expect_no_goroutines_left({.grace = std::chrono::seconds(5)});
  }
  int procs() const { return GetParam(); }
};

// Runs body(i) in n goroutines and m threads at once; returns after all finished.
template <class F>
void run_mixed(int goroutines, int threads, F body) {
  goro::WaitGroup wg;
  wg.add(goroutines);
  for (int i = 0; i < goroutines; i++) {
    goro::go([&wg, &body, i] {
      body(i);
      wg.done();
    });
  }
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; i++)
    ts.emplace_back([&body, i, goroutines] { body(goroutines + i); });
  for (auto& t : ts) t.join();
  wg.wait();
}

// ---- Mutex -------------------------------------------------------------------------------

TEST_P(SyncTest, MutexMutualExclusion) {
  const std::int64_t per = scaled(100'000);
  goro::Mutex mu;
  std::int64_t counter = 0;  // plain, protected by mu
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  run_mixed(8, 2, [&](int) {
    for (std::int64_t i = 0; i < per; i++) {
      mu.lock();
      if (inside.fetch_add(1, std::memory_order_relaxed) != 0) overlaps++;
      counter++;
      inside.fetch_sub(1, std::memory_order_relaxed);
      mu.unlock();
    }
  });
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(counter, 10 * per);
}

TEST_P(SyncTest, MutexWithYieldInsideCriticalSection) {
  // Holders that yield (or park on something else) inside the critical section force the
  // waiters to park rather than spin.
  const std::int64_t per = scaled(2'000);
  goro::Mutex mu;
  std::int64_t counter = 0;
  run_mixed(16, 2, [&](int) {
    for (std::int64_t i = 0; i < per; i++) {
      std::lock_guard<goro::Mutex> hold(mu);
      std::int64_t c = counter;
      goro::yield();
      counter = c + 1;
    }
  });
  EXPECT_EQ(counter, 18 * per);
}

TEST_P(SyncTest, TryLock) {
  goro::Mutex mu;
  EXPECT_TRUE(mu.try_lock());
  EXPECT_FALSE(mu.try_lock()) << "not recursive";
  // Another goroutine and another thread see it locked.
  bool g_got = true, t_got = true;
  goro::WaitGroup wg;
  wg.add(1);
  goro::go([&] {
    g_got = mu.try_lock();
    wg.done();
  });
  wg.wait();
  std::thread([&] { t_got = mu.try_lock(); }).join();
  EXPECT_FALSE(g_got);
  EXPECT_FALSE(t_got);
  mu.unlock();
  // Now a goroutine gets it, and a thread may unlock it.
  wg.add(1);
  goro::go([&] {
    g_got = mu.try_lock();
    wg.done();
  });
  wg.wait();
  EXPECT_TRUE(g_got);
  std::thread([&] { mu.unlock(); }).join();
  EXPECT_TRUE(mu.try_lock());
  mu.unlock();

  // Contended: try_lock never lets two in.
  std::atomic<int> inside{0}, overlaps{0};
  std::atomic<std::int64_t> got{0};
  const std::int64_t per = scaled(20'000);
  run_mixed(4, 2, [&](int) {
    for (std::int64_t i = 0; i < per; i++) {
      if (mu.try_lock()) {
        if (inside.fetch_add(1) != 0) overlaps++;
        got++;
        inside.fetch_sub(1);
        mu.unlock();
      } else if (i % 64 == 0) {
        goro::yield();
      }
    }
  });
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_GT(got.load(), 0);
}

TEST_P(SyncTest, StdLockCompatibility) {
  goro::Mutex a, b;
  {
    std::lock_guard<goro::Mutex> g(a);
    EXPECT_FALSE(a.try_lock());
  }
  EXPECT_TRUE(a.try_lock());
  a.unlock();
  {
    std::unique_lock<goro::Mutex> u(a);
    EXPECT_TRUE(u.owns_lock());
    u.unlock();
    EXPECT_FALSE(u.owns_lock());
    EXPECT_TRUE(u.try_lock());
    std::unique_lock<goro::Mutex> other(a, std::try_to_lock);
    EXPECT_FALSE(other.owns_lock());
    std::unique_lock<goro::Mutex> deferred(b, std::defer_lock);
    EXPECT_FALSE(deferred.owns_lock());
  }
  {
    std::scoped_lock both(a, b);
    EXPECT_FALSE(a.try_lock());
    EXPECT_FALSE(b.try_lock());
  }
  EXPECT_TRUE(a.try_lock() && b.try_lock());
  a.unlock();
  b.unlock();

  // std::scoped_lock / std::lock over two goro Mutexes taken in opposite orders by goroutines
  // and threads: no deadlock, mutual exclusion holds.
  const std::int64_t per = scaled(5'000);
  std::int64_t counter = 0;
  run_mixed(4, 2, [&](int who) {
    for (std::int64_t i = 0; i < per; i++) {
      if ((who + i) % 2 == 0) {
        std::scoped_lock hold(a, b);
        counter++;
      } else {
        std::scoped_lock hold(b, a);
        counter++;
      }
    }
  });
  EXPECT_EQ(counter, 6 * per);
}

enum class Who { kGoroutine, kThread };

// One side holds the Mutex in a tight lock/unlock loop; the other asks for it once. Starvation
// mode must hand it over within a couple of seconds.
void starvation_case(int procs, Who holder, Who waiter) {
  goro::Mutex mu;
  std::atomic<bool> holder_running{false}, waiter_got{false}, stop{false};
  std::atomic<std::int64_t> holder_iters{0};
  double waited_s = -1;
  goro::WaitGroup wg;
  wg.add(2);
  std::vector<std::thread> threads;
  auto hold_loop = [&] {
    holder_running = true;
    auto deadline = Clock::now() + std::chrono::seconds(20);
    while (!waiter_got.load(std::memory_order_relaxed) && !stop.load()) {
      mu.lock();
      holder_iters.fetch_add(1, std::memory_order_relaxed);
      mu.unlock();
      if ((holder_iters.load(std::memory_order_relaxed) & 0xffff) == 0 && Clock::now() > deadline) {
        stop = true;
      }
    }
    wg.done();
  };
  auto wait_once = [&] {
    while (!holder_running.load()) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    auto t0 = Clock::now();
    mu.lock();
    waited_s = goro_test::seconds_since(t0);
    waiter_got = true;
    mu.unlock();
    wg.done();
  };
  if (holder == Who::kGoroutine) {
    goro::go(hold_loop);
  } else {
    threads.emplace_back(hold_loop);
  }
  if (waiter == Who::kGoroutine) {
    goro::go(wait_once);
  } else {
    threads.emplace_back(wait_once);
  }
  wg.wait();
  for (auto& t : threads) t.join();
  EXPECT_TRUE(waiter_got.load()) << "the waiter never got the mutex (GOMAXPROCS " << procs
                                 << ", holder iterations " << holder_iters.load() << ")";
  EXPECT_LT(waited_s, 2.0) << "GOMAXPROCS " << procs;
}

TEST_P(SyncTest, MutexStarvationThreadWaiter) {
  starvation_case(procs(), Who::kGoroutine, Who::kThread);
  starvation_case(procs(), Who::kThread, Who::kThread);
}

TEST_P(SyncTest, MutexStarvationGoroutineWaiter) {
  starvation_case(procs(), Who::kThread, Who::kGoroutine);
  // A goroutine holder that never enters the scheduler monopolizes its P: with a single P the
  // waiting goroutine cannot even run (goroutines are not preempted), so that combination is
  // only meaningful with GOMAXPROCS >= 2.
  if (procs() >= 2) starvation_case(procs(), Who::kGoroutine, Who::kGoroutine);
}

// ---- WaitGroup ---------------------------------------------------------------------------

TEST_P(SyncTest, WaitGroupManyWaiters) {
  const int kGoroutineWaiters = 100, kThreadWaiters = 4;
  for (int round = 0; round < 20; round++) {
    goro::WaitGroup wg, waiters_done, waiting;
    std::atomic<int> released{0};
    std::atomic<bool> work_done{false};
    int payload = 0;  // plain: published by done(), read after wait()
    wg.add(3);
    waiting.add(kGoroutineWaiters + kThreadWaiters);
    waiters_done.add(kGoroutineWaiters);
    std::atomic<int> saw_bad{0};
    auto waiter = [&] {
      waiting.done();
      wg.wait();
      if (!work_done.load() || payload != 42) saw_bad++;
      released++;
    };
    for (int i = 0; i < kGoroutineWaiters; i++) {
      goro::go([&] {
        waiter();
        waiters_done.done();
      });
    }
    std::vector<std::thread> ts;
    for (int i = 0; i < kThreadWaiters; i++) ts.emplace_back(waiter);
    waiting.wait();
    // Released by a goroutine, a thread and main.
    goro::go([&] { wg.done(); });
    std::thread([&] { wg.done(); }).join();
    payload = 42;
    work_done = true;
    wg.done();
    wg.wait();  // main waits too (returns at once or after the others)
    waiters_done.wait();
    for (auto& t : ts) t.join();
    EXPECT_EQ(released.load(), kGoroutineWaiters + kThreadWaiters);
    EXPECT_EQ(saw_bad.load(), 0);
  }
}

TEST_P(SyncTest, WaitGroupWaitReturnsAtOnceWhenZero) {
  goro::WaitGroup wg;
  wg.wait();
  wg.add(5);
  wg.add(-5);
  wg.wait();
  goro::WaitGroup done;
  done.add(1);
  goro::go([&] {
    wg.wait();
    done.done();
  });
  done.wait();
}

TEST_P(SyncTest, WaitGroupReuse) {
  const int kRounds = static_cast<int>(scaled(2'000));
  goro::WaitGroup wg;
  std::atomic<std::int64_t> total{0};
  for (int r = 0; r < kRounds; r++) {
    const int k = 1 + r % 7;
    goro::WaitGroup extra_waiters;
    const int nextra = r % 3;
    wg.add(k);
    extra_waiters.add(nextra);
    for (int i = 0; i < nextra; i++) {
      goro::go([&] {
        wg.wait();
        extra_waiters.done();
      });
    }
    std::vector<std::thread> ts;
    for (int i = 0; i < k; i++) {
      if (i % 2 == 0) {
        goro::go([&] {
          total++;
          wg.done();
        });
      } else {
        ts.emplace_back([&] {
          total++;
          wg.done();
        });
      }
    }
    wg.wait();
    // Every wait() of this round returned before the next add().
    extra_waiters.wait();
    for (auto& t : ts) t.join();
  }
  std::int64_t want = 0;
  for (int r = 0; r < kRounds; r++) want += 1 + r % 7;
  EXPECT_EQ(total.load(), want);
}

TEST_P(SyncTest, WaitGroupAddFromManyGoroutinesAndThreads) {
  // add/done pairs racing from everywhere while the counter stays above zero.
  const std::int64_t per = scaled(20'000);
  goro::WaitGroup wg;
  wg.add(1);
  run_mixed(8, 2, [&](int) {
    for (std::int64_t i = 0; i < per; i++) {
      wg.add(2);
      wg.done();
      wg.done();
    }
  });
  goro::WaitGroup waited;
  waited.add(1);
  goro::go([&] {
    wg.wait();
    waited.done();
  });
  wg.done();
  waited.wait();
}

// A WaitGroup (or Mutex) may be destroyed as soon as wait() (or the last lock/unlock) has
// returned: the usual `{ WaitGroup wg; wg.add(1); go(... wg.done() ...); wg.wait(); }` and
// "the last owner frees the object" patterns. The releasing done()/unlock() must therefore not
// touch the object after a waiter can observe the release. Each round frees the primitive the
// moment the waiter returns and poisons its memory; done() and wait() are made to meet (the
// releaser starts when the waiter is about to wait), so a late access by the releaser hits
// freed memory (ASan), races with the free (TSan), or corrupts the next round's primitive (a
// hang, caught by the deadline, or a fatal error).
TEST_P(SyncTest, WaitGroupDestroyedRightAfterWait) {
  const int kRounds = static_cast<int>(scaled(20'000));
  std::atomic<int> phase{0}, returned_from_done{0};
  for (int r = 0; r < kRounds; r++) {
    auto* wg = new goro::WaitGroup;
    wg->add(1);
    phase = 0;
    // A varying delay on either side sweeps the releaser's done() across the waiter's wait().
    const int jitter_release = (r * 7) % 61, jitter_wait = (r * 13) % 67;
    auto spin = [](int n) {
      for (int k = 0; k < n; k++) asm volatile("pause");
    };
    auto releaser = [wg, &phase, &returned_from_done, jitter_release, spin] {
      while (phase.load(std::memory_order_acquire) == 0) {
      }
      spin(jitter_release);
      wg->done();
      returned_from_done++;
    };
    // Alternate: goroutine releaser / plain-thread waiter, and plain-thread releaser /
    // goroutine waiter (with GOMAXPROCS 1 a spinning goroutine would block the waiter's P).
    if (r % 32 != 31 || procs() == 1) {
      goro::go(releaser);
      phase.store(1, std::memory_order_release);
      spin(jitter_wait);
      wg->wait();
    } else {
      std::thread t(releaser);
      goro::WaitGroup outer;
      outer.add(1);
      goro::go([&] {
        phase.store(1, std::memory_order_release);
        spin(jitter_wait);
        wg->wait();
        outer.done();
      });
      outer.wait();
      t.join();
    }
    wg->~WaitGroup();
    std::memset(static_cast<void*>(wg), 0xA5, sizeof(goro::WaitGroup));
    ::operator delete(static_cast<void*>(wg));
  }
  goro_test::wait_or_die([&] { return returned_from_done.load() == kRounds; }, 30,
                         "a done() never returned: it kept using a WaitGroup after wait() "
                         "returned and the WaitGroup was destroyed");
}

TEST_P(SyncTest, MutexDestroyedByLastOwner) {
  const int kRounds = static_cast<int>(scaled(20'000));
  std::atomic<int> unlocked{0};
  for (int r = 0; r < kRounds; r++) {
    auto* mu = new goro::Mutex;
    mu->lock();
    std::atomic<bool> waiting{false};
    goro::WaitGroup done;
    done.add(1);
    // The waiter takes the lock after the holder's unlock, then frees the Mutex at once.
    goro::go([mu, &waiting, &done] {
      waiting = true;
      mu->lock();
      mu->unlock();
      mu->~Mutex();
      std::memset(static_cast<void*>(mu), 0xA5, sizeof(goro::Mutex));
      ::operator delete(static_cast<void*>(mu));
      done.done();
    });
    while (!waiting.load()) std::this_thread::yield();
    mu->unlock();  // from the main thread; mu may be freed before this returns
    unlocked++;
    done.wait();
  }
  EXPECT_EQ(unlocked.load(), kRounds);
}

// Plain threads get a waiter record the first time they block; records are recycled when
// threads exit. Many short-lived threads, each blocking once on a WaitGroup and once on a Mutex
// that goroutines release, exercise that recycling (with late wake-ups racing thread exit).
TEST_P(SyncTest, ShortLivedThreadsBlockAndExit) {
  const int kThreads = static_cast<int>(scaled(400));
  goro::Mutex mu;
  std::atomic<int> finished{0};
  for (int batch = 0; batch < kThreads; batch += 8) {
    goro::WaitGroup gate;
    gate.add(1);
    mu.lock();
    std::vector<std::thread> ts;
    for (int i = 0; i < 8; i++) {
      ts.emplace_back([&] {
        gate.wait();
        mu.lock();
        mu.unlock();
        finished++;
      });
    }
    goro::go([&] {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
      gate.done();
      goro::yield();
      mu.unlock();
    });
    for (auto& t : ts) t.join();
  }
  EXPECT_EQ(finished.load(), (kThreads + 7) / 8 * 8);
}

// ---- Once --------------------------------------------------------------------------------

TEST_P(SyncTest, OnceRunsOnceAmongConcurrentCallers) {
  for (int round = 0; round < 10; round++) {
    goro::Once once;
    std::atomic<int> runs{0};
    int value = 0;  // plain: written by the one run, read by every caller after call()
    std::atomic<int> bad{0}, returned{0};
    goro::WaitGroup start;
    start.add(1);
    // Release all callers at once, once they are all waiting on `start`.
    std::thread releaser([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      start.done();
    });
    run_mixed(90, 10, [&](int) {
      start.wait();
      once.call([&] {
        runs++;
        // Take a while, parking and yielding, so that other callers have to wait.
        for (int i = 0; i < 5; i++) goro::yield();
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        value = 1234;
      });
      if (value != 1234 || !once.done()) bad++;
      returned++;
    });
    releaser.join();
    EXPECT_EQ(runs.load(), 1);
    EXPECT_EQ(bad.load(), 0);
    EXPECT_EQ(returned.load(), 100);
    EXPECT_TRUE(once.done());
    once.call([&] { runs++; });
    EXPECT_EQ(runs.load(), 1);
  }
}

TEST_P(SyncTest, OnceRetriesAfterException) {
  goro::Once once;
  EXPECT_FALSE(once.done());
  EXPECT_THROW(once.call([] { throw std::runtime_error("first"); }), std::runtime_error);
  EXPECT_FALSE(once.done()) << "a throwing call does not complete the Once";
  int runs = 0;
  once.call([&](int add) { runs += add; }, 5);
  EXPECT_EQ(runs, 5);
  EXPECT_TRUE(once.done());
  once.call([&](int add) { runs += add; }, 5);
  EXPECT_EQ(runs, 5);

  // Concurrent callers: the first three attempts throw; exactly one later attempt completes;
  // every caller returns (with the exception or normally), none runs f after completion.
  for (int round = 0; round < 5; round++) {
    goro::Once o;
    std::atomic<int> attempts{0}, completed{0}, threw{0}, returned{0};
    run_mixed(30, 4, [&](int) {
      try {
        o.call([&] {
          int a = attempts++;
          goro::yield();
          if (a < 3) throw std::runtime_error("attempt " + std::to_string(a));
          completed++;
        });
      } catch (const std::runtime_error&) {
        threw++;
      }
      returned++;
    });
    EXPECT_EQ(returned.load(), 34);
    EXPECT_EQ(completed.load(), 1);
    EXPECT_EQ(threw.load(), 3);
    EXPECT_EQ(attempts.load(), 4);
    EXPECT_TRUE(o.done());
  }
}

INSTANTIATE_TEST_SUITE_P(Procs, SyncTest, ::testing::Values(1, 2, 8),
                         [](const auto& info) { return "P" + std::to_string(info.param); });

}  // namespace
