//! The EL2 control values a guest's vCPU runs with (nVHE, E2H = 0), computed from the CPU's
//! features: what traps, what the guest owns. Pure values, tested on the host; the EL2
//! layer (`arch::aarch64::el2_setup`) only writes them.
//!
//! The hypervisor owns the GIC: physical interrupts are taken at EL2 (HCR_EL2.IMO/FMO =
//! 1), the guest's EL1 accesses to the CPU interface reach the virtual one (ICV_*), and
//! its SGI-generation register writes trap (`vm::vgic`, `vm::interrupts`). The guest owns
//! its timers. Features the CPU has are opened to the guest explicitly, because their EL2
//! trap controls reset to "trap".

use crate::cpu::features::GuestFeatures;

/// Fine-grained trap controls (FEAT_FGT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FineGrainedTraps {
    /// HFGRTR_EL2 and HFGWTR_EL2 (the same bits for reads and writes).
    pub registers: u64,
    /// HFGITR_EL2.
    pub instructions: u64,
}

/// Every EL2 control a vCPU's entry writes that depends on the CPU's features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestControls {
    pub hcr: u64,
    pub mdcr: u64,
    pub cptr: u64,
    /// ZCR_EL2, with SVE.
    pub zcr: Option<u64>,
    /// SMCR_EL2, with SME.
    pub smcr: Option<u64>,
    /// HCRX_EL2, with FEAT_HCX.
    pub hcrx: Option<u64>,
    /// With FEAT_FGT.
    pub fine_grained: Option<FineGrainedTraps>,
}

/// HCR_EL2 while the guest runs.
pub fn guest_hcr(features: &GuestFeatures) -> u64 {
    const VM: u64 = 1 << 0; // stage 2 on
    const SWIO: u64 = 1 << 1; // set/way invalidate becomes clean+invalidate
    const FMO: u64 = 1 << 3; // physical FIQs to EL2, virtual FIQs to the guest
    const IMO: u64 = 1 << 4; // physical IRQs to EL2, virtual IRQs to the guest
    const FB: u64 = 1 << 9; // force broadcast of EL1 TLB/cache maintenance
    const BSU_INNER: u64 = 1 << 10; // barriers upgraded to inner shareable
    const TSC: u64 = 1 << 19; // trap SMC: PSCI is ours
    const TIDCP: u64 = 1 << 20; // trap the implementation-defined encodings
    const TACR: u64 = 1 << 21; // trap ACTLR_EL1: its content is implementation defined
    const RW: u64 = 1 << 31; // EL1 is AArch64
    const TERR: u64 = 1 << 36; // trap the RAS error-record registers (FEAT_RAS)
    const APK: u64 = 1 << 40; // pointer-auth key registers not trapped
    const API: u64 = 1 << 41; // pointer-auth instructions not trapped
    const ATA: u64 = 1 << 56; // MTE allocation-tag access allowed at EL1/EL0
    // What the guest may reach through TACR/TERR/TIDCP is decided in `vm::sysreg_trap`.
    let mut hcr = VM | SWIO | FMO | IMO | FB | BSU_INNER | TSC | TACR | RW | TIDCP | APK | API;
    if features.ras {
        hcr |= TERR;
    }
    if features.mte2 {
        hcr |= ATA;
    }
    hcr
}

/// MDCR_EL2: no PMU or debug traps; every event counter belongs to the guest (HPMN), but
/// none counts at EL2 (HPMD, FEAT_PMUv3p1): the guest's profile must not show the
/// hypervisor's work.
fn guest_mdcr(features: &GuestFeatures) -> u64 {
    const HPMD: u64 = 1 << 17;
    features.pmu_counters | if features.pmuv3p1 { HPMD } else { 0 }
}

/// CPTR_EL2 (E2H = 0): RES1 bits 13:12, 9 and 7:0; FP/SIMD (TFP, bit 10) and SVE (TZ,
/// bit 8) never trapped; SME (TSM, bit 12) opened when implemented (RES1 otherwise).
fn guest_cptr(features: &GuestFeatures) -> u64 {
    const RES1_AND_NO_TRAPS: u64 = 0x32ff;
    const TSM: u64 = 1 << 12;
    if features.sme {
        RES1_AND_NO_TRAPS & !TSM
    } else {
        RES1_AND_NO_TRAPS
    }
}

/// SMCR_EL2: the largest vector length (LEN = 0xf), FA64 and ZT0 where implemented.
fn guest_smcr(features: &GuestFeatures) -> u64 {
    const LEN_MAX: u64 = 0xf;
    const FA64: u64 = 1 << 31;
    const EZT0: u64 = 1 << 30;
    LEN_MAX | if features.sme_fa64 { FA64 } else { 0 } | if features.sme2 { EZT0 } else { 0 }
}

/// HCRX_EL2: the EL1 controls of the features this CPU has.
fn guest_hcrx(features: &GuestFeatures) -> u64 {
    const MSCEN: u64 = 1 << 11; // CPY*/SET* usable at EL1/EL0
    const TCR2EN: u64 = 1 << 14;
    const SCTLR2EN: u64 = 1 << 15;
    const GCSEN: u64 = 1 << 22;
    [
        (features.mops, MSCEN),
        (features.tcr2, TCR2EN),
        (features.sctlr2, SCTLR2EN),
        (features.gcs, GCSEN),
    ]
    .iter()
    .filter(|(has, _)| *has)
    .fold(0, |hcrx, (_, bit)| hcrx | bit)
}

/// Fine-grained traps reset to 0, and for the "n" bits 0 means trap: open the registers
/// and instructions of the features this CPU has.
fn guest_fine_grained_traps(features: &GuestFeatures) -> FineGrainedTraps {
    let registers = [
        (features.s1pie, (1 << 58) | (1 << 57)), // nPIR_EL1, nPIRE0_EL1
        (features.s1poe, (1 << 60) | (1 << 59)), // nPOR_EL1, nPOR_EL0
        (features.sme, (1 << 55) | (1 << 54)),   // nTPIDR2_EL0, nSMPRI_EL1
        (features.gcs, (1 << 53) | (1 << 52)),   // nGCS_EL1, nGCS_EL0
        (features.the, 1 << 56),                 // nRCWMASK_EL1
    ]
    .iter()
    .filter(|(has, _)| *has)
    .fold(0u64, |bits, (_, open)| bits | open);
    // nGCSEPP, nGCSSTR_EL1, nGCSPUSHM_EL1.
    let instructions = if features.gcs {
        (1 << 59) | (1 << 58) | (1 << 57)
    } else {
        0
    };
    FineGrainedTraps {
        registers,
        instructions,
    }
}

impl GuestControls {
    pub fn for_features(features: &GuestFeatures) -> Self {
        const ZCR_LEN_MAX: u64 = 0xf;
        Self {
            hcr: guest_hcr(features),
            mdcr: guest_mdcr(features),
            cptr: guest_cptr(features),
            zcr: features.sve.then_some(ZCR_LEN_MAX),
            smcr: features.sme.then(|| guest_smcr(features)),
            hcrx: features.hcx.then(|| guest_hcrx(features)),
            fine_grained: features.fgt.then(|| guest_fine_grained_traps(features)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpu_with_nothing_optional_traps_the_implementation_defined_and_opens_fp() {
        let controls = GuestControls::for_features(&GuestFeatures::default());
        assert_eq!(
            controls.cptr, 0x32ff,
            "FP/SIMD and SVE untrapped, RES1 bits set"
        );
        let (tidcp, tacr, terr, tsc) = (1 << 20, 1 << 21, 1 << 36, 1 << 19);
        assert_eq!(controls.hcr & (tidcp | tacr | tsc), tidcp | tacr | tsc);
        assert_eq!(controls.hcr & terr, 0, "TERR is RES0 without FEAT_RAS");
        let (fmo, imo) = (1 << 3, 1 << 4);
        assert_eq!(
            controls.hcr & (fmo | imo),
            fmo | imo,
            "the hypervisor owns the GIC"
        );
        assert_eq!(controls.mdcr, 0, "no PMU: no counters, HPMD is RES0");
        assert_eq!(
            (
                controls.zcr,
                controls.smcr,
                controls.hcrx,
                controls.fine_grained
            ),
            (None, None, None, None)
        );
    }

    #[test]
    fn features_open_their_controls() {
        let features = GuestFeatures {
            ras: true,
            pmuv3p1: true,
            pmu_counters: 6,
            sve: true,
            sme: true,
            sme2: true,
            hcx: true,
            mops: true,
            gcs: true,
            fgt: true,
            s1pie: true,
            ..GuestFeatures::default()
        };
        let controls = GuestControls::for_features(&features);
        assert_ne!(controls.hcr & (1 << 36), 0, "TERR with FEAT_RAS");
        assert_eq!(controls.mdcr, 6 | (1 << 17));
        assert_eq!(controls.cptr & (1 << 12), 0, "SME opened");
        assert_eq!(controls.zcr, Some(0xf));
        assert_eq!(controls.smcr, Some(0xf | (1 << 30)));
        assert_eq!(controls.hcrx, Some((1 << 11) | (1 << 22)));
        let fgt = controls.fine_grained.unwrap();
        assert_eq!(
            fgt.registers,
            (1 << 58) | (1 << 57) | (1 << 55) | (1 << 54) | (1 << 53) | (1 << 52)
        );
        assert_eq!(fgt.instructions, (1 << 59) | (1 << 58) | (1 << 57));
    }
}
