// runq_test.cpp - goro::internal::RunQueue: the per-P lock-free ring with runnext.
//
// Single-owner order and overflow (take_half) at a shrunken capacity of 8 and the real 256;
// runnext; stealing (with and without runnext); and a concurrent stress in which one owner
// pushes/pops while 1-3 thieves steal into their own queues (and from each other), checking
// with a per-item flag that every item is consumed exactly once.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "sched/runq.hpp"
#include "test_util.hpp"

namespace {

using goro::internal::RunQueue;
using goro_test::scaled;

struct Item {
  std::uint32_t id = 0;
};

std::vector<Item> make_items(std::size_t n) {
  std::vector<Item> v(n);
  for (std::size_t i = 0; i < n; i++) v[i].id = static_cast<std::uint32_t>(i);
  return v;
}

auto no_pause = [] {};

template <std::uint32_t N>
void single_owner_fifo() {
  auto q = std::make_unique<RunQueue<Item, N>>();
  auto items = make_items(N);
  EXPECT_TRUE(q->empty());
  EXPECT_EQ(q->size(), 0u);
  EXPECT_EQ(q->pop(), nullptr);
  // Several rounds so that head/tail wrap around the ring.
  for (int round = 0; round < 5; round++) {
    for (std::uint32_t i = 0; i < N; i++) {
      ASSERT_TRUE(q->push(&items[i])) << "round " << round << " item " << i;
      EXPECT_EQ(q->size(), i + 1);
    }
    EXPECT_FALSE(q->empty());
    for (std::uint32_t i = 0; i < N; i++) {
      bool from_next = true;
      Item* x = q->pop(&from_next);
      ASSERT_NE(x, nullptr);
      EXPECT_EQ(x->id, i) << "FIFO order, round " << round;
      EXPECT_FALSE(from_next);
    }
    EXPECT_EQ(q->pop(), nullptr);
    EXPECT_TRUE(q->empty());
    // Partial fill so the next round starts at an odd offset.
    for (std::uint32_t i = 0; i < 3 && i < N; i++) ASSERT_TRUE(q->push(&items[i]));
    for (std::uint32_t i = 0; i < 3 && i < N; i++) EXPECT_EQ(q->pop()->id, i);
  }
}

TEST(RunQueue, SingleOwnerFifo8) {
  single_owner_fifo<8>();
}
TEST(RunQueue, SingleOwnerFifo256) {
  single_owner_fifo<256>();
}

template <std::uint32_t N>
void full_and_take_half() {
  auto q = std::make_unique<RunQueue<Item, N>>();
  auto items = make_items(N + 1);
  // Start at a non-zero offset so the halves wrap.
  for (int i = 0; i < 5; i++) {
    ASSERT_TRUE(q->push(&items[0]));
    ASSERT_NE(q->pop(), nullptr);
  }
  Item* out[N / 2 + 1] = {};
  for (std::uint32_t i = 0; i < N; i++) {
    // Not full yet: take_half refuses (it is only for the overflow path).
    EXPECT_EQ(q->take_half(out), 0u) << "take_half on a queue of " << i;
    ASSERT_TRUE(q->push(&items[i]));
  }
  EXPECT_EQ(q->size(), N);
  EXPECT_FALSE(q->push(&items[N])) << "push must fail when the ring is full";
  EXPECT_EQ(q->size(), N);
  // runnext does not count against the ring.
  EXPECT_EQ(q->put_next(&items[N]), nullptr);
  EXPECT_EQ(q->size(), N + 1);
  EXPECT_EQ(q->put_next(nullptr), &items[N]);

  std::uint32_t n = q->take_half(out);
  ASSERT_EQ(n, N / 2);
  for (std::uint32_t i = 0; i < n; i++) EXPECT_EQ(out[i]->id, i) << "take_half: the older half";
  EXPECT_EQ(q->size(), N / 2);
  for (std::uint32_t i = N / 2; i < N; i++) {
    Item* x = q->pop();
    ASSERT_NE(x, nullptr);
    EXPECT_EQ(x->id, i) << "the newer half stays, in order";
  }
  EXPECT_EQ(q->pop(), nullptr);
}

TEST(RunQueue, PushFailsWhenFullAndTakeHalfReturnsOlderHalf8) {
  full_and_take_half<8>();
}
TEST(RunQueue, PushFailsWhenFullAndTakeHalfReturnsOlderHalf256) {
  full_and_take_half<256>();
}

TEST(RunQueue, RunnextIsPoppedFirstAndDisplaces) {
  RunQueue<Item, 8> q;
  auto items = make_items(4);
  ASSERT_TRUE(q.push(&items[0]));
  ASSERT_TRUE(q.push(&items[1]));
  EXPECT_EQ(q.put_next(&items[2]), nullptr);
  EXPECT_EQ(q.size(), 3u);
  // A new runnext displaces the old one (the caller then pushes it, as runqput does).
  Item* displaced = q.put_next(&items[3]);
  EXPECT_EQ(displaced, &items[2]);
  ASSERT_TRUE(q.push(displaced));

  bool from_next = false;
  EXPECT_EQ(q.pop(&from_next), &items[3]);
  EXPECT_TRUE(from_next);
  EXPECT_EQ(q.pop(&from_next), &items[0]);
  EXPECT_FALSE(from_next);
  EXPECT_EQ(q.pop(&from_next), &items[1]);
  EXPECT_EQ(q.pop(&from_next), &items[2]);
  EXPECT_EQ(q.pop(&from_next), nullptr);
  EXPECT_TRUE(q.empty());

  // runnext alone: not empty, size 1.
  q.put_next(&items[1]);
  EXPECT_FALSE(q.empty());
  EXPECT_EQ(q.size(), 1u);
  EXPECT_EQ(q.pop(&from_next), &items[1]);
  EXPECT_TRUE(from_next);
  EXPECT_TRUE(q.empty());
}

template <std::uint32_t N>
void steal_half() {
  auto victim = std::make_unique<RunQueue<Item, N>>();
  auto thief = std::make_unique<RunQueue<Item, N>>();
  auto items = make_items(N + 1);
  for (std::uint32_t i = 0; i < N; i++) ASSERT_TRUE(victim->push(&items[i]));
  victim->put_next(&items[N]);
  int pauses = 0;
  Item* got = thief->steal_from(*victim, true, [&] { pauses++; });
  ASSERT_NE(got, nullptr);
  // Stolen: the older half (ceil), items [0, N/2). One is returned, the rest queued at the thief.
  EXPECT_EQ(got->id, N / 2 - 1);
  EXPECT_EQ(pauses, 0) << "runnext is not touched while the victim's ring has items";
  EXPECT_EQ(thief->size(), N / 2 - 1);
  for (std::uint32_t i = 0; i + 1 < N / 2; i++) EXPECT_EQ(thief->pop()->id, i);
  EXPECT_EQ(thief->pop(), nullptr);
  EXPECT_EQ(victim->size(), N / 2 + 1);
  // The victim keeps runnext and the newer half.
  bool from_next = false;
  EXPECT_EQ(victim->pop(&from_next), &items[N]);
  EXPECT_TRUE(from_next);
  for (std::uint32_t i = N / 2; i < N; i++) EXPECT_EQ(victim->pop()->id, i);

  // Odd counts: n - n/2 is taken (3 of 5, 1 of 1).
  for (std::uint32_t i = 0; i < 5; i++) ASSERT_TRUE(victim->push(&items[i]));
  got = thief->steal_from(*victim, false, no_pause);
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(got->id, 2u);
  EXPECT_EQ(thief->size(), 2u);
  EXPECT_EQ(victim->size(), 2u);
  EXPECT_EQ(thief->pop()->id, 0u);
  EXPECT_EQ(thief->pop()->id, 1u);
  EXPECT_EQ(victim->pop()->id, 3u);
  got = thief->steal_from(*victim, false, no_pause);
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(got->id, 4u);
  EXPECT_TRUE(thief->empty()) << "stealing a single item returns it without queueing";
  EXPECT_TRUE(victim->empty());
  EXPECT_EQ(thief->steal_from(*victim, true, no_pause), nullptr);
}

TEST(RunQueue, StealTakesOlderHalf8) {
  steal_half<8>();
}
TEST(RunQueue, StealTakesOlderHalf256) {
  steal_half<256>();
}

TEST(RunQueue, StealRunnextOnlyWithStealNext) {
  RunQueue<Item, 8> victim, thief;
  Item a{7};
  victim.put_next(&a);
  int pauses = 0;
  auto pause = [&] { pauses++; };
  EXPECT_EQ(thief.steal_from(victim, false, pause), nullptr) << "runnext needs steal_next";
  EXPECT_EQ(pauses, 0);
  EXPECT_FALSE(victim.empty());
  Item* got = thief.steal_from(victim, true, pause);
  EXPECT_EQ(got, &a);
  EXPECT_EQ(pauses, 1) << "before_next_steal is called once before taking runnext";
  EXPECT_TRUE(victim.empty());
  EXPECT_TRUE(thief.empty()) << "the stolen runnext is returned, not queued";
  EXPECT_EQ(victim.pop(), nullptr);
  EXPECT_EQ(thief.steal_from(victim, true, pause), nullptr);
  EXPECT_EQ(pauses, 1);
}

// The header documents steal_from's destination as "an empty-or-not queue of its own". A thief
// that already holds more than N/2 items and steals N/2 more must not overwrite its own
// unconsumed slots. (The scheduler itself only steals into an empty queue.)
template <std::uint32_t N>
void steal_into_nonempty_queue() {
  auto victim = std::make_unique<RunQueue<Item, N>>();
  auto thief = std::make_unique<RunQueue<Item, N>>();
  auto items = make_items(2 * N);
  std::vector<int> seen(2 * N, 0);
  for (std::uint32_t i = 0; i < N; i++) ASSERT_TRUE(victim->push(&items[i]));
  const std::uint32_t mine = N - 2;
  for (std::uint32_t i = 0; i < mine; i++) ASSERT_TRUE(thief->push(&items[N + i]));
  Item* got = thief->steal_from(*victim, false, no_pause);
  if (got != nullptr) seen[got->id]++;
  while (Item* x = thief->pop()) seen[x->id]++;
  while (Item* x = victim->pop()) seen[x->id]++;
  for (std::uint32_t i = 0; i < N + mine; i++) {
    EXPECT_EQ(seen[i], 1) << "item " << i << (i >= N ? " (the thief's own)" : " (the victim's)")
                          << " consumed " << seen[i] << " times";
  }
}

TEST(RunQueue, StealIntoNonEmptyQueueLosesNothing8) {
  steal_into_nonempty_queue<8>();
}
TEST(RunQueue, StealIntoNonEmptyQueueLosesNothing256) {
  steal_into_nonempty_queue<256>();
}

// Concurrent stress. The owner pushes every item once (sometimes through put_next), pops some
// itself, and on overflow moves the older half out with take_half (consumed directly, as the
// scheduler moves them to the global queue). Thieves steal from the owner and from each other
// into their own queue, which they drain before stealing again (as Ms do). Every item must be
// consumed exactly once.
template <std::uint32_t N>
void concurrent_stress(int nthieves, std::int64_t total_items) {
  using Q = RunQueue<Item, N>;
  const auto total = static_cast<std::size_t>(total_items);
  auto items = make_items(total);
  auto flags = std::make_unique<std::atomic<std::uint8_t>[]>(total);
  for (std::size_t i = 0; i < total; i++) flags[i].store(0, std::memory_order_relaxed);
  std::atomic<std::size_t> consumed{0};
  std::atomic<std::size_t> dups{0};
  std::atomic<bool> abort{false};
  auto consume = [&](Item* x) {
    if (flags[x->id].fetch_add(1, std::memory_order_relaxed) != 0) dups.fetch_add(1);
    consumed.fetch_add(1, std::memory_order_relaxed);
  };

  std::vector<std::unique_ptr<Q>> queues;  // [0] owner, [1..] thieves
  for (int i = 0; i <= nthieves; i++) queues.push_back(std::make_unique<Q>());
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);

  std::vector<std::thread> thieves;
  std::atomic<std::size_t> steals{0};
  std::atomic<int> thieves_ready{0};
  for (int t = 1; t <= nthieves; t++) {
    thieves.emplace_back([&, t] {
      thieves_ready.fetch_add(1);
      std::minstd_rand rng(static_cast<unsigned>(t) * 7919u);
      Q& mine = *queues[static_cast<std::size_t>(t)];
      while (consumed.load(std::memory_order_relaxed) < total && !abort.load()) {
        // Mostly the owner; sometimes another thief.
        std::size_t v = rng() % 4 != 0 ? 0 : rng() % queues.size();
        if (v == static_cast<std::size_t>(t)) v = 0;
        bool steal_next = rng() % 2 == 0;
        Item* x = mine.steal_from(*queues[v], steal_next, [] { std::this_thread::yield(); });
        if (x == nullptr) {
          if (std::chrono::steady_clock::now() > deadline) abort.store(true);
          continue;
        }
        steals.fetch_add(1, std::memory_order_relaxed);
        consume(x);
        while (Item* y = mine.pop()) consume(y);
      }
    });
  }

  Q& owner = *queues[0];
  std::minstd_rand rng(12345);
  Item* half[N / 2 + 1];
  while (thieves_ready.load() < nthieves) std::this_thread::yield();
  for (std::size_t i = 0; i < total && !abort.load(); i++) {
    // Now and then give the thieves (which may share a CPU with us) a chance to run.
    if (i % 4096 == 4095) std::this_thread::yield();
    Item* x = &items[i];
    if (rng() % 8 == 0) {
      x = owner.put_next(x);
      if (x == nullptr) continue;
    }
    while (!owner.push(x)) {
      std::uint32_t n = owner.take_half(half);
      if (n == 0) continue;  // a thief raced: retry the push
      for (std::uint32_t k = 0; k < n; k++) consume(half[k]);
    }
    if (rng() % 3 == 0) {
      if (Item* y = owner.pop()) consume(y);
    }
  }
  // Drain: the owner pops what the thieves leave behind.
  while (consumed.load(std::memory_order_relaxed) < total && !abort.load()) {
    if (Item* y = owner.pop()) {
      consume(y);
    } else {
      if (std::chrono::steady_clock::now() > deadline) abort.store(true);
      std::this_thread::yield();
    }
  }
  abort.store(true);  // lets thieves stop if the count is wrong
  for (auto& t : thieves) t.join();
  // Leftovers in any queue would be lost-and-found: consume them to report precisely.
  for (auto& q : queues) {
    while (Item* y = q->pop()) consume(y);
  }

  EXPECT_EQ(dups.load(), 0u) << "items consumed more than once";
  std::size_t lost = 0, first_lost = total;
  for (std::size_t i = 0; i < total; i++) {
    if (flags[i].load() == 0) {
      lost++;
      if (first_lost == total) first_lost = i;
    }
  }
  EXPECT_EQ(lost, 0u) << "items never consumed (first: " << first_lost << ")";
  EXPECT_EQ(consumed.load(), total);
  EXPECT_GT(steals.load(), 0u) << "the thieves never stole anything: the test did not race";
}

class RunQueueStress : public ::testing::TestWithParam<int> {};

TEST_P(RunQueueStress, Capacity8EveryItemOnce) {
  concurrent_stress<8>(GetParam(), std::max<std::int64_t>(200'000, scaled(2'000'000)));
}

TEST_P(RunQueueStress, Capacity256EveryItemOnce) {
  concurrent_stress<256>(GetParam(), std::max<std::int64_t>(200'000, scaled(2'000'000)));
}

INSTANTIATE_TEST_SUITE_P(Thieves, RunQueueStress, ::testing::Values(1, 2, 3),
                         [](const auto& info) { return std::to_string(info.param) + "thieves"; });

}  // namespace
