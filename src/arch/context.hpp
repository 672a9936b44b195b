// context.hpp - the architecture-neutral face of the context switch.
//
// A context is a stack pointer. A switch saves the running context's callee-saved state on its
// own stack, stores its stack pointer, and resumes another context from its stack pointer.
// Switches go between a goroutine and its thread's g0 (the scheduler stack), except the
// scheduler's direct switch from a parking goroutine to its successor (goro_switch_g_to_g).
// make_context lays out a fresh stack so that the first switch into it enters
// entry(arg) through goro_trampoline. Per-architecture code lives in arch/<arch>/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include "arch/x86_64/frame_x86_64.h"
#else
#error "goro: this architecture has no context switch yet (see src/arch/)"
#endif

extern "C" {
// See switch_x86_64_sysv_elf.S. `cw` is the running thread's current control words (MXCSR in
// the low 32 bits, the x87 control word above), kept by its M.
void goro_switch_to_g0(void** save_sp, void* g0_sp, std::uint64_t* cw);
void goro_switch_from_g0(void** save_sp, void* g_sp, std::uint64_t* cw);
void goro_switch_g_to_g(void** save_sp, void* g_sp, std::uint64_t* cw);
void goro_trampoline();
}

namespace goro::internal {

using ContextEntry = void (*)(void* arg);

struct SavedFrame {
  std::uint32_t mxcsr;
  std::uint16_t x87cw;
  std::uint16_t pad;
  std::uint64_t r15, r14, r13, r12, rbx, rbp;
  void* ret;
};
static_assert(offsetof(SavedFrame, mxcsr) == GORO_FRAME_MXCSR);
static_assert(offsetof(SavedFrame, x87cw) == GORO_FRAME_X87CW);
static_assert(offsetof(SavedFrame, r15) == GORO_FRAME_R15);
static_assert(offsetof(SavedFrame, r14) == GORO_FRAME_R14);
static_assert(offsetof(SavedFrame, r13) == GORO_FRAME_R13);
static_assert(offsetof(SavedFrame, r12) == GORO_FRAME_R12);
static_assert(offsetof(SavedFrame, rbx) == GORO_FRAME_RBX);
static_assert(offsetof(SavedFrame, rbp) == GORO_FRAME_RBP);
static_assert(offsetof(SavedFrame, ret) == GORO_FRAME_RET);
static_assert(sizeof(SavedFrame) == GORO_FRAME_SIZE);

// Prepares a context whose stack ends (exclusive) at `top` and returns its initial stack
// pointer. The first switch to it calls entry(arg) on that stack, 16-byte aligned as the
// ABI requires, with the default MXCSR (all exceptions masked, round to nearest) and x87
// control word.
inline void* make_context(void* top, ContextEntry entry, void* arg) noexcept {
  auto t = reinterpret_cast<std::uintptr_t>(top) & ~std::uintptr_t{15};
  // After `ret` pops the trampoline's address, rsp = t: aligned for its `call`.
  auto* f = reinterpret_cast<SavedFrame*>(t - sizeof(void*) - offsetof(SavedFrame, ret));
  std::memset(f, 0, sizeof(*f));
  f->mxcsr = 0x1F80;
  f->x87cw = 0x037F;
  f->r13 = reinterpret_cast<std::uint64_t>(entry);
  f->r12 = reinterpret_cast<std::uint64_t>(arg);
  f->ret = reinterpret_cast<void*>(&goro_trampoline);
  return f;
}

// The calling thread's current control words, in the layout goro_switch_* keep in M.
inline std::uint64_t current_control_words() noexcept {
  std::uint32_t mxcsr;
  std::uint16_t cw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(cw));
  return mxcsr | (static_cast<std::uint64_t>(cw) << 32);
}

}  // namespace goro::internal
