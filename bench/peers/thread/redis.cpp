// redis (std::thread flavour): the same unmodified hiredis synchronous clients as
// bench/goro/redis.cpp, one OS thread each (1,000 by default), against a redis-server this
// program starts. The workload and metrics are in bench/common/redis_bench.hpp.
#include <thread>
#include <vector>

#include "../../common/redis_bench.hpp"

int main(int argc, char** argv) {
  auto run = [](int n, const std::function<void(int)>& body) {
    std::vector<std::thread> threads;
    threads.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; i++) threads.emplace_back(body, i);
    for (auto& t : threads) t.join();
  };
  return bench::peers::redis_main(argc, argv, "thread", run);
}
