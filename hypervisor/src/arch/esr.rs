//! Decoding ESR_ELx (Arm ARM D24.2.40 "ESR_EL2"): exception class names and the parts
//! of the ISS the hypervisor reports or acts on.

use core::fmt;

/// ESR_ELx.EC, bits [31:26].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExceptionClass(pub u8);

impl ExceptionClass {
    pub const UNKNOWN: Self = Self(0x00);
    pub const WFX: Self = Self(0x01);
    pub const FP_ACCESS: Self = Self(0x07);
    pub const ILLEGAL_STATE: Self = Self(0x0e);
    pub const SVC64: Self = Self(0x15);
    pub const HVC64: Self = Self(0x16);
    pub const SMC64: Self = Self(0x17);
    pub const SYSREG: Self = Self(0x18);
    pub const SVE: Self = Self(0x19);
    pub const INSTR_ABORT_LOWER: Self = Self(0x20);
    pub const INSTR_ABORT_SAME: Self = Self(0x21);
    pub const PC_ALIGNMENT: Self = Self(0x22);
    pub const DATA_ABORT_LOWER: Self = Self(0x24);
    pub const DATA_ABORT_SAME: Self = Self(0x25);
    pub const SP_ALIGNMENT: Self = Self(0x26);
    pub const SERROR: Self = Self(0x2f);
    pub const BREAKPOINT_LOWER: Self = Self(0x30);
    pub const BREAKPOINT_SAME: Self = Self(0x31);
    pub const BRK64: Self = Self(0x3c);

    /// The Arm ARM's description of the class, or "reserved/unallocated".
    pub fn name(self) -> &'static str {
        match self.0 {
            0x00 => "unknown reason",
            0x01 => "WFI/WFE",
            0x03 => "MCR/MRC (coproc 0b1111)",
            0x04 => "MCRR/MRRC (coproc 0b1111)",
            0x05 => "MCR/MRC (coproc 0b1110)",
            0x06 => "LDC/STC",
            0x07 => "SVE/SIMD/FP access",
            0x0a => "LD64B/ST64B",
            0x0c => "MRRC (coproc 0b1110)",
            0x0d => "branch target exception",
            0x0e => "illegal execution state",
            0x11 => "SVC (AArch32)",
            0x12 => "HVC (AArch32)",
            0x13 => "SMC (AArch32)",
            0x15 => "SVC (AArch64)",
            0x16 => "HVC (AArch64)",
            0x17 => "SMC (AArch64)",
            0x18 => "MSR/MRS/system instruction (AArch64)",
            0x19 => "SVE access",
            0x1a => "ERET/ERETAA/ERETAB",
            0x1c => "pointer authentication failure",
            0x1d => "SME access",
            0x20 => "instruction abort from a lower EL",
            0x21 => "instruction abort at the same EL",
            0x22 => "PC alignment fault",
            0x24 => "data abort from a lower EL",
            0x25 => "data abort at the same EL",
            0x26 => "SP alignment fault",
            0x27 => "memory operation exception",
            0x28 => "FP exception (AArch32)",
            0x2c => "FP exception (AArch64)",
            0x2f => "SError interrupt",
            0x30 => "breakpoint from a lower EL",
            0x31 => "breakpoint at the same EL",
            0x32 => "software step from a lower EL",
            0x33 => "software step at the same EL",
            0x34 => "watchpoint from a lower EL",
            0x35 => "watchpoint at the same EL",
            0x38 => "BKPT (AArch32)",
            0x3c => "BRK (AArch64)",
            _ => "reserved/unallocated",
        }
    }
}

/// A decoded ESR_ELx value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Esr(pub u64);

impl Esr {
    pub fn class(self) -> ExceptionClass {
        ExceptionClass(((self.0 >> 26) & 0x3f) as u8)
    }

    /// IL, bit [25]: the trapped instruction was 32-bit.
    pub fn il(self) -> bool {
        self.0 & (1 << 25) != 0
    }

    /// ISS, bits [24:0].
    pub fn iss(self) -> u32 {
        (self.0 & 0x01ff_ffff) as u32
    }

    /// For instruction and data aborts: the fault status code, ISS[5:0].
    pub fn fault_status(self) -> u8 {
        (self.0 & 0x3f) as u8
    }

    /// For data aborts: WnR, ISS[6] (the access was a write). It reads 1 for a cache
    /// maintenance instruction ([`Esr::cache_maintenance`]) and for a fault on a stage-1
    /// table walk is not about the walk ([`Esr::stage1_walk`]), so it alone does not
    /// say what the faulting access needed (see [`crate::vm::fault`]).
    pub fn is_write(self) -> bool {
        self.0 & (1 << 6) != 0
    }

    /// For instruction and data aborts: S1PTW, ISS[7]. The fault was on the stage-2
    /// translation of an address a stage-1 table walk accessed (a descriptor read, or a
    /// hardware Access-flag/dirty-state update), not on the access itself.
    pub fn stage1_walk(self) -> bool {
        self.0 & (1 << 7) != 0
    }

    /// For data aborts: CM, ISS[8]. The abort came from a cache maintenance (DC/IC by VA)
    /// or address translation (AT) instruction; WnR then reads 1 whatever the
    /// instruction needed (Arm ARM, ESR_ELx "ISS encoding for an exception from a Data
    /// Abort", CM and WnR).
    pub fn cache_maintenance(self) -> bool {
        self.0 & (1 << 8) != 0
    }

    /// For instruction and data aborts: FnV, ISS[10]. FAR_ELx does not hold the faulting
    /// address. Only a synchronous external abort (FSC 0b010000) may set it; RES0
    /// otherwise.
    pub fn far_not_valid(self) -> bool {
        self.0 & (1 << 10) != 0
    }

    /// For data aborts: ISV, ISS[24]. ISS[23:14] (SAS, SSE, SRT, SF, AR) describe the
    /// faulting load or store, as needed to emulate it.
    pub fn syndrome_valid(self) -> bool {
        self.0 & (1 << 24) != 0
    }

    fn is_abort(self) -> bool {
        matches!(self.class().0, 0x20 | 0x21 | 0x24 | 0x25)
    }
}

/// The DFSC/IFSC value's meaning (Arm ARM, ISS encoding for an exception from a data abort).
pub fn fault_status_name(fsc: u8) -> &'static str {
    match fsc {
        0x00..=0x03 => "address size fault",
        0x04..=0x07 => "translation fault",
        0x08..=0x0b => "access flag fault",
        0x0c..=0x0f => "permission fault",
        0x10 => "synchronous external abort",
        0x11 => "synchronous tag check fault",
        0x14..=0x17 => "synchronous external abort on table walk",
        0x18 => "synchronous parity/ECC error",
        0x1c..=0x1f => "parity/ECC error on table walk",
        0x21 => "alignment fault",
        0x30 => "TLB conflict abort",
        0x31 => "unsupported atomic hardware update",
        _ => "reserved fault status",
    }
}

impl fmt::Display for Esr {
    /// `0x96000045 (EC 0x25 data abort at the same EL, IL 1, ISS 0x000045: translation fault level 1, write)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let class = self.class();
        write!(
            f,
            "{:#010x} (EC {:#04x} {}, IL {}, ISS {:#08x}",
            self.0,
            class.0,
            class.name(),
            u8::from(self.il()),
            self.iss()
        )?;
        if self.is_abort() {
            let fsc = self.fault_status();
            write!(f, ": {}", fault_status_name(fsc))?;
            if fsc < 0x10 {
                write!(f, " level {}", fsc & 3)?;
            }
            if matches!(class.0, 0x24 | 0x25) {
                f.write_str(if self.cache_maintenance() {
                    ", cache maintenance"
                } else if self.is_write() {
                    ", write"
                } else {
                    ", read"
                })?;
            }
            if self.stage1_walk() {
                f.write_str(", on a stage-1 table walk")?;
            }
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_abort_translation_fault_is_named_with_level_and_direction() {
        let esr = Esr(0x9600_0045);
        assert_eq!(esr.class(), ExceptionClass::DATA_ABORT_SAME);
        assert_eq!(
            format!("{esr}"),
            "0x96000045 (EC 0x25 data abort at the same EL, IL 1, ISS 0x000045: translation fault level 1, write)"
        );
    }

    #[test]
    fn hvc_from_guest_is_named() {
        let esr = Esr(0x5a00_0000);
        assert_eq!(esr.class(), ExceptionClass::HVC64);
        assert!(format!("{esr}").contains("HVC (AArch64)"));
    }

    #[test]
    fn every_class_has_a_name_and_reserved_ones_say_so() {
        assert_eq!(ExceptionClass(0x3f).name(), "reserved/unallocated");
        for ec in 0..64u8 {
            assert!(!ExceptionClass(ec).name().is_empty());
        }
    }

    #[test]
    fn abort_flags_are_decoded_and_named() {
        // Data abort from a lower EL, ISV, FnV, CM, S1PTW, WnR, permission fault level 3.
        let esr = Esr(0x9300_05cf);
        assert!(esr.syndrome_valid());
        assert!(esr.far_not_valid());
        assert!(esr.cache_maintenance());
        assert!(esr.stage1_walk());
        assert!(esr.is_write());
        assert!(
            format!("{esr}")
                .ends_with("permission fault level 3, cache maintenance, on a stage-1 table walk)")
        );
        let plain = Esr(0x9200_0007);
        assert!(!plain.syndrome_valid());
        assert!(!plain.far_not_valid());
        assert!(!plain.cache_maintenance());
        assert!(!plain.stage1_walk());
        assert!(format!("{plain}").ends_with("translation fault level 3, read)"));
    }

    #[test]
    fn tlb_conflict_abort_is_named() {
        assert_eq!(fault_status_name(0x30), "TLB conflict abort");
    }
}
