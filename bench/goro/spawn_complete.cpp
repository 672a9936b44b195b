// spawn_complete (goro): the cost of starting and finishing a short goroutine. One spawner
// goroutine (the counterpart of Go's main goroutine) starts n goroutines that each call
// WaitGroup::done() and return, then waits for them. Metric: ns_per_task = elapsed / n.
#include <goro/goro.hpp>

#include <cstdio>

#include "../common/bench_util.hpp"

static goro::WaitGroup g_wg, g_main;  // static: never destroyed under a goroutine in done()

int main(int argc, char** argv) {
  std::vector<bench::Flag> flags = {{"n", 1000000, "number of tasks"},
                                    {"procs", 0, "GOMAXPROCS (0: all CPUs)"}};
  bench::parse_flags(argc, argv, flags);
  const std::int64_t n = bench::flag_value(flags, "n");
  const std::int64_t procs = bench::flag_value(flags, "procs");
  if (n <= 0 || procs < 0) {
    std::fprintf(stderr, "spawn_complete: bad arguments\n");
    return 2;
  }
  if (procs > 0) goro::set_gomaxprocs(int(procs));
  (void)goro::gomaxprocs();  // the runtime starts on first use: not inside the timed region

  const std::int64_t t0 = bench::now_ns();
  g_main.add(1);
  goro::go([n] {
    g_wg.add(n);
    for (std::int64_t i = 0; i < n; ++i) goro::go([] { g_wg.done(); });
    g_wg.wait();
    g_main.done();
  });
  g_main.wait();
  const std::int64_t elapsed = bench::now_ns() - t0;
  bench::result("ns_per_task", double(elapsed) / double(n), "ns");
  std::fprintf(stderr, "goro spawn_complete: n=%lld gomaxprocs=%d elapsed=%.3f ms\n", (long long)n,
               goro::gomaxprocs(), elapsed / 1e6);
  return 0;
}
