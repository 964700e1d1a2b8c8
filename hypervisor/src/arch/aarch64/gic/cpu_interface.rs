//! The EL2 side of this CPU's GICv3 CPU interface (ICC_*): the hypervisor acknowledges
//! every physical interrupt, drops its priority at once and deactivates it either itself
//! or through the guest (a hardware-linked list register, ICC_CTLR_EL1.EOImode = 1).
//!
//! At EL2 the ICC_*_EL1 names reach the physical interface; a guest at EL1 with
//! HCR_EL2.IMO/FMO = 1 reaches the virtual one (ICV_*) instead (IHI 0069 §12.1.9).

use crate::arch::aarch64::sysreg::{read_sysreg, write_sysreg};
use crate::arch::gicv3;

/// ICC_SRE_EL2: SRE (system registers), DFB/DIB (no legacy bypass), Enable (EL1 may use
/// its own ICC_SRE_EL1, which the guest's vGIC needs set; IHI 0069 §12.2.24).
const SRE_EL2: u64 = 0b1111;
/// ICC_CTLR_EL1.EOImode: ICC_EOIR1 only drops priority; ICC_DIR deactivates (§12.2.6).
const CTLR_EOI_MODE: u64 = 1 << 1;

/// Turns this CPU's interface on for the hypervisor: every priority unmasked, Group 1 on,
/// split priority drop / deactivation.
pub fn init_this_cpu() {
    write_sysreg!("icc_sre_el2", SRE_EL2);
    // The SRE write must be synchronised before ICC_* accesses rely on it (§12.2.24).
    crate::arch::aarch64::barrier_isb();
    write_sysreg!("icc_pmr_el1", 0xff);
    write_sysreg!("icc_bpr1_el1", 0);
    write_sysreg!("icc_ctlr_el1", CTLR_EOI_MODE);
    write_sysreg!("icc_igrpen1_el1", 1);
    crate::arch::aarch64::barrier_isb();
}

/// Acknowledges the highest-priority pending Group 1 interrupt: its INTID, or `None` if
/// the read returned a special INTID (nothing pending, 1023).
pub fn acknowledge() -> Option<u32> {
    let intid = (read_sysreg!("icc_iar1_el1") & 0xff_ffff) as u32;
    // The acknowledge must complete before the handler reads the state the interrupt
    // announces (a device register, another CPU's stores): Linux's gic_read_iar has the
    // same DSB SY for the same reason.
    // SAFETY: a barrier touches no memory.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
    (intid < gicv3::FIRST_SPECIAL_INTID).then_some(intid)
}

/// Drops the running priority of `intid` (EOImode = 1: it stays active).
pub fn drop_priority(intid: u32) {
    write_sysreg!("icc_eoir1_el1", u64::from(intid));
    crate::arch::aarch64::barrier_isb();
}

/// Deactivates `intid`, after its priority was dropped.
pub fn deactivate(intid: u32) {
    write_sysreg!("icc_dir_el1", u64::from(intid));
    crate::arch::aarch64::barrier_isb();
}

/// Sends SGI `intid` to the PE `mpidr`.
pub fn send_sgi(mpidr: u64, intid: u32) {
    let Some(value) = gicv3::sgi1r_to(mpidr, intid) else {
        return;
    };
    // The target reads what this CPU stored (its vCPU's pending interrupts) when the SGI
    // arrives; an SGI register write is not a memory access, so a DSB must order the
    // stores before it (as Linux's gic_ipi_send_mask: dsb(ishst)).
    // SAFETY: a barrier touches no memory.
    unsafe { core::arch::asm!("dsb ishst", options(nostack, preserves_flags)) };
    write_sysreg!("icc_sgi1r_el1", value);
    crate::arch::aarch64::barrier_isb();
}
