// mutex (std::thread): w threads (8) each lock a shared std::mutex n/w times, increment a
// shared counter and unlock (a tiny critical section). -procs P restricts the process to the
// first P CPUs of its affinity mask before the threads start (the analogue of GOMAXPROCS;
// 0: all CPUs). Metric: ns_per_op = elapsed / n (one lock + unlock per op), elapsed from
// opening the start gate (all threads started) to all joined.
#include <sched.h>

#include <cstdio>
#include <latch>
#include <mutex>
#include <thread>
#include <vector>

#include "../../common/bench_util.hpp"

static std::mutex g_mu;
static std::int64_t g_counter = 0;  // guarded by g_mu

int main(int argc, char** argv) {
  std::vector<bench::Flag> flags = {{"n", 1000000, "lock/unlock pairs in all"},
                                    {"w", 8, "worker threads"},
                                    {"procs", 0, "CPUs to run on (0: all allowed)"}};
  bench::parse_flags(argc, argv, flags);
  const std::int64_t n = bench::flag_value(flags, "n");
  const std::int64_t w = bench::flag_value(flags, "w");
  const std::int64_t procs = bench::flag_value(flags, "procs");
  if (n <= 0 || w <= 0 || w > 1024 || procs < 0) {
    std::fprintf(stderr, "mutex: bad arguments\n");
    return 2;
  }

  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) {
    std::perror("sched_getaffinity");
    return 1;
  }
  int ncpu = CPU_COUNT(&allowed);
  if (procs > 0 && procs < ncpu) {
    cpu_set_t few;
    CPU_ZERO(&few);
    int kept = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && kept < procs; ++cpu) {
      if (CPU_ISSET(cpu, &allowed)) {
        CPU_SET(cpu, &few);
        ++kept;
      }
    }
    if (sched_setaffinity(0, sizeof few, &few) != 0) {  // threads started later inherit it
      std::perror("sched_setaffinity");
      return 1;
    }
    ncpu = kept;
  }

  std::latch gate(1);
  std::vector<std::thread> threads;
  threads.reserve(std::size_t(w));
  for (std::int64_t k = 0; k < w; ++k) {
    const std::int64_t count = n * (k + 1) / w - n * k / w;
    threads.emplace_back([count, &gate] {
      gate.wait();
      for (std::int64_t i = 0; i < count; ++i) {
        g_mu.lock();
        ++g_counter;
        g_mu.unlock();
      }
    });
  }
  const std::int64_t t0 = bench::now_ns();
  gate.count_down();
  for (auto& t : threads) t.join();
  const std::int64_t elapsed = bench::now_ns() - t0;

  if (g_counter != n) {
    std::fprintf(stderr, "mutex: counter %lld, want %lld\n", (long long)g_counter, (long long)n);
    return 1;
  }
  bench::result("ns_per_op", double(elapsed) / double(n), "ns");
  std::fprintf(stderr, "thread mutex: n=%lld w=%lld cpus=%d elapsed=%.3f ms\n", (long long)n,
               (long long)w, ncpu, elapsed / 1e6);
  return 0;
}
