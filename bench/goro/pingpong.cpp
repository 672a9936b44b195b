// pingpong (goro): two goroutines bounce an int64 over two unbuffered channels n times: the
// root goroutine (the counterpart of Go's main goroutine) sends on `ping` and receives on
// `pong`; its partner receives, adds one and sends back. main is a plain thread, so the timed
// loop runs in that root goroutine. Metric: ns_per_roundtrip = elapsed / n, elapsed from
// starting the partner to the last reply received.
#include <goro/goro.hpp>

#include <cstdio>

#include "../common/bench_util.hpp"

static goro::WaitGroup g_main;  // static: never destroyed under a goroutine still in done()

int main(int argc, char** argv) {
  std::vector<bench::Flag> flags = {{"n", 1000000, "round trips"},
                                    {"procs", 0, "GOMAXPROCS (0: all CPUs)"}};
  bench::parse_flags(argc, argv, flags);
  const std::int64_t n = bench::flag_value(flags, "n");
  const std::int64_t procs = bench::flag_value(flags, "procs");
  if (n <= 0 || procs < 0) {
    std::fprintf(stderr, "pingpong: bad arguments\n");
    return 2;
  }
  if (procs > 0) goro::set_gomaxprocs(int(procs));
  (void)goro::gomaxprocs();  // the runtime starts on first use: not inside the timed region

  std::int64_t elapsed = 0;
  std::int64_t last = -1;
  g_main.add(1);
  goro::go([n, &elapsed, &last] {
    goro::Chan<std::int64_t> ping(0), pong(0);
    const std::int64_t t0 = bench::now_ns();
    goro::go([ping, pong] {
      for (std::int64_t v : ping) pong.send(v + 1);
    });
    std::int64_t v = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      ping.send(v);
      v = *pong.recv();
    }
    elapsed = bench::now_ns() - t0;
    ping.close();  // ends the partner's range loop
    last = v;
    g_main.done();
  });
  g_main.wait();

  if (last != n) {
    std::fprintf(stderr, "pingpong: final value %lld, want %lld\n", (long long)last, (long long)n);
    return 1;
  }
  bench::result("ns_per_roundtrip", double(elapsed) / double(n), "ns");
  std::fprintf(stderr, "goro pingpong: n=%lld gomaxprocs=%d threads=%d elapsed=%.3f ms\n",
               (long long)n, goro::gomaxprocs(), goro::num_threads(), elapsed / 1e6);
  return 0;
}
