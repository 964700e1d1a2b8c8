/*
 * Entry of the hypervisor image, per the arm64 Linux boot protocol
 * (Documentation/arch/arm64/booting.rst): x0 = DTB physical address, x1..x3 = 0,
 * MMU off, DAIF masked, entered at EL2 (or, wrongly, at EL1).
 *
 * Why the test guest (tests/test-guest/src/guest/head.S) has its own copy rather than
 * sharing this file: it is the independent witness of the hypervisor's behaviour, and
 * code shared between the two could carry one bug past both (a wrong frame offset, a
 * wrong relocation rule). The copies also differ where it matters: exception level
 * (ELR/SPSR/VBAR of EL2 here, EL1 there), frame layout (the hypervisor saves SP and
 * asserts its TrapFrame offsets in Rust), and what the entry sets up (EL2 controls,
 * secondary CPUs' MMU). What is common is only the arm64 Image header and the vector
 * table's shape, both fixed by the architecture and booting.rst.
 */

/* Image header flags: bit 0 = 0 little-endian, bits 2:1 = 01 4K pages, bit 3 = 1 placement anywhere. */
.equ IMAGE_FLAGS, (0 << 0) | (1 << 1) | (1 << 3)
.equ R_AARCH64_RELATIVE, 1027

/*
 * CPTR_EL2 (E2H = 0): RES1 bits 13:12, 9 and 7:0; TFP (bit 10) = 0 and TZ (bit 8) = 0 so
 * the guest's FP/SIMD and SVE do not trap. EL2 itself is built soft-float and never
 * touches those registers.
 */
.equ CPTR_EL2_NO_TRAPS, 0x32ff
/* SCTLR_EL2 (E2H = 0) RES1 bits, plus I (12) and SA (3); MMU, D-cache and alignment checks off. */
.equ SCTLR_EL2_RES1, 0x30c50830
.equ SCTLR_EL2_BOOT, SCTLR_EL2_RES1 | (1 << 12) | (1 << 3)
/* HCR_EL2: RW (31) = EL1 is AArch64; nothing trapped yet, E2H = 0 (nVHE layout of EL2 registers). */
.equ HCR_EL2_BOOT, (1 << 31)

.macro adr_l reg, sym
    adrp    \reg, \sym
    add     \reg, \reg, :lo12:\sym
.endm

/* The EL2 controls every CPU starts with; clobbers \tmp. */
.macro el2_controls tmp
    mov     \tmp, #CPTR_EL2_NO_TRAPS
    msr     cptr_el2, \tmp
    ldr     \tmp, =SCTLR_EL2_BOOT
    msr     sctlr_el2, \tmp
    mov     \tmp, #HCR_EL2_BOOT
    msr     hcr_el2, \tmp
    adr_l   \tmp, el2_vectors
    msr     vbar_el2, \tmp
    isb                                 // context synchronisation before relying on the new controls
.endm

.section .text.head, "ax"
.global _start
_start:
    b       primary_entry               // code0
    .long   0                           // code1
    .quad   0                           // text_offset: load at a 2 MiB boundary
    .quad   __image_size                // image_size: the whole footprint, bss and stack included
    .quad   IMAGE_FLAGS                 // flags
    .quad   0                           // res2
    .quad   0                           // res3
    .quad   0                           // res4
    .ascii  "ARM\x64"                   // magic
    .long   0                           // res5: no PE/COFF header

primary_entry:
    mrs     x20, cntpct_el0             // boot timestamp, before anything else
    mov     x19, x0                     // DTB physical address

    adr_l   x1, __boot_stack_top
    mov     sp, x1

    /* Zero .bss; the stack lives in its own section above it. */
    adr_l   x1, __bss_start
    adr_l   x2, __bss_end
0:  cmp     x1, x2
    b.hs    1f
    stp     xzr, xzr, [x1], #16
    b       0b
1:
    /*
     * Self-relocation: the image is linked at 0, so each R_AARCH64_RELATIVE entry asks
     * for *(base + r_offset) = base + r_addend. Any other relocation type means the
     * link went wrong: stop before running code that would use a bad pointer.
     */
    adr_l   x3, _start
    adr_l   x4, __rela_start
    adr_l   x5, __rela_end
2:  cmp     x4, x5
    b.hs    3f
    ldp     x6, x7, [x4], #16           // r_offset, r_info
    ldr     x8, [x4], #8                // r_addend
    cmp     w7, #R_AARCH64_RELATIVE
    b.ne    park
    add     x8, x8, x3
    str     x8, [x3, x6]
    b       2b
3:
    mrs     x21, CurrentEL
    ubfx    x21, x21, #2, #2
    cmp     x21, #2
    b.ne    not_at_el2

    el2_controls x1

    mov     x0, x19
    mov     x1, x20
    bl      primary_main                // never returns
    b       park

not_at_el2:
    cmp     x21, #1
    b.ne    park                        // EL3 or EL0: no way to report; stop
    mov     x0, x19
    mov     x1, x20
    mov     x2, x21
    bl      not_at_el2_main             // reports on the console and powers off
    b       park

/*
 * Secondary CPUs, started by the hypervisor (cpus.rs) through firmware PSCI CPU_ON
 * with x0 = their index in the hypervisor's CPU table, once at boot and again whenever
 * there is work for them; the image is already relocated and .bss is live. Each CPU turns its MMU on with the boot CPU's tables and controls
 * (`secondary_mmu`, written and cleaned to the PoC by the boot CPU before CPU_ON) before
 * it touches memory any other CPU shares: with the MMU off every data access is
 * Device-nGnRnE (Arm ARM D8.2.10, "The effects of disabling a stage of address
 * translation"), so exclusives would not work and stores would go around the caches the
 * other CPUs read through. Until then it reads only `secondary_mmu` and uses no stack.
 * Each gets SECONDARY_STACK_SIZE bytes of __secondary_stacks, above a guard page.
 */
.equ SECONDARY_STACK_SIZE, 0x4000
.equ SECONDARY_STACK_STRIDE, 0x5000     // 4 KiB guard page (unmapped) + the stack
.equ SCTLR_M, (1 << 0)
.global secondary_entry
secondary_entry:
    mov     x19, x0
    el2_controls x1
    adr_l   x1, secondary_mmu
    ldp     x2, x3, [x1]                // MAIR_EL2, TCR_EL2
    ldp     x4, x5, [x1, #16]           // TTBR0_EL2, SCTLR_EL2 (M, C, I, WXN set)
    tst     x5, #SCTLR_M
    b.eq    park                        // the boot CPU never published its MMU state
    msr     mair_el2, x2
    msr     tcr_el2, x3
    msr     ttbr0_el2, x4
    /*
     * The TLB's contents after reset are UNKNOWN (Arm ARM D8.16, "TLB maintenance
     * requirements ... at reset"): drop whatever it holds for EL2, locally, complete it,
     * and synchronise the new controls before the MMU is enabled (D19.2.3).
     */
    isb
    tlbi    alle2
    dsb     nsh
    isb
    msr     sctlr_el2, x5
    isb                                 // MMU on for the instructions after this
    adr_l   x1, __secondary_stacks
    mov     x2, #SECONDARY_STACK_STRIDE
    madd    x1, x19, x2, x1             // this CPU's slot: guard page, then the stack
    add     x1, x1, #SECONDARY_STACK_STRIDE
    mov     sp, x1                      // top of this CPU's stack
    mov     x0, x19
    bl      secondary_main              // (index, stack top); never returns
    b       park

/*
 * First entry into a guest vCPU: x0 = the guest's x0, x1 = entry point, x2 = the top of
 * this CPU's EL2 stack (traps from the guest save their frame just below it). All other
 * general-purpose registers are cleared so nothing of EL2 leaks to the guest.
 */
.global guest_first_entry
guest_first_entry:
    mov     sp, x2
    msr     elr_el2, x1
    mov     x1, #0x3c5                  // SPSR: EL1h, D, A, I, F masked (booting.rst)
    msr     spsr_el2, x1
    .irp reg, 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30
    mov     x\reg, xzr
    .endr
    eret

.global park
park:
    msr     daifset, #0xf
0:  wfi
    b       0b

.ltorg
