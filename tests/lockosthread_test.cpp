// lockosthread_test.cpp - goro::lock_os_thread / unlock_os_thread (Go's runtime.LockOSThread),
// os_thread_lock_depth and os_thread_id (include/goro/preempt.hpp), with GOMAXPROCS 1, 2 and 8:
//  * a locked goroutine stays on its OS thread across yields, sleeps, channel waits, mutex and
//    WaitGroup parks (os_thread_id and gettid agree and never change);
//  * no other goroutine ever runs on a locked goroutine's thread, even while it is parked;
//  * a locked goroutine parked for good does not hold its processor: the others still run;
//  * thread_local state set after locking stays visible;
//  * nesting and its depth, unbalanced unlock throws std::logic_error, new goroutines start
//    unlocked;
//  * a goroutine that returns while locked takes its thread with it: the thread exits, and 50
//    of them do not make the process's thread count grow;
//  * on a plain thread lock/unlock only count.
//
// Durations are hang guards, never performance assertions.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "goro/goro.hpp"
#include "test_util.hpp"

namespace {

using goro_test::scaled;
using goro_test::sys_gettid;
using goro_test::wait_or_die;
using goro_test::wait_until;

class LockOSThreadTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { prev_ = goro::set_gomaxprocs(GetParam()); }
  void TearDown() override {
    EXPECT_TRUE(wait_until([] { return goro::num_goroutine() == 0; }, 10))
        << "goroutines left: " << goro::num_goroutine();
    goro::set_gomaxprocs(prev_);
  }
  int procs() const { return GetParam(); }
  int prev_ = 0;
};

bool thread_alive(int tid) {
  return ::access(("/proc/self/task/" + std::to_string(tid)).c_str(), F_OK) == 0;
}

// Records the first few failures seen by goroutines (gtest assertions are thread-safe, but a
// runaway loop should not print thousands).
class Failures {
 public:
  void add(const std::string& s) {
    std::lock_guard<std::mutex> hold(mu_);
    if (list_.size() < 10) list_.push_back(s);
    count_++;
  }
  void report() {
    std::lock_guard<std::mutex> hold(mu_);
    for (const auto& s : list_) ADD_FAILURE() << s;
    EXPECT_EQ(count_, 0);
  }

 private:
  std::mutex mu_;
  std::vector<std::string> list_;
  int count_ = 0;
};

// Several locked goroutines each block in every way a goroutine can (yield, sleep, unbuffered
// channel hand-offs with an unlocked partner, a contended goro::Mutex, a WaitGroup) many
// times; after each, os_thread_id() and gettid() must still be the thread they locked to, and
// the depth must be 1. After unlocking, the depth is 0.
TEST_P(LockOSThreadTest, LockedGoroutineStaysOnItsThreadAcrossBlocking) {
  const int kLocked = 8;
  const int rounds = static_cast<int>(scaled(200));
  Failures fails;
  goro::Mutex shared_mu;
  goro::WaitGroup all;
  all.add(2 * kLocked);
  for (int g = 0; g < kLocked; g++) {
    goro::Chan<int> ping(0), pong(0);  // unbuffered
    // The unlocked partner: answers every ping and takes the shared mutex now and then.
    goro::go([ping, pong, &shared_mu, &all] {
      while (auto v = ping.recv()) {
        if (*v % 3 == 0) {
          std::lock_guard<goro::Mutex> hold(shared_mu);
          goro::yield();
        }
        pong.send(*v + 1);
      }
      all.done();
    });
    goro::go([ping, pong, &shared_mu, &all, &fails, rounds, g] {
      goro::lock_os_thread();
      const int tid = goro::os_thread_id();
      auto check = [&](const char* what, int round) {
        if (goro::os_thread_id() != tid || sys_gettid() != tid ||
            goro::os_thread_lock_depth() != 1) {
          fails.add("goroutine " + std::to_string(g) + " after " + what + " (round " +
                    std::to_string(round) + "): os_thread_id " +
                    std::to_string(goro::os_thread_id()) + ", gettid " +
                    std::to_string(sys_gettid()) + ", locked to " + std::to_string(tid) +
                    ", depth " + std::to_string(goro::os_thread_lock_depth()));
        }
      };
      if (tid != sys_gettid()) fails.add("os_thread_id() != gettid() in a goroutine");
      for (int r = 0; r < rounds; r++) {
        goro::yield();
        check("yield", r);
        if (r % 8 == 0) {
          goro::sleep_for(std::chrono::microseconds(200));
          check("sleep_for", r);
        }
        ping.send(r);
        check("channel send", r);
        auto v = pong.recv();
        check("channel recv", r);
        if (!v || *v != r + 1) fails.add("bad pong");
        {
          std::lock_guard<goro::Mutex> hold(shared_mu);
          check("Mutex lock", r);
        }
        goro::WaitGroup wg;
        wg.add(1);
        goro::go([&wg] { wg.done(); });
        wg.wait();
        check("WaitGroup wait", r);
      }
      ping.close();
      goro::unlock_os_thread();
      if (goro::os_thread_lock_depth() != 0) fails.add("depth not 0 after unlock");
      all.done();
    });
  }
  wait_or_die([&] { return goro::num_goroutine() == 0; }, 120, "locked goroutines");
  all.wait();
  fails.report();
}

// One goroutine locks its thread and then yields, sleeps and waits on channels repeatedly,
// while many others (which record the thread they run on at every step) come and go. None of
// them may ever observe the locked thread: a locked M runs its goroutine only.
TEST_P(LockOSThreadTest, OtherGoroutinesNeverRunOnALockedThread) {
  struct State {
    std::atomic<int> locked_tid{0};
    std::atomic<bool> stop{false}, locked_done{false};
    std::atomic<int> seen_locked{0}, moved{0};
    std::atomic<std::int64_t> samples{0};
  };
  auto st = std::make_shared<State>();
  goro::Chan<int> tick(1);
  goro::WaitGroup ready;
  ready.add(1);
  goro::go([st, tick, &ready] {
    goro::lock_os_thread();
    const int tid = goro::os_thread_id();
    st->locked_tid.store(tid);
    ready.done();
    for (int i = 0; !st->stop.load(); i++) {
      switch (i % 3) {
        case 0:
          goro::yield();
          break;
        case 1:
          goro::sleep_for(std::chrono::microseconds(100));
          break;
        case 2:
          (void)goro::select(goro::on_recv(tick, [](std::optional<int>) {}),
                             goro::on_timeout(std::chrono::microseconds(50), [] {}));
          break;
      }
      if (goro::os_thread_id() != tid) st->moved.fetch_add(1);
    }
    goro::unlock_os_thread();
    st->locked_done.store(true);
  });
  ready.wait();
  const int locked = st->locked_tid.load();
  const int waves = static_cast<int>(scaled(50));
  const int per_wave = static_cast<int>(std::min<std::int64_t>(200, goro_test::live_cap(200)));
  for (int w = 0; w < waves; w++) {
    goro::WaitGroup wg;
    wg.add(per_wave);
    for (int i = 0; i < per_wave; i++) {
      goro::go([st, locked, &wg, i] {
        for (int k = 0; k < 4; k++) {
          if (goro::os_thread_id() == locked) st->seen_locked.fetch_add(1);
          st->samples.fetch_add(1, std::memory_order_relaxed);
          if (k == 2 && i % 5 == 0) {
            goro::sleep_for(std::chrono::microseconds(10));
          } else {
            goro::yield();
          }
        }
        wg.done();
      });
    }
    if (w % 10 == 0) (void)tick.try_send(w);
    wg.wait();
  }
  st->stop.store(true);
  wait_or_die([&] { return st->locked_done.load(); }, 30, "the locked goroutine");
  EXPECT_EQ(st->seen_locked.load(), 0) << "goroutines ran on the locked thread " << locked << " ("
                                       << st->samples.load() << " samples)";
  EXPECT_EQ(st->moved.load(), 0) << "the locked goroutine left its thread";
  EXPECT_GT(st->samples.load(), 0);
}

// A locked goroutine that parks (here: on a channel nobody sends to until the end) must not
// keep its processor: with GOMAXPROCS=1 especially, every other goroutine still runs. A runtime
// whose locked M held on to its P while parked would starve them (detected after 10 s).
TEST_P(LockOSThreadTest, ParkedLockedGoroutineDoesNotHoldItsProcessor) {
  struct State {
    goro::Chan<int> wake{0};  // unbuffered
    std::atomic<int> ran{0};
    std::atomic<bool> locked_done{false}, parked{false};
    int tid_before = 0, tid_after = -1;
  };
  auto st = std::make_shared<State>();
  goro::go([st] {
    goro::lock_os_thread();
    st->tid_before = goro::os_thread_id();
    st->parked.store(true);
    (void)st->wake.recv();
    st->tid_after = goro::os_thread_id();
    goro::unlock_os_thread();
    st->locked_done.store(true);
  });
  ASSERT_TRUE(wait_until([&] { return st->parked.load(); }, 10));
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const int n = static_cast<int>(scaled(1000));
  for (int i = 0; i < n; i++) {
    goro::go([st] {
      goro::yield();
      st->ran.fetch_add(1);
    });
  }
  const bool all_ran = wait_until([&] { return st->ran.load() == n; }, 10);
  // Unbuffered: the send completes once the locked goroutine took the value.
  std::thread([st] { st->wake.send(1); }).join();
  wait_or_die([&] { return st->locked_done.load() && st->ran.load() == n; }, 60,
              "goroutines behind a parked locked goroutine");
  EXPECT_TRUE(all_ran) << "only " << st->ran.load() << " of " << n
                       << " goroutines ran while a locked goroutine was parked";
  EXPECT_EQ(st->tid_after, st->tid_before);
}

// A thread_local written after locking keeps its value (and its address) across parks: the
// goroutine is on the same thread, and nothing else ran there to change it.
thread_local int tl_value = 0;
__attribute__((noinline)) int* tl_address() {
  return &tl_value;
}

TEST_P(LockOSThreadTest, ThreadLocalStateStaysVisibleWhileLocked) {
  const int kLocked = 6;
  const int rounds = static_cast<int>(scaled(300));
  Failures fails;
  std::atomic<int> done{0};
  for (int g = 0; g < kLocked; g++) {
    goro::go([&fails, &done, rounds, g] {
      goro::lock_os_thread();
      const int mine = 1000 + g;
      *tl_address() = mine;
      int* const addr = tl_address();
      for (int r = 0; r < rounds; r++) {
        if (r % 2 == 0) {
          goro::yield();
        } else {
          goro::sleep_for(std::chrono::microseconds(20));
        }
        if (*tl_address() != mine || tl_address() != addr) {
          fails.add("goroutine " + std::to_string(g) + " round " + std::to_string(r) +
                    ": thread_local is " + std::to_string(*tl_address()) + ", want " +
                    std::to_string(mine));
          break;
        }
        // Unlocked goroutines scribble over the thread_local of whatever thread they get.
        goro::go([] { *tl_address() = -1; });
      }
      goro::unlock_os_thread();
      done.fetch_add(1);
    });
  }
  wait_or_die([&] { return done.load() == kLocked; }, 120, "thread_local goroutines");
  fails.report();
}

// Nesting: the depth counts every lock_os_thread(); the goroutine stays wired until the last
// unlock; an unlock without a lock throws std::logic_error (and changes nothing); a goroutine
// started by a locked goroutine starts unlocked.
TEST_P(LockOSThreadTest, NestingDepthAndUnbalancedUnlock) {
  Failures fails;
  std::atomic<bool> done{false};
  goro::go([&] {
    auto expect = [&](bool ok, const std::string& what) {
      if (!ok) fails.add(what);
    };
    expect(goro::os_thread_lock_depth() == 0, "a new goroutine is locked");
    bool threw = false;
    try {
      goro::unlock_os_thread();
    } catch (const std::logic_error&) {
      threw = true;
    }
    expect(threw, "unbalanced unlock on an unlocked goroutine did not throw std::logic_error");
    expect(goro::os_thread_lock_depth() == 0, "a failed unlock changed the depth");
    goro::lock_os_thread();
    const int tid = goro::os_thread_id();
    goro::lock_os_thread();
    goro::lock_os_thread();
    expect(goro::os_thread_lock_depth() == 3, "depth after 3 locks is not 3");
    std::atomic<int> child_depth{-1};
    goro::WaitGroup wg;
    wg.add(1);
    goro::go([&] {
      child_depth.store(goro::os_thread_lock_depth());
      wg.done();
    });
    wg.wait();
    expect(child_depth.load() == 0, "a goroutine started by a locked one starts locked");
    goro::unlock_os_thread();
    goro::unlock_os_thread();
    expect(goro::os_thread_lock_depth() == 1, "depth after 3 locks and 2 unlocks is not 1");
    // Still wired with depth 1.
    for (int i = 0; i < 20; i++) {
      goro::sleep_for(std::chrono::microseconds(50));
      expect(goro::os_thread_id() == tid, "left its thread while the depth was 1");
    }
    goro::unlock_os_thread();
    expect(goro::os_thread_lock_depth() == 0, "depth after balanced unlocks is not 0");
    threw = false;
    try {
      goro::unlock_os_thread();
    } catch (const std::logic_error&) {
      threw = true;
    }
    expect(threw, "unlock after balanced unlocks did not throw std::logic_error");
    expect(goro::os_thread_lock_depth() == 0, "a failed unlock changed the depth");
    done.store(true);
  });
  wait_or_die([&] { return done.load(); }, 30, "nesting goroutine");
  fails.report();
}

// A goroutine that returns while locked (here with depth 1 or 2) takes its thread with it: the
// thread's /proc/self/task entry disappears shortly after. 50 of them in a row do not make the
// process's thread count grow (each thread exits; the others keep running on fresh threads),
// and goroutines started afterwards still run.
TEST_P(LockOSThreadTest, GoroutineExitingWhileLockedTakesItsThread) {
  const int n = 50;
  const int base_threads = goro::num_threads();
  std::vector<int> tids;
  int max_threads = base_threads;
  for (int i = 0; i < n; i++) {
    std::atomic<int> tid{0};
    goro::go([&tid, i] {
      goro::lock_os_thread();
      if (i % 2 == 1) goro::lock_os_thread();
      goro::yield();
      tid.store(goro::os_thread_id());
    });
    ASSERT_TRUE(wait_until([&] { return tid.load() != 0; }, 10)) << "goroutine " << i;
    tids.push_back(tid.load());
    EXPECT_TRUE(wait_until([&] { return !thread_alive(tids.back()); }, 5))
        << "goroutine " << i << " returned locked but its thread " << tids.back()
        << " is still alive";
    max_threads = std::max(max_threads, goro::num_threads());
  }
  EXPECT_EQ(std::set<int>(tids.begin(), tids.end()).size(), tids.size())
      << "a thread survived its locked goroutine and ran another";
  // Threads that were needed to replace the exited ones: at most a few beyond the processors.
  EXPECT_LE(goro::num_threads(), base_threads + procs() + 4)
      << "threads went from " << base_threads << " to " << goro::num_threads();
  EXPECT_LE(max_threads, base_threads + procs() + 4);
  // The scheduler still works.
  std::atomic<int> ran{0};
  const int m = 100;
  for (int i = 0; i < m; i++) {
    goro::go([&ran] {
      goro::yield();
      ran.fetch_add(1);
    });
  }
  wait_or_die([&] { return ran.load() == m; }, 30, "goroutines after locked exits");
}

// Locked goroutines exit while many unlocked goroutines are busy: nothing gets lost.
TEST_P(LockOSThreadTest, LockedExitsUnderLoad) {
  const int n = static_cast<int>(scaled(40));
  std::atomic<int> busy_done{0}, locked_done{0};
  const int busy = 200;
  for (int i = 0; i < busy; i++) {
    goro::go([&busy_done] {
      for (int k = 0; k < 50; k++) goro::yield();
      busy_done.fetch_add(1);
    });
  }
  for (int i = 0; i < n; i++) {
    goro::go([&locked_done] {
      goro::lock_os_thread();
      goro::sleep_for(std::chrono::microseconds(100));
      locked_done.fetch_add(1);
    });
  }
  wait_or_die([&] { return busy_done.load() == busy && locked_done.load() == n; }, 60,
              "busy and locked goroutines");
  EXPECT_TRUE(wait_until([] { return goro::num_goroutine() == 0; }, 10));
}

INSTANTIATE_TEST_SUITE_P(Procs, LockOSThreadTest, ::testing::Values(1, 2, 8),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return "P" + std::to_string(info.param);
                         });

// On a plain thread (main, or a std::thread) lock/unlock only count: the depth follows, the
// thread id is the thread's own, and an unbalanced unlock throws std::logic_error.
TEST(LockOSThreadPlain, PlainThreadOnlyCounts) {
  auto body = [] {
    EXPECT_EQ(goro::os_thread_id(), sys_gettid());
    EXPECT_EQ(goro::os_thread_lock_depth(), 0);
    EXPECT_THROW(goro::unlock_os_thread(), std::logic_error);
    goro::lock_os_thread();
    EXPECT_EQ(goro::os_thread_lock_depth(), 1);
    goro::lock_os_thread();
    EXPECT_EQ(goro::os_thread_lock_depth(), 2);
    EXPECT_EQ(goro::os_thread_id(), sys_gettid());
    goro::unlock_os_thread();
    goro::unlock_os_thread();
    EXPECT_EQ(goro::os_thread_lock_depth(), 0);
    EXPECT_THROW(goro::unlock_os_thread(), std::logic_error);
    EXPECT_EQ(goro::os_thread_lock_depth(), 0);
    EXPECT_FALSE(goro::in_goroutine());
  };
  body();
  std::thread(body).join();
  // The count is per thread: main's lock is not another thread's.
  goro::lock_os_thread();
  std::thread([] { EXPECT_EQ(goro::os_thread_lock_depth(), 0); }).join();
  EXPECT_EQ(goro::os_thread_lock_depth(), 1);
  goro::unlock_os_thread();
  // A locked plain thread can still wait for goroutines.
  goro::lock_os_thread();
  goro::WaitGroup wg;
  wg.add(1);
  goro::go([&wg] {
    EXPECT_EQ(goro::os_thread_lock_depth(), 0);
    wg.done();
  });
  wg.wait();
  goro::unlock_os_thread();
}

}  // namespace
