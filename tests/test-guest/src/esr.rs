//! Decoding the syndrome of the faults the guest provokes, and checking a recorded fault
//! against what a test expects (Arm ARM D24.2.43 ESR_EL1; ISS encodings for data and
//! instruction aborts).

use core::fmt;

use crate::fixed::Text;
use crate::text;

pub const EC_UNKNOWN: u64 = 0x00;
pub const EC_SVC64: u64 = 0x15;
pub const EC_HVC64: u64 = 0x16;
pub const EC_SMC64: u64 = 0x17;
pub const EC_SYSREG: u64 = 0x18;
pub const EC_IABT_LOWER: u64 = 0x20;
pub const EC_IABT_CURRENT: u64 = 0x21;
pub const EC_PC_ALIGNMENT: u64 = 0x22;
pub const EC_DABT_LOWER: u64 = 0x24;
pub const EC_DABT_CURRENT: u64 = 0x25;
pub const EC_SP_ALIGNMENT: u64 = 0x26;
pub const EC_SERROR: u64 = 0x2f;
pub const EC_BRK64: u64 = 0x3c;

/// ISS bits of data aborts.
const ISS_WNR: u64 = 1 << 6;
const ISS_FNV: u64 = 1 << 10;
const ISS_CM: u64 = 1 << 8;

pub fn ec(esr: u64) -> u64 {
    (esr >> 26) & 0x3f
}

pub fn iss(esr: u64) -> u64 {
    esr & 0x1ff_ffff
}

/// DFSC/IFSC, ISS[5:0].
pub fn fault_status(esr: u64) -> u64 {
    esr & 0x3f
}

pub fn is_data_abort(esr: u64) -> bool {
    matches!(ec(esr), EC_DABT_LOWER | EC_DABT_CURRENT)
}

pub fn is_instruction_abort(esr: u64) -> bool {
    matches!(ec(esr), EC_IABT_LOWER | EC_IABT_CURRENT)
}

pub fn is_abort(esr: u64) -> bool {
    is_data_abort(esr) || is_instruction_abort(esr)
}

/// Data abort caused by a write (not meaningful for cache maintenance, CM = 1).
pub fn is_write(esr: u64) -> bool {
    esr & ISS_WNR != 0
}

/// FAR is not valid (FnV).
pub fn far_not_valid(esr: u64) -> bool {
    esr & ISS_FNV != 0
}

/// What kind of fault a DFSC/IFSC names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    AddressSize(u8),
    Translation(u8),
    AccessFlag(u8),
    Permission(u8),
    SyncExternal,
    SyncExternalOnWalk(u8),
    Alignment,
    TlbConflict,
    Other(u8),
}

impl FaultKind {
    pub fn decode(fsc: u64) -> Self {
        let fsc = (fsc & 0x3f) as u8;
        let level = fsc & 3;
        match fsc {
            0x00..=0x03 => Self::AddressSize(level),
            0x04..=0x07 => Self::Translation(level),
            0x09..=0x0b => Self::AccessFlag(level),
            0x0d..=0x0f => Self::Permission(level),
            0x10 => Self::SyncExternal,
            0x14..=0x17 => Self::SyncExternalOnWalk(level),
            0x21 => Self::Alignment,
            0x30 => Self::TlbConflict,
            other => Self::Other(other),
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AddressSize(l) => write!(f, "address size fault, level {l}"),
            Self::Translation(l) => write!(f, "translation fault, level {l}"),
            Self::AccessFlag(l) => write!(f, "access flag fault, level {l}"),
            Self::Permission(l) => write!(f, "permission fault, level {l}"),
            Self::SyncExternal => f.write_str("synchronous external abort"),
            Self::SyncExternalOnWalk(l) => {
                write!(f, "synchronous external abort on a table walk, level {l}")
            }
            Self::Alignment => f.write_str("alignment fault"),
            Self::TlbConflict => f.write_str("TLB conflict abort"),
            Self::Other(code) => write!(f, "fault status {code:#04x}"),
        }
    }
}

pub fn ec_name(ec: u64) -> &'static str {
    match ec {
        EC_UNKNOWN => "unknown reason (undefined instruction)",
        EC_SVC64 => "SVC",
        EC_HVC64 => "HVC",
        EC_SMC64 => "SMC",
        EC_SYSREG => "system register access",
        EC_IABT_LOWER => "instruction abort from a lower EL",
        EC_IABT_CURRENT => "instruction abort, same EL",
        EC_PC_ALIGNMENT => "PC alignment fault",
        EC_DABT_LOWER => "data abort from a lower EL",
        EC_DABT_CURRENT => "data abort, same EL",
        EC_SP_ALIGNMENT => "SP alignment fault",
        EC_SERROR => "SError",
        EC_BRK64 => "BRK",
        _ => "other exception class",
    }
}

/// A readable syndrome: `EC 0x25 (data abort, same EL), write, permission fault, level 3`.
pub struct Syndrome(pub u64);

impl fmt::Display for Syndrome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let esr = self.0;
        let class = ec(esr);
        write!(f, "EC {class:#04x} ({})", ec_name(class))?;
        if is_data_abort(esr) {
            let access = if esr & ISS_CM != 0 {
                "cache maintenance"
            } else if is_write(esr) {
                "write"
            } else {
                "read"
            };
            write!(f, ", {access}, {}", FaultKind::decode(esr))?;
        } else if is_instruction_abort(esr) {
            write!(f, ", fetch, {}", FaultKind::decode(esr))?;
        }
        if is_abort(esr) && far_not_valid(esr) {
            f.write_str(", FAR not valid")?;
        }
        Ok(())
    }
}

/// A synchronous exception the vectors recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub esr: u64,
    pub far: u64,
    pub elr: u64,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (ESR_EL1 {:#x}, FAR_EL1 {:#x}, ELR_EL1 {:#x})",
            Syndrome(self.esr),
            self.esr,
            self.far,
            self.elr
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Fetch,
}

/// The permission fault a test provokes: a stage-2 permission fault the hypervisor
/// reports to the guest as an abort taken to EL1 (EC 0x25/0x24 for data, 0x21/0x20 for
/// instruction fetches — the same-EL class is the right one for an EL1 access; the
/// lower-EL one is accepted as well), at this level, for this address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpectedFault {
    pub access: Access,
    pub level: u8,
    pub far: u64,
}

/// Checks `fault` against `expected`; the error says every field that differs.
pub fn check(fault: &Fault, expected: &ExpectedFault) -> Result<(), Text> {
    let esr = fault.esr;
    let mut why = Text::<240>::new();
    let mut complain = |what: fmt::Arguments<'_>| {
        use fmt::Write;
        if !why.is_empty() {
            let _ = why.write_str("; ");
        }
        let _ = why.write_fmt(what);
    };
    let class_ok = match expected.access {
        Access::Read | Access::Write => is_data_abort(esr),
        Access::Fetch => is_instruction_abort(esr),
    };
    if !class_ok {
        complain(format_args!("EC {:#04x} ({})", ec(esr), ec_name(ec(esr))));
    } else {
        if expected.access != Access::Fetch {
            if esr & ISS_CM != 0 {
                complain(format_args!("CM = 1"));
            }
            let want_write = expected.access == Access::Write;
            if is_write(esr) != want_write {
                complain(format_args!(
                    "WnR = {}, want {}",
                    u8::from(is_write(esr)),
                    u8::from(want_write)
                ));
            }
        }
        let kind = FaultKind::decode(esr);
        if kind != FaultKind::Permission(expected.level) {
            complain(format_args!(
                "{} (FSC {:#04x}), want permission fault, level {} (FSC {:#04x})",
                kind,
                fault_status(esr),
                expected.level,
                0x0c | u64::from(expected.level & 3)
            ));
        }
        if far_not_valid(esr) {
            complain(format_args!("FnV = 1 (FAR not valid)"));
        } else if fault.far != expected.far {
            complain(format_args!(
                "FAR {:#x}, want {:#x}",
                fault.far, expected.far
            ));
        }
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(text!("{why} (ESR_EL1 {esr:#x})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IL: u64 = 1 << 25;

    fn esr(ec: u64, iss: u64) -> u64 {
        (ec << 26) | IL | iss
    }

    #[test]
    fn decodes_write_permission_fault() {
        let e = esr(EC_DABT_CURRENT, ISS_WNR | 0x0f);
        assert_eq!(e, 0x9600_004f);
        assert!(is_data_abort(e) && is_write(e));
        assert_eq!(FaultKind::decode(e), FaultKind::Permission(3));
        assert_eq!(
            Syndrome(e).to_string(),
            "EC 0x25 (data abort, same EL), write, permission fault, level 3"
        );
    }

    #[test]
    fn decodes_other_fault_kinds() {
        assert_eq!(FaultKind::decode(0x07), FaultKind::Translation(3));
        assert_eq!(FaultKind::decode(0x10), FaultKind::SyncExternal);
        assert_eq!(FaultKind::decode(0x0b), FaultKind::AccessFlag(3));
        assert_eq!(FaultKind::decode(0x30), FaultKind::TlbConflict);
        assert_eq!(FaultKind::decode(0x3f), FaultKind::Other(0x3f));
        assert_eq!(
            Syndrome(esr(EC_IABT_CURRENT, 0x0f)).to_string(),
            "EC 0x21 (instruction abort, same EL), fetch, permission fault, level 3"
        );
        assert_eq!(
            Syndrome(esr(EC_UNKNOWN, 0)).to_string(),
            "EC 0x00 (unknown reason (undefined instruction))"
        );
    }

    #[test]
    fn expected_write_fault_matches() {
        let want = ExpectedFault {
            access: Access::Write,
            level: 3,
            far: 0x8020_0018,
        };
        for class in [EC_DABT_CURRENT, EC_DABT_LOWER] {
            let f = Fault {
                esr: esr(class, ISS_WNR | 0x0f),
                far: 0x8020_0018,
                elr: 0x4020_1000,
            };
            assert_eq!(check(&f, &want), Ok(()));
        }
    }

    #[test]
    fn mismatches_are_all_named() {
        let want = ExpectedFault {
            access: Access::Write,
            level: 3,
            far: 0x8020_0018,
        };
        // What the hypervisor injects today for any stage-2 abort: an external abort.
        let f = Fault {
            esr: esr(EC_DABT_CURRENT, 0x10),
            far: 0x8020_0010,
            elr: 0,
        };
        let why = check(&f, &want).unwrap_err();
        assert_eq!(
            why.as_str(),
            "WnR = 0, want 1; synchronous external abort (FSC 0x10), want permission fault, \
             level 3 (FSC 0x0f); FAR 0x80200010, want 0x80200018 (ESR_EL1 0x96000010)"
        );
        let f = Fault {
            esr: esr(EC_IABT_CURRENT, 0x0f),
            far: 0x8020_0018,
            elr: 0,
        };
        assert_eq!(
            check(&f, &want).unwrap_err().as_str(),
            "EC 0x21 (instruction abort, same EL) (ESR_EL1 0x8600000f)"
        );
    }

    #[test]
    fn expected_fetch_fault() {
        let want = ExpectedFault {
            access: Access::Fetch,
            level: 3,
            far: 0x8030_0000,
        };
        let ok = Fault {
            esr: esr(EC_IABT_CURRENT, 0x0f),
            far: 0x8030_0000,
            elr: 0x8030_0000,
        };
        assert_eq!(check(&ok, &want), Ok(()));
        let level2 = Fault {
            esr: esr(EC_IABT_CURRENT, 0x0e),
            ..ok
        };
        assert!(check(&level2, &want).is_err());
        let fnv = Fault {
            esr: esr(EC_IABT_CURRENT, ISS_FNV | 0x0f),
            ..ok
        };
        assert!(
            check(&fnv, &want)
                .unwrap_err()
                .as_str()
                .starts_with("FnV = 1")
        );
    }
}
