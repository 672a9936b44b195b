// fib (Boost.Fiber): fork-join fib(n) on one thread (default round-robin scheduler, M:1):
// every call with n >= 2 starts one fiber for fib(n-1), computes fib(n-2) itself and joins
// the child (fiber::join, Boost.Fiber's own join). main is a fiber: it is the root task.
// Metric: ms.
#include <boost/fiber/all.hpp>
#include <cstdio>

#include "../../common/bench_util.hpp"

static long fib(int n) {
  if (n < 2) return n;
  long a = 0;
  boost::fibers::fiber child([&a, n] { a = fib(n - 1); });
  long b = fib(n - 2);
  child.join();
  return a + b;
}

static long fib_seq(int n) {
  return n < 2 ? n : fib_seq(n - 1) + fib_seq(n - 2);
}

int main(int argc, char** argv) {
  std::vector<bench::Flag> flags = {{"n", 27, "fib argument"},
                                    {"procs", 1, "must be 1 (Boost.Fiber here is M:1)"}};
  bench::parse_flags(argc, argv, flags);
  const int n = int(bench::flag_value(flags, "n"));
  if (n < 0 || n > 40 || bench::flag_value(flags, "procs") > 1) {
    std::fprintf(stderr, "fib: bad arguments (the fiber flavour is M:1)\n");
    return 2;
  }

  const std::int64_t t0 = bench::now_ns();
  const long r = fib(n);
  const std::int64_t elapsed = bench::now_ns() - t0;

  if (r != fib_seq(n)) {
    std::fprintf(stderr, "fib: got %ld, want %ld\n", r, fib_seq(n));
    return 1;
  }
  bench::result("ms", double(elapsed) / 1e6, "ms");
  std::fprintf(stderr, "fiber fib(%d)=%ld threads=1\n", n, r);
  return 0;
}
