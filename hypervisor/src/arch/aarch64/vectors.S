/*
 * EL2 exception vectors. Each entry saves x0/x1, passes its slot number and joins
 * trap_common, which saves the full register file as a TrapFrame (see trap.rs) on the
 * EL2 stack, calls el2_trap(frame, slot) and restores the (possibly changed) frame.
 *
 * Why the test guest (tests/test-guest/src/guest/vectors.S) has its own copy rather than
 * sharing this file: it is the independent witness of the hypervisor's behaviour, and
 * code shared between the two could carry one bug past both (a wrong frame offset, a
 * wrong relocation rule). The copies also differ where it matters: exception level
 * (ELR/SPSR/VBAR of EL2 here, EL1 there), frame layout (the hypervisor saves SP and
 * asserts its TrapFrame offsets in Rust), and what the entry sets up (EL2 controls,
 * secondary CPUs' MMU). What is common is only the arm64 Image header and the vector
 * table's shape, both fixed by the architecture and booting.rst.
 */

.equ FRAME_SIZE, 272                    // 31 GPRs + SP + ELR + SPSR, 16-byte multiple

.macro vector_entry slot
    .balign 0x80
    sub     sp, sp, #FRAME_SIZE
    stp     x0, x1, [sp, #0]
    mov     x0, #\slot
    b       trap_common
.endm

.section .text.vectors, "ax"
.balign 0x800
.global el2_vectors
el2_vectors:
    vector_entry 0                      // current EL, SP_EL0: synchronous
    vector_entry 1                      //                     IRQ
    vector_entry 2                      //                     FIQ
    vector_entry 3                      //                     SError
    vector_entry 4                      // current EL, SP_ELx: synchronous
    vector_entry 5                      //                     IRQ
    vector_entry 6                      //                     FIQ
    vector_entry 7                      //                     SError
    vector_entry 8                      // lower EL, AArch64:  synchronous
    vector_entry 9                      //                     IRQ
    vector_entry 10                     //                     FIQ
    vector_entry 11                     //                     SError
    vector_entry 12                     // lower EL, AArch32:  synchronous
    vector_entry 13                     //                     IRQ
    vector_entry 14                     //                     FIQ
    vector_entry 15                     //                     SError

trap_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    add     x1, sp, #FRAME_SIZE         // the interrupted SP (for a trap taken at EL2)
    stp     x30, x1, [sp, #240]
    mrs     x1, elr_el2
    mrs     x2, spsr_el2
    stp     x1, x2, [sp, #256]

    mov     x1, x0                      // slot
    mov     x0, sp                      // &mut TrapFrame
    mov     x29, xzr                    // terminate frame-pointer backtraces here
    bl      el2_trap

    ldp     x1, x2, [sp, #256]
    msr     elr_el2, x1
    msr     spsr_el2, x2
    ldr     x30, [sp, #240]
    ldp     x28, x29, [sp, #224]
    ldp     x26, x27, [sp, #208]
    ldp     x24, x25, [sp, #192]
    ldp     x22, x23, [sp, #176]
    ldp     x20, x21, [sp, #160]
    ldp     x18, x19, [sp, #144]
    ldp     x16, x17, [sp, #128]
    ldp     x14, x15, [sp, #112]
    ldp     x12, x13, [sp, #96]
    ldp     x10, x11, [sp, #80]
    ldp     x8, x9, [sp, #64]
    ldp     x6, x7, [sp, #48]
    ldp     x4, x5, [sp, #32]
    ldp     x2, x3, [sp, #16]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #FRAME_SIZE
    eret
