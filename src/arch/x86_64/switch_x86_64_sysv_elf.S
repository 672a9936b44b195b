/* switch_x86_64_sysv_elf.S - goroutine context switch for x86-64, System V ABI, ELF, GNU as.
 *
 *   void goro_switch(void** save_sp, void* load_sp);
 *       rdi = where to store the current context's stack pointer
 *       rsi = the stack pointer of the context to resume
 *
 * Saves the callee-saved registers and the MXCSR / x87 control words on the current stack in
 * the layout of frame_x86_64.h, stores rsp to *save_sp, loads load_sp and restores that
 * context's frame. Returns into the resumed context. Nothing else is touched: no memory but
 * the two stacks and *save_sp.
 *
 *   goro_trampoline: first code of a new context. r13 = entry function, r12 = its argument.
 *       Calls entry(arg) with an ABI-aligned stack; entry never returns (a goroutine leaves by
 *       switching away for good), so a return traps.
 */
#include "frame_x86_64.h"

        .text
        .globl  goro_switch
        .hidden goro_switch
        .type   goro_switch, @function
        .p2align 4
goro_switch:
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
        movq    %rsp, (%rdi)
        movq    %rsi, %rsp
        ldmxcsr GORO_FRAME_MXCSR(%rsp)
        fldcw   GORO_FRAME_X87CW(%rsp)
        addq    $8, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        ret
        .cfi_endproc
        .size   goro_switch, .-goro_switch

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
