// goro/debug.hpp - goroutine dumps: every goroutine with its state and a symbolized stack
// trace, like Go's goroutine profile (pprof debug=1 and debug=2) and SIGQUIT traceback.
//
//   goro::debug::write_goroutines(std::cerr, goro::debug::Detail::kFull);
//   std::string grouped = goro::debug::goroutines(goro::debug::Detail::kGrouped);
//
// The dump is taken without stopping the world: goroutines keep running while it is written.
// Each parked goroutine's stack is unwound from the registers it saved when it switched out,
// over a private copy of its stack that is checked afterwards to be consistent (the goroutine
// did not run meanwhile), so a parked goroutine's trace is exact (a runnable one, switched out
// by a yield or a preemption, is shown the same way, best effort). A goroutine running on
// another OS thread is shown as running, without a stack; the calling goroutine shows its own
// stack. Frames are symbolized with elfutils (libdw): demangled C++ names, file:line, and
// inlined calls as frames of their own. Code built without -g shows function names and
// offsets only. Frames of the runtime's own internals (goro::internal, the context switch,
// the goroutine entry) are left out of the trace unless GORO_TRACEBACK=system.
//
// Format of Detail::kFull (Go's debug=2 and SIGQUIT form), one block per goroutine, the
// calling goroutine first, then by id; each block ends with an empty line:
//
//   goroutine 18 "worker" [chan receive, 2 minutes]:
//   goro::Chan<int>::recv() const
//   	/src/include/goro/chan.hpp:123
//   consume(goro::Chan<int>)
//   	/src/app/main.cpp:45 +0x2f
//   created by main
//   	/src/app/main.cpp:60
//
//  * Header: "goroutine <id>", then " \"<name>\"" if it was given GoOptions::name, then
//    " [<state>]:" where state is "running", "runnable", or the wait reason of a parked
//    goroutine ("chan receive", "chan send", "select", "sync.Mutex.Lock",
//    "sync.WaitGroup.Wait", "sleep", "semacquire", ...), followed by ", <n> minutes" when it
//    has been parked for at least one minute (as Go shows it).
//  * Frames, innermost first: the function on one line, "\t<file>:<line>" on the next, or
//    "\t<ELF object>" without line information, or "\t??". A frame that is not inlined ends
//    with " +0x<offset>": the return address (the exact pc for the first frame of the calling
//    goroutine) minus the start of its function. Frames inlined into a caller have no offset
//    and are followed by that caller's frame. At most 100 frames; a deeper stack ends with
//    "...additional frames elided...".
//  * A goroutine running on another thread has, instead of frames, the line
//    "\tgoroutine running on other thread; stack unavailable"; one whose stack could not be
//    read consistently (it kept running while the dump looked) "\tstack unavailable".
//    A runnable goroutine that has not started yet shows its entry function.
//  * "created by <function>" and "\t<file>:<line>" of the go() call that started it: the
//    file:line given by GoOptions::where when go() got options, otherwise the call site found
//    by symbolizing the return address recorded by go().
//
// Format of Detail::kGrouped (pprof's debug=1 form): goroutines with identical stacks are
// counted together, groups in descending order of count:
//
//   goroutine profile: total 103
//   100 @ 0x55d0c8a1b2c3 0x55d0c8a1b456 0x55d0c8a1c789
//   #	0x55d0c8a1b455	consume(goro::Chan<int>)+0x2e	/src/app/main.cpp:45
//   <empty line>
//
//  * "<count> @" then every return address of the stack (all frames, runtime internals too).
//  * One "#\t<pc>\t<function>+0x<offset>\t<file>:<line>" line per frame, with inlined frames
//    expanded; pc is the return address minus one (the call instruction), as in pprof.
//    Without line information the last field is the ELF object. Runtime internals are left
//    out as in Detail::kFull.
//  * Goroutines without a readable stack form groups of their own, with the line
//    "#\tgoroutine running on other thread; stack unavailable" or "#\tstack unavailable".
//
// SIGQUIT: when the runtime starts, it installs a SIGQUIT handler (unless the environment has
// GORO_SIGQUIT=0, or the application already installed a handler for SIGQUIT or ignores it;
// an application handler installed later replaces it). On SIGQUIT a dedicated thread writes
// "SIGQUIT: quit" and the Detail::kFull dump to stderr and ends the process with exit status 2,
// as Go does, without running atexit handlers or flushing stdio buffers. A second SIGQUIT
// while the dump is written ends the process at once with SIGQUIT's default action.
//
// Environment: GORO_SIGQUIT=0 (leave SIGQUIT alone), GORO_TRACEBACK=system (keep runtime
// frames in every trace).
#pragma once

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "goro/export.hpp"

namespace goro::debug {

/// How much write_goroutines shows. The values are pprof's `debug` levels.
enum class Detail {
  kGrouped = 1,  ///< identical stacks counted together (pprof goroutine profile, debug=1)
  kFull = 2,     ///< every goroutine with its state (pprof debug=2, Go's SIGQUIT traceback)
};

/// Writes a dump of every goroutine that exists (started and not yet returned) to `out`, in
/// the format above. Callable from goroutines and plain threads; safe while goroutines start,
/// run, park and exit. Goroutines started or ended while the dump is taken may or may not
/// appear; plain threads (main included) are not goroutines and never appear. Before the
/// runtime has started it writes an empty dump ("goroutine profile: total 0" for kGrouped).
///
/// Blocking: it never parks. It blocks the calling OS thread (on a goroutine, its M) while it
/// unwinds and symbolizes, taking the unwinder's and the symbolizer's internal mutexes for
/// each stack and address (concurrent dumps share them); the first dump loads the program's
/// debug information. The text is built first and written to `out` in one insertion after
/// every internal lock is released, so `out` may be any stream, even one whose writes park.
///
/// Cost: proportional to the number of goroutines and their stack depth (a copy of each
/// parked goroutine's used stack, up to 1 MiB, and a CFI unwind); symbolization is cached per
/// distinct address within one call. Milliseconds for thousands of goroutines, seconds for
/// a million.
///
/// Errors: throws std::bad_alloc when memory runs out, and whatever `out` throws under its
/// exception mask; otherwise a goroutine whose stack cannot be read is shown without one.
/// Thread-safe: any number of threads and goroutines may dump at once.
GORO_API void write_goroutines(std::ostream& out, Detail detail = Detail::kFull);

/// The same dump as write_goroutines, returned as a string. Same contract.
GORO_API std::string goroutines(Detail detail = Detail::kFull);

// ---------------------------------------------------------------------------------------------
// Leaks (src/debug/leak.cpp; the method, its assumptions and limits are its design comment).
//
//   goro::debug::track_leaks();                  // first thing in main(), or GORO_LEAKCHECK=1
//   ...
//   goro::debug::LeakReport r = goro::debug::find_leaks();
//   if (r.leaked_goroutines() > 0) std::cerr << r.str();
//
// A goroutine is leaked when nothing can ever wake it: it is parked on a nil channel or in a
// select with no cases, or on channels (a select: on all its channel cases, with no deadline)
// whose every handle (goro::Chan object) is held by leaked goroutines themselves — in their
// live stacks or closures, with no pointer from anywhere else into those. The verdict is exact
// for channels (no false positives, under the assumptions in leak.cpp: plain 8-byte aligned
// pointers, handles never memcpy'd); what cannot be judged is reported as such, never as a
// leak: waits on goro::Mutex, RWMutex, WaitGroup, Once, Cond, Semaphore, Group (plain objects
// that anyone holding a pointer may still signal), and waits on channels made while tracking
// was off. Sleeping goroutines, I/O waits and selects with a deadline are never leaks.

/// Turns on channel handle tracking: every channel made from now on records where each of its
/// handles lives, which find_leaks needs to judge channel waits. Irrevocable (a tracked
/// channel's handles must be followed for its whole life). GORO_LEAKCHECK=1 in the environment
/// does the same before main(). Cost while on: each copy, move and destruction of a handle of
/// a tracked channel takes that channel's registry lock and updates a hash set (tens of
/// nanoseconds; see leak_test's HandleCopyCost); off, a handle move costs one more predictable
/// branch. Thread-safe, never blocks; channels made before the call stay untracked.
GORO_API void track_leaks() noexcept;

/// Whether handle tracking is on.
GORO_API bool leaks_tracked() noexcept;

/// Goroutines with the same verdict, state, reason and stack.
struct LeakGroup {
  std::vector<std::uint64_t> ids;  ///< goroutine ids, ascending
  std::string state;  ///< the wait, as in dumps: "chan receive", "select", "sync.Mutex.Lock"...
  std::string why;    ///< the reason for the verdict (or why it cannot be judged)
  /// The stack, as the frames and "created by" lines of a Detail::kFull dump (without the
  /// "goroutine N [state]:" line); only the "created by" lines with LeakOptions::stacks off.
  std::string trace;
};

/// What find_leaks found. Groups are sorted by descending size.
struct LeakReport {
  std::vector<LeakGroup> leaked;   ///< goroutines that can never be woken
  std::vector<LeakGroup> unknown;  ///< blocked on something find_leaks cannot judge
  std::size_t goroutines = 0;      ///< goroutines examined (the caller excluded)
  bool channels_tracked = false;   ///< handle tracking was on (channel waits were judged)
  bool memory_scanned = false;     ///< the reference scan could read this process's memory
  /// The kinds of wait find_leaks never judges (always the same list, for the reader).
  std::vector<std::string> not_judged;

  /// The number of goroutines in `leaked`.
  GORO_API std::size_t leaked_goroutines() const noexcept;
  /// A human-readable report: a summary line, then each group with its ids and stack.
  GORO_API std::string str() const;
};

/// Options of find_leaks.
struct LeakOptions {
  /// Take a goroutine dump for the groups' stacks (otherwise only creation sites).
  bool stacks = true;
};

/// Finds the goroutines that can never be woken (see above) and those it cannot judge.
/// Callable from goroutines and plain threads at any time; the calling goroutine is never
/// reported. It does not stop the world: a goroutine must stay parked throughout (two runs of
/// the analysis) to be reported.
///
/// Blocking: never parks; blocks the calling thread while it reads the process's memory and
/// (with stacks) takes a goroutine dump, taking each tracked channel's lock briefly.
/// Side effect: when some goroutine waits on tracked channels, every thread of the process
/// except the caller, idle runtime threads and the runtime's helpers receives SIGURG once, so
/// that its registers can be read (goro sends SIGURG to its own threads for preemption anyway;
/// an application SIGURG handler is chained and must tolerate it, as in Go). A system call
/// that SA_RESTART does not restart (nanosleep, poll, epoll_wait) returns EINTR in those
/// threads. A thread that blocks SIGURG, or does not answer within a second, makes every
/// channel verdict "unknown".
/// Cost: proportional to the resident writable memory of the process (it scans it for
/// pointers into the blocked goroutines' stacks, about a gigabyte per second) when some
/// goroutine waits on tracked channels, plus the dump: about 20-30 ms for 1000 parked
/// goroutines next to 64 MiB of heap (leak_test's HandleCopyCost prints it).
/// Errors: throws std::bad_alloc when memory runs out. A leak can be missed (never invented)
/// when stale memory, such as a previous goroutine dump's freed buffers, holds an address
/// inside the leaked goroutine's stack. Thread-safe; concurrent calls are serialized while
/// they read registers.
GORO_API LeakReport find_leaks(const LeakOptions& options = {});

// ---------------------------------------------------------------------------------------------
// Deadlock detection (src/debug/deadlock.cpp).
//
// When every goroutine is parked on goro primitives, no timer is armed, no goroutine waits for
// I/O or runs a blocking call, and every thread outside the runtime is itself blocked in a goro
// primitive (so none can wake anything), the program is deadlocked: like Go, the runtime prints
// "fatal error: all goroutines are asleep - deadlock!", a goroutine dump (Detail::kFull), and
// ends the process with exit status 2. The monitor thread looks when every P goes idle and
// confirms over 50 ms that nothing moved. A thread that is not blocked in a goro primitive
// (running, sleeping, in std::thread::join, in a std::mutex) could still wake a goroutine, so
// then there is no verdict: kReport prints a warning once instead.
// Environment: GORO_DEADLOCK=1 or fatal (kFatal), report (kReport), 0 or off (kOff); default
// kFatal.
// Limits: not judged while a goroutine locked to its thread (lock_os_thread) is parked, or with
// GORO_SYSMON=0 (no monitor thread), or while helper threads it does not know run (the debug
// endpoint's and GORO_SCHEDTRACE's threads count as outside threads). It keeps one descriptor
// open on /proc/self/task once it has looked, and reads a new thread's name once or twice
// (briefly one more descriptor): a program that runs at its RLIMIT_NOFILE and needs the next
// free descriptor to be its own should turn detection off (GORO_DEADLOCK=0).

/// What the deadlock detector does.
enum class DeadlockMode {
  kOff,     ///< never looks (GORO_DEADLOCK=0)
  kFatal,   ///< a certain deadlock is fatal (the default)
  kReport,  ///< as kFatal, and also warns once when all goroutines are asleep but threads
            ///< outside the runtime could still wake them
};

/// Sets the mode; returns the previous one. Thread-safe, never blocks. Takes effect at the
/// monitor's next look.
GORO_API DeadlockMode set_deadlock_mode(DeadlockMode mode) noexcept;

// ---------------------------------------------------------------------------------------------
// Parking while holding an OS lock (src/debug/deadlock.cpp, "Parking with an OS lock held").
//
// A goroutine that parks (or yields, is preempted, or returns) while holding a pthread mutex
// or rwlock (std::mutex, std::shared_mutex...) leaves the lock held by an OS thread that now
// runs other goroutines: the next goroutine on that thread that takes the lock blocks the
// thread for good, and unlocking it later from another thread is undefined behaviour. With the
// check on, the runtime records in each goroutine the pthread locks it holds and where it
// locked them (the return address of the pthread_*lock call), and at the switch reports
//   goro: goroutine 7 parks (chan receive) while holding pthread mutex 0x5581c0 locked at
//   worker(goro::Chan<int>) (/src/app.cpp:42)
// once per lock site (kWarn), or ends the process after the report with the goroutine's
// creation site (kFatal). Environment: GORO_DEBUG_OSLOCK=1 or warn (kWarn), fatal (kFatal).
// Not available under ThreadSanitizer (whose interceptors own the pthread functions).

/// What the OS-lock check does.
enum class OsLockCheck {
  kOff,    ///< nothing beyond counting (the default): one branch per pthread lock operation
  kWarn,   ///< report once per lock site; costs a short runtime lock per pthread lock
           ///< operation on a goroutine
  kFatal,  ///< report, then end the process
};

/// Sets the check; returns the previous setting. Locks taken while it was off are not known
/// to it (a goroutine holding one is reported without its site). Thread-safe, never blocks.
GORO_API OsLockCheck set_oslock_check(OsLockCheck mode) noexcept;

}  // namespace goro::debug
