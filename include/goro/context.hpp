// goro/context.hpp - cancellation and deadlines (Go's package context), composed with C++20's
// std::stop_token.
//
//   auto [ctx, cancel] = goro::with_timeout(goro::background(), std::chrono::seconds(2));
//   goro::go([ctx = ctx] {
//     for (;;) {
//       int i = goro::select(goro::on_recv(ctx.done()), goro::on_recv(work, ...));
//       if (i == 0) return;           // canceled or deadline exceeded: ctx.err() says which
//     }
//   });
//   ...
//   cancel();                         // idempotent; also runs when the deadline passes
//
// A Context is a cheap, copyable, immutable handle to a node in a tree: canceling a context
// cancels every context derived from it, never its parent. Canceling closes done() (so it
// works as a select case and wakes every waiter), requests stop on stop_token(), records err()
// and stops the deadline timer. Everything here is thread-safe and callable from goroutines and
// plain threads; nothing blocks except waiting on done() itself.
//
// Memory ordering: a cancel happens-before every observation of it (done() closed, err() not
// kNone, stop_requested()).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <stop_token>
#include <utility>
#include <variant>

#include "goro/chan.hpp"
#include "goro/export.hpp"

namespace goro {

/// Why a context ended.
enum class ContextErr {
  kNone = 0,          // not canceled (yet)
  kCanceled,          // its cancel function (or a parent's) was called, or its stop token fired
  kDeadlineExceeded,  // its deadline (or a parent's) passed
};

/// "context canceled", "context deadline exceeded" or "" (Go's error strings).
GORO_API const char* to_string(ContextErr e) noexcept;

namespace internal {
struct ContextState;
}

/// A cancellation scope. See the top of this header.
class GORO_API Context {
 public:
  /// The background context: never canceled, no deadline; done() is a nil channel.
  Context() = default;

  /// A channel that is closed when the context is canceled; nil (never ready) for contexts
  /// that can never be canceled. Receive on it, or use it in select.
  const Chan<std::monostate>& done() const noexcept;
  /// kNone while not canceled; then why it ended. Never changes once set.
  ContextErr err() const noexcept;
  /// Whether err() != kNone.
  bool canceled() const noexcept { return err() != ContextErr::kNone; }
  /// The earliest deadline of this context and its ancestors, if any.
  std::optional<std::chrono::steady_clock::time_point> deadline() const noexcept;
  /// A std::stop_token that is stop-requested when this context is canceled (a token that can
  /// never be stopped for the background context), for code written against <stop_token>.
  std::stop_token stop_token() const noexcept;

 private:
  friend class CancelFunc;
  friend GORO_API std::pair<Context, class CancelFunc> with_cancel(const Context& parent);
  friend GORO_API std::pair<Context, class CancelFunc> with_deadline(
      const Context& parent, std::chrono::steady_clock::time_point deadline);
  friend GORO_API std::pair<Context, class CancelFunc> with_stop_token(const Context& parent,
                                                                       std::stop_token token);
  explicit Context(std::shared_ptr<internal::ContextState> s) noexcept : s_(std::move(s)) {}
  std::shared_ptr<internal::ContextState> s_;
};

/// Cancels the context it came with (and everything derived from it) with kCanceled.
/// Idempotent; calling it after the context ended does nothing. Copyable; thread-safe.
/// Releasing the last CancelFunc does not cancel (unlike Go, nothing leaks if it is dropped:
/// the context is freed with its last handle).
class GORO_API CancelFunc {
 public:
  CancelFunc() = default;
  void operator()() const noexcept;

 private:
  friend GORO_API std::pair<Context, CancelFunc> with_cancel(const Context& parent);
  friend GORO_API std::pair<Context, CancelFunc> with_deadline(
      const Context& parent, std::chrono::steady_clock::time_point deadline);
  friend GORO_API std::pair<Context, CancelFunc> with_stop_token(const Context& parent,
                                                                 std::stop_token token);
  explicit CancelFunc(std::shared_ptr<internal::ContextState> s) noexcept : s_(std::move(s)) {}
  std::shared_ptr<internal::ContextState> s_;
};

/// The root of every context tree (same as Context{}).
inline Context background() noexcept {
  return Context{};
}

/// A child of parent that is canceled by the returned CancelFunc or when parent is. Throws
/// std::bad_alloc.
GORO_API std::pair<Context, CancelFunc> with_cancel(const Context& parent);

/// A child of parent that also ends with kDeadlineExceeded at `deadline` (at once if it is
/// past). The effective deadline is the earlier of it and parent's. Throws std::bad_alloc.
GORO_API std::pair<Context, CancelFunc> with_deadline(
    const Context& parent, std::chrono::steady_clock::time_point deadline);

/// with_deadline(parent, now + timeout).
template <class Rep, class Period>
std::pair<Context, CancelFunc> with_timeout(const Context& parent,
                                            std::chrono::duration<Rep, Period> timeout) {
  return with_deadline(parent, std::chrono::steady_clock::now() +
                                   std::chrono::ceil<std::chrono::steady_clock::duration>(timeout));
}

/// A child of parent that is also canceled (kCanceled) when `token` gets a stop request, so a
/// std::jthread's or std::stop_source's stop reaches goroutines waiting on done().
GORO_API std::pair<Context, CancelFunc> with_stop_token(const Context& parent,
                                                        std::stop_token token);

}  // namespace goro
