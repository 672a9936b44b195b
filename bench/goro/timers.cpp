// timers (goro): n goroutines each sleep a pseudo-random duration in [min_ms, max_ms] (default
// [10 ms, 110 ms], a seeded splitmix64 stream at microsecond granularity, the same durations
// as the Go peer) and record their lateness: the time from the sleep's start to the goroutine
// running again, minus the requested duration. With -busy B, B goroutines spin for the whole
// measurement, each calling goro::yield() every ~50 µs (start them before the sleepers; stop
// them after), so the timers fire on loaded Ps. The root goroutine (the counterpart of Go's
// main goroutine) starts the sleepers and waits for them; main is a plain thread.
// Metrics: p50_lateness_us, p99_lateness_us (nearest rank), max_lateness_us, cpu_ms (process
// user + system CPU time, getrusage(RUSAGE_SELF), from the first spawn to the last wake-up),
// ms (wall time of the same span).
#include <sys/resource.h>
#include <goro/goro.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <vector>

#include "../common/bench_util.hpp"

static goro::WaitGroup g_main;  // static: never destroyed under a goroutine still in done()

static std::int64_t cpu_ns() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return (std::int64_t(ru.ru_utime.tv_sec) + ru.ru_stime.tv_sec) * 1000000000 +
         (std::int64_t(ru.ru_utime.tv_usec) + ru.ru_stime.tv_usec) * 1000;
}

static std::uint64_t splitmix64(std::uint64_t& s) {
  std::uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The nearest-rank percentile of sorted v (the Go peer uses the same rule).
static std::int64_t percentile(const std::vector<std::int64_t>& v, int pct) {
  std::size_t rank = (v.size() * std::size_t(pct) + 99) / 100;  // ceil(pct% of n)
  return v[rank == 0 ? 0 : rank - 1];
}

int main(int argc, char** argv) {
  std::vector<bench::Flag> flags = {{"n", 100000, "sleeping goroutines"},
                                    {"min_ms", 10, "shortest sleep"},
                                    {"max_ms", 110, "longest sleep"},
                                    {"busy", 0, "spinning goroutines that yield every ~50 us"},
                                    {"seed", 1, "seed of the sleep durations"},
                                    {"procs", 0, "GOMAXPROCS (0: all CPUs)"}};
  bench::parse_flags(argc, argv, flags);
  const std::int64_t n = bench::flag_value(flags, "n");
  const std::int64_t min_ms = bench::flag_value(flags, "min_ms");
  const std::int64_t max_ms = bench::flag_value(flags, "max_ms");
  const std::int64_t busy = bench::flag_value(flags, "busy");
  const std::int64_t procs = bench::flag_value(flags, "procs");
  if (n <= 0 || min_ms < 0 || max_ms < min_ms || busy < 0 || busy > 1024 || procs < 0) {
    std::fprintf(stderr, "timers: bad arguments\n");
    return 2;
  }
  if (procs > 0) goro::set_gomaxprocs(int(procs));
  (void)goro::gomaxprocs();  // the runtime starts on first use: not inside the timed region

  std::vector<std::int64_t> sleep_ns(std::size_t(n), 0), late_ns(std::size_t(n), 0);
  std::uint64_t seed = std::uint64_t(bench::flag_value(flags, "seed"));
  const std::uint64_t span_us = std::uint64_t(max_ms - min_ms) * 1000 + 1;
  for (auto& d : sleep_ns) d = (min_ms * 1000 + std::int64_t(splitmix64(seed) % span_us)) * 1000;

  std::int64_t wall = 0, cpu = 0;
  g_main.add(1);
  goro::go([&] {
    std::atomic<bool> stop{false};
    goro::WaitGroup spinners, sleepers;
    spinners.add(busy);
    for (std::int64_t b = 0; b < busy; ++b) {
      goro::go([&stop, &spinners] {
        while (!stop.load(std::memory_order_relaxed)) {
          const std::int64_t t = bench::now_ns();
          while (bench::now_ns() - t < 50000) {
          }
          goro::yield();
        }
        spinners.done();
      });
    }
    const std::int64_t c0 = cpu_ns(), t0 = bench::now_ns();
    sleepers.add(n);
    for (std::int64_t i = 0; i < n; ++i) {
      goro::go([&sleepers, d = sleep_ns[std::size_t(i)], out = &late_ns[std::size_t(i)]] {
        const std::int64_t start = bench::now_ns();
        goro::sleep_for(std::chrono::nanoseconds(d));
        *out = bench::now_ns() - start - d;
        sleepers.done();
      });
    }
    sleepers.wait();
    wall = bench::now_ns() - t0;
    cpu = cpu_ns() - c0;
    stop.store(true, std::memory_order_relaxed);
    spinners.wait();
    g_main.done();
  });
  g_main.wait();

  std::sort(late_ns.begin(), late_ns.end());
  if (late_ns.front() < 0) {
    std::fprintf(stderr, "timers: a sleep returned %lld ns early\n", (long long)-late_ns.front());
    return 1;
  }
  bench::result("p50_lateness_us", double(percentile(late_ns, 50)) / 1e3, "us");
  bench::result("p99_lateness_us", double(percentile(late_ns, 99)) / 1e3, "us");
  bench::result("max_lateness_us", double(late_ns.back()) / 1e3, "us");
  bench::result("cpu_ms", double(cpu) / 1e6, "ms");
  bench::result("ms", double(wall) / 1e6, "ms");
  std::fprintf(stderr, "goro timers: n=%lld busy=%lld gomaxprocs=%d threads=%d wall=%.3f ms\n",
               (long long)n, (long long)busy, goro::gomaxprocs(), goro::num_threads(), wall / 1e6);
  return 0;
}
