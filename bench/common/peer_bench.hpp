// bench/common/peer_bench.hpp - what the peer benchmarks share (bench/goro/redis.cpp and
// httplib.cpp, bench/peers/thread/redis.cpp and httplib.cpp): the two flavours of each differ
// only in how they run concurrent work, goroutines or OS threads, so the workloads are written
// once (redis_bench.hpp, httplib_bench.hpp) in terms of what the flavour supplies. Servers are
// started through tests/servers.hpp.
//
//   redis    `clients` hiredis clients (synchronous API: redisConnect, redisCommand), each on
//            its own connection, do `n` round trips (alternating SET and GET of their own key,
//            every reply checked) against one redis-server started on loopback. Metrics:
//            rt_per_s (all round trips / wall time from the first client's start to the last
//            one's end, connects included), cpu_ns_per_rt (this process's CPU time, user +
//            system, per round trip), max_threads (the process's OS threads).
//   httplib  cpp-httplib's Server, whose task queue (one task = one connection's life) is the
//            flavour's, answers GET /hello while `wrk -t2 -c conns -d seconds --latency` loads
//            it; TCP_NODELAY on (Server::set_tcp_nodelay; -nodelay 0 keeps httplib's default,
//            where Nagle and delayed ACKs add ~40 ms to every request). Metrics: req_per_s,
//            p50_us, p99_us (wrk's), cpu_ns_per_req (this process's CPU time during the load /
//            requests), max_threads, errors (wrk's non-2xx responses and socket errors).
// Threads are counted every 2 ms by a sampler thread, which counts neither itself nor its own
// CPU time.
#pragma once

#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"
#include "servers.hpp"

namespace bench::peers {

// Runs body(0..n-1) concurrently (goroutines or threads) and returns when all have returned.
using Runner = std::function<void(int n, const std::function<void(int)>& body)>;

inline std::int64_t process_cpu_ns() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1'000'000'000LL +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1'000LL;
}

// Samples the process's thread count on its own thread (not counting itself) every 2 ms until
// stopped; cpu_ns() is the sampler's own CPU time, which the benchmarks subtract.
class ThreadSampler {
 public:
  ThreadSampler()
      : t_([this] {
          while (!stop_.load()) {
            long n = read_proc_status().threads - 1;
            if (n > max_.load()) max_.store(n);
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
          }
          timespec ts{};
          clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
          cpu_ns_.store(ts.tv_sec * 1'000'000'000LL + ts.tv_nsec);
        }) {}
  ~ThreadSampler() { stop(); }
  // Stops it; returns the most threads seen.
  long stop() {
    if (!stop_.exchange(true)) t_.join();
    return max_.load();
  }
  std::int64_t cpu_ns() const { return cpu_ns_.load(); }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<long> max_{0};
  std::atomic<std::int64_t> cpu_ns_{0};
  std::thread t_;
};

}  // namespace bench::peers
