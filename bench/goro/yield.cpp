// yield (goro): two goroutines on ONE processor (set_gomaxprocs(1)) each call goro::yield()
// n times. Metric: ns_per_switch = elapsed / (2n), elapsed from opening the start gate (both
// goroutines parked on it) to both finished.
#include <goro/goro.hpp>

#include <cstdio>

#include "../common/bench_util.hpp"

// Static: never destroyed while a goroutine might still be inside done().
static goro::WaitGroup g_gate, g_done;

int main(int argc, char** argv) {
  std::vector<bench::Flag> flags = {{"n", 10000000, "yields per task"}};
  bench::parse_flags(argc, argv, flags);
  const std::int64_t n = bench::flag_value(flags, "n");
  if (n <= 0) {
    std::fprintf(stderr, "yield: -n must be positive\n");
    return 2;
  }
  goro::set_gomaxprocs(1);

  // main is a plain thread, not a goroutine: the gate keeps the first goroutine from yielding
  // alone while the second is being started.
  g_gate.add(1);
  g_done.add(2);
  for (int k = 0; k < 2; ++k) {
    goro::go([n] {
      g_gate.wait();
      for (std::int64_t i = 0; i < n; ++i) goro::yield();
      g_done.done();
    });
  }
  const std::int64_t t0 = bench::now_ns();
  g_gate.done();
  g_done.wait();
  const std::int64_t elapsed = bench::now_ns() - t0;

  bench::result("ns_per_switch", double(elapsed) / double(2 * n), "ns");
  std::fprintf(stderr, "goro yield: n=%lld gomaxprocs=%d threads=%d elapsed=%.3f s\n", (long long)n,
               goro::gomaxprocs(), goro::num_threads(), elapsed / 1e9);
  return 0;
}
