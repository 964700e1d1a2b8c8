//! Writes a guest vCPU's EL2 controls (computed in `vm::controls`) and the EL1 reset
//! state the Linux boot protocol expects at entry.

use crate::vm::controls::GuestControls;

use super::sysreg::write_sysreg;

/// Programs the EL2 controls and the EL1 reset state for this CPU's guest vCPU.
/// `vtcr` and `vttbr` describe the guest's stage-2 tables; `mpidr` is the vCPU's MPIDR.
pub fn configure_for_guest(controls: &GuestControls, vtcr: u64, vttbr: u64, midr: u64, mpidr: u64) {
    // Timers: EL1 may use the physical counter and timer (CNTHCTL_EL2.EL1PCTEN/EL1PCEN);
    // the virtual counter equals the physical one.
    write_sysreg!("cnthctl_el2", 0b11);
    write_sysreg!("cntvoff_el2", 0);
    // The guest sees the real CPU identity (one vCPU per physical CPU).
    write_sysreg!("vpidr_el2", midr);
    write_sysreg!("vmpidr_el2", mpidr);
    // GICv3: system-register interface on, and EL1 may enable its own (ICC_SRE_EL2.Enable).
    write_sysreg!("icc_sre_el2", 0b1001);
    write_sysreg!("ich_hcr_el2", 0);
    write_sysreg!("mdcr_el2", controls.mdcr);
    write_sysreg!("cptr_el2", controls.cptr);
    // ZCR/SMCR_EL2 are only accessible once CPTR_EL2 stops trapping them (D19.2.3).
    crate::arch::aarch64::barrier_isb();
    if let Some(zcr) = controls.zcr {
        write_sysreg!("s3_4_c1_c2_0", zcr); // ZCR_EL2
    }
    if let Some(smcr) = controls.smcr {
        write_sysreg!("s3_4_c1_c2_6", smcr); // SMCR_EL2
    }
    if let Some(hcrx) = controls.hcrx {
        write_sysreg!("s3_4_c1_c2_2", hcrx); // HCRX_EL2
    }
    if let Some(fgt) = controls.fine_grained {
        write_sysreg!("s3_4_c1_c1_4", fgt.registers); // HFGRTR_EL2
        write_sysreg!("s3_4_c1_c1_5", fgt.registers); // HFGWTR_EL2
        write_sysreg!("s3_4_c1_c1_6", fgt.instructions); // HFGITR_EL2
        write_sysreg!("s3_4_c3_c1_4", 0); // HDFGRTR_EL2
        write_sysreg!("s3_4_c3_c1_5", 0); // HDFGWTR_EL2
    }

    // EL1 as booting.rst wants it: MMU and caches off (SCTLR_EL1 RES1 bits only).
    write_sysreg!("sctlr_el1", 0x30d0_0800);

    write_sysreg!("vtcr_el2", vtcr);
    write_sysreg!("vttbr_el2", vttbr);
    write_sysreg!("hcr_el2", controls.hcr);
    // Arm ARM: a direct write to a system register needs a context synchronisation event
    // before later instructions rely on it (D19.2.3 "Synchronization requirements").
    crate::arch::aarch64::barrier_isb();
    // This PE's TLB may hold entries tagged with this VMID from before (its contents
    // are UNKNOWN after reset, and the VMID's stage 2 was edited before it went live
    // here): drop them, locally, before the vCPU's first instruction (as KVM does when a
    // VMID is first used on a CPU). TLBI VMALLS12E1 acts on the VMID now in VTTBR_EL2;
    // DSB NSH completes it on this PE, ISB before the ERET.
    super::tlb::invalidate_vmid_locally();
}
