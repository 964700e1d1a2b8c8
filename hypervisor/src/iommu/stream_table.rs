//! The stream table's shape (IHI 0070 "Stream table", "SMMU_STRTAB_BASE_CFG", "Level 1
//! Stream Table Descriptor"): linear or two-level, its sizes and alignments, the
//! STRTAB_BASE / STRTAB_BASE_CFG values, and where the STE of a StreamID lives.
//!
//! The table covers only the StreamIDs up to the highest one assigned (LOG2SIZE may be
//! below IDR1.SIDSIZE): a transaction with a larger StreamID is terminated with an abort
//! and, with CR2.RECINVSID, recorded as C_BAD_STREAMID. Inside the table every STE that
//! is not a guest's is [`crate::iommu::ste::Ste::abort`], and in a two-level table every
//! group of 256 StreamIDs without an assigned one has an invalid L1 descriptor (SPAN 0),
//! which also aborts (C_BAD_STREAMID). Unassigned streams never reach memory.
//!
//! # Linear or two-level
//!
//! Linear when at most [`LINEAR_MAX_ENTRIES`] (2^8) STEs cover the assigned StreamIDs,
//! or when the SMMU has no two-level tables (IDR0.ST_LEVEL); two-level with SPLIT = 8
//! otherwise. 2^8 STEs are 16 KiB, exactly one two-level L2 table (SPLIT = 8, as Linux
//! uses), so up to there a linear table costs no more memory than the smallest two-level
//! table would, and it saves the L1 fetch on every STE miss. Beyond it a linear table
//! grows with the highest StreamID (PCIe StreamIDs are usually the Requester ID, bus <<
//! 8 | devfn, so one device on bus 1 needs 512 STEs), while a two-level table spends 16
//! KiB per group of 256 StreamIDs in use plus 8 bytes per group in L1. QEMU's PCIe
//! devices on bus 0 therefore get a linear table of at most 16 KiB.

use core::fmt;

/// Bytes in one STE.
pub const STE_BYTES: u64 = 64;
/// Bytes in one L1 descriptor.
pub const L1_DESCRIPTOR_BYTES: u64 = 8;
/// STRTAB_BASE_CFG.SPLIT for two-level tables: StreamID bits resolved by an L2 table.
pub const SPLIT: u8 = 8;
/// STEs in one L2 table.
pub const L2_ENTRIES: u64 = 1 << SPLIT;
/// Bytes in one L2 table (16 KiB).
pub const L2_TABLE_BYTES: u64 = L2_ENTRIES * STE_BYTES;
/// Up to this many STEs the table is linear (see the module documentation).
pub const LINEAR_MAX_ENTRIES: u64 = 1 << 8;
/// The largest two-level L1 table this driver builds: 2^17 descriptors (1 MiB), Linux's
/// STRTAB_MAX_L1_ENTRIES; it covers 25-bit StreamIDs.
pub const MAX_L1_ENTRIES: u64 = 1 << 17;

/// STRTAB_BASE.RA, bit 62: read-allocate hint for STE fetches (Linux sets it).
const STRTAB_BASE_RA: u64 = 1 << 62;
/// STRTAB_BASE.ADDR, bits \[51:6\].
const STRTAB_BASE_ADDR_MASK: u64 = ((1 << 52) - 1) & !0x3f;
const CFG_FMT_SHIFT: u32 = 16;
const CFG_SPLIT_SHIFT: u32 = 6;
/// L1 descriptor L2Ptr, bits \[51:6\].
const L1_L2PTR_MASK: u64 = STRTAB_BASE_ADDR_MASK;

/// STRTAB_BASE_CFG.FMT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// 0b00: one array of STEs indexed by StreamID.
    Linear,
    /// 0b01: L1 descriptors indexed by StreamID >> SPLIT, each pointing to an array of
    /// 2^SPLIT STEs.
    TwoLevel,
}

/// Where the STE of a StreamID lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SteLocation {
    /// Index into the linear table: the STE is at `index * 64` bytes.
    Linear {
        /// STE index.
        index: u32,
    },
    /// L1 descriptor `l1_index` (at `l1_index * 8` bytes) points to the L2 table whose
    /// STE `l2_index` (at `l2_index * 64` bytes) it is.
    TwoLevel {
        /// L1 descriptor index.
        l1_index: u32,
        /// STE index in the L2 table.
        l2_index: u32,
    },
}

/// Why no stream table could be laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamTableError {
    /// A StreamID is beyond IDR1.SIDSIZE.
    StreamIdBeyondSidSize {
        /// The StreamID.
        stream_id: u32,
        /// IDR1.SIDSIZE.
        sid_bits: u8,
    },
    /// A StreamID needs an L1 table larger than [`MAX_L1_ENTRIES`].
    StreamIdTooLarge {
        /// The StreamID.
        stream_id: u32,
    },
    /// A table address is not aligned as the SMMU requires, or does not fit the register.
    Misaligned {
        /// The address.
        addr: u64,
        /// The alignment required.
        align: u64,
    },
}

impl fmt::Display for StreamTableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::StreamIdBeyondSidSize {
                stream_id,
                sid_bits,
            } => write!(f, "StreamID {stream_id:#x} beyond SIDSIZE {sid_bits}"),
            Self::StreamIdTooLarge { stream_id } => {
                write!(
                    f,
                    "StreamID {stream_id:#x} needs too large an L1 stream table"
                )
            }
            Self::Misaligned { addr, align } => {
                write!(f, "stream table at {addr:#x} not aligned to {align:#x}")
            }
        }
    }
}

/// The shape of one SMMU's stream table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamTableLayout {
    format: Format,
    /// STRTAB_BASE_CFG.LOG2SIZE: the table covers StreamIDs below 2^log2size.
    log2size: u8,
}

/// Bits needed to index StreamIDs `0..=highest`.
const fn index_bits(highest: u32) -> u8 {
    match highest {
        0 => 0,
        h => (32 - h.leading_zeros()) as u8,
    }
}

impl StreamTableLayout {
    /// The layout for an SMMU with `sid_bits` of StreamID (IDR1.SIDSIZE) and two-level
    /// support `two_level` (IDR0.ST_LEVEL), covering every StreamID in `stream_ids` (the
    /// ones assigned to guests; may be empty).
    ///
    /// # Errors
    /// [`StreamTableError::StreamIdBeyondSidSize`] or
    /// [`StreamTableError::StreamIdTooLarge`].
    pub fn choose(
        sid_bits: u8,
        two_level: bool,
        stream_ids: &[u32],
    ) -> Result<Self, StreamTableError> {
        let highest = stream_ids.iter().copied().max().unwrap_or(0);
        if sid_bits < 32 && highest >> sid_bits != 0 {
            return Err(StreamTableError::StreamIdBeyondSidSize {
                stream_id: highest,
                sid_bits,
            });
        }
        let bits = index_bits(highest);
        let entries = 1u64 << bits;
        if entries <= LINEAR_MAX_ENTRIES || !two_level {
            return Ok(Self {
                format: Format::Linear,
                log2size: bits,
            });
        }
        if entries >> SPLIT > MAX_L1_ENTRIES {
            return Err(StreamTableError::StreamIdTooLarge { stream_id: highest });
        }
        Ok(Self {
            format: Format::TwoLevel,
            log2size: bits,
        })
    }

    /// Linear or two-level.
    pub const fn format(&self) -> Format {
        self.format
    }

    /// STRTAB_BASE_CFG.LOG2SIZE.
    pub const fn log2size(&self) -> u8 {
        self.log2size
    }

    /// How many StreamIDs the table covers (2^LOG2SIZE).
    pub const fn stream_ids(&self) -> u64 {
        1 << self.log2size
    }

    /// SMMU_STRTAB_BASE_CFG: FMT \[17:16\], SPLIT \[10:6\] (two-level only), LOG2SIZE \[5:0\].
    pub const fn base_cfg(&self) -> u32 {
        match self.format {
            Format::Linear => self.log2size as u32,
            Format::TwoLevel => {
                (0b01 << CFG_FMT_SHIFT) | ((SPLIT as u32) << CFG_SPLIT_SHIFT) | self.log2size as u32
            }
        }
    }

    /// Bytes of the table STRTAB_BASE points to: all the STEs (linear) or the L1
    /// descriptors (two-level). At least 64, one STE or one cache line of descriptors.
    pub const fn base_table_bytes(&self) -> u64 {
        let bytes = match self.format {
            Format::Linear => self.stream_ids() * STE_BYTES,
            Format::TwoLevel => self.l1_entries() * L1_DESCRIPTOR_BYTES,
        };
        if bytes < 64 { 64 } else { bytes }
    }

    /// The alignment of that table: its own size. IHI 0070 "SMMU_STRTAB_BASE": ADDR is
    /// aligned to the table size for a linear table (LOG2SIZE + 6 bits) and to the L1
    /// table size, at least 64 bytes, for a two-level one.
    pub const fn base_table_align(&self) -> u64 {
        self.base_table_bytes()
    }

    /// L1 descriptors (0 for a linear table).
    pub const fn l1_entries(&self) -> u64 {
        match self.format {
            Format::Linear => 0,
            Format::TwoLevel => 1 << (self.log2size - SPLIT),
        }
    }

    /// SMMU_STRTAB_BASE for a table at `addr`: RA \[62\] and ADDR \[51:6\].
    ///
    /// # Errors
    /// [`StreamTableError::Misaligned`] if `addr` is not aligned to
    /// [`base_table_align`](Self::base_table_align) or beyond 52 bits.
    pub const fn base(&self, addr: u64) -> Result<u64, StreamTableError> {
        let align = self.base_table_align();
        if addr & (align - 1) != 0 || addr & !STRTAB_BASE_ADDR_MASK != 0 {
            return Err(StreamTableError::Misaligned { addr, align });
        }
        Ok(STRTAB_BASE_RA | addr)
    }

    /// Where the STE of `stream_id` lives, `None` beyond the table (the SMMU aborts such
    /// transactions with C_BAD_STREAMID).
    pub const fn locate(&self, stream_id: u32) -> Option<SteLocation> {
        if self.log2size < 32 && stream_id >> self.log2size != 0 {
            return None;
        }
        Some(match self.format {
            Format::Linear => SteLocation::Linear { index: stream_id },
            Format::TwoLevel => SteLocation::TwoLevel {
                l1_index: stream_id >> SPLIT,
                l2_index: stream_id & ((1 << SPLIT) - 1),
            },
        })
    }
}

impl SteLocation {
    /// Byte offset of the STE in its table (linear table or L2 table).
    pub const fn ste_offset(&self) -> u64 {
        match *self {
            Self::Linear { index } => index as u64 * STE_BYTES,
            Self::TwoLevel { l2_index, .. } => l2_index as u64 * STE_BYTES,
        }
    }

    /// Byte offset of the L1 descriptor in the L1 table (two-level only).
    pub const fn l1_offset(&self) -> Option<u64> {
        match *self {
            Self::Linear { .. } => None,
            Self::TwoLevel { l1_index, .. } => Some(l1_index as u64 * L1_DESCRIPTOR_BYTES),
        }
    }
}

/// The L1 descriptor of an absent L2 table: SPAN = 0, every StreamID of its group aborts
/// (C_BAD_STREAMID).
pub const L1_INVALID: u64 = 0;

/// The L1 descriptor pointing to an L2 table of [`L2_ENTRIES`] STEs at `l2_table`:
/// L2Ptr \[51:6\] and SPAN \[4:0\] = SPLIT + 1 (the table holds 2^(SPAN - 1) STEs). The
/// spec requires L2Ptr to be 64-byte aligned at least; this driver asks for the table's
/// natural 16 KiB alignment, as Linux's allocations give.
///
/// # Errors
/// [`StreamTableError::Misaligned`] if `l2_table` is not 16 KiB aligned or beyond 52 bits.
pub const fn l1_descriptor(l2_table: u64) -> Result<u64, StreamTableError> {
    if l2_table & (L2_TABLE_BYTES - 1) != 0 || l2_table & !L1_L2PTR_MASK != 0 {
        return Err(StreamTableError::Misaligned {
            addr: l2_table,
            align: L2_TABLE_BYTES,
        });
    }
    Ok(l2_table | (SPLIT as u64 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_stream_ids_get_a_linear_table() {
        let t = StreamTableLayout::choose(16, true, &[0x08, 0x10]).unwrap();
        assert_eq!(
            (t.format(), t.log2size(), t.stream_ids()),
            (Format::Linear, 5, 32)
        );
        assert_eq!(t.base_cfg(), 5);
        assert_eq!(t.base_table_bytes(), 32 * 64);
        assert_eq!(t.locate(0x10), Some(SteLocation::Linear { index: 0x10 }));
        assert_eq!(t.locate(0x10).unwrap().ste_offset(), 0x400);
        assert_eq!(t.locate(32), None);
        // Exactly 256 StreamIDs are still linear: 16 KiB, one L2 table's worth.
        let t = StreamTableLayout::choose(16, true, &[0xff]).unwrap();
        assert_eq!(
            (t.format(), t.base_table_bytes()),
            (Format::Linear, 16 << 10)
        );
    }

    #[test]
    fn no_stream_ids_give_the_smallest_linear_table() {
        let t = StreamTableLayout::choose(16, true, &[]).unwrap();
        assert_eq!(
            (t.format(), t.log2size(), t.base_table_bytes()),
            (Format::Linear, 0, 64)
        );
        assert_eq!(t.locate(0), Some(SteLocation::Linear { index: 0 }));
        assert_eq!(t.locate(1), None);
    }

    #[test]
    fn larger_stream_ids_get_two_levels() {
        // Bus 1, device 0: RID 0x100.
        let t = StreamTableLayout::choose(16, true, &[0x08, 0x100]).unwrap();
        assert_eq!(
            (t.format(), t.log2size(), t.l1_entries()),
            (Format::TwoLevel, 9, 2)
        );
        // FMT [17:16] = 1, SPLIT [10:6] = 8, LOG2SIZE [5:0] = 9.
        assert_eq!(t.base_cfg(), (1 << 16) | (8 << 6) | 9);
        assert_eq!(t.base_table_bytes(), 64, "2 descriptors, at least 64 bytes");
        let at = t.locate(0x1_23 & 0x1ff).unwrap();
        assert_eq!(
            at,
            SteLocation::TwoLevel {
                l1_index: 1,
                l2_index: 0x23
            }
        );
        assert_eq!((at.l1_offset(), at.ste_offset()), (Some(8), 0x23 * 64));
        let t = StreamTableLayout::choose(16, true, &[0xffff]).unwrap();
        assert_eq!((t.l1_entries(), t.base_table_bytes()), (256, 2048));
    }

    #[test]
    fn without_two_level_support_the_table_stays_linear() {
        let t = StreamTableLayout::choose(16, false, &[0x1000]).unwrap();
        assert_eq!((t.format(), t.log2size()), (Format::Linear, 13));
        assert_eq!(t.base_table_bytes(), (1 << 13) * 64);
    }

    #[test]
    fn stream_ids_beyond_the_smmu_or_the_driver_are_refused() {
        assert_eq!(
            StreamTableLayout::choose(8, true, &[0x100]),
            Err(StreamTableError::StreamIdBeyondSidSize {
                stream_id: 0x100,
                sid_bits: 8
            })
        );
        assert_eq!(
            StreamTableLayout::choose(32, true, &[1 << 25]),
            Err(StreamTableError::StreamIdTooLarge { stream_id: 1 << 25 })
        );
        let t = StreamTableLayout::choose(32, true, &[(1 << 25) - 1]).unwrap();
        assert_eq!(t.l1_entries(), MAX_L1_ENTRIES);
        let t = StreamTableLayout::choose(32, false, &[u32::MAX]).unwrap();
        assert_eq!(
            (t.log2size(), t.locate(u32::MAX)),
            (32, Some(SteLocation::Linear { index: u32::MAX }))
        );
    }

    #[test]
    fn base_register_and_alignment() {
        let t = StreamTableLayout::choose(16, true, &[0x1f]).unwrap();
        assert_eq!(t.base(0x8000_0800), Ok((1 << 62) | 0x8000_0800));
        assert_eq!(
            t.base(0x8000_0400),
            Err(StreamTableError::Misaligned {
                addr: 0x8000_0400,
                align: 0x800
            })
        );
        assert!(t.base(1 << 52).is_err());
    }

    #[test]
    fn l1_descriptors() {
        assert_eq!(l1_descriptor(0x4000_4000), Ok(0x4000_4000 | 9));
        assert!(l1_descriptor(0x4000_1000).is_err());
        assert!(l1_descriptor(1 << 52).is_err());
        assert_eq!(L1_INVALID & 0x1f, 0, "SPAN 0");
    }

    proptest::proptest! {
        #[test]
        fn every_covered_stream_id_has_one_place(sid_bits in 0u8..=32, two_level: bool, sids in proptest::collection::vec(proptest::num::u32::ANY, 0..4), probe: u32) {
            let Ok(t) = StreamTableLayout::choose(sid_bits, two_level, &sids) else {
                return Ok(());
            };
            for &sid in &sids {
                proptest::prop_assert!(t.locate(sid).is_some());
            }
            match t.locate(probe) {
                None => proptest::prop_assert!(u64::from(probe) >= t.stream_ids()),
                Some(SteLocation::Linear { index }) => {
                    proptest::prop_assert_eq!(index, probe);
                    proptest::prop_assert!(u64::from(index) * STE_BYTES < t.base_table_bytes());
                }
                Some(SteLocation::TwoLevel { l1_index, l2_index }) => {
                    proptest::prop_assert_eq!((l1_index << SPLIT) | l2_index, probe);
                    proptest::prop_assert!(u64::from(l1_index) < t.l1_entries());
                    proptest::prop_assert!(u64::from(l2_index) < L2_ENTRIES);
                }
            }
            proptest::prop_assert!(t.base_table_align().is_power_of_two());
        }
    }
}

/// L2 tables (16 KiB each) a two-level stream table may have: as much memory as the
/// largest linear table ([`LARGEST_LINEAR_ENTRIES`] STEs, 256 KiB). A PCI host bridge given
/// whole maps every Requester ID, and which buses its devices will sit on is the guest's
/// choice (it numbers the buses behind bridges), so its StreamIDs cannot be narrowed to
/// the ones in use: they are covered from the lowest group up, to this budget.
pub const MAX_L2_TABLES: usize = 16;

/// The most STEs of a linear stream table this driver builds (256 KiB); not to be
/// confused with [`LINEAR_MAX_ENTRIES`], below which a table is linear by choice.
pub const LARGEST_LINEAR_ENTRIES: u32 = 4096;

/// The StreamID ranges a stream table can cover for a guest, from `ranges` (in order of
/// StreamID, each clipped): below [`LARGEST_LINEAR_ENTRIES`] for a linear table; for a
/// two-level one, below 2^`sid_bits` (at most 2^25) and within [`MAX_L2_TABLES`] groups
/// of [`L2_ENTRIES`], lowest first. Returns the kept ranges and how many StreamIDs were
/// left out (those abort).
pub fn coverable_streams(
    ranges: &[core::ops::Range<u32>],
    two_level: bool,
    sid_bits: u8,
) -> (alloc::vec::Vec<core::ops::Range<u32>>, u64) {
    let mut sorted: alloc::vec::Vec<core::ops::Range<u32>> =
        ranges.iter().filter(|r| r.start < r.end).cloned().collect();
    sorted.sort_by_key(|r| r.start);
    let sid_end = if two_level {
        (MAX_L1_ENTRIES << SPLIT).min(1u64 << sid_bits.min(32))
    } else {
        u64::from(LARGEST_LINEAR_ENTRIES).min(1u64 << sid_bits.min(32))
    };
    let mut groups: alloc::vec::Vec<u64> = alloc::vec::Vec::new();
    let mut kept = alloc::vec::Vec::new();
    let mut dropped = 0u64;
    for range in sorted {
        let (start, end) = (u64::from(range.start), u64::from(range.end));
        let mut keep_end = start;
        for sid in start..end.min(sid_end) {
            if two_level {
                let group = sid >> SPLIT;
                if !groups.contains(&group) {
                    if groups.len() == MAX_L2_TABLES {
                        break;
                    }
                    groups.push(group);
                }
            }
            keep_end = sid + 1;
        }
        dropped += end - keep_end;
        if keep_end > start {
            // Both ends fit u32: they come from a u32 range.
            kept.push(range.start..keep_end as u32);
        }
    }
    (kept, dropped)
}

#[cfg(test)]
mod coverage_tests {
    use super::*;

    #[test]
    fn a_whole_bridge_is_covered_to_the_budget_and_sparse_streams_beyond_4096_fit() {
        // QEMU's PCIe bridge maps every Requester ID.
        let (kept, dropped) = coverable_streams(core::slice::from_ref(&(0..0x1_0000)), false, 16);
        assert_eq!((kept, dropped), (alloc::vec![0..4096], 0x1_0000 - 4096));
        let (kept, dropped) = coverable_streams(core::slice::from_ref(&(0..0x1_0000)), true, 16);
        assert_eq!((kept, dropped), (alloc::vec![0..16 * 256], 0x1_0000 - 4096));
        // Two platform devices far apart: two L2 tables, nothing dropped.
        let (kept, dropped) = coverable_streams(&[0x12_3400..0x12_3401, 0x10..0x11], true, 24);
        assert_eq!(
            (kept, dropped),
            (alloc::vec![0x10..0x11, 0x12_3400..0x12_3401], 0)
        );
        // Linear: nothing beyond 4096; SIDSIZE limits both.
        let (kept, dropped) =
            coverable_streams(core::slice::from_ref(&(0x12_3400..0x12_3401)), false, 24);
        assert_eq!((kept, dropped), (alloc::vec![], 1));
        let (kept, dropped) = coverable_streams(core::slice::from_ref(&(0..0x1_0000)), true, 8);
        assert_eq!((kept, dropped), (alloc::vec![0..256], 0x1_0000 - 256));
    }
}
