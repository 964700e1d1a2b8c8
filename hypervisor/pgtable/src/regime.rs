//! Translation regimes (EL2 stage 1, stage 2), their table geometry with the 4 KiB granule,
//! and the control-register values that go with them.

use crate::error::Error;

/// The translation granule: 4 KiB.
pub const PAGE_SIZE: u64 = 4096;
/// Descriptors in one table page.
pub const ENTRIES: usize = 512;
/// Entries in one contiguous group (4 KiB granule, levels 2 and 3).
pub const CONT_ENTRIES: usize = 16;
/// Output addresses are limited to the 48 bits of the descriptor's OA field (no FEAT_LPA2).
pub const OA_BITS: u8 = 48;

/// Bit position of the lowest input-address bit a level resolves.
#[inline]
pub(crate) const fn level_shift(level: u8) -> u32 {
    12 + 9 * (3 - level as u32)
}

/// Size of the input range one entry at `level` covers.
#[inline]
pub(crate) const fn level_size(level: u8) -> u64 {
    1 << level_shift(level)
}

/// Whether an entry at `level` may be a block (level 3 entries are pages and always
/// leaves). With the 4 KiB granule and no FEAT_LPA2, blocks exist at level 1 (1 GiB) and
/// level 2 (2 MiB), never at level 0, in both regimes.
#[inline]
pub(crate) const fn leaf_allowed(level: u8) -> bool {
    level >= 1
}

/// Whether the contiguous hint is used at `level`.
///
/// The Arm ARM defines 16-entry groups for the 4 KiB granule at levels 1 (16 GiB), 2
/// (32 MiB) and 3 (64 KiB). We use the hint at levels 2 and 3 only, like Linux: a 16 GiB
/// group needs 16 GiB of input and output alignment, TLBs rarely hold entries that large,
/// and a level-1 group would turn every split of a 1 GiB block into a 16 GiB break under
/// break-before-make.
#[inline]
pub(crate) const fn cont_allowed(level: u8) -> bool {
    level >= 2
}

/// Which translation regime a table serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegimeKind {
    /// EL2 stage 1 without VHE (one VA range, one privilege level), TTBR0_EL2.
    El2,
    /// Stage 2 of the EL1&0 regime, VTTBR_EL2.
    Stage2,
}

/// A regime and its table geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Regime {
    kind: RegimeKind,
    ia_bits: u8,
    start_level: u8,
    root_tables: u8,
}

/// Physical address sizes of ID_AA64MMFR0_EL1.PARange (and the PS fields), by encoding.
const PA_RANGES: [u8; 7] = [32, 36, 40, 42, 44, 48, 52];

impl Regime {
    /// EL2 stage 1 with a 48-bit VA: start level 0, one root table.
    pub const fn el2() -> Self {
        Regime {
            kind: RegimeKind::El2,
            ia_bits: 48,
            start_level: 0,
            root_tables: 1,
        }
    }

    /// Stage 2 with an IPA size of `ipa_bits` (32 to 48).
    ///
    /// The start level is the lowest one whose root fits in at most 16 concatenated
    /// tables (Arm ARM "Concatenated translation tables"), which saves a level where it
    /// can: 32 to 34 bits start at level 2 (up to 16 tables), 35 to 43 bits at level 1
    /// (40 bits: 2 tables, 42 bits: 8), 44 to 48 bits at level 0.
    ///
    /// # Errors
    /// [`Error::UnsupportedSize`] outside 32..=48 bits.
    pub const fn stage2(ipa_bits: u8) -> Result<Self, Error> {
        if ipa_bits < 32 || ipa_bits > 48 {
            return Err(Error::UnsupportedSize { bits: ipa_bits });
        }
        let mut start_level = 2;
        // A root at `level` with 16 concatenated tables resolves shift + 9 + 4 bits.
        while ipa_bits as u32 > level_shift(start_level) + 9 + 4 {
            start_level -= 1;
        }
        let root_bits = level_shift(start_level) + 9;
        let root_tables = if ipa_bits as u32 > root_bits {
            1u8 << (ipa_bits as u32 - root_bits)
        } else {
            1
        };
        Ok(Regime {
            kind: RegimeKind::Stage2,
            ia_bits: ipa_bits,
            start_level,
            root_tables,
        })
    }

    /// Stage 2 covering the whole physical address range reported by
    /// ID_AA64MMFR0_EL1.PARange (`parange` is the raw 4-bit field). 52-bit ranges are
    /// capped at 48 bits (no FEAT_LPA2 with this engine).
    ///
    /// # Errors
    /// [`Error::UnsupportedSize`] for a reserved encoding.
    pub const fn stage2_for_pa_range(parange: u8) -> Result<Self, Error> {
        if parange as usize >= PA_RANGES.len() {
            return Err(Error::UnsupportedSize { bits: 0 });
        }
        let bits = PA_RANGES[parange as usize];
        Self::stage2(if bits > 48 { 48 } else { bits })
    }

    /// The regime.
    pub const fn kind(&self) -> RegimeKind {
        self.kind
    }

    /// Input address bits (VA at EL2, IPA at stage 2).
    pub const fn ia_bits(&self) -> u8 {
        self.ia_bits
    }

    /// The level of the root table.
    pub const fn start_level(&self) -> u8 {
        self.start_level
    }

    /// Number of concatenated root tables (contiguous, aligned to their total size).
    pub const fn root_tables(&self) -> usize {
        self.root_tables as usize
    }

    /// One past the highest input address.
    pub const fn ia_limit(&self) -> u64 {
        1 << self.ia_bits
    }

    /// Entries in the (possibly concatenated) root.
    pub(crate) const fn root_entries(&self) -> usize {
        // A root may resolve fewer bits than a full table (36-bit IPA at level 1: 64).
        (self.ia_limit() >> level_shift(self.start_level)) as usize
    }
}

/// MAIR_EL2 for the EL2 stage-1 attribute indexes this engine writes:
/// index 0 Normal write-back read/write-allocate (0xff), index 1 Device-nGnRE (0x04),
/// index 2 Normal non-cacheable (0x44).
pub const MAIR_EL2: u64 = 0xff | (0x04 << 8) | (0x44 << 16);

/// The PS/PARange encoding of a physical address size.
///
/// # Errors
/// [`Error::UnsupportedSize`] if `pa_bits` is not one of 32, 36, 40, 42, 44, 48.
pub const fn pa_size_encoding(pa_bits: u8) -> Result<u64, Error> {
    let mut i = 0;
    while i < PA_RANGES.len() - 1 {
        if PA_RANGES[i] == pa_bits {
            return Ok(i as u64);
        }
        i += 1;
    }
    Err(Error::UnsupportedSize { bits: pa_bits })
}

// Field values shared by TCR_EL2 and VTCR_EL2 (same positions for the fields used).
const IRGN0_WBWA: u64 = 0b01 << 8;
const ORGN0_WBWA: u64 = 0b01 << 10;
const SH0_INNER: u64 = 0b11 << 12;
const TG0_4K: u64 = 0b00 << 14;
const PS_SHIFT: u32 = 16;
const RES1_BIT31: u64 = 1 << 31;
const TCR_EL2_RES1_BIT23: u64 = 1 << 23;

/// TCR_EL2 (HCR_EL2.E2H = 0) for [`Regime::el2`]: T0SZ = 16 (48-bit VA), table walks
/// inner-shareable write-back write-allocate, TG0 = 4 KiB, PS from `pa_bits`, RES1 bits
/// 31 and 23 set. TBI, HA and HD stay 0 (no hardware Access flag: this engine sets AF).
///
/// # Errors
/// [`Error::UnsupportedSize`] for a `pa_bits` that has no PS encoding.
pub const fn tcr_el2(pa_bits: u8) -> Result<u64, Error> {
    let ps = match pa_size_encoding(pa_bits) {
        Ok(ps) => ps,
        Err(e) => return Err(e),
    };
    Ok((64 - 48)
        | IRGN0_WBWA
        | ORGN0_WBWA
        | SH0_INNER
        | TG0_4K
        | (ps << PS_SHIFT)
        | TCR_EL2_RES1_BIT23
        | RES1_BIT31)
}

/// VTCR_EL2 for a stage-2 `regime`: T0SZ = 64 - IPA bits, SL0 from the start level
/// (4 KiB granule: 0b10 = level 0, 0b01 = level 1, 0b00 = level 2), walks inner-shareable
/// write-back write-allocate, TG0 = 4 KiB, PS from `pa_bits`, RES1 bit 31. VS (16-bit
/// VMID), HA and HD stay 0; the caller ORs in what it enables.
///
/// # Errors
/// [`Error::UnsupportedSize`] if `regime` is not a stage-2 regime or `pa_bits` has no PS
/// encoding.
pub const fn vtcr_el2(regime: &Regime, pa_bits: u8) -> Result<u64, Error> {
    if !matches!(regime.kind, RegimeKind::Stage2) {
        return Err(Error::UnsupportedSize {
            bits: regime.ia_bits,
        });
    }
    let ps = match pa_size_encoding(pa_bits) {
        Ok(ps) => ps,
        Err(e) => return Err(e),
    };
    let sl0: u64 = 2 - regime.start_level as u64;
    Ok((64 - regime.ia_bits as u64)
        | (sl0 << 6)
        | IRGN0_WBWA
        | ORGN0_WBWA
        | SH0_INNER
        | TG0_4K
        | (ps << PS_SHIFT)
        | RES1_BIT31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage2_geometry_concatenates_to_save_a_level() {
        let cases = [
            (32, 2, 4),
            (34, 2, 16),
            (36, 1, 1),
            (40, 1, 2),
            (42, 1, 8),
            (43, 1, 16),
            (44, 0, 1),
            (48, 0, 1),
        ];
        for (bits, level, tables) in cases {
            let r = Regime::stage2(bits).unwrap();
            assert_eq!(
                (r.start_level(), r.root_tables()),
                (level, tables),
                "{bits}"
            );
            assert_eq!(r.root_entries() as u64 * level_size(level), 1 << bits);
        }
        assert!(Regime::stage2(31).is_err());
        assert!(Regime::stage2(49).is_err());
        assert_eq!(Regime::stage2_for_pa_range(6).unwrap().ia_bits(), 48);
        assert_eq!(Regime::stage2_for_pa_range(2).unwrap().ia_bits(), 40);
    }

    #[test]
    fn vtcr_for_40_bit_ipa() {
        let r = Regime::stage2(40).unwrap();
        let v = vtcr_el2(&r, 40).unwrap();
        assert_eq!(v & 0x3f, 24, "T0SZ");
        assert_eq!((v >> 6) & 3, 1, "SL0 = level 1");
        assert_eq!((v >> 8) & 0xf, 0b0101, "IRGN0/ORGN0 WBWA");
        assert_eq!((v >> 12) & 3, 3, "SH0 inner");
        assert_eq!((v >> 14) & 3, 0, "TG0 4K");
        assert_eq!((v >> 16) & 7, 2, "PS 40 bits");
        assert_eq!(v >> 31 & 1, 1, "RES1");
        assert_eq!(v, 0x8002_3558);
        let l0 = vtcr_el2(&Regime::stage2(48).unwrap(), 48).unwrap();
        assert_eq!((l0 >> 6) & 3, 2, "SL0 = level 0");
        assert_eq!(l0 & 0x3f, 16);
        let l2 = vtcr_el2(&Regime::stage2(32).unwrap(), 32).unwrap();
        assert_eq!((l2 >> 6) & 3, 0, "SL0 = level 2");
        assert!(vtcr_el2(&Regime::el2(), 40).is_err());
        assert!(vtcr_el2(&r, 39).is_err());
    }

    #[test]
    fn tcr_el2_for_48_bit_va() {
        let t = tcr_el2(44).unwrap();
        assert_eq!(t, 0x8084_3510);
        assert_eq!(t & 0x3f, 16);
        assert_eq!((t >> 16) & 7, 4);
    }

    #[test]
    fn mair_indexes() {
        assert_eq!(MAIR_EL2 & 0xff, 0xff);
        assert_eq!((MAIR_EL2 >> 8) & 0xff, 0x04);
        assert_eq!((MAIR_EL2 >> 16) & 0xff, 0x44);
    }
}
