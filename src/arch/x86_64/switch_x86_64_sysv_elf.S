/* switch_x86_64_sysv_elf.S - goroutine context switch for x86-64, System V ABI, ELF, GNU as.
 *
 * Every switch goes through a thread's g0 (its scheduler stack): a goroutine switches to g0
 * when it parks, yields or exits, and g0 switches to the next goroutine. g0 runs only runtime
 * code, which never changes the floating-point control words, so only the goroutine's side
 * carries them. That halves the slow stmxcsr/fnstcw work of a round trip:
 *
 *   void goro_switch_to_g0(void** save_sp, void* g0_sp, uint64_t* cw);
 *       Saves the callee-saved registers, MXCSR and the x87 control word (frame_x86_64.h) on
 *       the goroutine's stack, copies the two control words to *cw (the thread's current
 *       ones, kept by its M), stores rsp to *save_sp, and resumes g0 at g0_sp. g0's own
 *       control-word slots are ignored: it keeps the goroutine's control words.
 *
 *   void goro_switch_from_g0(void** save_sp, void* g_sp, uint64_t* cw);
 *       Saves g0's callee-saved registers (its control-word slots are left unwritten), stores
 *       rsp to *save_sp, and resumes the goroutine at g_sp, loading its MXCSR and x87 control
 *       word only where they differ from the thread's current ones in *cw (ldmxcsr and fldcw
 *       are slow, and nearly every context uses the defaults), updating *cw.
 *
 * Both clobber only the caller-saved rax, rcx and r8, besides the stacks and *save_sp and *cw.
 *
 * Return prediction: a switch returns to a different place than it was called from, so a
 * `ret` would always miss in the CPU's return-stack buffer. Popping the resume address and
 * jumping to it lets the indirect-branch predictor learn the few resume points instead
 * (measured here: a yield round trip 31 ns with ret, 25 ns with the jump).
 *
 *   goro_trampoline: first code of a new context. r13 = entry function, r12 = its argument.
 *       Calls entry(arg) with an ABI-aligned stack; entry never returns (a goroutine leaves by
 *       switching away for good), so a return traps.
 */
#include "frame_x86_64.h"

        .text
        .globl  goro_switch_to_g0
        .hidden goro_switch_to_g0
        .type   goro_switch_to_g0, @function
        .p2align 4
goro_switch_to_g0:
        .cfi_startproc
#if defined(__CET__)
        endbr64
#endif
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        subq    $8, %rsp
        stmxcsr GORO_FRAME_MXCSR(%rsp)
        fnstcw  GORO_FRAME_X87CW(%rsp)
        movq    (%rsp), %rax
        movq    %rax, (%rdx)
        movq    %rsp, (%rdi)
        movq    %rsi, %rsp
        addq    $8, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        popq    %r8                 /* jump, not ret: see "Return prediction" above */
        jmpq    *%r8
        .cfi_endproc
        .size   goro_switch_to_g0, .-goro_switch_to_g0

        .globl  goro_switch_from_g0
        .hidden goro_switch_from_g0
        .type   goro_switch_from_g0, @function
        .p2align 4
goro_switch_from_g0:
        .cfi_startproc
#if defined(__CET__)
        endbr64
#endif
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        subq    $8, %rsp
        movq    %rsp, (%rdi)
        movq    %rsi, %rsp
        movl    GORO_FRAME_MXCSR(%rsp), %eax
        cmpl    GORO_FRAME_MXCSR(%rdx), %eax
        je      1f
        ldmxcsr GORO_FRAME_MXCSR(%rsp)
        movl    %eax, GORO_FRAME_MXCSR(%rdx)
1:      movzwl  GORO_FRAME_X87CW(%rsp), %ecx
        cmpw    GORO_FRAME_X87CW(%rdx), %cx
        je      2f
        fldcw   GORO_FRAME_X87CW(%rsp)
        movw    %cx, GORO_FRAME_X87CW(%rdx)
2:      addq    $8, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        popq    %r8
        jmpq    *%r8
        .cfi_endproc
        .size   goro_switch_from_g0, .-goro_switch_from_g0

        .globl  goro_trampoline
        .hidden goro_trampoline
        .type   goro_trampoline, @function
        .p2align 4
goro_trampoline:
        .cfi_startproc
        /* The outermost frame of a goroutine: unwinders stop here. */
        .cfi_undefined rip
#if defined(__CET__)
        endbr64
#endif
        xorl    %ebp, %ebp
        movq    %r12, %rdi
        callq   *%r13
        ud2
        .cfi_endproc
        .size   goro_trampoline, .-goro_trampoline

        .section .note.GNU-stack,"",@progbits
