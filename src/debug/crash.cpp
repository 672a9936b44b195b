// crash.cpp - the report of an unexpected fault (see crash.hpp for when it runs).
//
// Why glibc's backtrace() and not the libdwfl unwinder of traceback.cpp: a fault can happen on
// any stack (a goroutine's, an M's scheduler stack, a thread the runtime does not own) whose
// bounds we may not know, and traceback.cpp unwinds over a private copy of a known range.
// backtrace() walks the live stack with libgcc's unwinder, which steps through the kernel's
// signal frame (__restore_rt) to the faulting instruction, so the frames after the handler's
// own are exactly the faulting thread's; its return values are exact pcs for the interrupted
// frame and return addresses above it. Symbolization is debug/symbolize.cpp's.
#include "debug/crash.hpp"

#include <execinfo.h>
#include <sys/ucontext.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "base/platform.hpp"
#include "base/raw_log.hpp"
#include "debug/symbolize.hpp"
#include "sched/proc.hpp"

namespace goro::internal {

namespace {

constexpr int kMaxFrames = 64;
constexpr unsigned kWatchdogSeconds = 10;

const char* signal_name(int sig) {
  switch (sig) {
    case SIGSEGV:
      return "SIGSEGV";
    case SIGBUS:
      return "SIGBUS";
    default:
      return "signal";
  }
}

}  // namespace

void crash_prepare() noexcept {
  void* pcs[2];
  (void)::backtrace(pcs, 2);
}

void crash_report(int sig, const siginfo_t* info, const void* uctx) noexcept {
  const auto* uc = static_cast<const ucontext_t*>(uctx);
  const auto fault_pc = static_cast<std::uintptr_t>(uc->uc_mcontext.gregs[REG_RIP]);
  pin_for_fatal();  // symbolizing below must not park the goroutine off this alternate stack
  RawBuf head;
  head.str("fatal error: unexpected signal ")
      .str(signal_name(sig))
      .str(" (code ")
      .dec(info->si_code)
      .str(", fault address ")
      .ptr(info->si_addr)
      .str(", pc 0x")
      .hex(fault_pc)
      .str(") on OS thread ")
      .dec(::gettid())
      .str("\n");
  head.flush();
  G* g = getg();
  M* m = getm();
  if (g == nullptr) {
    RawBuf b;
    if (m != nullptr) {
      b.str("on the scheduler stack of M").dec(m->id).str(" (no goroutine running)\n");
    } else {
      b.str("on a thread that is not one of the runtime's (no goroutine running)\n");
    }
    b.flush();
  }
  // Past this point the report allocates and locks: bound it.
  ::signal(SIGALRM, SIG_DFL);
  ::alarm(kWatchdogSeconds);
  if (g != nullptr) print_goroutine_header(g, " [running]:");
  void* pcs[kMaxFrames];
  int n = ::backtrace(pcs, kMaxFrames);
  // The frames before the faulting pc are this report's, the handler's and the signal
  // trampoline's. If the unwinder did not get through the signal frame, the faulting pc is
  // the only frame known.
  int first = 0;
  while (first < n && reinterpret_cast<std::uintptr_t>(pcs[first]) != fault_pc) first++;
  if (first == n) {
    pcs[0] = reinterpret_cast<void*>(fault_pc);
    first = 0;
    n = 1;
  }
  {
    RawBuf b;
    b.str("faulting stack, innermost first:\n");
    b.flush();
  }
  for (int i = first; i < n; i++) {
    // The first frame is the interrupted instruction itself; the others are return addresses.
    // Each address expands to its inlined calls, innermost first, so that a call made from a
    // lambda inlined into its caller is still shown with the lambda's line.
    for (const SymFrame& f : symbolize(pcs[i], i != first)) {
      RawBuf b;
      b.str("  ").ptr(pcs[i]).str(" ").str(f.function);
      if (f.inlined) b.str(" [inlined]");
      if (!f.file.empty()) {
        b.str(" (").str(f.file).str(":").dec(f.line).str(")");
      } else if (!f.object.empty()) {
        b.str(" (").str(f.object).str(")");
      }
      b.str("\n");
      b.flush();
    }
  }
  if (n == kMaxFrames) {
    RawBuf b;
    b.str("  ...more frames\n");
    b.flush();
  }
}

}  // namespace goro::internal
