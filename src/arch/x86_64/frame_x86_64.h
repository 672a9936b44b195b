/* frame_x86_64.h - the saved frame of a switched-out context on x86-64 SysV.
 *
 * Shared by switch_x86_64_sysv_elf.S and C++ (arch/context.hpp static_asserts it). A context
 * that is not running is fully described by its saved stack pointer, which points at this
 * frame; the rest of the "gobuf" lives on the context's own stack:
 *
 *   sp + 56  return address (where goro_switch returns; the trampoline for a new context)
 *   sp + 48  rbp
 *   sp + 40  rbx
 *   sp + 32  r12          (new context: the entry argument)
 *   sp + 24  r13          (new context: the entry function)
 *   sp + 16  r14
 *   sp +  8  r15
 *   sp +  4  x87 control word (16 bits, upper half unused)
 *   sp +  0  MXCSR
 *
 * Not saved, by design: caller-saved registers (the compiler saved what it needs before the
 * call), the signal mask (goroutines share their thread's), FS/GS bases (thread pointers stay
 * with the thread), x87/SSE data registers and status flags (caller-saved under SysV).
 */
#ifndef GORO_ARCH_FRAME_X86_64_H
#define GORO_ARCH_FRAME_X86_64_H

#define GORO_FRAME_MXCSR 0
#define GORO_FRAME_X87CW 4
#define GORO_FRAME_R15 8
#define GORO_FRAME_R14 16
#define GORO_FRAME_R13 24
#define GORO_FRAME_R12 32
#define GORO_FRAME_RBX 40
#define GORO_FRAME_RBP 48
#define GORO_FRAME_RET 56
#define GORO_FRAME_SIZE 64

#endif
