//! Guest system-register accesses the hypervisor traps on purpose (ESR_EL2.EC 0x18,
//! "trapped MSR, MRS or System instruction"), decoded and decided here so the EL2 layer
//! only moves values.
//!
//! What is trapped, and why (HCR_EL2 while the guest runs, see `el2_setup::guest_hcr`):
//! - TIDCP: the IMPLEMENTATION DEFINED encodings (op0 = 3, CRn = 11 or 15). They can
//!   reach core-specific controls (power, caches, errata chicken bits) the guest must
//!   not own; the guest gets an UNDEFINED exception, as KVM gives it.
//! - TACR: ACTLR_EL1, the auxiliary control register, also implementation defined in
//!   content. Reads return the physical register's value, writes are ignored (KVM does
//!   the same).
//! - TERR (with FEAT_RAS): the error-record registers (ERRIDR_EL1, ERRSELR_EL1, ERX*).
//!   Error records are the hypervisor's to handle; the guest sees none (ERRIDR_EL1.NUM
//!   = 0, every record register reads as zero, writes ignored), as under KVM.
//!
//! - HCR_EL2.IMO/FMO (the hypervisor owns the GIC): the SGI-generation registers
//!   ICC_SGI1R_EL1, ICC_ASGI1R_EL1 and ICC_SGI0R_EL1 trap (IHI 0069 §12.2.20-22) and are
//!   handed to the guest's vGIC, which delivers to the guest's own vCPUs only. They are
//!   write-only: a read is UNDEFINED.
//!
//! Anything else that reaches this class is not expected and gets UNDEFINED.

use crate::arch::esr::{Esr, ExceptionClass};
use crate::vm::vgic::SgiRegister;

/// One trapped access, from ESR_EL2.ISS for EC 0x18 (Arm ARM "ISS encoding for an
/// exception from MSR, MRS, or System instruction execution in AArch64 state"):
/// Op0 [21:20], Op2 [19:17], Op1 [16:14], CRn [13:10], Rt [9:5], CRm [4:1],
/// Direction [0] (1 = read, MRS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysregAccess {
    pub op0: u8,
    pub op1: u8,
    pub crn: u8,
    pub crm: u8,
    pub op2: u8,
    /// The general-purpose register read or written; 31 is XZR.
    pub rt: u8,
    /// MRS (true) or MSR (false).
    pub read: bool,
}

impl SysregAccess {
    /// The access an EC 0x18 syndrome describes; `None` for any other class.
    pub fn decode(esr: Esr) -> Option<Self> {
        if esr.class() != ExceptionClass::SYSREG {
            return None;
        }
        let iss = esr.0 & 0x01ff_ffff;
        let field = |shift: u32, bits: u32| ((iss >> shift) & ((1 << bits) - 1)) as u8;
        Some(Self {
            op0: field(20, 2),
            op2: field(17, 3),
            op1: field(14, 3),
            crn: field(10, 4),
            rt: field(5, 5),
            crm: field(1, 4),
            read: iss & 1 == 1,
        })
    }

    fn is(&self, op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> bool {
        (self.op0, self.op1, self.crn, self.crm, self.op2) == (op0, op1, crn, crm, op2)
    }
}

/// What a read returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadValue {
    Zero,
    /// The physical ACTLR_EL1.
    PhysicalActlr,
}

/// What the hypervisor does with a trapped access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysregAction {
    /// Put this value in Rt (unless it is XZR) and step over the instruction.
    Read(ReadValue),
    /// Step over the instruction; the value is dropped.
    IgnoreWrite,
    /// Inject an UNDEFINED exception (the instruction does not exist for the guest).
    Undefined,
    /// Hand Rt's value to the vGIC as a write of this SGI register, then step over.
    GenerateSgi(SgiRegister),
}

/// Which group an access belongs to, for the decision and the exit counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysregGroup {
    ImplementationDefined,
    AuxiliaryControl,
    ErrorRecord,
    SgiGeneration(SgiRegister),
    Other,
}

/// The group of `access`.
pub fn group(access: &SysregAccess) -> SysregGroup {
    if access.op0 == 3 && matches!(access.crn, 11 | 15) {
        SysregGroup::ImplementationDefined
    } else if access.is(3, 0, 1, 0, 1) {
        SysregGroup::AuxiliaryControl
    } else if access.op0 == 3 && access.op1 == 0 && access.crn == 5 && (3..=5).contains(&access.crm)
    {
        // ERRIDR_EL1, ERRSELR_EL1 (CRm 3), ERXFR/CTLR/STATUS/ADDR/PFG* (CRm 4),
        // ERXMISC0..3 (CRm 5).
        SysregGroup::ErrorRecord
    } else if access.is(3, 0, 12, 11, 5) {
        SysregGroup::SgiGeneration(SgiRegister::Group1)
    } else if access.is(3, 0, 12, 11, 6) {
        SysregGroup::SgiGeneration(SgiRegister::AlternateGroup1)
    } else if access.is(3, 0, 12, 11, 7) {
        SysregGroup::SgiGeneration(SgiRegister::Group0)
    } else {
        SysregGroup::Other
    }
}

/// What to do with `access`.
pub fn decide(access: &SysregAccess) -> SysregAction {
    match (group(access), access.read) {
        (SysregGroup::AuxiliaryControl, true) => SysregAction::Read(ReadValue::PhysicalActlr),
        (SysregGroup::ErrorRecord, true) => SysregAction::Read(ReadValue::Zero),
        (SysregGroup::AuxiliaryControl | SysregGroup::ErrorRecord, false) => {
            SysregAction::IgnoreWrite
        }
        (SysregGroup::SgiGeneration(register), false) => SysregAction::GenerateSgi(register),
        (
            SysregGroup::ImplementationDefined | SysregGroup::Other | SysregGroup::SgiGeneration(_),
            _,
        ) => SysregAction::Undefined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The EC 0x18 syndrome of an access (IL = 1).
    fn syndrome(op0: u64, op1: u64, crn: u64, crm: u64, op2: u64, rt: u64, read: bool) -> Esr {
        Esr((0x18 << 26)
            | (1 << 25)
            | (op0 << 20)
            | (op2 << 17)
            | (op1 << 14)
            | (crn << 10)
            | (rt << 5)
            | (crm << 1)
            | u64::from(read))
    }

    #[test]
    fn actlr_el1_reads_the_physical_value_and_ignores_writes() {
        let read = SysregAccess::decode(syndrome(3, 0, 1, 0, 1, 7, true)).unwrap();
        assert_eq!(read.rt, 7);
        assert!(read.read);
        assert_eq!(decide(&read), SysregAction::Read(ReadValue::PhysicalActlr));
        let write = SysregAccess::decode(syndrome(3, 0, 1, 0, 1, 2, false)).unwrap();
        assert_eq!(decide(&write), SysregAction::IgnoreWrite);
    }

    #[test]
    fn error_records_read_as_zero_and_ignore_writes() {
        // ERRIDR_EL1, ERRSELR_EL1, ERXSTATUS_EL1, ERXMISC3_EL1.
        for (crm, op2) in [(3, 0), (3, 1), (4, 2), (5, 3)] {
            let read = SysregAccess::decode(syndrome(3, 0, 5, crm, op2, 0, true)).unwrap();
            assert_eq!(group(&read), SysregGroup::ErrorRecord);
            assert_eq!(decide(&read), SysregAction::Read(ReadValue::Zero));
            let write = SysregAccess::decode(syndrome(3, 0, 5, crm, op2, 0, false)).unwrap();
            assert_eq!(decide(&write), SysregAction::IgnoreWrite);
        }
        // ESR_EL1 (CRn 5, CRm 2) is not an error record.
        let esr_el1 = SysregAccess::decode(syndrome(3, 0, 5, 2, 0, 0, true)).unwrap();
        assert_eq!(group(&esr_el1), SysregGroup::Other);
    }

    #[test]
    fn implementation_defined_encodings_are_undefined() {
        for (op1, crn, crm, op2) in [(0, 15, 0, 0), (1, 15, 2, 1), (7, 11, 15, 7), (0, 11, 0, 0)] {
            let access = SysregAccess::decode(syndrome(3, op1, crn, crm, op2, 3, true)).unwrap();
            assert_eq!(group(&access), SysregGroup::ImplementationDefined);
            assert_eq!(decide(&access), SysregAction::Undefined);
        }
    }

    #[test]
    fn sgi_generation_writes_go_to_the_vgic_and_reads_are_undefined() {
        for (op2, register) in [
            (5, SgiRegister::Group1),
            (6, SgiRegister::AlternateGroup1),
            (7, SgiRegister::Group0),
        ] {
            let write = SysregAccess::decode(syndrome(3, 0, 12, 11, op2, 4, false)).unwrap();
            assert_eq!(decide(&write), SysregAction::GenerateSgi(register));
            let read = SysregAccess::decode(syndrome(3, 0, 12, 11, op2, 4, true)).unwrap();
            assert_eq!(decide(&read), SysregAction::Undefined);
        }
        // ICC_DIR_EL1 (op2 1) does not trap for a reason of ours.
        let dir = SysregAccess::decode(syndrome(3, 0, 12, 11, 1, 4, false)).unwrap();
        assert_eq!(decide(&dir), SysregAction::Undefined);
    }

    #[test]
    fn other_classes_are_not_decoded() {
        assert_eq!(SysregAccess::decode(Esr(0x5600_0000)), None); // HVC64
        assert_eq!(SysregAccess::decode(Esr(0x9200_0046)), None); // data abort
    }

    proptest::proptest! {
        /// Every field survives the round trip, and only the three groups are emulated.
        #[test]
        fn decode_round_trips_and_only_known_groups_are_emulated(
            op0 in 0u64..4, op1 in 0u64..8, crn in 0u64..16, crm in 0u64..16, op2 in 0u64..8,
            rt in 0u64..32, read: bool,
        ) {
            let access = SysregAccess::decode(syndrome(op0, op1, crn, crm, op2, rt, read)).unwrap();
            proptest::prop_assert_eq!(
                (access.op0, access.op1, access.crn, access.crm, access.op2, access.rt, access.read),
                (op0 as u8, op1 as u8, crn as u8, crm as u8, op2 as u8, rt as u8, read)
            );
            if decide(&access) != SysregAction::Undefined {
                proptest::prop_assert!(matches!(
                    group(&access),
                    SysregGroup::AuxiliaryControl
                        | SysregGroup::ErrorRecord
                        | SysregGroup::SgiGeneration(_)
                ));
            }
        }
    }
}
