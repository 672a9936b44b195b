// bench/common/httplib_bench.hpp - the httplib peer benchmark (see peer_bench.hpp): the
// unmodified cpp-httplib Server answering GET /hello under wrk, its connections run by the
// flavour's task queue: a goroutine per connection (bench/goro/httplib.cpp) or httplib's own
// ThreadPool (bench/peers/thread/httplib.cpp).
#pragma once

#include <httplib.h>

#include <atomic>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "peer_bench.hpp"

namespace bench::peers {

// What a flavour supplies: its own flags, and, once they are parsed, the server's task queue
// factory and a way to run the accept loop (listen_after_bind) concurrently.
struct HttplibFlavour {
  const char* name;
  std::vector<Flag> flags;
  std::function<void(const std::vector<Flag>& flags)> setup;  // may be empty
  std::function<httplib::TaskQueue*()> new_task_queue;
  std::function<void(std::function<void()> listen)> start_listener;
  std::function<void()> join_listener;
};

inline int httplib_main(int argc, char** argv, HttplibFlavour fl) {
  std::vector<Flag> flags = {
      {"conns", 1000, "wrk connections"},
      {"seconds", 5, "wrk duration"},
      {"wrk_threads", 2, "wrk threads"},
      {"nodelay", 1,
       "1: Server::set_tcp_nodelay(true) (else Nagle + delayed ACKs: ~40 ms/request)"},
  };
  flags.insert(flags.end(), fl.flags.begin(), fl.flags.end());
  parse_flags(argc, argv, flags);
  const int conns = static_cast<int>(flag_value(flags, "conns"));
  const int seconds = static_cast<int>(flag_value(flags, "seconds"));
  const int wrk_threads = static_cast<int>(flag_value(flags, "wrk_threads"));
  if (goro_test::wrk_binary().empty()) {
    std::fprintf(stderr, "%s httplib: wrk is not installed (tools/deps.sh)\n", fl.name);
    return 1;
  }
  goro_test::raise_fd_limit(2 * conns + 1024);
  if (fl.setup) fl.setup(flags);

  httplib::Server svr;
  svr.new_task_queue = fl.new_task_queue;
  svr.set_tcp_nodelay(flag_value(flags, "nodelay") != 0);
  svr.Get("/hello", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("hello", "text/plain");
  });
  const int port = svr.bind_to_any_port("127.0.0.1");
  if (port <= 0) {
    std::fprintf(stderr, "%s httplib: cannot bind\n", fl.name);
    return 1;
  }
  fl.start_listener([&svr] { svr.listen_after_bind(); });

  ThreadSampler sampler;
  const std::int64_t cpu0 = process_cpu_ns();
  goro_test::WrkResult r = goro_test::run_wrk("http://127.0.0.1:" + std::to_string(port) + "/hello",
                                              conns, wrk_threads, seconds);
  const long max_threads = sampler.stop();
  const std::int64_t cpu = process_cpu_ns() - cpu0 - sampler.cpu_ns();
  svr.stop();
  fl.join_listener();
  if (!r.ran || r.requests <= 0) {
    std::fprintf(stderr, "%s httplib: wrk failed or served nothing:\n%s\n", fl.name,
                 r.output.c_str());
    return 1;
  }
  result("req_per_s", r.req_per_s, "req/s");
  result("cpu_ns_per_req", static_cast<double>(cpu) / static_cast<double>(r.requests), "ns");
  result("p50_us", r.p50_us, "us");
  result("p99_us", r.p99_us, "us");
  result("max_threads", static_cast<double>(max_threads), "threads");
  result("errors", static_cast<double>(r.non_2xx + r.socket_errors()), "errors");
  std::fprintf(stderr,
               "%s httplib: wrk -c %d -t %d -d %ds: %ld requests, %.0f req/s, p50 %.0f us, p99 "
               "%.0f us, %.0f ns CPU/req, OS threads at most %ld; non-2xx %ld, socket errors "
               "connect %ld read %ld write %ld timeout %ld\n",
               fl.name, conns, wrk_threads, seconds, r.requests, r.req_per_s, r.p50_us, r.p99_us,
               static_cast<double>(cpu) / static_cast<double>(r.requests), max_threads, r.non_2xx,
               r.err_connect, r.err_read, r.err_write, r.err_timeout);
  return 0;
}

}  // namespace bench::peers
