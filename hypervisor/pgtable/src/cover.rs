//! The minimal cover of what a tree maps: the fewest descriptors any engine could write to
//! build the same translations from empty in the same regime. Boot reports print it next
//! to the descriptors this engine wrote; the invariant checker (`check`) compares a tree's
//! own leaves with it.
//!
//! The rule: merge the mapping into maximal ranges of one attribute value and one linear
//! output offset; cover each greedily, from its start, with the largest leaf (1 GiB, 2 MiB,
//! 4 KiB, never above the regime's start level and never at level 0) that input alignment,
//! output alignment and the remaining length allow; count the tables those leaves need
//! below the root (a regime's concatenated root tables are the root); and put the
//! contiguous hint on every leaf of an aligned group of 16 (levels 2 and 3, see
//! `regime::cont_allowed`) that lies wholly inside the range with its output aligned to
//! the group.

use core::ops::Range;

use crate::attrs::Attributes;
use crate::dump::MappedRange;
use crate::hw::{Hardware, PhysAddr};
use crate::regime::{CONT_ENTRIES, Regime, cont_allowed, level_shift, level_size};
use crate::table::PageTable;

/// Leaf and table counts of a cover (or of a tree).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoverShape {
    /// Leaf descriptors.
    pub leaves: u64,
    /// Tables below the root; each is linked by one table descriptor.
    pub tables: u64,
    /// Leaves with the contiguous hint.
    pub contiguous: u64,
    /// Leaves by level (index 1: 1 GiB blocks, 2: 2 MiB blocks, 3: 4 KiB pages).
    pub leaves_by_level: [u64; 4],
}

impl CoverShape {
    /// Descriptors: leaves plus the table descriptors that link the tables.
    pub fn descriptors(&self) -> u64 {
        self.leaves + self.tables
    }

    /// TLB entries the translations need at most: a contiguous group of 16 leaves is one.
    pub fn tlb_entries(&self) -> u64 {
        self.leaves - self.contiguous + self.contiguous / CONT_ENTRIES as u64
    }
}

/// Calls `leaf(addr, level, contiguous)` for every leaf of the greedy cover of `[start,
/// end)` mapped to `oa` in a tree whose root is at `start_level` (see the module
/// documentation). Blocks only when `blocks`, the contiguous hint only when `cont`.
/// Leaves come in increasing address order. A range that is not 4 KiB aligned is covered
/// by pages from its start; none of this can overflow or panic.
pub(crate) fn cover_range(
    start_level: u8,
    start: u64,
    end: u64,
    oa: u64,
    blocks: bool,
    cont: bool,
    mut leaf: impl FnMut(u64, u8, bool),
) {
    let mut addr = start;
    while addr < end {
        let out = oa.wrapping_add(addr - start);
        let level = (start_level.clamp(1, 3)..=3)
            .find(|&level| {
                let size = level_size(level);
                (level == 3 || blocks)
                    && addr.is_multiple_of(size)
                    && out.is_multiple_of(size)
                    && size <= end - addr
            })
            .unwrap_or(3);
        let size = level_size(level);
        let group = size * CONT_ENTRIES as u64;
        let group_start = addr & !(group - 1);
        let hinted = cont
            && cont_allowed(level)
            && group_start >= start
            && group <= end - group_start
            && oa.wrapping_add(group_start - start).is_multiple_of(group);
        leaf(addr, level, hinted);
        match addr.checked_add(size) {
            Some(next) => addr = next,
            None => break,
        }
    }
}

/// Builds the minimal cover's [`CoverShape`] from a tree's mapped ranges, streaming: feed
/// it the runs of [`PageTable::mappings`] in order with [`MinimalCover::add`], then take
/// [`MinimalCover::finish`]. Adjacent runs with equal attributes and consecutive output
/// addresses are merged whatever their level, hint or [`MapFlags`](crate::MapFlags):
/// the cover is what the translations need, not what a mapping policy such as
/// `NO_BLOCK_MAPPINGS` asked for. No allocation.
#[derive(Clone, Debug)]
pub struct MinimalCover {
    start_level: u8,
    /// The merged range not covered yet: input range, output of its start, attributes.
    pending: Option<(Range<u64>, u64, Attributes)>,
    shape: CoverShape,
    /// Per level, the last table counted (index of the parent entry that links it).
    /// Leaves come in increasing address order, so a table seen again is the last one.
    last_table: [Option<u64>; 4],
}

impl MinimalCover {
    /// An empty cover for trees of `regime`.
    pub fn new(regime: &Regime) -> Self {
        MinimalCover {
            start_level: regime.start_level(),
            pending: None,
            shape: CoverShape::default(),
            last_table: [None; 4],
        }
    }

    /// Adds one run. Runs must come in increasing input order without overlap (as
    /// [`PageTable::mappings`] yields them); a run that does not is covered on its own
    /// and the table count may then be off, but nothing panics. Empty runs are ignored.
    pub fn add(&mut self, run: &MappedRange) {
        self.add_range(run.ia.clone(), run.pa, run.attrs);
    }

    /// Adds `ia` mapped to `pa` with `attrs` (see [`MinimalCover::add`]).
    pub fn add_range(&mut self, ia: Range<u64>, pa: PhysAddr, attrs: Attributes) {
        if ia.start >= ia.end {
            return;
        }
        if let Some((range, oa, a)) = &mut self.pending
            && range.end == ia.start
            && *a == attrs
            && oa.wrapping_add(range.end - range.start) == pa.0
        {
            range.end = ia.end;
            return;
        }
        if let Some(done) = self.pending.replace((ia, pa.0, attrs)) {
            self.cover(done.0, done.1);
        }
    }

    /// The shape of the minimal cover of everything added.
    pub fn finish(mut self) -> CoverShape {
        if let Some((range, oa, _)) = self.pending.take() {
            self.cover(range, oa);
        }
        self.shape
    }

    fn cover(&mut self, range: Range<u64>, oa: u64) {
        let start_level = self.start_level;
        let shape = &mut self.shape;
        let last_table = &mut self.last_table;
        cover_range(
            start_level,
            range.start,
            range.end,
            oa,
            true,
            true,
            |addr, level, hinted| {
                shape.leaves += 1;
                shape.leaves_by_level[usize::from(level)] += 1;
                shape.contiguous += u64::from(hinted);
                for table_level in start_level + 1..=level {
                    let parent = addr >> level_shift(table_level - 1);
                    let slot = &mut last_table[usize::from(table_level)];
                    if *slot != Some(parent) {
                        *slot = Some(parent);
                        shape.tables += 1;
                    }
                }
            },
        );
    }
}

impl<H: Hardware> PageTable<H> {
    /// The minimal cover of everything this tree maps (see [`MinimalCover`]): one walk.
    pub fn minimal_cover(&self) -> CoverShape {
        let mut cover = MinimalCover::new(&self.regime());
        for run in self.mappings(0..self.regime().ia_limit()) {
            cover.add(&run);
        }
        cover.finish()
    }
}
