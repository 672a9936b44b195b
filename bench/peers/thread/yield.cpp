// yield (std::thread): two threads pinned to ONE CPU (the first CPU of the process's affinity
// mask) each call sched_yield() n times. Metric: ns_per_switch = elapsed / (2n), elapsed from
// opening the start gate (both threads pinned and waiting) to both joined.
#include <pthread.h>
#include <sched.h>

#include <cstdio>
#include <latch>
#include <thread>

#include "../../common/bench_util.hpp"

int main(int argc, char** argv) {
  // The default n is 2,000,000 (not 10,000,000 as in the other flavours): a kernel switch
  // costs ~1 us, and the default run should stay under ~10 s. The metric is per switch.
  std::vector<bench::Flag> flags = {{"n", 2000000, "yields per task"}};
  bench::parse_flags(argc, argv, flags);
  const std::int64_t n = bench::flag_value(flags, "n");
  if (n <= 0) {
    std::fprintf(stderr, "yield: -n must be positive\n");
    return 2;
  }

  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) {
    std::perror("sched_getaffinity");
    return 1;
  }
  int cpu = 0;
  while (cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &allowed)) ++cpu;
  if (cpu == CPU_SETSIZE) {
    std::fprintf(stderr, "yield: empty affinity mask\n");
    return 1;
  }

  std::latch ready(2), gate(1);
  bool pin_failed = false;
  auto body = [&] {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    if (pthread_setaffinity_np(pthread_self(), sizeof one, &one) != 0) pin_failed = true;
    ready.count_down();
    gate.wait();
    for (std::int64_t i = 0; i < n; ++i) sched_yield();
  };
  std::thread a(body), b(body);
  ready.wait();
  if (pin_failed) {
    gate.count_down();
    a.join();
    b.join();
    std::fprintf(stderr, "yield: pthread_setaffinity_np failed\n");
    return 1;
  }
  const std::int64_t t0 = bench::now_ns();
  gate.count_down();
  a.join();
  b.join();
  const std::int64_t elapsed = bench::now_ns() - t0;

  bench::result("ns_per_switch", double(elapsed) / double(2 * n), "ns");
  std::fprintf(stderr, "thread yield: n=%lld cpu=%d elapsed=%.3f s\n", (long long)n, cpu,
               elapsed / 1e9);
  return 0;
}
