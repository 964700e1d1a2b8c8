//! The register frame the EL2 vectors (arch/aarch64/vectors.S) save on the EL2 stack.
//! Its layout is shared with the assembly: change both together.

/// Saved state of the interrupted context; for a trap from a guest, the guest's.
#[repr(C)]
#[derive(Clone, Debug, Default)]
pub struct TrapFrame {
    /// x0..x30.
    pub regs: [u64; 31],
    /// SP at the time of the trap (meaningful for traps taken at EL2).
    pub sp: u64,
    /// ELR_EL2: where the interrupted context resumes.
    pub elr: u64,
    /// SPSR_EL2: the interrupted context's PSTATE.
    pub spsr: u64,
}

/// The vector slot a trap came through (`vector_entry N` in vectors.S).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VectorSlot {
    CurrentElSp0(TrapKind),
    CurrentElSpx(TrapKind),
    LowerElAarch64(TrapKind),
    LowerElAarch32(TrapKind),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrapKind {
    Synchronous,
    Irq,
    Fiq,
    SError,
}

impl VectorSlot {
    /// Decodes the slot number the vectors pass; `None` for a number they never pass.
    pub fn from_slot(slot: u64) -> Option<Self> {
        let kind = match slot % 4 {
            0 => TrapKind::Synchronous,
            1 => TrapKind::Irq,
            2 => TrapKind::Fiq,
            _ => TrapKind::SError,
        };
        match slot / 4 {
            0 => Some(Self::CurrentElSp0(kind)),
            1 => Some(Self::CurrentElSpx(kind)),
            2 => Some(Self::LowerElAarch64(kind)),
            3 => Some(Self::LowerElAarch32(kind)),
            _ => None,
        }
    }
}

// The assembly hard-codes these offsets.
const _: () = assert!(core::mem::size_of::<TrapFrame>() == 272);
const _: () = assert!(core::mem::offset_of!(TrapFrame, sp) == 248);
const _: () = assert!(core::mem::offset_of!(TrapFrame, elr) == 256);
const _: () = assert!(core::mem::offset_of!(TrapFrame, spsr) == 264);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_decode_to_their_vector_table_position() {
        assert_eq!(
            VectorSlot::from_slot(4),
            Some(VectorSlot::CurrentElSpx(TrapKind::Synchronous))
        );
        assert_eq!(
            VectorSlot::from_slot(9),
            Some(VectorSlot::LowerElAarch64(TrapKind::Irq))
        );
        assert_eq!(VectorSlot::from_slot(16), None);
    }
}
