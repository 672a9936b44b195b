// spawn_park (goro): n goroutines each block on one gate (a goro::WaitGroup of count 1 that
// main releases with done()). Metrics:
//   spawn_ns_per_task    start all n and wait until each has reached the gate, / n
//   release_ns_per_task  open the gate and wait until all n have returned, / n
//   rss_kib_per_task     ((VmRSS+VmPTE) with all parked - the same before spawning) / n
//   threads_while_parked Threads of /proc/self/status with all parked
// -procs 0 keeps the default GOMAXPROCS (all CPUs).
#include <goro/goro.hpp>

#include <chrono>
#include <cstdio>
#include <thread>

#include "../common/bench_util.hpp"

// Static: never destroyed while a goroutine might still be inside done().
static goro::WaitGroup g_started, g_gate, g_done;

int main(int argc, char** argv) {
  std::vector<bench::Flag> flags = {{"n", 100000, "number of tasks"},
                                    {"procs", 0, "GOMAXPROCS (0: all CPUs)"}};
  bench::parse_flags(argc, argv, flags);
  const std::int64_t n = bench::flag_value(flags, "n");
  const std::int64_t procs = bench::flag_value(flags, "procs");
  if (n <= 0 || procs < 0) {
    std::fprintf(stderr, "spawn_park: bad arguments\n");
    return 2;
  }
  if (procs > 0) goro::set_gomaxprocs(int(procs));
  (void)goro::gomaxprocs();  // start the runtime before the baseline is read
  const bench::ProcStatus before = bench::read_proc_status();

  const std::int64_t t0 = bench::now_ns();
  g_started.add(n);
  g_gate.add(1);
  g_done.add(n);
  for (std::int64_t i = 0; i < n; ++i) {
    goro::go([] {
      g_started.done();
      g_gate.wait();
      g_done.done();
    });
  }
  g_started.wait();
  const std::int64_t t1 = bench::now_ns();

  // Untimed; every flavour sleeps the same 10 ms here so that the last tasks are parked.
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const bench::ProcStatus parked = bench::read_proc_status();

  const std::int64_t t2 = bench::now_ns();
  g_gate.done();
  g_done.wait();
  const std::int64_t t3 = bench::now_ns();

  const double dn = double(n);
  bench::result("spawn_ns_per_task", double(t1 - t0) / dn, "ns");
  bench::result("release_ns_per_task", double(t3 - t2) / dn, "ns");
  bench::result("rss_kib_per_task",
                double((parked.rss_kib + parked.pte_kib) - (before.rss_kib + before.pte_kib)) / dn,
                "KiB");
  bench::result("threads_while_parked", double(parked.threads), "threads");
  std::fprintf(stderr,
               "goro spawn_park: n=%lld gomaxprocs=%d rss %lld->%lld KiB pte %lld->%lld KiB\n",
               (long long)n, goro::gomaxprocs(), (long long)before.rss_kib,
               (long long)parked.rss_kib, (long long)before.pte_kib, (long long)parked.pte_kib);
  return 0;
}
