// httplib (goro flavour): the unmodified cpp-httplib server with a TaskQueue that runs each
// connection as a goroutine (its accept loop in a goroutine too), loaded by wrk. httplib's
// blocking poll/recv/send/accept and its keep-alive sleeps park the goroutines through goro's
// libc hooks. Workload and metrics: bench/common/httplib_bench.hpp; the peer is httplib's own
// thread pool, bench/peers/thread/httplib.cpp.
#include <goro/goro.hpp>

#include "../common/httplib_bench.hpp"

namespace {

// One goroutine per task (a task is one connection's whole life); shutdown() waits for them.
class GoroutineTaskQueue : public httplib::TaskQueue {
 public:
  void enqueue(std::function<void()> fn) override {
    wg_.add(1);
    goro::go([this, fn = std::move(fn)] {
      fn();
      wg_.done();
    });
  }
  void shutdown() override { wg_.wait(); }

 private:
  goro::WaitGroup wg_;
};

}  // namespace

int main(int argc, char** argv) {
  goro::WaitGroup listener;
  bench::peers::HttplibFlavour fl;
  fl.name = "goro";
  fl.flags = {{"procs", 0, "GOMAXPROCS (0: all CPUs)"}};
  fl.setup = [](const std::vector<bench::Flag>& flags) {
    if (auto p = bench::flag_value(flags, "procs"); p > 0)
      goro::set_gomaxprocs(static_cast<int>(p));
  };
  fl.new_task_queue = [] { return new GoroutineTaskQueue; };
  fl.start_listener = [&listener](std::function<void()> listen) {
    listener.add(1);
    goro::go([&listener, listen = std::move(listen)] {
      listen();
      listener.done();
    });
  };
  fl.join_listener = [&listener] { listener.wait(); };
  return bench::peers::httplib_main(argc, argv, fl);
}
