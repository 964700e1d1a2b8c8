//! Global errors (IHI 0070 "SMMU_GERROR", "SMMU_GERRORN"): which are active, and what
//! the EL2 layer does about each.
//!
//! An error is active while its GERROR bit differs from the same GERRORN bit. Software
//! acknowledges by writing GERRORN with those bits toggled, i.e. by writing back the
//! GERROR value it read ([`GlobalErrors::acknowledgement`], as Linux's
//! `arm_smmu_gerror_handler` does); it must first deal with the cause, since the SMMU
//! restarts the command queue as soon as CMDQ_ERR is acknowledged.

use core::fmt;

/// One GERROR bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlobalError {
    /// CMDQ_ERR \[0\]: the command queue stopped at CMDQ_CONS; CMDQ_CONS.ERR says why
    /// (`queue::CommandError`). Replace an illegal command by a CMD_SYNC (as Linux does)
    /// or retry after an abort, then acknowledge. Until then every CMD_SYNC wait must
    /// give up rather than spin.
    CommandQueue,
    /// EVTQ_ABT_ERR \[2\]: writing an event record aborted: events were lost (also QEMU's
    /// way of reporting a full event queue). Log it.
    EventQueueAbort,
    /// PRIQ_ABT_ERR \[3\]: writing a PRI request aborted (no PRI queue here).
    PriQueueAbort,
    /// MSI_CMDQ_ABT_ERR \[4\]: a CMD_SYNC MSI write aborted.
    CommandSyncMsiAbort,
    /// MSI_EVTQ_ABT_ERR \[5\]: the event queue's MSI write aborted.
    EventQueueMsiAbort,
    /// MSI_PRIQ_ABT_ERR \[6\]: the PRI queue's MSI write aborted.
    PriQueueMsiAbort,
    /// MSI_GERROR_ABT_ERR \[7\]: the GERROR MSI write aborted.
    GlobalErrorMsiAbort,
    /// SFM_ERR \[8\]: the SMMU entered Service Failure Mode and stopped translating; the
    /// only way on is CR0 = 0 (transactions then follow GBPA: abort) and a reset.
    /// Fatal for DMA of every guest behind this SMMU.
    ServiceFailure,
    /// CMDQP_ERR \[9\] (SMMUv3.3 ECMDQ): an enhanced command queue error (not used).
    EnhancedCommandQueue,
}

/// Every bit, in GERROR order.
const ALL: [(u32, GlobalError); 9] = [
    (1 << 0, GlobalError::CommandQueue),
    (1 << 2, GlobalError::EventQueueAbort),
    (1 << 3, GlobalError::PriQueueAbort),
    (1 << 4, GlobalError::CommandSyncMsiAbort),
    (1 << 5, GlobalError::EventQueueMsiAbort),
    (1 << 6, GlobalError::PriQueueMsiAbort),
    (1 << 7, GlobalError::GlobalErrorMsiAbort),
    (1 << 8, GlobalError::ServiceFailure),
    (1 << 9, GlobalError::EnhancedCommandQueue),
];

impl GlobalError {
    /// The architecture's name of the bit.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::CommandQueue => "CMDQ_ERR",
            Self::EventQueueAbort => "EVTQ_ABT_ERR",
            Self::PriQueueAbort => "PRIQ_ABT_ERR",
            Self::CommandSyncMsiAbort => "MSI_CMDQ_ABT_ERR",
            Self::EventQueueMsiAbort => "MSI_EVTQ_ABT_ERR",
            Self::PriQueueMsiAbort => "MSI_PRIQ_ABT_ERR",
            Self::GlobalErrorMsiAbort => "MSI_GERROR_ABT_ERR",
            Self::ServiceFailure => "SFM_ERR",
            Self::EnhancedCommandQueue => "CMDQP_ERR",
        }
    }

    /// Whether the SMMU can no longer be trusted to translate (only SFM_ERR).
    pub const fn is_fatal(&self) -> bool {
        matches!(self, Self::ServiceFailure)
    }
}

/// The active global errors of one GERROR/GERRORN reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalErrors {
    gerror: u32,
    active: u32,
}

impl GlobalErrors {
    /// The errors active in a GERROR and GERRORN pair.
    pub const fn decode(gerror: u32, gerrorn: u32) -> Self {
        GlobalErrors {
            gerror,
            active: gerror ^ gerrorn,
        }
    }

    /// No error is active.
    pub const fn is_empty(&self) -> bool {
        self.active == 0
    }

    /// Whether `error` is active.
    pub fn contains(&self, error: GlobalError) -> bool {
        self.iter().any(|e| e == error)
    }

    /// The active errors, in bit order (bits without a meaning are left out).
    pub fn iter(&self) -> impl Iterator<Item = GlobalError> + '_ {
        ALL.iter()
            .filter(|(mask, _)| self.active & mask != 0)
            .map(|&(_, error)| error)
    }

    /// Active bits that no [`GlobalError`] names (reserved or newer).
    pub const fn unknown_bits(&self) -> u32 {
        let mut known = 0;
        let mut i = 0;
        while i < ALL.len() {
            known |= ALL[i].0;
            i += 1;
        }
        self.active & !known
    }

    /// The GERRORN value that acknowledges every error of this reading: the GERROR
    /// value read.
    pub const fn acknowledgement(&self) -> u32 {
        self.gerror
    }
}

impl fmt::Display for GlobalErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SMMU global errors {:#x}:", self.active)?;
        if self.is_empty() {
            return f.write_str(" none");
        }
        for error in self.iter() {
            write!(f, " {}", error.name())?;
        }
        if self.unknown_bits() != 0 {
            write!(f, " unknown {:#x}", self.unknown_bits())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec::Vec;

    #[test]
    fn active_is_the_difference() {
        let e = GlobalErrors::decode(0b1_0000_0101, 0b0_0000_0100);
        assert_eq!(
            e.iter().collect::<Vec<_>>(),
            [GlobalError::CommandQueue, GlobalError::ServiceFailure]
        );
        assert!(
            e.contains(GlobalError::ServiceFailure) && !e.contains(GlobalError::EventQueueAbort)
        );
        assert!(e.iter().any(|e| e.is_fatal()));
        assert_eq!(e.acknowledgement(), 0b1_0000_0101);
        assert_eq!(e.to_string(), "SMMU global errors 0x101: CMDQ_ERR SFM_ERR");
        assert!(GlobalErrors::decode(5, 5).is_empty());
        assert_eq!(
            GlobalErrors::decode(5, 5).to_string(),
            "SMMU global errors 0x0: none"
        );
    }

    #[test]
    fn bit_positions() {
        let names: Vec<_> = (0..10)
            .map(|bit| {
                GlobalErrors::decode(1 << bit, 0)
                    .iter()
                    .next()
                    .map(|e| e.name())
            })
            .collect();
        assert_eq!(
            names,
            [
                Some("CMDQ_ERR"),
                None,
                Some("EVTQ_ABT_ERR"),
                Some("PRIQ_ABT_ERR"),
                Some("MSI_CMDQ_ABT_ERR"),
                Some("MSI_EVTQ_ABT_ERR"),
                Some("MSI_PRIQ_ABT_ERR"),
                Some("MSI_GERROR_ABT_ERR"),
                Some("SFM_ERR"),
                Some("CMDQP_ERR"),
            ]
        );
        assert_eq!(
            GlobalErrors::decode(1 << 1 | 1 << 31, 0).unknown_bits(),
            1 << 1 | 1 << 31
        );
    }

    proptest::proptest! {
        #[test]
        fn any_reading_decodes(gerror: u32, gerrorn: u32) {
            let e = GlobalErrors::decode(gerror, gerrorn);
            let named = e.iter().count() as u32;
            proptest::prop_assert_eq!(named + e.unknown_bits().count_ones(), (gerror ^ gerrorn).count_ones());
            proptest::prop_assert!(GlobalErrors::decode(gerror, e.acknowledgement()).is_empty());
            proptest::prop_assert!(!e.to_string().is_empty());
        }
    }
}
