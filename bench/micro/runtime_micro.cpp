// runtime_micro.cpp - Google Benchmark micro-benchmarks of goro's internals: the numbers that
// explain the side-by-side results (bench/compare.py).
//
//   build/release/bench/micro/goro_micro --benchmark_min_time=0.2
//
// Each benchmark runs its loop inside a goroutine (the runtime's hot paths are goroutine
// paths) and reports the per-iteration time of that loop.
#include <benchmark/benchmark.h>
#include <goro/goro.hpp>

#include <atomic>
#include <cstdint>

#include "arch/context.hpp"
#include "sched/runq.hpp"

namespace {

// Runs body(state) in a goroutine with GOMAXPROCS=procs and waits for it.
template <class F>
void in_goroutine(benchmark::State& state, int procs, F body) {
  goro::set_gomaxprocs(procs);
  goro::WaitGroup wg;
  wg.add(1);
  goro::go([&] {
    body(state);
    wg.done();
  });
  wg.wait();
}

// The bare context switch: two contexts switching to each other through goro_switch_*,
// outside the scheduler (one round trip = two switches).
struct SwitchPair {
  void* main_sp = nullptr;
  void* co_sp = nullptr;
  std::uint64_t cw = goro::internal::current_control_words();
  alignas(16) unsigned char stack[64 * 1024];
};
SwitchPair* g_pair;

void co_entry(void*) {
  for (;;) goro_switch_to_g0(&g_pair->co_sp, g_pair->main_sp, &g_pair->cw);
}

void BM_ContextSwitchRoundTrip(benchmark::State& state) {
  SwitchPair pair;
  g_pair = &pair;
  pair.co_sp = goro::internal::make_context(pair.stack + sizeof(pair.stack), co_entry, nullptr);
  for (auto _ : state) goro_switch_from_g0(&pair.main_sp, pair.co_sp, &pair.cw);
}
BENCHMARK(BM_ContextSwitchRoundTrip);

struct Item {
  Item* schedlink = nullptr;
};

void BM_RunqPushPop(benchmark::State& state) {
  goro::internal::RunQueue<Item, 256> q;
  Item it;
  for (auto _ : state) {
    q.push(&it);
    benchmark::DoNotOptimize(q.pop());
  }
}
BENCHMARK(BM_RunqPushPop);

void BM_RunqStealHalf(benchmark::State& state) {
  goro::internal::RunQueue<Item, 256> victim, thief;
  Item items[128];
  for (auto _ : state) {
    for (auto& it : items) victim.push(&it);
    benchmark::DoNotOptimize(thief.steal_from(victim, false, [] {}));
    while (thief.pop() != nullptr) {
    }
    while (victim.pop() != nullptr) {
    }
  }
  state.SetItemsProcessed(state.iterations() * 128);
}
BENCHMARK(BM_RunqStealHalf);

// A goroutine yielding to another on one P: park/ready through the run queue, two switches.
void BM_YieldPair(benchmark::State& state) {
  goro::set_gomaxprocs(1);
  std::atomic<bool> stop{false};
  goro::WaitGroup wg;
  wg.add(1);
  goro::go([&] {
    while (!stop.load(std::memory_order_relaxed)) goro::yield();
    wg.done();
  });
  in_goroutine(state, 1, [](benchmark::State& s) {
    for (auto _ : s) goro::yield();
  });
  stop = true;
  wg.wait();
}
BENCHMARK(BM_YieldPair);

// Spawn + run + exit of an empty goroutine, with a stack slot from the P's cache.
void BM_SpawnComplete(benchmark::State& state) {
  in_goroutine(state, 1, [](benchmark::State& s) {
    goro::WaitGroup wg;
    for (auto _ : s) {
      wg.add(1);
      goro::go([&wg] { wg.done(); });
      wg.wait();
    }
  });
}
BENCHMARK(BM_SpawnComplete);

void BM_MutexUncontended(benchmark::State& state) {
  goro::Mutex mu;
  for (auto _ : state) {
    mu.lock();
    mu.unlock();
  }
}
BENCHMARK(BM_MutexUncontended);

void BM_ChanBufferedTrySendRecv(benchmark::State& state) {
  goro::Chan<int> c(16);
  for (auto _ : state) {
    c.try_send(1);
    benchmark::DoNotOptimize(c.try_recv());
  }
}
BENCHMARK(BM_ChanBufferedTrySendRecv);

// Unbuffered ping-pong between two goroutines on one P: two channel hand-offs, two parks.
void BM_ChanPingPong(benchmark::State& state) {
  goro::Chan<int> ping(0), pong(0);
  goro::WaitGroup wg;
  wg.add(1);
  goro::set_gomaxprocs(1);
  goro::go([&] {
    while (auto v = ping.recv()) pong.send(*v);
    wg.done();
  });
  in_goroutine(state, 1, [&](benchmark::State& s) {
    for (auto _ : s) {
      ping.send(1);
      benchmark::DoNotOptimize(pong.recv());
    }
  });
  ping.close();
  wg.wait();
}
BENCHMARK(BM_ChanPingPong);

void BM_SelectTwoReady(benchmark::State& state) {
  goro::Chan<int> a(1), b(1);
  for (auto _ : state) {
    a.try_send(1);
    b.try_send(2);
    goro::select(goro::on_recv(a), goro::on_recv(b));
    a.try_recv();
    b.try_recv();
  }
}
BENCHMARK(BM_SelectTwoReady);

}  // namespace

BENCHMARK_MAIN();
