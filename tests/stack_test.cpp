// stack_test.cpp - goroutine stacks: usable depth, guard-page overflow, slot reuse, trimming
// of deep stacks, the guard-page budget, per-goroutine and default stack sizes.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "base/platform.hpp"
#include "goro/goro.hpp"
#include "sched/proc.hpp"
#include "stack/stack.hpp"
#include "test_util.hpp"

namespace {

using goro_test::run_testprog;
using goro_test::scaled;

constexpr std::size_t kKiB = 1024;
constexpr std::size_t kMiB = 1024 * 1024;

// Runs f in a goroutine and waits for it.
template <class F>
void run_in_goroutine(F&& f, const goro::GoOptions* opts = nullptr) {
  goro::WaitGroup wg;
  wg.add(1);
  auto body = [&] {
    f();
    wg.done();
  };
  if (opts != nullptr) {
    goro::go(*opts, body);
  } else {
    goro::go(body);
  }
  wg.wait();
}

// Recurses, 1 KiB of locals per frame, until `bytes` of stack below `top` are in use; returns
// the deepest stack address reached. Every frame writes all of its buffer.
[[gnu::noinline]] std::uintptr_t use_stack(std::uintptr_t top, std::size_t bytes, int depth = 0) {
  volatile char buf[1024];
  for (std::size_t i = 0; i < sizeof(buf); i++) buf[i] = static_cast<char>(depth + i);
  auto here = reinterpret_cast<std::uintptr_t>(&buf[0]);
  std::uintptr_t deepest = here;
  if (top - here < bytes && depth < 1000000) deepest = use_stack(top, bytes, depth + 1);
  return deepest + static_cast<std::uintptr_t>(buf[depth % sizeof(buf)] & 0);
}

std::uintptr_t stack_top_here() {
  return reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
}

class StackTest : public ::testing::Test {
 protected:
  void TearDown() override {
    EXPECT_TRUE(goro_test::wait_until([] { return goro::num_goroutine() == 0; }))
        << "goroutines left: " << goro::num_goroutine();
  }
};

TEST_F(StackTest, DefaultIs256KiB) {
  EXPECT_EQ(goro::default_stack_size(), 256 * kKiB);
}

TEST_F(StackTest, UsableDownTo200KiBOfDefaultStack) {
  std::uintptr_t deepest = 0, lo = 0, hi = 0;
  std::size_t used = 0;
  run_in_goroutine([&] {
    std::uintptr_t top = stack_top_here();
    deepest = use_stack(top, 200 * kKiB);
    used = top - deepest;
    goro::internal::G* g = goro::internal::getg();
    lo = g->stack_lo;
    hi = g->stack_hi;
  });
  EXPECT_GE(used, 200 * kKiB);
  EXPECT_GT(hi - lo, 240 * kKiB) << "usable part of a 256 KiB slot";
  EXPECT_GE(deepest, lo);
  EXPECT_LT(deepest, hi);
}

TEST_F(StackTest, UsableToNearTheBottom) {
  // Internals: recurse until fewer than 8 KiB above stack_lo remain (the guard page is below).
  std::uintptr_t deepest = 0, lo = 0;
  run_in_goroutine([&] {
    goro::internal::G* g = goro::internal::getg();
    lo = g->stack_lo;
    std::uintptr_t top = stack_top_here();
    deepest = use_stack(top, top - (lo + 8 * kKiB));
  });
  ASSERT_NE(lo, 0u);
  EXPECT_GE(deepest, lo);
  EXPECT_LT(deepest - lo, 12 * kKiB) << "did not get near the bottom of the stack";
}

TEST_F(StackTest, GuardPageOverflowDiesWithMessageAndSite) {
  auto r = run_testprog("stack_overflow_named");
  ASSERT_TRUE(r.started) << r.err;
  EXPECT_EQ(r.term_signal, SIGABRT) << r.describe();
  EXPECT_TRUE(goro_test::regex_search(r.err, "goroutine [0-9]+: stack overflow")) << r.describe();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex("line=([0-9]+)"))) << r.describe();
  EXPECT_NE(r.err.find("testprog.cpp:" + m[1].str()), std::string::npos) << r.describe();
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex("id=([0-9]+)"))) << r.describe();
  EXPECT_NE(r.err.find("goroutine " + m[1].str() + ": stack overflow"), std::string::npos)
      << r.describe();
  EXPECT_NE(r.err.find("\"deep\""), std::string::npos) << "goroutine name\n" << r.describe();
}

// The plain go(f) form has no source location: the creation site is symbolized inside the
// SIGSEGV handler. Repeated, because a failure there (e.g. the handler running out of its
// alternate signal stack while symbolizing) may depend on the memory layout of the run.
TEST_F(StackTest, GuardPageOverflowPlainGoNamesTheSpawningFunction) {
  const int runs = static_cast<int>(std::max<std::int64_t>(4, scaled(20)));
  int good = 0;
  std::string first_bad;
  for (int i = 0; i < runs; i++) {
    auto r = run_testprog("stack_overflow_plain");
    ASSERT_TRUE(r.started) << r.err;
    bool ok = r.term_signal == SIGABRT &&
              goro_test::regex_search(r.err, "goroutine [0-9]+: stack overflow") &&
              r.err.find("spawn_plain_overflow") != std::string::npos;
    if (ok) {
      good++;
    } else if (first_bad.empty()) {
      first_bad = r.describe();
    }
  }
  EXPECT_EQ(good, runs) << "want SIGABRT, the overflow message and the symbolized creation site "
                           "(spawn_plain_overflow) in every run; first bad run:\n"
                        << first_bad;
}

// Frames bigger than the single guard page can step over it. The overflow must still end the
// process with the stack-overflow message (not a bare SIGSEGV, and never silently run on over
// the neighbouring slot).
TEST_F(StackTest, OverflowWithFramesLargerThanTheGuardPageIsReported) {
  auto r = run_testprog("stack_overflow_big_frames");
  ASSERT_TRUE(r.started) << r.err;
  EXPECT_FALSE(r.exited) << r.describe();
  EXPECT_TRUE(goro_test::regex_search(r.err, "goroutine [0-9]+: stack overflow")) << r.describe();
}

TEST_F(StackTest, CanaryOverflowWithoutGuardPageIsDetectedAtSwitch) {
  auto r = run_testprog("stack_overflow_canary", {{"GORO_STACK_GUARD_BUDGET", "0"}});
  ASSERT_TRUE(r.started) << r.err;
  EXPECT_NE(r.out.find("kind=1"), std::string::npos) << "expected an unguarded (canary) slot\n"
                                                     << r.describe();
  EXPECT_EQ(r.term_signal, SIGABRT) << r.describe();
  EXPECT_TRUE(goro_test::regex_search(r.err, "goroutine [0-9]+: stack overflow \\(canary"))
      << r.describe();
  EXPECT_EQ(r.out.find("survived"), std::string::npos) << r.describe();
}

TEST_F(StackTest, SlotsAreReused) {
  // One P, so that the slots parked in P caches are bounded by one cache (64).
  goro::set_gomaxprocs(1);
  const std::int64_t n = scaled(20000);
  auto reserved = [] { return goro::internal::stack_stats().reserved_bytes; };
  // Sequential goroutines, from a plain thread and from a goroutine: after a warm-up (which
  // fills the P's slot cache), reserved memory must stop growing.
  auto sequential = [](std::int64_t count) {
    for (std::int64_t i = 0; i < count; i++) run_in_goroutine([] {});
    run_in_goroutine([&] {
      for (std::int64_t i = 0; i < count; i++) run_in_goroutine([] {});
    });
  };
  const std::size_t initial = reserved();
  // Warm-up: fills the caches of the plain thread and of the P on both paths (credits and
  // slots circulate between them), which may map a slab or two.
  sequential(2000);
  sequential(2000);
  const std::size_t warm = reserved();
  EXPECT_LE(warm - initial, std::size_t{64} << 20) << "warm-up mapped more than 4 slabs";
  sequential(n / 2);
  sequential(n / 2);
  // One more slab is tolerated: a goroutine preempted at a slice end under load can hold its
  // slot a moment longer. Leaking slots would map a slab every ~60 goroutines.
  EXPECT_LE(reserved(), warm + (std::size_t{16} << 20))
      << "sequential goroutines keep mapping new stacks";
  // In bursts too: 1000 live at a time. What a burst may reserve is bounded by its 1000 live
  // slots, the P's cache (64) and slack, whenever the scavenger releases idle slabs (between
  // rounds, on a slow machine) and the next burst maps them again; where the free slots sit
  // after each round moves the figure by a few slabs (8 are allowed). Leaking a burst's slots
  // maps ~16 slabs per round: the second leaking round passes the bound.
  const std::size_t burst_bound =
      warm + (1000 + 128) * goro::default_stack_size() + (std::size_t{8} << 24);
  for (int round = 0; round < 6; round++) {
    goro::WaitGroup wg;
    wg.add(1000);
    for (int i = 0; i < 1000; i++) goro::go([&] { wg.done(); });
    wg.wait();
    EXPECT_LE(reserved(), burst_bound)
        << "round " << round << ": bursts of 1000 keep mapping new stacks";
  }
}

// Counts the resident pages in [lo, hi).
std::size_t resident_pages(std::uintptr_t lo, std::uintptr_t hi) {
  std::size_t page = goro::internal::page_size();
  lo &= ~(page - 1);
  std::vector<unsigned char> vec((hi - lo + page - 1) / page);
  if (::mincore(reinterpret_cast<void*>(lo), hi - lo, vec.data()) != 0) return SIZE_MAX;
  std::size_t n = 0;
  for (unsigned char v : vec) n += v & 1;
  return n;
}

TEST_F(StackTest, DeepStackIsTrimmedAfterReuse) {
  goro::set_gomaxprocs(1);  // one P: the slot goes back to its cache and is reused at once
  std::uintptr_t lo = 0, hi = 0, slot = 0;
  std::size_t resident_after_deep = 0, resident_after_reuse = 0;
  long rss_deep = 0, rss_after = 0;
  run_in_goroutine([&] {
    // A driver goroutine, so that children come from (and return to) the P's slot cache.
    run_in_goroutine([&] {
      goro::internal::G* g = goro::internal::getg();
      lo = g->stack_lo;
      hi = g->stack_hi;
      slot = g->slot_base;
      std::uintptr_t top = stack_top_here();
      use_stack(top, 200 * kKiB);
    });
    resident_after_deep = resident_pages(lo, hi - 32 * kKiB);
    rss_deep = goro_test::proc_status_kb("VmRSS");
    std::atomic<int> same_slot{0};
    for (int i = 0; i < 40; i++) {
      run_in_goroutine([&] {
        if (goro::internal::getg()->slot_base == slot) same_slot.fetch_add(1);
      });
    }
    EXPECT_GE(same_slot.load(), 32) << "the deep goroutine's slot was not reused";
    resident_after_reuse = resident_pages(lo, hi - 32 * kKiB);
    rss_after = goro_test::proc_status_kb("VmRSS");
  });
  // 200 KiB deep, minus the top 32 KiB that trimming keeps: ~42 pages.
  EXPECT_GE(resident_after_deep, 35u) << "the deep recursion should have committed ~168 KiB here";
  EXPECT_LE(resident_after_reuse, 2u) << "pages below the top 32 KiB still resident";
  RecordProperty("rss_deep_kb", static_cast<int>(rss_deep));
  RecordProperty("rss_after_kb", static_cast<int>(rss_after));
}

// The trap of guard pages made with mprotect: each splits a mapping, and vm.max_map_count
// (65530) caps guarded stacks near 32k. Guard regions (Linux 6.13+) are page-table markers:
// every one of 30,000 live stacks - more than the mprotect budget of (65530 - 16384) / 2 -
// gets a guard page, and the process's mapping count stays where it was.
TEST_F(StackTest, GuardRegionsGuardEveryStackWithoutSplittingMappings) {
  if (goro_test::kSanitizerBuild) GTEST_SKIP() << "30,000 live stacks: release builds only";
  (void)goro::gomaxprocs();  // starts the runtime, which probes for guard regions
  if (!goro::internal::stack_stats().guard_regions) {
    GTEST_SKIP() << "the kernel has no MADV_GUARD_INSTALL (Linux < 6.13): mprotect budget";
  }
  auto map_count = [] {
    std::FILE* f = std::fopen("/proc/self/maps", "r");
    int lines = 0;
    for (int c; f != nullptr && (c = std::fgetc(f)) != EOF;) lines += c == '\n';
    if (f != nullptr) std::fclose(f);
    return lines;
  };
  constexpr int kN = 30000;
  const int maps_before = map_count();
  goro::WaitGroup started, release, finished;
  started.add(kN);
  release.add(1);
  finished.add(kN);
  for (int i = 0; i < kN; i++) {
    goro::go([&] {
      started.done();
      release.wait();  // park: all kN stacks are in use at once
      finished.done();
    });
  }
  started.wait();
  auto st = goro::internal::stack_stats();
  const int maps_during = map_count();
  release.done();
  finished.wait();
  // Slots with a guard page now: the kN live stacks at least. (Not a difference from before:
  // free slots that earlier tests left in the pool, guarded already, are reused.)
  EXPECT_GE(st.guarded, std::size_t{kN});
  EXPECT_EQ(st.unguarded, 0u);
  // Slabs of 64 slots: ~470 new mappings for 30,000 stacks, not 60,000.
  EXPECT_LT(maps_during - maps_before, 2000) << maps_before << " -> " << maps_during;
}

TEST_F(StackTest, PastGuardBudgetWarnsOnceAndRunsAll) {
  auto r = run_testprog("guard_budget", {{"GORO_STACK_GUARD_BUDGET", "8"}});
  ASSERT_TRUE(r.started) << r.err;
  ASSERT_TRUE(r.exited && r.exit_code == 0) << r.describe();
  EXPECT_NE(r.out.find("ran=100"), std::string::npos) << r.describe();
  int warning_lines = 0;
  std::size_t start = 0;
  while (start < r.err.size()) {
    std::size_t end = r.err.find('\n', start);
    if (end == std::string::npos) end = r.err.size();
    if (r.err.substr(start, end - start).find("GORO_STACK_GUARD_BUDGET") != std::string::npos) {
      warning_lines++;
    }
    start = end + 1;
  }
  EXPECT_EQ(warning_lines, 1) << r.describe();
  EXPECT_NE(r.out.find("guarded=8 "), std::string::npos) << r.describe();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex("unguarded=([0-9]+)"))) << r.describe();
  EXPECT_GE(std::stoi(m[1].str()), 92) << r.describe();
}

TEST_F(StackTest, PerGoroutineStackSize) {
  // 2 MiB of recursion in a 4 MiB stack.
  std::size_t used = 0, slot_size = 0;
  goro::GoOptions opts{.stack_size = 4 * kMiB};
  run_in_goroutine(
      [&] {
        std::uintptr_t top = stack_top_here();
        used = top - use_stack(top, 2 * kMiB);
        slot_size = goro::internal::getg()->slot_size;
      },
      &opts);
  EXPECT_GE(used, 2 * kMiB);
  EXPECT_EQ(slot_size, 4 * kMiB);

  // Sizes are rounded up to pages; the limits are inclusive.
  goro::GoOptions small{.stack_size = 16 * kKiB + 1};
  run_in_goroutine([&] { slot_size = goro::internal::getg()->slot_size; }, &small);
  EXPECT_EQ(slot_size, 16 * kKiB + goro::internal::page_size());
  goro::GoOptions min{.stack_size = 16 * kKiB};
  run_in_goroutine([&] { slot_size = goro::internal::getg()->slot_size; }, &min);
  EXPECT_EQ(slot_size, 16 * kKiB);
  goro::GoOptions max{.stack_size = std::size_t{1} << 30};
  run_in_goroutine([&] { slot_size = goro::internal::getg()->slot_size; }, &max);
  EXPECT_EQ(slot_size, std::size_t{1} << 30);

  // Custom stacks are unmapped when their goroutine returns (which is after wg.done()).
  auto no_goroutines = [] { return goro::num_goroutine() == 0; };
  ASSERT_TRUE(goro_test::wait_until(no_goroutines));
  std::size_t reserved = goro::internal::stack_stats().reserved_bytes;
  for (int i = 0; i < 50; i++) run_in_goroutine([] {}, &opts);
  ASSERT_TRUE(goro_test::wait_until(no_goroutines));
  EXPECT_EQ(goro::internal::stack_stats().reserved_bytes, reserved);
}

TEST_F(StackTest, InvalidStackSizesThrow) {
  std::int64_t before = goro::num_goroutine();
  std::atomic<int> ran{0};
  for (std::size_t bad : {std::size_t{1}, 16 * kKiB - 1, 4 * kKiB, (std::size_t{1} << 30) + 1,
                          std::size_t{1} << 40, ~std::size_t{0}}) {
    EXPECT_THROW(goro::go(goro::GoOptions{.stack_size = bad}, [&] { ran++; }),
                 std::invalid_argument)
        << bad;
  }
  // From a goroutine too.
  run_in_goroutine([&] {
    EXPECT_THROW(goro::go(goro::GoOptions{.stack_size = 100}, [&] { ran++; }),
                 std::invalid_argument);
  });
  EXPECT_EQ(ran.load(), 0);
  EXPECT_TRUE(goro_test::wait_until([&] { return goro::num_goroutine() == before; }));
}

TEST_F(StackTest, SetDefaultStackSize) {
  const std::size_t def = goro::default_stack_size();
  EXPECT_THROW(goro::set_default_stack_size(0), std::invalid_argument);
  EXPECT_THROW(goro::set_default_stack_size(16 * kKiB - 1), std::invalid_argument);
  EXPECT_THROW(goro::set_default_stack_size((std::size_t{1} << 30) + 1), std::invalid_argument);
  EXPECT_EQ(goro::default_stack_size(), def) << "a rejected size must not change the default";

  goro::set_default_stack_size(512 * kKiB + 1);
  EXPECT_EQ(goro::default_stack_size(), 512 * kKiB + goro::internal::page_size());
  goro::set_default_stack_size(1 * kMiB);
  EXPECT_EQ(goro::default_stack_size(), 1 * kMiB);
  // New goroutines get the new default, whether started from a thread or from a goroutine
  // (whose P may still cache slots of the old size).
  std::size_t used = 0, slot_size = 0;
  run_in_goroutine([&] {
    std::uintptr_t top = stack_top_here();
    used = top - use_stack(top, 800 * kKiB);
    slot_size = goro::internal::getg()->slot_size;
  });
  EXPECT_GE(used, 800 * kKiB);
  EXPECT_EQ(slot_size, 1 * kMiB);
  run_in_goroutine([&] {
    for (int i = 0; i < 3; i++) {
      run_in_goroutine([&] {
        std::uintptr_t top = stack_top_here();
        used = top - use_stack(top, 800 * kKiB);
        slot_size = goro::internal::getg()->slot_size;
      });
      EXPECT_EQ(slot_size, 1 * kMiB);
    }
  });
  goro::set_default_stack_size(16 * kKiB);
  EXPECT_EQ(goro::default_stack_size(), 16 * kKiB);
  run_in_goroutine(
      [&] { run_in_goroutine([&] { slot_size = goro::internal::getg()->slot_size; }); });
  EXPECT_EQ(slot_size, 16 * kKiB);
  goro::set_default_stack_size(def);
  EXPECT_EQ(goro::default_stack_size(), def);
  run_in_goroutine([&] {
    run_in_goroutine([&] {
      std::uintptr_t top = stack_top_here();
      used = top - use_stack(top, 200 * kKiB);
      slot_size = goro::internal::getg()->slot_size;
    });
  });
  EXPECT_EQ(slot_size, def);
  EXPECT_GE(used, 200 * kKiB);
}

// The default stack size changes while goroutines are being started from threads and
// goroutines (slot credits and caches of the old size are in flight). Every goroutine must run
// with a stack of one of the sizes in use and be able to use 40 KiB of it.
TEST_F(StackTest, DefaultStackSizeChangesWhileSpawning) {
  (void)goro::gomaxprocs();  // the runtime is up (start-up races are tested separately)
  const std::size_t def = goro::default_stack_size();
  const std::size_t sizes[] = {64 * kKiB, 256 * kKiB, 128 * kKiB};
  const int kN = static_cast<int>(goro_test::live_cap(scaled(20'000)));
  std::atomic<bool> stop{false};
  std::atomic<int> ran{0}, bad_size{0};
  std::thread flipper([&] {
    int k = 0;
    while (!stop.load()) {
      goro::set_default_stack_size(sizes[k++ % 3]);
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  auto body = [&] {
    std::size_t s = goro::internal::getg()->slot_size;
    if (s != sizes[0] && s != sizes[1] && s != sizes[2]) bad_size++;
    std::uintptr_t top = stack_top_here();
    use_stack(top, 40 * kKiB);
    ran++;
  };
  goro::WaitGroup spawner;
  spawner.add(1);
  goro::go([&] {
    for (int i = 0; i < kN / 2; i++) goro::go(body);
    spawner.done();
  });
  for (int i = kN / 2; i < kN; i++) goro::go(body);
  spawner.wait();
  goro_test::wait_or_die([&] { return ran.load() == kN; }, 60, "goroutines did not finish");
  stop = true;
  flipper.join();
  goro::set_default_stack_size(def);
  EXPECT_EQ(bad_size.load(), 0);
  EXPECT_EQ(ran.load(), kN);
}

// set_default_stack_size() racing with the runtime's start-up (the first go() in the process,
// as in a fresh test process): afterwards default_stack_size() and the stacks new goroutines
// get must agree. (A data race here is also reported by TSan builds.)
TEST_F(StackTest, SetDefaultStackSizeConcurrentWithRuntimeStart) {
  const std::size_t def = goro::default_stack_size();
  std::atomic<bool> go_now{false};
  std::thread setter([&] {
    while (!go_now.load()) {
    }
    goro::set_default_stack_size(64 * kKiB);
  });
  go_now = true;
  goro::WaitGroup wg;
  wg.add(1);
  goro::go([&] { wg.done(); });
  wg.wait();
  setter.join();
  EXPECT_EQ(goro::default_stack_size(), 64 * kKiB);
  std::size_t slot_size = 0;
  run_in_goroutine([&] { slot_size = goro::internal::getg()->slot_size; });
  EXPECT_EQ(slot_size, 64 * kKiB) << "default_stack_size() and new stacks disagree";
  goro::set_default_stack_size(def);
}

}  // namespace
