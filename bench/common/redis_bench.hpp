// bench/common/redis_bench.hpp - the redis peer benchmark (see peer_bench.hpp): unmodified
// hiredis synchronous clients in goroutines (bench/goro/redis.cpp) or std::threads
// (bench/peers/thread/redis.cpp) against one redis-server started on loopback.
#pragma once

#include <hiredis/hiredis.h>

#include <string>

#include "peer_bench.hpp"

namespace bench::peers {

// ---- redis --------------------------------------------------------------------------------

// One client: connect, n round trips alternating SET and GET on its own key. "" or the error.
inline std::string redis_client(int port, int id, std::int64_t n) {
  redisContext* c = redisConnect("127.0.0.1", port);
  if (c == nullptr || c->err != 0) {
    std::string e = c != nullptr ? c->errstr : "out of memory";
    redisFree(c);
    return "redisConnect: " + e;
  }
  std::string err;
  const std::string key = "bench:" + std::to_string(id);
  std::string val;
  for (std::int64_t j = 0; j < n && err.empty(); j++) {
    if (j % 2 == 0) {
      val = std::to_string(id) + "." + std::to_string(j);
      auto* r = static_cast<redisReply*>(redisCommand(c, "SET %s %s", key.c_str(), val.c_str()));
      if (r == nullptr || r->type != REDIS_REPLY_STATUS || std::string(r->str) != "OK") {
        err = "SET: " + std::string(r == nullptr ? c->errstr : "unexpected reply");
      }
      freeReplyObject(r);
    } else {
      auto* r = static_cast<redisReply*>(redisCommand(c, "GET %s", key.c_str()));
      if (r == nullptr || r->type != REDIS_REPLY_STRING || std::string(r->str, r->len) != val) {
        err = "GET: " + std::string(r == nullptr ? c->errstr : "wrong value");
      }
      freeReplyObject(r);
    }
  }
  redisFree(c);
  return err;
}

inline int redis_main(int argc, char** argv, const char* flavour, const Runner& run,
                      const std::function<void(int procs)>& set_procs = {}) {
  std::vector<Flag> flags = {
      {"clients", 1000, "concurrent clients, one connection each"},
      {"n", 200, "round trips per client (alternating SET and GET)"},
      {"procs", 2, "GOMAXPROCS (goro flavour; 0: all CPUs)"},
  };
  parse_flags(argc, argv, flags);
  const int clients = static_cast<int>(flag_value(flags, "clients"));
  const std::int64_t n = flag_value(flags, "n");
  if (set_procs && flag_value(flags, "procs") > 0) {
    set_procs(static_cast<int>(flag_value(flags, "procs")));
  }
  goro_test::raise_fd_limit(clients + 1024);
  goro_test::RedisServer server;
  std::string err;
  if (!server.start(&err, clients + 100)) {
    std::fprintf(stderr, "%s redis: %s\n", flavour, err.c_str());
    return 1;
  }
  std::atomic<int> failures{0};
  std::string first;
  std::mutex mu;  // taken only after a failure, never across a call that waits
  ThreadSampler sampler;
  const std::int64_t cpu0 = process_cpu_ns();
  const std::int64_t t0 = now_ns();
  run(clients, [&](int i) {
    std::string e = redis_client(server.port(), i, n);
    if (!e.empty()) {
      failures.fetch_add(1);
      std::lock_guard<std::mutex> g(mu);
      if (first.empty()) first = "client " + std::to_string(i) + ": " + e;
    }
  });
  const double secs = static_cast<double>(now_ns() - t0) / 1e9;
  const long max_threads = sampler.stop();
  const std::int64_t cpu = process_cpu_ns() - cpu0 - sampler.cpu_ns();
  server.stop();
  if (failures.load() != 0) {
    std::fprintf(stderr, "%s redis: %d clients failed; first: %s\n", flavour, failures.load(),
                 first.c_str());
    return 1;
  }
  const double rts = static_cast<double>(clients) * static_cast<double>(n);
  result("rt_per_s", rts / secs, "rt/s");
  result("cpu_ns_per_rt", static_cast<double>(cpu) / rts, "ns");
  result("max_threads", static_cast<double>(max_threads), "threads");
  std::fprintf(stderr,
               "%s redis: %d clients x %lld round trips in %.2f s: %.0f rt/s, %.0f ns CPU/rt, "
               "OS threads at most %ld\n",
               flavour, clients, static_cast<long long>(n), secs, rts / secs,
               static_cast<double>(cpu) / rts, max_threads);
  return 0;
}

}  // namespace bench::peers
