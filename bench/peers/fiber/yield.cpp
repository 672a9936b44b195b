// yield (Boost.Fiber): two fibers on one thread (default round-robin scheduler, M:1) each call
// boost::this_fiber::yield() n times. Metric: ns_per_switch = elapsed / (2n), elapsed from
// starting both fibers to both joined.
#include <boost/fiber/all.hpp>
#include <cstdio>

#include "../../common/bench_util.hpp"

int main(int argc, char** argv) {
  std::vector<bench::Flag> flags = {{"n", 10000000, "yields per task"}};
  bench::parse_flags(argc, argv, flags);
  const std::int64_t n = bench::flag_value(flags, "n");
  if (n <= 0) {
    std::fprintf(stderr, "yield: -n must be positive\n");
    return 2;
  }

  auto body = [n] {
    for (std::int64_t i = 0; i < n; ++i) boost::this_fiber::yield();
  };
  // launch::post (the default): neither fiber runs before main blocks in join().
  const std::int64_t t0 = bench::now_ns();
  boost::fibers::fiber a(body);
  boost::fibers::fiber b(body);
  a.join();
  b.join();
  const std::int64_t elapsed = bench::now_ns() - t0;

  bench::result("ns_per_switch", double(elapsed) / double(2 * n), "ns");
  std::fprintf(stderr, "fiber yield: n=%lld elapsed=%.3f s\n", (long long)n, elapsed / 1e9);
  return 0;
}
