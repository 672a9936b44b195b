// spawn_park (Boost.Fiber): n fibers on one thread (default round-robin scheduler, default
// stack allocator) each block on one gate, a WaitGroup analogue of count 1 (counter + fiber
// mutex + condition variable) that main releases with done(). Metrics as the other flavours:
//   spawn_ns_per_task    start all n and wait until each has reached the gate, / n
//   release_ns_per_task  open the gate and wait until all n have returned, / n
//   rss_kib_per_task     ((VmRSS+VmPTE) with all parked - the same before spawning) / n
//   threads_while_parked Threads of /proc/self/status with all parked
#include <boost/fiber/all.hpp>
#include <chrono>
#include <cstdio>

#include "../../common/bench_util.hpp"
#include "fiber_util.hpp"

int main(int argc, char** argv) {
  std::vector<bench::Flag> flags = {{"n", 100000, "number of tasks"},
                                    {"procs", 1, "must be 1 (Boost.Fiber here is M:1)"}};
  bench::parse_flags(argc, argv, flags);
  const std::int64_t n = bench::flag_value(flags, "n");
  if (n <= 0 || bench::flag_value(flags, "procs") > 1) {
    std::fprintf(stderr, "spawn_park: bad arguments (the fiber flavour is M:1)\n");
    return 2;
  }

  bench::FiberWaitGroup started, gate, done;
  const bench::ProcStatus before = bench::read_proc_status();

  const std::int64_t t0 = bench::now_ns();
  started.add(n);
  gate.add(1);
  done.add(n);
  for (std::int64_t i = 0; i < n; ++i) {
    boost::fibers::fiber([&] {
      started.done();
      gate.wait();
      done.done();
    }).detach();
  }
  started.wait();
  const std::int64_t t1 = bench::now_ns();

  // Untimed; every flavour sleeps the same 10 ms here so that the last tasks are parked.
  boost::this_fiber::sleep_for(std::chrono::milliseconds(10));
  const bench::ProcStatus parked = bench::read_proc_status();

  const std::int64_t t2 = bench::now_ns();
  gate.done();
  done.wait();
  const std::int64_t t3 = bench::now_ns();

  const double dn = double(n);
  bench::result("spawn_ns_per_task", double(t1 - t0) / dn, "ns");
  bench::result("release_ns_per_task", double(t3 - t2) / dn, "ns");
  bench::result("rss_kib_per_task",
                double((parked.rss_kib + parked.pte_kib) - (before.rss_kib + before.pte_kib)) / dn,
                "KiB");
  bench::result("threads_while_parked", double(parked.threads), "threads");
  std::fprintf(stderr, "fiber spawn_park: n=%lld rss %lld->%lld KiB pte %lld->%lld KiB\n",
               (long long)n, (long long)before.rss_kib, (long long)parked.rss_kib,
               (long long)before.pte_kib, (long long)parked.pte_kib);
  return 0;
}
