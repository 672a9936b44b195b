// traceback.hpp - stack traces of goroutines: unwinding a parked goroutine from its saved
// registers over a copy of its stack, unwinding the calling goroutine from registers it
// captured itself, and symbolizing the frames. The design essay is at the top of
// traceback.cpp; the dump that uses this (goro::debug::write_goroutines, SIGQUIT) is dump.cpp.
// Internal to the goro library.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace goro::internal {

struct G;
enum class WaitReason : std::uint8_t;  // sched/proc.hpp

// Marks a function that reads, on purpose, fields that other threads write without
// synchronizing with us (a protocol decides afterwards whether the values are used):
// ThreadSanitizer must not instrument it, and it must stay a function of its own (inlined into
// an instrumented caller it would be instrumented; GCC needs noipa, since noinline alone lets
// its IPA passes fold it into the caller).
#if defined(__clang__)
#define GORO_RACY_READ __attribute__((no_sanitize("thread"), noinline))
#else
#define GORO_RACY_READ __attribute__((no_sanitize("thread"), noinline, noipa))
#endif

// Frames kept per stack (Go's traceback limit); a deeper stack is cut and marked truncated.
inline constexpr int kMaxTraceFrames = 100;
// Bytes of a stack copied for unwinding, from the saved stack pointer up. Frames beyond it
// are not reached (the trace is marked truncated).
inline constexpr std::size_t kMaxStackCopy = 1 << 20;

// The register state an unwind starts from: the callee-saved registers, the stack pointer and
// the instruction pointer. Caller-saved registers are dead at every point we start from (a
// switch or a capture), so the unwinder is never given them.
struct UnwindRegs {
  std::uint64_t rip, rsp, rbp, rbx, r12, r13, r14, r15;
};

// Stores the registers of the point where it is written into *r, so that an unwind from *r
// starts in the calling function at that point (rip is an exact pc, not a return address).
// Always inlined: the first frame must be the caller's own, and it must stay live (not
// return) until the unwind is done, or the frames it describes are gone.
[[gnu::always_inline]] inline void capture_regs(UnwindRegs* r) noexcept {
  static_assert(sizeof(UnwindRegs) == 64);
  asm volatile(
      "leaq 1f(%%rip), %%rax\n\t"
      "movq %%rax, 0(%0)\n\t"
      "movq %%rsp, 8(%0)\n\t"
      "movq %%rbp, 16(%0)\n\t"
      "movq %%rbx, 24(%0)\n\t"
      "movq %%r12, 32(%0)\n\t"
      "movq %%r13, 40(%0)\n\t"
      "movq %%r14, 48(%0)\n\t"
      "movq %%r15, 56(%0)\n"
      "1:"
      :
      : "r"(r)
      : "rax", "memory");
}

// One frame of a raw trace: a code address and how to read it.
struct TracePc {
  std::uintptr_t pc = 0;
  // pc is a return address (the instruction after a call): the frame's own location is the
  // call, at pc - 1. False for an exact pc: the first frame of a capture, the entry of a
  // goroutine that has not started, a frame interrupted by a signal.
  bool return_address = true;
  friend bool operator==(const TracePc&, const TracePc&) = default;
};

// A raw trace, innermost frame first.
struct Traceback {
  std::vector<TracePc> pcs;  // at most kMaxTraceFrames
  bool truncated = false;    // the stack goes on beyond pcs (too deep, or past the copy)
};

// Unwinds the calling goroutine's own stack from registers captured by capture_regs in a
// function that is still running (an ancestor of this call). `g` must be the calling
// goroutine (getg()). Returns false when no frame could be found. Not async-signal-safe: it
// allocates and takes the unwinder's mutex (a plain mutex: it blocks the thread, never parks).
bool traceback_self(G* g, const UnwindRegs& at, Traceback* out);

// What traceback_parked found.
enum class ParkedTrace {
  kOk,          // *out is the stack of the goroutine as it was switched out (a consistent copy)
  kNotStarted,  // runnable and never run: no stack yet (show its entry function)
  kMoved,       // not switched out (running, or gone), or it ran while we looked, every try
  kUnreadable   // its stack could not be copied or unwound (see traceback.cpp)
};

// The goroutine's state as traceback_parked saw it last (with kOk: while its stack was the one
// copied).
struct ParkedState {
  std::uint32_t status = 0;    // GStatus
  WaitReason reason{};         // meaningful when status is kGWaiting
  std::int64_t waitsince = 0;  // nanotime() when it parked; 0 if unknown
};

// Unwinds goroutine g, which should be parked or runnable with a saved context, from its saved
// registers over a private copy of its stack, using the parkgen protocol in traceback.cpp to
// detect that it ran meanwhile (then it retries a few times). Safe to call while g runs, parks
// or exits on other threads (G records are never freed); never reads g's stack memory in a
// way that could fault. Not async-signal-safe (allocates, takes the unwinder's mutex).
ParkedTrace traceback_parked(G* g, ParkedState* state, Traceback* out);

// A symbolized frame: one code address expands to its inlined calls, innermost first, then
// the function containing it.
struct TraceFrame {
  std::string function;         // demangled; "??" if unknown
  std::string file;             // source path; empty if unknown
  int line = 0;                 // 0 if unknown
  std::string object;           // ELF object holding the code (for frames without line info)
  std::uintptr_t pc = 0;        // the address as unwound
  bool return_address = false;  // pc is a return address (the frame is at pc - 1)
  // pc - start of the symbol containing it (the out-of-line function, also for the frames
  // inlined into it), if has_offset.
  std::uintptr_t offset = 0;
  bool has_offset = false;
  bool inlined = false;  // inlined into the next frame (which has the same pc)
};

// Memoizing symbolizer for one dump: symbolizes each distinct (pc, return_address) once
// (through debug/symbolize.hpp) and adds the offset from the containing symbol. Not
// thread-safe (one per dump); each lookup takes the symbolizer's and the unwinder's mutexes.
class TraceSymbolizer {
 public:
  TraceSymbolizer();
  ~TraceSymbolizer();
  TraceSymbolizer(const TraceSymbolizer&) = delete;
  TraceSymbolizer& operator=(const TraceSymbolizer&) = delete;

  // Frames for one trace entry, innermost first; never empty.
  const std::vector<TraceFrame>& frames(const TracePc& pc);

 private:
  struct Cache;
  Cache* cache_;
};

// Installs the SIGQUIT dump (dump.cpp): unless GORO_SIGQUIT=0, or the application already
// installed a SIGQUIT handler (or ignores SIGQUIT), starts the dump thread and installs a
// handler that wakes it; on SIGQUIT that thread writes "SIGQUIT: quit" and every goroutine
// (goro::debug::Detail::kFull) to stderr and exits the process with status 2. Called by the
// runtime at start-up (start_runtime); idempotent and thread-safe; never throws (on any
// failure SIGQUIT keeps its default action).
void debug_init() noexcept;

}  // namespace goro::internal
