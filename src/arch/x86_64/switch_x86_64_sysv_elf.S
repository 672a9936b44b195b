/* switch_x86_64_sysv_elf.S - goroutine context switch for x86-64, System V ABI, ELF, GNU as.
 *
 * Nearly every switch goes through a thread's g0 (its scheduler stack): a goroutine switches
 * to g0 when it parks, yields or exits, and g0 switches to the next goroutine (the exception:
 * goro_switch_g_to_g below). g0 runs only runtime
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
 *   void goro_switch_g_to_g(void** save_sp, void* g_sp, uint64_t* cw);
 *       The direct switch (sched/proc.cpp park_direct): from one goroutine straight to another,
 *       skipping g0. Saves like goro_switch_to_g0 and resumes like goro_switch_from_g0. The
 *       frame it leaves is the one goro_switch_to_g0 leaves, so either resume function
 *       restores it.
 *
 * All three clobber only the caller-saved rax, rcx and r8, besides the stacks, *save_sp and
 * *cw.
 *
 * Return prediction. A `call` pushes its return address on the CPU's return-stack buffer and
 * a `ret` predicts its target from the top entry. The switches to and from g0 resume a
 * different place than they were called from (g0's side always resumes in execute, a
 * goroutine's in mcall or park_direct), so a `ret` there always misses: they pop the resume
 * address and jump to it, and the indirect-branch predictor learns the few resume points
 * (measured here: a yield round trip 31 ns with ret, 25 ns with the jump). The direct switch
 * does the opposite: it nearly always goes from one park_direct to another goroutine's
 * park_direct, so the address its caller pushed is the very one it resumes, and its `ret`
 * hits. It also consumes that entry: after a jump the entry stays behind, and every `ret`
 * the resumed goroutine then makes on its way back out of the runtime (park_self, the
 * channel wait, the channel operation) pops the entry above the right one and misses
 * (measured: an unbuffered channel round trip 111 -> 87 ns at GOMAXPROCS 2, bench pingpong).
 *
 *   goro_trampoline: first code of a new context. r13 = entry function, r12 = its argument.
 *       Calls entry(arg) with an ABI-aligned stack; entry never returns (a goroutine leaves by
 *       switching away for good), so a return traps.
 *
 *   goro_async_preempt: where the SIGURG handler (sched/sysmon.cpp) diverts a goroutine it
 *       preempts. Entered as if the interrupted instruction had called it, except that the
 *       return address sits below the interrupted code's 128-byte red zone:
 *           [rsp] = interrupted rip, interrupted rsp = rsp + 8 + 128.
 *       Saves rflags and every general-purpose register, then the XSAVE state selected by
 *       goro_xsave_mask (vector registers, MXCSR, x87) in a 64-byte aligned area of
 *       goro_xsave_size bytes, resets the x87 unit (fninit: the interrupted code may have left
 *       values on its register stack, which calls never do), calls goro_async_preempt_park()
 *       (which yields; the goroutine may come back on another thread), restores it all and
 *       returns with `ret $128`.
 *
 *   goro_arch_text_begin / goro_arch_text_end bound all of the above: the signal handler
 *   never diverts code between them (a half-done switch, or the stub itself).
 */
#include "frame_x86_64.h"

/* The three switches are made of four steps. */

/* Opens a hidden function: symbol, alignment, CFI, and the CET landing pad. */
.macro GORO_FUNC name
        .globl  \name
        .hidden \name
        .type   \name, @function
        .p2align 4
\name:
        .cfi_startproc
#if defined(__CET__)
        endbr64
#endif
.endm

/* Pushes the callee-saved registers and room for the control words: a SavedFrame. */
.macro GORO_SAVE_FRAME
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        subq    $8, %rsp
.endm

/* Stores the running context's MXCSR and x87 control word in its frame and copies them to
 * *cw (rdx): they are the thread's current ones. */
.macro GORO_SAVE_CONTROL_WORDS
        stmxcsr GORO_FRAME_MXCSR(%rsp)
        fnstcw  GORO_FRAME_X87CW(%rsp)
        /* Copied with loads of the stores' own sizes: one 8-byte load of the two would miss
           store forwarding and stall (a tenth of a channel round trip, measured). */
        movl    GORO_FRAME_MXCSR(%rsp), %eax
        movl    %eax, GORO_FRAME_MXCSR(%rdx)
        movzwl  GORO_FRAME_X87CW(%rsp), %eax
        movw    %ax, GORO_FRAME_X87CW(%rdx)
.endm

/* Loads the resumed goroutine's control words from its frame where they differ from the
 * thread's current ones in *cw (rdx), and updates *cw. */
.macro GORO_LOAD_CONTROL_WORDS
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
2:
.endm

/* Pops the frame GORO_SAVE_FRAME pushed and resumes at its resume address: with \how = jump
 * by popping it and jumping, with \how = ret by returning (see "Return prediction" above). */
.macro GORO_RESTORE_FRAME how
        addq    $8, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
.ifc \how,jump
        popq    %r8
        jmpq    *%r8
.else
        ret
.endif
.endm

        .text
        .globl  goro_arch_text_begin
        .hidden goro_arch_text_begin
goro_arch_text_begin:

        GORO_FUNC goro_switch_to_g0
        GORO_SAVE_FRAME
        GORO_SAVE_CONTROL_WORDS
        movq    %rsp, (%rdi)
        movq    %rsi, %rsp
        GORO_RESTORE_FRAME jump
        .cfi_endproc
        .size   goro_switch_to_g0, .-goro_switch_to_g0

        GORO_FUNC goro_switch_from_g0
        GORO_SAVE_FRAME
        movq    %rsp, (%rdi)
        movq    %rsi, %rsp
        GORO_LOAD_CONTROL_WORDS
        GORO_RESTORE_FRAME jump
        .cfi_endproc
        .size   goro_switch_from_g0, .-goro_switch_from_g0

        GORO_FUNC goro_switch_g_to_g
        GORO_SAVE_FRAME
        GORO_SAVE_CONTROL_WORDS
        movq    %rsp, (%rdi)
        movq    %rsi, %rsp
        GORO_LOAD_CONTROL_WORDS
        GORO_RESTORE_FRAME ret
        .cfi_endproc
        .size   goro_switch_g_to_g, .-goro_switch_g_to_g

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

        .globl  goro_async_preempt
        .hidden goro_async_preempt
        .type   goro_async_preempt, @function
        .p2align 4
goro_async_preempt:
        .cfi_startproc
        /* The caller's rsp is 136 above ours (return address + red zone). */
        .cfi_def_cfa_offset 136
        .cfi_offset rip, -136
#if defined(__CET__)
        endbr64
#endif
        pushfq
        .cfi_adjust_cfa_offset 8
        pushq   %rax
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset rax, 0
        pushq   %rcx
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset rcx, 0
        pushq   %rdx
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset rdx, 0
        pushq   %rbx
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset rbx, 0
        pushq   %rbp
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset rbp, 0
        pushq   %rsi
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset rsi, 0
        pushq   %rdi
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset rdi, 0
        pushq   %r8
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset r8, 0
        pushq   %r9
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset r9, 0
        pushq   %r10
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset r10, 0
        pushq   %r11
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset r11, 0
        pushq   %r12
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset r12, 0
        pushq   %r13
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset r13, 0
        pushq   %r14
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset r14, 0
        pushq   %r15
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset r15, 0
        movq    %rsp, %rbp
        .cfi_def_cfa_register rbp
        subq    goro_xsave_size(%rip), %rsp
        andq    $-64, %rsp
        /* XRSTOR faults unless the XSAVE header's reserved bytes are zero. */
        xorl    %eax, %eax
        movq    %rax, 512(%rsp)
        movq    %rax, 520(%rsp)
        movq    %rax, 528(%rsp)
        movq    %rax, 536(%rsp)
        movq    %rax, 544(%rsp)
        movq    %rax, 552(%rsp)
        movq    %rax, 560(%rsp)
        movq    %rax, 568(%rsp)
        movl    goro_xsave_mask(%rip), %eax
        movl    goro_xsave_mask+4(%rip), %edx
        xsave64 (%rsp)
        /* The interrupted code may hold values on the x87 register stack (the ABI empties it
         * only at calls): reset it, or the next goroutine on this thread would find it full. */
        fninit
        cld
        call    goro_async_preempt_park
        movl    goro_xsave_mask(%rip), %eax
        movl    goro_xsave_mask+4(%rip), %edx
        xrstor64 (%rsp)
        movq    %rbp, %rsp
        .cfi_def_cfa_register rsp
        popq    %r15
        .cfi_adjust_cfa_offset -8
        popq    %r14
        .cfi_adjust_cfa_offset -8
        popq    %r13
        .cfi_adjust_cfa_offset -8
        popq    %r12
        .cfi_adjust_cfa_offset -8
        popq    %r11
        .cfi_adjust_cfa_offset -8
        popq    %r10
        .cfi_adjust_cfa_offset -8
        popq    %r9
        .cfi_adjust_cfa_offset -8
        popq    %r8
        .cfi_adjust_cfa_offset -8
        popq    %rdi
        .cfi_adjust_cfa_offset -8
        popq    %rsi
        .cfi_adjust_cfa_offset -8
        popq    %rbp
        .cfi_adjust_cfa_offset -8
        popq    %rbx
        .cfi_adjust_cfa_offset -8
        popq    %rdx
        .cfi_adjust_cfa_offset -8
        popq    %rcx
        .cfi_adjust_cfa_offset -8
        popq    %rax
        .cfi_adjust_cfa_offset -8
        popfq
        .cfi_adjust_cfa_offset -8
        ret     $128
        .cfi_endproc
        .size   goro_async_preempt, .-goro_async_preempt

        .globl  goro_arch_text_end
        .hidden goro_arch_text_end
goro_arch_text_end:

        .section .note.GNU-stack,"",@progbits
