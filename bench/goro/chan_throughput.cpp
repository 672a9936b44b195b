// chan_throughput (goro): p producers and p consumers move n int64s (0..n-1, split evenly among
// the producers) through one channel buffered to `cap` (1024). A WaitGroup tracks the
// producers; once they are done the channel is closed, and the consumers' range loops end. The
// root goroutine (the counterpart of Go's main goroutine) starts everything and waits for the
// consumers; main is a plain thread. Metrics: ns_per_op = elapsed / n, mops = n / elapsed (µs).
#include <goro/goro.hpp>

#include <atomic>
#include <cstdio>

#include "../common/bench_util.hpp"

static goro::WaitGroup g_main;  // static: never destroyed under a goroutine still in done()

int main(int argc, char** argv) {
  std::vector<bench::Flag> flags = {{"n", 10000000, "values sent in all"},
                                    {"p", 1, "producers (and as many consumers)"},
                                    {"cap", 1024, "channel capacity"},
                                    {"procs", 0, "GOMAXPROCS (0: all CPUs)"}};
  bench::parse_flags(argc, argv, flags);
  const std::int64_t n = bench::flag_value(flags, "n");
  const std::int64_t p = bench::flag_value(flags, "p");
  const std::int64_t cap = bench::flag_value(flags, "cap");
  const std::int64_t procs = bench::flag_value(flags, "procs");
  if (n <= 0 || p <= 0 || p > 1024 || cap < 0 || procs < 0) {
    std::fprintf(stderr, "chan_throughput: bad arguments\n");
    return 2;
  }
  if (procs > 0) goro::set_gomaxprocs(int(procs));
  (void)goro::gomaxprocs();  // the runtime starts on first use: not inside the timed region

  std::int64_t elapsed = 0;
  std::atomic<std::int64_t> total{0};
  g_main.add(1);
  goro::go([&] {
    goro::Chan<std::int64_t> ch{std::size_t(cap)};
    // On the root goroutine's stack: it outlives every goroutine that uses them.
    goro::WaitGroup producers, consumers;
    const std::int64_t t0 = bench::now_ns();
    producers.add(p);
    consumers.add(p);
    for (std::int64_t k = 0; k < p; ++k) {
      const std::int64_t lo = n * k / p, hi = n * (k + 1) / p;
      goro::go([ch, lo, hi, &producers] {
        for (std::int64_t v = lo; v < hi; ++v) ch.send(v);
        producers.done();
      });
      goro::go([ch, &consumers, &total] {
        std::int64_t sum = 0;
        for (std::int64_t v : ch) sum += v;
        total.fetch_add(sum, std::memory_order_relaxed);
        consumers.done();
      });
    }
    goro::go([ch, &producers] {
      producers.wait();
      ch.close();
    });
    consumers.wait();
    elapsed = bench::now_ns() - t0;
    g_main.done();
  });
  g_main.wait();

  if (total.load() != n * (n - 1) / 2) {
    std::fprintf(stderr, "chan_throughput: sum %lld, want %lld\n", (long long)total.load(),
                 (long long)(n * (n - 1) / 2));
    return 1;
  }
  bench::result("ns_per_op", double(elapsed) / double(n), "ns");
  bench::result("mops", double(n) * 1e3 / double(elapsed), "Mop/s");
  std::fprintf(stderr,
               "goro chan_throughput: n=%lld p=%lld cap=%lld gomaxprocs=%d threads=%d "
               "elapsed=%.3f ms\n",
               (long long)n, (long long)p, (long long)cap, goro::gomaxprocs(), goro::num_threads(),
               elapsed / 1e6);
  return 0;
}
