// goro/group.hpp - Group, a set of goroutines waited for together (golang.org/x/sync/errgroup).
//
//   goro::Group g(8);                         // at most 8 of its goroutines run at once
//   for (auto& url : urls) g.go(fetch, url);  // parks while 8 are running
//   g.wait();                                 // rethrows the first exception any of them threw
//
// With a context, the first failure cancels the others (errgroup.WithContext):
//
//   goro::Group g(ctx);                       // g.context() is a child of ctx
//   for (auto& url : urls) g.go([&g, url] { fetch(g.context(), url); });
//   g.wait();                                 // the first throw canceled g.context()
#pragma once

#include <atomic>
#include <concepts>
#include <cstdint>
#include <exception>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

#include "goro/context.hpp"
#include "goro/export.hpp"
#include "goro/go.hpp"

namespace goro {

/// Runs functions in goroutines and waits for all of them, like errgroup.Group, with C++
/// exceptions in the role of Go's errors: an exception thrown by a function is caught in its
/// goroutine (it never reaches the runtime, which would end the process) and the first one is
/// rethrown by wait(). Optionally bounds how many of its goroutines run at once. Usable from
/// goroutines and plain threads, mixed. Thread-safe; not copyable or movable.
///
/// Blocking: go() parks a goroutine (blocks a plain thread) while the limit is reached; callers
/// blocked there are served in FIFO order as the group's goroutines finish. wait() parks
/// (blocks) until none of the group's goroutines runs or waits to start. As with errgroup,
/// goroutines of a limited group that call go() on their own group can deadlock once all
/// slots are held by such callers.
///
/// Errors: the limit must be positive or negative (none); 0 throws std::invalid_argument (every
/// go() would block forever; errgroup deadlocks instead). Changing the limit while goroutines
/// of the group are running is fatal, like errgroup's panic: "errgroup: modify limit while N
/// goroutines in the group are still active".
///
/// Memory ordering: everything a goroutine of the group did happens-before the return of (or
/// the exception from) the wait() that waited for it; a go() call happens-before its function
/// starts.
class GORO_API Group {
 public:
  /// A group with no limit.
  Group() noexcept = default;
  /// A group running at most `limit` goroutines at once (set_limit(limit)).
  explicit Group(int limit) { set_limit(limit); }
  /// A group with a context (errgroup.WithContext): context() is a child of `parent` that is
  /// canceled (ContextErr::kCanceled) the first time a function of the group throws, and when
  /// wait() returns or throws, whichever comes first; it also ends when parent does. The
  /// goroutines see it through context() (or a copy taken before they start) and should stop
  /// when it is done. limit as set_limit (negative: none). Throws std::bad_alloc, and
  /// std::invalid_argument for limit 0.
  explicit Group(const Context& parent, int limit = -1);
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;
  /// Waits for the group's goroutines still running (like std::jthread, so that none outlives
  /// the Group it refers to) and drops an exception wait() did not report. Destroying a Group
  /// from one of its own goroutines deadlocks.
  ~Group();

  /// Starts f(args...) in a new goroutine of the group (see goro::go: f and args are
  /// decay-copied, moved when rvalues). Parks (blocks) first while `limit` goroutines of the
  /// group run. An exception thrown by f, or by moving f and args into its frame, is captured:
  /// the first one (in the order the goroutines finish) is kept for wait(), later ones are
  /// dropped. f and its arguments are destroyed before the goroutine counts as finished.
  /// Throws what goro::go throws (std::system_error when no goroutine can be started; the group
  /// is then unchanged) and what copying f and args throws.
  template <class F, class... Args>
  requires std::invocable<std::decay_t<F>, std::decay_t<Args>...>
  void go(F&& f, Args&&... args) {
    start(true);
    launch(std::forward<F>(f), std::forward<Args>(args)...);
  }

  /// Like go(), but if the limit is reached (or other go() calls are waiting for a slot)
  /// returns false at once without starting anything. Returns true when it started f.
  template <class F, class... Args>
  requires std::invocable<std::decay_t<F>, std::decay_t<Args>...>
  bool try_go(F&& f, Args&&... args) {
    if (!start(false)) return false;
    launch(std::forward<F>(f), std::forward<Args>(args)...);
    return true;
  }

  /// Waits until no goroutine of the group runs or waits to start, then rethrows the first
  /// exception any of them threw (its original type; the same exception again on every later
  /// wait(), as errgroup keeps its error). Returns normally if none threw. The group may be
  /// reused afterwards.
  void wait();

  /// Limits the number of the group's goroutines running at once to n; n < 0 removes the
  /// limit. Only while none of the group's goroutines is running (fatal otherwise). Throws
  /// std::invalid_argument if n == 0.
  void set_limit(int n);

  /// The group's context: the child made by Group(parent, limit), or the background context
  /// (never canceled) for a group made without one. The reference stays valid for the
  /// group's life; Context handles are cheap to copy. Thread-safe.
  const Context& context() const noexcept { return ctx_; }

 private:
  // Reserves a slot: waits for one (block) or fails (!block) while the limit is reached.
  bool start(bool block);
  // Gives the slot back (handing it to the first blocked go()), records e if it is the
  // group's first exception, and readies wait() callers when the group becomes idle.
  void finish(std::exception_ptr e) noexcept;
  // Waits for the group to become idle and returns its first exception.
  std::exception_ptr wait_idle() noexcept;

  template <class F, class... Args>
  void launch(F&& f, Args&&... args) {
    try {
      goro::go(
          [this](auto&& fn, auto&&... as) noexcept {
            std::exception_ptr e;
            try {
              // Own f and args in this frame so they die before finish(): a waiter may
              // destroy what their destructors touch as soon as wait() returns.
              std::decay_t<decltype(fn)> own_f(std::move(fn));
              std::tuple<std::decay_t<decltype(as)>...> own_args(std::move(as)...);
              std::apply([&own_f](auto&... a) { std::invoke(std::move(own_f), std::move(a)...); },
                         own_args);
            } catch (...) {
              e = std::current_exception();
            }
            finish(std::move(e));
          },
          std::forward<F>(f), std::forward<Args>(args)...);
    } catch (...) {
      finish(nullptr);  // the goroutine never started: give its slot back
      throw;
    }
  }

  std::atomic<std::uint32_t> lock_{0};  // a futex lock guarding everything below
  std::int64_t active_ = 0;             // goroutines started (or reserved) and not finished
  std::int64_t limit_ = -1;             // < 0: no limit
  void* go_head_ = nullptr;             // FIFO of go() calls waiting for a slot
  void* go_tail_ = nullptr;
  void* idle_waiters_ = nullptr;  // wait() calls waiting for active_ == 0
  std::exception_ptr err_;        // the first exception
  Context ctx_;                   // immutable after construction
  CancelFunc cancel_;             // cancels ctx_ (empty without a parent)
};

}  // namespace goro
