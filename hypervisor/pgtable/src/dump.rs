//! Reading the tables back: `query` for one address, and a ptdump-style iterator of
//! merged ranges for boot reports and tests.

use core::ops::Range;

use crate::attrs::{self, Attributes, MapFlags};
use crate::descriptor::Descriptor;
use crate::hw::{Hardware, PhysAddr};
use crate::regime::{ENTRIES, level_shift, level_size};
use crate::table::PageTable;

/// How one input address translates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The output address of the queried address.
    pub pa: PhysAddr,
    /// Its attributes.
    pub attrs: Attributes,
    /// The flags it was mapped with.
    pub flags: MapFlags,
    /// The level of the leaf (1: 1 GiB block, 2: 2 MiB block, 3: 4 KiB page).
    pub level: u8,
    /// Whether the leaf carries the contiguous hint.
    pub contiguous: bool,
}

/// A maximal run of leaves with the same level, attributes, flags and contiguity, and
/// consecutive output addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappedRange {
    /// Input addresses.
    pub ia: Range<u64>,
    /// Output address of `ia.start`.
    pub pa: PhysAddr,
    /// Attributes.
    pub attrs: Attributes,
    /// Mapping flags.
    pub flags: MapFlags,
    /// Level of the leaves.
    pub level: u8,
    /// Whether the leaves carry the contiguous hint.
    pub contiguous: bool,
    /// Number of leaf descriptors in the run.
    pub leaves: u64,
}

impl<H: Hardware> PageTable<H> {
    /// How `ia` translates, or `None` if it does not (or lies outside the regime).
    pub fn query(&self, ia: u64) -> Option<Translation> {
        let regime = self.regime();
        if ia >= regime.ia_limit() {
            return None;
        }
        let mut table = self.root();
        let mut level = regime.start_level();
        let mut index = (ia >> level_shift(level)) as usize;
        loop {
            let entry = self.read(self.slot(table, index));
            if entry.is_table(level) {
                table = PhysAddr(entry.output_address());
                level += 1;
                index = ((ia >> level_shift(level)) as usize) % ENTRIES;
                continue;
            }
            if !entry.is_leaf(level) {
                return None;
            }
            let offset = ia & (level_size(level) - 1);
            return Some(Translation {
                pa: PhysAddr(entry.output_address() + offset),
                attrs: attrs::decode(regime.kind(), entry.attrs()),
                flags: attrs::flags_of(entry.attrs()),
                level,
                contiguous: entry.is_contiguous(),
            });
        }
    }

    /// The leaves overlapping `range`, merged into maximal runs (clipped to `range`).
    pub fn mappings(&self, range: Range<u64>) -> Mappings<'_, H> {
        Mappings {
            leaves: Leaves::new(self, range),
            pending: None,
        }
    }

    /// Every leaf overlapping `range`, one by one: (entry start, level, descriptor).
    #[cfg(any(test, feature = "host"))]
    pub(crate) fn leaves(&self, range: Range<u64>) -> Leaves<'_, H> {
        Leaves::new(self, range)
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Frame {
    table: u64,
    level: u8,
    base: u64,
    next: u64,
    last: u64,
}

/// Depth-first iterator over the leaves of a range, with no allocation.
pub(crate) struct Leaves<'a, H: Hardware> {
    pt: &'a PageTable<H>,
    end: u64,
    start: u64,
    stack: [Frame; 4],
    depth: usize,
}

impl<'a, H: Hardware> Leaves<'a, H> {
    fn new(pt: &'a PageTable<H>, range: Range<u64>) -> Self {
        let regime = pt.regime();
        let end = range.end.min(regime.ia_limit());
        let mut it = Leaves {
            pt,
            end,
            start: range.start,
            stack: [Frame::default(); 4],
            depth: 0,
        };
        if range.start < end {
            it.push(
                pt.root().0,
                regime.start_level(),
                0,
                regime.root_entries() as u64,
            );
        }
        it
    }

    fn push(&mut self, table: u64, level: u8, base: u64, entries: u64) {
        let shift = level_shift(level);
        self.stack[self.depth] = Frame {
            table,
            level,
            base,
            next: (self.start.max(base) - base) >> shift,
            last: ((self.end - 1 - base) >> shift).min(entries - 1),
        };
        self.depth += 1;
    }
}

impl<H: Hardware> Iterator for Leaves<'_, H> {
    type Item = (u64, u8, Descriptor);

    fn next(&mut self) -> Option<Self::Item> {
        while self.depth > 0 {
            let frame = &mut self.stack[self.depth - 1];
            if frame.next > frame.last {
                self.depth -= 1;
                continue;
            }
            let index = frame.next;
            frame.next += 1;
            let (table, level, addr) = (
                frame.table,
                frame.level,
                frame.base + (index << level_shift(frame.level)),
            );
            let entry = self.pt.read(self.pt.slot(PhysAddr(table), index as usize));
            if entry.is_table(level) {
                self.push(entry.output_address(), level + 1, addr, ENTRIES as u64);
            } else if entry.is_leaf(level) {
                return Some((addr, level, entry));
            }
        }
        None
    }
}

/// Iterator of [`MappedRange`]s, from [`PageTable::mappings`].
pub struct Mappings<'a, H: Hardware> {
    leaves: Leaves<'a, H>,
    pending: Option<MappedRange>,
}

impl<H: Hardware> Iterator for Mappings<'_, H> {
    type Item = MappedRange;

    fn next(&mut self) -> Option<MappedRange> {
        let kind = self.leaves.pt.regime().kind();
        let (start, end) = (self.leaves.start, self.leaves.end);
        for (addr, level, entry) in self.leaves.by_ref() {
            let lo = addr.max(start);
            let hi = (addr + level_size(level)).min(end);
            let pa = PhysAddr(entry.output_address() + (lo - addr));
            let run = MappedRange {
                ia: lo..hi,
                pa,
                attrs: attrs::decode(kind, entry.attrs()),
                flags: attrs::flags_of(entry.attrs()),
                level,
                contiguous: entry.is_contiguous(),
                leaves: 1,
            };
            match &mut self.pending {
                Some(p)
                    if p.ia.end == lo
                        && p.pa.0 + (p.ia.end - p.ia.start) == pa.0
                        && p.level == level
                        && p.attrs == run.attrs
                        && p.flags == run.flags
                        && p.contiguous == run.contiguous =>
                {
                    p.ia.end = hi;
                    p.leaves += 1;
                }
                _ => {
                    if let Some(done) = self.pending.replace(run) {
                        return Some(done);
                    }
                }
            }
        }
        self.pending.take()
    }
}
