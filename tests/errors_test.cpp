// errors_test.cpp - how goro fails: fatal errors run as subprocesses of tests/testprog (exit
// status or signal, stderr), plus the in-process argument errors and resource exhaustion.
#include <gtest/gtest.h>

#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "goro/goro.hpp"
#include "test_util.hpp"

namespace {

using goro_test::ProcResult;
using goro_test::run_testprog;

std::string capture(const std::string& s, const std::string& re) {
  std::smatch m;
  if (!std::regex_search(s, m, std::regex(re))) return {};
  return m[1].str();
}

void expect_abort(const ProcResult& r) {
  ASSERT_TRUE(r.started) << r.err;
  EXPECT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.term_signal, SIGABRT) << r.describe();
}

TEST(Errors, ExceptionEscapingNamedGoroutine) {
  auto r = run_testprog("panic_named");
  expect_abort(r);
  std::string id = capture(r.out, "id=([0-9]+)");
  std::string line = capture(r.out, "line=([0-9]+)");
  ASSERT_FALSE(id.empty()) << r.describe();
  ASSERT_FALSE(line.empty()) << r.describe();
  EXPECT_NE(r.err.find("goroutine " + id), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("kaboom-named-42"), std::string::npos) << "what()\n" << r.describe();
  EXPECT_NE(r.err.find("std::runtime_error"), std::string::npos) << "type\n" << r.describe();
  EXPECT_NE(r.err.find("testprog.cpp:" + line), std::string::npos) << "creation site\n"
                                                                   << r.describe();
  EXPECT_NE(r.err.find("\"x\""), std::string::npos) << "name\n" << r.describe();
}

TEST(Errors, ExceptionEscapingPlainGoroutineNamesTheSpawningFunction) {
  auto r = run_testprog("panic_plain");
  expect_abort(r);
  std::string id = capture(r.out, "id=([0-9]+)");
  ASSERT_FALSE(id.empty()) << r.describe();
  EXPECT_NE(r.err.find("goroutine " + id), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("kaboom-plain-17"), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("spawn_plain_panicker"), std::string::npos) << "symbolized creation site\n"
                                                                   << r.describe();
}

TEST(Errors, NonStdExceptionEscapingGoroutine) {
  auto r = run_testprog("panic_int");
  expect_abort(r);
  std::string id = capture(r.out, "id=([0-9]+)");
  ASSERT_FALSE(id.empty()) << r.describe();
  EXPECT_NE(r.err.find("goroutine " + id), std::string::npos) << r.describe();
  EXPECT_TRUE(goro_test::regex_search(r.err, "type int\\b")) << r.describe();
}

TEST(Errors, NegativeWaitGroupCounterOnThread) {
  auto r = run_testprog("wg_negative_thread");
  expect_abort(r);
  EXPECT_NE(r.out.find("before"), std::string::npos) << r.describe();
  EXPECT_EQ(r.out.find("after"), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("sync: negative WaitGroup counter"), std::string::npos) << r.describe();
}

TEST(Errors, NegativeWaitGroupCounterInGoroutine) {
  auto r = run_testprog("wg_negative_goroutine");
  expect_abort(r);
  EXPECT_EQ(r.out.find("after"), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("sync: negative WaitGroup counter"), std::string::npos) << r.describe();
  // The fatal message names the goroutine that was running.
  std::string id = capture(r.out, "id=([0-9]+)");
  std::string line = capture(r.out, "line=([0-9]+)");
  EXPECT_NE(r.err.find("goroutine " + id), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("testprog.cpp:" + line), std::string::npos) << r.describe();
}

TEST(Errors, UnlockOfUnlockedMutexOnThread) {
  auto r = run_testprog("unlock_unlocked_thread");
  expect_abort(r);
  EXPECT_NE(r.out.find("before"), std::string::npos) << r.describe();
  EXPECT_EQ(r.out.find("after"), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("sync: unlock of unlocked mutex"), std::string::npos) << r.describe();
}

TEST(Errors, UnlockOfUnlockedMutexInGoroutine) {
  auto r = run_testprog("unlock_unlocked_goroutine");
  expect_abort(r);
  EXPECT_EQ(r.out.find("after"), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("sync: unlock of unlocked mutex"), std::string::npos) << r.describe();
}

TEST(Errors, StackOverflow) {
  auto r = run_testprog("stack_overflow_named");
  expect_abort(r);
  std::string id = capture(r.out, "id=([0-9]+)");
  ASSERT_FALSE(id.empty()) << r.describe();
  EXPECT_NE(r.err.find("goroutine " + id + ": stack overflow"), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("testprog.cpp:" + capture(r.out, "line=([0-9]+)")), std::string::npos)
      << r.describe();
}

// A fault that is not a stack overflow, with no handler of the application's: the process
// still dies of SIGSEGV (core dump included), after a report naming the signal, the fault
// address, the goroutine and its creation site, and the faulting stack symbolized. The
// sanitizers install their own SIGSEGV handler, which then reports instead.
TEST(Errors, FaultInGoroutineIsReportedWithGoroutineAndStack) {
  if (goro_test::kSanitizerBuild) GTEST_SKIP() << "the sanitizer's SIGSEGV handler reports";
  auto r = run_testprog("fault_in_goroutine");
  ASSERT_TRUE(r.started) << r.err;
  EXPECT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.term_signal, SIGSEGV) << r.describe();
  std::string id = capture(r.out, "id=([0-9]+)");
  ASSERT_FALSE(id.empty()) << r.describe();
  EXPECT_TRUE(goro_test::regex_search(
      r.err, "fatal error: unexpected signal SIGSEGV \\(code [0-9]+, fault address 0x0,"))
      << r.describe();
  EXPECT_NE(r.err.find("goroutine " + id + " \"faulty\" [running]"), std::string::npos)
      << r.describe();
  EXPECT_NE(r.err.find("testprog.cpp:" + capture(r.out, "line=([0-9]+)")), std::string::npos)
      << "creation site\n"
      << r.describe();
  // The faulting function is the first frame of the stack, then its caller, the goroutine.
  const auto stack = r.err.find("faulting stack");
  ASSERT_NE(stack, std::string::npos) << r.describe();
  const auto fn = r.err.find("write_through_null", stack);
  EXPECT_NE(fn, std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("fault_in_goroutine", fn), std::string::npos) << r.describe();
}

// The report is made on the faulting goroutine's thread, in the signal handler, on that thread's
// alternate stack; symbolizing reads the executable through the hooked read and pread. With
// the goroutine free to park there (a call that sysmon handed the P off from, GOMAXPROCS 1
// and a spinner waiting for the P), it came back on another thread and its errno fix-up
// scanned from the first thread's alternate stack: a second SIGSEGV cut the report short, or
// the process hung until the report's watchdog ended it (57 of 60 runs, 4 at a time). The
// report pins the goroutine now. Four children at a time: the P handoff needs a busy machine.
TEST(Errors, FaultReportStaysOnItsThreadWhileOthersWaitForTheP) {
  if (goro_test::kSanitizerBuild) GTEST_SKIP() << "the sanitizer's SIGSEGV handler reports";
  constexpr int kParallel = 4;
  const int rounds = static_cast<int>(std::max<std::int64_t>(1, goro_test::scaled(3)));
  for (int round = 0; round < rounds; round++) {
    std::vector<goro_test::ProcResult> results(kParallel);
    std::vector<std::thread> runners;
    for (int k = 0; k < kParallel; k++) {
      runners.emplace_back(
          [&results, k] { results[k] = goro_test::run_testprog("fault_with_spinner", {}, 60); });
    }
    for (auto& t : runners) t.join();
    for (const auto& r : results) {
      ASSERT_TRUE(r.started) << r.err;
      EXPECT_EQ(r.term_signal, SIGSEGV) << r.describe();
      EXPECT_NE(r.err.find("fatal error: unexpected signal SIGSEGV"), std::string::npos)
          << r.describe();
      // The whole stack, down to the goroutine's first frame.
      EXPECT_NE(r.err.find("goroutine_entry"), std::string::npos) << r.describe();
    }
  }
}

TEST(Errors, FaultOnPlainThreadIsReported) {
  if (goro_test::kSanitizerBuild) GTEST_SKIP() << "the sanitizer's SIGSEGV handler reports";
  auto r = run_testprog("fault_on_thread");
  ASSERT_TRUE(r.started) << r.err;
  EXPECT_EQ(r.term_signal, SIGSEGV) << r.describe();
  EXPECT_NE(r.err.find("fatal error: unexpected signal SIGSEGV"), std::string::npos)
      << r.describe();
  EXPECT_NE(r.err.find("not one of the runtime's"), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("write_through_null", r.err.find("faulting stack")), std::string::npos)
      << r.describe();
}

TEST(Errors, BadGomaxprocsEnvironmentWarnsAndUsesDefault) {
  auto def = run_testprog("print_procs", {{"GOMAXPROCS", std::nullopt}});
  ASSERT_TRUE(def.exited && def.exit_code == 0) << def.describe();
  std::string want = capture(def.out, "gomaxprocs=([0-9]+)");
  ASSERT_FALSE(want.empty()) << def.describe();
  for (const char* bad : {"abc", "0", "-3", "4x", "1025", "99999999999999999999"}) {
    auto r = run_testprog("print_procs", {{"GOMAXPROCS", bad}});
    ASSERT_TRUE(r.exited) << bad << "\n" << r.describe();
    EXPECT_EQ(r.exit_code, 0) << bad << "\n" << r.describe();
    EXPECT_EQ(capture(r.out, "gomaxprocs=([0-9]+)"), want) << bad << "\n" << r.describe();
    EXPECT_NE(r.out.find("ran=1"), std::string::npos) << bad << "\n" << r.describe();
    EXPECT_NE(r.err.find("GOMAXPROCS"), std::string::npos) << bad << "\n" << r.describe();
    EXPECT_EQ(goro_test::count_occurrences(r.err, "GOMAXPROCS"), 1) << "one warning\n"
                                                                    << r.describe();
  }
}

TEST(Errors, SetGomaxprocsZeroThrows) {
  EXPECT_THROW(goro::set_gomaxprocs(0), std::invalid_argument);
  EXPECT_THROW(goro::set_gomaxprocs(-5), std::invalid_argument);
  EXPECT_THROW(goro::set_gomaxprocs(goro::max_procs() + 1), std::invalid_argument);
  EXPECT_GE(goro::gomaxprocs(), 1);
  EXPECT_THROW(goro::set_default_stack_size(1), std::invalid_argument);
}

// RLIMIT_AS cases: sanitizer runtimes reserve huge shadow regions and map memory behind every
// allocation, so a tight address-space limit breaks them before goro; they run in normal builds.
#define SKIP_UNDER_SANITIZERS()                                                       \
  do {                                                                                \
    if (goro_test::kSanitizerBuild) GTEST_SKIP() << "RLIMIT_AS vs sanitizer runtime"; \
  } while (0)

TEST(Errors, RlimitAsMakesGoThrowThenRecovers) {
  SKIP_UNDER_SANITIZERS();
  auto r = run_testprog("rlimit_as");
  ASSERT_TRUE(r.started) << r.err;
  EXPECT_TRUE(r.exited && r.exit_code == 0) << r.describe();
  EXPECT_NE(r.out.find("THREW"), std::string::npos) << r.describe();
  EXPECT_NE(r.out.find("OK"), std::string::npos) << r.describe();
}

// Binding a stack when no slab can be mapped and every free slot is in another P's cache:
// the binding M waits for that P to flush, rather than ending the process.
TEST(Errors, StackShortageWaitsForAnotherPsSlots) {
  SKIP_UNDER_SANITIZERS();
  auto r = run_testprog("stack_shortage", {{"GOMAXPROCS", "1"}});
  ASSERT_TRUE(r.started) << r.err;
  EXPECT_TRUE(r.exited && r.exit_code == 0) << r.describe();
  EXPECT_NE(r.out.find("WAITED"), std::string::npos) << "the case was not staged\n" << r.describe();
  EXPECT_NE(r.out.find("OK"), std::string::npos) << r.describe();
}

TEST(Errors, ThreadCreationFailureMakesGoThrowThenRecovers) {
  SKIP_UNDER_SANITIZERS();
  auto r = run_testprog("thread_fail", {{"GOMAXPROCS", "1"}});
  ASSERT_TRUE(r.started) << r.err;
  EXPECT_TRUE(r.exited && r.exit_code == 0) << r.describe();
  EXPECT_NE(r.out.find("THREW"), std::string::npos) << r.describe();
  EXPECT_NE(r.out.find("OK"), std::string::npos) << r.describe();
}

TEST(Errors, ThreadCreationFailureWithOneMKeepsRunning) {
  SKIP_UNDER_SANITIZERS();
  auto r = run_testprog("thread_fail_partial", {{"GOMAXPROCS", "1"}});
  ASSERT_TRUE(r.started) << r.err;
  EXPECT_TRUE(r.exited && r.exit_code == 0) << r.describe();
  EXPECT_NE(r.out.find("OK"), std::string::npos) << r.describe();
  // Failing to add an M is reported (once), not fatal.
  EXPECT_LE(goro_test::count_occurrences(r.err, "cannot create an OS thread"), 1) << r.describe();
}

}  // namespace
