//! Building tables off-line: a new table is zeroed and filled in one pass and becomes
//! reachable only afterwards (seed 001), with the largest leaves alignment allows and the
//! contiguous hint on every whole aligned group of 16 equal leaves.
//!
//! What a new table holds is described by up to three [`Segment`]s, which covers every
//! case: a fresh mapping (one segment), a split for an attribute change (old attributes,
//! new attributes, old attributes) and a split for an unmap (old, hole, old).

use crate::descriptor::{Descriptor, SW_NO_BLOCK, SW_NO_CONT};
use crate::error::Error;
use crate::hw::{Hardware, PhysAddr};
use crate::regime::{CONT_ENTRIES, ENTRIES, cont_allowed, leaf_allowed, level_size};
use crate::reserve::Reservation;
use crate::table::PageTable;

/// A piece of input range with one linear mapping (or none).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Segment {
    pub(crate) start: u64,
    pub(crate) end: u64,
    /// Output address of `start`.
    pub(crate) oa: u64,
    /// Leaf attribute bits; `None` for a hole.
    pub(crate) attrs: Option<u64>,
}

impl Segment {
    #[inline]
    pub(crate) fn oa_at(&self, addr: u64) -> u64 {
        self.oa.wrapping_add(addr.wrapping_sub(self.start))
    }

    /// Whether the entry at `level` starting at `addr` (inside this segment) can be one
    /// leaf.
    #[inline]
    pub(crate) fn leaf_fits(&self, level: u8, addr: u64) -> bool {
        match self.attrs {
            None => false,
            Some(attrs) => {
                leaf_allowed(level)
                    && (level == 3 || attrs & SW_NO_BLOCK == 0)
                    && self.oa_at(addr).is_multiple_of(level_size(level))
            }
        }
    }

    /// Whether the group of 16 entries at `level` starting at `addr` (inside this
    /// segment) can carry the contiguous hint: every entry a leaf and the output aligned
    /// to the group.
    #[inline]
    pub(crate) fn group_fits(&self, level: u8, addr: u64) -> bool {
        match self.attrs {
            None => false,
            Some(attrs) => {
                cont_allowed(level)
                    && attrs & SW_NO_CONT == 0
                    && self.leaf_fits(level, addr)
                    && self
                        .oa_at(addr)
                        .is_multiple_of(level_size(level) * CONT_ENTRIES as u64)
            }
        }
    }
}

/// How an input range relates to the segments.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Cover {
    /// No mapping anywhere in the range.
    Empty,
    /// Entirely inside one mapped segment.
    Inside(Segment),
    /// Anything else: the range needs a table below it.
    Mixed,
}

/// Classifies `[start, end)` against sorted, disjoint `segments`.
#[inline]
pub(crate) fn classify(segments: &[Segment], start: u64, end: u64) -> Cover {
    let mut mapped_overlap = false;
    for s in segments {
        if s.end <= start || s.start >= end {
            continue;
        }
        if s.start <= start && end <= s.end {
            return match s.attrs {
                Some(_) => Cover::Inside(*s),
                None => Cover::Empty,
            };
        }
        if s.attrs.is_some() {
            mapped_overlap = true;
        }
    }
    if mapped_overlap {
        Cover::Mixed
    } else {
        Cover::Empty
    }
}

/// Tables needed below an entry at `level` whose whole range is inside `segment` and
/// which cannot be one leaf.
fn full_entry_tables(segment: &Segment, level: u8, addr: u64) -> u64 {
    if level >= 3 {
        return 0;
    }
    // All children start at the same offset modulo their size, so they all fit or none.
    let child = level + 1;
    let below = if segment.leaf_fits(child, addr) {
        0
    } else {
        full_entry_tables(segment, child, addr)
    };
    1 + ENTRIES as u64 * below
}

/// The run of entries of a table at `level` (entries from `base`) starting at `index`
/// that share one classification, and the index one past it: entries in a gap, entries
/// entirely inside one mapped segment, or a single entry that needs a table.
#[inline]
fn span(segments: &[Segment], level: u8, base: u64, index: usize) -> (Cover, usize) {
    let size = level_size(level);
    let table_end = base + ENTRIES as u64 * size;
    let addr = base + index as u64 * size;
    match classify(segments, addr, addr + size) {
        Cover::Inside(s) => {
            let end = s.end.min(table_end);
            (Cover::Inside(s), ((end - base) / size) as usize)
        }
        Cover::Empty => {
            // Up to the entry holding the start of the next mapped segment.
            let next = segments
                .iter()
                .filter(|s| s.attrs.is_some() && s.end > addr)
                .map(|s| s.start.max(addr))
                .min()
                .unwrap_or(table_end)
                .min(table_end);
            (
                Cover::Empty,
                (((next - base) / size) as usize).max(index + 1),
            )
        }
        Cover::Mixed => (Cover::Mixed, index + 1),
    }
}

/// Tables needed to map `segments` into an entry at `level` covering
/// `[addr, addr + size)` that is invalid today.
pub(crate) fn tables_for_entry(segments: &[Segment], level: u8, addr: u64) -> u64 {
    let end = addr + level_size(level);
    match classify(segments, addr, end) {
        Cover::Empty => 0,
        Cover::Inside(s) if s.leaf_fits(level, addr) => 0,
        Cover::Inside(s) => full_entry_tables(&s, level, addr),
        Cover::Mixed => {
            let child = level + 1;
            let size = level_size(child);
            let mut total = 1;
            let mut index = 0;
            while index < ENTRIES {
                let child_addr = addr + index as u64 * size;
                let (cover, next) = span(segments, child, addr, index);
                total += match cover {
                    Cover::Empty => 0,
                    Cover::Inside(s) if s.leaf_fits(child, child_addr) => 0,
                    Cover::Inside(s) => {
                        (next - index) as u64 * full_entry_tables(&s, child, child_addr)
                    }
                    Cover::Mixed => tables_for_entry(segments, child, child_addr),
                };
                index = next;
            }
            total
        }
    }
}

/// [`tables_for_entry`] for one mapped segment that overlaps the entry, by arithmetic:
/// below a partly covered entry only the children at the segment's two edges can be
/// partly covered, and every child between them is wholly inside with the same alignment,
/// so they all need the same count. Costs one step per level instead of a scan of the
/// table.
pub(crate) fn tables_for_segment(s: &Segment, level: u8, addr: u64) -> u64 {
    let end = addr + level_size(level);
    if s.end <= addr || s.start >= end {
        return 0;
    }
    if s.start <= addr && end <= s.end {
        return if s.leaf_fits(level, addr) {
            0
        } else {
            full_entry_tables(s, level, addr)
        };
    }
    if level >= 3 {
        // Pages are never partly covered by a page-aligned segment.
        return 0;
    }
    let child = level + 1;
    let size = level_size(child);
    let first = (s.start.max(addr) - addr) / size;
    let last = (s.end.min(end) - 1 - addr) / size;
    let mut total = 1 + tables_for_segment(s, child, addr + first * size);
    if last > first {
        total += tables_for_segment(s, child, addr + last * size);
        if last > first + 1 {
            total += (last - first - 1) * tables_for_segment(s, child, addr + (first + 1) * size);
        }
    }
    total
}

/// Writes `count` leaves from entry `first` of a table being built, the first with
/// output address `oa`, each next one `level_size(level)` further.
#[inline]
fn fill_leaves(
    table: *mut u64,
    first: usize,
    count: usize,
    level: u8,
    oa: u64,
    attrs: u64,
    cont: bool,
) {
    let size = level_size(level);
    // The output address field lies above the attribute bits below it and below those
    // above it, and `oa + count * size` stays within it (output ranges are checked
    // against OA_BITS, and a split keeps the block's own range), so adding to the whole
    // descriptor adds to the address alone: one add and one store per entry.
    let mut value = Descriptor::leaf(level, oa, attrs, cont).0;
    // SAFETY: first + count <= 512 entries of a page the caller owns.
    let entries = unsafe { core::slice::from_raw_parts_mut(table.add(first), count) };
    for entry in entries {
        *entry = value;
        value = value.wrapping_add(size);
    }
}

impl<H: Hardware> PageTable<H> {
    /// Builds, from reserved pages, the table for an entry at `level - 1` covering the 512
    /// entries at `level` from `base`, and any tables below it. Returns its address.
    /// `splitting` counts the tables as splits of a block.
    ///
    /// # Errors
    /// [`Error::Internal`] if the reservation is short (a bug in a plan).
    pub(crate) fn build_table(
        &mut self,
        reservation: &mut Reservation,
        segments: &[Segment],
        level: u8,
        base: u64,
        splitting: bool,
    ) -> Result<PhysAddr, Error> {
        let page = self.take(reservation)?;
        let table = self.hw.table_ptr(page).as_ptr();
        if splitting {
            match level {
                2 => self.counters.splits_1g += 1,
                _ => self.counters.splits_2m += 1,
            }
        }
        let size = level_size(level);
        let mut written = 0;
        let mut index = 0;
        while index < ENTRIES {
            let addr = base + index as u64 * size;
            let (cover, next) = span(segments, level, base, index);
            match cover {
                Cover::Empty => {
                    // SAFETY: entries index..next of a page we own.
                    unsafe { table.add(index).write_bytes(0, next - index) };
                }
                Cover::Inside(s) if s.leaf_fits(level, addr) => {
                    let attrs = s.attrs.unwrap_or(0);
                    // Aligned groups in one segment all fit the hint or none does.
                    let groups = cont_allowed(level) && {
                        let group = level_size(level) * CONT_ENTRIES as u64;
                        s.group_fits(level, addr.next_multiple_of(group))
                    };
                    // The whole aligned groups inside index..next get the hint: one run
                    // with it between two runs without.
                    let (lo, hi) = if groups {
                        let lo = index.next_multiple_of(CONT_ENTRIES);
                        let hi = next / CONT_ENTRIES * CONT_ENTRIES;
                        if lo < hi { (lo, hi) } else { (next, next) }
                    } else {
                        (next, next)
                    };
                    let oa = s.oa_at(addr);
                    let oa_of = |i: usize| oa + (i - index) as u64 * size;
                    fill_leaves(table, index, lo - index, level, oa, attrs, false);
                    fill_leaves(table, lo, hi - lo, level, oa_of(lo), attrs, true);
                    fill_leaves(table, hi, next - hi, level, oa_of(hi), attrs, false);
                    written += (next - index) as u64;
                }
                Cover::Inside(_) | Cover::Mixed => {
                    for i in index..next {
                        let a = base + i as u64 * size;
                        let child =
                            self.build_table(reservation, segments, level + 1, a, splitting)?;
                        // SAFETY: i < 512 in a page we own.
                        unsafe { table.add(i).write(Descriptor::table(child.0).0) };
                        written += 1;
                    }
                }
            }
            index = next;
        }
        self.counters.descriptors_written += written;
        self.hw.table_filled(page);
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The arithmetic count equals the scanning one, for every level and alignment.
        #[test]
        fn tables_for_segment_matches_tables_for_entry(
            level in 0u8..4,
            entry in 0u64..4,
            start_pages in 0u64..(1 << 27),
            len_pages in 1u64..(1 << 27),
            oa_pages in 0u64..(1 << 20),
            shift in prop::sample::select(vec![0u32, 9, 18, 27]),
            no_block in any::<bool>(),
        ) {
            let size = level_size(level);
            let addr = entry * size;
            // Segments that start before, in or after the entry and end anywhere up to a
            // whole entry beyond it.
            let start = addr.saturating_sub(size) + (start_pages << 12) % (2 * size);
            let end = start + ((len_pages << 12) % (2 * size)).max(1 << 12);
            let attrs = crate::descriptor::AF | if no_block { SW_NO_BLOCK } else { 0 };
            let s = Segment { start, end, oa: (oa_pages << 12) << shift, attrs: Some(attrs) };
            prop_assert_eq!(
                tables_for_segment(&s, level, addr),
                tables_for_entry(core::slice::from_ref(&s), level, addr)
            );
        }
    }
}
