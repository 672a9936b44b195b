// testprog.cpp - crash and process-level cases for goro's tests, selected by argv[1] (like Go's
// runtime/testdata/testprog). The tests run it as a subprocess and check its exit status or
// signal, stdout and stderr. Cases print what the test needs to know (goroutine ids, source
// lines) to stdout, flushed, before they crash.
//
// Lines that tests match ("testprog.cpp:<line>") are printed with __LINE__ on the line of the
// go() call (before it), so editing this file cannot desynchronize them.
// Not clang-formatted: tests compare the source line this program reports for a go() call
// with the creation site in its crash message, so each such call stays on one line.
// clang-format off
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

#include "goro/goro.hpp"
#include "sched/proc.hpp"
#include "base/platform.hpp"
#include "stack/stack.hpp"

namespace {

// The recursions below overflow on purpose: under ASan they are left uninstrumented so that
// goro's own detection (guard page, canary) is what fires, not ASan's stack checks.
#if defined(__clang__) || defined(__GNUC__)
#define NO_ASAN __attribute__((no_sanitize("address")))
#else
#define NO_ASAN
#endif

volatile bool g_stop = false;  // never set: keeps infinite recursions well-defined
volatile char g_sink;

__attribute__((format(printf, 1, 2))) void say(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::vprintf(fmt, ap);
  va_end(ap);
  std::fflush(stdout);
}

// Blocks the calling (main) thread for good, on a goroutine-aware primitive; the crash under
// test ends the process.
[[noreturn]] void wait_forever() {
  static goro::WaitGroup never;
  never.add(1);
  never.wait();
  std::_Exit(99);
}

long vm_size_kb() {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return -1;
  char line[256];
  long kb = -1;
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    if (std::strncmp(line, "VmSize:", 7) == 0) kb = std::strtol(line + 7, nullptr, 10);
  }
  std::fclose(f);
  return kb;
}

// ---- uncaught exceptions -------------------------------------------------------------------

int panic_named() {
  say("line=%d\n", __LINE__); goro::go({.name = "x"}, [] {
    say("id=%llu\n", static_cast<unsigned long long>(goro::this_goroutine::id()));
    throw std::runtime_error("kaboom-named-42");
  });
  wait_forever();
}

[[gnu::noinline]] void spawn_plain_panicker() {
  goro::go([] {
    say("id=%llu\n", static_cast<unsigned long long>(goro::this_goroutine::id()));
    throw std::logic_error("kaboom-plain-17");
  });
  asm volatile("");  // keep the call from being a tail call
}

int panic_plain() {
  spawn_plain_panicker();
  wait_forever();
}

int panic_int() {
  goro::go({.name = "thrower"}, [] {
    say("id=%llu\n", static_cast<unsigned long long>(goro::this_goroutine::id()));
    throw 42;
  });
  wait_forever();
}

// ---- misuse of package sync ------------------------------------------------------------------

int wg_negative_thread() {
  goro::WaitGroup wg;
  wg.add(1);
  wg.done();
  say("before\n");
  wg.done();
  say("after\n");
  return 0;
}

int wg_negative_goroutine() {
  say("line=%d\n", __LINE__); goro::go({.name = "negwg"}, [] {
    goro::WaitGroup wg;
    say("id=%llu\n", static_cast<unsigned long long>(goro::this_goroutine::id()));
    wg.add(2);
    wg.add(-3);
    say("after\n");
  });
  wait_forever();
}

int unlock_unlocked_thread() {
  goro::Mutex m;
  m.lock();
  m.unlock();
  say("before\n");
  m.unlock();
  say("after\n");
  return 0;
}

int unlock_unlocked_goroutine() {
  goro::go({.name = "unl"}, [] {
    goro::Mutex m;
    say("id=%llu\n", static_cast<unsigned long long>(goro::this_goroutine::id()));
    m.unlock();
    say("after\n");
  });
  wait_forever();
}

// ---- faults that are not stack overflows -------------------------------------------------

volatile int* volatile g_null = nullptr;

[[gnu::noinline]] NO_ASAN void write_through_null(int v) {
  *g_null = v;
  asm volatile("");
}

int fault_in_goroutine() {
  say("line=%d\n", __LINE__); goro::go({.name = "faulty"}, [] {
    say("id=%llu\n", static_cast<unsigned long long>(goro::this_goroutine::id()));
    write_through_null(1);
    g_sink = 1;  // not a tail call: the lambda's frame stays on the stack
  });
  wait_forever();
}

// As fault_in_goroutine, with GOMAXPROCS 1 and a goroutine that never yields waiting for the
// P: a hooked read made by the report's symbolizer that sysmon hands the P off from would
// come back to find the spinner running, and the faulting goroutine would resume later on
// another thread, away from the alternate stack its report runs on.
int fault_with_spinner() {
  goro::set_gomaxprocs(1);
  goro::go([] {
    for (;;) g_sink = g_sink + 1;
  });
  goro::go({.name = "faulty"}, [] {
    write_through_null(3);
    g_sink = 1;
  });
  wait_forever();
}

int fault_on_thread() {
  (void)goro::gomaxprocs();  // the runtime (and its fault handler) is running
  std::thread([] { write_through_null(2); }).join();
  return 0;
}

// ---- stack overflow ------------------------------------------------------------------------

[[gnu::noinline]] NO_ASAN int recurse_forever(int n) {
  volatile char buf[512];
  buf[0] = static_cast<char>(n);
  buf[sizeof(buf) - 1] = static_cast<char>(n);
  if (g_stop) return 0;
  return recurse_forever(n + 1) + buf[n % sizeof(buf)];
}

int stack_overflow_named() {
  say("line=%d\n", __LINE__); goro::go({.name = "deep"}, [] {
    say("id=%llu\n", static_cast<unsigned long long>(goro::this_goroutine::id()));
    g_sink = static_cast<char>(recurse_forever(0));
  });
  wait_forever();
}

[[gnu::noinline]] void spawn_plain_overflow() {
  goro::go([] {
    say("id=%llu\n", static_cast<unsigned long long>(goro::this_goroutine::id()));
    g_sink = static_cast<char>(recurse_forever(0));
  });
  asm volatile("");
}

int stack_overflow_plain() {
  spawn_plain_overflow();
  wait_forever();
}

// Frames larger than the guard page: every frame touches its lowest byte first, so a frame can
// step over the single guard page into whatever lies below the slot.
[[gnu::noinline]] NO_ASAN int recurse_big_frames(int n) {
  volatile char buf[16384];
  buf[0] = static_cast<char>(n);  // lowest address first
  buf[sizeof(buf) - 1] = static_cast<char>(n);
  if (g_stop) return 0;
  return recurse_big_frames(n + 1) + buf[n % sizeof(buf)];
}

int stack_overflow_big_frames() {
  // A parked neighbour first, so the overflowing slot is not the lowest of its slab.
  static goro::WaitGroup hold;
  hold.add(1);
  goro::go([] { hold.wait(); });
  goro::go({.name = "bigframes"}, [] {
    say("id=%llu\n", static_cast<unsigned long long>(goro::this_goroutine::id()));
    g_sink = static_cast<char>(recurse_big_frames(0));
  });
  wait_forever();
}

// Without a guard page (GORO_STACK_GUARD_BUDGET=0) an overflow is found by the canary at the
// next switch. Recurses until the bottom 64 bytes of the slot are overwritten (a bounded
// overflow into the neighbouring slot, which belongs to a parked goroutine), then yields.
std::uintptr_t g_slot_base;

[[gnu::noinline]] NO_ASAN int recurse_past(int n) {
  volatile char buf[1024];
  for (std::size_t i = 0; i < sizeof(buf); i++) buf[i] = static_cast<char>(n | 1);
  if (reinterpret_cast<std::uintptr_t>(&buf[0]) <= g_slot_base) return buf[n % sizeof(buf)];
  return recurse_past(n + 1) + buf[n % sizeof(buf)];
}

int stack_overflow_canary() {
  static goro::WaitGroup hold, holding;
  hold.add(1);
  holding.add(1);
  goro::go([] {  // occupies the slot below: bound when it first runs, so wait for that
    holding.done();
    hold.wait();
  });
  holding.wait();
  goro::go({.name = "canary"}, [] {
    goro::internal::G* g = goro::internal::getg();
    say("id=%llu kind=%d\n", static_cast<unsigned long long>(g->goid), int{g->stack_kind});
    g_slot_base = g->slot_base;
    g_sink = static_cast<char>(recurse_past(0));
    goro::yield();  // the canary is checked here
    say("survived\n");
  });
  wait_forever();
}

// ---- guard page budget ---------------------------------------------------------------------

int guard_budget() {
  constexpr int kN = 100;
  goro::WaitGroup started, release, finished;
  std::atomic<int> ran{0};
  started.add(kN);
  release.add(1);
  finished.add(kN);
  for (int i = 0; i < kN; i++) {
    goro::go([&] {
      ran.fetch_add(1);
      started.done();
      release.wait();  // park: all kN stacks are in use at once
      finished.done();
    });
  }
  started.wait();
  auto st = goro::internal::stack_stats();
  release.done();
  finished.wait();
  say("ran=%d guarded=%zu unguarded=%zu\n", ran.load(), st.guarded, st.unguarded);
  return 0;
}

// ---- GOMAXPROCS ----------------------------------------------------------------------------

int print_procs() {
  int procs = goro::gomaxprocs();
  std::atomic<int> ran{0};
  goro::WaitGroup wg;
  wg.add(1);
  goro::go([&] {
    ran = 1;
    wg.done();
  });
  wg.wait();
  say("gomaxprocs=%d num_cpu=%d ran=%d\n", procs, goro::num_cpu(), ran.load());
  return 0;
}

// ---- resource exhaustion -------------------------------------------------------------------

// go() with a non-default stack needs a new mapping: under a tight RLIMIT_AS it throws
// std::system_error; with the limit raised again the runtime works on. The stack asked for is
// 1 GiB, not less: VmSize moves by 64-128 MiB at a time while other threads run (glibc maps
// 128 MiB and trims it to 64 MiB for each new malloc arena), so a limit of "VmSize + 4 MiB"
// read during such a transient left room for a 64 MiB stack in about 1 run in 15.
int rlimit_as() {
  {
    goro::WaitGroup wg;
    wg.add(1);
    goro::go([&] { wg.done(); });  // the runtime and an M are up
    wg.wait();
  }
  rlimit old{};
  getrlimit(RLIMIT_AS, &old);
  long kb = vm_size_kb();
  rlimit tight = old;
  tight.rlim_cur = static_cast<rlim_t>(kb + 4 * 1024) * 1024;  // VM size + 4 MiB
  if (setrlimit(RLIMIT_AS, &tight) != 0) {
    say("setrlimit failed: %s\n", std::strerror(errno));
    return 3;
  }
  std::atomic<int> ran{0};
  bool threw = false;
  try {
    goro::go(goro::GoOptions{.stack_size = std::size_t{1} << 30}, [&] { ran.fetch_add(1); });
  } catch (const std::system_error& e) {
    threw = true;
    say("THREW: %s\n", e.what());
  }
  setrlimit(RLIMIT_AS, &old);
  if (!threw) {
    say("go() did not throw under RLIMIT_AS\n");
    return 4;
  }
  goro::WaitGroup wg;
  wg.add(1);
  goro::go(goro::GoOptions{.stack_size = 64 << 20}, [&] {
    ran.fetch_add(1);
    wg.done();
  });
  wg.wait();
  if (ran.load() != 1) {
    say("ran=%d (the failed goroutine ran?)\n", ran.load());
    return 5;
  }
  say("OK\n");
  return 0;
}

// Brings the runtime up with exactly one M (GOMAXPROCS=1 in the environment) and a mapped slab
// of default stacks, then lets that M go idle.
bool start_with_one_m() {
  if (goro::gomaxprocs() != 1) {
    say("want GOMAXPROCS=1 in the environment\n");
    return false;
  }
  goro::WaitGroup wg;
  wg.add(1);
  goro::go([&] { wg.done(); });
  wg.wait();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  return true;
}

bool lower_as_limit(rlimit* old, long headroom_kb) {
  getrlimit(RLIMIT_AS, old);
  rlimit tight = *old;
  tight.rlim_cur = static_cast<rlim_t>(vm_size_kb() + headroom_kb) * 1024;
  if (setrlimit(RLIMIT_AS, &tight) != 0) {
    say("setrlimit failed: %s\n", std::strerror(errno));
    return false;
  }
  return true;
}

// Every M is busy and none can be created (RLIMIT_AS leaves no room for a thread stack), while
// idle Ps exist: go() from main must throw std::system_error, and the goroutines it reported
// as failed must never run. With the limit restored, goroutines run to completion.
int thread_fail() {
  if (!start_with_one_m()) return 3;
  // Occupy the only M: a goroutine that spins without entering the scheduler.
  std::atomic<bool> spinning{false}, release{false};
  goro::go([&] {
    spinning = true;
    while (!release.load()) goro::internal::cpu_relax();
  });
  while (!spinning.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  int threads_before = goro::num_threads();
  rlimit old{};
  if (!lower_as_limit(&old, 64)) return 3;  // less than a 256 KiB thread stack
  goro::set_gomaxprocs(4);  // three idle Ps, no M to run them (creating one fails)
  std::atomic<int> ran{0};
  int ok = 0, failed = 0;
  for (int i = 0; i < 20; i++) {
    try {
      goro::go([&] { ran.fetch_add(1); });
      ok++;
    } catch (const std::system_error& e) {
      if (failed++ == 0) say("THREW: %s\n", e.what());
    }
  }
  setrlimit(RLIMIT_AS, &old);
  release = true;
  say("threads_before=%d ok=%d failed=%d\n", threads_before, ok, failed);
  if (failed == 0) return 4;
  // The goroutines that go() accepted must run; the refused ones never.
  goro::WaitGroup wg;
  constexpr int kMore = 200;
  wg.add(kMore);
  for (int i = 0; i < kMore; i++) {
    goro::go([&] {
      ran.fetch_add(1);
      wg.done();
    });
  }
  wg.wait();
  for (int i = 0; i < 200 && ran.load() != ok + kMore; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  say("ran=%d want=%d\n", ran.load(), ok + kMore);
  if (ran.load() != ok + kMore) return 5;
  say("OK\n");
  return 0;
}

// One M exists; no more can be created. go() succeeds whenever that M can run the goroutine
// and throws otherwise; the runtime must keep running everything it accepted on the one M.
int thread_fail_partial() {
  if (!start_with_one_m()) return 3;
  int threads_before = goro::num_threads();
  rlimit old{};
  if (!lower_as_limit(&old, 64)) return 3;
  goro::set_gomaxprocs(4);
  constexpr int kN = 2000;
  std::atomic<int> ran{0};
  int ok = 0, failed = 0;
  goro::WaitGroup wg;
  for (int i = 0; i < kN; i++) {
    wg.add(1);
    try {
      goro::go([&] {
        ran.fetch_add(1);
        goro::yield();
        wg.done();
      });
      ok++;
    } catch (const std::system_error&) {
      failed++;
      wg.done();
    }
    if (i % 32 == 31) wg.wait();  // stay within the stack slab already mapped
  }
  wg.wait();
  setrlimit(RLIMIT_AS, &old);
  say("threads_before=%d threads_now=%d ok=%d failed=%d ran=%d\n", threads_before,
      goro::num_threads(), ok, failed, ran.load());
  if (ran.load() != ok) return 5;
  if (ok == 0) return 6;
  say("OK\n");
  return 0;
}

// A goroutine stolen to a P whose stack cache is empty, while every free slot of its size sits
// in the other P's cache and no slab can be mapped (RLIMIT_AS), must wait for that P to give
// its slots back, not end the process ("Shortage" in stack.cpp). Staged on a fresh size
// class, so which slots exist and where they lie is known:
//   1. a spare M for P 1 (no thread can be created under the limit);
//   2. holders drain P 0's cache and the pool of the default class (stats: cached == 0), so
//      that P 0's cache takes the new class;
//   3. set_default_stack_size(512 KiB): a new class, 32 slots a slab. A parent with a stack of
//      its own spawns 32 children on P 0 (one slab of credits), which bind all 32 slots at
//      once and end, leaving the 32 slots in P 0's cache;
//   4. still on P 0, the parent lowers RLIMIT_AS below a slab, sets GOMAXPROCS 2, spawns two
//      goroutines and spins: P 1 steals one, finds no slot anywhere but in P 0's cache, and
//      waits until sysmon preempts the parent and P 0 flushes its cache.
// Prints WAITED when it saw P 1 waiting (the test asserts that the case was staged).
int stack_shortage() {
  if (!start_with_one_m()) return 3;
  auto wait_until = [](auto cond) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!cond()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  };
  // 1. Two goroutines that wait for each other run on two Ms at once.
  goro::set_gomaxprocs(2);
  {
    std::atomic<int> in{0};
    goro::WaitGroup wg;
    wg.add(2);
    for (int i = 0; i < 2; i++) {
      goro::go([&] {
        in.fetch_add(1);
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (in.load() < 2 && std::chrono::steady_clock::now() < deadline) {
          goro::internal::cpu_relax();
        }
        wg.done();
      });
    }
    wg.wait();
    if (in.load() != 2) {
      say("no second M\n");
      return 3;
    }
  }
  goro::set_gomaxprocs(1);
  // 2. Holders.
  goro::Chan<int> release_holders(0);
  std::atomic<int> holders{0};
  while (goro::stats().stacks.cached > 0) {
    int before = holders.load();
    goro::go([&] {
      holders.fetch_add(1);
      (void)release_holders.recv();
    });
    if (!wait_until([&] { return holders.load() > before; }) || holders.load() > 10000) {
      say("could not drain the stack caches\n");
      return 3;
    }
  }
  // 3. The new class, and the parent.
  goro::set_default_stack_size(512 << 10);
  static constexpr int kChildren = 32;
  std::atomic<int> ran{0};
  std::atomic<bool> waited{false};
  rlimit old{};
  getrlimit(RLIMIT_AS, &old);
  int rc = 0;
  goro::WaitGroup parent_done;
  parent_done.add(1);
  goro::go(goro::GoOptions{.stack_size = 1 << 20}, [&] {
    goro::WaitGroup started, finished;
    goro::Chan<int> gate(0);
    started.add(kChildren);
    finished.add(kChildren);
    for (int i = 0; i < kChildren; i++) {
      goro::go([&] {
        started.done();
        (void)gate.recv();
        finished.done();
      });
    }
    started.wait();
    gate.close();
    finished.wait();
    if (!wait_until([] { return goro::stats().stacks.cached == kChildren; })) {
      say("cached=%lld, want %d\n", static_cast<long long>(goro::stats().stacks.cached),
          kChildren);
      rc = 3;
    } else if (rlimit o{}; !lower_as_limit(&o, 4 * 1024)) {  // a slab is 16 MiB
      rc = 3;
    } else {
      // 4. Spin without a scheduling point until both have run.
      goro::set_gomaxprocs(2);
      for (int i = 0; i < 2; i++) goro::go([&] { ran.fetch_add(1); });
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      while (ran.load() < 2 && std::chrono::steady_clock::now() < deadline) {
        if (goro::internal::stack_slots_wanted()) waited = true;
        goro::internal::cpu_relax();
      }
      setrlimit(RLIMIT_AS, &old);
    }
    parent_done.done();
  });
  parent_done.wait();
  release_holders.close();
  if (rc != 0) return rc;
  say("ran=%d%s\n", ran.load(), waited.load() ? " WAITED" : "");
  if (ran.load() != 2) return 5;
  say("OK\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  static const std::map<std::string, int (*)()> cases = {
      {"panic_named", panic_named},
      {"panic_plain", panic_plain},
      {"panic_int", panic_int},
      {"wg_negative_thread", wg_negative_thread},
      {"wg_negative_goroutine", wg_negative_goroutine},
      {"unlock_unlocked_thread", unlock_unlocked_thread},
      {"unlock_unlocked_goroutine", unlock_unlocked_goroutine},
      {"fault_in_goroutine", fault_in_goroutine},
      {"fault_with_spinner", fault_with_spinner},
      {"fault_on_thread", fault_on_thread},
      {"stack_overflow_named", stack_overflow_named},
      {"stack_overflow_plain", stack_overflow_plain},
      {"stack_overflow_big_frames", stack_overflow_big_frames},
      {"stack_overflow_canary", stack_overflow_canary},
      {"guard_budget", guard_budget},
      {"print_procs", print_procs},
      {"rlimit_as", rlimit_as},
      {"thread_fail", thread_fail},
      {"thread_fail_partial", thread_fail_partial},
      {"stack_shortage", stack_shortage},
  };
  if (argc < 2 || cases.count(argv[1]) == 0) {
    std::fprintf(stderr, "usage: %s CASE\ncases:", argv[0]);
    for (const auto& [name, fn] : cases) std::fprintf(stderr, " %s", name.c_str());
    std::fprintf(stderr, "\n");
    return 2;
  }
  return cases.at(argv[1])();
}
// clang-format on
