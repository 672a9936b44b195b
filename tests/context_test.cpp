// context_test.cpp - what a goroutine switch must preserve: callee-saved registers, the SSE and
// x87 floating-point control state, and the C++ exception state (a goroutine may park inside a
// catch block or a destructor running during unwinding, and resume on another OS thread);
// plus this_goroutine::id() and in_goroutine().
#include <fenv.h>
#include <gtest/gtest.h>
#include <xmmintrin.h>

#include <atomic>
#include <cstdint>
#include <exception>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "goro/goro.hpp"
#include "test_util.hpp"

// goro_test_call_with_regs(fn, arg, in, out): loads rbx, rbp, r12, r13, r14, r15 from in[0..5],
// calls fn(arg), then stores those registers to out[0..5]. It saves and restores them itself,
// so it is an ordinary function to its caller. fn runs with our values in every callee-saved
// register; if it (or a goroutine switch inside it) fails to preserve any of them, out differs.
extern "C" void goro_test_call_with_regs(void (*fn)(void*), void* arg, const std::uint64_t* in,
                                         std::uint64_t* out);
asm(R"(
        .text
        .globl  goro_test_call_with_regs
        .type   goro_test_call_with_regs, @function
        .p2align 4
goro_test_call_with_regs:
        .cfi_startproc
        pushq   %rbp
        .cfi_def_cfa_offset 16
        .cfi_offset rbp, -16
        pushq   %rbx
        .cfi_def_cfa_offset 24
        .cfi_offset rbx, -24
        pushq   %r12
        .cfi_def_cfa_offset 32
        .cfi_offset r12, -32
        pushq   %r13
        .cfi_def_cfa_offset 40
        .cfi_offset r13, -40
        pushq   %r14
        .cfi_def_cfa_offset 48
        .cfi_offset r14, -48
        pushq   %r15
        .cfi_def_cfa_offset 56
        .cfi_offset r15, -56
        pushq   %rcx
        .cfi_def_cfa_offset 64
        movq    %rdi, %rax
        movq    %rsi, %rdi
        movq    0(%rdx), %rbx
        movq    8(%rdx), %rbp
        movq    16(%rdx), %r12
        movq    24(%rdx), %r13
        movq    32(%rdx), %r14
        movq    40(%rdx), %r15
        call    *%rax
        popq    %rcx
        .cfi_def_cfa_offset 56
        movq    %rbx, 0(%rcx)
        movq    %rbp, 8(%rcx)
        movq    %r12, 16(%rcx)
        movq    %r13, 24(%rcx)
        movq    %r14, 32(%rcx)
        movq    %r15, 40(%rcx)
        popq    %r15
        .cfi_def_cfa_offset 48
        popq    %r14
        .cfi_def_cfa_offset 40
        popq    %r13
        .cfi_def_cfa_offset 32
        popq    %r12
        .cfi_def_cfa_offset 24
        popq    %rbx
        .cfi_def_cfa_offset 16
        popq    %rbp
        .cfi_def_cfa_offset 8
        ret
        .cfi_endproc
        .size   goro_test_call_with_regs, .-goro_test_call_with_regs
)");

namespace {

using goro_test::scaled;
using goro_test::sys_gettid;

class ContextTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { goro::set_gomaxprocs(GetParam()); }
  void TearDown() override {
    EXPECT_TRUE(goro_test::wait_until([] { return goro::num_goroutine() == 0; }))
        << "goroutines left: " << goro::num_goroutine();
  }
};

constexpr const char* kRegNames[6] = {"rbx", "rbp", "r12", "r13", "r14", "r15"};

void yield_n(void* arg) {
  int n = *static_cast<int*>(arg);
  for (int i = 0; i < n; i++) goro::yield();
}

TEST_P(ContextTest, CalleeSavedRegistersSurviveYield) {
  const int kGoroutines = GetParam() == 1 ? 2 : 6;
  const int kIters = static_cast<int>(scaled(2000));
  std::atomic<int> mismatches{0};
  std::atomic<int> checks{0};
  goro::WaitGroup wg;
  wg.add(kGoroutines);
  for (int gi = 0; gi < kGoroutines; gi++) {
    goro::go([&, gi] {
      std::mt19937_64 rng(0x9E3779B97F4A7C15ull * static_cast<std::uint64_t>(gi + 1));
      for (int it = 0; it < kIters; it++) {
        std::uint64_t in[6], out[6] = {};
        for (auto& v : in) v = rng() | 1;  // distinct per goroutine and iteration
        int n = 1 + it % 3;
        goro_test_call_with_regs(yield_n, &n, in, out);
        checks.fetch_add(1, std::memory_order_relaxed);
        for (int r = 0; r < 6; r++) {
          if (in[r] != out[r]) {
            if (mismatches.fetch_add(1) < 10) {
              ADD_FAILURE() << "goroutine " << gi << " iteration " << it << ": " << kRegNames[r]
                            << " was " << std::hex << in[r] << ", came back " << out[r];
            }
          }
        }
      }
      wg.done();
    });
  }
  wg.wait();
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_EQ(checks.load(), kGoroutines * kIters);
}

// The same helper across a park (WaitGroup) that another goroutine releases.
TEST_P(ContextTest, CalleeSavedRegistersSurvivePark) {
  const int kIters = static_cast<int>(scaled(1000));
  int bad = 0;
  for (int it = 0; it < kIters && bad < 5; it++) {
    goro::WaitGroup parked, done;
    parked.add(1);
    done.add(2);
    std::uint64_t in[6] = {0x1111111111111111ull * (it % 15 + 1),
                           0xdeadbeefcafef00dull ^ it,
                           0x0123456789abcdefull + it,
                           ~std::uint64_t{0} - it,
                           0x8000000000000001ull,
                           0x5555aaaa5555aaaaull ^ (std::uint64_t{1} << (it % 64))};
    std::uint64_t out[6] = {};
    struct Arg {
      goro::WaitGroup* wg;
    } arg{&parked};
    goro::go([&] {
      goro_test_call_with_regs([](void* a) { static_cast<Arg*>(a)->wg->wait(); }, &arg, in, out);
      done.done();
    });
    goro::go([&] {
      // Scribble: run the helper with other values, yielding inside, then release.
      std::uint64_t mine[6], back[6];
      for (int r = 0; r < 6; r++) mine[r] = ~in[r];
      int n = 2;
      goro_test_call_with_regs(yield_n, &n, mine, back);
      parked.done();
      done.done();
    });
    done.wait();
    for (int r = 0; r < 6; r++) {
      if (in[r] != out[r]) {
        bad++;
        ADD_FAILURE() << "iteration " << it << ": " << kRegNames[r] << " was " << std::hex << in[r]
                      << ", came back " << out[r];
      }
    }
  }
}

unsigned short x87_cw() {
  unsigned short cw;
  asm volatile("fnstcw %0" : "=m"(cw));
  return cw;
}

void set_x87_cw(unsigned short cw) {
  asm volatile("fldcw %0" : : "m"(cw));
}

constexpr unsigned kMxcsrFtz = 0x8000, kMxcsrDaz = 0x0040, kMxcsrFlags = 0x003f;

// A computation whose result depends on the rounding mode.
double third() {
  volatile double one = 1.0, three = 3.0;
  return one / three;
}

// A floating-point environment for one goroutine: rounding mode, flush-to-zero and
// denormals-are-zero, x87 precision control (bits 9:8).
struct FpMode {
  int round;
  bool ftz_daz;
  unsigned short precision;
};

void set_fp_mode(const FpMode& m) {
  EXPECT_EQ(fesetround(m.round), 0);
  unsigned csr = _mm_getcsr();
  csr = m.ftz_daz ? (csr | kMxcsrFtz | kMxcsrDaz) : (csr & ~(kMxcsrFtz | kMxcsrDaz));
  _mm_setcsr(csr);
  set_x87_cw(static_cast<unsigned short>((x87_cw() & ~0x300) | m.precision));
}

TEST_P(ContextTest, FloatingPointControlStateIsPerGoroutine) {
  const int kIters = static_cast<int>(scaled(500));
  const unsigned main_csr = _mm_getcsr() & ~kMxcsrFlags;
  const unsigned short main_cw = x87_cw();
  const int main_round = fegetround();
  const FpMode modes[] = {{FE_UPWARD, true, 0x000},     {FE_DOWNWARD, false, 0x200},
                          {FE_TOWARDZERO, true, 0x300}, {FE_TONEAREST, false, 0x300},
                          {FE_UPWARD, false, 0x200},    {FE_DOWNWARD, true, 0x000}};
  std::atomic<int> bad{0};
  goro::WaitGroup wg;
  wg.add(6);
  for (int gi = 0; gi < 6; gi++) {
    goro::go([&, gi] {
      const FpMode m = modes[gi];
      set_fp_mode(m);
      const unsigned want_csr = _mm_getcsr() & ~kMxcsrFlags;
      const unsigned short want_cw = x87_cw();
      const double want_third = third();
      for (int it = 0; it < kIters; it++) {
        goro::yield();
        unsigned got_csr = _mm_getcsr() & ~kMxcsrFlags;
        unsigned short got_cw = x87_cw();
        if (fegetround() != m.round || got_csr != want_csr || got_cw != want_cw ||
            third() != want_third) {
          if (bad.fetch_add(1) < 5) {
            ADD_FAILURE() << "goroutine " << gi << " iteration " << it << std::hex << ": mxcsr "
                          << got_csr << " want " << want_csr << ", x87 cw " << got_cw << " want "
                          << want_cw << std::dec << ", round " << fegetround() << " want "
                          << m.round;
          }
        }
      }
      wg.done();
    });
  }
  wg.wait();
  EXPECT_EQ(bad.load(), 0);
  // The plain thread that waited is untouched.
  EXPECT_EQ(_mm_getcsr() & ~kMxcsrFlags, main_csr);
  EXPECT_EQ(x87_cw(), main_cw);
  EXPECT_EQ(fegetround(), main_round);
}

TEST_P(ContextTest, NewGoroutineStartsWithDefaultFloatingPointState) {
  // Goroutines that exit with odd settings must not leak them into later goroutines on the
  // same OS thread.
  for (int round = 0; round < 20; round++) {
    goro::WaitGroup wg;
    wg.add(4);
    for (int i = 0; i < 4; i++) {
      goro::go([&] {
        fesetround(FE_TOWARDZERO);
        _mm_setcsr(_mm_getcsr() | kMxcsrFtz | kMxcsrDaz);
        set_x87_cw(static_cast<unsigned short>(x87_cw() & ~0x300));
        wg.done();
      });
    }
    wg.wait();
    unsigned csr = 0;
    unsigned short cw = 0;
    int rnd = -1;
    wg.add(1);
    goro::go([&] {
      csr = _mm_getcsr();
      cw = x87_cw();
      rnd = fegetround();
      wg.done();
    });
    wg.wait();
    EXPECT_EQ(csr & ~kMxcsrFlags, 0x1F80u) << "round " << round;
    EXPECT_EQ(cw, 0x037F) << "round " << round;
    EXPECT_EQ(rnd, FE_TONEAREST) << "round " << round;
  }
}

struct Boom : std::runtime_error {
  explicit Boom(const std::string& s, int n) : std::runtime_error(s), id(n) {}
  int id;
};

// The same per-goroutine state across channel ping-pong, where a parking goroutine switches
// straight to the partner its send readied (the scheduler's direct switch, no g0 between):
// two pairs, four different floating-point modes, each goroutine inside its own catch block
// the whole time; afterwards `throw;` must rethrow each goroutine's own exception.
TEST_P(ContextTest, PingPongKeepsPerGoroutineStateAcrossDirectSwitches) {
  const int kIters = static_cast<int>(scaled(5000));
  const FpMode modes[] = {{FE_UPWARD, true, 0x000},
                          {FE_DOWNWARD, false, 0x200},
                          {FE_TOWARDZERO, true, 0x300},
                          {FE_TONEAREST, false, 0x300}};
  std::atomic<int> bad{0};
  goro::WaitGroup wg;
  wg.add(4);
  for (int pair = 0; pair < 2; pair++) {
    goro::Chan<int> ping(0), pong(0);
    for (int side = 0; side < 2; side++) {
      const int gi = pair * 2 + side;
      goro::go([&, gi, side, ping, pong] {
        const FpMode m = modes[gi];
        set_fp_mode(m);
        const unsigned want_csr = _mm_getcsr() & ~kMxcsrFlags;
        const unsigned short want_cw = x87_cw();
        const double want_third = third();
        std::vector<std::exception_ptr> keep;
        keep.reserve(static_cast<std::size_t>(kIters));
        try {
          throw Boom("goroutine " + std::to_string(gi), gi);
        } catch (const Boom&) {
          for (int it = 0; it < kIters; it++) {
            // A fresh exception caught in each round trip: the state that travels with the
            // goroutine changes every time, so a switch that loses it cannot go unnoticed.
            const int tag = gi * 1000000 + it;
            try {
              throw Boom("round trip", tag);
            } catch (const Boom&) {
              keep.push_back(std::current_exception());  // no address is reused for a later one
              if (side == 0) {
                ping.send(it);
                if (pong.recv() != it) bad++;
              } else {
                if (ping.recv() != it) bad++;
                pong.send(it);
              }
              try {
                throw;
              } catch (const Boom& b) {
                if (b.id != tag && bad.fetch_add(1) < 5) {
                  ADD_FAILURE() << "goroutine " << gi << " iteration " << it
                                << " rethrew exception " << b.id << ", want " << tag;
                }
              }
            }
            if ((_mm_getcsr() & ~kMxcsrFlags) != want_csr || x87_cw() != want_cw ||
                fegetround() != m.round || third() != want_third ||
                std::uncaught_exceptions() != 0) {
              if (bad.fetch_add(1) < 5) {
                ADD_FAILURE() << "goroutine " << gi << " iteration " << it
                              << ": floating-point state or exception count changed";
              }
            }
          }
          try {
            throw;
          } catch (const Boom& b) {
            if (b.id != gi && bad.fetch_add(1) < 5) {
              ADD_FAILURE() << "goroutine " << gi << " rethrew goroutine " << b.id
                            << "'s exception";
            }
          }
        }
        wg.done();
      });
    }
  }
  wg.wait();
  EXPECT_EQ(bad.load(), 0);
}

// A goroutine parks inside a catch block, resumes (possibly on another OS thread), and
// rethrows with `throw;`: the outer handler sees the same exception object. Repeats until a
// resumption on another thread was observed (GOMAXPROCS >= 2).
TEST_P(ContextTest, RethrowAfterParkInCatchBlock) {
  const int kMaxAttempts = 600;
  const int want_migrations = GetParam() >= 2 ? 3 : 0;
  int migrations = 0, attempts = 0;
  for (; attempts < kMaxAttempts && (attempts < 50 || migrations < want_migrations); attempts++) {
    goro::WaitGroup release, finished;
    release.add(1);
    finished.add(2);
    std::atomic<bool> waiter_started{false}, about_to_park{false};
    int tid_before = 0, tid_after = 0;
    const void* inner_addr = nullptr;
    const void* outer_addr = nullptr;
    std::string what;
    int caught_id = -1;
    int uncaught_in_catch = -1, uncaught_after_park = -1;
    bool current_after_park = false;
    goro::go([&, attempts] {
      while (!waiter_started.load()) goro::yield();
      try {
        try {
          throw Boom("boom " + std::to_string(attempts), attempts);
        } catch (const Boom& e) {
          inner_addr = &e;
          uncaught_in_catch = std::uncaught_exceptions();
          tid_before = sys_gettid();
          about_to_park = true;
          release.wait();  // parks; the releaser runs on the other M
          tid_after = sys_gettid();
          uncaught_after_park = std::uncaught_exceptions();
          current_after_park = std::current_exception() != nullptr;
          throw;
        }
      } catch (const Boom& e) {
        outer_addr = &e;
        what = e.what();
        caught_id = e.id;
      }
      finished.done();
    });
    goro::go([&] {
      waiter_started = true;
      while (!about_to_park.load()) goro::yield();
      // Meanwhile this goroutine throws and catches its own exception: the parked one's state
      // must not leak into it, nor it into the parked one.
      EXPECT_EQ(std::current_exception(), nullptr);
      try {
        throw std::logic_error("other");
      } catch (const std::logic_error&) {
        EXPECT_EQ(std::uncaught_exceptions(), 0);
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));  // let it park
      release.done();
      finished.done();
    });
    finished.wait();
    ASSERT_EQ(caught_id, attempts) << what;
    ASSERT_EQ(what, "boom " + std::to_string(attempts));
    ASSERT_EQ(inner_addr, outer_addr) << "`throw;` rethrew a different object";
    ASSERT_EQ(uncaught_in_catch, 0);
    ASSERT_EQ(uncaught_after_park, 0);
    ASSERT_TRUE(current_after_park) << "std::current_exception() lost across the park";
    if (tid_before != tid_after) migrations++;
  }
  RecordProperty("migrations", migrations);
  RecordProperty("attempts", attempts);
  if (want_migrations > 0) {
    EXPECT_GE(migrations, 1) << "never observed a goroutine resuming on another thread in "
                             << attempts << " attempts";
  }
}

// std::uncaught_exceptions() inside a destructor that runs during unwinding and parks there.
TEST_P(ContextTest, UncaughtExceptionsAcrossParkInDestructor) {
  const int kIters = static_cast<int>(std::max<std::int64_t>(20, scaled(200)));
  for (int it = 0; it < kIters; it++) {
    goro::WaitGroup release, finished;
    release.add(1);
    finished.add(2);
    std::atomic<int> before{-1};
    int after = -1, in_catch = -1, other_saw = -1;
    bool caught = false;
    struct Parker {
      goro::WaitGroup* release;
      std::atomic<int>* before;
      int* after;
      ~Parker() {
        *before = std::uncaught_exceptions();
        release->wait();
        *after = std::uncaught_exceptions();
      }
    };
    goro::go([&] {
      try {
        Parker p{&release, &before, &after};
        throw std::runtime_error("unwinding");
      } catch (const std::runtime_error&) {
        caught = true;
        in_catch = std::uncaught_exceptions();
      }
      finished.done();
    });
    goro::go([&] {
      while (before.load() < 0) goro::yield();
      other_saw = std::uncaught_exceptions();  // the unwinding one is parked: not ours
      release.done();
      finished.done();
    });
    finished.wait();
    ASSERT_EQ(before.load(), 1) << "iteration " << it;
    ASSERT_EQ(after, 1) << "iteration " << it;
    ASSERT_EQ(other_saw, 0) << "iteration " << it;
    ASSERT_TRUE(caught);
    ASSERT_EQ(in_catch, 0);
  }
}

// Many goroutines each holding a caught exception across parks, concurrently.
TEST_P(ContextTest, ManyGoroutinesParkInCatchBlocks) {
  const int kGoroutines = static_cast<int>(scaled(200));
  const int kRounds = 10;
  std::atomic<int> bad{0};
  goro::WaitGroup wg;
  wg.add(kGoroutines);
  goro::Mutex mu;
  for (int gi = 0; gi < kGoroutines; gi++) {
    goro::go([&, gi] {
      for (int r = 0; r < kRounds; r++) {
        try {
          try {
            throw Boom("g", gi * 1000 + r);
          } catch (const Boom&) {
            goro::yield();
            mu.lock();  // contended: parks sometimes
            goro::yield();
            mu.unlock();
            if (std::uncaught_exceptions() != 0) bad++;
            throw;
          }
        } catch (const Boom& e) {
          if (e.id != gi * 1000 + r) bad++;
        }
      }
      wg.done();
    });
  }
  wg.wait();
  EXPECT_EQ(bad.load(), 0);
}

TEST_P(ContextTest, GoroutineIdAndInGoroutine) {
  EXPECT_EQ(goro::this_goroutine::id(), 0u);
  EXPECT_FALSE(goro::in_goroutine());
  std::thread([] {
    EXPECT_EQ(goro::this_goroutine::id(), 0u);
    EXPECT_FALSE(goro::in_goroutine());
  }).join();

  const int kN = static_cast<int>(scaled(1000));
  std::vector<std::uint64_t> returned(static_cast<std::size_t>(kN)),
      seen(static_cast<std::size_t>(kN)), seen_later(static_cast<std::size_t>(kN));
  std::atomic<int> not_in_goroutine{0};
  goro::WaitGroup wg;
  wg.add(kN);
  for (int i = 0; i < kN; i++) {
    returned[static_cast<std::size_t>(i)] = goro::go([&, i] {
      if (!goro::in_goroutine()) not_in_goroutine++;
      seen[static_cast<std::size_t>(i)] = goro::this_goroutine::id();
      goro::yield();
      seen_later[static_cast<std::size_t>(i)] = goro::this_goroutine::id();
      wg.done();
    });
  }
  wg.wait();
  EXPECT_EQ(not_in_goroutine.load(), 0);
  std::set<std::uint64_t> unique;
  for (int i = 0; i < kN; i++) {
    auto k = static_cast<std::size_t>(i);
    EXPECT_NE(returned[k], 0u);
    EXPECT_EQ(seen[k], returned[k]) << i;
    EXPECT_EQ(seen_later[k], returned[k]) << i;
    if (i > 0) {
      // Not required by the API, but ids come from increasing ranges: one spawner's ids grow.
      EXPECT_GT(returned[k], returned[k - 1]) << "ids of one spawner increase";
    }
    unique.insert(returned[k]);
  }
  EXPECT_EQ(unique.size(), static_cast<std::size_t>(kN));

  // From a goroutine: the spawner's id differs from its children's.
  std::uint64_t parent = 0, child = 0, child_ret = 0;
  wg.add(1);
  goro::go([&] {
    parent = goro::this_goroutine::id();
    goro::WaitGroup inner;
    inner.add(1);
    child_ret = goro::go([&] {
      child = goro::this_goroutine::id();
      inner.done();
    });
    inner.wait();
    wg.done();
  });
  wg.wait();
  EXPECT_NE(parent, 0u);
  EXPECT_EQ(child, child_ret);
  EXPECT_NE(child, parent);
  // Never reused: later goroutines get ids not seen before.
  std::atomic<int> reused{0};
  wg.add(100);
  for (int i = 0; i < 100; i++) {
    goro::go([&] {
      std::uint64_t id = goro::this_goroutine::id();
      if (unique.count(id) != 0 || id == parent || id == child) reused++;
      wg.done();
    });
  }
  wg.wait();
  EXPECT_EQ(reused.load(), 0);
  EXPECT_EQ(goro::this_goroutine::id(), 0u);
  EXPECT_FALSE(goro::in_goroutine());
}

INSTANTIATE_TEST_SUITE_P(Procs, ContextTest, ::testing::Values(1, 2),
                         [](const auto& info) { return "P" + std::to_string(info.param); });

}  // namespace
