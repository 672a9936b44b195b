// seed_demo.cpp - the seed's production example, in goro.
//
//   seed_demo          10,000 goroutines each summing 0..999 on O(GOMAXPROCS) OS threads
//   seed_demo park     100,000 and then 1,000,000 goroutines parked on one gate: threads,
//                      memory per goroutine, spawn and release times
//   seed_demo preempt  GOMAXPROCS=1: a goroutine in a tight loop with no calls cannot starve
//                      another one (signal-based preemption after 10 ms)
//   seed_demo blocking a goroutine in a blocking call: the others keep running, the thread
//                      count rises by one; LockOSThread pins a goroutine to its thread
//   seed_demo profile  the goroutine profile (Go's pprof goroutine, debug=1), grouped stacks
#include <unistd.h>
#include <goro/goro.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>

namespace {

// A field of /proc/self/status ("Threads", "VmRSS", "VmPTE"), as a number (kB for sizes).
long proc_status(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  std::size_t n = std::strlen(field);
  while (std::getline(f, line)) {
    if (line.compare(0, n, field) == 0 && line.size() > n && line[n] == ':') {
      return std::stol(line.substr(n + 1));
    }
  }
  return -1;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int seed_example() {
  std::printf("GOMAXPROCS: %d\n", goro::gomaxprocs());
  std::printf("NumCPU: %d\n", goro::num_cpu());
  std::printf("NumGoroutine: %lld\n", static_cast<long long>(goro::num_goroutine()));

  goro::WaitGroup wg;
  std::atomic<long long> total{0};
  // Sampled from inside running goroutines: what the OS sees while they run.
  std::atomic<int> max_threads{0}, max_proc_threads{0};
  std::atomic<long long> max_live{0};

  // Launch 10,000 goroutines - the OS only sees a few threads.
  for (int i = 0; i < 10'000; i++) {
    wg.add(1);
    goro::go([&, i] {
      long long result = 0;
      for (int j = 0; j < 1000; j++) result += j;  // simulate work
      total.fetch_add(result, std::memory_order_relaxed);
      if (i % 500 == 0) {
        int t = goro::num_threads();
        int pt = static_cast<int>(proc_status("Threads"));
        long long live = goro::num_goroutine();
        if (t > max_threads) max_threads = t;
        if (pt > max_proc_threads) max_proc_threads = pt;
        if (live > max_live) max_live = live;
      }
      wg.done();
    });
  }
  wg.wait();

  std::printf(
      "While running: OS threads %d (num_threads), %d (/proc/self/status Threads:), "
      "up to %lld goroutines alive\n",
      max_threads.load(), max_proc_threads.load(), max_live.load());
  std::printf("Sum of all results: %lld (expected %lld)\n", total.load(), 10'000LL * 499'500);
  std::printf("After: NumGoroutine: %lld\n", static_cast<long long>(goro::num_goroutine()));
  bool ok = total.load() == 10'000LL * 499'500 && max_threads.load() <= goro::gomaxprocs() + 3;
  std::printf("%s: %d OS threads for 10,000 goroutines (GOMAXPROCS + 3 = %d)\n",
              ok ? "OK" : "UNEXPECTED", max_threads.load(), goro::gomaxprocs() + 3);
  return ok ? 0 : 1;
}

int park_example() {
  for (int n : {100'000, 1'000'000}) {
    long before_kb = proc_status("VmRSS") + proc_status("VmPTE");
    goro::WaitGroup gate, parked, finished;
    gate.add(1);
    parked.add(n);
    finished.add(n);
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; i++) {
      goro::go([&] {
        parked.done();
        gate.wait();
        finished.done();
      });
    }
    double spawn = seconds_since(t0);
    parked.wait();  // every goroutine has started and is about to park
    double all_parked = seconds_since(t0);
    long after_kb = proc_status("VmRSS") + proc_status("VmPTE");
    int threads = goro::num_threads();
    auto t1 = std::chrono::steady_clock::now();
    gate.done();
    finished.wait();
    double release = seconds_since(t1);
    std::printf(
        "%9d goroutines parked: OS threads %d, RSS+page tables %.2f KiB per goroutine, "
        "spawn %.0f ns each (%.0f ns until all parked), release+join %.0f ns each\n",
        n, threads, static_cast<double>(after_kb - before_kb) / n, spawn * 1e9 / n,
        all_parked * 1e9 / n, release * 1e9 / n);
    // Let the exits settle before the next round.
    while (goro::num_goroutine() > 0) goro::yield();
  }
  return 0;
}

// "Preemption: goroutines are scheduled cooperatively and preemptively (since Go 1.14,
// signals preempt long-running goroutines)".
int preempt_example() {
  goro::set_gomaxprocs(1);
  std::atomic<bool> stop{false};
  goro::WaitGroup wg;
  wg.add(2);
  auto t0 = std::chrono::steady_clock::now();
  std::atomic<double> ran_after{-1};
  goro::go([&] {
    // No function calls, no channel operations: only a signal can take the processor away.
    while (!stop.load(std::memory_order_relaxed)) {
    }
    wg.done();
  });
  goro::go([&] {
    ran_after = seconds_since(t0);
    stop = true;
    wg.done();
  });
  wg.wait();
  goro::PreemptCounts c = goro::preempt_counts();
  std::printf(
      "GOMAXPROCS=1: the second goroutine ran %.1f ms after a tight loop took the only P "
      "(asynchronous preemptions: %llu)\n",
      ran_after.load() * 1e3, static_cast<unsigned long long>(c.async));
  return 0;
}

// "When a goroutine blocks on a syscall, the runtime parks it and moves the OS thread to
// another goroutine - or creates a new OS thread if needed."
int blocking_example() {
  goro::set_gomaxprocs(1);
  std::atomic<long> ticks{0};
  std::atomic<bool> stop{false};
  goro::WaitGroup wg;
  wg.add(1);
  goro::go([&] {
    while (!stop) {
      ticks++;
      goro::yield();
    }
    wg.done();
  });
  int threads_before = goro::num_threads();
  std::atomic<int> threads_during{0};
  long ticks_before = ticks;
  goro::WaitGroup blocked;
  blocked.add(1);
  goro::go([&] {
    goro::blocking([&] {
      ::usleep(200'000);  // a call the runtime cannot make non-blocking
      threads_during = goro::num_threads();
    });
    blocked.done();
  });
  blocked.wait();
  std::printf(
      "GOMAXPROCS=1, one goroutine 200 ms in a blocking call: the other goroutine kept running "
      "(%ld iterations meanwhile); OS threads %d before, %d during (handoffs: %llu)\n",
      ticks - ticks_before, threads_before, threads_during.load(),
      static_cast<unsigned long long>(goro::blocking_handoffs()));
  // LockOSThread: one goroutine keeps its thread across parks; nothing else runs there.
  goro::go([&] {
    goro::lock_os_thread();
    int tid = goro::os_thread_id();
    bool same = true;
    for (int i = 0; i < 100; i++) {
      goro::sleep_for(std::chrono::microseconds(100));
      same = same && goro::os_thread_id() == tid;
    }
    goro::unlock_os_thread();
    std::printf("lock_os_thread: 100 sleeps, always on thread %d: %s\n", tid, same ? "yes" : "no");
    stop = true;
    wg.done();
  });
  wg.add(1);
  wg.wait();
  return 0;
}

__attribute__((noinline)) void worker(goro::Chan<int> jobs) {
  for (int j : jobs) (void)j;
}

// "Goroutine profiles": what every goroutine is doing, grouped by stack.
int profile_example() {
  goro::Chan<int> jobs(0);
  for (int i = 0; i < 1000; i++) goro::go(goro::GoOptions{.name = "worker"}, worker, jobs);
  goro::sleep_for(std::chrono::milliseconds(50));
  std::printf("NumGoroutine: %lld\n", static_cast<long long>(goro::num_goroutine()));
  goro::debug::write_goroutines(std::cout, goro::debug::Detail::kGrouped);
  jobs.close();
  while (goro::num_goroutine() > 0) goro::yield();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "park") == 0) return park_example();
  if (argc > 1 && std::strcmp(argv[1], "preempt") == 0) return preempt_example();
  if (argc > 1 && std::strcmp(argv[1], "blocking") == 0) return blocking_example();
  if (argc > 1 && std::strcmp(argv[1], "profile") == 0) return profile_example();
  if (argc > 1) {
    std::fprintf(stderr, "usage: %s [park|preempt|blocking|profile]\n", argv[0]);
    return 2;
  }
  return seed_example();
}
