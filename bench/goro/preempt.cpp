// preempt (goro): preemption latency of a tight loop. With ONE processor (-procs 1), a root
// goroutine repeatedly starts a goroutine that spins on an atomic flag with no calls at all,
// then yields to it (goro::yield()): only preemption (sysmon's 10 ms time slice, enforced by
// the asynchronous SIGURG diversion) can give the root the processor back. One trial's latency
// is the time from the yield to the root running again; then the root stops the spinner and
// waits for it. One untimed warm-up trial first. Metrics (nearest rank over -n trials): p50_ms,
// p99_ms, max_ms.
#include <goro/goro.hpp>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <vector>

#include "../common/bench_util.hpp"

// The nearest-rank percentile of sorted v (the Go peer uses the same rule).
static std::int64_t percentile(const std::vector<std::int64_t>& v, int pct) {
  std::size_t rank = (v.size() * std::size_t(pct) + 99) / 100;  // ceil(pct% of n)
  return v[rank == 0 ? 0 : rank - 1];
}

// One load and one branch per iteration: no call, no runtime entry.
__attribute__((noinline)) static void spin(const std::atomic<bool>& stop) {
  while (!stop.load(std::memory_order_relaxed)) {
  }
}

static goro::WaitGroup g_main;

int main(int argc, char** argv) {
  std::vector<bench::Flag> flags = {{"n", 30, "trials"},
                                    {"procs", 1, "GOMAXPROCS (the workload needs 1)"}};
  bench::parse_flags(argc, argv, flags);
  const std::int64_t n = bench::flag_value(flags, "n");
  const std::int64_t procs = bench::flag_value(flags, "procs");
  if (n <= 0 || procs <= 0) {
    std::fprintf(stderr, "preempt: bad arguments\n");
    return 2;
  }
  goro::set_gomaxprocs(int(procs));

  std::vector<std::int64_t> lat_ns;
  std::int64_t not_started = 0;
  const goro::PreemptCounts c0 = goro::preempt_counts();
  g_main.add(1);
  goro::go([n, &lat_ns, &not_started] {
    for (std::int64_t i = -1; i < n; ++i) {
      std::atomic<bool> stop{false}, started{false};
      goro::WaitGroup wg;
      wg.add(1);
      goro::go([&stop, &started, &wg] {
        started.store(true, std::memory_order_relaxed);
        spin(stop);
        wg.done();
      });
      // The spinner runs; only preemption brings us back. Should the scheduler pick the root
      // again first, it yields again (the Go peer needs this: its scheduler serves the global
      // queue first on every 61st tick).
      std::int64_t t0 = 0, t1 = 0;
      for (int tries = 0;; ++tries) {
        t0 = bench::now_ns();
        goro::yield();
        t1 = bench::now_ns();
        if (started.load()) break;
        if (tries == 1000) {
          not_started++;
          break;
        }
      }
      stop.store(true);
      wg.wait();
      if (i >= 0) lat_ns.push_back(t1 - t0);
    }
    g_main.done();
  });
  g_main.wait();
  const goro::PreemptCounts c1 = goro::preempt_counts();

  std::sort(lat_ns.begin(), lat_ns.end());
  bench::result("p50_ms", double(percentile(lat_ns, 50)) / 1e6, "ms");
  bench::result("p99_ms", double(percentile(lat_ns, 99)) / 1e6, "ms");
  bench::result("max_ms", double(lat_ns.back()) / 1e6, "ms");
  std::fprintf(stderr,
               "goro preempt: n=%lld gomaxprocs=%d min=%.3f ms; preemptions: requested=%llu "
               "cooperative=%llu async=%llu signals=%llu%s\n",
               (long long)n, goro::gomaxprocs(), double(lat_ns.front()) / 1e6,
               (unsigned long long)(c1.requested - c0.requested),
               (unsigned long long)(c1.cooperative - c0.cooperative),
               (unsigned long long)(c1.async - c0.async),
               (unsigned long long)(c1.signals_sent - c0.signals_sent),
               not_started > 0 ? " (some spinners never started)" : "");
  return not_started > 0 ? 1 : 0;
}
