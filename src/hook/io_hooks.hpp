// io_hooks.hpp - the libc I/O interposer's internal interface: what tests and diagnostics may
// ask it. The interposer itself (the extern "C" definitions of read, write, poll, close, ...)
// and its design essay are in io_hooks.cpp; the user-facing rules are docs/io.md.
//
// Not built under ThreadSanitizer (its runtime intercepts the same functions and models file
// descriptors itself): there io_hooks_built() is false and the rest is absent.
#pragma once

#include <netdb.h>

#include <cstdint>

namespace goro::internal {

// How the interposer sees a file descriptor (see "The fd table" in io_hooks.cpp).
enum class HookFdKind : std::uint8_t {
  kUnmanaged = 0,  // not in the table: every call goes to libc (from goroutines via blocking())
  kCandidate = 1,  // created by a hooked socket/pipe/accept/dup; the kernel's O_NONBLOCK is the
                   // user's; a goroutine adopts it at its first call that may wait
  kAdopted = 2,    // the kernel fd is O_NONBLOCK (set by the runtime); the user's flag is kept
                   // in the table; goroutines park in the poller, plain threads wait on it
  kPollOnly = 3,   // a user's epoll fd a goroutine waited on in epoll_wait
};

// Counters since start-up (relaxed; monotonic).
struct HookStats {
  std::uint64_t parks;         // poll_wait calls made by hooked calls (goroutines and threads)
  std::uint64_t handoffs;      // hooked calls run inside goro::blocking (unmanaged fds, resolver)
  std::uint64_t adoptions;     // candidate fds switched to O_NONBLOCK
  std::uint64_t errno_fixups;  // calls that resumed on another thread and rewrote &errno
};

#if !defined(GORO_TSAN)
inline constexpr bool io_hooks_built() {
  return true;
}

// Whether the hooks are active (false under GORO_HOOK=0 and in a child after fork()).
bool hook_enabled() noexcept;
// The table's view of fd.
HookFdKind hook_fd_kind(int fd) noexcept;
// The user's O_NONBLOCK as the table records it (false for unmanaged fds).
bool hook_fd_user_nonblock(int fd) noexcept;
HookStats hook_stats() noexcept;

// Tests: turns the rewrite of cached errno addresses after a migration on or off (on by
// default), to show that it is what makes errno right. Returns the previous setting.
bool hook_set_errno_fixup(bool on) noexcept;

// Tests: replaces the getaddrinfo the hook runs (null restores libc's).
using GetaddrinfoFn = int (*)(const char*, const char*, const addrinfo*, addrinfo**);
void hook_set_getaddrinfo_for_test(GetaddrinfoFn f) noexcept;
#else
inline constexpr bool io_hooks_built() {
  return false;
}
#endif

}  // namespace goro::internal
