// select4 (goro): one receiver selects over 4 channels (unbuffered unless -cap), each fed by its
// own sender goroutine that sends n/4 int64s; the receiver performs n selects in all. The
// receiver is the root goroutine (the counterpart of Go's main goroutine); main is a plain
// thread. Metric: ns_per_op = elapsed / n (one select and one send per op).
#include <goro/goro.hpp>

#include <array>
#include <cstdio>

#include "../common/bench_util.hpp"

static goro::WaitGroup g_main;  // static: never destroyed under a goroutine still in done()

int main(int argc, char** argv) {
  std::vector<bench::Flag> flags = {{"n", 4000000, "values received in all (a multiple of 4)"},
                                    {"cap", 0, "capacity of each channel (0: unbuffered)"},
                                    {"procs", 0, "GOMAXPROCS (0: all CPUs)"}};
  bench::parse_flags(argc, argv, flags);
  const std::int64_t n = bench::flag_value(flags, "n");
  const std::int64_t cap = bench::flag_value(flags, "cap");
  const std::int64_t procs = bench::flag_value(flags, "procs");
  if (n <= 0 || n % 4 != 0 || cap < 0 || procs < 0) {
    std::fprintf(stderr, "select4: bad arguments (-n must be a positive multiple of 4)\n");
    return 2;
  }
  if (procs > 0) goro::set_gomaxprocs(int(procs));
  (void)goro::gomaxprocs();  // the runtime starts on first use: not inside the timed region

  std::int64_t elapsed = 0, sum = 0;
  std::array<std::int64_t, 4> got{};
  g_main.add(1);
  goro::go([&] {
    std::array<goro::Chan<std::int64_t>, 4> ch;
    for (auto& c : ch) c = goro::Chan<std::int64_t>(std::size_t(cap));
    const std::int64_t per = n / 4;
    const std::int64_t t0 = bench::now_ns();
    for (int k = 0; k < 4; ++k) {
      goro::go([c = ch[k], per] {
        for (std::int64_t v = 0; v < per; ++v) c.send(v);
      });
    }
    // The handler of case k: add the value, count it.
    auto take = [&](int k) {
      return [&, k](std::optional<std::int64_t> v) {
        sum += *v;
        ++got[k];
      };
    };
    for (std::int64_t i = 0; i < n; ++i) {
      goro::select(goro::on_recv(ch[0], take(0)), goro::on_recv(ch[1], take(1)),
                   goro::on_recv(ch[2], take(2)), goro::on_recv(ch[3], take(3)));
    }
    elapsed = bench::now_ns() - t0;
    g_main.done();
  });
  g_main.wait();

  const std::int64_t per = n / 4;
  if (sum != 4 * (per * (per - 1) / 2) || got[0] != per || got[1] != per || got[2] != per ||
      got[3] != per) {
    std::fprintf(stderr, "select4: sum %lld (want %lld), per channel %lld %lld %lld %lld\n",
                 (long long)sum, (long long)(4 * (per * (per - 1) / 2)), (long long)got[0],
                 (long long)got[1], (long long)got[2], (long long)got[3]);
    return 1;
  }
  bench::result("ns_per_op", double(elapsed) / double(n), "ns");
  std::fprintf(stderr, "goro select4: n=%lld cap=%lld gomaxprocs=%d threads=%d elapsed=%.3f ms\n",
               (long long)n, (long long)cap, goro::gomaxprocs(), goro::num_threads(),
               elapsed / 1e6);
  return 0;
}
