// spawn_run (std::thread): n threads each sum 0..999 into an escaping sink; main joins them
// all (std::thread::join stands for the WaitGroup). Meant for n = 10,000 only. Metric:
// ns_per_task = elapsed / n, elapsed from before the first thread is created to the last join.
#include <cstdio>
#include <thread>
#include <vector>

#include "../../common/bench_util.hpp"

int main(int argc, char** argv) {
  std::vector<bench::Flag> flags = {{"n", 10000, "number of threads"},
                                    {"procs", 0, "ignored (the kernel schedules threads)"}};
  bench::parse_flags(argc, argv, flags);
  const std::int64_t n = bench::flag_value(flags, "n");
  if (n <= 0 || n > 100000) {
    std::fprintf(stderr, "spawn_run: -n must be in 1..100000 for threads\n");
    return 2;
  }

  std::vector<std::thread> threads;
  threads.reserve(std::size_t(n));
  const std::int64_t t0 = bench::now_ns();
  for (std::int64_t i = 0; i < n; ++i) {
    threads.emplace_back(
        [] { bench::g_sink.store(bench::sum_0_to_999(), std::memory_order_relaxed); });
  }
  for (std::thread& t : threads) t.join();
  const std::int64_t elapsed = bench::now_ns() - t0;

  if (bench::g_sink.load() != bench::kSum0To999) {
    std::fprintf(stderr, "spawn_run: bad sink\n");
    return 1;
  }
  bench::result("ns_per_task", double(elapsed) / double(n), "ns");
  std::fprintf(stderr, "thread spawn_run: n=%lld elapsed=%.3f ms\n", (long long)n, elapsed / 1e6);
  return 0;
}
