// goro/testing.hpp - checking that a test leaves no goroutines behind (like uber-go/goleak's
// VerifyNone), for GoogleTest or any other framework.
//
//   #include <gtest/gtest.h>        // first: enables the GoogleTest helpers below
//   #include <goro/testing.hpp>
//
//   TEST(Server, Shutdown) {
//     ...
//     goro::testing::expect_no_goroutines_left();                 // a non-fatal failure
//   }
//   void TearDown() override {
//     goro::testing::expect_no_goroutines_left({.ignore_name_prefix = {"metrics"}});
//   }
//
// goroutines_left() waits up to a grace period for the goroutines that still exist to end,
// then returns a report of those left: each with its goroutine-dump block (state, stack,
// creation site; see goro/debug.hpp), and, when leak tracking is on, the leak finder's verdict
// ("<- leaked: ...") next to those that can never be woken. Known background goroutines are
// excluded with the ignore options. The library itself does not depend on GoogleTest: the
// GoogleTest helpers are inline functions compiled only where <gtest/gtest.h> was included
// before this header.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "goro/export.hpp"

namespace goro::testing {

/// What goroutines_left waits for and which goroutines it ignores. The calling goroutine is
/// always ignored. A goroutine is ignored if any one option matches it.
struct LeftOptions {
  /// How long to wait for goroutines to end before reporting those left. It polls, so a test
  /// whose goroutines end quickly waits about as long as they take.
  std::chrono::milliseconds grace{1000};
  /// Goroutines whose GoOptions::name starts with one of these.
  std::vector<std::string> ignore_name_prefix = {};
  /// Goroutines whose "created by" lines (the spawning function, then file:line) contain one
  /// of these.
  std::vector<std::string> ignore_created_by = {};
  /// Goroutines with one of these in a frame of their stack (function names, file:line).
  std::vector<std::string> ignore_in_stack = {};
  /// Goroutines with these ids (e.g. current_goroutines() taken before the test: goleak's
  /// IgnoreCurrent).
  std::vector<std::uint64_t> ignore_ids = {};
};

/// The ids of the goroutines that exist now (the caller's included, if it is one).
/// Takes a goroutine dump: milliseconds. Throws std::bad_alloc.
GORO_API std::vector<std::uint64_t> current_goroutines();

/// Waits up to options.grace for every goroutine not ignored to end. Returns an empty string if
/// they did, otherwise "N goroutine(s) still running after G ms:" followed by the dump block of
/// each (see above). Callable from goroutines and plain threads; a goroutine calling it is
/// ignored. Blocking: sleeps (the thread; it never parks) while it waits, polling
/// num_goroutine() (and, with ignore options, a goroutine dump every few tens of ms).
/// Cost: a goroutine dump when it cannot return at once; find_leaks when it reports with leak
/// tracking on. Throws std::bad_alloc. Thread-safe.
GORO_API std::string goroutines_left(const LeftOptions& options = {});

}  // namespace goro::testing

#if defined(ADD_FAILURE_AT)  // <gtest/gtest.h> was included before this header

namespace goro::testing {

/// goroutines_left(options) as a GoogleTest assertion result:
///   EXPECT_TRUE(goro::testing::no_goroutines_left());
inline ::testing::AssertionResult no_goroutines_left(const LeftOptions& options = {}) {
  std::string left = goroutines_left(options);
  if (left.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << left;
}

/// Adds a non-fatal GoogleTest failure, located at the caller, listing the goroutines left
/// after the grace period (goroutines_left). Same blocking, cost and errors.
inline void expect_no_goroutines_left(const LeftOptions& options = {},
                                      const char* file = __builtin_FILE(),
                                      int line = __builtin_LINE()) {
  std::string left = goroutines_left(options);
  if (!left.empty()) ADD_FAILURE_AT(file, line) << left;
}

}  // namespace goro::testing

#endif
