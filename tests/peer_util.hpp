// peer_util.hpp - goroutine-side helpers shared by the peer tests (tests/peer_*_test.cpp):
// GOMAXPROCS for one test, the first failure seen by many goroutines, and a wait that samples
// the process's OS thread count. (servers.hpp starts the servers; it does not touch goro.)
#pragma once

#include "goro/goro.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <utility>

#include "hook/io_hooks.hpp"
#include "test_util.hpp"

namespace goro_test {

// The peer tests run with GOMAXPROCS kProcs and allow the process kThreadSlack OS threads
// beyond it (the runtime's sysmon and spare Ms, the test's own threads).
inline constexpr int kProcs = 2;
inline constexpr int kThreadSlack = 8;

// Parks made by hooked calls so far (the hooks are not built under ThreadSanitizer: 0).
inline std::uint64_t hook_parks() {
#if defined(GORO_TSAN)
  return 0;
#else
  return goro::internal::hook_stats().parks;
#endif
}

// Sets GOMAXPROCS for one test, restores it after.
class ProcsScope {
 public:
  explicit ProcsScope(int n) : old_(goro::set_gomaxprocs(n)) {}
  ~ProcsScope() { goro::set_gomaxprocs(old_); }
  ProcsScope(const ProcsScope&) = delete;
  ProcsScope& operator=(const ProcsScope&) = delete;

 private:
  int old_;
};

// The first failure seen by any goroutine (the rest are only counted). Thread-safe; add()
// may park briefly on a goro::Mutex.
class Failures {
 public:
  void add(std::string what) {
    count_.fetch_add(1);
    std::lock_guard<goro::Mutex> g(mu_);
    if (first_.empty()) first_ = std::move(what);
  }
  int count() const { return count_.load(); }
  std::string first() {
    std::lock_guard<goro::Mutex> g(mu_);
    return first_;
  }

 private:
  std::atomic<int> count_{0};
  goro::Mutex mu_;
  std::string first_;
};

// Waits (on a plain thread) until `done` reaches n, sampling the process's thread count every
// few milliseconds; returns the largest count seen. Aborts after timeout_s.
inline int wait_sampling_threads(const std::atomic<int>& done, int n, double timeout_s,
                                 const char* what) {
  int max_threads = goro::num_threads();
  wait_or_die(
      [&] {
        max_threads = std::max(max_threads, goro::num_threads());
        return done.load() >= n;
      },
      timeout_s, what);
  return max_threads;
}

}  // namespace goro_test
