// time_test.cpp - goro::sleep_for / sleep_until, goro::after, goro::Timer and goro::Ticker, from
// goroutines, plain threads and both, with GOMAXPROCS 1, 2 and 8: never early, deadline order,
// stop/reset semantics (Go 1.23: no stale value after stop or reset returns), races between
// stop/reset and firing, many sleepers, and no busy-waiting while goroutines sleep.
//
// Upper bounds on durations here are hang guards (seconds of slack), never timing assertions.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <numeric>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "goro/goro.hpp"
#include "test_util.hpp"

namespace {

using goro_test::scaled;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// ---- Harness (as in chan_test.cpp) ----------------------------------------------------------

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
  explicit Tasks(Mode mode) : mode_(mode) {}
  Tasks(const Tasks&) = delete;
  Tasks& operator=(const Tasks&) = delete;
  ~Tasks() { join(); }

  template <class F>
  bool spawn(F f) {
    bool thread = mode_ == Mode::kThreads || (mode_ == Mode::kMixed && (n_++ % 2 == 1));
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
  int n_ = 0;
  std::atomic<int> remaining_{0};
  std::vector<std::thread> threads_;
};

class TimeTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override { goro::set_gomaxprocs(GetParam().procs); }
  void TearDown() override {
    EXPECT_TRUE(goro_test::wait_until([] { return goro::num_goroutine() == 0; }))
        << "goroutines left: " << goro::num_goroutine();
  }
  Mode mode() const { return GetParam().mode; }
  int procs() const { return GetParam().procs; }
};

// ---- sleep_for / sleep_until ------------------------------------------------------------------

TEST_P(TimeTest, SleepNeverWakesEarly) {
  std::atomic<int> early{0}, late{0};
  Tasks tasks(mode());
  for (int k = 0; k < 8; k++) {
    tasks.spawn([&, k] {
      for (auto d : {1ms, 5ms, 20ms, 3ms}) {
        auto want = d + std::chrono::milliseconds(k);
        auto t0 = Clock::now();
        goro::sleep_for(want);
        auto got = Clock::now() - t0;
        if (got < want) early++;
        if (got > want + 2s) late++;

        auto deadline = Clock::now() + want;
        goro::sleep_until(deadline);
        if (Clock::now() < deadline) early++;
        if (Clock::now() > deadline + 2s) late++;
      }
      // Sub-millisecond and odd units round up, never down.
      auto t1 = Clock::now();
      goro::sleep_for(std::chrono::microseconds(300));
      if (Clock::now() - t1 < 300us) early++;
      auto t2 = Clock::now();
      goro::sleep_for(std::chrono::duration<double, std::milli>(2.5));
      if (Clock::now() - t2 < 2500us) early++;
    });
  }
  tasks.join();
  EXPECT_EQ(early.load(), 0) << "a sleep returned before its deadline";
  EXPECT_EQ(late.load(), 0) << "a sleep overslept by more than 2 s";
}

TEST_P(TimeTest, ZeroNegativeAndPastSleepsReturnAtOnce) {
  Tasks tasks(mode());
  for (int k = 0; k < 4; k++) {
    tasks.spawn([] {
      auto t0 = Clock::now();
      for (int i = 0; i < 100; i++) {
        goro::sleep_for(0ms);
        goro::sleep_for(-5ms);
        goro::sleep_for(std::chrono::nanoseconds(-1));
        goro::sleep_until(Clock::now() - 1h);
        goro::sleep_until(Clock::time_point{});
      }
      EXPECT_LT(goro_test::seconds_since(t0), 2.0);
    });
  }
  tasks.join();
}

// A goroutine sleeping at GOMAXPROCS 1 does not keep other goroutines from running.
TEST_P(TimeTest, SleepingGoroutineYieldsItsThread) {
  goro::Chan<int> ch(0);
  std::atomic<bool> slept{false};
  Tasks tasks(mode());
  tasks.spawn([&] {
    goro::sleep_for(50ms);
    slept = true;
  });
  tasks.spawn([&] {
    // Runs (and finishes) while the other sleeps.
    int s = 0;
    for (int i = 0; i < 1000; i++) s += i;
    EXPECT_EQ(s, 499500);
    EXPECT_FALSE(slept.load());
  });
  tasks.join();
  EXPECT_TRUE(slept.load());
}

// Waking from sleep_for must not write into the caller's stack. A goroutine sleeps, then at
// once fills a stack array (which lands where the sleep's frame was) with a pattern and checks it
// a few microseconds later. Run in a child process: the bug it looks for (timer.cpp's timers_run
// clears Timer::running after the callback readied the sleeper, but sleep.cpp's Sleeper is on
// the sleeper's stack, already reused) can also crash the process.
__attribute__((noinline)) int probe_stack() {
  volatile std::uint64_t a[256];
  for (auto& x : a) x = ~0ull;
  for (int spin = 0; spin < 20000; spin++) asm volatile("" ::: "memory");
  int bad = 0;
  for (auto& x : a) bad += x != ~0ull;
  return bad;
}

int run_sleep_probe(int procs, Mode mode, std::int64_t iters) {
  goro::set_gomaxprocs(procs);
  std::atomic<int> bad{0};
  Tasks tasks(mode);
  for (int g = 0; g < 16; g++) {
    tasks.spawn([&, g] {
      for (std::int64_t i = 0; i < iters; i++) {
        goro::sleep_for(std::chrono::microseconds(50 + (i * 7 + g * 13) % 200));
        bad += probe_stack();
      }
    });
  }
  tasks.join();
  return bad.load();
}

TEST_P(TimeTest, SleepDoesNotCorruptTheGoroutineStack) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const std::int64_t iters = std::max<std::int64_t>(300, scaled(1000));
  const int procs = this->procs();
  const Mode mode = this->mode();
  EXPECT_EXIT(
      {
        int bad = run_sleep_probe(procs, mode, iters);
        if (bad != 0) std::fprintf(stderr, "%d stack words changed after sleep_for\n", bad);
        std::fflush(stderr);
        std::_Exit(bad == 0 ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "")
      << "goro::sleep_for wrote into the goroutine's stack after it woke";
}

// ---- Deadline order
// --------------------------------------------------------------------------------

// Sleepers with deadlines 1..50 ms (from a common start), started in random order, wake in
// deadline order; only deadlines less than 2 ms apart may swap (5 ms in sanitizer builds, whose
// slow wake-up paths let a woken sleeper be overtaken, and when plain threads sleep: a woken
// thread runs when the kernel gives it a CPU, which on a loaded 2-core machine takes
// milliseconds, so its recorded order is the kernel's). An attempt in which the machine itself
// got in the way - a sleeper that only started after the common start, or one that recorded
// its wake-up more than 20 ms late (the OS did not run its thread) - proves nothing about the
// timers and is repeated, up to 6 attempts; an order violation in an undisturbed attempt fails.
TEST_P(TimeTest, TimersFireInDeadlineOrder) {
  const int kN = 50;
  // Also 5 ms with more Ps than CPUs: the Ms running the woken goroutines then wait for the
  // kernel as plain threads do.
  const bool kernel_orders =
      mode() != Mode::kGoroutines ||
      goro::gomaxprocs() > static_cast<int>(std::thread::hardware_concurrency());
  const int slack_ms = goro_test::kSanitizerBuild || kernel_orders ? 5 : 2;
  // An attempt in which some sleeper woke more than 4 slacks late was disturbed by the
  // machine (an M descheduled by the kernel: seen under ctest -j2 on 2 CPUs, a 2 ms inversion
  // at GOMAXPROCS 2): its order is not judged, and another attempt is made.
  const auto disturbed_after = std::chrono::milliseconds(4 * slack_ms);
  std::string last_failure;
  int undisturbed = 0;
  for (int attempt = 0; attempt < 6 && undisturbed == 0; attempt++) {
    std::vector<int> ms(kN);
    std::iota(ms.begin(), ms.end(), 1);
    std::shuffle(ms.begin(), ms.end(), std::mt19937(static_cast<unsigned>(attempt + 7)));
    std::vector<int> order(kN, 0);
    std::atomic<int> next{0};
    std::atomic<bool> disturbed{false};
    auto base = Clock::now() + 20ms;  // time to start every sleeper first
    {
      Tasks tasks(mode());
      for (int i = 0; i < kN; i++) {
        tasks.spawn([&, d = ms[static_cast<std::size_t>(i)]] {
          const auto deadline = base + std::chrono::milliseconds(d);
          if (Clock::now() >= base) disturbed = true;
          goro::sleep_until(deadline);
          order[static_cast<std::size_t>(next.fetch_add(1))] = d;
          if (Clock::now() > deadline + disturbed_after) disturbed = true;
        });
      }
    }
    if (disturbed.load()) continue;
    undisturbed++;
    for (int i = 0; i < kN && last_failure.empty(); i++) {
      for (int j = i + 1; j < kN; j++) {
        if (order[static_cast<std::size_t>(i)] >= order[static_cast<std::size_t>(j)] + slack_ms) {
          last_failure = "deadline " + std::to_string(order[static_cast<std::size_t>(i)]) +
                         " ms woke before deadline " +
                         std::to_string(order[static_cast<std::size_t>(j)]) + " ms";
          break;
        }
      }
    }
  }
  EXPECT_EQ(last_failure, "");
  if (undisturbed == 0) {
    std::printf("note: every attempt was disturbed by the machine's load; order not judged\n");
  }
}

// Sleepers whose deadlines all pass while their one P is held (a goroutine spinning with a
// NoPreempt alive) wake in deadline order once it is free. The P's M then fires their timers
// in one batch; when each readied goroutine took the P's runnext, the latest deadline ran
// first and the rest after it (Go does the same). (An idle M may fire them instead, into the
// global queue, in order too.)
TEST_P(TimeTest, SleepersDueTogetherWakeInDeadlineOrder) {
  if (mode() != Mode::kGoroutines || procs() != 1) {
    GTEST_SKIP() << "GOMAXPROCS 1 with goroutines: one P fires the whole batch";
  }
  if (goro_test::kChaosBuild) GTEST_SKIP() << "the chaos build randomizes run-queue order";
  constexpr int kN = 8;
  for (int attempt = 0; attempt < 3; attempt++) {
    std::vector<int> order(kN, -1);
    std::atomic<int> parked{0}, next{0};
    const auto base = Clock::now() + 20ms;
    std::vector<int> spawn(kN);
    std::iota(spawn.begin(), spawn.end(), 0);
    std::shuffle(spawn.begin(), spawn.end(), std::mt19937(static_cast<unsigned>(attempt + 1)));
    goro::WaitGroup wg;
    wg.add(kN + 1);
    for (int i : spawn) {
      goro::go([&, i] {
        parked++;
        goro::sleep_until(base + std::chrono::microseconds(500 * (i + 1)));
        order[static_cast<std::size_t>(next.fetch_add(1))] = i;
        wg.done();
      });
    }
    goro_test::wait_or_die([&] { return parked.load() == kN; }, 30, "sleepers did not start");
    goro::go([&] {
      goro::NoPreempt hold;
      while (Clock::now() < base + 10ms) {
      }
      wg.done();
    });
    wg.wait();
    for (int k = 0; k < kN; k++) {
      EXPECT_EQ(order[static_cast<std::size_t>(k)], k)
          << "attempt " << attempt << ": wake-up " << k << " was the sleeper with deadline "
          << order[static_cast<std::size_t>(k)];
    }
  }
}

// ---- after
// ----------------------------------------------------------------------------------------

TEST_P(TimeTest, After) {
  Tasks tasks(mode());
  for (int k = 0; k < 4; k++) {
    tasks.spawn([k] {
      auto d = std::chrono::milliseconds(10 + 5 * k);
      auto t0 = Clock::now();
      auto ch = goro::after(d);
      EXPECT_EQ(ch.cap(), 1u);
      auto tp = ch.recv();
      auto t1 = Clock::now();
      ASSERT_TRUE(tp.has_value());
      EXPECT_GE(*tp, t0 + d) << "after fired early";
      EXPECT_LE(*tp, t1);
      EXPECT_GE(t1 - t0, d);
      EXPECT_LT(t1 - t0, d + 2s);
      // Exactly one value.
      auto t2 = Clock::now();
      int i = goro::select(goro::on_recv(ch), goro::on_timeout(30ms));
      EXPECT_EQ(i, 1) << "a second value";
      EXPECT_GE(Clock::now() - t2, 30ms);

      // Zero and negative durations fire at once.
      auto t3 = Clock::now();
      EXPECT_TRUE(goro::after(0ms).recv().has_value());
      EXPECT_TRUE(goro::after(-1s).recv().has_value());
      EXPECT_LT(goro_test::seconds_since(t3), 2.0);

      // In a select with a channel that never becomes ready.
      goro::Chan<int> never(0);
      EXPECT_EQ(goro::select(goro::on_recv(never), goro::on_recv(goro::after(5ms))), 1);

      // Dropped without being received: frees itself, no crash.
      for (int n = 0; n < 500; n++) (void)goro::after(std::chrono::microseconds(n % 50));
    });
  }
  tasks.join();
}

// ---- Timer --------------------------------------------------------------------------------------

TEST_P(TimeTest, TimerFires) {
  Tasks tasks(mode());
  for (int k = 0; k < 3; k++) {
    tasks.spawn([] {
      auto t0 = Clock::now();
      goro::Timer t(15ms);
      auto v = t.c().recv();
      ASSERT_TRUE(v.has_value());
      EXPECT_GE(*v, t0 + 15ms);
      EXPECT_GE(Clock::now(), t0 + 15ms);
      EXPECT_EQ(t.c().cap(), 1u);
      EXPECT_FALSE(t.stop()) << "stop after fire (value received) returns false";
      EXPECT_FALSE(t.stop());
      // A moved timer keeps working, and the old channel handle still refers to its channel.
      goro::Timer a(10ms);
      auto ch = a.c();
      goro::Timer b = std::move(a);
      EXPECT_TRUE(b.c() == ch);
      EXPECT_TRUE(b.c().recv().has_value());
    });
  }
  tasks.join();
}

TEST_P(TimeTest, TimerStopBeforeFire) {
  Tasks tasks(mode());
  for (int k = 0; k < 4; k++) {
    tasks.spawn([] {
      goro::Timer t(40ms);
      goro::sleep_for(5ms);
      EXPECT_TRUE(t.stop()) << "stop before fire returns true";
      EXPECT_FALSE(t.stop()) << "second stop returns false";
      goro::sleep_for(80ms);
      EXPECT_FALSE(t.c().try_recv().has_value()) << "a stopped timer fired";
      EXPECT_EQ(t.c().len(), 0u);
    });
  }
  tasks.join();
}

TEST_P(TimeTest, TimerStopAfterFireDiscardsValue) {
  Tasks tasks(mode());
  for (int k = 0; k < 4; k++) {
    tasks.spawn([] {
      goro::Timer t(2ms);
      // Wait until it has fired (the value sits in the channel), without receiving it.
      auto deadline = Clock::now() + 5s;
      while (t.c().len() == 0 && Clock::now() < deadline) goro::sleep_for(1ms);
      EXPECT_EQ(t.c().len(), 1u);
      EXPECT_FALSE(t.stop()) << "stop after fire returns false";
      // Go 1.23: no stale value is received after stop returns.
      EXPECT_FALSE(t.c().try_recv().has_value()) << "stale value after stop";
    });
  }
  tasks.join();
}

TEST_P(TimeTest, TimerReset) {
  Tasks tasks(mode());
  for (int k = 0; k < 3; k++) {
    tasks.spawn([] {
      // Reset of an armed timer: returns true, fires at the new deadline only.
      goro::Timer t(1h);
      auto t0 = Clock::now();
      EXPECT_TRUE(t.reset(20ms)) << "reset of an armed timer returns true";
      auto v = t.c().recv();
      ASSERT_TRUE(v.has_value());
      EXPECT_GE(*v, t0 + 20ms);
      EXPECT_LT(*v, t0 + 1h);

      // Reset after it fired and was received: returns false, fires again.
      auto t1 = Clock::now();
      EXPECT_FALSE(t.reset(10ms));
      v = t.c().recv();
      ASSERT_TRUE(v.has_value());
      EXPECT_GE(*v, t1 + 10ms);

      // Reset after it fired, value not received: the stale value is discarded.
      auto deadline = Clock::now() + 5s;
      EXPECT_FALSE(t.reset(1ms));
      while (t.c().len() == 0 && Clock::now() < deadline) goro::sleep_for(1ms);
      auto t2 = Clock::now();
      EXPECT_FALSE(t.reset(30ms));
      EXPECT_FALSE(t.c().try_recv().has_value()) << "stale value after reset";
      v = t.c().recv();
      ASSERT_TRUE(v.has_value());
      EXPECT_GE(*v, t2 + 30ms) << "the value received after reset is from before it";

      // Reset to a later deadline: nothing at the earlier one.
      goro::Timer u(10ms);
      EXPECT_TRUE(u.reset(80ms));
      goro::sleep_for(40ms);
      EXPECT_FALSE(u.c().try_recv().has_value()) << "fired at the old deadline";
      EXPECT_TRUE(u.c().recv().has_value());

      // Reset of a stopped timer re-arms it.
      goro::Timer w(1h);
      EXPECT_TRUE(w.stop());
      EXPECT_FALSE(w.reset(5ms));
      EXPECT_TRUE(w.c().recv().has_value());
    });
  }
  tasks.join();
}

// Destroying a Timer stops it: a channel handle kept from it gets nothing.
TEST_P(TimeTest, TimerDestroyedBeforeFire) {
  Tasks tasks(mode());
  for (int k = 0; k < 4; k++) {
    tasks.spawn([] {
      goro::Chan<Clock::time_point> ch;
      {
        goro::Timer t(20ms);
        ch = t.c();
      }
      goro::sleep_for(60ms);
      EXPECT_FALSE(ch.try_recv().has_value()) << "a destroyed timer fired";
      for (int n = 0; n < 200; n++) goro::Timer t(std::chrono::microseconds(n % 40));
    });
  }
  tasks.join();
}

// ---- Ticker
// -----------------------------------------------------------------------------------------

TEST_P(TimeTest, TickerDeliversTicksAndStopEndsThem) {
  Tasks tasks(mode());
  for (int k = 0; k < 3; k++) {
    tasks.spawn([] {
      const auto period = 10ms;
      auto t0 = Clock::now();
      goro::Ticker tk(period);
      EXPECT_EQ(tk.c().cap(), 1u);
      std::optional<Clock::time_point> prev;
      for (int i = 0; i < 5; i++) {
        auto v = tk.c().recv();
        ASSERT_TRUE(v.has_value());
        if (prev) {
          EXPECT_GT(*v, *prev);
        }
        prev = v;
      }
      // The 5th tick is due 5 periods after the start at the earliest.
      EXPECT_GE(Clock::now() - t0, 5 * period);
      EXPECT_GE(*prev, t0 + 5 * period);
      tk.stop();
      EXPECT_FALSE(tk.c().try_recv().has_value()) << "tick received after stop returned";
      goro::sleep_for(4 * period);
      EXPECT_FALSE(tk.c().try_recv().has_value()) << "tick received after stop returned";

      // reset: a new period, counted from the reset.
      auto t1 = Clock::now();
      tk.reset(5ms);
      for (int i = 0; i < 4; i++) ASSERT_TRUE(tk.c().recv().has_value());
      EXPECT_GE(Clock::now() - t1, 20ms);
      tk.stop();

      // A slow receiver misses ticks instead of queueing them.
      goro::Ticker fast(1ms);
      goro::sleep_for(30ms);
      EXPECT_LE(fast.c().len(), 1u);
      EXPECT_TRUE(fast.c().recv().has_value());
    });
  }
  tasks.join();
}

TEST_P(TimeTest, TickerRejectsNonPositivePeriods) {
  EXPECT_THROW(goro::Ticker(0ms), std::invalid_argument);
  EXPECT_THROW(goro::Ticker(-1ms), std::invalid_argument);
  goro::Ticker t(1h);
  EXPECT_THROW(t.reset(0ms), std::invalid_argument);
  EXPECT_THROW(t.reset(-5s), std::invalid_argument);
  t.stop();
}

// A fast ticker (1 µs: it is due at every scheduler pass) stopped while it fires: no tick is
// received after stop() returned. In the goroutine-only runs, goroutines that yield in a loop
// keep every M passing through the scheduler (and so running due timers) while the tickers tick.
// (Not with thread tasks: see ThreadTimersFireWhileGoroutinesKeepEveryPBusy.)
TEST_P(TimeTest, FastTickerStop) {
  const int rounds = static_cast<int>(scaled(1'500));
  std::atomic<int> late{0};
  std::atomic<bool> stop{false};
  Tasks busy(Mode::kGoroutines);
  for (int b = 0; b < (mode() == Mode::kGoroutines ? 2 : 0); b++) {
    busy.spawn([&] {
      while (!stop.load(std::memory_order_relaxed)) goro::yield();
    });
  }
  {
    Tasks tasks(mode());
    for (int k = 0; k < 4; k++) {
      tasks.spawn([&, k] {
        for (int r = 0; r < rounds; r++) {
          goro::Ticker tk(std::chrono::microseconds(1 + (r + k) % 3));
          (void)tk.c().recv();
          (void)tk.c().recv();
          tk.stop();
          if (tk.c().try_recv().has_value()) late++;
          goro::select(goro::on_timeout(std::chrono::microseconds(50)));
          if (tk.c().try_recv().has_value()) late++;
        }
      });
    }
  }
  stop = true;
  busy.join();
  EXPECT_EQ(late.load(), 0) << "ticks received after Ticker::stop returned";
}

// Timers armed by a plain thread fire while goroutines keep every P busy (yielding, so their Ms
// pass through the scheduler all the time). Checked by polling, so that a timer that never
// fires fails the test instead of hanging it. Some Ps were retired first (GOMAXPROCS lowered).
TEST_P(TimeTest, ThreadTimersFireWhileGoroutinesKeepEveryPBusy) {
  if (mode() != Mode::kThreads) GTEST_SKIP() << "timers armed by a plain thread";
  goro::set_gomaxprocs(8);
  goro::set_gomaxprocs(procs());
  std::atomic<bool> stop{false};
  Tasks busy(Mode::kGoroutines);
  for (int b = 0; b < 2 * procs(); b++) {
    busy.spawn([&] {
      while (!stop.load(std::memory_order_relaxed)) goro::yield();
    });
  }
  int never_fired = 0;
  for (int i = 0; i < 20; i++) {
    auto ch = goro::after(1ms);
    if (!goro_test::wait_until([&] { return ch.len() == 1; }, 2.0)) never_fired++;
  }
  stop = true;
  busy.join();
  EXPECT_EQ(never_fired, 0) << "goro::after(1ms) timers, armed by a plain thread, that had not "
                               "fired after 2 s (of 20)";
}

// ---- Races
// ------------------------------------------------------------------------------------------

// Each task owns a timer with a deadline of a few microseconds and stops or resets it at about the
// time it fires. After stop() returns, nothing arrives; after reset(d) at time t, every value
// received is from at or after t + d (no stale value).
TEST_P(TimeTest, StopAndResetRaceWithFiring) {
  const int rounds = static_cast<int>(scaled(mode() == Mode::kThreads ? 1'000 : 2'000));
  std::atomic<int> after_stop{0}, stale{0}, stop_true_but_fired{0};
  Tasks tasks(mode());
  for (int k = 0; k < 8; k++) {
    tasks.spawn([&, k] {
      std::mt19937 rng(static_cast<unsigned>(k));
      goro::Timer t(std::chrono::microseconds(rng() % 100));
      for (int r = 0; r < rounds; r++) {
        auto d = std::chrono::microseconds(rng() % 100);
        auto t0 = Clock::now();
        t.reset(d);
        for (int spin = static_cast<int>(rng() % 3000); spin > 0; spin--) {
          if (spin % 512 == 0) goro::yield();
        }
        switch (rng() % 3) {
          case 0: {
            bool was = t.stop();
            if (t.c().try_recv()) after_stop++;
            if (was) {
              // It had not fired: it never will.
              goro::select(goro::on_recv(t.c(), [&] { stop_true_but_fired++; }),
                           goro::on_timeout(std::chrono::microseconds(150)));
            }
            break;
          }
          case 1: {
            // Receive with a timeout, then check the value is from this arming.
            goro::select(goro::on_recv(t.c(),
                                       [&](std::optional<Clock::time_point> v) {
                                         if (!v || *v < t0 + d) stale++;
                                       }),
                         goro::on_timeout(std::chrono::microseconds(200)));
            break;
          }
          default: {
            auto t1 = Clock::now();
            auto d2 = std::chrono::microseconds(rng() % 50);
            t.reset(d2);
            auto v = t.c().recv();
            if (!v || *v < t1 + d2) stale++;
            break;
          }
        }
      }
      t.stop();
      if (t.c().try_recv()) after_stop++;
    });
  }
  tasks.join();
  EXPECT_EQ(after_stop.load(), 0) << "a value was received after stop() returned";
  EXPECT_EQ(stop_true_but_fired.load(), 0) << "stop() returned true, yet the timer fired";
  EXPECT_EQ(stale.load(), 0) << "a value from before reset() was received after it";
}

// The header says a Timer is thread-safe (except destroying or moving it concurrently): several
// tasks stop and reset one shared Timer while it fires, and a receiver drains it. No crash, no
// hang, and the timer still works afterwards. Run in a child process, since a broken timer heap
// may crash.
TEST_P(TimeTest, SharedTimerConcurrentStopAndReset) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const int rounds = static_cast<int>(scaled(5'000));
  const int procs = this->procs();
  const Mode mode = this->mode();
  EXPECT_EXIT(
      {
        goro::set_gomaxprocs(procs);
        goro::Timer t(10us);
        std::atomic<bool> done{false};
        std::atomic<int> workers{4};
        Tasks tasks(mode);
        for (int k = 0; k < 4; k++) {
          tasks.spawn([&, k] {
            std::mt19937 rng(static_cast<unsigned>(k));
            for (int r = 0; r < rounds; r++) {
              if (rng() % 2 == 0) {
                t.reset(std::chrono::microseconds(rng() % 50));
              } else {
                t.stop();
              }
              if (r % 64 == 0) goro::yield();
            }
            workers--;
          });
        }
        tasks.spawn([&] {
          while (workers.load() > 0) {
            goro::select(goro::on_recv(t.c()), goro::on_timeout(1ms));
          }
          done = true;
        });
        tasks.join(60);
        t.stop();
        bool ok = true;
        // Still works: a reset fires once, a stop prevents firing.
        t.reset(1ms);
        if (!t.c().recv().has_value()) ok = false;
        t.reset(30ms);
        if (!t.stop()) ok = false;
        goro::sleep_for(50ms);
        if (t.c().try_recv().has_value()) ok = false;
        std::_Exit(ok && done.load() ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "")
      << "concurrent stop/reset on one Timer";
}

// ---- Many sleepers, idle CPU
// ----------------------------------------------------------------------

TEST_P(TimeTest, ManySleepersAllWake) {
  const std::int64_t n = mode() == Mode::kThreads ? 64 : scaled(100'000);
  std::atomic<std::int64_t> woke{0}, early{0};
  auto base = Clock::now();
  // Spawned from the test's thread; each sleeps until a deadline spread over 200 ms.
  std::vector<std::thread> threads;
  for (std::int64_t i = 0; i < n; i++) {
    auto deadline = base + 50ms + std::chrono::microseconds((i * 7919) % 200'000);
    auto body = [&woke, &early, deadline] {
      goro::sleep_until(deadline);
      if (Clock::now() < deadline) early++;
      woke++;
    };
    bool thread = mode() == Mode::kThreads || (mode() == Mode::kMixed && i % 1000 == 0);
    if (thread) {
      threads.emplace_back(body);
    } else {
      goro::go(body);
    }
  }
  goro_test::wait_or_die([&] { return woke.load() == n; }, 60,
                         "sleepers did not all wake: " + std::to_string(n));
  for (auto& t : threads) t.join();
  EXPECT_EQ(early.load(), 0);
  EXPECT_LT(goro_test::seconds_since(base), 30.0);
}

// While 10,000 goroutines sleep for 500 ms (2,000 for 10 s in sanitizer builds), the process uses
// little CPU: no thread busy-waits for the timers. (A hang/busy-loop guard, not a benchmark.)
TEST_P(TimeTest, SleepingGoroutinesUseLittleCpu) {
  if (mode() != Mode::kGoroutines) GTEST_SKIP() << "goroutines only";
  // Sanitizer builds spawn slowly (TSan under ctest -j 2: 10,000 took ~6 s, and 2,000 more
  // than 3 s while another TSan process spawned too): fewer sleepers and a longer sleep keep
  // the measured window clear of the spawns and of the wake-ups.
  const std::int64_t n = goro_test::kSanitizerBuild ? 2'000 : 10'000;
  std::atomic<std::int64_t> started{0}, woke{0};
  const auto t_start = Clock::now();
  auto deadline = t_start + (goro_test::kSanitizerBuild ? 10'000ms : 500ms);
  for (std::int64_t i = 0; i < n; i++) {
    goro::go([&, deadline] {
      started++;
      goro::sleep_until(deadline);
      woke++;
    });
  }
  goro_test::wait_or_die([&] { return started.load() == n; }, 30, "sleepers did not start");
  const double spawn_s = goro_test::seconds_since(t_start);
  // Let every goroutine park, then measure until a little before the deadline.
  std::this_thread::sleep_for(20ms);
  auto cpu = [] {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  };
  double c0 = cpu();
  auto w0 = Clock::now();
  // The window ends before the deadline: the wake-ups themselves use CPU.
  std::this_thread::sleep_until(deadline - 20ms);
  double wall = goro_test::seconds_since(w0);
  double used = cpu() - c0;
  goro_test::wait_or_die([&] { return woke.load() == n; }, 30, "sleepers did not all wake");
  ASSERT_GT(wall, 0.05) << "the spawns took " << spawn_s
                        << " s: no time was left to measure before the deadline";
  EXPECT_LT(used, 0.2 * wall) << "CPU " << used << " s over " << wall << " s of sleeping";
}

INSTANTIATE_TEST_SUITE_P(All, TimeTest,
                         ::testing::Values(Param{1, Mode::kGoroutines}, Param{1, Mode::kThreads},
                                           Param{1, Mode::kMixed}, Param{2, Mode::kGoroutines},
                                           Param{2, Mode::kThreads}, Param{2, Mode::kMixed},
                                           Param{8, Mode::kGoroutines}, Param{8, Mode::kThreads},
                                           Param{8, Mode::kMixed}),
                         param_name);

}  // namespace
