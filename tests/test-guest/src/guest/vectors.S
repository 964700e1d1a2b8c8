/*
 * EL1 exception vectors (VBAR_EL1). Every entry saves x0..x30, ELR_EL1 and SPSR_EL1 in a
 * frame on the current stack and calls el1_exception(frame, vector index); the handler
 * may change the saved ELR (to skip a faulting instruction) before the eret.
 *
 * Frame (struct Frame in exceptions.rs): x0..x30 at 0..0xf0, ELR at 0xf8, SPSR at 0x100.
 *
 * Deliberately not shared with the hypervisor's hypervisor/src/arch/aarch64/vectors.S: see
 * the note there (the test guest is an independent witness; EL1, not EL2).
 */
.equ FRAME_SIZE, 0x110

.macro vector_entry index
    .balign 0x80
    sub     sp, sp, #FRAME_SIZE
    stp     x0, x1, [sp, #0x00]
    mov     x0, #\index
    b       el1_exception_common
.endm

.section .text.vectors, "ax"
.balign 0x800
.global el1_vectors
el1_vectors:
    /* Current EL with SP_EL0 */
    vector_entry 0
    vector_entry 1
    vector_entry 2
    vector_entry 3
    /* Current EL with SP_ELx: where the guest runs (EL1h) */
    vector_entry 4
    vector_entry 5
    vector_entry 6
    vector_entry 7
    /* Lower EL, AArch64 */
    vector_entry 8
    vector_entry 9
    vector_entry 10
    vector_entry 11
    /* Lower EL, AArch32 */
    vector_entry 12
    vector_entry 13
    vector_entry 14
    vector_entry 15

el1_exception_common:
    stp     x2, x3, [sp, #0x10]
    stp     x4, x5, [sp, #0x20]
    stp     x6, x7, [sp, #0x30]
    stp     x8, x9, [sp, #0x40]
    stp     x10, x11, [sp, #0x50]
    stp     x12, x13, [sp, #0x60]
    stp     x14, x15, [sp, #0x70]
    stp     x16, x17, [sp, #0x80]
    stp     x18, x19, [sp, #0x90]
    stp     x20, x21, [sp, #0xa0]
    stp     x22, x23, [sp, #0xb0]
    stp     x24, x25, [sp, #0xc0]
    stp     x26, x27, [sp, #0xd0]
    stp     x28, x29, [sp, #0xe0]
    mrs     x2, elr_el1
    mrs     x3, spsr_el1
    stp     x30, x2, [sp, #0xf0]
    str     x3, [sp, #0x100]
    mov     x1, x0                      // vector index
    mov     x0, sp                      // frame
    bl      el1_exception
    ldp     x30, x2, [sp, #0xf0]
    ldr     x3, [sp, #0x100]
    msr     elr_el1, x2
    msr     spsr_el1, x3
    ldp     x0, x1, [sp, #0x00]
    ldp     x2, x3, [sp, #0x10]
    ldp     x4, x5, [sp, #0x20]
    ldp     x6, x7, [sp, #0x30]
    ldp     x8, x9, [sp, #0x40]
    ldp     x10, x11, [sp, #0x50]
    ldp     x12, x13, [sp, #0x60]
    ldp     x14, x15, [sp, #0x70]
    ldp     x16, x17, [sp, #0x80]
    ldp     x18, x19, [sp, #0x90]
    ldp     x20, x21, [sp, #0xa0]
    ldp     x22, x23, [sp, #0xb0]
    ldp     x24, x25, [sp, #0xc0]
    ldp     x26, x27, [sp, #0xd0]
    ldp     x28, x29, [sp, #0xe0]
    add     sp, sp, #FRAME_SIZE
    eret
