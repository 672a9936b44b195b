// spawn_complete (std::thread): n threads started one after another, each returning at once,
// all joined at the end (so up to n exist at a time; use n <= 10,000). Metric: ns_per_task.
#include <cstdio>
#include <thread>
#include <vector>

#include "../../common/bench_util.hpp"

int main(int argc, char** argv) {
  std::vector<bench::Flag> flags = {{"n", 10000, "number of tasks"},
                                    {"procs", 0, "ignored (the kernel schedules threads)"}};
  bench::parse_flags(argc, argv, flags);
  const std::int64_t n = bench::flag_value(flags, "n");
  if (n <= 0) {
    std::fprintf(stderr, "spawn_complete: bad arguments\n");
    return 2;
  }
  std::vector<std::thread> threads;
  threads.reserve(static_cast<std::size_t>(n));
  const std::int64_t t0 = bench::now_ns();
  for (std::int64_t i = 0; i < n; ++i) threads.emplace_back([] {});
  for (auto& t : threads) t.join();
  const std::int64_t elapsed = bench::now_ns() - t0;
  bench::result("ns_per_task", double(elapsed) / double(n), "ns");
  std::fprintf(stderr, "thread spawn_complete: n=%lld elapsed=%.3f ms\n", (long long)n,
               elapsed / 1e6);
  return 0;
}
