// spawn_complete (Boost.Fiber): n detached fibers that each call done() on a WaitGroup
// analogue and return, on one thread (default scheduler and stack allocator). Metric:
// ns_per_task = elapsed / n.
#include <boost/fiber/all.hpp>
#include <cstdio>

#include "../../common/bench_util.hpp"
#include "fiber_util.hpp"

int main(int argc, char** argv) {
  std::vector<bench::Flag> flags = {{"n", 1000000, "number of tasks"},
                                    {"procs", 1, "must be 1 (Boost.Fiber here is M:1)"}};
  bench::parse_flags(argc, argv, flags);
  const std::int64_t n = bench::flag_value(flags, "n");
  if (n <= 0 || bench::flag_value(flags, "procs") > 1) {
    std::fprintf(stderr, "spawn_complete: bad arguments (the fiber flavour is M:1)\n");
    return 2;
  }
  bench::FiberWaitGroup wg;
  const std::int64_t t0 = bench::now_ns();
  wg.add(n);
  for (std::int64_t i = 0; i < n; ++i) boost::fibers::fiber([&wg] { wg.done(); }).detach();
  wg.wait();
  const std::int64_t elapsed = bench::now_ns() - t0;
  bench::result("ns_per_task", double(elapsed) / double(n), "ns");
  std::fprintf(stderr, "fiber spawn_complete: n=%lld elapsed=%.3f ms\n", (long long)n,
               elapsed / 1e6);
  return 0;
}
