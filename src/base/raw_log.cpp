// raw_log.cpp - allocation-free, lock-free diagnostics (see raw_log.hpp).
#include "base/raw_log.hpp"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "sched/proc.hpp"

namespace goro::internal {

RawBuf& RawBuf::str(std::string_view s) noexcept {
  std::size_t k = s.size() < sizeof(buf_) - n_ ? s.size() : sizeof(buf_) - n_;
  std::memcpy(buf_ + n_, s.data(), k);
  n_ += k;
  return *this;
}

RawBuf& RawBuf::udec(std::uint64_t v) noexcept {
  char tmp[24];
  std::size_t i = sizeof(tmp);
  do {
    tmp[--i] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  return str({tmp + i, sizeof(tmp) - i});
}

RawBuf& RawBuf::dec(std::int64_t v) noexcept {
  if (v < 0) {
    str("-");
    return udec(~static_cast<std::uint64_t>(v) + 1);
  }
  return udec(static_cast<std::uint64_t>(v));
}

RawBuf& RawBuf::hex(std::uint64_t v) noexcept {
  char tmp[16];
  std::size_t i = sizeof(tmp);
  do {
    tmp[--i] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v != 0);
  return str({tmp + i, sizeof(tmp) - i});
}

void RawBuf::flush() noexcept {
  std::size_t off = 0;
  while (off < n_) {
    ssize_t w = ::write(2, buf_ + off, n_ - off);
    if (w <= 0) break;
    off += static_cast<std::size_t>(w);
  }
  n_ = 0;
}

void warn(std::string_view msg) noexcept {
  RawBuf b;
  b.str("goro: ").str(msg).str("\n").flush();
}

void die() noexcept {
  // Restore the default action so abort() really ends the process even if the application
  // installed a SIGABRT handler that returns.
  ::signal(SIGABRT, SIG_DFL);
  std::abort();
}

void fatal(std::string_view msg) noexcept {
  RawBuf b;
  b.str("fatal error: ").str(msg).str("\n").flush();
  print_current_goroutine_context();
  die();
}

}  // namespace goro::internal
