//! Injecting a synchronous exception into the guest at EL1: what an exception taken to
//! EL1 would have done to the guest's registers (Arm ARM D1.3 "Exception entry"), computed
//! here so the aarch64 layer only copies the results into ELR/SPSR/ESR/FAR_EL1 and
//! ELR/SPSR_EL2.

/// PSTATE/SPSR bits.
const PSR_MODE_MASK: u64 = 0b1_1111;
const PSR_MODE_EL0T: u64 = 0b0_0000;
const PSR_MODE_EL1T: u64 = 0b0_0100;
const PSR_MODE_EL1H: u64 = 0b0_0101;
const PSR_AARCH32: u64 = 1 << 4;
const PSR_F: u64 = 1 << 6;
const PSR_I: u64 = 1 << 7;
const PSR_A: u64 = 1 << 8;
const PSR_D: u64 = 1 << 9;
const PSR_SSBS: u64 = 1 << 12;
const PSR_PAN: u64 = 1 << 22;
const PSR_DIT: u64 = 1 << 24;
const PSR_TCO: u64 = 1 << 25;
const PSR_NZCV: u64 = 0xf << 28;

/// SCTLR_EL1 bits that shape exception entry.
const SCTLR_SPAN: u64 = 1 << 23;
const SCTLR_DSSBS: u64 = 1 << 44;

/// Vector offsets from VBAR_EL1 (Arm ARM D1.3.1, table "Vector offsets").
const VECTOR_CURRENT_SP0: u64 = 0x000;
const VECTOR_CURRENT_SPX: u64 = 0x200;
const VECTOR_LOWER_A64: u64 = 0x400;
const VECTOR_LOWER_A32: u64 = 0x600;

/// ESR exception classes used for injection.
const EC_INSTR_ABORT_LOWER: u64 = 0x20;
const EC_INSTR_ABORT_SAME: u64 = 0x21;
const EC_DATA_ABORT_LOWER: u64 = 0x24;
const EC_DATA_ABORT_SAME: u64 = 0x25;
const EC_UNKNOWN: u64 = 0x00;
const ESR_IL: u64 = 1 << 25;
const ISS_WNR: u64 = 1 << 6;

/// Fault status codes (DFSC/IFSC).
pub const FSC_SYNC_EXTERNAL_ABORT: u64 = 0x10;
/// Permission fault at `level` (0..=3).
pub const fn fsc_permission(level: u8) -> u64 {
    0x0c | (level as u64 & 3)
}

/// The guest state an injection reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestState {
    /// ELR_EL2: the faulting instruction.
    pub pc: u64,
    /// SPSR_EL2: the guest's PSTATE at the fault.
    pub pstate: u64,
    pub vbar_el1: u64,
    pub sctlr_el1: u64,
    /// FEAT_MTE2 is exposed to the guest (PSTATE.TCO is set on entry).
    pub mte: bool,
}

/// The registers to write: the EL1 exception registers, then where and how to resume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Injection {
    pub elr_el1: u64,
    pub spsr_el1: u64,
    pub esr_el1: u64,
    pub far_el1: Option<u64>,
    pub resume_pc: u64,
    pub resume_pstate: u64,
}

/// What to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncException {
    DataAbort {
        far: u64,
        fsc: u64,
        write: bool,
    },
    InstructionAbort {
        far: u64,
        fsc: u64,
    },
    /// An undefined instruction (EC 0x00), e.g. for a trapped instruction the hypervisor
    /// does not emulate.
    Undefined,
}

fn from_el0(pstate: u64) -> bool {
    pstate & PSR_AARCH32 != 0 || pstate & PSR_MODE_MASK == PSR_MODE_EL0T
}

fn vector_offset(pstate: u64) -> u64 {
    if pstate & PSR_AARCH32 != 0 {
        VECTOR_LOWER_A32
    } else {
        match pstate & PSR_MODE_MASK {
            PSR_MODE_EL1T => VECTOR_CURRENT_SP0,
            PSR_MODE_EL1H => VECTOR_CURRENT_SPX,
            _ => VECTOR_LOWER_A64,
        }
    }
}

/// PSTATE on entry to EL1h, as the hardware would set it.
fn entry_pstate(guest: &GuestState) -> u64 {
    let old = guest.pstate;
    let mut new = old & (PSR_NZCV | PSR_DIT | PSR_PAN);
    if guest.sctlr_el1 & SCTLR_SPAN == 0 {
        new |= PSR_PAN;
    }
    if guest.sctlr_el1 & SCTLR_DSSBS != 0 {
        new |= PSR_SSBS;
    }
    if guest.mte {
        new |= PSR_TCO;
    }
    new | PSR_D | PSR_A | PSR_I | PSR_F | PSR_MODE_EL1H
}

/// Computes the injection of `exception` into the guest described by `guest`.
pub fn inject(guest: &GuestState, exception: SyncException) -> Injection {
    let lower = from_el0(guest.pstate);
    let (esr, far) = match exception {
        SyncException::DataAbort { far, fsc, write } => {
            let ec = if lower {
                EC_DATA_ABORT_LOWER
            } else {
                EC_DATA_ABORT_SAME
            };
            let wnr = if write { ISS_WNR } else { 0 };
            ((ec << 26) | ESR_IL | wnr | (fsc & 0x3f), Some(far))
        }
        SyncException::InstructionAbort { far, fsc } => {
            let ec = if lower {
                EC_INSTR_ABORT_LOWER
            } else {
                EC_INSTR_ABORT_SAME
            };
            ((ec << 26) | ESR_IL | (fsc & 0x3f), Some(far))
        }
        SyncException::Undefined => ((EC_UNKNOWN << 26) | ESR_IL, None),
    };
    Injection {
        elr_el1: guest.pc,
        spsr_el1: guest.pstate,
        esr_el1: esr,
        far_el1: far,
        resume_pc: guest.vbar_el1.wrapping_add(vector_offset(guest.pstate)),
        resume_pstate: entry_pstate(guest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel_state() -> GuestState {
        GuestState {
            pc: 0xffff_8000_8001_0000,
            pstate: PSR_MODE_EL1H | PSR_I | (1 << 30),
            vbar_el1: 0xffff_8000_8000_0800,
            sctlr_el1: SCTLR_SPAN,
            mte: false,
        }
    }

    #[test]
    fn data_abort_from_the_kernel_goes_to_the_current_el_spx_vector() {
        let guest = kernel_state();
        let injection = inject(
            &guest,
            SyncException::DataAbort {
                far: 0x1234,
                fsc: fsc_permission(3),
                write: true,
            },
        );
        assert_eq!(injection.resume_pc, guest.vbar_el1 + 0x200);
        assert_eq!(injection.esr_el1, 0x9600_004f);
        assert_eq!(injection.far_el1, Some(0x1234));
        assert_eq!(injection.elr_el1, guest.pc);
        assert_eq!(injection.spsr_el1, guest.pstate);
        assert_eq!(
            injection.resume_pstate,
            PSR_MODE_EL1H | PSR_D | PSR_A | PSR_I | PSR_F | (1 << 30)
        );
    }

    #[test]
    fn abort_from_el0_uses_the_lower_el_vector_and_class() {
        let guest = GuestState {
            pstate: PSR_MODE_EL0T,
            ..kernel_state()
        };
        let injection = inject(
            &guest,
            SyncException::InstructionAbort {
                far: 0x4000,
                fsc: FSC_SYNC_EXTERNAL_ABORT,
            },
        );
        assert_eq!(injection.resume_pc, guest.vbar_el1 + 0x400);
        assert_eq!(injection.esr_el1 >> 26, 0x20);
        let aarch32 = GuestState {
            pstate: PSR_AARCH32,
            ..kernel_state()
        };
        assert_eq!(
            inject(&aarch32, SyncException::Undefined).resume_pc,
            guest.vbar_el1 + 0x600
        );
    }

    #[test]
    fn entry_sets_pan_unless_span_and_ssbs_from_dssbs_and_tco_with_mte() {
        let guest = GuestState {
            sctlr_el1: SCTLR_DSSBS,
            mte: true,
            ..kernel_state()
        };
        let pstate = inject(&guest, SyncException::Undefined).resume_pstate;
        assert_ne!(pstate & PSR_PAN, 0);
        assert_ne!(pstate & PSR_SSBS, 0);
        assert_ne!(pstate & PSR_TCO, 0);
        let keep = inject(&kernel_state(), SyncException::Undefined).resume_pstate;
        assert_eq!(keep & (PSR_PAN | PSR_SSBS | PSR_TCO), 0);
    }

    #[test]
    fn undefined_has_class_zero_and_no_far() {
        let injection = inject(&kernel_state(), SyncException::Undefined);
        assert_eq!(injection.esr_el1, ESR_IL);
        assert_eq!(injection.far_el1, None);
    }
}
