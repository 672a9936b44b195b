// chan_test.cpp - goro::Chan: every Go channel rule, each exercised from goroutines, from plain
// std::threads and from both at once, with GOMAXPROCS 1, 2 and 8.
//
// Rules covered: unbuffered rendezvous (the sender returns only once its value was taken, and
// the receive happens-before the send returns); buffered capacity (len/cap, try_send fails
// exactly when full, a full channel blocks senders); per-sender FIFO with several senders and
// receivers; close wakes every waiting receiver and sender; receives drain after close then
// report closed; send / try_send on a closed channel, close of a closed or nil channel throw
// goro::ChanClosed; the nil channel (try_* fail, blocking operations block forever); move-only
// element types; buffered values are destroyed exactly once when the channel is dropped;
// range-for; handle copies share the channel; and a stress run with producers and consumers
// mixing goroutines and threads.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "goro/goro.hpp"
#include "goro/testing.hpp"
#include "test_util.hpp"

namespace {

using goro_test::scaled;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// ---- Harness -------------------------------------------------------------------------------

// Polls pred every millisecond until it holds or timeout_s passes; usable from goroutines
// (pause parks a goroutine instead of blocking its thread) and threads alike.
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

// Who runs the tasks of a test: goroutines only, plain threads only, or alternately one and the
// other (so that goroutines and threads meet on the same channels).
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

// Goroutines this test binary parks forever on purpose (blocked on a nil channel), named
// kParkedForever: TearDown expects exactly these to be left.
std::atomic<std::int64_t> g_parked_forever{0};
constexpr const char* kParkedForever = "parked-forever";

// What every test's TearDown checks: no goroutine left but those (goroutines that are ending
// get 5 s, as before).
goro::testing::LeftOptions left_options() {
  return {.grace = std::chrono::seconds(5), .ignore_name_prefix = {kParkedForever}};
}

// Starts tasks as goroutines or threads (as the mode says) and waits for all of them. A task
// that does not finish within the deadline aborts the process (a lost wake-up or a deadlock in
// the runtime), since goroutines may still reference the test's stack.
class Tasks {
 public:
  explicit Tasks(Mode mode) : mode_(mode) {}
  Tasks(const Tasks&) = delete;
  Tasks& operator=(const Tasks&) = delete;
  ~Tasks() { join(); }

  // Starts f as the next task; returns true if it runs on a plain thread.
  template <class F>
  bool spawn(F f) {
    bool thread = mode_ == Mode::kThreads || (mode_ == Mode::kMixed && (n_++ % 2 == 1));
    if (thread) {
      spawn_thread(std::move(f));
    } else {
      spawn_goroutine(std::move(f));
    }
    return thread;
  }
  template <class F>
  void spawn_goroutine(F f) {
    remaining_.fetch_add(1);
    goro::go([this, f = std::move(f)]() mutable {
      f();
      remaining_.fetch_sub(1, std::memory_order_acq_rel);  // last touch of *this
    });
  }
  template <class F>
  void spawn_thread(F f) {
    remaining_.fetch_add(1);
    threads_.emplace_back([this, f = std::move(f)]() mutable {
      f();
      remaining_.fetch_sub(1, std::memory_order_acq_rel);
    });
  }

  void join(double timeout_s = 120) {
    goro_test::wait_or_die([this] { return remaining_.load(std::memory_order_acquire) == 0; },
                           timeout_s, "tasks did not finish (lost wake-up or deadlock?)");
    for (auto& t : threads_) t.join();
    threads_.clear();
  }
  int running() const { return remaining_.load(); }

 private:
  Mode mode_;
  int n_ = 0;
  std::atomic<int> remaining_{0};
  std::vector<std::thread> threads_;
};

class ChanTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override { goro::set_gomaxprocs(GetParam().procs); }
  void TearDown() override {
    goro::testing::expect_no_goroutines_left(left_options());
    EXPECT_GE(goro::num_goroutine(), g_parked_forever.load());
  }
  Mode mode() const { return GetParam().mode; }
  int procs() const { return GetParam().procs; }
};

// An element type that checks its own lifetime: every constructed object is destroyed exactly
// once, no destructor runs on storage that holds no object, no moved-from or destroyed object
// is moved from.
struct Tracked {
  static constexpr std::uint32_t kAlive = 0x600DF00D, kDead = 0xDEADBEEF;
  static std::atomic<std::int64_t> objects;  // constructed minus destroyed (shells included)
  static std::atomic<std::int64_t> values;   // objects holding a value (id >= 0)
  static std::atomic<std::int64_t> errors;   // double destroy, destroy of garbage, bad move

  std::uint32_t magic;
  std::int64_t id;

  explicit Tracked(std::int64_t i) noexcept : magic(kAlive), id(i) {
    objects++;
    values++;
  }
  Tracked(Tracked&& o) noexcept : magic(kAlive), id(o.id) {
    if (o.magic != kAlive) errors++;
    o.id = -1;
    objects++;
  }
  // (Chan<T>::iterator assigns std::optional<T>, so range-for needs move assignment.)
  Tracked& operator=(Tracked&& o) noexcept {
    if (magic != kAlive || o.magic != kAlive) errors++;
    if (this != &o) {
      if (id >= 0) values--;
      id = o.id;
      o.id = -1;
    }
    return *this;
  }
  ~Tracked() {
    if (magic != kAlive) {
      errors++;
      return;
    }
    magic = kDead;
    objects--;
    if (id >= 0) values--;
  }
  static void reset() {
    objects = 0;
    values = 0;
    errors = 0;
  }
};
std::atomic<std::int64_t> Tracked::objects{0};
std::atomic<std::int64_t> Tracked::values{0};
std::atomic<std::int64_t> Tracked::errors{0};

// ---- Unbuffered channels --------------------------------------------------------------------

// The sender is released exactly when its value is taken: a receiver that starts receiving
// only after 50 ms finds the sender still blocked, and the send returns after that receive
// began. And the other way round: a receiver waits for a late sender.
TEST_P(ChanTest, UnbufferedRendezvous) {
  for (int round = 0; round < 2; round++) {
    const bool late_receiver = round == 0;
    goro::Chan<int> ch(0);
    std::atomic<bool> send_returned{false}, recv_returned{false};
    std::atomic<std::int64_t> send_returned_ns{0}, recv_started_ns{0}, send_started_ns{0};
    std::atomic<int> got{-1};
    Tasks tasks(mode());
    tasks.spawn([&] {
      if (!late_receiver) pause(50ms);
      send_started_ns = now_ns();
      ch.send(7);
      send_returned_ns = now_ns();
      send_returned = true;
    });
    tasks.spawn([&] {
      if (late_receiver) pause(50ms);
      EXPECT_FALSE(send_returned.load()) << "send returned before any receive";
      recv_started_ns = now_ns();
      std::optional<int> v = ch.recv();
      EXPECT_FALSE(!late_receiver && send_started_ns.load() == 0) << "recv returned first";
      got = v.value_or(-2);
      recv_returned = true;
    });
    tasks.join();
    EXPECT_EQ(got.load(), 7);
    EXPECT_GE(send_returned_ns.load(), recv_started_ns.load())
        << "the send returned before its receiver started receiving";
    EXPECT_EQ(ch.len(), 0u);
  }
}

// Many hand-offs in a row. Memory model: the receive happens-before the send returns, so what
// the receiver wrote before receiving is visible to the sender once send returns (plain,
// non-atomic data), and what the sender wrote before sending is visible to the receiver.
TEST_P(ChanTest, UnbufferedHandoffOrdersMemory) {
  const int n = static_cast<int>(scaled(20'000));
  goro::Chan<int> ch(0);
  std::vector<int> before_recv(static_cast<std::size_t>(n), 0);  // written by the receiver
  std::vector<int> before_send(static_cast<std::size_t>(n), 0);  // written by the sender
  std::atomic<int> bad_sender{0}, bad_receiver{0};
  Tasks tasks(mode());
  tasks.spawn([&] {
    for (int i = 0; i < n; i++) {
      before_send[static_cast<std::size_t>(i)] = i + 1;
      ch.send(i);
      // The receive of value i happened-before this point.
      if (before_recv[static_cast<std::size_t>(i)] != i + 1) bad_sender++;
    }
  });
  tasks.spawn([&] {
    for (int i = 0; i < n; i++) {
      before_recv[static_cast<std::size_t>(i)] = i + 1;
      std::optional<int> v = ch.recv();
      if (!v || *v != i || before_send[static_cast<std::size_t>(i)] != i + 1) bad_receiver++;
    }
  });
  tasks.join();
  EXPECT_EQ(bad_sender.load(), 0);
  EXPECT_EQ(bad_receiver.load(), 0);
}

// try_send on an unbuffered channel succeeds exactly when a receiver is waiting; try_recv
// exactly when a sender is waiting.
TEST_P(ChanTest, UnbufferedTryOperations) {
  goro::Chan<int> ch(0);
  Tasks tasks(mode());
  tasks.spawn([&] {
    EXPECT_FALSE(ch.try_send(1)) << "no receiver is waiting";
    bool closed = true;
    EXPECT_FALSE(ch.try_recv(&closed).has_value()) << "no sender is waiting";
    EXPECT_FALSE(closed);
    EXPECT_EQ(ch.len(), 0u);
    EXPECT_EQ(ch.cap(), 0u);
  });
  tasks.join();

  // A blocked receiver: try_send eventually succeeds (once the receiver is queued), and hands
  // the value straight to it.
  std::atomic<int> got{-1};
  tasks.spawn([&] { got = ch.recv().value_or(-2); });
  std::atomic<bool> sent{false};
  tasks.spawn([&] {
    auto deadline = Clock::now() + 10s;
    while (!ch.try_send(42)) {
      if (Clock::now() > deadline) return;
      goro::yield();
    }
    sent = true;
  });
  tasks.join();
  EXPECT_TRUE(sent.load());
  EXPECT_EQ(got.load(), 42);

  // A blocked sender: try_recv eventually gets its value, and the send then returns.
  std::atomic<bool> send_done{false};
  tasks.spawn([&] {
    ch.send(43);
    send_done = true;
  });
  std::atomic<int> tried{-1};
  tasks.spawn([&] {
    auto deadline = Clock::now() + 10s;
    for (;;) {
      if (auto v = ch.try_recv()) {
        tried = *v;
        return;
      }
      if (Clock::now() > deadline) return;
      goro::yield();
    }
  });
  tasks.join();
  EXPECT_EQ(tried.load(), 43);
  EXPECT_TRUE(send_done.load());
}

// ---- Buffered channels ----------------------------------------------------------------------

TEST_P(ChanTest, BufferedCapacityAndTrySend) {
  for (std::size_t cap : {1u, 3u, 16u}) {
    goro::Chan<int> ch(cap);
    Tasks tasks(mode());
    tasks.spawn([&, cap] {
      EXPECT_EQ(ch.cap(), cap);
      for (std::size_t i = 0; i < cap; i++) {
        EXPECT_EQ(ch.len(), i);
        EXPECT_TRUE(ch.try_send(static_cast<int>(i))) << "room left: " << cap - i;
      }
      EXPECT_EQ(ch.len(), cap);
      EXPECT_FALSE(ch.try_send(-1)) << "the channel is full";
      EXPECT_FALSE(ch.try_send(-1));
      EXPECT_EQ(ch.len(), cap);
      // Take one, and exactly one slot frees up.
      EXPECT_EQ(ch.try_recv().value_or(-2), 0);
      EXPECT_EQ(ch.len(), cap - 1);
      EXPECT_TRUE(ch.try_send(100));
      EXPECT_FALSE(ch.try_send(-1));
      // FIFO: 1 .. cap-1, then 100.
      for (std::size_t i = 1; i < cap; i++) EXPECT_EQ(ch.recv().value_or(-2), static_cast<int>(i));
      EXPECT_EQ(ch.recv().value_or(-2), 100);
      EXPECT_EQ(ch.len(), 0u);
      bool closed = true;
      EXPECT_FALSE(ch.try_recv(&closed).has_value());
      EXPECT_FALSE(closed);
    });
    tasks.join();
  }
}

// A send on a full channel blocks until a receiver makes room, and only then.
TEST_P(ChanTest, BufferedSendBlocksWhileFull) {
  const std::size_t cap = 3;
  goro::Chan<int> ch(cap);
  std::atomic<int> sent{0};
  Tasks tasks(mode());
  tasks.spawn([&] {
    for (int i = 0; i < static_cast<int>(cap) + 2; i++) {
      ch.send(i);
      sent++;
    }
  });
  std::atomic<bool> ok{false};
  tasks.spawn([&] {
    if (!poll_until([&] { return sent.load() == static_cast<int>(cap); })) return;
    pause(50ms);
    EXPECT_EQ(sent.load(), static_cast<int>(cap)) << "a send did not block on a full channel";
    EXPECT_EQ(ch.len(), cap);
    EXPECT_EQ(ch.recv().value_or(-1), 0);
    // One slot freed: exactly one more send completes.
    if (!poll_until([&] { return sent.load() == static_cast<int>(cap) + 1; })) return;
    pause(30ms);
    EXPECT_EQ(sent.load(), static_cast<int>(cap) + 1);
    for (int i = 1; i < static_cast<int>(cap) + 2; i++) EXPECT_EQ(ch.recv().value_or(-1), i);
    ok = true;
  });
  tasks.join();
  EXPECT_TRUE(ok.load());
  EXPECT_EQ(sent.load(), static_cast<int>(cap) + 2);
}

// A receive on an empty buffered channel blocks until a value arrives.
TEST_P(ChanTest, BufferedRecvBlocksWhileEmpty) {
  goro::Chan<int> ch(4);
  std::atomic<std::int64_t> recv_done_ns{0}, send_ns{0};
  Tasks tasks(mode());
  tasks.spawn([&] {
    EXPECT_EQ(ch.recv().value_or(-1), 5);
    recv_done_ns = now_ns();
  });
  tasks.spawn([&] {
    pause(50ms);
    EXPECT_EQ(recv_done_ns.load(), 0);
    send_ns = now_ns();
    ch.send(5);
  });
  tasks.join();
  EXPECT_GE(recv_done_ns.load(), send_ns.load());
}

// ---- Ordering and exactly-once delivery -------------------------------------------------------

// Several senders and receivers on one channel: each value (sender, seq) is received exactly
// once, and every receiver sees each sender's values in increasing seq order.
TEST_P(ChanTest, PerSenderFifoManySendersAndReceivers) {
  const int kSenders = 4, kReceivers = 4;
  const std::int64_t per = scaled(mode() == Mode::kGoroutines ? 20'000 : 5'000);
  for (std::size_t cap : {0u, 1u, 7u, 64u}) {
    goro::Chan<std::uint64_t> ch(cap);
    std::vector<std::vector<std::uint64_t>> got(kReceivers);
    Tasks senders(mode()), receivers(mode());
    for (int r = 0; r < kReceivers; r++) {
      receivers.spawn([&, r] {
        auto& mine = got[static_cast<std::size_t>(r)];
        while (auto v = ch.recv()) mine.push_back(*v);
      });
    }
    for (int s = 0; s < kSenders; s++) {
      senders.spawn([&, s] {
        for (std::int64_t i = 0; i < per; i++) {
          ch.send(static_cast<std::uint64_t>(s) << 32 | static_cast<std::uint64_t>(i));
        }
      });
    }
    senders.join();
    ch.close();
    receivers.join();

    std::vector<std::uint8_t> seen(static_cast<std::size_t>(kSenders * per), 0);
    std::int64_t order_errors = 0, dups = 0, total = 0;
    for (const auto& mine : got) {
      std::vector<std::int64_t> last(kSenders, -1);
      for (std::uint64_t v : mine) {
        int s = static_cast<int>(v >> 32);
        auto seq = static_cast<std::int64_t>(v & 0xffffffffu);
        ASSERT_LT(s, kSenders);
        ASSERT_LT(seq, per);
        if (seq <= last[static_cast<std::size_t>(s)]) order_errors++;
        last[static_cast<std::size_t>(s)] = seq;
        auto& slot = seen[static_cast<std::size_t>(s * per + seq)];
        if (slot++ != 0) dups++;
        total++;
      }
    }
    EXPECT_EQ(order_errors, 0) << "cap " << cap;
    EXPECT_EQ(dups, 0) << "cap " << cap;
    EXPECT_EQ(total, kSenders * per) << "cap " << cap << ": values lost";
  }
}

// ---- Close ------------------------------------------------------------------------------------

// close() wakes every receiver blocked on the channel; each gets nullopt. What the closer wrote
// before close() is visible to a receiver that reports closed.
TEST_P(ChanTest, CloseWakesEveryBlockedReceiver) {
  for (std::size_t cap : {0u, 4u}) {
    const int kReceivers = 8;
    goro::Chan<int> ch(cap);
    std::atomic<int> started{0}, closed_seen{0}, values_seen{0}, bad_memory{0};
    int written_before_close = 0;  // plain: published by close()
    Tasks tasks(mode());
    for (int i = 0; i < kReceivers; i++) {
      tasks.spawn([&] {
        started++;
        std::optional<int> v = ch.recv();
        if (v) {
          values_seen++;
        } else {
          closed_seen++;
          if (written_before_close != 99) bad_memory++;
        }
      });
    }
    ASSERT_TRUE(goro_test::wait_until([&] { return started.load() == kReceivers; }));
    pause(30ms);  // let them block (if one is late it still must see "closed")
    EXPECT_EQ(closed_seen.load() + values_seen.load(), 0) << "a receiver returned before close";
    written_before_close = 99;
    ch.close();
    tasks.join();
    EXPECT_EQ(closed_seen.load(), kReceivers) << "cap " << cap;
    EXPECT_EQ(values_seen.load(), 0);
    EXPECT_EQ(bad_memory.load(), 0);
    // Receives keep reporting closed.
    bool closed = false;
    EXPECT_FALSE(ch.try_recv(&closed).has_value());
    EXPECT_TRUE(closed);
    EXPECT_FALSE(ch.recv().has_value());
  }
}

// Values buffered before close are still received, in order, then receives report closed.
TEST_P(ChanTest, ReceivesDrainBufferAfterClose) {
  goro::Chan<int> ch(5);
  Tasks tasks(mode());
  tasks.spawn([&] {
    for (int i = 0; i < 3; i++) ch.send(i);
    ch.close();
  });
  tasks.join();
  tasks.spawn([&] {
    EXPECT_EQ(ch.len(), 3u);
    bool closed = true;
    auto v = ch.try_recv(&closed);
    EXPECT_EQ(v.value_or(-1), 0);
    EXPECT_FALSE(closed) << "closed reported while values remain";
    EXPECT_EQ(ch.recv().value_or(-1), 1);
    EXPECT_EQ(ch.recv().value_or(-1), 2);
    EXPECT_EQ(ch.len(), 0u);
    for (int k = 0; k < 3; k++) {
      EXPECT_FALSE(ch.recv().has_value());
      closed = false;
      EXPECT_FALSE(ch.try_recv(&closed).has_value());
      EXPECT_TRUE(closed);
    }
  });
  tasks.join();
}

TEST_P(ChanTest, SendOnClosedThrows) {
  for (std::size_t cap : {0u, 2u}) {
    goro::Chan<int> ch(cap);
    ch.close();
    std::atomic<int> throws{0};
    Tasks tasks(mode());
    for (int i = 0; i < 4; i++) {
      tasks.spawn([&] {
        try {
          ch.send(1);
        } catch (const goro::ChanClosed&) {
          throws++;
        }
        try {
          (void)ch.try_send(1);
        } catch (const goro::ChanClosed&) {
          throws++;
        }
      });
    }
    tasks.join();
    EXPECT_EQ(throws.load(), 8) << "cap " << cap;
    EXPECT_EQ(ch.len(), 0u) << "a send on a closed channel was buffered";
  }
  // A buffered channel with room that is closed: still throws, and the buffered values remain.
  goro::Chan<int> ch(3);
  ch.send(1);
  ch.close();
  EXPECT_THROW(ch.send(2), goro::ChanClosed);
  EXPECT_THROW((void)ch.try_send(2), goro::ChanClosed);
  EXPECT_EQ(ch.len(), 1u);
  EXPECT_EQ(ch.recv().value_or(-1), 1);
  EXPECT_FALSE(ch.recv().has_value());
}

TEST_P(ChanTest, CloseOfClosedAndNilThrows) {
  std::atomic<int> throws{0}, closes{0};
  goro::Chan<int> ch(1);
  Tasks tasks(mode());
  // Several closers race: exactly one close succeeds.
  for (int i = 0; i < 4; i++) {
    tasks.spawn([&] {
      try {
        ch.close();
        closes++;
      } catch (const goro::ChanClosed&) {
        throws++;
      }
      goro::Chan<int> nil;
      try {
        nil.close();
      } catch (const goro::ChanClosed& e) {
        throws++;
        EXPECT_NE(std::string(e.what()), "");
      }
    });
  }
  tasks.join();
  EXPECT_EQ(closes.load(), 1);
  EXPECT_EQ(throws.load(), 3 + 4);
  // ChanClosed is a std::logic_error.
  try {
    ch.close();
    ADD_FAILURE() << "close of closed did not throw";
  } catch (const std::logic_error&) {
  }
}

// A sender blocked when the channel is closed wakes and throws ChanClosed; its value is not
// delivered. With a full buffer, the values already buffered are still received.
TEST_P(ChanTest, BlockedSendersThrowOnClose) {
  for (std::size_t cap : {0u, 2u}) {
    const int kSenders = 6;
    goro::Chan<int> ch(cap);
    std::atomic<int> started{0}, threw{0}, delivered{0};
    std::vector<std::atomic<bool>> sent_ok(kSenders);
    Tasks tasks(mode());
    for (int i = 0; i < kSenders; i++) {
      tasks.spawn([&, i] {
        started++;
        try {
          ch.send(i);
          sent_ok[static_cast<std::size_t>(i)] = true;
          delivered++;
        } catch (const goro::ChanClosed&) {
          threw++;
        }
      });
    }
    ASSERT_TRUE(goro_test::wait_until([&] { return started.load() == kSenders; }));
    ASSERT_TRUE(goro_test::wait_until([&] { return delivered.load() == static_cast<int>(cap); }));
    pause(30ms);
    EXPECT_EQ(delivered.load(), static_cast<int>(cap)) << "a send returned on a full channel";
    ch.close();
    tasks.join();
    EXPECT_EQ(threw.load(), kSenders - static_cast<int>(cap)) << "cap " << cap;
    // Exactly the senders that returned normally have their values in the buffer.
    std::vector<int> got;
    while (auto v = ch.recv()) got.push_back(*v);
    EXPECT_EQ(got.size(), cap);
    for (int v : got) EXPECT_TRUE(sent_ok[static_cast<std::size_t>(v)].load()) << v;
  }
}

// Close racing with blocked and arriving senders and receivers: every send either completes
// (its value is received exactly once) or throws ChanClosed.
TEST_P(ChanTest, CloseRacesWithSendersAndReceivers) {
  const int rounds = static_cast<int>(scaled(mode() == Mode::kGoroutines ? 200 : 60));
  std::int64_t lost = 0, dup = 0;
  for (int round = 0; round < rounds; round++) {
    std::size_t cap = static_cast<std::size_t>(round % 3);
    goro::Chan<int> ch(cap);
    const int kSenders = 3, kPer = 50;
    std::atomic<int> ok_count{0};
    std::vector<std::atomic<std::uint8_t>> ok(kSenders * kPer), seen(kSenders * kPer);
    Tasks tasks(mode());
    for (int s = 0; s < kSenders; s++) {
      tasks.spawn([&, s] {
        for (int i = 0; i < kPer; i++) {
          try {
            ch.send(s * kPer + i);
            ok[static_cast<std::size_t>(s * kPer + i)] = 1;
            ok_count++;
          } catch (const goro::ChanClosed&) {
            return;
          }
        }
      });
    }
    for (int r = 0; r < 2; r++) {
      tasks.spawn([&] {
        while (auto v = ch.recv()) seen[static_cast<std::size_t>(*v)]++;
      });
    }
    tasks.spawn([&, round] {
      if (round % 2 == 0) goro::yield();
      while (ok_count.load() < round % 40) goro::yield();
      ch.close();
    });
    tasks.join();
    for (int i = 0; i < kSenders * kPer; i++) {
      if (ok[static_cast<std::size_t>(i)] && seen[static_cast<std::size_t>(i)] != 1) lost++;
      if (seen[static_cast<std::size_t>(i)] > 1 ||
          (!ok[static_cast<std::size_t>(i)] && seen[static_cast<std::size_t>(i)] != 0)) {
        dup++;
      }
    }
  }
  EXPECT_EQ(lost, 0);
  EXPECT_EQ(dup, 0);
}

// ---- The nil channel ----------------------------------------------------------------------------

TEST_P(ChanTest, NilChannel) {
  goro::Chan<int> nil;
  Tasks tasks(mode());
  tasks.spawn([&] {
    EXPECT_FALSE(static_cast<bool>(nil));
    EXPECT_EQ(nil.len(), 0u);
    EXPECT_EQ(nil.cap(), 0u);
    EXPECT_FALSE(nil.try_send(1));
    bool closed = true;
    EXPECT_FALSE(nil.try_recv(&closed).has_value());
    EXPECT_FALSE(closed) << "a nil channel is not closed";
    EXPECT_THROW(nil.close(), goro::ChanClosed);
    EXPECT_TRUE(nil == goro::Chan<int>());
    EXPECT_FALSE(nil == goro::Chan<int>(1));
  });
  tasks.join();

  // Blocking operations on a nil channel block forever: one receiver and one sender, started
  // the way the mode says, are still blocked after 100 ms. They cannot be woken, so they stay
  // parked (goroutines) or blocked (detached threads) until the process exits; their flags
  // are leaked with them.
  auto* returned = new std::atomic<int>(0);
  auto blocked_recv = [returned] {
    goro::Chan<int> c;
    (void)c.recv();
    returned->fetch_add(1);
  };
  auto blocked_send = [returned] {
    goro::Chan<int> c;
    c.send(1);
    returned->fetch_add(1);
  };
  const bool threads = mode() == Mode::kThreads;
  const bool goroutines = mode() == Mode::kGoroutines;
  if (threads) {
    std::thread(blocked_recv).detach();
    std::thread(blocked_send).detach();
  } else if (goroutines) {
    g_parked_forever += 2;
    goro::go({.name = kParkedForever}, blocked_recv);
    goro::go({.name = kParkedForever}, blocked_send);
  } else {
    g_parked_forever += 1;
    goro::go({.name = kParkedForever}, blocked_recv);
    std::thread(blocked_send).detach();
  }
  pause(100ms);
  EXPECT_EQ(returned->load(), 0) << "an operation on a nil channel returned";
  // The runtime still works around them.
  goro::Chan<int> ch(0);
  tasks.spawn([&] { ch.send(3); });
  tasks.spawn([&] { EXPECT_EQ(ch.recv().value_or(-1), 3); });
  tasks.join();
  EXPECT_EQ(returned->load(), 0);
}

// ---- Element types ------------------------------------------------------------------------------

TEST_P(ChanTest, MoveOnlyElements) {
  using P = std::unique_ptr<int>;
  for (std::size_t cap : {0u, 2u}) {
    goro::Chan<P> ch(cap);
    const int n = 500;
    std::atomic<int> bad{0};
    Tasks tasks(mode());
    tasks.spawn([&] {
      for (int i = 0; i < n; i++) ch.send(std::make_unique<int>(i));
      ch.close();
    });
    tasks.spawn([&] {
      int expect = 0;
      for (P& p : ch) {
        if (!p || *p != expect) bad++;
        expect++;
      }
      if (expect != n) bad++;
    });
    tasks.join();
    EXPECT_EQ(bad.load(), 0) << "cap " << cap;
  }
  // try_send leaves the value alone when it fails, and takes it when it succeeds.
  goro::Chan<P> ch(1);
  P p = std::make_unique<int>(1);
  EXPECT_TRUE(ch.try_send(std::move(p)));
  EXPECT_EQ(p, nullptr);
  P q = std::make_unique<int>(2);
  EXPECT_FALSE(ch.try_send(std::move(q)));
  ASSERT_NE(q, nullptr) << "a failed try_send consumed its value";
  EXPECT_EQ(*q, 2);
  auto got = ch.recv();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(**got, 1);
}

// Values left in a dropped channel are destroyed exactly once; none leak, none are destroyed
// twice, and values moving through the ring, through direct hand-offs and past blocked
// senders are each destroyed once.
TEST_P(ChanTest, BufferedValuesDestroyedExactlyOnce) {
  Tracked::reset();
  {
    Tasks tasks(mode());
    tasks.spawn([&] {
      // Partly drained.
      goro::Chan<Tracked> a(8);
      for (int i = 0; i < 5; i++) a.send(Tracked(i));
      for (int i = 0; i < 2; i++) EXPECT_EQ(a.recv()->id, i);
      // Wrapped around the ring.
      goro::Chan<Tracked> b(4);
      for (int i = 0; i < 4; i++) b.send(Tracked(i));
      for (int i = 0; i < 3; i++) EXPECT_EQ(b.recv()->id, i);
      for (int i = 4; i < 7; i++) b.send(Tracked(i));
      EXPECT_EQ(b.len(), 4u);
      // Full, closed, never drained.
      goro::Chan<Tracked> c(3);
      for (int i = 0; i < 3; i++) EXPECT_TRUE(c.try_send(Tracked(i)));
      EXPECT_FALSE(c.try_send(Tracked(99)));
      c.close();
      EXPECT_THROW(c.send(Tracked(100)), goro::ChanClosed);
    });
    tasks.join();
  }
  EXPECT_EQ(Tracked::errors.load(), 0);
  EXPECT_EQ(Tracked::objects.load(), 0) << "objects leaked";
  EXPECT_EQ(Tracked::values.load(), 0);

  // Blocked senders on a full channel: receives take the ring's head and pull a sender's value
  // in; then close makes the rest throw (their values stay with them); the last handle is
  // dropped by another task while values are still buffered.
  Tracked::reset();
  {
    auto ch = std::make_unique<goro::Chan<Tracked>>(2);
    std::atomic<int> threw{0}, started{0};
    Tasks tasks(mode());
    for (int s = 0; s < 4; s++) {
      tasks.spawn([&, s, c = *ch] {
        started++;
        for (int i = 0; i < 3; i++) {
          try {
            c.send(Tracked(s * 10 + i));
          } catch (const goro::ChanClosed&) {
            threw++;
            return;
          }
        }
      });
    }
    ASSERT_TRUE(goro_test::wait_until([&] { return started.load() == 4 && ch->len() == 2; }));
    for (int i = 0; i < 5; i++) {
      auto v = ch->recv();
      ASSERT_TRUE(v.has_value());
      EXPECT_GE(v->id, 0);
    }
    pause(20ms);
    ch->close();
    goro::Chan<Tracked> last = std::move(*ch);
    ch.reset();
    tasks.join();
    EXPECT_GT(threw.load(), 0);
    EXPECT_EQ(last.len(), 2u);
    Tasks dropper(mode());
    dropper.spawn([l = std::move(last)]() mutable { goro::Chan<Tracked> gone = std::move(l); });
    dropper.join();
  }
  EXPECT_TRUE(goro_test::wait_until([] { return Tracked::objects.load() == 0; }))
      << "objects leaked: " << Tracked::objects.load();
  EXPECT_EQ(Tracked::errors.load(), 0);
  EXPECT_EQ(Tracked::values.load(), 0);

  // Many values through unbuffered and buffered channels between tasks.
  Tracked::reset();
  for (std::size_t cap : {0u, 3u}) {
    goro::Chan<Tracked> ch(cap);
    const int n = static_cast<int>(scaled(5'000));
    std::atomic<std::int64_t> sum{0};
    Tasks tasks(mode());
    tasks.spawn([&] {
      for (int i = 0; i < n; i++) ch.send(Tracked(i));
      ch.close();
    });
    tasks.spawn([&] {
      for (Tracked& t : ch) sum += t.id;
    });
    tasks.join();
    EXPECT_EQ(sum.load(), static_cast<std::int64_t>(n) * (n - 1) / 2);
  }
  EXPECT_TRUE(goro_test::wait_until([] { return Tracked::objects.load() == 0; }))
      << "objects leaked: " << Tracked::objects.load();
  EXPECT_EQ(Tracked::errors.load(), 0);
}

// ---- Range-for, handles ------------------------------------------------------------------------

TEST_P(ChanTest, RangeForUntilClose) {
  for (std::size_t cap : {0u, 4u}) {
    goro::Chan<int> ch(cap);
    const int n = 1000;
    std::vector<int> got;
    Tasks tasks(mode());
    tasks.spawn([&] {
      for (int i = 0; i < n; i++) ch.send(i);
      ch.close();
    });
    tasks.spawn([&] {
      for (int v : ch) got.push_back(v);
    });
    tasks.join();
    ASSERT_EQ(got.size(), static_cast<std::size_t>(n)) << "cap " << cap;
    for (int i = 0; i < n; i++) EXPECT_EQ(got[static_cast<std::size_t>(i)], i);
  }
  // Several ranging receivers split the values; break leaves the channel usable.
  goro::Chan<int> ch(2);
  std::atomic<std::int64_t> sum{0}, count{0};
  Tasks tasks(mode());
  for (int r = 0; r < 3; r++) {
    tasks.spawn([&] {
      for (int v : ch) {
        sum += v;
        count++;
      }
    });
  }
  tasks.spawn([&] {
    for (int i = 1; i <= 3000; i++) ch.send(i);
    ch.close();
  });
  tasks.join();
  EXPECT_EQ(count.load(), 3000);
  EXPECT_EQ(sum.load(), 3000 * 3001 / 2);

  goro::Chan<int> ch2(8);
  for (int i = 0; i < 8; i++) ch2.send(i);
  int seen = 0;
  for (int v : ch2) {
    EXPECT_EQ(v, seen);
    if (++seen == 3) break;
  }
  EXPECT_EQ(ch2.len(), 5u);
  EXPECT_EQ(ch2.recv().value_or(-1), 3);
}

TEST_P(ChanTest, HandleCopiesShareTheChannel) {
  goro::Chan<int> a(4);
  goro::Chan<int> b = a;  // copy
  goro::Chan<int> c;
  c = b;  // copy-assign
  EXPECT_TRUE(a == b && b == c);
  EXPECT_FALSE(a == goro::Chan<int>(4)) << "distinct channels compare unequal";
  a.send(1);
  EXPECT_EQ(b.len(), 1u);
  EXPECT_EQ(c.recv().value_or(-1), 1);
  EXPECT_EQ(a.cap(), 4u);
  EXPECT_EQ(c.cap(), 4u);
  // Moving a handle leaves the source nil.
  goro::Chan<int> d = std::move(b);
  EXPECT_FALSE(static_cast<bool>(b));  // NOLINT(bugprone-use-after-move)
  EXPECT_TRUE(d == a);
  // Self-assignment is harmless.
  goro::Chan<int>& dref = d;
  d = dref;
  EXPECT_TRUE(d == a);

  // Tasks each hold their own copy; the test's handles are dropped while they run.
  std::atomic<std::int64_t> sum{0};
  {
    auto own = std::make_unique<goro::Chan<int>>(0);
    Tasks tasks(mode());
    for (int r = 0; r < 2; r++) {
      tasks.spawn([c2 = *own, &sum] {
        for (int v : c2) sum += v;
      });
    }
    tasks.spawn([c3 = *own] {
      pause(20ms);
      for (int i = 1; i <= 100; i++) c3.send(i);
      c3.close();
    });
    own.reset();
    tasks.join();
  }
  EXPECT_EQ(sum.load(), 5050);
}

// ---- Stress
// ---------------------------------------------------------------------------------------

class ChanStressTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { goro::set_gomaxprocs(GetParam()); }
  void TearDown() override { goro::testing::expect_no_goroutines_left(left_options()); }
};

// 4 producers and 4 consumers, half goroutines and half threads on each side, through one
// channel: every value arrives exactly once, per-producer order holds at every consumer, and
// the payload written before the send is seen by the receiver.
void stress(std::size_t cap, std::int64_t total) {
  const int kProducers = 4, kConsumers = 4;
  const std::int64_t per = total / kProducers;
  struct Msg {
    std::uint32_t producer;
    std::uint32_t seq;
    std::uint64_t check;  // a function of (producer, seq)
  };
  auto check_of = [](std::uint64_t p, std::uint64_t s) { return (p * 0x9E3779B97F4A7C15ull) ^ s; };
  goro::Chan<Msg> ch(cap);
  std::vector<std::atomic<std::uint8_t>> seen(static_cast<std::size_t>(kProducers * per));
  std::atomic<std::int64_t> order_errors{0}, payload_errors{0}, received{0};
  Tasks producers(Mode::kMixed), consumers(Mode::kMixed);
  for (int c = 0; c < kConsumers; c++) {
    consumers.spawn([&] {
      std::vector<std::int64_t> last(kProducers, -1);
      std::int64_t n = 0;
      while (auto m = ch.recv()) {
        if (m->producer >= kProducers || m->seq >= per ||
            m->check != check_of(m->producer, m->seq)) {
          payload_errors++;
          continue;
        }
        if (static_cast<std::int64_t>(m->seq) <= last[m->producer]) order_errors++;
        last[m->producer] = m->seq;
        seen[m->producer * per + m->seq].fetch_add(1, std::memory_order_relaxed);
        n++;
      }
      received += n;
    });
  }
  for (int p = 0; p < kProducers; p++) {
    producers.spawn([&, p] {
      for (std::int64_t i = 0; i < per; i++) {
        ch.send(Msg{static_cast<std::uint32_t>(p), static_cast<std::uint32_t>(i),
                    check_of(static_cast<std::uint64_t>(p), static_cast<std::uint64_t>(i))});
      }
    });
  }
  producers.join(200);
  ch.close();
  consumers.join(200);
  std::int64_t missing = 0, dups = 0;
  for (auto& s : seen) {
    std::uint8_t k = s.load();
    if (k == 0) missing++;
    if (k > 1) dups++;
  }
  EXPECT_EQ(received.load(), kProducers * per) << "cap " << cap;
  EXPECT_EQ(missing, 0) << "cap " << cap;
  EXPECT_EQ(dups, 0) << "cap " << cap;
  EXPECT_EQ(order_errors.load(), 0) << "cap " << cap;
  EXPECT_EQ(payload_errors.load(), 0) << "cap " << cap;
}

TEST_P(ChanStressTest, BufferedMixedProducersConsumers) {
  stress(128, scaled(4'000'000));
}
TEST_P(ChanStressTest, SmallBufferMixedProducersConsumers) {
  stress(1, scaled(600'000));
}
TEST_P(ChanStressTest, UnbufferedMixedProducersConsumers) {
  stress(0, scaled(1'000'000));
}

// Buffered slots hold a stamp next to each element: an over-aligned element type must still
// sit at its alignment, move through the ring whole and keep per-sender order.
struct alignas(64) Wide {
  static inline std::atomic<int> misaligned{0};
  std::uint64_t v[8];
  explicit Wide(std::uint64_t x) {
    for (auto& e : v) e = x;
  }
  Wide(Wide&& o) noexcept {
    if (reinterpret_cast<std::uintptr_t>(this) % 64 != 0 ||
        reinterpret_cast<std::uintptr_t>(&o) % 64 != 0) {
      misaligned.fetch_add(1);
    }
    std::copy(std::begin(o.v), std::end(o.v), std::begin(v));
  }
  Wide(const Wide&) = delete;
};

TEST_P(ChanStressTest, OverAlignedElementsThroughTheBuffer) {
  goro::set_gomaxprocs(GetParam());
  goro::Chan<Wide> c(5);
  constexpr int kSenders = 3;
  const auto per = static_cast<std::uint64_t>(scaled(20'000));
  goro::WaitGroup wg;
  wg.add(kSenders);
  for (std::uint64_t s = 0; s < kSenders; s++) {
    goro::go([&, s] {
      for (std::uint64_t i = 0; i < per; i++) c.send(Wide(s << 32 | i));
      wg.done();
    });
  }
  std::thread closer([&] {
    wg.wait();
    c.close();
  });
  std::uint64_t next[kSenders] = {};
  int torn = 0, order = 0;
  for (Wide& w : c) {
    for (auto e : w.v) torn += e != w.v[0];
    const std::uint64_t s = w.v[0] >> 32;
    order += s >= kSenders || (w.v[0] & 0xffffffffu) != next[s];
    if (s < kSenders) next[s] = (w.v[0] & 0xffffffffu) + 1;
  }
  closer.join();
  EXPECT_EQ(torn, 0);
  EXPECT_EQ(order, 0);
  for (auto n : next) EXPECT_EQ(n, per);
  EXPECT_EQ(Wide::misaligned.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(Procs, ChanStressTest, ::testing::Values(1, 2, 8),
                         [](const ::testing::TestParamInfo<int>& i) {
                           return "P" + std::to_string(i.param);
                         });

INSTANTIATE_TEST_SUITE_P(All, ChanTest,
                         ::testing::Values(Param{1, Mode::kGoroutines}, Param{1, Mode::kThreads},
                                           Param{1, Mode::kMixed}, Param{2, Mode::kGoroutines},
                                           Param{2, Mode::kThreads}, Param{2, Mode::kMixed},
                                           Param{8, Mode::kGoroutines}, Param{8, Mode::kThreads},
                                           Param{8, Mode::kMixed}),
                         param_name);

}  // namespace
