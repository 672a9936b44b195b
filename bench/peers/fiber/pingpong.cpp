// pingpong (Boost.Fiber): two fibers on one thread (default scheduler and stack allocator)
// bounce an int64 over two boost::fibers::unbuffered_channel n times: the main fiber sends on
// `ping` and receives on `pong`; its partner receives, adds one and sends back. Metric:
// ns_per_roundtrip = elapsed / n, elapsed from starting the partner to the last reply.
#include <boost/fiber/all.hpp>
#include <cstdio>

#include "../../common/bench_util.hpp"

int main(int argc, char** argv) {
  std::vector<bench::Flag> flags = {{"n", 1000000, "round trips"},
                                    {"procs", 1, "must be 1 (Boost.Fiber here is M:1)"}};
  bench::parse_flags(argc, argv, flags);
  const std::int64_t n = bench::flag_value(flags, "n");
  if (n <= 0 || bench::flag_value(flags, "procs") > 1) {
    std::fprintf(stderr, "pingpong: bad arguments (the fiber flavour is M:1)\n");
    return 2;
  }
  using Chan = boost::fibers::unbuffered_channel<std::int64_t>;
  Chan ping, pong;
  const std::int64_t t0 = bench::now_ns();
  boost::fibers::fiber partner([&ping, &pong] {
    std::int64_t v = 0;
    while (ping.pop(v) == boost::fibers::channel_op_status::success) pong.push(v + 1);
  });
  std::int64_t v = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    ping.push(v);
    pong.pop(v);
  }
  const std::int64_t elapsed = bench::now_ns() - t0;
  ping.close();
  partner.join();
  if (v != n) {
    std::fprintf(stderr, "pingpong: final value %lld, want %lld\n", (long long)v, (long long)n);
    return 1;
  }
  bench::result("ns_per_roundtrip", double(elapsed) / double(n), "ns");
  std::fprintf(stderr, "fiber pingpong: n=%lld elapsed=%.3f ms\n", (long long)n, elapsed / 1e6);
  return 0;
}
