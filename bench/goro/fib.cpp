// fib (goro): fork-join fib(n): every call with n >= 2 starts one goroutine for fib(n-1),
// computes fib(n-2) itself and joins the child with a goro::WaitGroup of its own (on its
// stack, as in Go). main is a plain thread, so the root call runs in a goroutine too (Go's
// main is a goroutine). Metric: ms.
#include <goro/goro.hpp>

#include <cstdio>

#include "../common/bench_util.hpp"

static long fib(int n) {
  if (n < 2) return n;
  goro::WaitGroup wg;
  long a = 0;
  wg.add(1);
  goro::go([&a, &wg, n] {
    a = fib(n - 1);
    wg.done();
  });
  const long b = fib(n - 2);
  wg.wait();
  return a + b;
}

static long fib_seq(int n) {
  return n < 2 ? n : fib_seq(n - 1) + fib_seq(n - 2);
}

static goro::WaitGroup g_root;  // static: never destroyed under a goroutine still in done()

int main(int argc, char** argv) {
  std::vector<bench::Flag> flags = {{"n", 27, "fib argument"},
                                    {"procs", 1, "GOMAXPROCS (0: all CPUs)"}};
  bench::parse_flags(argc, argv, flags);
  const int n = int(bench::flag_value(flags, "n"));
  const std::int64_t procs = bench::flag_value(flags, "procs");
  if (n < 0 || n > 40 || procs < 0) {
    std::fprintf(stderr, "fib: bad arguments\n");
    return 2;
  }
  if (procs > 0) goro::set_gomaxprocs(int(procs));
  (void)goro::gomaxprocs();  // the runtime starts on first use: not inside the timed region

  long r = -1;
  const std::int64_t t0 = bench::now_ns();
  g_root.add(1);
  goro::go([&r, n] {
    r = fib(n);
    g_root.done();
  });
  g_root.wait();
  const std::int64_t elapsed = bench::now_ns() - t0;

  if (r != fib_seq(n)) {
    std::fprintf(stderr, "fib: got %ld, want %ld\n", r, fib_seq(n));
    return 1;
  }
  bench::result("ms", double(elapsed) / 1e6, "ms");
  std::fprintf(stderr, "goro fib(%d)=%ld gomaxprocs=%d threads=%d\n", n, r, goro::gomaxprocs(),
               goro::num_threads());
  return 0;
}
