// redis (goro flavour): unmodified hiredis synchronous clients, one goroutine each (1,000 by
// default, GOMAXPROCS=2), against a redis-server this program starts; hiredis's blocking
// read/write/poll park the goroutines through goro's libc hooks. The workload and metrics are
// in bench/common/redis_bench.hpp; the peer is bench/peers/thread/redis.cpp (std::threads).
#include <goro/goro.hpp>

#include "../common/redis_bench.hpp"

int main(int argc, char** argv) {
  auto run = [](int n, const std::function<void(int)>& body) {
    goro::WaitGroup wg;
    wg.add(n);
    for (int i = 0; i < n; i++) {
      goro::go([&wg, &body, i] {
        body(i);
        wg.done();
      });
    }
    wg.wait();  // main is a plain thread: it blocks
  };
  return bench::peers::redis_main(argc, argv, "goro", run,
                                  [](int procs) { goro::set_gomaxprocs(procs); });
}
