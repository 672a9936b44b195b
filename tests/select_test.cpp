// select_test.cpp - goro::select: receive, send, default, timeout and deadline cases; uniform
// choice among ready cases; wake-ups by send, receive and close; exactly-once delivery under
// contention with closes; nil channel cases; handlers, return values and exceptions. Each run
// from goroutines, plain threads and both, with GOMAXPROCS 1, 2 and 8.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
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

// Goroutines parked forever on purpose (a select that can never fire).
std::atomic<std::int64_t> g_parked_forever{0};

// Waits about d, from a goroutine (parks) or a thread (blocks): a select with only a timeout
// case. (Not goro::sleep_for, so that a sleep_for bug - it once zeroed 4 bytes of the sleeper's
// stack after waking, see TimeTest.SleepDoesNotCorruptTheGoroutineStack - shows up in
// time_test, not as random crashes here.)
void pause(std::chrono::nanoseconds d) {
  goro::select(goro::on_timeout(d));
}

template <class Pred>
bool poll_until(Pred&& pred, double timeout_s = 10.0) {
  auto t0 = Clock::now();
  for (;;) {
    if (pred()) return true;
    if (goro_test::seconds_since(t0) > timeout_s) return pred();
    pause(1ms);
  }
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

class SelectTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override { goro::set_gomaxprocs(GetParam().procs); }
  void TearDown() override {
    EXPECT_TRUE(goro_test::wait_until([] {
      return goro::num_goroutine() == g_parked_forever.load();
    })) << "goroutines left: "
        << goro::num_goroutine() << ", parked on purpose " << g_parked_forever.load();
  }
  Mode mode() const { return GetParam().mode; }
};

// Runs f once as a task of the mode (Mixed: a goroutine) and waits for it.
template <class F>
void run_one(Mode mode, F f) {
  Tasks t(mode == Mode::kMixed ? Mode::kGoroutines : mode);
  t.spawn(std::move(f));
  t.join();
}

// Lifetime-checking element (see chan_test.cpp).
struct Tracked {
  static constexpr std::uint32_t kAlive = 0x600DF00D, kDead = 0xDEADBEEF;
  static std::atomic<std::int64_t> objects, errors;
  std::uint32_t magic;
  std::int64_t id;
  explicit Tracked(std::int64_t i) noexcept : magic(kAlive), id(i) { objects++; }
  Tracked(Tracked&& o) noexcept : magic(kAlive), id(o.id) {
    if (o.magic != kAlive) errors++;
    o.id = -1;
    objects++;
  }
  Tracked& operator=(Tracked&& o) noexcept {
    if (magic != kAlive || o.magic != kAlive) errors++;
    id = o.id;
    o.id = -1;
    return *this;
  }
  ~Tracked() {
    if (magic != kAlive) {
      errors++;
      return;
    }
    magic = kDead;
    objects--;
  }
};
std::atomic<std::int64_t> Tracked::objects{0};
std::atomic<std::int64_t> Tracked::errors{0};

// ---- Single cases ----------------------------------------------------------------------------

TEST_P(SelectTest, RecvCase) {
  run_one(mode(), [] {
    goro::Chan<int> empty(1), ready(1), unbuf(0);
    ready.send(5);
    int got = -1;
    int i = goro::select(goro::on_recv(empty, [&](std::optional<int>) { got = -100; }),
                         goro::on_recv(unbuf, [&](std::optional<int>) { got = -200; }),
                         goro::on_recv(ready, [&](std::optional<int> v) { got = v.value_or(-3); }));
    EXPECT_EQ(i, 2);
    EXPECT_EQ(got, 5);
    EXPECT_EQ(ready.len(), 0u);
    // Without a handler, and with a handler taking no argument.
    ready.send(6);
    EXPECT_EQ(goro::select(goro::on_recv(empty), goro::on_recv(ready)), 1);
    EXPECT_EQ(ready.len(), 0u) << "the value was not taken";
    ready.send(7);
    bool ran = false;
    EXPECT_EQ(goro::select(goro::on_recv(ready, [&] { ran = true; })), 0);
    EXPECT_TRUE(ran);
    // A closed channel's receive case is ready and yields nullopt.
    goro::Chan<int> closed(0);
    closed.close();
    std::optional<int> v = 1;
    EXPECT_EQ(goro::select(goro::on_recv(empty),
                           goro::on_recv(closed, [&](std::optional<int> x) { v = x; })),
              1);
    EXPECT_FALSE(v.has_value());
  });
}

TEST_P(SelectTest, SendCase) {
  run_one(mode(), [] {
    goro::Chan<int> full(1), room(2), unbuf(0);
    full.send(0);
    bool ran = false;
    int i = goro::select(goro::on_send(full, 1), goro::on_send(unbuf, 2),
                         goro::on_send(room, 3, [&] { ran = true; }));
    EXPECT_EQ(i, 2);
    EXPECT_TRUE(ran);
    EXPECT_EQ(room.len(), 1u);
    EXPECT_EQ(full.len(), 1u);
    EXPECT_EQ(room.recv().value_or(-1), 3);
    EXPECT_EQ(full.recv().value_or(-1), 0) << "the full channel's value changed";
    // Move-only values.
    goro::Chan<std::unique_ptr<int>> up(1);
    EXPECT_EQ(goro::select(goro::on_send(up, std::make_unique<int>(9))), 0);
    auto p = up.recv();
    ASSERT_TRUE(p.has_value() && *p);
    EXPECT_EQ(**p, 9);
  });
}

TEST_P(SelectTest, DefaultCase) {
  run_one(mode(), [] {
    goro::Chan<int> empty(1), full(1), unbuf(0);
    full.send(1);
    bool def = false;
    int i = goro::select(goro::on_recv(empty), goro::on_send(full, 2), goro::on_recv(unbuf),
                         goro::on_send(unbuf, 3), goro::on_default([&] { def = true; }));
    EXPECT_EQ(i, 4);
    EXPECT_TRUE(def);
    EXPECT_EQ(full.len(), 1u);
    EXPECT_EQ(empty.len(), 0u);
    // The default case may come first; its index is its position.
    EXPECT_EQ(goro::select(goro::on_default(), goro::on_recv(empty)), 0);
    EXPECT_EQ(goro::select(goro::on_default()), 0);
    // Never chosen while another case is ready.
    for (int k = 0; k < 1000; k++) {
      ASSERT_TRUE(empty.try_send(k));
      int j = goro::select(goro::on_default(), goro::on_recv(empty), goro::on_send(full, 9));
      ASSERT_EQ(j, 1) << "default chosen although a receive was ready";
    }
  });
}

// A timeout or deadline case fires when its time has come, never early; the earliest one wins.
TEST_P(SelectTest, TimeoutAndDeadline) {
  Tasks tasks(mode());
  for (int k = 0; k < 3; k++) {
    tasks.spawn([k] {
      goro::Chan<int> empty(0);
      auto t0 = Clock::now();
      bool ran = false;
      int i = goro::select(goro::on_recv(empty), goro::on_timeout(30ms, [&] { ran = true; }));
      double s = goro_test::seconds_since(t0);
      EXPECT_EQ(i, 1);
      EXPECT_TRUE(ran);
      EXPECT_GE(s, 0.030) << "timeout fired early";
      EXPECT_LT(s, 2.0);

      auto t1 = Clock::now();
      i = goro::select(goro::on_deadline(t1 + 40ms), goro::on_recv(empty),
                       goro::on_timeout(20ms + std::chrono::milliseconds(k)));
      s = goro_test::seconds_since(t1);
      EXPECT_EQ(i, 2) << "the earliest of two deadlines fires";
      EXPECT_GE(s, 0.020);
      EXPECT_LT(s, 2.0);

      auto t2 = Clock::now();
      i = goro::select(goro::on_recv(empty), goro::on_deadline(t2 + 25ms));
      s = goro_test::seconds_since(t2);
      EXPECT_EQ(i, 1);
      EXPECT_GE(Clock::now(), t2 + 25ms);
      EXPECT_LT(s, 2.0);

      // Already past: fires at once.
      auto t3 = Clock::now();
      EXPECT_EQ(goro::select(goro::on_recv(empty), goro::on_deadline(t3 - 1s)), 1);
      EXPECT_EQ(goro::select(goro::on_recv(empty), goro::on_timeout(-5ms)), 1);
      EXPECT_EQ(goro::select(goro::on_timeout(0ms)), 0);
      EXPECT_LT(goro_test::seconds_since(t3), 1.0);

      // Only a timeout case.
      auto t4 = Clock::now();
      EXPECT_EQ(goro::select(goro::on_timeout(10ms)), 0);
      EXPECT_GE(Clock::now(), t4 + 10ms);
      // A ready channel wins over a timeout that has not expired.
      goro::Chan<int> ready(1);
      ready.send(1);
      EXPECT_EQ(goro::select(goro::on_timeout(1s), goro::on_recv(ready)), 1);
      // With a default case, a timeout that has not expired does not fire; default does.
      EXPECT_EQ(goro::select(goro::on_timeout(1s), goro::on_recv(empty), goro::on_default()), 2);
    });
  }
  tasks.join();
}

// ---- Fairness ---------------------------------------------------------------------------------

// Among ready cases, select picks uniformly at random.
TEST_P(SelectTest, UniformChoiceAmongReadyCases) {
  const std::int64_t trials = std::max<std::int64_t>(20'000, scaled(100'000));
  run_one(mode(), [trials] {
    // Two ready receive cases.
    goro::Chan<int> a(1), b(1);
    a.send(0);
    b.send(1);
    std::int64_t count[2] = {0, 0};
    for (std::int64_t t = 0; t < trials; t++) {
      int i = goro::select(goro::on_recv(a), goro::on_recv(b));
      count[i]++;
      (i == 0 ? a : b).send(i);
    }
    for (int i = 0; i < 2; i++) {
      double frac = static_cast<double>(count[i]) / static_cast<double>(trials);
      EXPECT_GT(frac, 0.48) << "case " << i << " chosen " << count[i] << " of " << trials;
      EXPECT_LT(frac, 0.52) << "case " << i << " chosen " << count[i] << " of " << trials;
    }
    // Three ready cases of different kinds (two receives, one send) plus a default.
    goro::Chan<int> s(1);
    std::int64_t c3[4] = {0, 0, 0, 0};
    for (std::int64_t t = 0; t < trials; t++) {
      int i =
          goro::select(goro::on_recv(a), goro::on_send(s, 7), goro::on_recv(b), goro::on_default());
      c3[i]++;
      if (i == 0) a.send(0);
      if (i == 1) (void)s.recv();
      if (i == 2) b.send(1);
    }
    EXPECT_EQ(c3[3], 0) << "default chosen although cases were ready";
    for (int i = 0; i < 3; i++) {
      double frac = static_cast<double>(c3[i]) / static_cast<double>(trials);
      EXPECT_NEAR(frac, 1.0 / 3, 0.02) << "case " << i;
    }
    // The same channel twice: both cases are picked about equally.
    std::int64_t same[2] = {0, 0};
    for (std::int64_t t = 0; t < trials / 4; t++) {
      same[goro::select(goro::on_recv(a), goro::on_recv(a))]++;
      a.send(0);
    }
    EXPECT_NEAR(static_cast<double>(same[0]) / static_cast<double>(trials / 4), 0.5, 0.04);
  });
}

// ---- Wake-ups ---------------------------------------------------------------------------------

// A blocked select wakes when another task sends on one of its receive channels.
TEST_P(SelectTest, BlockedSelectWokenBySend) {
  goro::Chan<int> a(0), b(0), c(2);
  std::atomic<bool> returned{false};
  std::atomic<int> index{-1}, value{-1};
  Tasks tasks(mode());
  tasks.spawn([&] {
    index = goro::select(goro::on_recv(a),
                         goro::on_recv(b, [&](std::optional<int> v) { value = v.value_or(-2); }),
                         goro::on_recv(c));
    returned = true;
  });
  tasks.spawn([&] {
    pause(40ms);
    EXPECT_FALSE(returned.load()) << "select returned with nothing ready";
    b.send(11);
  });
  tasks.join();
  EXPECT_EQ(index.load(), 1);
  EXPECT_EQ(value.load(), 11);
  EXPECT_EQ(a.len() + c.len(), 0u);
}

// A blocked select with send cases wakes when another task receives; exactly its value is sent.
TEST_P(SelectTest, BlockedSelectWokenByReceive) {
  goro::Chan<int> a(0), b(0), full(1);
  full.send(-1);
  std::atomic<bool> returned{false};
  std::atomic<int> index{-1}, got{-1};
  Tasks tasks(mode());
  tasks.spawn([&] {
    index = goro::select(goro::on_send(a, 1), goro::on_send(b, 2), goro::on_send(full, 3));
    returned = true;
  });
  tasks.spawn([&] {
    pause(40ms);
    EXPECT_FALSE(returned.load()) << "select returned with nothing ready";
    got = b.recv().value_or(-2);
  });
  tasks.join();
  EXPECT_EQ(index.load(), 1);
  EXPECT_EQ(got.load(), 2);
  EXPECT_FALSE(a.try_recv().has_value());
  EXPECT_EQ(full.len(), 1u);
  EXPECT_EQ(full.recv().value_or(0), -1);
}

// Closing a channel wakes a select blocked on it: a receive case gets nullopt, a send case
// throws ChanClosed.
TEST_P(SelectTest, BlockedSelectWokenByClose) {
  {
    goro::Chan<int> a(0), b(3);
    std::atomic<int> index{-1};
    std::atomic<bool> got_nullopt{false};
    Tasks tasks(mode());
    tasks.spawn([&] {
      index = goro::select(goro::on_recv(a), goro::on_recv(b, [&](std::optional<int> v) {
                             got_nullopt = !v.has_value();
                           }));
    });
    tasks.spawn([&] {
      pause(30ms);
      EXPECT_EQ(index.load(), -1);
      b.close();
    });
    tasks.join();
    EXPECT_EQ(index.load(), 1);
    EXPECT_TRUE(got_nullopt.load());
  }
  {
    goro::Chan<int> a(0), b(0);
    std::atomic<int> outcome{0};  // 1: returned, 2: ChanClosed
    Tasks tasks(mode());
    tasks.spawn([&] {
      try {
        goro::select(goro::on_recv(b), goro::on_send(a, 5));
        outcome = 1;
      } catch (const goro::ChanClosed&) {
        outcome = 2;
      }
    });
    tasks.spawn([&] {
      pause(30ms);
      EXPECT_EQ(outcome.load(), 0);
      a.close();
    });
    tasks.join();
    EXPECT_EQ(outcome.load(), 2) << "a send case on a channel closed while waiting must throw";
    // b is untouched and still open.
    EXPECT_FALSE(b.try_send(1));
  }
  // Many selects blocked on the same channel all wake on close.
  {
    goro::Chan<int> rc(0), sc(0), other(0);
    std::atomic<int> woke{0}, started{0};
    Tasks tasks(mode());
    for (int i = 0; i < 8; i++) {
      tasks.spawn([&, i] {
        started++;
        if (i % 2 == 0) {
          std::optional<int> v = 0;
          int k = goro::select(goro::on_recv(other),
                               goro::on_recv(rc, [&](std::optional<int> x) { v = x; }));
          if (k == 1 && !v) woke++;
        } else {
          try {
            goro::select(goro::on_recv(other), goro::on_send(sc, i));
          } catch (const goro::ChanClosed&) {
            woke++;
          }
        }
      });
    }
    ASSERT_TRUE(goro_test::wait_until([&] { return started.load() == 8; }));
    pause(30ms);
    EXPECT_EQ(woke.load(), 0);
    rc.close();
    sc.close();
    tasks.join();
    EXPECT_EQ(woke.load(), 8);
  }
}

// A send case on a closed channel throws even with a default case (like Go's panic).
TEST_P(SelectTest, SendCaseOnClosedChannelThrows) {
  run_one(mode(), [] {
    goro::Chan<int> c(1), empty(1);
    c.close();
    EXPECT_THROW(goro::select(goro::on_send(c, 1), goro::on_default()), goro::ChanClosed);
    EXPECT_THROW(goro::select(goro::on_send(c, 1), goro::on_recv(empty)), goro::ChanClosed);
    EXPECT_EQ(c.len(), 0u);
  });
}

// ---- Nil channels ------------------------------------------------------------------------------

TEST_P(SelectTest, NilChannelCasesNeverFire) {
  run_one(mode(), [] {
    goro::Chan<int> nil, ready(1);
    for (int k = 0; k < 200; k++) {
      EXPECT_EQ(goro::select(goro::on_recv(nil), goro::on_send(nil, 1), goro::on_default()), 2);
      ASSERT_TRUE(ready.try_send(k));
      EXPECT_EQ(goro::select(goro::on_recv(nil), goro::on_send(nil, 1), goro::on_recv(ready)), 2);
    }
    // Only nil channels and a timeout: the timeout.
    auto t0 = Clock::now();
    EXPECT_EQ(goro::select(goro::on_recv(nil), goro::on_send(nil, 2), goro::on_timeout(20ms)), 2);
    EXPECT_GE(Clock::now(), t0 + 20ms);
  });
  // Only nil channels and no timeout, and no cases at all: blocked forever (like select {}).
  auto* returned = new std::atomic<int>(0);  // leaked with the blocked tasks
  auto nil_select = [returned] {
    goro::Chan<int> nil;
    goro::select(goro::on_recv(nil), goro::on_send(nil, 1));
    returned->fetch_add(1);
  };
  auto empty_select = [returned] {
    goro::select();
    returned->fetch_add(1);
  };
  if (mode() != Mode::kThreads) {
    g_parked_forever += 2;
    goro::go(nil_select);
    goro::go(empty_select);
  }
  if (mode() != Mode::kGoroutines) {
    std::thread(nil_select).detach();
    std::thread(empty_select).detach();
  }
  pause(100ms);
  EXPECT_EQ(returned->load(), 0) << "a select with no case that can fire returned";
}

// ---- Handlers
// ------------------------------------------------------------------------------------

TEST_P(SelectTest, HandlersRunAndIndexIsReturned) {
  run_one(mode(), [] {
    goro::Chan<int> r(1), s(1), never(0);
    std::vector<int> log;
    r.send(4);
    int i = goro::select(goro::on_recv(never, [&](std::optional<int>) { log.push_back(100); }),
                         goro::on_recv(r, [&](std::optional<int> v) { log.push_back(*v); }));
    EXPECT_EQ(i, 1);
    i = goro::select(goro::on_recv(never, [&] { log.push_back(101); }),
                     goro::on_send(s, 8, [&] { log.push_back(8); }));
    EXPECT_EQ(i, 1);
    i = goro::select(goro::on_send(s, 9, [&] { log.push_back(102); }),
                     goro::on_timeout(1ms, [&] { log.push_back(1); }));
    EXPECT_EQ(i, 1);
    i = goro::select(goro::on_send(s, 9, [&] { log.push_back(103); }),
                     goro::on_default([&] { log.push_back(0); }));
    EXPECT_EQ(i, 1);
    i = goro::select(goro::on_deadline(Clock::now() + 1ms, [&] { log.push_back(2); }));
    EXPECT_EQ(i, 0);
    EXPECT_EQ(log, (std::vector<int>{4, 8, 1, 0, 2})) << "a handler of an unchosen case ran";
    EXPECT_EQ(s.recv().value_or(-1), 8);
  });
}

// An exception from a handler propagates out of select, after the operation completed.
TEST_P(SelectTest, HandlerExceptionPropagates) {
  run_one(mode(), [] {
    goro::Chan<int> r(2), s(2), never(0);
    r.send(1);
    r.send(2);
    try {
      goro::select(goro::on_recv(never), goro::on_recv(r, [](std::optional<int> v) {
                     throw std::runtime_error("recv " + std::to_string(*v));
                   }));
      ADD_FAILURE() << "no exception";
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(std::string(e.what()), "recv 1");
    }
    EXPECT_EQ(r.len(), 1u) << "the receive completed before the handler threw";
    try {
      goro::select(goro::on_send(s, 5, [] { throw 42; }));
      ADD_FAILURE() << "no exception";
    } catch (int v) {
      EXPECT_EQ(v, 42);
    }
    EXPECT_EQ(s.len(), 1u) << "the send completed before the handler threw";
    EXPECT_THROW(goro::select(goro::on_recv(never),
                              goro::on_timeout(1ms, [] { throw std::logic_error("t"); })),
                 std::logic_error);
    EXPECT_THROW(goro::select(goro::on_recv(never), goro::on_default([] { throw 1.5; })), double);
    // The channels still work normally afterwards.
    EXPECT_EQ(r.recv().value_or(-1), 2);
    EXPECT_EQ(s.recv().value_or(-1), 5);
  });
  // A throwing handler after a blocking wait.
  goro::Chan<int> c(0);
  std::atomic<bool> caught{false};
  Tasks tasks(mode());
  tasks.spawn([&] {
    try {
      goro::select(goro::on_recv(c, [](std::optional<int>) { throw std::runtime_error("x"); }));
    } catch (const std::runtime_error&) {
      caught = true;
    }
  });
  tasks.spawn([&] {
    pause(10ms);
    c.send(1);
  });
  tasks.join();
  EXPECT_TRUE(caught.load());
}

// Values held by select cases are destroyed exactly once, chosen or not, thrown or not.
TEST_P(SelectTest, CaseValuesDestroyedExactlyOnce) {
  Tracked::objects = 0;
  Tracked::errors = 0;
  run_one(mode(), [] {
    goro::Chan<Tracked> full(1), room(4), closed(1), unbuf(0);
    full.send(Tracked(0));
    closed.close();
    for (int k = 0; k < 50; k++) {
      // Not chosen: the value of the send case dies with the select.
      EXPECT_EQ(goro::select(goro::on_send(full, Tracked(1)), goro::on_send(unbuf, Tracked(2)),
                             goro::on_default()),
                2);
      // Chosen: delivered.
      EXPECT_EQ(goro::select(goro::on_send(full, Tracked(3)), goro::on_send(room, Tracked(4))), 1);
      EXPECT_EQ(room.recv()->id, 4);
      // Thrown.
      EXPECT_THROW(goro::select(goro::on_send(closed, Tracked(5))), goro::ChanClosed);
      // A receive whose handler throws.
      room.send(Tracked(6));
      EXPECT_THROW(goro::select(goro::on_recv(room,
                                              [](std::optional<Tracked> t) {
                                                if (t) throw std::runtime_error("x");
                                              })),
                   std::runtime_error);
      // A timeout wins over an unready send case.
      EXPECT_EQ(goro::select(goro::on_send(unbuf, Tracked(7)), goro::on_timeout(0ms)), 1);
    }
  });
  EXPECT_TRUE(goro_test::wait_until([] { return Tracked::objects.load() == 0; }))
      << "objects leaked: " << Tracked::objects.load();
  EXPECT_EQ(Tracked::errors.load(), 0);
}

// ---- Same channel in several cases, many cases
// ---------------------------------------------------

// Selects with a send and a receive case on the same unbuffered channel pair up with each other
// (never with themselves).
TEST_P(SelectTest, SendAndRecvOnSameChannel) {
  const int rounds = static_cast<int>(scaled(3'000));
  goro::Chan<int> c(0);
  std::atomic<std::int64_t> sent{0}, received{0}, sum_sent{0}, sum_received{0};
  Tasks tasks(mode());
  for (int w = 0; w < 4; w++) {
    tasks.spawn([&, w] {
      for (int k = 0; k < rounds; k++) {
        int v = w * rounds + k;
        int i = goro::select(goro::on_send(c, v),
                             goro::on_recv(c, [&](std::optional<int> x) { sum_received += *x; }));
        if (i == 0) {
          sent++;
          sum_sent += v;
        } else {
          received++;
        }
      }
    });
  }
  // The selects may end unpaired (an odd number left, or all on one side): a helper drains and
  // feeds until every worker is done.
  std::atomic<bool> done{false};
  Tasks helper(mode() == Mode::kThreads ? Mode::kThreads : Mode::kGoroutines);
  helper.spawn([&] {
    while (!done.load()) {
      goro::select(goro::on_recv(c,
                                 [&](std::optional<int> x) {
                                   sum_received += *x;
                                   received++;
                                 }),
                   goro::on_send(c, 0, [&] { sent++; }), goro::on_timeout(1ms));
    }
  });
  tasks.join();
  done = true;
  helper.join();
  EXPECT_EQ(sent.load(), received.load());
  EXPECT_EQ(sum_sent.load(), sum_received.load());
}

template <std::size_t N, class F>
int select_over(std::array<goro::Chan<int>, N>& chans, F&& on_value) {
  return [&]<std::size_t... I>(std::index_sequence<I...>) {
    return goro::select(goro::on_recv(chans[I], [&](std::optional<int> v) { on_value(I, v); })...);
  }
  (std::make_index_sequence<N>{});
}

// More cases than the implementation keeps on its stack (16 waiters, 64 poll slots).
TEST_P(SelectTest, ManyCases) {
  constexpr std::size_t kN = 70;
  std::array<goro::Chan<int>, kN> chans;
  for (auto& c : chans) c = goro::Chan<int>(1);
  // Non-blocking: each channel in turn holds the only value.
  run_one(mode(), [&] {
    std::vector<int> hits(kN, 0);
    for (std::size_t k = 0; k < kN * 3; k++) {
      std::size_t want = (k * 7) % kN;
      chans[want].send(static_cast<int>(want));
      std::size_t got_index = kN;
      int i = select_over(chans, [&](std::size_t idx, std::optional<int> v) {
        got_index = idx;
        EXPECT_EQ(v.value_or(-1), static_cast<int>(idx));
      });
      EXPECT_EQ(i, static_cast<int>(want));
      EXPECT_EQ(got_index, want);
      hits[static_cast<std::size_t>(i)]++;
    }
    // All ready: over many trials every case gets picked.
    for (std::size_t c = 0; c < kN; c++) chans[c].send(static_cast<int>(c));
    std::vector<int> picked(kN, 0);
    for (int t = 0; t < 100 * static_cast<int>(kN); t++) {
      int i = select_over(chans, [](std::size_t, std::optional<int>) {});
      picked[static_cast<std::size_t>(i)]++;
      chans[static_cast<std::size_t>(i)].send(i);
    }
    for (std::size_t c = 0; c < kN; c++) EXPECT_GT(picked[c], 30) << "case " << c;
    for (auto& ch : chans) (void)ch.try_recv();
  });
  // Blocking: woken by a send on one of them.
  std::atomic<int> index{-1};
  Tasks tasks(mode());
  tasks.spawn([&] { index = select_over(chans, [](std::size_t, std::optional<int>) {}); });
  tasks.spawn([&] {
    pause(20ms);
    chans[kN - 3].send(1);
  });
  tasks.join();
  EXPECT_EQ(index.load(), static_cast<int>(kN - 3));
}

// ---- Races
// ----------------------------------------------------------------------------------------

// Both sides of an unbuffered (or 1-buffered) channel use selects with short timeouts: a value is
// either sent and received exactly once, or not sent; the timeout never swallows a value.
TEST_P(SelectTest, TimeoutRacesWithTransfer) {
  const int rounds = static_cast<int>(scaled(mode() == Mode::kGoroutines ? 4'000 : 1'500));
  for (std::size_t cap : {0u, 1u}) {
    goro::Chan<int> c(cap);
    std::vector<int> sent, got;
    Tasks tasks(mode());
    tasks.spawn([&] {
      std::mt19937 rng(1);
      int seq = 0;
      for (int k = 0; k < rounds; k++) {
        auto d = std::chrono::microseconds(rng() % 200);
        if (goro::select(goro::on_send(c, seq), goro::on_timeout(d)) == 0) sent.push_back(seq++);
      }
    });
    tasks.spawn([&] {
      std::mt19937 rng(2);
      for (int k = 0; k < rounds; k++) {
        auto d = std::chrono::microseconds(rng() % 200);
        goro::select(goro::on_recv(c, [&](std::optional<int> v) { got.push_back(*v); }),
                     goro::on_timeout(d));
      }
    });
    tasks.join();
    while (auto v = c.try_recv()) got.push_back(*v);
    EXPECT_EQ(sent, got) << "cap " << cap;
    EXPECT_GT(sent.size(), 0u);
  }
}

// Many goroutines and threads run selects with send and receive cases over several shared
// channels while others send, receive and close them. Every value whose send completed is
// received exactly once; no value whose send failed is received; per-sender order holds per
// channel.
TEST_P(SelectTest, NoLostOrDuplicatedValuesUnderContention) {
  constexpr int kChans = 4, kProducers = 6, kConsumers = 4;
  const std::int64_t quota = scaled(mode() == Mode::kGoroutines ? 5'000 : 2'000);
  std::array<goro::Chan<std::uint64_t>, kChans> ch = {
      goro::Chan<std::uint64_t>(0), goro::Chan<std::uint64_t>(0), goro::Chan<std::uint64_t>(1),
      goro::Chan<std::uint64_t>(4)};
  std::array<std::atomic<bool>, kChans> closing{};  // set just before close (under its lock)
  std::atomic<std::int64_t> sent_total{0};
  std::vector<std::int64_t> sent_count(kProducers, 0);
  // What each receiver got: (channel, value) in order; producers may receive too.
  // The last one is the rescuer's (below).
  std::vector<std::vector<std::pair<int, std::uint64_t>>> got(kProducers + kConsumers + 1);
  std::atomic<std::int64_t> moves{0};  // values received by consumers
  std::atomic<bool> producers_done{false};

  auto view = [&](std::array<bool, kChans>& closed) {
    std::array<goro::Chan<std::uint64_t>, kChans> v;
    for (int i = 0; i < kChans; i++) {
      if (closing[static_cast<std::size_t>(i)].load()) closed[static_cast<std::size_t>(i)] = true;
      if (!closed[static_cast<std::size_t>(i)])
        v[static_cast<std::size_t>(i)] = ch[static_cast<std::size_t>(i)];
    }
    return v;  // closed channels replaced by nil: their cases never fire
  };

  Tasks producers(mode()), consumers(mode()), closer(mode());
  for (int p = 0; p < kProducers; p++) {
    producers.spawn([&, p] {
      std::mt19937 rng(static_cast<unsigned>(100 + p));
      std::array<bool, kChans> closed{};
      auto& mine = got[static_cast<std::size_t>(p)];
      std::int64_t seq = 0;
      while (seq < quota) {
        auto c = view(closed);
        if (std::all_of(closed.begin(), closed.end(), [](bool b) { return b; })) break;
        std::uint64_t v = static_cast<std::uint64_t>(p) << 32 | static_cast<std::uint64_t>(seq);
        int a = static_cast<int>(rng() % kChans), b = static_cast<int>(rng() % kChans);
        auto& ca = c[static_cast<std::size_t>(a)];
        auto& cb = c[static_cast<std::size_t>(b)];
        bool ok = false;
        try {
          switch (rng() % 4) {
            case 0:
              if (!ca) continue;
              ca.send(v);
              ok = true;
              break;
            case 1:
              if (!ca && !cb) continue;  // both closed: this select could never fire
              ok = goro::select(goro::on_send(ca, v), goro::on_send(cb, v)) >= 0;
              break;
            case 2: {
              // Send on a, or receive from b (this producer then consumes).
              int i = goro::select(goro::on_send(ca, v),
                                   goro::on_recv(cb,
                                                 [&](std::optional<std::uint64_t> x) {
                                                   if (x) mine.emplace_back(b, *x);
                                                 }),
                                   goro::on_timeout(std::chrono::microseconds(rng() % 1000)));
              ok = i == 0;
              break;
            }
            default:
              ok = goro::select(goro::on_send(c[0], v), goro::on_send(c[1], v),
                                goro::on_send(c[2], v), goro::on_send(c[3], v),
                                goro::on_timeout(std::chrono::microseconds(rng() % 1000))) < 4;
              break;
          }
        } catch (const goro::ChanClosed&) {
          ok = false;
        }
        if (ok) {
          seq++;
          sent_total++;
        }
      }
      sent_count[static_cast<std::size_t>(p)] = seq;
    });
  }
  for (int r = 0; r < kConsumers; r++) {
    consumers.spawn([&, r] {
      std::mt19937 rng(static_cast<unsigned>(200 + r));
      std::array<bool, kChans> closed{};
      auto& mine = got[static_cast<std::size_t>(kProducers + r)];
      for (;;) {
        // Here "closed" means: received nullopt (closed and drained); the view is not used.
        if (std::all_of(closed.begin(), closed.end(), [](bool b) { return b; })) break;
        std::array<goro::Chan<std::uint64_t>, kChans> c;
        for (int i = 0; i < kChans; i++) {
          if (!closed[static_cast<std::size_t>(i)])
            c[static_cast<std::size_t>(i)] = ch[static_cast<std::size_t>(i)];
        }
        auto handler = [&](int i) {
          return [&, i](std::optional<std::uint64_t> x) {
            if (x) {
              mine.emplace_back(i, *x);
              moves.fetch_add(1, std::memory_order_relaxed);
            } else {
              closed[static_cast<std::size_t>(i)] = true;
            }
          };
        };
        int a = static_cast<int>(rng() % kChans);
        switch (rng() % 4) {
          case 0:
            if (!c[static_cast<std::size_t>(a)]) break;
            handler(a)(c[static_cast<std::size_t>(a)].recv());
            break;
          case 1: {
            bool is_closed = false;
            auto x = c[static_cast<std::size_t>(a)].try_recv(&is_closed);
            if (x || is_closed) handler(a)(x);
            break;
          }
          case 2:
            goro::select(goro::on_recv(c[0], handler(0)), goro::on_recv(c[1], handler(1)),
                         goro::on_recv(c[2], handler(2)), goro::on_recv(c[3], handler(3)));
            break;
          default:
            goro::select(goro::on_recv(c[0], handler(0)), goro::on_recv(c[1], handler(1)),
                         goro::on_recv(c[2], handler(2)), goro::on_recv(c[3], handler(3)),
                         goro::on_timeout(std::chrono::microseconds(rng() % 500)));
            break;
        }
      }
    });
  }
  // Close two channels while the producers are busy.
  closer.spawn([&] {
    poll_until([&] { return sent_total.load() >= quota * kProducers / 3; }, 60);
    for (int i : {0, 2}) {
      closing[static_cast<std::size_t>(i)] = true;
      ch[static_cast<std::size_t>(i)].close();
    }
  });
  // The random programs can deadlock (every producer blocked sending on channels that every
  // blocked consumer is not receiving from): when nothing moves for a while, the rescuer takes
  // whatever it can from every channel, which unblocks the senders.
  closer.spawn([&] {
    auto& mine = got[static_cast<std::size_t>(kProducers + kConsumers)];
    std::int64_t last = -1;
    while (!producers_done.load()) {
      pause(2ms);
      std::int64_t now = sent_total.load() + moves.load();
      if (now == last) {
        for (int i = 0; i < kChans; i++) {
          for (int k = 0; k < 16; k++) {
            auto x = ch[static_cast<std::size_t>(i)].try_recv();
            if (!x) break;
            mine.emplace_back(i, *x);
          }
        }
      }
      last = now;
    }
  });
  producers.join(200);
  producers_done = true;
  closer.join();
  for (int i : {1, 3}) {
    closing[static_cast<std::size_t>(i)] = true;
    ch[static_cast<std::size_t>(i)].close();
  }
  consumers.join(200);

  std::int64_t total_sent = 0;
  std::vector<std::vector<std::uint8_t>> seen(kProducers);
  for (int p = 0; p < kProducers; p++) {
    total_sent += sent_count[static_cast<std::size_t>(p)];
    seen[static_cast<std::size_t>(p)].assign(static_cast<std::size_t>(quota), 0);
  }
  std::int64_t unknown = 0, dups = 0, order = 0, total_got = 0;
  for (const auto& mine : got) {
    std::vector<std::int64_t> last(kProducers * kChans, -1);
    for (auto [chan, v] : mine) {
      auto p = static_cast<std::size_t>(v >> 32);
      auto seq = static_cast<std::int64_t>(v & 0xffffffffu);
      if (p >= kProducers || seq >= sent_count[p]) {
        unknown++;
        continue;
      }
      if (seen[p][static_cast<std::size_t>(seq)]++ != 0) dups++;
      auto& l = last[p * kChans + static_cast<std::size_t>(chan)];
      if (seq <= l) order++;
      l = seq;
      total_got++;
    }
  }
  EXPECT_EQ(unknown, 0) << "values received that were never (successfully) sent";
  EXPECT_EQ(dups, 0) << "values received twice";
  EXPECT_EQ(order, 0) << "per-sender order broken";
  EXPECT_EQ(total_got, total_sent) << "values lost";
  EXPECT_GT(total_sent, 0);
}

INSTANTIATE_TEST_SUITE_P(All, SelectTest,
                         ::testing::Values(Param{1, Mode::kGoroutines}, Param{1, Mode::kThreads},
                                           Param{1, Mode::kMixed}, Param{2, Mode::kGoroutines},
                                           Param{2, Mode::kThreads}, Param{2, Mode::kMixed},
                                           Param{8, Mode::kGoroutines}, Param{8, Mode::kThreads},
                                           Param{8, Mode::kMixed}),
                         param_name);

}  // namespace
