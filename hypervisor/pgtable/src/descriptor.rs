//! The VMSAv8-64 descriptor format with the 4 KiB granule, as far as this engine uses it.
//!
//! Invalid entries written by the engine are 0, except transiently during a
//! break-before-make sequence: there the invalid entry (bit 0 clear) carries the value to
//! be installed in its other bits, which the hardware ignores (Arm ARM: the walk ignores
//! bits[63:1] of an invalid descriptor). Such a *pending* entry never survives an
//! operation.

use crate::regime::{CONT_ENTRIES, level_size};

pub(crate) const VALID: u64 = 1 << 0;
/// Bit 1: table (levels 0-2) or page (level 3); clear for a block.
pub(crate) const TABLE_OR_PAGE: u64 = 1 << 1;
/// Output address / next-level table address, bits[47:12].
pub(crate) const OA_MASK: u64 = 0x0000_ffff_ffff_f000;
/// Access flag, bit 10: always set (no hardware AF management).
pub(crate) const AF: u64 = 1 << 10;
/// Contiguous hint, bit 52.
pub(crate) const CONT: u64 = 1 << 52;
/// Software bit 55 (bits[58:55] are reserved for software in block and page
/// descriptors): this leaf was mapped with `NO_BLOCK_MAPPINGS`, never merge it into a
/// block.
pub(crate) const SW_NO_BLOCK: u64 = 1 << 55;
/// Software bit 56: mapped with `NO_CONT_MAPPINGS`, never give it the contiguous hint.
pub(crate) const SW_NO_CONT: u64 = 1 << 56;
/// The attribute bits of a leaf that two mappings must share to merge: lower attributes
/// [11:2], upper attributes [63:50] without the contiguous hint.
pub(crate) const LEAF_ATTR_MASK: u64 = (0xfff & !0b11) | (0x3fff << 50) & !CONT;

/// One raw descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Descriptor(pub u64);

impl Descriptor {
    pub(crate) const INVALID: Descriptor = Descriptor(0);

    #[inline]
    pub(crate) const fn is_valid(self) -> bool {
        self.0 & VALID != 0
    }

    /// An invalid entry with a payload: the second half of a break-before-make sequence
    /// is still to come.
    #[inline]
    pub(crate) const fn is_pending(self) -> bool {
        !self.is_valid() && self.0 != 0
    }

    /// The value a pending entry will take.
    #[inline]
    pub(crate) const fn pending_value(self) -> Descriptor {
        Descriptor(self.0 | VALID)
    }

    /// The entry as it is or, if pending, as it will be.
    #[inline]
    pub(crate) const fn effective(self) -> Descriptor {
        if self.is_pending() {
            self.pending_value()
        } else {
            self
        }
    }

    /// The invalid entry that holds this value for a later make.
    #[inline]
    pub(crate) const fn as_pending(self) -> Descriptor {
        Descriptor(self.0 & !VALID)
    }

    #[inline]
    pub(crate) const fn is_table(self, level: u8) -> bool {
        level < 3 && self.0 & (VALID | TABLE_OR_PAGE) == (VALID | TABLE_OR_PAGE)
    }

    /// A valid block or page.
    #[inline]
    pub(crate) const fn is_leaf(self, level: u8) -> bool {
        self.is_valid() && !self.is_table(level)
    }

    #[inline]
    pub(crate) const fn output_address(self) -> u64 {
        self.0 & OA_MASK
    }

    #[inline]
    pub(crate) const fn attrs(self) -> u64 {
        self.0 & LEAF_ATTR_MASK
    }

    #[inline]
    pub(crate) const fn is_contiguous(self) -> bool {
        self.0 & CONT != 0
    }

    #[inline]
    pub(crate) const fn with_contiguous(self, cont: bool) -> Descriptor {
        if cont {
            Descriptor(self.0 | CONT)
        } else {
            Descriptor(self.0 & !CONT)
        }
    }

    /// A block (levels 1, 2) or page (level 3) descriptor.
    #[inline]
    pub(crate) const fn leaf(level: u8, oa: u64, attrs: u64, cont: bool) -> Descriptor {
        let kind = if level == 3 {
            VALID | TABLE_OR_PAGE
        } else {
            VALID
        };
        let cont = if cont { CONT } else { 0 };
        Descriptor(oa | attrs | kind | cont)
    }

    /// A table descriptor (no hierarchical attributes: APTable, XNTable stay 0).
    #[inline]
    pub(crate) const fn table(pa: u64) -> Descriptor {
        Descriptor(pa | VALID | TABLE_OR_PAGE)
    }
}

/// Input range of the contiguous group that contains `addr` at `level`.
#[inline]
pub(crate) const fn cont_group(addr: u64, level: u8) -> (u64, u64) {
    let size = level_size(level) * CONT_ENTRIES as u64;
    let start = addr & !(size - 1);
    (start, start + size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_mask_excludes_address_type_and_hint() {
        assert_eq!(LEAF_ATTR_MASK & OA_MASK, 0);
        assert_eq!(LEAF_ATTR_MASK & CONT, 0);
        assert_eq!(LEAF_ATTR_MASK & 0b11, 0);
        assert_ne!(LEAF_ATTR_MASK & AF, 0);
        assert_ne!(LEAF_ATTR_MASK & (1 << 54), 0);
        assert_ne!(LEAF_ATTR_MASK & SW_NO_BLOCK, 0);
    }

    #[test]
    fn leaf_and_table_kinds() {
        let page = Descriptor::leaf(3, 0x1000, AF, false);
        assert!(page.is_leaf(3) && !page.is_table(3));
        let block = Descriptor::leaf(2, 0x20_0000, AF, true);
        assert!(block.is_leaf(2) && block.is_contiguous());
        let table = Descriptor::table(0x5000);
        assert!(table.is_table(1) && !table.is_leaf(1));
        let pending = table.as_pending();
        assert!(pending.is_pending() && !pending.is_valid());
        assert_eq!(pending.pending_value(), table);
        assert!(!Descriptor::INVALID.is_pending());
    }
}
