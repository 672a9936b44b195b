// mutex (goro): w goroutines (8) each lock a shared goro::Mutex n/w times, increment a shared
// counter and unlock (a tiny critical section). The root goroutine (the counterpart of Go's
// main goroutine) starts the workers and waits for them; main is a plain thread. Metric:
// ns_per_op = elapsed / n (one lock + unlock per op).
#include <goro/goro.hpp>

#include <cstdio>

#include "../common/bench_util.hpp"

static goro::WaitGroup g_main;  // static: never destroyed under a goroutine still in done()
static goro::Mutex g_mu;
static std::int64_t g_counter = 0;  // guarded by g_mu

int main(int argc, char** argv) {
  std::vector<bench::Flag> flags = {{"n", 1000000, "lock/unlock pairs in all"},
                                    {"w", 8, "worker goroutines"},
                                    {"procs", 0, "GOMAXPROCS (0: all CPUs)"}};
  bench::parse_flags(argc, argv, flags);
  const std::int64_t n = bench::flag_value(flags, "n");
  const std::int64_t w = bench::flag_value(flags, "w");
  const std::int64_t procs = bench::flag_value(flags, "procs");
  if (n <= 0 || w <= 0 || w > 1024 || procs < 0) {
    std::fprintf(stderr, "mutex: bad arguments\n");
    return 2;
  }
  if (procs > 0) goro::set_gomaxprocs(int(procs));
  (void)goro::gomaxprocs();  // the runtime starts on first use: not inside the timed region

  std::int64_t elapsed = 0;
  g_main.add(1);
  goro::go([&] {
    goro::WaitGroup workers;
    const std::int64_t t0 = bench::now_ns();
    workers.add(w);
    for (std::int64_t k = 0; k < w; ++k) {
      const std::int64_t count = n * (k + 1) / w - n * k / w;
      goro::go([count, &workers] {
        for (std::int64_t i = 0; i < count; ++i) {
          g_mu.lock();
          ++g_counter;
          g_mu.unlock();
        }
        workers.done();
      });
    }
    workers.wait();
    elapsed = bench::now_ns() - t0;
    g_main.done();
  });
  g_main.wait();

  if (g_counter != n) {
    std::fprintf(stderr, "mutex: counter %lld, want %lld\n", (long long)g_counter, (long long)n);
    return 1;
  }
  bench::result("ns_per_op", double(elapsed) / double(n), "ns");
  std::fprintf(stderr, "goro mutex: n=%lld w=%lld gomaxprocs=%d threads=%d elapsed=%.3f ms\n",
               (long long)n, (long long)w, goro::gomaxprocs(), goro::num_threads(), elapsed / 1e6);
  return 0;
}
