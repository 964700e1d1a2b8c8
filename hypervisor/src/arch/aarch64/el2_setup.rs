//! EL2 controls for running a guest at EL1 (nVHE, E2H = 0): what traps, what the guest
//! owns, and the EL1 state the Linux boot protocol expects at entry.
//!
//! The guest owns the GICv3 CPU interface and its timers (as pKVM's host does): physical
//! interrupts go straight to EL1 (HCR_EL2.IMO/FMO = 0). Features the CPU has are opened to
//! the guest explicitly, because their EL2 trap controls reset to "trap".

use crate::cpu::features::GuestFeatures;

use super::sysreg::write_sysreg;

/// HCR_EL2 while the guest runs.
pub fn guest_hcr(features: &GuestFeatures) -> u64 {
    const VM: u64 = 1 << 0; // stage 2 on
    const SWIO: u64 = 1 << 1; // set/way invalidate becomes clean+invalidate
    const FB: u64 = 1 << 9; // force broadcast of EL1 TLB/cache maintenance
    const BSU_INNER: u64 = 1 << 10; // barriers upgraded to inner shareable
    const TSC: u64 = 1 << 19; // trap SMC: PSCI is ours
    const TACR: u64 = 1 << 21; // trap ACTLR_EL1: its content is implementation defined
    const RW: u64 = 1 << 31; // EL1 is AArch64
    const TERR: u64 = 1 << 36; // trap the RAS error-record registers (FEAT_RAS)
    const TIDCP: u64 = 1 << 20; // trap the implementation-defined encodings
    const APK: u64 = 1 << 40; // pointer-auth key registers not trapped
    const API: u64 = 1 << 41; // pointer-auth instructions not trapped
    const ATA: u64 = 1 << 56; // MTE allocation-tag access allowed at EL1/EL0
    // What the guest may reach through TACR/TERR/TIDCP is decided in
    // `crate::vm::sysreg_trap`.
    let mut hcr = VM | SWIO | FB | BSU_INNER | TSC | TACR | RW | TIDCP | APK | API;
    if features.ras {
        hcr |= TERR;
    }
    if features.mte2 {
        hcr |= ATA;
    }
    hcr
}

/// Programs the EL2 controls and the EL1 reset state for this CPU's guest vCPU.
/// `vtcr` and `vttbr` describe the guest's stage-2 tables; `mpidr` is the vCPU's MPIDR.
pub fn configure_for_guest(features: &GuestFeatures, vtcr: u64, vttbr: u64, midr: u64, mpidr: u64) {
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
    // PMU and debug: no traps; all event counters belong to the guest (MDCR_EL2.HPMN),
    // but they do not count at EL2 (HPMD, FEAT_PMUv3p1): the guest's profile must not
    // show the hypervisor's work.
    const HPMD: u64 = 1 << 17;
    let hpmd = if features.pmuv3p1 { HPMD } else { 0 };
    write_sysreg!("mdcr_el2", features.pmu_counters | hpmd);

    // FP/SIMD and SVE are never trapped (CPTR_EL2.TFP/TZ = 0); SME only when implemented
    // (TSM, bit 12, is RES1 otherwise).
    let mut cptr: u64 = 0x32ff;
    if features.sme {
        cptr &= !(1 << 12);
    }
    write_sysreg!("cptr_el2", cptr);
    crate::arch::aarch64::barrier_isb();
    if features.sve {
        write_sysreg!("s3_4_c1_c2_0", 0xf); // ZCR_EL2.LEN: the largest vector length
    }
    if features.sme {
        let mut smcr = 0xf; // SMCR_EL2.LEN
        if features.sme_fa64 {
            smcr |= 1 << 31;
        }
        if features.sme2 {
            smcr |= 1 << 30; // EZT0
        }
        write_sysreg!("s3_4_c1_c2_6", smcr);
    }

    if features.hcx {
        let mut hcrx = 0u64;
        if features.mops {
            hcrx |= 1 << 11; // MSCEn: CPY*/SET* usable at EL1/EL0
        }
        if features.tcr2 {
            hcrx |= 1 << 14; // TCR2En
        }
        if features.sctlr2 {
            hcrx |= 1 << 15; // SCTLR2En
        }
        if features.gcs {
            hcrx |= 1 << 22; // GCSEn
        }
        write_sysreg!("s3_4_c1_c2_2", hcrx); // HCRX_EL2
    }

    if features.fgt {
        // Fine-grained traps reset to 0, and for the "n" bits 0 means trap: open the
        // registers of the features this CPU has.
        let mut fgr = 0u64;
        if features.s1pie {
            fgr |= (1 << 58) | (1 << 57); // nPIR_EL1, nPIRE0_EL1
        }
        if features.s1poe {
            fgr |= (1 << 60) | (1 << 59); // nPOR_EL1, nPOR_EL0
        }
        if features.sme {
            fgr |= (1 << 55) | (1 << 54); // nTPIDR2_EL0, nSMPRI_EL1
        }
        if features.gcs {
            fgr |= (1 << 53) | (1 << 52); // nGCS_EL1, nGCS_EL0
        }
        if features.the {
            fgr |= 1 << 56; // nRCWMASK_EL1
        }
        write_sysreg!("s3_4_c1_c1_4", fgr); // HFGRTR_EL2
        write_sysreg!("s3_4_c1_c1_5", fgr); // HFGWTR_EL2
        let mut fgi = 0u64;
        if features.gcs {
            fgi |= (1 << 59) | (1 << 58) | (1 << 57); // nGCSEPP, nGCSSTR_EL1, nGCSPUSHM_EL1
        }
        write_sysreg!("s3_4_c1_c1_6", fgi); // HFGITR_EL2
        write_sysreg!("s3_4_c3_c1_4", 0); // HDFGRTR_EL2
        write_sysreg!("s3_4_c3_c1_5", 0); // HDFGWTR_EL2
    }

    // EL1 as booting.rst wants it: MMU and caches off (SCTLR_EL1 RES1 bits only).
    write_sysreg!("sctlr_el1", 0x30d0_0800);

    write_sysreg!("vtcr_el2", vtcr);
    write_sysreg!("vttbr_el2", vttbr);
    write_sysreg!("hcr_el2", guest_hcr(features));
    // Arm ARM: a direct write to a system register needs a context synchronisation event
    // before later instructions rely on it (D19.2.3 "Synchronization requirements").
    crate::arch::aarch64::barrier_isb();
    // This PE's TLB may hold entries tagged with this VMID from before (its contents
    // are UNKNOWN after reset, and the VMID's stage 2 was edited before it went live
    // here): drop them, locally, before the vCPU's first instruction (as KVM does when a
    // VMID is first used on a CPU). TLBI VMALLS12E1 acts on the VMID now in VTTBR_EL2;
    // DSB NSH completes it on this PE, ISB before the ERET.
    // SAFETY: TLB maintenance and barriers only.
    unsafe {
        core::arch::asm!(
            "tlbi vmalls12e1",
            "dsb nsh",
            "isb",
            options(nostack, preserves_flags)
        )
    };
}
