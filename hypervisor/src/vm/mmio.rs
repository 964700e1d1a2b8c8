//! A guest's load or store to an emulated device, decoded from the stage-2 data abort it
//! causes (the first piece of the virtual GIC, console and SMMU work: each emulates
//! registers behind a stage-2 hole). Portable; the trap handler supplies the syndrome, the
//! faulting IPA and the trap frame.
//!
//! Arm ARM, "ISS encoding for an exception from a Data Abort": with ISV (bit 24) set, the
//! syndrome describes a single load or store of a general-purpose register: SAS [23:22]
//! (access size), SSE (21, sign-extend a load), SRT [20:16] (the register; 31 is XZR),
//! SF (15, a 64-bit register), AR (14, acquire/release), WnR (6). Without ISV (a load or
//! store pair, a writeback addressing mode, a SIMD register, ...) the hypervisor cannot
//! emulate the access without decoding the instruction, and refuses it, as KVM does
//! (it injects an external abort). Cache maintenance (CM) and faults on the guest's own
//! table walk (S1PTW) are not accesses to the device at all.

use crate::arch::esr::{Esr, ExceptionClass};

/// The width of the access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessSize {
    Byte = 1,
    Half = 2,
    Word = 4,
    Double = 8,
}

impl AccessSize {
    pub fn bytes(self) -> u64 {
        self as u64
    }

    fn mask(self) -> u64 {
        match self {
            AccessSize::Double => u64::MAX,
            size => (1u64 << (8 * size.bytes())) - 1,
        }
    }
}

/// One decoded access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    pub ipa: u64,
    pub size: AccessSize,
    pub write: bool,
    /// The general-purpose register loaded or stored: 0..=30, or 31 for XZR.
    pub register: u8,
    /// A load sign-extends the value (SSE).
    pub sign_extend: bool,
    /// The register is 64 bits wide (SF); a 32-bit (W) register has its top half zeroed.
    pub wide_register: bool,
    /// Load-acquire or store-release (AR): the emulation is already ordered by the trap.
    pub acquire_release: bool,
}

impl core::fmt::Display for MmioAccess {
    /// `a 4-byte store of w3`, `an 8-byte load into x0`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // "an 8-byte", "a 1/2/4-byte".
        let article = if self.size == AccessSize::Double {
            "an"
        } else {
            "a"
        };
        let (verb, preposition) = if self.write {
            ("store", "of")
        } else {
            ("load", "into")
        };
        let width = if self.wide_register { 'x' } else { 'w' };
        write!(
            f,
            "{article} {}-byte {verb} {preposition} ",
            self.size.bytes()
        )?;
        if self.register == 31 {
            write!(f, "{width}zr")
        } else {
            write!(f, "{width}{}", self.register)
        }
    }
}

/// What a data abort tried, for a log line: the access, or that it was not a plain load
/// or store.
pub struct Attempt(pub Result<MmioAccess, NotEmulable>);

impl core::fmt::Display for Attempt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.0 {
            Ok(access) => access.fmt(f),
            Err(_) => f.write_str("not a plain load or store"),
        }
    }
}

/// Why a data abort is not an access the hypervisor can emulate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotEmulable {
    /// Not a data abort from a lower exception level.
    NotADataAbort,
    /// ISV = 0: the syndrome does not describe the access (a pair, writeback, SIMD...).
    NoSyndrome,
    /// CM = 1: a cache maintenance or address translation instruction.
    CacheMaintenance,
    /// S1PTW = 1: the guest's own stage-1 table walk, not an access to the device.
    StageOneWalk,
    /// The access is not naturally aligned (device registers are not split).
    Unaligned,
}

impl MmioAccess {
    /// Decodes the data abort `esr` at `ipa` (the full IPA: HPFAR_EL2's page and FAR's
    /// offset).
    ///
    /// # Errors
    /// [`NotEmulable`] says why the access cannot be emulated.
    pub fn decode(esr: Esr, ipa: u64) -> Result<Self, NotEmulable> {
        if esr.class() != ExceptionClass::DATA_ABORT_LOWER {
            return Err(NotEmulable::NotADataAbort);
        }
        if esr.cache_maintenance() {
            return Err(NotEmulable::CacheMaintenance);
        }
        if esr.stage1_walk() {
            return Err(NotEmulable::StageOneWalk);
        }
        if !esr.syndrome_valid() {
            return Err(NotEmulable::NoSyndrome);
        }
        let iss = esr.0;
        let size = match (iss >> 22) & 0b11 {
            0 => AccessSize::Byte,
            1 => AccessSize::Half,
            2 => AccessSize::Word,
            _ => AccessSize::Double,
        };
        if !ipa.is_multiple_of(size.bytes()) {
            return Err(NotEmulable::Unaligned);
        }
        Ok(Self {
            ipa,
            size,
            write: esr.is_write(),
            register: ((iss >> 16) & 0x1f) as u8,
            sign_extend: iss & (1 << 21) != 0,
            wide_register: iss & (1 << 15) != 0,
            acquire_release: iss & (1 << 14) != 0,
        })
    }

    /// The value a store writes: the register's low `size` bytes (XZR stores zero).
    pub fn store_value(&self, regs: &[u64; 31]) -> u64 {
        regs.get(usize::from(self.register))
            .map_or(0, |&value| value & self.size.mask())
    }

    /// What a load of `data` (the device's `size` bytes, zero-extended) leaves in the
    /// register: sign-extended from the access size when SSE, then cut to 32 bits for a W
    /// register.
    pub fn load_result(&self, data: u64) -> u64 {
        let data = data & self.size.mask();
        let bits = 8 * self.size.bytes() as u32;
        let extended = if self.sign_extend && bits < 64 {
            let shift = 64 - bits;
            (((data << shift) as i64) >> shift) as u64
        } else {
            data
        };
        if self.wide_register {
            extended
        } else {
            extended & 0xffff_ffff
        }
    }

    /// Completes a load in the trap frame's registers (a load into XZR discards it).
    pub fn complete_load(&self, regs: &mut [u64; 31], data: u64) {
        if let Some(register) = regs.get_mut(usize::from(self.register)) {
            *register = self.load_result(data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data abort from a lower EL with ISV and the given fields.
    fn syndrome(sas: u64, sse: bool, srt: u64, sf: bool, write: bool) -> Esr {
        Esr((0x24 << 26)
            | (1 << 25)
            | (1 << 24)
            | (sas << 22)
            | (u64::from(sse) << 21)
            | (srt << 16)
            | (u64::from(sf) << 15)
            | (u64::from(write) << 6)
            | 0x06)
    }

    #[test]
    fn a_32_bit_store_of_w3_writes_its_low_word() {
        let access = MmioAccess::decode(syndrome(2, false, 3, false, true), 0x0800_0104).unwrap();
        assert_eq!(access.size, AccessSize::Word);
        assert!(access.write);
        let mut regs = [0u64; 31];
        regs[3] = 0xdead_beef_1234_5678;
        assert_eq!(access.store_value(&regs), 0x1234_5678);
    }

    #[test]
    fn a_store_of_xzr_writes_zero_and_a_load_into_xzr_is_dropped() {
        let store = MmioAccess::decode(syndrome(3, false, 31, true, true), 0x1000).unwrap();
        assert_eq!(store.store_value(&[u64::MAX; 31]), 0);
        let load = MmioAccess::decode(syndrome(3, false, 31, true, false), 0x1000).unwrap();
        let mut regs = [7u64; 31];
        load.complete_load(&mut regs, 0x55);
        assert_eq!(regs, [7u64; 31]);
    }

    #[test]
    fn loads_extend_as_the_instruction_says() {
        // LDRSB X0: sign-extend a byte to 64 bits.
        let ldrsb_x = MmioAccess::decode(syndrome(0, true, 0, true, false), 0x1001).unwrap();
        assert_eq!(ldrsb_x.load_result(0x80), 0xffff_ffff_ffff_ff80);
        // LDRSH W1: sign-extend a half-word to 32 bits, the top half zero.
        let ldrsh_w = MmioAccess::decode(syndrome(1, true, 1, false, false), 0x1002).unwrap();
        assert_eq!(ldrsh_w.load_result(0x8001), 0xffff_8001);
        // LDRH W2: zero-extend.
        let ldrh = MmioAccess::decode(syndrome(1, false, 2, false, false), 0x1002).unwrap();
        assert_eq!(ldrh.load_result(0xffff_8001), 0x8001);
        // LDR X3: the whole double word.
        let ldr = MmioAccess::decode(syndrome(3, false, 3, true, false), 0x1008).unwrap();
        let mut regs = [0u64; 31];
        ldr.complete_load(&mut regs, 0x0123_4567_89ab_cdef);
        assert_eq!(regs[3], 0x0123_4567_89ab_cdef);
    }

    #[test]
    fn an_access_names_itself() {
        let store = MmioAccess::decode(syndrome(2, false, 3, false, true), 0x1000).unwrap();
        assert_eq!(store.to_string(), "a 4-byte store of w3");
        let load = MmioAccess::decode(syndrome(3, false, 31, true, false), 0x1000).unwrap();
        assert_eq!(load.to_string(), "an 8-byte load into xzr");
        let byte = MmioAccess::decode(syndrome(0, true, 0, true, false), 0x1000).unwrap();
        assert_eq!(byte.to_string(), "a 1-byte load into x0");
    }

    #[test]
    fn what_cannot_be_emulated_is_refused_with_the_reason() {
        let no_isv = Esr(syndrome(2, false, 0, false, false).0 & !(1 << 24));
        assert_eq!(
            MmioAccess::decode(no_isv, 0x1000),
            Err(NotEmulable::NoSyndrome)
        );
        let cm = Esr(syndrome(2, false, 0, false, true).0 | (1 << 8));
        assert_eq!(
            MmioAccess::decode(cm, 0x1000),
            Err(NotEmulable::CacheMaintenance)
        );
        let walk = Esr(syndrome(3, false, 0, true, false).0 | (1 << 7));
        assert_eq!(
            MmioAccess::decode(walk, 0x1000),
            Err(NotEmulable::StageOneWalk)
        );
        assert_eq!(
            MmioAccess::decode(syndrome(2, false, 0, false, false), 0x1002),
            Err(NotEmulable::Unaligned)
        );
        let el2_abort = Esr((0x25 << 26) | (1 << 24));
        assert_eq!(
            MmioAccess::decode(el2_abort, 0x1000),
            Err(NotEmulable::NotADataAbort)
        );
    }

    proptest::proptest! {
        /// Against a model: the loaded register equals the value read as the access
        /// size's integer, extended per SSE and cut to the register's width.
        #[test]
        fn loads_match_a_model(sas in 0u64..4, sse: bool, sf: bool, srt in 0u64..31, data: u64) {
            let bytes = 1u64 << sas;
            let ipa = 0x4000 * bytes;
            let access = MmioAccess::decode(syndrome(sas, sse, srt, sf, false), ipa).unwrap();
            let model: u64 = match (bytes, sse) {
                (1, false) => u64::from(data as u8),
                (1, true) => data as u8 as i8 as i64 as u64,
                (2, false) => u64::from(data as u16),
                (2, true) => data as u16 as i16 as i64 as u64,
                (4, false) => u64::from(data as u32),
                (4, true) => data as u32 as i32 as i64 as u64,
                _ => data,
            };
            let model = if sf { model } else { model & 0xffff_ffff };
            let mut regs = [0u64; 31];
            access.complete_load(&mut regs, data);
            proptest::prop_assert_eq!(regs[srt as usize], model);
        }

        /// Decoding never panics, and anything it accepts is aligned and names a register.
        #[test]
        fn decode_never_panics(esr: u64, ipa: u64) {
            if let Ok(access) = MmioAccess::decode(Esr(esr), ipa) {
                proptest::prop_assert!(access.ipa % access.size.bytes() == 0);
                proptest::prop_assert!(access.register <= 31);
            }
        }
    }
}
