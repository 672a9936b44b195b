// traceback.cpp - unwinding goroutine stacks without stopping the world.
//
// What it owns
// ------------
// Turning a goroutine into a list of code addresses (a Traceback) and those addresses into
// symbolized frames. The dump that prints them (and SIGQUIT) is in dump.cpp; the symbolizer
// proper (names, file:line, inlined frames) is debug/symbolize.cpp.
//
// Where a stack starts
// --------------------
// * A parked (or runnable, switched-out) goroutine: its saved context. g->sp points at the
//   SavedFrame that goro_switch_to_g0 pushed (arch/context.hpp): the callee-saved registers and
//   the resume address. Resuming would set rsp = g->sp + sizeof(SavedFrame) and jump to `ret`,
//   so that is the register state we unwind from; caller-saved registers are dead there (the
//   switch is a call). `ret` follows a call instruction, so frame 0 is symbolized at ret - 1
//   (the call in mcall), like every other return address.
// * The calling goroutine: capture_regs (traceback.hpp) stores rip/rsp and the callee-saved
//   registers at a point inside a still-running function (the public dump entry), which
//   becomes frame 0 (an exact pc).
// * A goroutine running on another thread: no stack (Go prints "goroutine running on other
//   thread; stack unavailable" too). Capturing it would need a signal to that thread.
// * A goroutine preempted asynchronously is switched out inside goro_async_preempt, whose CFI
//   describes the interrupted frame, so the unwind continues through it. The interrupted pc
//   is exact, not a return address; libdw reports it so (isactivation) only if the stub's CFI
//   is marked .cfi_signal_frame, otherwise it is symbolized at pc - 1 (nearly always the same
//   line).
//
// Consistent copies without stopping the world (the parkgen protocol)
// -------------------------------------------------------------------
// A parked goroutine can be readied and run on another thread at any moment, overwriting the
// stack we read. Like a seqlock reader, traceback_parked:
//   1. loads g->parkgen (acquire), then g->status (acquire); anything but waiting or
//      runnable means "not switched out": stop (kMoved);
//   2. reads g->sp, stack_lo, stack_hi (the switch stored sp before the status store that
//      step 1 acquired) and checks them;
//   3. copies [sp, min(stack_hi, sp + kMaxStackCopy)) into a private buffer;
//   4. re-reads status, parkgen and sp, after the copy (the copy's loads come first: the
//      kernel did them inside a system call, or a volatile loop followed by a compiler
//      barrier, and x86-64 does not reorder loads with later loads; a C++ acquire fence would
//      say the same, but GCC's TSan rejects atomic_thread_fence): if all three are unchanged,
//      the goroutine did not run during step 3 and the copy is a consistent image; otherwise
//      retry (3 tries, then kMoved with the status seen last).
//   The writer side (proc.cpp): a switch-out increments parkgen before it stores the new
//   status (kGWaiting in park_m), and a goroutine writes its stack only after an M stored
//   kGRunning. On x86-64 (TSO) stores are seen in order, so a copy that saw any byte the
//   resumed goroutine wrote also sees the status change (or, if it parked again since, the
//   new parkgen) by step 4. Without the parkgen increment the check rests on status and sp
//   alone, which misses a goroutine that ran and parked again at the same sp in between; a
//   switch-out that does not increment it (yield_m, preempt_m) leaves the same hole for
//   runnable goroutines, whose traces are then best effort.
// The unwinder reads only the private copy (memory_read below maps [sp, sp + len) to it and
// refuses everything else), so a torn or garbage copy can yield a wrong frame but never a
// crash. The copy itself uses process_vm_readv(2) on our own pid: the kernel copies, an
// unmapped page (a custom-size stack unmapped by its exit meanwhile) is an error instead of a
// SIGSEGV, and the sanitizers neither see the benign race nor ASan's poisoned redzones. Where
// seccomp forbids process_vm_readv, slab stacks (never unmapped) are copied by a plain loop
// compiled without sanitizer checks, and custom-size stacks are reported unreadable.
//
// Unwinder choice: elfutils libdwfl
// ---------------------------------
// dwfl_attach_state with our own Dwfl_Thread_Callbacks unwinds any register set over any
// memory (set_initial_registers + memory_read), with .eh_frame/.debug_frame CFI and libdw's
// x86-64 frame-pointer fallback. libdw is already linked for symbolization, so this adds no
// dependency. Rejected: nongnu libunwind (unw_init_local starts from a live ucontext on the
// live stack, a foreign stack image needs a custom address space whose find_proc_info we
// would write ourselves, and libunwind.so also exports the _Unwind_* ABI, which can interpose
// the C++ exception unwinder of the whole program); libbacktrace and _Unwind_Backtrace only
// walk the calling thread's live stack. No DWARF is parsed by hand.
//
// One Dwfl session for unwinding, separate from the symbolizer's (whose session is private to
// symbolize.cpp): it is created on first use from /proc/self/maps and rebuilt when
// dl_iterate_phdr's load/unload counters show that a library was dlopen()ed or dlclose()d
// since. Its thread callbacks read the unwind target from g_target, so one session serves
// every goroutine: dwfl_getthread_frames calls set_initial_registers afresh for each unwind.
//
// Thread-safety: libdwfl is not thread-safe; g_mu guards the session and g_target. Lock
// order: g_mu is a leaf (never held while calling the symbolizer, never taken under a runtime
// lock). Nothing here is async-signal-safe (malloc, mutexes, file I/O); SIGQUIT dumps run on a
// dedicated thread (dump.cpp).
#include "debug/traceback.hpp"

#include <dwarf.h>
#include <elfutils/libdwfl.h>
#include <link.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "arch/context.hpp"
#include "debug/symbolize.hpp"
#include "sched/proc.hpp"

namespace goro::internal {
namespace {

// ---------------------------------------------------------------------------------------------
// Reading another goroutine's switch state and stack.

struct SwitchState {
  std::uintptr_t sp;
  std::uintptr_t lo;
  std::uintptr_t hi;
  std::uint8_t stack_kind;
  WaitReason reason;
  std::int64_t waitsince;
};

// The plain G fields that the goroutine's M writes while we read them. The protocol above
// makes the values it uses consistent; the read itself is a benign race that TSan must not
// report (and a no_sanitize function is never inlined into an instrumented one).
GORO_RACY_READ SwitchState read_switch_state(const G* g) {
  SwitchState s;
  s.sp = reinterpret_cast<std::uintptr_t>(g->sp);
  s.lo = g->stack_lo;
  s.hi = g->stack_hi;
  s.stack_kind = g->stack_kind;
  s.reason = g->waitreason;
  s.waitsince = g->waitsince;
  return s;
}

GORO_RACY_READ std::uintptr_t read_sp(const G* g) {
  return reinterpret_cast<std::uintptr_t>(g->sp);
}

enum class Copy { kOk, kFault, kUnsupported };

// Copies len bytes at src into dst with process_vm_readv on our own pid.
Copy copy_vm(void* dst, std::uintptr_t src, std::size_t len) {
  static std::atomic<bool> unsupported{false};
  if (unsupported.load(std::memory_order_relaxed)) return Copy::kUnsupported;
  iovec local{dst, len};
  iovec remote{reinterpret_cast<void*>(src), len};
  for (;;) {
    ssize_t n = ::process_vm_readv(::getpid(), &local, 1, &remote, 1, 0);
    if (n == static_cast<ssize_t>(len)) return Copy::kOk;
    if (n >= 0) return Copy::kFault;  // a partial read: the range ends in an unmapped page
    if (errno == EINTR) continue;
    if (errno == EFAULT || errno == ENOMEM) return Copy::kFault;
    unsupported.store(true, std::memory_order_relaxed);  // ENOSYS, EPERM (seccomp)
    return Copy::kUnsupported;
  }
}

// The fallback for memory that stays mapped (slab stacks, our own stack): a word loop that
// the sanitizers do not instrument (it races benignly with the goroutine, and ASan poisons
// redzones on stacks) and that the compiler cannot turn into a memcpy call (intercepted).
#if defined(__clang__)
#define GORO_RACY_COPY __attribute__((no_sanitize("address", "thread"), noinline))
#else
#define GORO_RACY_COPY __attribute__((no_sanitize("address", "thread"), noinline, noipa))
#endif
GORO_RACY_COPY void copy_words(void* dst, std::uintptr_t src, std::size_t len) {
  auto* d = static_cast<unsigned char*>(dst);
  const auto* s = reinterpret_cast<const volatile std::uint64_t*>(src);
  for (std::size_t i = 0; i < len / 8; i++) {
    std::uint64_t w = s[i];
    std::memcpy(d + i * 8, &w, 8);
  }
}

// Copies a stack range; src and len are multiples of 8. `may_unmap`: the range may be unmapped
// concurrently (a custom-size stack), so only the kernel may read it.
bool copy_stack(void* dst, std::uintptr_t src, std::size_t len, bool may_unmap) {
  switch (copy_vm(dst, src, len)) {
    case Copy::kOk:
      return true;
    case Copy::kFault:
      return false;
    case Copy::kUnsupported:
      break;
  }
  if (may_unmap) return false;
  copy_words(dst, src, len);
  return true;
}

// ---------------------------------------------------------------------------------------------
// The unwinding session (libdwfl).

// What the thread callbacks unwind: a register set over a stack image.
struct Target {
  UnwindRegs regs{};
  const unsigned char* image = nullptr;  // a copy of [base, base + len)
  std::uintptr_t base = 0;
  std::size_t len = 0;
  bool image_cut = false;      // the stack goes on above base + len
  bool read_past_cut = false;  // the unwinder asked for memory above the cut
};

std::mutex g_mu;                // guards everything below and every use of g_dwfl
Dwfl* g_dwfl = nullptr;         // lazily created, rebuilt when the loaded objects change
unsigned long long g_adds = 0;  // dl_iterate_phdr's counters when g_dwfl was built
unsigned long long g_subs = 0;
Target g_target;

char* g_debuginfo_path = nullptr;

// Local files only, as in symbolize.cpp: a dump must never wait on a debuginfod server.
int find_debuginfo_local(Dwfl_Module* mod, void** userdata, const char* modname, Dwarf_Addr base,
                         const char* file_name, const char* debuglink_file, GElf_Word debuglink_crc,
                         char** debuginfo_file_name) {
  const char* urls = std::getenv("DEBUGINFOD_URLS");
  if (urls != nullptr && *urls != 0) return -1;
  return dwfl_standard_find_debuginfo(mod, userdata, modname, base, file_name, debuglink_file,
                                      debuglink_crc, debuginfo_file_name);
}

const Dwfl_Callbacks g_callbacks = {
    dwfl_linux_proc_find_elf,  // find_elf
    find_debuginfo_local,      // find_debuginfo
    nullptr,                   // section_address
    &g_debuginfo_path,         // debuginfo_path
};

// One pseudo-thread: the current Target.
pid_t cb_next_thread(Dwfl*, void* dwfl_arg, void** thread_argp) {
  if (*thread_argp != nullptr) return 0;
  *thread_argp = dwfl_arg;
  return ::getpid();
}

bool cb_get_thread(Dwfl*, pid_t, void* dwfl_arg, void** thread_argp) {
  *thread_argp = dwfl_arg;
  return true;
}

bool cb_memory_read(Dwfl*, Dwarf_Addr addr, Dwarf_Word* result, void* dwfl_arg) {
  auto* t = static_cast<Target*>(dwfl_arg);
  if (addr >= t->base && t->len >= sizeof(Dwarf_Word) &&
      addr - t->base <= t->len - sizeof(Dwarf_Word)) {
    std::memcpy(result, t->image + (addr - t->base), sizeof(Dwarf_Word));
    return true;
  }
  if (t->image_cut && addr >= t->base + t->len) t->read_past_cut = true;
  return false;  // not in the stack image: never read live memory
}

// DWARF register numbers on x86-64: 3 rbx, 6 rbp, 7 rsp, 12-15 r12-r15.
bool cb_set_initial_registers(Dwfl_Thread* thread, void* thread_arg) {
  const UnwindRegs& r = static_cast<Target*>(thread_arg)->regs;
  const Dwarf_Word rbx = r.rbx;
  const Dwarf_Word rbp_rsp[2] = {r.rbp, r.rsp};
  const Dwarf_Word r12_r15[4] = {r.r12, r.r13, r.r14, r.r15};
  if (!dwfl_thread_state_registers(thread, 3, 1, &rbx) ||
      !dwfl_thread_state_registers(thread, 6, 2, rbp_rsp) ||
      !dwfl_thread_state_registers(thread, 12, 4, r12_r15)) {
    return false;
  }
  dwfl_thread_state_register_pc(thread, r.rip);
  return true;
}

const Dwfl_Thread_Callbacks g_thread_callbacks = {
    cb_next_thread,            // next_thread
    cb_get_thread,             // get_thread
    cb_memory_read,            // memory_read
    cb_set_initial_registers,  // set_initial_registers
    nullptr,                   // detach
    nullptr,                   // thread_detach
};

int on_phdr(dl_phdr_info* info, std::size_t size, void* arg) {
  auto* counts = static_cast<unsigned long long*>(arg);
  if (size >= offsetof(dl_phdr_info, dlpi_subs) + sizeof(info->dlpi_subs)) {
    counts[0] = info->dlpi_adds;
    counts[1] = info->dlpi_subs;
  }
  return 1;  // the counters are the same in every entry: one is enough
}

// The session, (re)built if needed; null if libdwfl cannot be set up. Requires g_mu.
Dwfl* session_locked() {
  unsigned long long counts[2] = {0, 0};
  dl_iterate_phdr(on_phdr, counts);
  if (g_dwfl != nullptr && (counts[0] != g_adds || counts[1] != g_subs)) {
    dwfl_end(g_dwfl);
    g_dwfl = nullptr;
  }
  if (g_dwfl != nullptr) return g_dwfl;
  Dwfl* dwfl = dwfl_begin(&g_callbacks);
  if (dwfl == nullptr) return nullptr;
  dwfl_report_begin(dwfl);
  const int rc = dwfl_linux_proc_report(dwfl, ::getpid());
  if (dwfl_report_end(dwfl, nullptr, nullptr) != 0 || rc != 0 ||
      !dwfl_attach_state(dwfl, nullptr, ::getpid(), &g_thread_callbacks, &g_target)) {
    dwfl_end(dwfl);
    return nullptr;
  }
  g_dwfl = dwfl;
  g_adds = counts[0];
  g_subs = counts[1];
  return g_dwfl;
}

int cb_frame(Dwfl_Frame* state, void* arg) {
  auto* out = static_cast<Traceback*>(arg);
  Dwarf_Addr pc = 0;
  bool activation = false;
  if (!dwfl_frame_pc(state, &pc, &activation) || pc == 0) return DWARF_CB_ABORT;
  if (out->pcs.size() >= static_cast<std::size_t>(kMaxTraceFrames)) {
    out->truncated = true;
    return DWARF_CB_ABORT;
  }
  out->pcs.push_back(TracePc{static_cast<std::uintptr_t>(pc), !activation});  // reserved
  return DWARF_CB_OK;
}

// Unwinds regs over the image [base, base + len). Returns whether any frame was found.
bool unwind(const UnwindRegs& regs, const unsigned char* image, std::uintptr_t base,
            std::size_t len, bool image_cut, Traceback* out) {
  out->pcs.clear();
  out->pcs.reserve(kMaxTraceFrames);  // cb_frame must not throw through libdw's C frames
  out->truncated = false;
  std::lock_guard<std::mutex> hold(g_mu);
  Dwfl* dwfl = session_locked();
  if (dwfl == nullptr) return false;
  g_target = Target{regs, image, base, len, image_cut, false};
  // The result does not tell a clean end (goro_trampoline's undefined return address) from
  // a failed step reliably across elfutils versions; the frames found so far are the trace.
  (void)dwfl_getthread_frames(dwfl, ::getpid(), cb_frame, out);
  if (g_target.read_past_cut) out->truncated = true;
  g_target = Target{};
  return !out->pcs.empty();
}

bool valid_stack(std::uintptr_t sp, std::uintptr_t lo, std::uintptr_t hi, std::size_t need) {
  return lo != 0 && lo < hi && sp >= lo && sp < hi && hi - sp >= need && sp % 8 == 0 && hi % 8 == 0;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

bool traceback_self(G* g, const UnwindRegs& at, Traceback* out) {
  const std::uintptr_t sp = at.rsp & ~std::uintptr_t{7};
  const std::uintptr_t lo = g->stack_lo;  // our own: immutable while we run
  const std::uintptr_t hi = g->stack_hi;
  if (!valid_stack(sp, lo, hi, 8)) return false;
  const std::size_t len = std::min<std::size_t>(hi - sp, kMaxStackCopy);
  std::vector<unsigned char> image(len);
  if (!copy_stack(image.data(), sp, len, /*may_unmap=*/false)) return false;
  return unwind(at, image.data(), sp, len, len < hi - sp, out);
}

ParkedTrace traceback_parked(G* g, ParkedState* state, Traceback* out) {
  std::vector<unsigned char> image;
  for (int attempt = 0; attempt < 3; attempt++) {
    // Step 1.
    const std::uint32_t gen = g->parkgen.load(std::memory_order_acquire);
    const std::uint32_t st = g->status.load(std::memory_order_acquire);
    state->status = st;
    if (st != kGWaiting && st != kGRunnable) return ParkedTrace::kMoved;
    // Step 2.
    const SwitchState s = read_switch_state(g);
    state->reason = s.reason;
    state->waitsince = s.waitsince;
    if (s.sp == 0) {
      if (st == kGRunnable) return ParkedTrace::kNotStarted;
      continue;  // torn read: retry
    }
    if (!valid_stack(s.sp, s.lo, s.hi, sizeof(SavedFrame))) continue;
    // Step 3.
    const std::size_t len = std::min<std::size_t>(s.hi - s.sp, kMaxStackCopy);
    image.resize(len);
    const bool may_unmap = s.stack_kind == kStackCustom || s.stack_kind == kStackCustomCanary;
    const bool copied = copy_stack(image.data(), s.sp, len, may_unmap);
    // Step 4.
    std::atomic_signal_fence(std::memory_order_seq_cst);  // see step 4
    const std::uint32_t st2 = g->status.load(std::memory_order_relaxed);
    const std::uint32_t gen2 = g->parkgen.load(std::memory_order_relaxed);
    const std::uintptr_t sp2 = read_sp(g);
    if (st2 != st || gen2 != gen || sp2 != s.sp) {
      state->status = st2;
      continue;
    }
    if (!copied) return ParkedTrace::kUnreadable;
    SavedFrame f;
    std::memcpy(&f, image.data(), sizeof f);
    UnwindRegs regs{};
    regs.rip = reinterpret_cast<std::uintptr_t>(f.ret);
    regs.rsp = s.sp + sizeof(SavedFrame);
    regs.rbp = f.rbp;
    regs.rbx = f.rbx;
    regs.r12 = f.r12;
    regs.r13 = f.r13;
    regs.r14 = f.r14;
    regs.r15 = f.r15;
    if (!unwind(regs, image.data(), s.sp, len, len < s.hi - s.sp, out)) {
      return ParkedTrace::kUnreadable;
    }
    // The resume address follows the call into the switch: symbolize the call, like any
    // other return address (libdw reports an initial frame as an exact pc).
    out->pcs[0].return_address = true;
    return ParkedTrace::kOk;
  }
  return ParkedTrace::kMoved;
}

// ---------------------------------------------------------------------------------------------
// Symbolization.

struct TraceSymbolizer::Cache {
  std::unordered_map<std::uintptr_t, std::vector<TraceFrame>> frames[2];  // [return_address]
};

TraceSymbolizer::TraceSymbolizer() : cache_(new Cache) {}

TraceSymbolizer::~TraceSymbolizer() {
  delete cache_;
}

const std::vector<TraceFrame>& TraceSymbolizer::frames(const TracePc& tp) {
  auto& map = cache_->frames[tp.return_address ? 1 : 0];
  auto it = map.find(tp.pc);
  if (it != map.end()) return it->second;

  // Offset from the containing symbol, for the "+0x.." of Go's tracebacks.
  bool has_offset = false;
  std::uintptr_t offset = 0;
  {
    const std::uintptr_t addr = tp.return_address ? tp.pc - 1 : tp.pc;
    std::lock_guard<std::mutex> hold(g_mu);
    if (Dwfl* dwfl = session_locked()) {
      if (Dwfl_Module* mod = dwfl_addrmodule(dwfl, addr)) {
        GElf_Off off = 0;
        GElf_Sym sym;
        if (dwfl_module_addrinfo(mod, addr, &off, &sym, nullptr, nullptr, nullptr) != nullptr) {
          offset = off + (addr == tp.pc ? 0 : 1);
          has_offset = true;
        }
      }
    }
  }

  std::vector<SymFrame> sym = symbolize(reinterpret_cast<const void*>(tp.pc), tp.return_address);
  std::vector<TraceFrame> out;
  out.reserve(sym.size() + 1);
  for (SymFrame& s : sym) {
    TraceFrame f;
    f.function = std::move(s.function);
    f.file = std::move(s.file);
    f.line = s.line;
    f.object = std::move(s.object);
    f.pc = tp.pc;
    f.inlined = s.inlined;
    out.push_back(std::move(f));
  }
  if (out.empty()) {
    TraceFrame f;
    f.function = "??";
    f.pc = tp.pc;
    out.push_back(std::move(f));
  }
  for (TraceFrame& f : out) {
    f.return_address = tp.return_address;
    f.offset = offset;
    f.has_offset = has_offset;
  }
  return map.emplace(tp.pc, std::move(out)).first->second;
}

}  // namespace goro::internal
