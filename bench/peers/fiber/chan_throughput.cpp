// chan_throughput (Boost.Fiber): p producer and p consumer fibers on one thread (default
// scheduler and stack allocator) move n int64s (0..n-1, split evenly among the producers)
// through one boost::fibers::buffered_channel. Its capacity must be a power of two and it holds
// one value less than that: cap=1024 buffers 1023. A WaitGroup analogue tracks the producers; a
// closer fiber waits for it and closes the channel, which ends the consumers' pop loops.
// Metrics: ns_per_op = elapsed / n, mops = n / elapsed (µs).
#include <boost/fiber/all.hpp>
#include <cstdio>
#include <vector>

#include "../../common/bench_util.hpp"
#include "fiber_util.hpp"

int main(int argc, char** argv) {
  std::vector<bench::Flag> flags = {{"n", 10000000, "values sent in all"},
                                    {"p", 1, "producers (and as many consumers)"},
                                    {"cap", 1024, "channel capacity (a power of two >= 2)"},
                                    {"procs", 1, "must be 1 (Boost.Fiber here is M:1)"}};
  bench::parse_flags(argc, argv, flags);
  const std::int64_t n = bench::flag_value(flags, "n");
  const std::int64_t p = bench::flag_value(flags, "p");
  const std::int64_t cap = bench::flag_value(flags, "cap");
  if (n <= 0 || p <= 0 || p > 1024 || cap < 2 || (cap & (cap - 1)) != 0 ||
      bench::flag_value(flags, "procs") > 1) {
    std::fprintf(stderr,
                 "chan_throughput: bad arguments (the fiber flavour is M:1; -cap must "
                 "be a power of two)\n");
    return 2;
  }
  using Chan = boost::fibers::buffered_channel<std::int64_t>;
  using boost::fibers::channel_op_status;
  Chan ch{std::size_t(cap)};
  bench::FiberWaitGroup producers, consumers;
  std::int64_t total = 0;
  const std::int64_t t0 = bench::now_ns();
  producers.add(p);
  consumers.add(p);
  for (std::int64_t k = 0; k < p; ++k) {
    const std::int64_t lo = n * k / p, hi = n * (k + 1) / p;
    boost::fibers::fiber([&ch, &producers, lo, hi] {
      for (std::int64_t v = lo; v < hi; ++v) ch.push(v);
      producers.done();
    }).detach();
    boost::fibers::fiber([&ch, &consumers, &total] {
      std::int64_t sum = 0, v = 0;
      while (ch.pop(v) == channel_op_status::success) sum += v;
      total += sum;
      consumers.done();
    }).detach();
  }
  boost::fibers::fiber closer([&ch, &producers] {
    producers.wait();
    ch.close();
  });
  consumers.wait();
  const std::int64_t elapsed = bench::now_ns() - t0;
  closer.join();
  if (total != n * (n - 1) / 2) {
    std::fprintf(stderr, "chan_throughput: sum %lld, want %lld\n", (long long)total,
                 (long long)(n * (n - 1) / 2));
    return 1;
  }
  bench::result("ns_per_op", double(elapsed) / double(n), "ns");
  bench::result("mops", double(n) * 1e3 / double(elapsed), "Mop/s");
  std::fprintf(stderr, "fiber chan_throughput: n=%lld p=%lld cap=%lld elapsed=%.3f ms\n",
               (long long)n, (long long)p, (long long)cap, elapsed / 1e6);
  return 0;
}
