// goro/go.hpp - starting goroutines (Go's `go` statement).
//
//   goro::go([] { work(); });                       // like `go work()`
//   goro::go(handle, std::move(conn), 42);          // arguments are moved in
//   goro::go({.stack_size = 1 << 20, .name = "acceptor"}, serve, listener);
//
// A goroutine is a function running on its own small stack, scheduled M:N onto OS threads by
// the runtime. Its stack is reserved virtually (default_stack_size(), 256 KiB unless changed)
// and committed page by page as it is touched; an overflow into the guard page below it ends
// the process with "goroutine N: stack overflow" and the goroutine's creation site. Code that
// runs in goroutines should be compiled with -fstack-clash-protection (linking the goro::goro
// CMake target adds it), so that a frame larger than a page cannot step over the guard page.
//
// Errors: an exception escaping a goroutine's function ends the process, like a Go panic,
// with a message naming the goroutine, its creation site and the exception's what().
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <new>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "goro/export.hpp"

namespace goro {

/// A source position, like std::source_location (which clang 14 cannot provide with
/// libstdc++): current() records where it is called, or, as a default member initializer,
/// where the enclosing aggregate is initialized.
struct SourceLocation {
  static constexpr SourceLocation current(const char* file = __builtin_FILE(),
                                          const char* function = __builtin_FUNCTION(),
                                          std::uint32_t line = __builtin_LINE()) noexcept {
    SourceLocation s;
    s.file_ = file;
    s.function_ = function;
    s.line_ = line;
    return s;
  }
  constexpr const char* file_name() const noexcept { return file_; }
  constexpr const char* function_name() const noexcept { return function_; }
  constexpr std::uint32_t line() const noexcept { return line_; }

 private:
  const char* file_ = "";
  const char* function_ = "";
  std::uint32_t line_ = 0;
};

/// Per-goroutine options for go(GoOptions, f, args...). Designed for designated initializers.
struct GoOptions {
  /// Stack reservation in bytes; 0 means default_stack_size(). Rounded up to whole pages; must
  /// be within [16 KiB, 1 GiB] or go() throws std::invalid_argument. Stacks of a non-default
  /// size are mapped for this goroutine alone and unmapped when it returns (not pooled).
  std::size_t stack_size = 0;
  /// A name shown in goroutine dumps and fatal messages; copied (at most 31 bytes kept).
  std::string_view name = {};
  /// The creation site reported in dumps and fatal messages; defaults to where the GoOptions
  /// object was written, which is the go() call in the usual `go({...}, f)` form.
  SourceLocation where = SourceLocation::current();
};

namespace internal {

struct G;

/// Where a goroutine was started: a call-site return address (always) and, when the caller
/// passed GoOptions, the source location.
struct SpawnSite {
  const void* pc = nullptr;
  const char* file = nullptr;
  const char* function = nullptr;
  std::uint32_t line = 0;
};

/// Allocates a goroutine with room for a closure of `size` bytes aligned to `align`, stored in
/// *closure. The goroutine does not run until newproc_start. `opts` may be null. Throws
/// std::system_error if no stack can be mapped, std::invalid_argument for a bad stack size.
/// When site.pc is null the caller's return address is recorded.
GORO_API G* newproc_alloc(const GoOptions* opts, std::size_t size, std::size_t align,
                          void** closure, SpawnSite site);

/// Releases a goroutine from newproc_alloc that will not be started (its closure was never
/// constructed, or the constructor threw).
GORO_API void newproc_abort(G* g) noexcept;

/// Makes g runnable; `run` executes and destroys the closure, `destroy` only destroys it. If no
/// OS thread can be created to run it, destroys the closure, frees g and throws
/// std::system_error. Returns the goroutine's id.
GORO_API std::uint64_t newproc_start(G* g, void (*run)(void*), void (*destroy)(void*));

template <class Tuple>
void run_closure(void* p) {
  auto* t = static_cast<Tuple*>(p);
  struct Destroy {
    Tuple* t;
    ~Destroy() { t->~Tuple(); }
  } d{t};
  std::apply([](auto& f, auto&... args) { std::invoke(std::move(f), std::move(args)...); }, *t);
}

template <class Tuple>
void destroy_closure(void* p) {
  static_cast<Tuple*>(p)->~Tuple();
}

template <class F, class... Args>
[[gnu::always_inline]] inline std::uint64_t spawn(const GoOptions* opts, SpawnSite site, F&& f,
                                                  Args&&... args) {
  using Tuple = std::tuple<std::decay_t<F>, std::decay_t<Args>...>;
  void* mem = nullptr;
  G* g = newproc_alloc(opts, sizeof(Tuple), alignof(Tuple), &mem, site);
  try {
    ::new (mem) Tuple(std::forward<F>(f), std::forward<Args>(args)...);
  } catch (...) {
    newproc_abort(g);
    throw;
  }
  return newproc_start(g, &run_closure<Tuple>, &destroy_closure<Tuple>);
}

}  // namespace internal

/// Starts f(args...) in a new goroutine and returns its id (see this_goroutine::id()). f and
/// args are decay-copied (moved when passed as rvalues) into the goroutine, as std::thread does;
/// use std::ref to share. Callable from goroutines and plain threads; never blocks on other
/// goroutines. Cost: no system call when a cached stack is available (the common case).
/// Throws std::system_error when no stack can be mapped or no OS thread can be created to run
/// it (the goroutine then never runs, the runtime keeps working), and whatever copying or
/// moving f and args throws.
template <class F, class... Args>
requires std::invocable<std::decay_t<F>, std::decay_t<Args>...>
[[gnu::always_inline]] inline std::uint64_t go(F&& f, Args&&... args) {
  return internal::spawn(nullptr, internal::SpawnSite{}, std::forward<F>(f),
                         std::forward<Args>(args)...);
}

/// Like go(f, args...) with per-goroutine options (stack size, name, creation site). Also
/// throws std::invalid_argument when opts.stack_size is outside [16 KiB, 1 GiB].
template <class F, class... Args>
requires std::invocable<std::decay_t<F>, std::decay_t<Args>...>
[[gnu::always_inline]] inline std::uint64_t go(const GoOptions& opts, F&& f, Args&&... args) {
  return internal::spawn(&opts,
                         internal::SpawnSite{nullptr, opts.where.file_name(),
                                             opts.where.function_name(), opts.where.line()},
                         std::forward<F>(f), std::forward<Args>(args)...);
}

}  // namespace goro
