// bench/peers/fiber/fiber_util.hpp - a WaitGroup for Boost.Fiber (counter + fiber mutex +
// fiber condition variable), the analogue of Go's sync.WaitGroup / goro::WaitGroup used by
// the Boost.Fiber flavours. Boost.Fiber's default round-robin scheduler, one thread (M:1).
#pragma once

#include <boost/fiber/all.hpp>
#include <cstdint>
#include <mutex>

namespace bench {

class FiberWaitGroup {
 public:
  void add(std::int64_t delta = 1) {
    std::unique_lock<boost::fibers::mutex> lk(m_);
    count_ += delta;
    if (count_ == 0) cv_.notify_all();
  }
  void done() { add(-1); }
  void wait() {
    std::unique_lock<boost::fibers::mutex> lk(m_);
    cv_.wait(lk, [this] { return count_ == 0; });
  }

 private:
  boost::fibers::mutex m_;
  boost::fibers::condition_variable cv_;
  std::int64_t count_ = 0;
};

}  // namespace bench
