// raw_log.hpp - diagnostics that are safe inside the runtime.
//
// The runtime cannot use iostreams or printf on its own paths: they lock, allocate, and may
// park (a goroutine-aware stream would re-enter the scheduler). These functions format into a
// stack buffer and write(2) to stderr directly. print/warn/fatal never allocate and never take
// a lock, so they may be called from signal handlers and with runtime locks held.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace goro::internal {

// A fixed-size text buffer with printf-free formatting; flush() writes it to stderr in one
// write(2), so concurrent messages do not interleave within a line.
class RawBuf {
 public:
  RawBuf& str(std::string_view s) noexcept;
  RawBuf& dec(std::int64_t v) noexcept;
  RawBuf& udec(std::uint64_t v) noexcept;
  RawBuf& hex(std::uint64_t v) noexcept;
  RawBuf& ptr(const void* p) noexcept { return str("0x").hex(reinterpret_cast<std::uintptr_t>(p)); }
  void flush() noexcept;
  std::string_view view() const noexcept { return {buf_, n_}; }

 private:
  char buf_[1024];
  std::size_t n_ = 0;
};

// Writes "goro: <msg>\n" to stderr.
void warn(std::string_view msg) noexcept;

// Writes "fatal error: <msg>\n" to stderr, then the goroutine context if any, and aborts.
// Used for broken invariants and misuse that cannot be recovered (Go's throw/fatal).
[[noreturn]] void fatal(std::string_view msg) noexcept;

// Aborts without running atexit handlers or destructors (after a message was printed).
[[noreturn]] void die() noexcept;

}  // namespace goro::internal
