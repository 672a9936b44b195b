// preempt_test.cpp - preemption (include/goro/preempt.hpp): sysmon takes the processor away
// from a goroutine that runs for more than 10 ms without entering the scheduler, cooperatively
// at its next runtime entry or asynchronously (SIGURG) at a safe point, and never inside a
// NoPreempt guard or while the goroutine holds a pthread mutex (std::mutex included).
//
// What is checked here:
//  * a goroutine spinning on an atomic load, with no call at all, cannot starve another one
//    (GOMAXPROCS 1, 2 and 8, with as many spinners as processors);
//  * goroutines preempted over and over while they allocate and build strings (malloc/free,
//    new/delete, std::string) neither deadlock nor corrupt the heap or their data;
//  * a long floating-point/SIMD computation (double + sqrt/sin, SSE2, AVX2, AVX-512, x87 long
//    double) preempted thousands of times gives bit-identical results to the same computation
//    on a plain thread, under four rounding modes set with fesetround() by four goroutines
//    that share one processor (a leak of MXCSR/x87 state between them changes the result);
//  * NoPreempt, std::mutex and pthread_mutex_t held: no preemption inside, preemption again
//    after; a request that arrives inside a NoPreempt is served when the guard ends; a
//    NoPreempt on a plain thread has no effect on goroutines;
//  * a goroutine that cannot be preempted for a while (NoPreempt, a blocking libc call) is not
//    flooded with signals;
//  * GORO_ASYNCPREEMPT=0 (child process): a spinner does starve the others, no signal is sent;
//  * cooperative preemption at runtime entries still works with GORO_ASYNCPREEMPT=0;
//  * a goroutine holding a std::mutex is not diverted while another goroutine on the same
//    processor would block on that mutex (child process: a wrong runtime deadlocks);
//  * a goroutine that exits with a NoPreempt alive is a fatal error (child process).
//
// Child processes re-run this binary with --gtest_filter=PreemptChild.Run and the environment
// variable GORO_PREEMPT_TEST_CHILD=<mode> (Go's testprog pattern). A child reports what
// happened on stdout and ends with std::_Exit: spinning goroutines may still be running.
//
// Durations below are hang guards (seconds of slack), never performance assertions. Under
// ThreadSanitizer asynchronous preemption is off by design: the tests that need it skip, the
// others replace the asynchronous part by an explicit yield.
#include <fenv.h>
#include <gtest/gtest.h>
#include <immintrin.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "goro/goro.hpp"
#include "test_util.hpp"

namespace {

using goro_test::EnvChange;
using goro_test::ProcResult;
using goro_test::scaled;
using goro_test::wait_or_die;
using goro_test::wait_until;
using Clock = std::chrono::steady_clock;

constexpr const char* kChildEnv = "GORO_PREEMPT_TEST_CHILD";

// Whether this process should preempt asynchronously: not under TSan, and not when the
// environment turned it off (someone running the suite with GORO_ASYNCPREEMPT=0).
bool async_expected() {
  if (goro_test::kTsanBuild) return false;
  const char* e = std::getenv("GORO_ASYNCPREEMPT");
  return e == nullptr || std::strcmp(e, "0") != 0;
}

#define SKIP_WITHOUT_ASYNC()                                     \
  do {                                                           \
    if (!async_expected())                                       \
      GTEST_SKIP() << "asynchronous preemption is off (TSan or " \
                      "GORO_ASYNCPREEMPT=0)";                    \
  } while (0)

// Spins until `stop` is set: one load and one branch per iteration, no call of any kind, so
// only an asynchronous preemption can take the processor away from the spinning goroutine.
__attribute__((noinline)) void spin_until(const std::atomic<bool>& stop) {
  while (!stop.load(std::memory_order_relaxed)) {
  }
}

// Spins until either flag is set (no call either).
__attribute__((noinline)) void spin_until_either(const std::atomic<bool>& a,
                                                 const std::atomic<bool>& b) {
  while (!a.load(std::memory_order_relaxed) && !b.load(std::memory_order_relaxed)) {
  }
}

// Spins (arithmetic in this executable, a clock read every 4096 iterations) for `d`.
__attribute__((noinline)) std::uint64_t spin_for(std::chrono::nanoseconds d) {
  const auto until = Clock::now() + d;
  std::uint64_t x = 88172645463325252ull;
  for (;;) {
    for (int i = 0; i < 4096; i++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      asm volatile("" : "+r"(x));
    }
    if (Clock::now() >= until) return x;
  }
}

// Spins like spin_for until `pred` holds or `timeout` passes; returns pred().
template <class Pred>
bool spin_until_pred(Pred&& pred, std::chrono::nanoseconds timeout) {
  const auto until = Clock::now() + timeout;
  std::uint64_t x = 1;
  for (;;) {
    if (pred()) return true;
    if (Clock::now() >= until) return pred();
    for (int i = 0; i < 4096; i++) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      asm volatile("" : "+r"(x));
    }
  }
}

goro::PreemptCounts counts() {
  return goro::preempt_counts();
}

std::string describe(const goro::PreemptCounts& c) {
  return "requested=" + std::to_string(c.requested) +
         " cooperative=" + std::to_string(c.cooperative) + " async=" + std::to_string(c.async) +
         " signals_sent=" + std::to_string(c.signals_sent);
}

// Sets GOMAXPROCS for the test and restores the previous value afterwards; waits for every
// goroutine to end.
class ProcsFixture {
 protected:
  void set_procs(int n) { prev_ = goro::set_gomaxprocs(n); }
  void restore_procs() {
    EXPECT_TRUE(wait_until([] { return goro::num_goroutine() == 0; }, 10))
        << "goroutines left: " << goro::num_goroutine();
    if (prev_ > 0) goro::set_gomaxprocs(prev_);
  }
  int prev_ = 0;
};

class PreemptTest : public ::testing::TestWithParam<int>, public ProcsFixture {
 protected:
  void SetUp() override { set_procs(GetParam()); }
  void TearDown() override { restore_procs(); }
  int procs() const { return GetParam(); }
};

// The long-running cases: GOMAXPROCS 1 and 2 only.
class PreemptHeavyTest : public PreemptTest {};

class PreemptOneProcTest : public ::testing::Test, public ProcsFixture {
 protected:
  void SetUp() override { set_procs(1); }
  void TearDown() override { restore_procs(); }
};

std::string procs_name(const ::testing::TestParamInfo<int>& info) {
  return "P" + std::to_string(info.param);
}

// ---- Child processes -----------------------------------------------------------------------

std::string self_exe() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "/proc/self/exe";
  buf[n] = 0;
  return buf;
}

// Runs this binary's PreemptChild.Run in `mode`, with the environment changed by `env`.
ProcResult run_child(const std::string& mode, std::vector<EnvChange> env, double timeout_s) {
  env.emplace_back(kChildEnv, mode);
  return goro_test::run_process({self_exe(), "--gtest_filter=PreemptChild.Run"}, env, timeout_s);
}

// The value of `key=<number>` in a child's output, or -1.
long long child_value(const std::string& out, const std::string& key) {
  std::string k = " " + key + "=";
  std::string hay = " " + out;
  for (char& c : hay) {
    if (c == '\n') c = ' ';
  }
  auto pos = hay.find(k);
  if (pos == std::string::npos) return -1;
  return std::atoll(hay.c_str() + pos + k.size());
}

[[noreturn]] void child_exit(int code, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
[[noreturn]] void child_exit(int code, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::vprintf(fmt, ap);
  va_end(ap);
  std::printf(" %s\n", describe(counts()).c_str());
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(code);
}

// Child exit codes.
constexpr int kChildOk = 0;
constexpr int kChildStarved = 3;
constexpr int kChildDeadlock = 4;
constexpr int kChildBadMode = 5;

// Mode "spin": GOMAXPROCS=1, one goroutine spins on an atomic with no calls, then another is
// started; exits kChildOk ("OTHER-RAN") once that one ran, kChildStarved ("STARVED") if it has
// not within 3 s.
void child_spin() {
  goro::set_gomaxprocs(1);
  static std::atomic<bool> stop{false}, started{false}, other{false};
  goro::go([] {
    started.store(true);
    spin_until(stop);
  });
  if (!wait_until([] { return started.load(); }, 10)) child_exit(kChildBadMode, "NOT-STARTED");
  goro::go([] {
    other.store(true);
    stop.store(true);
  });
  if (wait_until([] { return other.load(); }, 3.0)) child_exit(kChildOk, "OTHER-RAN");
  child_exit(kChildStarved, "STARVED");
}

// Mode "coop_<entry>": GOMAXPROCS=1, one goroutine loops on a cheap runtime entry that never
// blocks - try_recv (empty Chan), try_send (full Chan), waitgroup (WaitGroup add(1) + done()),
// timer (Timer stop + reset) - and then another goroutine is started; exits kChildOk
// ("OTHER-RAN") once that one ran, kChildStarved ("STARVED") if it has not within 3 s.
// mutex_try_lock and mutex_lock (goro::Mutex, uncontended) are no runtime entries (an inline
// CAS, as in Go): they are there for manual runs only.
void child_coop(const std::string& entry) {
  goro::set_gomaxprocs(1);
  static std::atomic<bool> stop{false}, started{false}, other{false};
  static goro::Chan<int> empty(1), full(1);
  static goro::Mutex mu;
  full.send(1);
  void (*loop)() = nullptr;
  if (entry == "try_recv") {
    loop = [] {
      while (!stop.load(std::memory_order_relaxed)) (void)empty.try_recv();
    };
  } else if (entry == "try_send") {
    loop = [] {
      while (!stop.load(std::memory_order_relaxed)) (void)full.try_send(2);
    };
  } else if (entry == "waitgroup") {
    loop = [] {
      goro::WaitGroup wg;
      while (!stop.load(std::memory_order_relaxed)) {
        wg.add(1);
        wg.done();
      }
    };
  } else if (entry == "timer") {
    loop = [] {
      goro::Timer t(std::chrono::hours(1));
      while (!stop.load(std::memory_order_relaxed)) {
        t.stop();
        t.reset(std::chrono::hours(1));
      }
    };
  } else if (entry == "mutex_try_lock") {
    // Not a runtime entry in this design (a CAS, like Go's TryLock): kept for manual runs.
    loop = [] {
      while (!stop.load(std::memory_order_relaxed)) {
        if (mu.try_lock()) mu.unlock();
      }
    };
  } else if (entry == "mutex_lock") {
    // Uncontended lock/unlock is an inline CAS, not a runtime entry: kept for manual runs.
    loop = [] {
      while (!stop.load(std::memory_order_relaxed)) {
        mu.lock();
        mu.unlock();
      }
    };
  } else {
    child_exit(kChildBadMode, "BAD-ENTRY %s", entry.c_str());
  }
  goro::go([loop] {
    started.store(true);
    loop();
  });
  if (!wait_until([] { return started.load(); }, 10)) child_exit(kChildBadMode, "NOT-STARTED");
  goro::go([] {
    other.store(true);
    stop.store(true);
  });
  if (wait_until([] { return other.load(); }, 3.0)) child_exit(kChildOk, "OTHER-RAN");
  child_exit(kChildStarved, "STARVED");
}

// Mode "oslock_<std|pthread>": GOMAXPROCS=1. Goroutine A locks an OS mutex and spins 300 ms
// with no calls (sysmon asks it to yield many times meanwhile), unlocks it and yields. B, started
// while A holds the mutex, locks the same mutex. A runtime that diverted A while it held the
// mutex would run B on the only processor, B would block that thread in the kernel, and A
// could never run again to unlock: exits kChildDeadlock ("DEADLOCK") after 10 s then.
void child_oslock(const std::string& kind) {
  goro::set_gomaxprocs(1);
  static std::mutex smu;
  static pthread_mutex_t pmu = PTHREAD_MUTEX_INITIALIZER;
  static bool use_std = kind == "std";
  static std::atomic<bool> held{false}, a_done{false}, b_done{false};
  static std::atomic<std::uint64_t> requested_while_held{0};
  if (kind != "std" && kind != "pthread") child_exit(kChildBadMode, "BAD-KIND %s", kind.c_str());
  goro::go([] {
    if (use_std) {
      smu.lock();
    } else {
      pthread_mutex_lock(&pmu);
    }
    held.store(true);
    goro::go([] {
      if (use_std) {
        smu.lock();
        smu.unlock();
      } else {
        pthread_mutex_lock(&pmu);
        pthread_mutex_unlock(&pmu);
      }
      b_done.store(true);
    });
    const std::uint64_t r0 = counts().requested;
    spin_for(std::chrono::milliseconds(300));
    requested_while_held.store(counts().requested - r0);
    held.store(false);
    if (use_std) {
      smu.unlock();
    } else {
      pthread_mutex_unlock(&pmu);
    }
    goro::yield();
    a_done.store(true);
  });
  if (wait_until([] { return a_done.load() && b_done.load(); }, 10.0)) {
    child_exit(kChildOk, "BOTH-DONE requested_while_held=%llu",
               static_cast<unsigned long long>(requested_while_held.load()));
  }
  child_exit(kChildDeadlock, "DEADLOCK held=%d a_done=%d b_done=%d", held.load() ? 1 : 0,
             a_done.load() ? 1 : 0, b_done.load() ? 1 : 0);
}

// Mode "nopreempt_exit": a goroutine returns while a NoPreempt it created is alive (a fatal
// error by contract). Exits kChildOk ("SURVIVED") if the process is still alive 5 s later.
void child_nopreempt_exit() {
  static std::atomic<bool> returning{false};
  goro::go([] {
    // Leaked on purpose: never destroyed.
    alignas(goro::NoPreempt) static unsigned char storage[sizeof(goro::NoPreempt)];
    new (storage) goro::NoPreempt();
    std::printf("RETURNING\n");
    std::fflush(stdout);
    returning.store(true);
  });
  wait_until([] { return returning.load(); }, 10);
  std::this_thread::sleep_for(std::chrono::seconds(5));
  child_exit(kChildOk, "SURVIVED");
}

TEST(PreemptChild, Run) {
  const char* mode = std::getenv(kChildEnv);
  if (mode == nullptr) GTEST_SKIP() << "only runs as a child process of the tests below";
  std::string m = mode;
  if (m == "spin") child_spin();
  if (m.rfind("coop_", 0) == 0) child_coop(m.substr(5));
  if (m.rfind("oslock_", 0) == 0) child_oslock(m.substr(7));
  if (m == "nopreempt_exit") child_nopreempt_exit();
  child_exit(kChildBadMode, "BAD-MODE %s", mode);
}

// ---- 1. A spinner cannot starve another goroutine ------------------------------------------

// As many goroutines as processors spin on an atomic load with no calls; then one more
// goroutine is started. It must run within 2 s, in every one of 100 trials: only asynchronous
// preemption can make room for it. The spinners keep spinning after being preempted, until
// the late goroutine stops them.
TEST_P(PreemptTest, SpinnerCannotStarveAnotherGoroutine) {
  SKIP_WITHOUT_ASYNC();
  struct State {
    std::atomic<bool> stop{false}, other_ran{false};
    std::atomic<int> started{0}, done{0};
  };
  const int trials = static_cast<int>(scaled(100));
  const int n = procs();
  const auto c0 = counts();
  for (int t = 0; t < trials; t++) {
    auto st = std::make_shared<State>();
    for (int k = 0; k < n; k++) {
      goro::go([st] {
        st->started.fetch_add(1);
        spin_until(st->stop);
        st->done.fetch_add(1);
      });
    }
    const bool all_started = wait_until([&] { return st->started.load() == n; }, 5.0);
    goro::go([st] {
      st->other_ran.store(true);
      st->done.fetch_add(1);
    });
    const bool ran = all_started && wait_until([&] { return st->other_ran.load(); }, 2.0);
    st->stop.store(true);  // from this plain thread: releases the spinners either way
    wait_or_die([&] { return st->done.load() == n + 1; }, 30, "spinners and the late goroutine");
    if (!all_started) {
      ADD_FAILURE() << "trial " << t << ": only " << st->started.load() << " of " << n
                    << " spinners started within 5 s (" << describe(counts()) << ")";
      break;
    }
    if (!ran) {
      ADD_FAILURE() << "trial " << t << ": the goroutine started after " << n
                    << " spinner(s) did not run within 2 s (" << describe(counts()) << ")";
      break;
    }
  }
  const auto c1 = counts();
  EXPECT_GT(c1.async, c0.async) << describe(c1);
  EXPECT_GT(c1.requested, c0.requested) << describe(c1);
  EXPECT_GT(c1.signals_sent, c0.signals_sent) << describe(c1);
}

// Go's classic case: a goroutine starts a spinner and yields to it (GOMAXPROCS=1); it must get
// the processor back while the spinner still spins, in every one of 50 trials.
TEST_F(PreemptOneProcTest, YieldingGoroutineGetsTheProcessorBackFromASpinner) {
  SKIP_WITHOUT_ASYNC();
  struct State {
    std::atomic<bool> abort{false}, finished{false};
    std::atomic<int> trials_done{0};
  };
  const int trials = static_cast<int>(scaled(50));
  auto st = std::make_shared<State>();
  goro::go([st, trials] {
    for (int t = 0; t < trials && !st->abort.load(); t++) {
      auto stop = std::make_shared<std::atomic<bool>>(false);
      goro::WaitGroup wg;
      wg.add(1);
      goro::go([stop, st, &wg] {
        spin_until_either(*stop, st->abort);
        wg.done();
      });
      goro::yield();  // the spinner runs; only preemption brings us back
      stop->store(true);
      wg.wait();
      st->trials_done.fetch_add(1);
    }
    st->finished.store(true);
  });
  int last = -1;
  auto last_change = Clock::now();
  bool stuck = false;
  while (!st->finished.load()) {
    int now = st->trials_done.load();
    if (now != last) {
      last = now;
      last_change = Clock::now();
    } else if (goro_test::seconds_since(last_change) > 2.0) {
      stuck = true;
      st->abort.store(true);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  wait_or_die([&] { return st->finished.load(); }, 30, "the yielding goroutine");
  EXPECT_FALSE(stuck) << "trial " << last << ": no progress for 2 s (" << describe(counts()) << ")";
  EXPECT_EQ(st->trials_done.load(), trials);
}

// A preempted goroutine queues behind the goroutine it held up: with GOMAXPROCS 1 the
// queue-mate runs right after the preemption, not after a second slice (before, the preempted
// spinner went to the global queue and the 1-in-61 fairness tick picked it again ahead of the
// local queue in about one trial in 61). Each trial must take exactly one preemption.
TEST_F(PreemptOneProcTest, PreemptedSpinnerQueuesBehindTheGoroutineItHeldUp) {
  SKIP_WITHOUT_ASYNC();
  if (goro_test::kChaosBuild) GTEST_SKIP() << "the chaos build randomizes run-queue order";
  struct State {
    std::atomic<bool> abort{false}, finished{false};
    std::vector<std::uint64_t> preemptions;  // per trial; read after `finished`
  };
  const int trials = static_cast<int>(std::max<std::int64_t>(scaled(100), 20));
  auto st = std::make_shared<State>();
  goro::go([st, trials] {
    for (int t = 0; t < trials && !st->abort.load(); t++) {
      std::atomic<bool> stop{false};
      goro::WaitGroup wg;
      wg.add(1);
      const auto c0 = counts();
      goro::go([&stop, st, &wg] {
        spin_until_either(stop, st->abort);
        wg.done();
      });
      goro::yield();  // the spinner runs; only its preemption brings us back
      const auto c1 = counts();
      stop.store(true);
      wg.wait();
      st->preemptions.push_back((c1.async + c1.cooperative) - (c0.async + c0.cooperative));
    }
    st->finished.store(true);
  });
  if (!wait_until([&] { return st->finished.load(); }, 60)) {
    st->abort.store(true);
    wait_or_die([&] { return st->finished.load(); }, 30, "the yielding goroutine");
    FAIL() << "the trials did not end within 60 s (" << describe(counts()) << ")";
  }
  ASSERT_EQ(st->preemptions.size(), static_cast<std::size_t>(trials));
  for (int t = 0; t < trials; t++) {
    EXPECT_EQ(st->preemptions[t], 1u) << "trial " << t << ": the yielding goroutine ran after "
                                      << st->preemptions[t] << " preemptions";
  }
}

// ---- 2. malloc/free and std::string under repeated preemption ------------------------------

// A deterministic record that a worker keeps on the heap and checks later.
struct Record {
  std::uint64_t tag = 0;
  std::string text;
  std::vector<std::uint64_t> data;
};

std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

std::string record_text(std::uint64_t tag) {
  std::string s = "rec-" + std::to_string(tag) + ":";
  for (int k = 0; k < static_cast<int>(tag % 7); k++) s += std::to_string(mix(tag + k)) + ",";
  s += std::string(tag % 61, static_cast<char>('a' + tag % 26));
  return s;
}

std::unique_ptr<Record> make_record(std::uint64_t tag) {
  auto r = std::make_unique<Record>();
  r->tag = tag;
  r->text = record_text(tag);
  r->data.resize(1 + mix(tag) % 300);
  for (std::size_t k = 0; k < r->data.size(); k++) r->data[k] = mix(tag ^ k);
  return r;
}

bool record_ok(const Record& r) {
  if (r.text != record_text(r.tag)) return false;
  if (r.data.size() != 1 + mix(r.tag) % 300) return false;
  for (std::size_t k = 0; k < r.data.size(); k++) {
    if (r.data[k] != mix(r.tag ^ k)) return false;
  }
  return true;
}

// 2 * GOMAXPROCS + 1 goroutines allocate, free and build strings non-stop (new/delete,
// std::string concatenation, std::vector growth), each keeping a ring of 64 heap records that
// it checks before freeing, for 10 s * GORO_TEST_SCALE (at least 1 s). None yields, so with
// more goroutines than processors every one of them makes progress only by being preempted,
// over and over (their counters must advance in both halves of the run). Preempting inside
// malloc, or resuming with another thread's malloc state, would deadlock or corrupt the heap.
TEST_P(PreemptHeavyTest, MallocAndStringsUnderRepeatedPreemption) {
  const int workers = 2 * procs() + 1;
  const double secs = std::max(1.0, 10.0 * goro_test::test_scale());
  struct State {
    std::atomic<bool> stop{false};
    std::atomic<int> done{0};
    std::atomic<std::uint64_t> bad{0};
    std::vector<std::atomic<std::uint64_t>> iters;
    explicit State(int n) : iters(n) {}
  };
  auto st = std::make_shared<State>(workers);
  const auto c0 = counts();
  for (int w = 0; w < workers; w++) {
    goro::go([st, w] {
      std::vector<std::unique_ptr<Record>> ring(64);
      std::uint64_t it = 0;
      while (!st->stop.load(std::memory_order_relaxed)) {
        const std::uint64_t tag = (static_cast<std::uint64_t>(w) << 48) | it;
        auto& slot = ring[it % ring.size()];
        if (slot && !record_ok(*slot)) st->bad.fetch_add(1);
        slot = make_record(tag);
        // Short-lived allocations of assorted sizes.
        auto* block = new std::uint64_t[1 + it % 97];
        for (std::uint64_t k = 0; k <= it % 97; k++) block[k] = tag + k;
        std::uint64_t sum = 0;
        for (std::uint64_t k = 0; k <= it % 97; k++) sum += block[k];
        if (sum != (it % 97 + 1) * tag + (it % 97) * (it % 97 + 1) / 2) st->bad.fetch_add(1);
        delete[] block;
        std::string joined = slot->text + "|" + std::to_string(it) + "|" + slot->text;
        if (joined.size() != 2 * slot->text.size() + 2 + std::to_string(it).size()) {
          st->bad.fetch_add(1);
        }
        st->iters[w].store(++it, std::memory_order_relaxed);
        // Under TSan nothing is preempted asynchronously: yield now and then instead.
        if (goro_test::kTsanBuild && it % 64 == 0) goro::yield();
      }
      for (auto& r : ring) {
        if (r && !record_ok(*r)) st->bad.fetch_add(1);
      }
      st->done.fetch_add(1);
    });
  }
  auto snapshot = [&] {
    std::vector<std::uint64_t> v(workers);
    for (int w = 0; w < workers; w++) v[w] = st->iters[w].load();
    return v;
  };
  std::this_thread::sleep_for(std::chrono::duration<double>(secs / 2));
  const auto mid = snapshot();
  std::this_thread::sleep_for(std::chrono::duration<double>(secs / 2));
  const auto end = snapshot();
  st->stop.store(true);
  wait_or_die([&] { return st->done.load() == workers; }, 60,
              "allocating goroutines (deadlock under preemption?)");
  const auto c1 = counts();
  EXPECT_EQ(st->bad.load(), 0u) << "corrupted records or allocations";
  for (int w = 0; w < workers; w++) {
    EXPECT_GT(mid[w], 0u) << "worker " << w << " never ran in the first half (" << describe(c1)
                          << ")";
    EXPECT_GT(end[w], mid[w]) << "worker " << w << " made no progress in the second half ("
                              << describe(c1) << ")";
  }
  if (async_expected()) {
    EXPECT_GT(c1.async, c0.async) << describe(c1);
  }
}

// ---- 3. Floating point and SIMD state across preemption ------------------------------------

// Results as raw bits, so that the comparison is exact (and NaN-safe).
using Bits = std::vector<std::uint64_t>;

void put(Bits& out, double v) {
  std::uint64_t u;
  std::memcpy(&u, &v, sizeof u);
  out.push_back(u);
}

void put(Bits& out, long double v) {
  unsigned char b[16] = {};
  std::memcpy(b, &v, 10);  // the 80-bit value; the rest is padding
  std::uint64_t lo, hi = 0;
  std::memcpy(&lo, b, 8);
  std::memcpy(&hi, b + 8, 2);
  out.push_back(lo);
  out.push_back(hi);
}

constexpr int kFpIters = 100'000;

// Chaotic maps (logistic, r close to 4) keep the values bounded in [0, 1] while any
// perturbation (a clobbered register, another rounding mode) grows until it shows in the
// result; the sums never forget. Each uses division and square roots, whose results depend on
// the rounding mode.
__attribute__((noinline)) void kernel_scalar(std::uint64_t seed, Bits& out) {
  double x = 0.1 + static_cast<double>(seed % 1000) / 1500.0, y = 0.37, acc = 0.0, accy = 0.0;
  long double lx = 0.2L + static_cast<long double>(seed % 977) / 2000.0L, lacc = 0.0L;
  for (int i = 0; i < kFpIters; i++) {
    x = 3.99 * x * (1.0 - x) + std::sqrt(x) / 4096.0;
    y = 3.97 * y * (1.0 - y) + x / 3.0e4;
    acc += x / 3.0;
    accy += y;
    if ((i & 127) == 0) acc += std::sin(acc);
    lx = 3.98L * lx * (1.0L - lx) + lx / 7.0e4L;
    lacc += lx / 3.0L;
  }
  put(out, x);
  put(out, y);
  put(out, acc);
  put(out, accy);
  put(out, lx);
  put(out, lacc);
}

__attribute__((noinline)) void kernel_sse2(std::uint64_t seed, Bits& out) {
  const double s = static_cast<double>(seed % 1000) / 1500.0;
  __m128d x0 = _mm_set_pd(0.11 + s, 0.23 + s / 2), x1 = _mm_set_pd(0.31 + s / 3, 0.43);
  __m128d a0 = _mm_setzero_pd(), a1 = _mm_setzero_pd();
  const __m128d r = _mm_set_pd(3.99, 3.97), one = _mm_set1_pd(1.0), k = _mm_set1_pd(8192.0),
                three = _mm_set1_pd(3.0);
  for (int i = 0; i < kFpIters; i++) {
    x0 = _mm_add_pd(_mm_mul_pd(_mm_mul_pd(r, x0), _mm_sub_pd(one, x0)),
                    _mm_div_pd(_mm_sqrt_pd(x1), k));
    x1 = _mm_add_pd(_mm_mul_pd(_mm_mul_pd(r, x1), _mm_sub_pd(one, x1)), _mm_div_pd(x0, k));
    a0 = _mm_add_pd(a0, _mm_div_pd(x0, three));
    a1 = _mm_add_pd(a1, _mm_sqrt_pd(x1));
  }
  alignas(16) double v[8];
  _mm_store_pd(v, x0);
  _mm_store_pd(v + 2, x1);
  _mm_store_pd(v + 4, a0);
  _mm_store_pd(v + 6, a1);
  for (double d : v) put(out, d);
}

__attribute__((noinline, target("avx2"))) void kernel_avx2(std::uint64_t seed, Bits& out) {
  const double s = static_cast<double>(seed % 1000) / 1500.0;
  // Eight independent state vectors and four sums: most of the 16 ymm registers stay live.
  __m256d x[8], a[4];
  for (int j = 0; j < 8; j++) {
    x[j] = _mm256_set_pd(0.05 + s / 2 + j * 0.1, 0.07 + j * 0.1, 0.09 + s / 3 + j * 0.1,
                         0.11 + j * 0.1);
  }
  for (auto& v : a) v = _mm256_setzero_pd();
  const __m256d r = _mm256_set_pd(3.99, 3.97, 3.95, 3.93), one = _mm256_set1_pd(1.0),
                k = _mm256_set1_pd(16384.0), three = _mm256_set1_pd(3.0);
  for (int i = 0; i < kFpIters / 4; i++) {
#define GORO_TEST_STEP(j)                                                               \
  x[j] = _mm256_add_pd(_mm256_mul_pd(_mm256_mul_pd(r, x[j]), _mm256_sub_pd(one, x[j])), \
                       _mm256_div_pd(_mm256_sqrt_pd(x[(j + 1) & 7]), k));               \
  a[j & 3] = _mm256_add_pd(a[j & 3], _mm256_div_pd(x[j], three));
    GORO_TEST_STEP(0)
    GORO_TEST_STEP(1)
    GORO_TEST_STEP(2)
    GORO_TEST_STEP(3)
    GORO_TEST_STEP(4)
    GORO_TEST_STEP(5)
    GORO_TEST_STEP(6)
    GORO_TEST_STEP(7)
#undef GORO_TEST_STEP
  }
  alignas(32) double v[4];
  for (auto& xv : x) {
    _mm256_store_pd(v, xv);
    for (double d : v) put(out, d);
  }
  for (auto& av : a) {
    _mm256_store_pd(v, av);
    for (double d : v) put(out, d);
  }
}

// _mm512_sqrt_pd through its masked form: GCC 12's unmasked one starts from
// _mm512_undefined_pd(), which -Wuninitialized reports.
__attribute__((always_inline, target("avx512f"))) inline __m512d sqrt512(__m512d v) {
  return _mm512_mask_sqrt_pd(v, 0xff, v);
}

__attribute__((noinline, target("avx512f"))) void kernel_avx512(std::uint64_t seed, Bits& out) {
  const double s = static_cast<double>(seed % 1000) / 1500.0;
  // Twelve state vectors, four sums and a mask: uses zmm registers beyond the first 16 and an
  // opmask register.
  __m512d x[12], a[4];
  for (int j = 0; j < 12; j++) {
    x[j] = _mm512_set_pd(0.05 + s / 2 + j * 0.07, 0.06 + j * 0.07, 0.07 + s / 3 + j * 0.07,
                         0.08 + j * 0.07, 0.09 + s / 5 + j * 0.07, 0.10 + j * 0.07,
                         0.11 + s / 7 + j * 0.07, 0.12 + j * 0.07);
  }
  for (auto& v : a) v = _mm512_setzero_pd();
  const __m512d r = _mm512_set_pd(3.99, 3.98, 3.97, 3.96, 3.95, 3.94, 3.93, 3.92),
                one = _mm512_set1_pd(1.0), k = _mm512_set1_pd(16384.0), three = _mm512_set1_pd(3.0),
                half = _mm512_set1_pd(0.5);
  for (int i = 0; i < kFpIters / 8; i++) {
#define GORO_TEST_STEP(j)                                                                 \
  {                                                                                       \
    x[j] = _mm512_add_pd(_mm512_mul_pd(_mm512_mul_pd(r, x[j]), _mm512_sub_pd(one, x[j])), \
                         _mm512_div_pd(sqrt512(x[(j + 1) % 12]), k));                     \
    __mmask8 m = _mm512_cmp_pd_mask(x[j], half, _CMP_GT_OQ);                              \
    a[j & 3] = _mm512_mask_add_pd(a[j & 3], m, a[j & 3], _mm512_div_pd(x[j], three));     \
  }
    GORO_TEST_STEP(0)
    GORO_TEST_STEP(1)
    GORO_TEST_STEP(2)
    GORO_TEST_STEP(3)
    GORO_TEST_STEP(4)
    GORO_TEST_STEP(5)
    GORO_TEST_STEP(6)
    GORO_TEST_STEP(7)
    GORO_TEST_STEP(8)
    GORO_TEST_STEP(9)
    GORO_TEST_STEP(10)
    GORO_TEST_STEP(11)
#undef GORO_TEST_STEP
  }
  alignas(64) double v[8];
  for (auto& xv : x) {
    _mm512_store_pd(v, xv);
    for (double d : v) put(out, d);
  }
  for (auto& av : a) {
    _mm512_store_pd(v, av);
    for (double d : v) put(out, d);
  }
}

bool have_avx2() {
  return __builtin_cpu_supports("avx2");
}
bool have_avx512() {
  return __builtin_cpu_supports("avx512f");
}

// Everything, in the rounding mode currently in effect.
Bits fp_compute(std::uint64_t seed) {
  Bits out;
  kernel_scalar(seed, out);
  kernel_sse2(seed, out);
  if (have_avx2()) kernel_avx2(seed, out);
  if (have_avx512()) kernel_avx512(seed, out);
  return out;
}

constexpr int kRoundModes[4] = {FE_TONEAREST, FE_DOWNWARD, FE_UPWARD, FE_TOWARDZERO};
constexpr int kFpSeeds = 3;

// The MXCSR rounding-control bits (14:13) and the x87 control word's (11:10) that each mode
// sets.
unsigned mxcsr_rc() {
  return (_mm_getcsr() >> 13) & 3;
}
unsigned x87_rc() {
  unsigned short cw;
  asm volatile("fnstcw %0" : "=m"(cw));
  return (cw >> 10) & 3;
}

// Four goroutines per processor, each with its own rounding mode set by fesetround() before
// its loop (one goroutine per mode, repeated), run the computation above over and over (no
// yields) while sysmon preempts them, until the asynchronous preemption counter grew by
// 1,000 (scaled) - thousands of diversions in the middle of the kernels, with the other
// goroutines running other modes and other vector data on the same threads in between. Every
// result must be bit-identical to the same computation on a plain thread in the same mode, and
// the mode (fegetround, MXCSR and x87 control words) must still be the goroutine's after each
// round. The reference results of two modes differ, so a mode leak cannot go unnoticed.
TEST_P(PreemptHeavyTest, FloatingPointAndSimdStateSurvivesPreemption) {
  // The references, on a plain thread.
  std::vector<std::vector<Bits>> ref(4, std::vector<Bits>(kFpSeeds));
  std::thread([&] {
    const int saved = fegetround();
    for (int m = 0; m < 4; m++) {
      fesetround(kRoundModes[m]);
      for (int s = 0; s < kFpSeeds; s++) ref[m][s] = fp_compute(static_cast<std::uint64_t>(s));
    }
    fesetround(saved);
  }).join();
  for (int m = 1; m < 4; m++) {
    ASSERT_NE(ref[0][0], ref[m][0]) << "the computation does not depend on the rounding mode " << m
                                    << ": a leaked mode would go unnoticed";
  }

  const int gs = 4 * procs();
  const std::uint64_t target = async_expected() ? static_cast<std::uint64_t>(scaled(1000)) : 0;
  const double deadline_s = 120;
  struct State {
    std::atomic<bool> stop{false};
    std::atomic<int> done{0}, bad_results{0}, bad_modes{0};
    std::atomic<std::uint64_t> rounds{0};
    std::vector<std::atomic<int>> rounds_of;
    explicit State(int n) : rounds_of(n) {}
  };
  auto st = std::make_shared<State>(gs);
  std::mutex report_mu;
  std::vector<std::string> reports;
  const auto c0 = counts();
  for (int g = 0; g < gs; g++) {
    goro::go([&, st, g] {
      const int m = g % 4;
      fesetround(kRoundModes[m]);
      const unsigned want_rc = mxcsr_rc();
      for (int round = 0; !st->stop.load(std::memory_order_relaxed); round++) {
        const int s = (round + g / 4) % kFpSeeds;
        Bits got = fp_compute(static_cast<std::uint64_t>(s));
        if (got != ref[m][s]) {
          if (st->bad_results.fetch_add(1) < 5) {
            std::size_t i = 0;
            while (i < got.size() && i < ref[m][s].size() && got[i] == ref[m][s][i]) i++;
            std::lock_guard<std::mutex> hold(report_mu);
            reports.push_back("goroutine " + std::to_string(g) + " mode " + std::to_string(m) +
                              " seed " + std::to_string(s) + " round " + std::to_string(round) +
                              ": result differs from the plain thread's at word " +
                              std::to_string(i) + " of " + std::to_string(got.size()));
          }
        }
        if (fegetround() != kRoundModes[m] || mxcsr_rc() != want_rc || x87_rc() != want_rc) {
          if (st->bad_modes.fetch_add(1) < 5) {
            std::lock_guard<std::mutex> hold(report_mu);
            reports.push_back("goroutine " + std::to_string(g) + " round " + std::to_string(round) +
                              ": rounding mode changed (fegetround " +
                              std::to_string(fegetround()) + ", mxcsr rc " +
                              std::to_string(mxcsr_rc()) + ", x87 rc " + std::to_string(x87_rc()) +
                              ", want rc " + std::to_string(want_rc) + ")");
          }
        }
        st->rounds_of[g].fetch_add(1);
        st->rounds.fetch_add(1);
        // Without asynchronous preemption (TSan) the goroutines take turns here instead.
        if (target == 0) goro::yield();
      }
      fesetround(FE_TONEAREST);
      st->done.fetch_add(1);
    });
  }
  const auto t0 = Clock::now();
  auto min_rounds = [&] {
    int mn = std::numeric_limits<int>::max();
    for (auto& r : st->rounds_of) mn = std::min(mn, r.load());
    return mn;
  };
  wait_until(
      [&] {
        return (counts().async - c0.async >= target && min_rounds() >= 2) ||
               st->bad_results.load() + st->bad_modes.load() > 0;
      },
      deadline_s);
  st->stop.store(true);
  wait_or_die([&] { return st->done.load() == gs; }, 120, "floating-point goroutines");
  const auto c1 = counts();
  for (const auto& r : reports) ADD_FAILURE() << r;
  EXPECT_EQ(st->bad_results.load(), 0);
  EXPECT_EQ(st->bad_modes.load(), 0);
  EXPECT_GE(min_rounds(), 2) << "a goroutine barely ran (" << describe(c1) << ")";
  if (target > 0) {
    EXPECT_GE(c1.async - c0.async, target)
        << "only " << c1.async - c0.async << " asynchronous preemptions in "
        << goro_test::seconds_since(t0) << " s (" << describe(c1) << ")";
  }
  std::printf(
      "[ info ] %llu rounds, %llu asynchronous preemptions in %.1f s (avx2 %d, avx512 %d)\n",
      static_cast<unsigned long long>(st->rounds.load()),
      static_cast<unsigned long long>(c1.async - c0.async), goro_test::seconds_since(t0),
      have_avx2() ? 1 : 0, have_avx512() ? 1 : 0);
}

// ---- 4. NoPreempt and OS mutexes -----------------------------------------------------------

enum class Guard { kNoPreempt, kNestedNoPreempt, kStdMutex, kPthreadMutex };

std::string guard_name(const ::testing::TestParamInfo<Guard>& info) {
  switch (info.param) {
    case Guard::kNoPreempt:
      return "NoPreempt";
    case Guard::kNestedNoPreempt:
      return "NestedNoPreempt";
    case Guard::kStdMutex:
      return "StdMutex";
    case Guard::kPthreadMutex:
      return "PthreadMutex";
  }
  return "?";
}

// Holds the guard of the given kind for its lifetime.
class HeldGuard {
 public:
  HeldGuard(Guard kind, std::mutex& smu, pthread_mutex_t& pmu) : kind_(kind), smu_(smu), pmu_(pmu) {
    switch (kind_) {
      case Guard::kNoPreempt:
        np_[0].emplace();
        break;
      case Guard::kNestedNoPreempt:
        np_[0].emplace();
        np_[1].emplace();
        break;
      case Guard::kStdMutex:
        smu_.lock();
        break;
      case Guard::kPthreadMutex:
        pthread_mutex_lock(&pmu_);
        break;
    }
  }
  ~HeldGuard() {
    switch (kind_) {
      case Guard::kNoPreempt:
        np_[0].reset();
        break;
      case Guard::kNestedNoPreempt:
        np_[1].reset();
        np_[0].reset();
        break;
      case Guard::kStdMutex:
        smu_.unlock();
        break;
      case Guard::kPthreadMutex:
        pthread_mutex_unlock(&pmu_);
        break;
    }
  }
  HeldGuard(const HeldGuard&) = delete;
  HeldGuard& operator=(const HeldGuard&) = delete;

 private:
  Guard kind_;
  std::mutex& smu_;
  pthread_mutex_t& pmu_;
  std::optional<goro::NoPreempt> np_[2];
};

class PreemptGuardTest : public ::testing::TestWithParam<Guard>, public ProcsFixture {
 protected:
  void SetUp() override { set_procs(1); }
  void TearDown() override { restore_procs(); }
};

// GOMAXPROCS=1. Goroutine A takes the guard, starts B (which counts and yields in a loop) and
// spins 100 ms with no calls: B must not run at all meanwhile (A is never preempted, though
// sysmon asks). Then A drops the guard and keeps spinning: B must now run (A is preempted;
// under TSan A yields instead).
TEST_P(PreemptGuardTest, SpinInsideGuardIsNeverPreempted) {
  struct State {
    std::mutex smu;
    pthread_mutex_t pmu = PTHREAD_MUTEX_INITIALIZER;
    std::atomic<bool> stop{false}, a_done{false}, b_done{false};
    std::atomic<std::uint64_t> counter{0}, during{~0ull}, requested{0};
    std::atomic<bool> resumed{false};
  };
  auto st = std::make_shared<State>();
  const Guard kind = GetParam();
  goro::go([st, kind] {
    {
      HeldGuard g(kind, st->smu, st->pmu);
      goro::go([st] {
        while (!st->stop.load()) {
          st->counter.fetch_add(1);
          goro::yield();
        }
        st->b_done.store(true);
      });
      const std::uint64_t r0 = counts().requested;
      spin_for(std::chrono::milliseconds(100));
      st->during.store(st->counter.load());
      st->requested.store(counts().requested - r0);
    }
    if (async_expected()) {
      st->resumed.store(
          spin_until_pred([&] { return st->counter.load() > 0; }, std::chrono::seconds(2)));
    } else {
      goro::yield();
      st->resumed.store(st->counter.load() > 0);
    }
    st->stop.store(true);
    st->a_done.store(true);
  });
  wait_or_die([&] { return st->a_done.load() && st->b_done.load(); }, 30, "guard test goroutines");
  EXPECT_EQ(st->during.load(), 0u)
      << "another goroutine ran while the spinner held the guard (" << describe(counts()) << ")";
  EXPECT_TRUE(st->resumed.load()) << "the other goroutine did not run within 2 s after the "
                                     "guard ended ("
                                  << describe(counts()) << ")";
  std::printf("[ info ] preemption requests during the 100 ms guarded spin: %llu\n",
              static_cast<unsigned long long>(st->requested.load()));
}

INSTANTIATE_TEST_SUITE_P(Kinds, PreemptGuardTest,
                         ::testing::Values(Guard::kNoPreempt, Guard::kNestedNoPreempt,
                                           Guard::kStdMutex, Guard::kPthreadMutex),
                         guard_name);

// Inside a NoPreempt, runtime entries (Chan::try_recv) do not yield for a pending request
// either; the request is served when the last (outermost) guard is destroyed: the other
// goroutine has run by the time the destructor returns, with no further runtime call. Ending
// an inner guard while the outer one lives does not serve it.
TEST_F(PreemptOneProcTest, NoPreemptDefersCooperativeRequestsToTheOutermostGuardEnd) {
  struct State {
    std::atomic<bool> stop{false}, a_done{false}, b_done{false};
    std::atomic<std::uint64_t> counter{0}, after_inner{~0ull}, during{~0ull}, after_guard{0},
        requested{0};
  };
  auto st = std::make_shared<State>();
  goro::go([st] {
    goro::Chan<int> empty(1);
    auto spin_with_entries = [&](std::chrono::milliseconds d) {
      const auto until = Clock::now() + d;
      while (Clock::now() < until) {
        for (int i = 0; i < 64; i++) (void)empty.try_recv();
      }
    };
    {
      goro::NoPreempt outer;
      goro::go([st] {
        while (!st->stop.load()) {
          st->counter.fetch_add(1);
          goro::yield();
        }
        st->b_done.store(true);
      });
      const std::uint64_t r0 = counts().requested;
      {
        goro::NoPreempt inner;
        spin_with_entries(std::chrono::milliseconds(60));
      }
      st->after_inner.store(st->counter.load());
      spin_with_entries(std::chrono::milliseconds(60));
      st->during.store(st->counter.load());
      st->requested.store(counts().requested - r0);
    }
    st->after_guard.store(st->counter.load());
    st->stop.store(true);
    st->a_done.store(true);
  });
  wait_or_die([&] { return st->a_done.load() && st->b_done.load(); }, 30, "NoPreempt goroutines");
  EXPECT_GT(st->requested.load(), 0u) << "sysmon never asked the goroutine to yield in 120 ms";
  EXPECT_EQ(st->after_inner.load(), 0u) << "ending the inner guard let another goroutine run";
  EXPECT_EQ(st->during.load(), 0u) << "a runtime entry yielded inside a NoPreempt";
  EXPECT_GT(st->after_guard.load(), 0u)
      << "the pending request was not served when the outermost guard ended (" << describe(counts())
      << ")";
}

// sysmon asks a goroutine that cannot be preempted right now again at later rounds, but it
// must not flood it: Go's sysmon backs off to one round per 10 ms when its rounds achieve
// nothing. Here (GOMAXPROCS=1) a goroutine spins 500 ms inside a NoPreempt, then sleeps 500 ms
// in a plain blocking call (std::this_thread::sleep_for: nanosleep in libc, never a safe
// point); each phase may receive at most 1,000 SIGURGs (one per 0.5 ms, ten times Go's
// steady rate). A storm costs the thread a kernel signal delivery each time, and lengthens
// its blocking calls (nanosleep is re-armed with the timer slack after every EINTR).
TEST_F(PreemptOneProcTest, UnpreemptableGoroutineIsNotFloodedWithSignals) {
  SKIP_WITHOUT_ASYNC();
  struct State {
    std::atomic<bool> done{false};
    std::atomic<std::uint64_t> spin_signals{0}, sleep_signals{0};
    std::atomic<double> sleep_s{0};
  };
  auto st = std::make_shared<State>();
  goro::go([st] {
    {
      goro::NoPreempt guard;
      const auto c0 = counts();
      spin_for(std::chrono::milliseconds(500));
      st->spin_signals.store(counts().signals_sent - c0.signals_sent);
    }
    const auto c0 = counts();
    const auto t0 = Clock::now();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    st->sleep_s.store(goro_test::seconds_since(t0));
    st->sleep_signals.store(counts().signals_sent - c0.signals_sent);
    st->done.store(true);
  });
  wait_or_die([&] { return st->done.load(); }, 60, "the unpreemptable goroutine");
  EXPECT_LE(st->spin_signals.load(), 1000u)
      << "SIGURGs sent during a 500 ms NoPreempt spin (" << describe(counts()) << ")";
  EXPECT_LE(st->sleep_signals.load(), 1000u)
      << "SIGURGs sent during a 500 ms sleep_for in a goroutine, which took " << st->sleep_s.load()
      << " s (" << describe(counts()) << ")";
}

// On a plain thread a NoPreempt has no effect: while the main thread holds two (and another
// plain thread one), a spinning goroutine is still preempted (GOMAXPROCS=1).
TEST_F(PreemptOneProcTest, NoPreemptOnAPlainThreadHasNoEffect) {
  SKIP_WITHOUT_ASYNC();
  struct State {
    std::atomic<bool> stop{false}, started{false}, other_ran{false};
    std::atomic<int> done{0};
  };
  auto st = std::make_shared<State>();
  goro::NoPreempt a;
  goro::NoPreempt b;
  std::thread t([st] {
    goro::NoPreempt c;
    while (!st->stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  goro::go([st] {
    st->started.store(true);
    spin_until(st->stop);
    st->done.fetch_add(1);
  });
  ASSERT_TRUE(wait_until([&] { return st->started.load(); }, 10));
  goro::go([st] {
    st->other_ran.store(true);
    st->done.fetch_add(1);
  });
  const bool ran = wait_until([&] { return st->other_ran.load(); }, 2.0);
  st->stop.store(true);
  t.join();
  wait_or_die([&] { return st->done.load() == 2; }, 30, "spinner");
  EXPECT_TRUE(ran) << "a NoPreempt on a plain thread kept a goroutine from being preempted ("
                   << describe(counts()) << ")";
}

// A goroutine that returns with a NoPreempt alive is a fatal error: the child process must not
// survive it.
TEST(PreemptChildProcess, GoroutineExitingInsideNoPreemptIsFatal) {
  ProcResult r = run_child("nopreempt_exit", {}, 60);
  ASSERT_TRUE(r.started) << r.err;
  EXPECT_NE(r.out.find("RETURNING"), std::string::npos) << r.describe();
  EXPECT_FALSE(r.exited && r.exit_code == 0) << "the process survived: " << r.describe();
  EXPECT_FALSE(r.timed_out) << r.describe();
}

// ---- 5. GORO_ASYNCPREEMPT=0 ----------------------------------------------------------------

// The same spin scenario in a child process (GOMAXPROCS=1): by default the second goroutine
// runs; with GORO_ASYNCPREEMPT=0 nothing can take the processor from the spinner, so the child
// reports starvation (or is killed by the timeout), and no signal is sent.
TEST(PreemptChildProcess, AsyncPreemptOffLetsASpinnerStarveOthers) {
  SKIP_WITHOUT_ASYNC();
  ProcResult on = run_child("spin", {{"GORO_ASYNCPREEMPT", std::nullopt}, {"GOMAXPROCS", "1"}}, 60);
  ASSERT_TRUE(on.started) << on.err;
  EXPECT_TRUE(on.exited && on.exit_code == kChildOk) << "default: " << on.describe();
  EXPECT_NE(on.out.find("OTHER-RAN"), std::string::npos) << on.describe();
  EXPECT_GT(child_value(on.out, "async"), 0) << on.describe();

  ProcResult on1 = run_child("spin", {{"GORO_ASYNCPREEMPT", "1"}, {"GOMAXPROCS", "1"}}, 60);
  EXPECT_TRUE(on1.exited && on1.exit_code == kChildOk) << "GORO_ASYNCPREEMPT=1: " << on1.describe();

  ProcResult off = run_child("spin", {{"GORO_ASYNCPREEMPT", "0"}, {"GOMAXPROCS", "1"}}, 30);
  ASSERT_TRUE(off.started) << off.err;
  const bool starved = off.timed_out || (off.exited && off.exit_code == kChildStarved);
  EXPECT_TRUE(starved) << "GORO_ASYNCPREEMPT=0: the spinner was preempted anyway: "
                       << off.describe();
  if (off.exited) {
    EXPECT_NE(off.out.find("STARVED"), std::string::npos) << off.describe();
    EXPECT_EQ(child_value(off.out, "signals_sent"), 0) << off.describe();
    EXPECT_EQ(child_value(off.out, "async"), 0) << off.describe();
    EXPECT_GT(child_value(off.out, "requested"), 0)
        << "sysmon should still ask (cooperatively): " << off.describe();
  }
}

// ---- 6. Cooperative preemption -------------------------------------------------------------

class PreemptCoopTest : public ::testing::TestWithParam<const char*> {};

// With GORO_ASYNCPREEMPT=0 and GOMAXPROCS=1 (child process), a goroutine that loops on a cheap
// runtime entry that never blocks is still preempted - at that entry - and the other goroutine
// runs; the cooperative counter grew and no signal was sent. Works under TSan too.
TEST_P(PreemptCoopTest, RuntimeEntryIsAPreemptionPointWithoutSignals) {
  const std::string entry = GetParam();
  ProcResult r = run_child("coop_" + entry, {{"GORO_ASYNCPREEMPT", "0"}, {"GOMAXPROCS", "1"}}, 30);
  ASSERT_TRUE(r.started) << r.err;
  EXPECT_TRUE(r.exited && r.exit_code == kChildOk) << entry << ": " << r.describe();
  EXPECT_NE(r.out.find("OTHER-RAN"), std::string::npos) << r.describe();
  EXPECT_GT(child_value(r.out, "cooperative"), 0) << r.describe();
  EXPECT_EQ(child_value(r.out, "signals_sent"), 0) << r.describe();
}

INSTANTIATE_TEST_SUITE_P(Entries, PreemptCoopTest,
                         ::testing::Values("try_recv", "try_send", "waitgroup", "timer"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string s = info.param;
                           s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
                           return s;
                         });

// In-process, with GOMAXPROCS 1, 2 and 8: as many goroutines as processors loop on
// Chan::try_recv of an empty channel; one more goroutine must still run, every trial.
TEST_P(PreemptTest, LoopOnRuntimeEntryCannotStarveAnotherGoroutine) {
  struct State {
    goro::Chan<int> empty{1};
    std::atomic<bool> stop{false}, other_ran{false};
    std::atomic<int> started{0}, done{0};
  };
  const int trials = static_cast<int>(scaled(30));
  const int n = procs();
  const auto c0 = counts();
  for (int t = 0; t < trials; t++) {
    auto st = std::make_shared<State>();
    for (int k = 0; k < n; k++) {
      goro::go([st] {
        st->started.fetch_add(1);
        while (!st->stop.load(std::memory_order_relaxed)) (void)st->empty.try_recv();
        st->done.fetch_add(1);
      });
    }
    const bool all_started = wait_until([&] { return st->started.load() == n; }, 5.0);
    goro::go([st] {
      st->other_ran.store(true);
      st->done.fetch_add(1);
    });
    const bool ran = all_started && wait_until([&] { return st->other_ran.load(); }, 2.0);
    st->stop.store(true);
    wait_or_die([&] { return st->done.load() == n + 1; }, 30, "try_recv loops");
    if (!ran) {
      ADD_FAILURE() << "trial " << t << ": starved (started " << st->started.load() << "/" << n
                    << ", " << describe(counts()) << ")";
      break;
    }
  }
  const auto c1 = counts();
  EXPECT_GT(c1.requested, c0.requested) << describe(c1);
  EXPECT_GT((c1.cooperative + c1.async) - (c0.cooperative + c0.async), 0u) << describe(c1);
}

// ---- 7. A goroutine holding an OS mutex is not diverted ------------------------------------

class PreemptOsLockTest : public ::testing::TestWithParam<const char*> {};

// Child process, GOMAXPROCS=1, default settings (see child_oslock): a runtime that preempts a
// goroutine holding a std::mutex / pthread_mutex_t deadlocks the child, which then reports it
// (or is killed by the timeout).
TEST_P(PreemptOsLockTest, HolderIsNotDivertedWhileAnotherWouldBlockOnTheMutex) {
  const std::string kind = GetParam();
  ProcResult r = run_child("oslock_" + kind, {{"GOMAXPROCS", "1"}}, 60);
  ASSERT_TRUE(r.started) << r.err;
  EXPECT_FALSE(r.timed_out) << r.describe();
  EXPECT_TRUE(r.exited && r.exit_code == kChildOk) << kind << ": " << r.describe();
  EXPECT_NE(r.out.find("BOTH-DONE"), std::string::npos) << r.describe();
}

INSTANTIATE_TEST_SUITE_P(Kinds, PreemptOsLockTest, ::testing::Values("std", "pthread"));

INSTANTIATE_TEST_SUITE_P(Procs, PreemptTest, ::testing::Values(1, 2, 8), procs_name);
INSTANTIATE_TEST_SUITE_P(Procs, PreemptHeavyTest, ::testing::Values(1, 2), procs_name);

}  // namespace
