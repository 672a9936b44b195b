// deadlock_test.cpp - "fatal error: all goroutines are asleep - deadlock!" and the
// GORO_DEBUG_OSLOCK check (src/debug/deadlock.cpp).
//
// Each program runs in a fresh process (this binary re-executed with GORO_DL_CASE set and a
// filter on DeadlockChild.Run), since a deadlock ends it (exit status 2, like Go). The child
// prints "DONE" if its program returns.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "goro/debug.hpp"
#include "goro/goro.hpp"
#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using goro_test::run_process;

// ---- The programs ---------------------------------------------------------------------------

// A goroutine and the main thread both receive on one channel: nobody can send.
void chan_main() {
  goro::Chan<int> ch(0);
  goro::go([ch] { (void)ch.recv(); });
  (void)ch.recv();
}

// The main thread alone (no goroutine was ever started).
void main_alone() {
  goro::Chan<int> ch(0);
  (void)ch.recv();
}

// Two goroutines take two Mutexes in opposite orders; the main thread waits for them.
void mutex_abba() {
  static goro::Mutex a, b;
  goro::WaitGroup wg, both;
  wg.add(2);
  both.add(2);
  goro::go([&] {
    a.lock();
    both.done();
    both.wait();
    b.lock();
    wg.done();
  });
  goro::go([&] {
    b.lock();
    both.done();
    both.wait();
    a.lock();
    wg.done();
  });
  wg.wait();
}

// A goroutine blocked on a nil channel would call done: the main thread waits forever.
void nil_chan() {
  goro::WaitGroup wg;
  wg.add(1);
  goro::go([&] {
    goro::Chan<int> nil;
    (void)nil.recv();
    wg.done();
  });
  wg.wait();
}

// A plain thread and the main thread both wait on goro primitives; nothing else runs.
void thread_and_main() {
  goro::Chan<int> a(0), b(0);
  std::thread([a] { (void)a.recv(); }).detach();
  goro::go([b] { (void)b.recv(); });
  (void)b.recv();
}

// Not a deadlock: the main thread is in std::thread::join (outside goro) of a thread that
// will release the WaitGroup a goroutine waits on.
void join_outside() {
  goro::WaitGroup wg;
  wg.add(1);
  goro::Chan<int> done(0);
  goro::go([&] {
    wg.wait();
    done.close();
  });
  std::thread t([&] {
    std::this_thread::sleep_for(400ms);
    wg.done();
  });
  t.join();
  (void)done.recv();
}

// Not a deadlock: a sleeping goroutine will send.
void timer() {
  goro::Chan<int> ch(0);
  goro::go([ch] {
    goro::sleep_for(400ms);
    ch.send(1);
  });
  (void)ch.recv();
}

// Not a deadlock: a thread sleeping outside the runtime will send; the main thread and a
// goroutine wait on goro. With GORO_DEADLOCK=report it is reported once as uncertain.
void outside_sender() {
  goro::Chan<int> ch(0), done(0);
  goro::go([ch, done] {
    (void)ch.recv();
    done.close();
  });
  std::thread([ch] {
    std::this_thread::sleep_for(700ms);
    ch.send(1);
  }).detach();
  (void)done.recv();
}

// The deadlock of chan_main with the detector switched off through the API.
void api_off() {
  goro::debug::set_deadlock_mode(goro::debug::DeadlockMode::kOff);
  chan_main();
}

// A goroutine parks (three times, one site) while holding a std::mutex.
std::mutex g_os_mutex;
volatile int g_rounds = 3;
constexpr int kLockLine = __LINE__ + 7;  // the lock_guard below
void park_holding_mutex() {
  goro::Chan<int> ch(0);
  goro::WaitGroup wg;
  wg.add(1);
  goro::go([&] {
    for (int i = 0; i < g_rounds; i++) {             // not unrolled: one call site
      std::lock_guard<std::mutex> hold(g_os_mutex);  // the site to report (kLockLine)
      (void)ch.recv();
    }
    wg.done();
  });
  for (int i = 0; i < g_rounds; i++) {
    std::this_thread::sleep_for(20ms);
    ch.send(i);
  }
  wg.wait();
}

const std::map<std::string, void (*)()>& programs() {
  static const std::map<std::string, void (*)()> m = {
      {"chan_main", chan_main},
      {"main_alone", main_alone},
      {"mutex_abba", mutex_abba},
      {"nil_chan", nil_chan},
      {"thread_and_main", thread_and_main},
      {"join_outside", join_outside},
      {"timer", timer},
      {"outside_sender", outside_sender},
      {"api_off", api_off},
      {"park_holding_mutex", park_holding_mutex},
  };
  return m;
}

TEST(DeadlockChild, Run) {
  const char* name = std::getenv("GORO_DL_CASE");
  if (name == nullptr) GTEST_SKIP() << "runs only as a child of the tests below";
  auto it = programs().find(name);
  ASSERT_NE(it, programs().end()) << name;
  it->second();
  std::printf("DONE\n");
  std::fflush(stdout);
  std::_Exit(0);
}

goro_test::ProcResult run_program(const std::string& name,
                                  std::vector<goro_test::EnvChange> env = {},
                                  double timeout_s = 60) {
  // The detector is off by default: these programs ask for the fatal mode unless they choose.
  bool chosen = false;
  for (const auto& e : env) chosen = chosen || e.first == "GORO_DEADLOCK";
  if (!chosen) env.emplace_back("GORO_DEADLOCK", "fatal");
  env.emplace_back("GORO_DL_CASE", name);
  return run_process({"/proc/self/exe", "--gtest_filter=DeadlockChild.Run"}, env, timeout_s);
}

constexpr const char* kFatal = "fatal error: all goroutines are asleep - deadlock!";

void expect_deadlock(const goro_test::ProcResult& r, const std::string& state) {
  ASSERT_TRUE(r.exited) << r.describe();
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_EQ(r.err.rfind(kFatal, 0), 0u) << "the message comes first\n" << r.describe();
  EXPECT_EQ(r.out.find("DONE"), std::string::npos) << r.describe();
  if (!state.empty()) {
    EXPECT_NE(r.err.find("[" + state + "]"), std::string::npos) << r.describe();
  }
}

void expect_clean(const goro_test::ProcResult& r) {
  ASSERT_TRUE(r.exited) << r.describe();
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find("DONE"), std::string::npos) << r.describe();
  EXPECT_EQ(r.err.find("deadlock!"), std::string::npos) << r.describe();
}

// ---- Certain deadlocks are fatal ------------------------------------------------------------

TEST(Deadlock, GoroutineAndMainThreadOnOneChannel) {
  auto r = run_program("chan_main");
  expect_deadlock(r, "chan receive");
  EXPECT_NE(r.err.find("plain thread(s)"), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("created by"), std::string::npos) << r.describe();
}

TEST(Deadlock, MainThreadAlone) {
  expect_deadlock(run_program("main_alone"), "");
}

TEST(Deadlock, MutexLockOrderInversion) {
  expect_deadlock(run_program("mutex_abba"), "sync.Mutex.Lock");
}

TEST(Deadlock, WaitingOnANilChannelGoroutine) {
  expect_deadlock(run_program("nil_chan"), "chan receive (nil chan)");
}

TEST(Deadlock, PlainThreadsBlockedToo) {
  auto r = run_program("thread_and_main");
  expect_deadlock(r, "chan receive");
  EXPECT_NE(r.err.find("2 plain thread(s)"), std::string::npos) << r.describe();
}

// ---- Not deadlocks: no verdict --------------------------------------------------------------

TEST(Deadlock, MainThreadInJoinOfAThreadThatWillRelease) {
  expect_clean(run_program("join_outside"));
}

TEST(Deadlock, ArmedTimer) {
  expect_clean(run_program("timer"));
}

TEST(Deadlock, OutsideThreadMayStillSend) {
  expect_clean(run_program("outside_sender"));
  // In report mode: a warning, once, and the program goes on.
  auto r = run_program("outside_sender", {{"GORO_DEADLOCK", "report"}});
  expect_clean(r);
  EXPECT_EQ(goro_test::count_occurrences(r.err, "no deadlock verdict"), 1) << r.describe();
}

// ---- Switched off -----------------------------------------------------------------------------

TEST(Deadlock, OffByEnvironment) {
  auto r = run_program("chan_main", {{"GORO_DEADLOCK", "0"}}, 1.5);
  EXPECT_TRUE(r.timed_out) << r.describe();
  EXPECT_EQ(r.err.find("deadlock!"), std::string::npos) << r.describe();
}

TEST(Deadlock, OffByApi) {
  auto r = run_program("api_off", {}, 1.5);
  EXPECT_TRUE(r.timed_out) << r.describe();
  EXPECT_EQ(r.err.find("deadlock!"), std::string::npos) << r.describe();
}

// ---- GORO_DEBUG_OSLOCK ------------------------------------------------------------------------

TEST(OsLock, ParkingWhileHoldingAMutexIsReportedOncePerSite) {
  if (goro_test::kTsanBuild) GTEST_SKIP() << "no pthread hooks under TSan";
  auto r = run_program("park_holding_mutex", {{"GORO_DEBUG_OSLOCK", "1"}});
  expect_clean(r);
  EXPECT_EQ(goro_test::count_occurrences(r.err, "while holding"), 1) << r.describe();
  EXPECT_NE(r.err.find("parks (chan receive) while holding 1 pthread lock(s)"), std::string::npos)
      << r.describe();
  EXPECT_NE(r.err.find("pthread mutex 0x"), std::string::npos) << r.describe();
  // The site: the lock_guard's line in park_holding_mutex (inside the goroutine's lambda).
  EXPECT_NE(r.err.find("locked at "), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("deadlock_test.cpp:" + std::to_string(kLockLine) + ")"), std::string::npos)
      << "want line " << kLockLine << "\n"
      << r.describe();
}

TEST(OsLock, FatalMode) {
  if (goro_test::kTsanBuild) GTEST_SKIP() << "no pthread hooks under TSan";
  auto r = run_program("park_holding_mutex", {{"GORO_DEBUG_OSLOCK", "fatal"}});
  EXPECT_FALSE(r.exited && r.exit_code == 0) << r.describe();
  EXPECT_NE(r.err.find("fatal error: a goroutine switched away while holding an OS lock"),
            std::string::npos)
      << r.describe();
  EXPECT_NE(r.err.find("created at"), std::string::npos) << r.describe();
}

TEST(OsLock, OffByDefault) {
  auto r = run_program("park_holding_mutex");
  expect_clean(r);
  EXPECT_EQ(r.err.find("while holding"), std::string::npos) << r.describe();
}

}  // namespace
