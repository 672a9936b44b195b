// spawn_park (std::thread): n threads each block on one gate (a std::latch of count 1 that
// main releases with count_down()); meant for n = 10,000 only. Metrics as the other flavours:
//   spawn_ns_per_task    create all n and wait until each has reached the gate, / n
//   release_ns_per_task  open the gate and join all n, / n
//   rss_kib_per_task     ((VmRSS+VmPTE) with all parked - the same before) / n: per thread
//   threads_while_parked Threads of /proc/self/status with all parked
#include <chrono>
#include <cstdio>
#include <latch>
#include <thread>
#include <vector>

#include "../../common/bench_util.hpp"

int main(int argc, char** argv) {
  std::vector<bench::Flag> flags = {{"n", 10000, "number of threads"},
                                    {"procs", 0, "ignored (the kernel schedules threads)"}};
  bench::parse_flags(argc, argv, flags);
  const std::int64_t n = bench::flag_value(flags, "n");
  if (n <= 0 || n > 100000) {
    std::fprintf(stderr, "spawn_park: -n must be in 1..100000 for threads\n");
    return 2;
  }

  std::vector<std::thread> threads;
  threads.reserve(std::size_t(n));
  std::latch started(n), gate(1);
  const bench::ProcStatus before = bench::read_proc_status();

  const std::int64_t t0 = bench::now_ns();
  for (std::int64_t i = 0; i < n; ++i) {
    threads.emplace_back([&] {
      started.count_down();
      gate.wait();
    });
  }
  started.wait();
  const std::int64_t t1 = bench::now_ns();

  // Untimed; every flavour sleeps the same 10 ms here so that the last tasks are parked.
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const bench::ProcStatus parked = bench::read_proc_status();

  const std::int64_t t2 = bench::now_ns();
  gate.count_down();
  for (std::thread& t : threads) t.join();
  const std::int64_t t3 = bench::now_ns();

  const double dn = double(n);
  bench::result("spawn_ns_per_task", double(t1 - t0) / dn, "ns");
  bench::result("release_ns_per_task", double(t3 - t2) / dn, "ns");
  bench::result("rss_kib_per_task",
                double((parked.rss_kib + parked.pte_kib) - (before.rss_kib + before.pte_kib)) / dn,
                "KiB");
  bench::result("threads_while_parked", double(parked.threads), "threads");
  std::fprintf(stderr, "thread spawn_park: n=%lld rss %lld->%lld KiB pte %lld->%lld KiB\n",
               (long long)n, (long long)before.rss_kib, (long long)parked.rss_kib,
               (long long)before.pte_kib, (long long)parked.pte_kib);
  return 0;
}
