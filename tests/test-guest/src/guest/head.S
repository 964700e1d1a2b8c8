/*
 * Entry of the test guest, per the arm64 Linux boot protocol (booting.rst): x0 = DTB
 * physical address, MMU off, DAIF masked, EL1 (the hypervisor, or QEMU without
 * virtualization=on). Modelled on hypervisor/src/arch/aarch64/head.S.
 *
 * Deliberately not shared with the hypervisor's hypervisor/src/arch/aarch64/head.S: see
 * the note there (the test guest is an independent witness; EL1, not EL2).
 */

/* Image header flags: bit 0 = 0 little-endian, bits 2:1 = 01 4K pages, bit 3 = 1 anywhere. */
.equ IMAGE_FLAGS, (0 << 0) | (1 << 1) | (1 << 3)
.equ R_AARCH64_RELATIVE, 1027

.macro adr_l reg, sym
    adrp    \reg, \sym
    add     \reg, \reg, :lo12:\sym
.endm

.section .text.head, "ax"
.global _start
_start:
    b       primary_entry               // code0
    .long   0                           // code1
    .quad   0                           // text_offset: at a 2 MiB boundary
    .quad   __image_size                // image_size: bss and stacks included
    .quad   IMAGE_FLAGS                 // flags
    .quad   0                           // res2
    .quad   0                           // res3
    .quad   0                           // res4
    .ascii  "ARM\x64"                   // magic
    .long   0                           // res5: no PE/COFF header

primary_entry:
    msr     daifset, #0xf
    mov     x19, x0                     // DTB physical address
    adr_l   x1, __boot_stack_top
    mov     sp, x1
    msr     tpidr_el1, xzr              // this CPU's slot: 0, the boot CPU
    adr_l   x1, el1_vectors
    msr     vbar_el1, x1
    isb

    /* Zero .bss (the stacks are in their own section above it). */
    adr_l   x1, __bss_start
    adr_l   x2, __bss_end
0:  cmp     x1, x2
    b.hs    1f
    stp     xzr, xzr, [x1], #16
    b       0b
1:
    /*
     * Self-relocation: linked at 0, so each R_AARCH64_RELATIVE entry asks for
     * *(base + r_offset) = base + r_addend. Any other type means a bad link: stop.
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
    mov     x0, x19
    bl      primary_main                // never returns
    b       park

/*
 * The secondary CPU, started by PSCI CPU_ON with x0 = its slot (context id), MMU off.
 * It takes its stack and the boot CPU's translation controls from SECONDARY_BOOT
 * (cleaned to the point of coherency before CPU_ON) and turns its MMU on before
 * touching memory through a cacheable alias.
 */
.global secondary_entry
secondary_entry:
    msr     daifset, #0xf
    mov     x19, x0
    adr_l   x1, SECONDARY_BOOT
    ldp     x2, x3, [x1]                // stack top, MAIR_EL1
    ldp     x4, x5, [x1, #16]           // TCR_EL1, TTBR0_EL1
    ldp     x6, x7, [x1, #32]           // SCTLR_EL1, VBAR_EL1
    mov     sp, x2
    msr     tpidr_el1, x19
    msr     vbar_el1, x7
    msr     mair_el1, x3
    msr     tcr_el1, x4
    msr     ttbr0_el1, x5
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    msr     sctlr_el1, x6
    isb
    ic      iallu
    dsb     nsh
    isb
    mov     x0, x19
    bl      secondary_main              // never returns
    b       park

.global park
park:
    msr     daifset, #0xf
0:  wfi
    b       0b
