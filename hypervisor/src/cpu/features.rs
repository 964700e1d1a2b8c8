//! CPU facts the hypervisor bases decisions on, decoded from raw ID register values so the
//! decoding is testable on the host (the aarch64 layer only reads the registers).

/// Raw ID register values, as read at EL2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdRegisters {
    pub midr: u64,
    pub mpidr: u64,
    pub id_aa64mmfr0: u64,
    pub id_aa64mmfr1: u64,
    pub id_aa64mmfr2: u64,
    pub id_aa64isar0: u64,
    pub id_aa64pfr0: u64,
    pub id_aa64pfr1: u64,
    pub id_aa64mmfr3: u64,
    pub id_aa64isar2: u64,
    pub id_aa64smfr0: u64,
    pub id_aa64dfr0: u64,
    /// PMCR_EL0.N, bits [15:11]: the PMU's event counters (0 without a PMUv3). Not an ID
    /// register, but as fixed a fact of the core, read with them.
    pub pmu_counters: u8,
}

/// What the hypervisor needs to know about the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuFeatures {
    /// ID_AA64MMFR2_EL1.BBM, bits [55:52]: 0 = break-before-make required, 1 = FEAT_BBML1,
    /// 2 = FEAT_BBML2 (block size may change without an invalid step; Arm ARM RKFLJB).
    pub bbm_level: u8,
    /// FEAT_TLBIRANGE: ID_AA64ISAR0_EL1.TLB, bits [59:56], is 0b0010.
    pub tlbi_range: bool,
    /// Physical address size from ID_AA64MMFR0_EL1.PARange, bits [3:0].
    pub pa_bits: u8,
    /// FEAT_VHE: ID_AA64MMFR1_EL1.VH, bits [11:8].
    pub vhe: bool,
    /// FEAT_XNX: ID_AA64MMFR1_EL1.XNX, bits [31:28] (stage-2 XN split by EL).
    pub xnx: bool,
}

/// PARange encodings (Arm ARM ID_AA64MMFR0_EL1.PARange).
pub fn pa_range_bits(parange: u8) -> Option<u8> {
    match parange {
        0b0000 => Some(32),
        0b0001 => Some(36),
        0b0010 => Some(40),
        0b0011 => Some(42),
        0b0100 => Some(44),
        0b0101 => Some(48),
        0b0110 => Some(52),
        0b0111 => Some(56),
        _ => None,
    }
}

fn field(value: u64, shift: u32) -> u8 {
    ((value >> shift) & 0xf) as u8
}

impl CpuFeatures {
    pub fn decode(ids: &IdRegisters) -> Self {
        Self {
            bbm_level: field(ids.id_aa64mmfr2, 52),
            // 0b0010 is FEAT_TLBIRANGE (with FEAT_TLBIOS); as everywhere in the ID scheme a
            // larger value includes it.
            tlbi_range: field(ids.id_aa64isar0, 56) >= 0b0010,
            // An unknown PARange is treated as the smallest size: safe for stage 2.
            pa_bits: pa_range_bits(field(ids.id_aa64mmfr0, 0)).unwrap_or(32),
            vhe: field(ids.id_aa64mmfr1, 8) != 0,
            xnx: field(ids.id_aa64mmfr1, 28) != 0,
        }
    }

    /// FEAT_BBML2: a live block may be split (or tables collapsed) without the invalid step.
    pub fn has_bbml2(&self) -> bool {
        self.bbm_level >= 2
    }

    /// What two CPUs both support: the system's features are the intersection of every
    /// CPU's, because a table change made on one CPU is observed by the TLBs of all of
    /// them (the BBM level bounds what a *walker* tolerates, so the weakest CPU decides),
    /// and a TLBI range instruction is UNDEFINED on a CPU without FEAT_TLBIRANGE.
    pub fn common_with(&self, other: &CpuFeatures) -> CpuFeatures {
        CpuFeatures {
            bbm_level: self.bbm_level.min(other.bbm_level),
            tlbi_range: self.tlbi_range && other.tlbi_range,
            pa_bits: self.pa_bits.min(other.pa_bits),
            vhe: self.vhe && other.vhe,
            xnx: self.xnx && other.xnx,
        }
    }
}

/// The features every CPU in `cpus` has; `None` for no CPU.
pub fn common_features<'a>(mut cpus: impl Iterator<Item = &'a CpuFeatures>) -> Option<CpuFeatures> {
    let first = *cpus.next()?;
    Some(cpus.fold(first, |all, cpu| all.common_with(cpu)))
}

/// Features of the CPU that change how EL2 is set up for a guest: which trap controls
/// exist, which registers the guest may use untrapped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestFeatures {
    pub sve: bool,
    pub sme: bool,
    pub sme_fa64: bool,
    pub sme2: bool,
    pub mte2: bool,
    /// FEAT_RAS: HCR_EL2.TERR exists (RES0 without it).
    pub ras: bool,
    /// FEAT_PMUv3p1: MDCR_EL2.HPMD exists (RES0 without it).
    pub pmuv3p1: bool,
    pub fgt: bool,
    pub hcx: bool,
    pub tcr2: bool,
    pub sctlr2: bool,
    pub s1pie: bool,
    pub s1poe: bool,
    pub gcs: bool,
    pub mops: bool,
    pub the: bool,
    /// Event counters the guest may use (MDCR_EL2.HPMN).
    pub pmu_counters: u64,
}

impl GuestFeatures {
    pub fn decode(ids: &IdRegisters) -> Self {
        let sme = field(ids.id_aa64pfr1, 24);
        let pmu_version = field(ids.id_aa64dfr0, 8);
        // PMUVer 0 is no PMU, 0xf an IMPLEMENTATION DEFINED one (not PMUv3).
        let has_pmu = !matches!(pmu_version, 0 | 0xf);
        Self {
            sve: field(ids.id_aa64pfr0, 32) != 0,
            sme: sme != 0,
            sme_fa64: ids.id_aa64smfr0 & (1 << 63) != 0,
            sme2: sme >= 2,
            mte2: field(ids.id_aa64pfr1, 8) >= 2,
            ras: field(ids.id_aa64pfr0, 28) != 0,
            // 0b0100 is PMUv3p1.
            pmuv3p1: has_pmu && pmu_version >= 4,
            fgt: field(ids.id_aa64mmfr0, 56) != 0,
            hcx: field(ids.id_aa64mmfr1, 40) != 0,
            tcr2: field(ids.id_aa64mmfr3, 0) != 0,
            sctlr2: field(ids.id_aa64mmfr3, 4) != 0,
            s1pie: field(ids.id_aa64mmfr3, 8) != 0,
            s1poe: field(ids.id_aa64mmfr3, 16) != 0,
            gcs: field(ids.id_aa64pfr1, 44) != 0,
            mops: field(ids.id_aa64isar2, 16) != 0,
            the: field(ids.id_aa64pfr1, 48) != 0,
            pmu_counters: if has_pmu {
                u64::from(ids.pmu_counters)
            } else {
                0
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_max_reports_bbml2_and_tlbi_range() {
        // Values shaped like QEMU 10 `-cpu max`: BBM = 2, TLB = 2, PARange = 48 bits.
        let ids = IdRegisters {
            id_aa64mmfr2: 2 << 52,
            id_aa64isar0: 2 << 56,
            id_aa64mmfr0: 0b0101,
            id_aa64mmfr1: 1 << 8,
            ..IdRegisters::default()
        };
        let features = CpuFeatures::decode(&ids);
        assert_eq!(features.bbm_level, 2);
        assert!(features.has_bbml2());
        assert!(features.tlbi_range);
        assert_eq!(features.pa_bits, 48);
        assert!(features.vhe);
    }

    #[test]
    fn cortex_a72_needs_break_before_make() {
        let ids = IdRegisters {
            id_aa64mmfr0: 0b0010,
            ..IdRegisters::default()
        };
        let features = CpuFeatures::decode(&ids);
        assert_eq!(features.bbm_level, 0);
        assert!(!features.has_bbml2());
        assert!(!features.tlbi_range);
        assert_eq!(features.pa_bits, 40);
    }

    #[test]
    fn the_weakest_cpu_decides_the_system_features() {
        let max = CpuFeatures::decode(&IdRegisters {
            id_aa64mmfr2: 2 << 52,
            id_aa64isar0: 2 << 56,
            id_aa64mmfr0: 0b0101,
            id_aa64mmfr1: (1 << 8) | (1 << 28),
            ..IdRegisters::default()
        });
        let v1_like = CpuFeatures::decode(&IdRegisters {
            id_aa64mmfr2: 2 << 52,
            id_aa64mmfr0: 0b0101,
            ..IdRegisters::default()
        });
        let a72_like = CpuFeatures::decode(&IdRegisters {
            id_aa64mmfr0: 0b0010,
            ..IdRegisters::default()
        });
        let all = common_features([max, v1_like].iter()).unwrap();
        assert_eq!(all.bbm_level, 2);
        assert!(
            !all.tlbi_range,
            "one CPU without FEAT_TLBIRANGE forbids range TLBIs"
        );
        let all = common_features([max, v1_like, a72_like].iter()).unwrap();
        assert_eq!(all.bbm_level, 0);
        assert!(!all.has_bbml2());
        assert_eq!(all.pa_bits, 40);
        assert!(!all.vhe && !all.xnx);
        assert_eq!(common_features([max].iter()), Some(max));
        assert_eq!(common_features([].iter()), None);
    }

    proptest::proptest! {
        /// The common features never claim more than any single CPU has.
        #[test]
        fn common_features_are_a_lower_bound(regs in proptest::collection::vec((0u64..16, 0u64..16, 0u64..8), 1..8)) {
            let cpus: Vec<CpuFeatures> = regs
                .iter()
                .map(|&(bbm, tlb, pa)| CpuFeatures::decode(&IdRegisters {
                    id_aa64mmfr2: bbm << 52,
                    id_aa64isar0: tlb << 56,
                    id_aa64mmfr0: pa,
                    ..IdRegisters::default()
                }))
                .collect();
            let all = common_features(cpus.iter()).unwrap();
            for cpu in &cpus {
                proptest::prop_assert!(all.bbm_level <= cpu.bbm_level);
                proptest::prop_assert!(!all.tlbi_range || cpu.tlbi_range);
                proptest::prop_assert!(all.pa_bits <= cpu.pa_bits);
            }
            proptest::prop_assert!(cpus.iter().any(|c| c.bbm_level == all.bbm_level));
        }
    }

    #[test]
    fn guest_features_follow_the_id_registers() {
        let none = GuestFeatures::decode(&IdRegisters::default());
        assert_eq!(none, GuestFeatures::default());
        let ids = IdRegisters {
            id_aa64pfr0: (1 << 32) | (1 << 28),
            id_aa64pfr1: (2 << 24) | (2 << 8),
            id_aa64dfr0: 4 << 8,
            pmu_counters: 6,
            ..IdRegisters::default()
        };
        let f = GuestFeatures::decode(&ids);
        assert!(f.sve && f.ras && f.sme && f.sme2 && f.mte2 && f.pmuv3p1);
        assert_eq!(f.pmu_counters, 6);
        // An IMPLEMENTATION DEFINED PMU is no PMUv3: no counters, no HPMD.
        let imp_def = GuestFeatures::decode(&IdRegisters {
            id_aa64dfr0: 0xf << 8,
            pmu_counters: 6,
            ..IdRegisters::default()
        });
        assert!(!imp_def.pmuv3p1);
        assert_eq!(imp_def.pmu_counters, 0);
    }

    #[test]
    fn a_later_tlb_value_still_has_tlbi_range() {
        let ids = IdRegisters {
            id_aa64isar0: 3 << 56,
            ..IdRegisters::default()
        };
        assert!(CpuFeatures::decode(&ids).tlbi_range);
    }

    #[test]
    fn tlbios_alone_is_not_tlbi_range() {
        let ids = IdRegisters {
            id_aa64isar0: 1 << 56,
            ..IdRegisters::default()
        };
        assert!(!CpuFeatures::decode(&ids).tlbi_range);
    }
}
