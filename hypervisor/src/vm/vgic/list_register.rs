//! The encoding of one GIC virtualization list register, `ICH_LR<n>_EL2` (IHI 0069 §12.4,
//! "`ICH_LR<n>_EL2`, Interrupt Controller List Registers"):
//!
//! | bits | field | here |
//! |---|---|---|
//! | 63:62 | State | [`LrState`]: invalid, pending, active, pending and active |
//! | 61 | HW | [`LrKind::Hardware`]: deactivating the virtual interrupt deactivates pINTID |
//! | 60 | Group | 0 = Group 0 (vFIQ), 1 = Group 1 (vIRQ) |
//! | 55:48 | Priority | the top ICH_VTR_EL2.PRIbits + 1 bits are kept |
//! | 44:32 | pINTID | with HW = 1: the physical INTID |
//! | 41 | EOI | with HW = 0: a maintenance interrupt when the guest deactivates it |
//! | 31:0 | vINTID | the INTID the guest sees |
//!
//! Bit 59 (NMI, FEAT_GICv3_NMI) and the RES0 bits are always written as zero and ignored
//! when read back.

const STATE_SHIFT: u32 = 62;
const HW: u64 = 1 << 61;
const GROUP1: u64 = 1 << 60;
const PRIORITY_SHIFT: u32 = 48;
const PINTID_SHIFT: u32 = 32;
/// pINTID is 13 bits wide, [44:32].
const PINTID_MASK: u64 = 0x1fff;
const EOI: u64 = 1 << 41;
const VINTID_MASK: u64 = 0xffff_ffff;

/// The State field of a list register.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LrState {
    /// 0b00: the list register is free.
    #[default]
    Invalid,
    /// 0b01: the guest may acknowledge the interrupt.
    Pending,
    /// 0b10: the guest acknowledged it and has not deactivated it yet.
    Active,
    /// 0b11: active, and pending again (never used with HW = 1, see [`LrKind::Hardware`]).
    PendingActive,
}

impl LrState {
    /// The state with these pending and active bits.
    pub const fn new(pending: bool, active: bool) -> Self {
        match (pending, active) {
            (false, false) => Self::Invalid,
            (true, false) => Self::Pending,
            (false, true) => Self::Active,
            (true, true) => Self::PendingActive,
        }
    }

    pub const fn is_pending(self) -> bool {
        matches!(self, Self::Pending | Self::PendingActive)
    }

    pub const fn is_active(self) -> bool {
        matches!(self, Self::Active | Self::PendingActive)
    }

    const fn bits(self) -> u64 {
        match self {
            Self::Invalid => 0b00,
            Self::Pending => 0b01,
            Self::Active => 0b10,
            Self::PendingActive => 0b11,
        }
    }

    const fn from_bits(bits: u64) -> Self {
        Self::new(bits & 0b01 != 0, bits & 0b10 != 0)
    }
}

/// What the guest's deactivation of the interrupt does besides ending it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LrKind {
    /// HW = 0: a purely virtual interrupt. With `eoi_maintenance` (bit 41) the
    /// deactivation raises the maintenance interrupt (ICH_MISR_EL2.EOI), so that the
    /// hypervisor re-samples a level-sensitive line at once.
    Software { eoi_maintenance: bool },
    /// HW = 1: the guest's deactivation also deactivates physical INTID `pintid`. Its
    /// pending state lives in the physical distributor, so the architecture allows only
    /// the pending or the active state here, never both (IHI 0069 §12.4, `ICH_LR<n>_EL2`.State:
    /// "For hardware interrupts, the pending and active state is held in the physical
    /// Distributor rather than the virtual CPU interface. A hypervisor must only use the
    /// pending and active state for software originated interrupts").
    Hardware { pintid: u32 },
}

/// One list register's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListRegister {
    pub vintid: u32,
    pub state: LrState,
    pub priority: u8,
    pub group1: bool,
    pub kind: LrKind,
}

impl ListRegister {
    /// An invalid (free) list register: all zeros.
    pub const EMPTY: u64 = 0;

    /// The register value. A pINTID wider than 13 bits is truncated (the caller only
    /// links INTIDs up to 1019).
    pub const fn encode(&self) -> u64 {
        let mut value = (self.vintid as u64 & VINTID_MASK)
            | (self.state.bits() << STATE_SHIFT)
            | ((self.priority as u64) << PRIORITY_SHIFT);
        if self.group1 {
            value |= GROUP1;
        }
        match self.kind {
            LrKind::Software { eoi_maintenance } => {
                if eoi_maintenance {
                    value |= EOI;
                }
            }
            LrKind::Hardware { pintid } => {
                value |= HW | ((pintid as u64 & PINTID_MASK) << PINTID_SHIFT);
            }
        }
        value
    }

    /// The fields of a register value read back from hardware.
    pub const fn decode(value: u64) -> Self {
        let kind = if value & HW != 0 {
            LrKind::Hardware {
                pintid: ((value >> PINTID_SHIFT) & PINTID_MASK) as u32,
            }
        } else {
            LrKind::Software {
                eoi_maintenance: value & EOI != 0,
            }
        };
        Self {
            vintid: (value & VINTID_MASK) as u32,
            state: LrState::from_bits(value >> STATE_SHIFT),
            priority: (value >> PRIORITY_SHIFT) as u8,
            group1: value & GROUP1 != 0,
            kind,
        }
    }
}

/// The priority as a list register keeps it: its top `bits` bits (ICH_VTR_EL2.PRIbits + 1,
/// 5..=8); the CPU interface compares only those.
pub const fn lr_priority(priority: u8, bits: u8) -> u8 {
    let dropped = 8u8.saturating_sub(bits);
    if dropped >= 8 {
        0
    } else {
        priority & (0xffu8 << dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hardware_timer_entry_has_the_architected_bits() {
        let lr = ListRegister {
            vintid: 27,
            state: LrState::Pending,
            priority: 0xa0,
            group1: true,
            kind: LrKind::Hardware { pintid: 27 },
        };
        // State 01, HW, Group 1, priority 0xa0, pINTID 27, vINTID 27.
        assert_eq!(lr.encode(), 0x70a0_001b_0000_001b);
        assert_eq!(ListRegister::decode(lr.encode()), lr);
    }

    #[test]
    fn a_software_entry_carries_the_eoi_bit_not_a_pintid() {
        let lr = ListRegister {
            vintid: 33,
            state: LrState::PendingActive,
            priority: 0x80,
            group1: false,
            kind: LrKind::Software {
                eoi_maintenance: true,
            },
        };
        assert_eq!(lr.encode(), 0xc080_0200_0000_0021);
        assert_eq!(ListRegister::decode(lr.encode()), lr);
    }

    #[test]
    fn states_round_trip_through_their_bits() {
        for state in [
            LrState::Invalid,
            LrState::Pending,
            LrState::Active,
            LrState::PendingActive,
        ] {
            assert_eq!(LrState::from_bits(state.bits()), state);
            assert_eq!(LrState::new(state.is_pending(), state.is_active()), state);
        }
        assert_eq!(
            ListRegister::decode(ListRegister::EMPTY).state,
            LrState::Invalid
        );
    }

    #[test]
    fn decoding_ignores_res0_and_nmi_bits() {
        let noisy = (1 << 59) | (0xf << 56) | (0x7 << 45) | 0x1e;
        let lr = ListRegister::decode(noisy);
        assert_eq!(lr.vintid, 0x1e);
        assert_eq!(lr.state, LrState::Invalid);
        assert_eq!(
            lr.kind,
            LrKind::Software {
                eoi_maintenance: false
            }
        );
    }

    #[test]
    fn list_registers_keep_the_top_priority_bits() {
        assert_eq!(lr_priority(0xff, 5), 0xf8);
        assert_eq!(lr_priority(0xa7, 8), 0xa7);
        assert_eq!(lr_priority(0x0f, 5), 0x08);
        assert_eq!(lr_priority(0x7f, 0), 0);
    }

    proptest::proptest! {
        /// Every field written comes back from decode.
        #[test]
        fn fields_round_trip(
            vintid in 0u32..1020,
            state in 0u64..4,
            priority in proptest::num::u8::ANY,
            group1 in proptest::bool::ANY,
            hardware in proptest::option::of(16u32..1020),
            eoi in proptest::bool::ANY,
        ) {
            let kind = match hardware {
                Some(pintid) => LrKind::Hardware { pintid },
                None => LrKind::Software { eoi_maintenance: eoi },
            };
            let state = LrState::from_bits(state);
            let lr = ListRegister { vintid, state, priority, group1, kind };
            proptest::prop_assert_eq!(ListRegister::decode(lr.encode()), lr);
        }
    }
}
