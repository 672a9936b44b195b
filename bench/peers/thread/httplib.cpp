// httplib (thread flavour): the unmodified cpp-httplib server on its own ThreadPool (-pool N
// threads; 0: httplib's default, CPPHTTPLIB_THREAD_POOL_COUNT = max(8, CPUs - 1)), its accept
// loop on a thread, loaded by wrk. Workload and metrics: bench/common/httplib_bench.hpp; the
// peer is bench/goro/httplib.cpp (a goroutine per connection).
#include <thread>

#include "../../common/httplib_bench.hpp"

int main(int argc, char** argv) {
  std::thread listener;
  std::size_t pool = CPPHTTPLIB_THREAD_POOL_COUNT;
  bench::peers::HttplibFlavour fl;
  fl.name = "thread";
  fl.flags = {{"pool", 0, "ThreadPool threads (0: httplib's default)"}};
  fl.setup = [&pool](const std::vector<bench::Flag>& flags) {
    if (auto p = bench::flag_value(flags, "pool"); p > 0) pool = static_cast<std::size_t>(p);
    std::fprintf(stderr, "thread httplib: a pool of %zu threads\n", pool);
  };
  fl.new_task_queue = [&pool] { return new httplib::ThreadPool(pool); };
  fl.start_listener = [&listener](std::function<void()> listen) {
    listener = std::thread(std::move(listen));
  };
  fl.join_listener = [&listener] { listener.join(); };
  return bench::peers::httplib_main(argc, argv, fl);
}
