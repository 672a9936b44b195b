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

#include <iosfwd>
#include <string>

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

}  // namespace goro::debug
