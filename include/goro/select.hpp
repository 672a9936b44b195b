// goro/select.hpp - waiting on several channel operations at once (Go's select).
//
//   int i = goro::select(
//       goro::on_recv(jobs, [&](std::optional<Job> j) { if (j) run(*j); }),
//       goro::on_send(results, std::move(r), [&] { sent++; }),
//       goro::on_timeout(std::chrono::milliseconds(100), [&] { log("idle"); }));
//
//   // Non-blocking, like a select with a default clause:
//   goro::select(goro::on_recv(ch, [&](std::optional<int> v) { ... }),
//                goro::on_default([&] { ... }));
//
// select() waits until one case can proceed, performs exactly that one operation, runs its
// handler (if given) and returns the case's index (0-based, in argument order). When several
// cases are ready, one is chosen uniformly at random (Go's fairness). Cases:
//   on_recv(ch [, f])      receives; f(std::optional<T>) gets std::nullopt if ch is closed
//                          and drained (a handler taking no arguments is also accepted)
//   on_send(ch, v [, f])   sends v (moved in); f() runs after
//   on_timeout(d [, f])    fires when d has elapsed since select() was called
//   on_deadline(tp [, f])  fires at steady_clock time tp
//   on_default([f])        at most one; makes select() non-blocking: chosen when no other case
//                          is ready at once
// A case on a nil channel never fires; select() with no case that can ever fire blocks forever
// (like Go's select {}). A goroutine parks while waiting, a plain thread blocks; both may mix.
//
// Errors: a chosen send case whose channel is closed (or is closed while select waits) throws
// goro::ChanClosed; exceptions from a handler propagate after the operation is complete.
//
// Memory ordering: as the individual operations (see goro/chan.hpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>

#include "goro/chan.hpp"
#include "goro/export.hpp"

namespace goro {

namespace internal {

enum class CaseKind : std::uint8_t { kRecv, kSend, kDeadline, kDefault };

struct SelectCase {
  ChanCore* c = nullptr;
  void* elem = nullptr;       // send: the value to move from; recv: storage to construct into
  std::int64_t deadline = 0;  // kDeadline: steady_clock nanoseconds
  CaseKind kind = CaseKind::kDefault;
  bool ok = false;  // recv: a value was received (false: closed)
};

// Performs one ready case. block=false: returns -1 if none is ready. Throws ChanClosed.
GORO_API int select_impl(SelectCase* cases, int n, bool block);

struct NoHandler {};

template <class T, class F>
struct RecvCase {
  ChanCore* c;
  F f;
  alignas(T) unsigned char buf[sizeof(T)];
  void fill(SelectCase& s) {
    s.c = c;
    s.elem = buf;
    s.kind = CaseKind::kRecv;
  }
  void fire(const SelectCase& s) {
    std::optional<T> v;
    if (s.ok) {
      T* p = std::launder(reinterpret_cast<T*>(buf));
      v.emplace(std::move(*p));
      p->~T();
    }
    if constexpr (std::is_invocable_v<F&, std::optional<T>>) {
      f(std::move(v));
    } else if constexpr (!std::is_same_v<F, NoHandler>) {
      f();
    }
  }
};

template <class T, class F>
struct SendCase {
  ChanCore* c;
  T v;
  F f;
  void fill(SelectCase& s) {
    s.c = c;
    s.elem = &v;
    s.kind = CaseKind::kSend;
  }
  void fire(const SelectCase&) {
    if constexpr (!std::is_same_v<F, NoHandler>) f();
  }
};

template <class F>
struct DeadlineCase {
  std::int64_t deadline;
  F f;
  void fill(SelectCase& s) {
    s.deadline = deadline;
    s.kind = CaseKind::kDeadline;
  }
  void fire(const SelectCase&) {
    if constexpr (!std::is_same_v<F, NoHandler>) f();
  }
};

template <class F>
struct DefaultCase {
  F f;
  void fill(SelectCase& s) { s.kind = CaseKind::kDefault; }
  void fire(const SelectCase&) {
    if constexpr (!std::is_same_v<F, NoHandler>) f();
  }
};

template <class C>
struct IsDefault : std::false_type {};
template <class F>
struct IsDefault<DefaultCase<F>> : std::true_type {};

inline std::int64_t to_ns(std::chrono::steady_clock::time_point tp) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(tp.time_since_epoch()).count();
}

}  // namespace internal

/// A receive case on ch; f(std::optional<T>) (or f()) runs if it is chosen.
template <class T, class F = internal::NoHandler>
internal::RecvCase<T, std::decay_t<F>> on_recv(const Chan<T>& ch, F&& f = {}) {
  return {ch.core(), std::forward<F>(f), {}};
}

/// A send case of v on ch; f() runs if it is chosen.
template <class T, class V, class F = internal::NoHandler>
requires std::is_constructible_v<T, V&&> internal::SendCase<T, std::decay_t<F>> on_send(
    const Chan<T>& ch, V&& v, F&& f = {}) {
  return {ch.core(), T(std::forward<V>(v)), std::forward<F>(f)};
}

/// A case that fires at `deadline`; f() runs if it is chosen.
template <class F = internal::NoHandler>
internal::DeadlineCase<std::decay_t<F>> on_deadline(std::chrono::steady_clock::time_point deadline,
                                                    F&& f = {}) {
  return {internal::to_ns(deadline), std::forward<F>(f)};
}

/// A case that fires when d has elapsed (measured from this call); f() runs if it is chosen.
template <class Rep, class Period, class F = internal::NoHandler>
internal::DeadlineCase<std::decay_t<F>> on_timeout(std::chrono::duration<Rep, Period> d,
                                                   F&& f = {}) {
  auto tp =
      std::chrono::steady_clock::now() + std::chrono::ceil<std::chrono::steady_clock::duration>(d);
  return {internal::to_ns(tp), std::forward<F>(f)};
}

/// The default case: makes select() non-blocking.
template <class F = internal::NoHandler>
internal::DefaultCase<std::decay_t<F>> on_default(F&& f = {}) {
  return {std::forward<F>(f)};
}

/// Waits for one of the cases, performs it, runs its handler, returns its index. See the top
/// of this header for the rules.
template <class... Cases>
int select(Cases&&... cases) {
  constexpr int n = sizeof...(Cases);
  constexpr int ndefault = (0 + ... + (internal::IsDefault<std::decay_t<Cases>>::value ? 1 : 0));
  static_assert(ndefault <= 1, "goro::select: at most one on_default case");
  internal::SelectCase sc[n > 0 ? n : 1];
  int i = 0;
  ((cases.fill(sc[i++])), ...);
  int chosen = internal::select_impl(sc, n, ndefault == 0);
  if (chosen < 0) {
    i = 0;
    ((internal::IsDefault<std::decay_t<Cases>>::value ? (chosen = i, 0) : 0, i++), ...);
  }
  i = 0;
  ((i++ == chosen ? (cases.fire(sc[chosen]), 0) : 0), ...);
  return chosen;
}

}  // namespace goro
