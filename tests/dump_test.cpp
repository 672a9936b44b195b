// dump_test.cpp - goroutine dumps (goro/debug.hpp) at GOMAXPROCS 1 and 2 while other
// goroutines run: ids, names, states and wait reasons, creation sites, the user's functions in
// the unwound stacks, the calling goroutine's own stack, grouping of identical stacks, and the
// SIGQUIT traceback in a child process (this binary re-run with GORO_DUMP_TEST_CHILD set).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/platform.hpp"
#include "debug/traceback.hpp"
#include "goro/goro.hpp"
#include "sched/proc.hpp"
#include "test_util.hpp"

namespace {

using goro::debug::Detail;
using goro_test::run_process;
using goro_test::wait_until;

// The functions whose names the stacks must show: out of line, not cloned or folded with each
// other (GCC's noipa), and not ending in a tail call. Each ends with exited->done(), which
// also tells the test (and ThreadSanitizer) that it no longer uses the test's locals.
#if defined(__clang__)
#define DUMPTEST_FN __attribute__((noinline))
#else
#define DUMPTEST_FN __attribute__((noinline, noipa))
#endif

DUMPTEST_FN void dumptest_chan_receiver(goro::Chan<int> ch, goro::WaitGroup* exited) {
  (void)ch.recv();
  exited->done();
}

DUMPTEST_FN void dumptest_mutex_waiter(goro::Mutex* mu, goro::WaitGroup* exited) {
  mu->lock();
  mu->unlock();
  exited->done();
}

DUMPTEST_FN void dumptest_waitgroup_waiter(goro::WaitGroup* wg, goro::WaitGroup* exited) {
  wg->wait();
  exited->done();
}

DUMPTEST_FN void dumptest_sleeper(std::atomic<bool>* stop, goro::WaitGroup* exited) {
  while (!stop->load()) goro::sleep_for(std::chrono::milliseconds(20));
  exited->done();
}

DUMPTEST_FN void dumptest_grouped(goro::Chan<int> ch, goro::WaitGroup* exited) {
  (void)ch.recv();
  exited->done();
}

DUMPTEST_FN void dumptest_spinner(std::atomic<bool>* spinning, std::atomic<bool>* stop,
                                  goro::WaitGroup* exited) {
  spinning->store(true);
  while (!stop->load()) goro::internal::cpu_relax();
  exited->done();
}

DUMPTEST_FN void dumptest_self_dumper(std::string* out, std::uint64_t* id,
                                      goro::WaitGroup* exited) {
  *id = goro::this_goroutine::id();
  *out = goro::debug::goroutines(Detail::kFull);
  exited->done();
}

std::atomic<std::uint64_t> busy_sink{0};

// Background load: goroutines that compute and yield until stopped.
DUMPTEST_FN void dumptest_busy(std::atomic<bool>* stop, goro::WaitGroup* exited) {
  std::uint64_t x = 1;
  while (!stop->load()) {
    for (int i = 0; i < 1000; i++) x = x * 6364136223846793005ull + 1442695040888963407ull;
    goro::yield();
  }
  busy_sink.store(x);
  exited->done();
}

bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

// The block of goroutine `id` in a Detail::kFull dump (from its header to the empty line that
// ends it), or "" if the dump does not list it.
std::string block_of(const std::string& dump, std::uint64_t id) {
  const std::string head = "goroutine " + std::to_string(id) + " ";
  std::size_t pos = 0;
  for (;;) {
    pos = dump.find(head, pos);
    if (pos == std::string::npos) return {};
    if (pos == 0 || dump[pos - 1] == '\n') break;
    pos += head.size();
  }
  std::size_t end = dump.find("\n\n", pos);
  return dump.substr(pos, end == std::string::npos ? std::string::npos : end + 1 - pos);
}

std::string site(int line) {
  return "dump_test.cpp:" + std::to_string(line) + "\n";
}

// The groups of a Detail::kGrouped dump: each group's text (from "<count> @" to the empty line).
std::vector<std::string> groups_of(const std::string& dump) {
  std::vector<std::string> v;
  std::size_t pos = dump.find('\n');  // skip "goroutine profile: total N"
  while (pos != std::string::npos && pos + 1 < dump.size()) {
    std::size_t end = dump.find("\n\n", pos + 1);
    v.push_back(dump.substr(pos + 1, end == std::string::npos ? std::string::npos : end - pos));
    pos = end == std::string::npos ? end : end + 1;
  }
  return v;
}

class DumpTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    goro::set_gomaxprocs(GetParam());
    busy_exited_.add(2);
    for (int i = 0; i < 2; i++) {
      busy_ids_.push_back(goro::go(dumptest_busy, &stop_busy_, &busy_exited_));
    }
  }
  void TearDown() override {
    stop_busy_ = true;
    busy_exited_.wait();
    EXPECT_TRUE(wait_until([] { return goro::num_goroutine() == 0; }, 30))
        << "goroutines left: " << goro::num_goroutine() << "\n"
        << goro::debug::goroutines(Detail::kFull);
  }
  int procs() const { return GetParam(); }

  std::atomic<bool> stop_busy_{false};
  goro::WaitGroup busy_exited_;
  std::vector<std::uint64_t> busy_ids_;
};

// Polls a kFull dump until pred(dump) holds (the goroutines got to where they block), at most
// 20 s. Returns the last dump.
template <class Pred>
std::string dump_when(Pred&& pred, bool* ok) {
  std::string d;
  *ok = wait_until(
      [&] {
        d = goro::debug::goroutines(Detail::kFull);
        return pred(d);
      },
      20);
  return d;
}

TEST_P(DumpTest, ShowsStatesSitesAndUserFunctions) {
  goro::Chan<int> ch(0);
  goro::Mutex mu;
  goro::WaitGroup wg, exited;
  std::atomic<bool> stop_sleep{false};
  mu.lock();
  wg.add(1);
  exited.add(4);

  // clang-format off
  const int chan_line = __LINE__; const std::uint64_t chan_id = goro::go({.name = "receiver"}, dumptest_chan_receiver, ch, &exited);
  const int mutex_line = __LINE__; const std::uint64_t mutex_id = goro::go(dumptest_mutex_waiter, &mu, &exited);
  const int wg_line = __LINE__; const std::uint64_t wg_id = goro::go({.name = "wg"}, dumptest_waitgroup_waiter, &wg, &exited);
  const int sleep_line = __LINE__; const std::uint64_t sleep_id = goro::go(dumptest_sleeper, &stop_sleep, &exited);
  // clang-format on

  bool parked = false;
  const std::string d = dump_when(
      [&](const std::string& dump) {
        return contains(block_of(dump, chan_id), "[chan receive]:\n") &&
               contains(block_of(dump, mutex_id), "[sync.Mutex.Lock]:\n") &&
               contains(block_of(dump, wg_id), "[sync.WaitGroup.Wait]:\n") &&
               contains(block_of(dump, sleep_id), "[sleep]:\n");
      },
      &parked);
  EXPECT_TRUE(parked) << d;
  const std::string grouped = goro::debug::goroutines(Detail::kGrouped);
  ch.send(1);
  mu.unlock();
  wg.done();
  stop_sleep = true;
  exited.wait();

  const std::string chan_b = block_of(d, chan_id);
  EXPECT_TRUE(chan_b.starts_with("goroutine " + std::to_string(chan_id) +
                                 " \"receiver\" [chan receive]:\n"))
      << chan_b;
  EXPECT_TRUE(contains(chan_b, "dumptest_chan_receiver")) << chan_b;
  EXPECT_TRUE(contains(chan_b, "goro::Chan<int>::recv")) << chan_b;
  EXPECT_TRUE(contains(chan_b, "\ncreated by ")) << chan_b;
  EXPECT_TRUE(contains(chan_b, site(chan_line))) << chan_b;

  const std::string mutex_b = block_of(d, mutex_id);
  EXPECT_TRUE(
      mutex_b.starts_with("goroutine " + std::to_string(mutex_id) + " [sync.Mutex.Lock]:\n"))
      << mutex_b;
  EXPECT_TRUE(contains(mutex_b, "dumptest_mutex_waiter")) << mutex_b;
  EXPECT_TRUE(contains(mutex_b, "goro::Mutex::lock")) << mutex_b;
  // Without GoOptions the site comes from symbolizing go()'s return address.
  EXPECT_TRUE(contains(mutex_b, "TestBody()\n\t")) << mutex_b;
  EXPECT_TRUE(contains(mutex_b, site(mutex_line))) << mutex_b;

  const std::string wg_b = block_of(d, wg_id);
  EXPECT_TRUE(
      wg_b.starts_with("goroutine " + std::to_string(wg_id) + " \"wg\" [sync.WaitGroup.Wait]:\n"))
      << wg_b;
  EXPECT_TRUE(contains(wg_b, "dumptest_waitgroup_waiter")) << wg_b;
  EXPECT_TRUE(contains(wg_b, site(wg_line))) << wg_b;

  const std::string sleep_b = block_of(d, sleep_id);
  EXPECT_TRUE(contains(sleep_b, "dumptest_sleeper")) << sleep_b;
  EXPECT_TRUE(contains(sleep_b, site(sleep_line))) << sleep_b;

  // Frames: a function line, then a tab and file:line; the physical frame has an offset.
  EXPECT_TRUE(goro_test::regex_search(chan_b,
                                      "dumptest_chan_receiver[^\n]*\n\t[^\n]*dump_test\\.cpp:"
                                      "[0-9]+ \\+0x[0-9a-f]+\n"))
      << chan_b;
  // The runtime's internals and the entry layers are left out.
  for (const std::string& b : {chan_b, mutex_b, wg_b, sleep_b}) {
    EXPECT_FALSE(contains(b, "goro::internal::")) << b;
    EXPECT_FALSE(contains(b, "goro_trampoline")) << b;
    EXPECT_FALSE(contains(b, "stack unavailable")) << b;
  }

  // The background goroutines are listed, running or runnable.
  for (std::uint64_t id : busy_ids_) {
    const std::string b = block_of(d, id);
    EXPECT_TRUE(contains(b, "[running]:\n") || contains(b, "[runnable]:\n")) << b;
  }

  // The grouped form names them too.
  EXPECT_TRUE(grouped.starts_with("goroutine profile: total ")) << grouped;
  EXPECT_TRUE(goro_test::regex_search(grouped,
                                      "\n1 @( 0x[0-9a-f]+)+\n(#\t[^\n]*\n)*#\t0x[0-9a-f]+\t"
                                      "[^\n]*dumptest_mutex_waiter[^\n]*\\+0x[0-9a-f]+\t"
                                      "[^\n]*dump_test\\.cpp:[0-9]+\n"))
      << grouped;
}

TEST_P(DumpTest, GroupsIdenticalStacks) {
  const int kN = 100;
  goro::Chan<int> ch(0);
  goro::WaitGroup exited;
  exited.add(kN);
  for (int i = 0; i < kN; i++) goro::go(dumptest_grouped, ch, &exited);

  std::string d;
  std::vector<std::string> mine;
  auto all_parked = [&] {
    d = goro::debug::goroutines(Detail::kGrouped);
    mine.clear();
    for (const std::string& g : groups_of(d)) {
      if (contains(g, "dumptest_grouped")) mine.push_back(g);
    }
    return mine.size() == 1 && mine[0].starts_with(std::to_string(kN) + " @ ");
  };
  EXPECT_TRUE(wait_until(all_parked, 20)) << d;
  const std::string full = goro::debug::goroutines(Detail::kFull);
  ch.close();
  exited.wait();

  EXPECT_EQ(mine.size(), 1u) << d;
  if (!mine.empty()) {
    EXPECT_TRUE(mine[0].starts_with(std::to_string(kN) + " @ 0x")) << mine[0];
    EXPECT_TRUE(contains(mine[0], "goro::Chan<int>::recv")) << mine[0];
  }
  const std::string total = "goroutine profile: total ";
  EXPECT_TRUE(d.starts_with(total)) << d;
  EXPECT_GE(std::atoi(d.c_str() + total.size()), kN + 2) << d;  // plus the busy goroutines
  EXPECT_EQ(goro_test::count_occurrences(full, "[chan receive]:\ngoro::Chan<int>::recv() const\n"),
            kN)
      << full;
  EXPECT_EQ(goro_test::count_occurrences(full, "dumptest_grouped"), kN) << full;
}

TEST_P(DumpTest, CallingGoroutineShowsItsOwnStack) {
  std::string d;
  std::uint64_t id = 0;
  goro::WaitGroup exited;
  exited.add(1);
  const int line = __LINE__ + 1;
  goro::go([&] { dumptest_self_dumper(&d, &id, &exited); });
  exited.wait();
  EXPECT_NE(id, 0u);
  const std::string head = "goroutine " + std::to_string(id) + " [running]:\n";
  EXPECT_TRUE(d.starts_with(head)) << d;  // the caller comes first
  const std::string b = block_of(d, id);
  EXPECT_TRUE(b.starts_with(head + "goro::debug::goroutines")) << b;
  EXPECT_TRUE(contains(b, "dumptest_self_dumper")) << b;
  EXPECT_TRUE(contains(b, site(line))) << b;

  // A plain thread (this one) is not a goroutine: its dump lists only goroutines.
  const std::string from_thread = goro::debug::goroutines(Detail::kFull);
  EXPECT_FALSE(contains(from_thread, "goro::debug::goroutines")) << from_thread;
}

TEST_P(DumpTest, RunningGoroutineOnAnotherThread) {
  if (procs() < 2) GTEST_SKIP() << "needs a second P";
  std::atomic<bool> spinning{false}, stop{false};
  goro::WaitGroup exited;
  exited.add(1);
  const std::uint64_t id = goro::go(dumptest_spinner, &spinning, &stop, &exited);
  EXPECT_TRUE(wait_until([&] { return spinning.load(); }, 20));
  // Preemption may switch it out now and then; it is running nearly all the time.
  std::string b;
  EXPECT_TRUE(wait_until(
      [&] {
        b = block_of(goro::debug::goroutines(Detail::kFull), id);
        return contains(b, "[running]:\n\tgoroutine running on other thread; stack unavailable\n");
      },
      20))
      << b;
  stop = true;
  exited.wait();
}

TEST_P(DumpTest, NotStartedGoroutineShowsItsEntry) {
  if (procs() != 1) GTEST_SKIP() << "needs the only P to stay busy with the dumping goroutine";
  std::string d;
  std::uint64_t fresh = 0;
  int line = 0;
  goro::Chan<int> ch(0);
  goro::WaitGroup exited;
  exited.add(2);
  goro::go([&] {
    (void)goro::debug::goroutines(Detail::kFull);  // load the debug information first
    {
      // No preemption: the new goroutine stays queued behind us on the only P.
      goro::NoPreempt np;
      // clang-format off
      line = __LINE__; fresh = goro::go(dumptest_chan_receiver, ch, &exited);
      // clang-format on
      d = goro::debug::goroutines(Detail::kFull);
    }
    exited.done();
  });
  bool sent = false;
  while (!sent) sent = ch.try_send(1);  // the receiver may not have parked yet
  exited.wait();
  const std::string b = block_of(d, fresh);
  EXPECT_TRUE(b.starts_with("goroutine " + std::to_string(fresh) + " [runnable]:\n")) << d;
  EXPECT_TRUE(contains(b, "run_closure")) << b;
  // Under ASan, libdw finds no line for this return address (inside an instrumented lambda):
  // the creating function is still named; its file:line is checked in the other builds.
  if (!goro_test::kSanitizerBuild) {
    EXPECT_TRUE(contains(b, site(line))) << b;
  }
}

TEST_P(DumpTest, LongWaitShowsMinutes) {
  goro::Chan<int> ch(0);
  goro::WaitGroup exited;
  exited.add(1);
  const std::uint64_t id = goro::go(dumptest_chan_receiver, ch, &exited);
  bool parked = false;
  std::string d = dump_when(
      [&](const std::string& dump) { return contains(block_of(dump, id), "[chan receive]:\n"); },
      &parked);
  EXPECT_TRUE(parked) << d;
  // Pretend it parked three minutes ago (white box: the runtime stamps waitsince at park).
  struct Arg {
    std::uint64_t id;
    std::int64_t when;
  } arg{id, goro::internal::nanotime() - 3 * 60'000'000'000ll - 1'000'000'000};
  goro::internal::for_each_g(
      [](goro::internal::G* g, void* p) {
        auto* a = static_cast<Arg*>(p);
        if (g->goid == a->id) g->waitsince = a->when;
      },
      &arg);
  d = goro::debug::goroutines(Detail::kFull);
  ch.send(1);
  exited.wait();
  EXPECT_TRUE(block_of(d, id).starts_with("goroutine " + std::to_string(id) +
                                          " [chan receive, 3 minutes]:\n"))
      << d;
}

TEST_P(DumpTest, WritesToAStream) {
  std::ostringstream os;
  goro::debug::write_goroutines(os, Detail::kGrouped);
  EXPECT_TRUE(os.str().starts_with("goroutine profile: total ")) << os.str();
  std::ostringstream full;
  goro::debug::write_goroutines(full);
  for (std::uint64_t id : busy_ids_) {
    EXPECT_TRUE(contains(full.str(), "goroutine " + std::to_string(id) + " [")) << full.str();
  }
}

INSTANTIATE_TEST_SUITE_P(Procs, DumpTest, ::testing::Values(1, 2),
                         [](const auto& info) { return "P" + std::to_string(info.param); });

// ---------------------------------------------------------------------------------------------
// SIGQUIT, in a child process: this binary re-run with --gtest_filter=DumpChild.Run.

// The child's body. GORO_DUMP_TEST_CHILD selects: "sigquit" (calls debug_init itself, which
// is idempotent, so the handler is there even if the runtime's start-up does not call it),
// "startup" (relies on the runtime's start-up alone), "apphandler" (installs its own SIGQUIT
// handler before the runtime starts, then calls debug_init).
TEST(DumpChild, Run) {
  const char* mode = std::getenv("GORO_DUMP_TEST_CHILD");
  if (mode == nullptr) GTEST_SKIP() << "only run as a child of the SIGQUIT tests";
  rlimit no_core{0, 0};
  setrlimit(RLIMIT_CORE, &no_core);  // SIGQUIT's default action dumps core
  if (std::strcmp(mode, "apphandler") == 0) {
    struct sigaction sa {};
    sa.sa_handler = [](int) {
      static constexpr char kMsg[] = "application handler\n";
      (void)!::write(2, kMsg, sizeof kMsg - 1);
      ::_exit(7);
    };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGQUIT, &sa, nullptr);
  }
  goro::set_gomaxprocs(2);  // starts the runtime
  if (std::strcmp(mode, "startup") != 0) goro::internal::debug_init();
  goro::Chan<int> ch(0);
  std::atomic<bool> stop{false};
  goro::WaitGroup exited;
  exited.add(2);
  goro::go({.name = "child-recv"}, dumptest_chan_receiver, ch, &exited);
  goro::go(dumptest_busy, &stop, &exited);
  ASSERT_TRUE(wait_until(
      [] { return contains(goro::debug::goroutines(Detail::kFull), "[chan receive]:\n"); }, 20));
  ::kill(::getpid(), SIGQUIT);
  std::this_thread::sleep_for(std::chrono::seconds(60));
  std::fprintf(stderr, "child: still alive after SIGQUIT\n");
  std::_Exit(1);
}

goro_test::ProcResult run_child(const char* mode, bool opt_out = false) {
  std::vector<goro_test::EnvChange> env = {{"GORO_DUMP_TEST_CHILD", std::string(mode)}};
  if (opt_out) env.push_back({"GORO_SIGQUIT", std::string("0")});
  return run_process({"/proc/self/exe", "--gtest_filter=DumpChild.Run"}, env, 120);
}

void expect_sigquit_dump(const goro_test::ProcResult& r) {
  ASSERT_TRUE(r.started) << r.describe();
  EXPECT_TRUE(r.exited && r.exit_code == 2) << r.describe();
  EXPECT_TRUE(r.err.starts_with("SIGQUIT: quit\n\ngoroutine ")) << r.describe();
  EXPECT_TRUE(goro_test::regex_search(r.err,
                                      "\ngoroutine [0-9]+ \"child-recv\" \\[chan receive\\]:\n"
                                      "([^\n]*\n\t[^\n]*\n)*[^\n]*dumptest_chan_receiver"))
      << r.describe();
  // The busy goroutine is listed too (running, or runnable with its stack).
  EXPECT_GE(goro_test::count_occurrences(r.err, "\ngoroutine "), 2) << r.describe();
  EXPECT_TRUE(contains(r.err, "\ncreated by ")) << r.describe();
  EXPECT_FALSE(contains(r.err, "still alive")) << r.describe();
}

TEST(DumpSigquit, WritesEveryGoroutineAndExitsWithStatus2) {
  expect_sigquit_dump(run_child("sigquit"));
}

TEST(DumpSigquit, InstalledWhenTheRuntimeStarts) {
  expect_sigquit_dump(run_child("startup"));
}

TEST(DumpSigquit, OptOutKeepsTheDefaultAction) {
  const goro_test::ProcResult r = run_child("sigquit", /*opt_out=*/true);
  ASSERT_TRUE(r.started) << r.describe();
  EXPECT_EQ(r.term_signal, SIGQUIT) << r.describe();
  EXPECT_FALSE(contains(r.err, "SIGQUIT: quit")) << r.describe();
}

TEST(DumpSigquit, KeepsTheApplicationsHandler) {
  const goro_test::ProcResult r = run_child("apphandler");
  ASSERT_TRUE(r.started) << r.describe();
  EXPECT_TRUE(r.exited && r.exit_code == 7) << r.describe();
  EXPECT_TRUE(contains(r.err, "application handler")) << r.describe();
  EXPECT_FALSE(contains(r.err, "SIGQUIT: quit")) << r.describe();
}

}  // namespace
