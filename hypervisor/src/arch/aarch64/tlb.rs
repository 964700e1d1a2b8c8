//! This PE's own TLB maintenance (non-shareable): the sequences the boot, the crash
//! path, conflict-abort retries and a vCPU's first entry need. Broadcast maintenance of
//! live tables is the engine's (`mm::table_hw`).

/// Drops every EL2 entry of this PE's TLB and completes it before what follows:
/// `ISB` (earlier writes of TTBR0/TCR/MAIR_EL2 take effect, D19.2.3), `TLBI ALLE2`,
/// `DSB NSH` (a TLBI is only complete after a DSB; non-shareable suffices for a local
/// one), `ISB` (later instructions, and an ERET, see the result).
pub fn invalidate_el2_locally() {
    // SAFETY: TLB maintenance and barriers only; no memory is accessed.
    unsafe {
        core::arch::asm!(
            "isb",
            "tlbi alle2",
            "dsb nsh",
            "isb",
            options(nostack, preserves_flags)
        )
    };
}

/// Drops this PE's stage-1 and stage-2 entries of the VMID now in VTTBR_EL2
/// (`TLBI VMALLS12E1`), completed (`DSB NSH`) and synchronised (`ISB`) before the ERET
/// into the guest.
pub fn invalidate_vmid_locally() {
    // SAFETY: TLB maintenance and barriers only; no memory is accessed.
    unsafe {
        core::arch::asm!(
            "tlbi vmalls12e1",
            "dsb nsh",
            "isb",
            options(nostack, preserves_flags)
        )
    };
}
