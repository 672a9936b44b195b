// spawn_run (goro): the seed example. n goroutines each sum 0..999 into an escaping sink,
// joined with a goro::WaitGroup. Metric: ns_per_task = elapsed / n, elapsed from before the
// first goro::go to wait() returning. -procs 0 keeps the default GOMAXPROCS (all CPUs).
#include <goro/goro.hpp>

#include <cstdio>

#include "../common/bench_util.hpp"

static goro::WaitGroup g_wg;  // static: never destroyed under a goroutine still in done()

int main(int argc, char** argv) {
  std::vector<bench::Flag> flags = {{"n", 10000, "number of tasks"},
                                    {"procs", 0, "GOMAXPROCS (0: all CPUs)"}};
  bench::parse_flags(argc, argv, flags);
  const std::int64_t n = bench::flag_value(flags, "n");
  const std::int64_t procs = bench::flag_value(flags, "procs");
  if (n <= 0 || procs < 0) {
    std::fprintf(stderr, "spawn_run: bad arguments\n");
    return 2;
  }
  if (procs > 0) goro::set_gomaxprocs(int(procs));
  (void)goro::gomaxprocs();  // the runtime starts on first use: not inside the timed region

  const std::int64_t t0 = bench::now_ns();
  g_wg.add(n);
  for (std::int64_t i = 0; i < n; ++i) {
    goro::go([] {
      bench::g_sink.store(bench::sum_0_to_999(), std::memory_order_relaxed);
      g_wg.done();
    });
  }
  g_wg.wait();
  const std::int64_t elapsed = bench::now_ns() - t0;

  if (bench::g_sink.load() != bench::kSum0To999) {
    std::fprintf(stderr, "spawn_run: bad sink\n");
    return 1;
  }
  bench::result("ns_per_task", double(elapsed) / double(n), "ns");
  std::fprintf(stderr, "goro spawn_run: n=%lld gomaxprocs=%d threads=%d elapsed=%.3f ms\n",
               (long long)n, goro::gomaxprocs(), goro::num_threads(), elapsed / 1e6);
  return 0;
}
