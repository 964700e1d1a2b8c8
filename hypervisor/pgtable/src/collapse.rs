//! Collapse: a table whose entries map one aligned physical run with equal attributes
//! becomes a block again, and a group of 16 such entries gets the contiguous hint back.
//! Linux never collapses its linear map, so it degrades towards pages over time (seed 003
//! review); we collapse automatically on the tables an operation touched, and on request.

use core::ops::Range;

use crate::descriptor::{Descriptor, SW_NO_BLOCK, SW_NO_CONT};
use crate::error::Error;
use crate::hw::{Hardware, PhysAddr};
use crate::regime::{CONT_ENTRIES, ENTRIES, cont_allowed, level_size};
use crate::table::{OpReport, PageTable};
use crate::walk::{Ctx, Step, Visit, Visitor, flags};

/// Post-order: children first, so a table of collapsed tables can collapse in turn.
pub(crate) struct CollapseVisitor {
    pub(crate) start: u64,
    pub(crate) end: u64,
}

impl<H: Hardware> Visitor<H> for CollapseVisitor {
    const FLAGS: u8 = flags::TABLE_POST;

    fn visit(&mut self, pt: &mut PageTable<H>, ctx: &Ctx, _: Visit) -> Result<Step, Error> {
        pt.collapse_entry(ctx, self.start, self.end);
        Ok(Step::Continue)
    }
}

impl<H: Hardware> PageTable<H> {
    /// Collapses, within `range`, every table that maps one aligned run with equal
    /// attributes into a block, and sets the contiguous hint on every group of 16 that
    /// qualifies. Under break-before-make the replaced entries are transiently unmapped
    /// (reported); with FEAT_BBM level 2 they change directly (RKFLJB), and the hint is
    /// set without a break (RKHRBC). A collapsed table is freed after it is unlinked and
    /// its range invalidated, walk caches included.
    ///
    /// `map` and `change_attrs` already do this on the tables they touch; this is for
    /// callers that changed a range in several steps.
    ///
    /// # Errors
    /// [`Error::Misaligned`], [`Error::EmptyRange`], [`Error::OutOfRange`] for a bad range.
    pub fn collapse(&mut self, range: Range<u64>) -> Result<OpReport, Error> {
        let (start, end) = self.check_range(&range)?;
        let transiently_unmapped = self.collapse_range(start, end);
        Ok(OpReport {
            transiently_unmapped,
        })
    }

    /// The collapse pass and its maintenance.
    pub(crate) fn collapse_range(&mut self, start: u64, end: u64) -> Option<Range<u64>> {
        // The visitor never fails.
        let _ = self.walk(start, end, &mut CollapseVisitor { start, end });
        self.collapse_root_groups(start, end);
        self.finish()
    }

    /// Collapse check for the table entry `ctx`, visited after its subtable: the whole
    /// table into a block, else the contiguous groups of the table that `[start, end)`
    /// touches.
    pub(crate) fn collapse_entry(&mut self, ctx: &Ctx, start: u64, end: u64) {
        let table = PhysAddr(ctx.old.output_address());
        if self.try_collapse_table(ctx, table, start, end) {
            return;
        }
        let child = ctx.level + 1;
        if cont_allowed(child) {
            self.set_groups(table, child, ctx.addr, ENTRIES, start, end);
        }
    }

    /// Contiguous groups of the root (stage 2 starting at level 2 only).
    pub(crate) fn collapse_root_groups(&mut self, start: u64, end: u64) {
        let regime = self.regime();
        if cont_allowed(regime.start_level()) {
            let root = self.root();
            self.set_groups(
                root,
                regime.start_level(),
                0,
                regime.root_entries(),
                start,
                end,
            );
        }
    }

    fn try_collapse_table(&mut self, ctx: &Ctx, table: PhysAddr, start: u64, end: u64) -> bool {
        let level = ctx.level;
        if !(1..=2).contains(&level) {
            // Blocks exist at levels 1 and 2 only.
            return false;
        }
        let child = level + 1;
        let child_size = level_size(child);
        let entries = self.hw.table_ptr(table);
        // Pending entries count as what they will be: a table whose children were just
        // collapsed by break-before-make can collapse in the same pass.
        // SAFETY: every index below is < 512, inside the table.
        let entry =
            |index: usize| Descriptor(unsafe { entries.add(index).as_ptr().read() }).effective();
        let first = entry(0);
        if !first.is_leaf(child) || first.attrs() & SW_NO_BLOCK != 0 {
            return false;
        }
        let base = first.output_address();
        if base % level_size(level) != 0 {
            return false;
        }
        let attrs = first.attrs();
        let fits = |index: usize| {
            let e = entry(index);
            e.is_leaf(child)
                && e.attrs() == attrs
                && e.output_address() == base + index as u64 * child_size
        };
        // Where the operation's range meets the table the entries most likely differ
        // (a split child, or the old attributes next to the new): look there first.
        let index_of =
            |addr: u64| ((addr.clamp(ctx.addr, ctx.end() - 1) - ctx.addr) / child_size) as usize;
        let (lo, hi) = (index_of(start), index_of(end - 1));
        let probes = [
            lo,
            lo.saturating_sub(1),
            (lo + 1).min(ENTRIES - 1),
            hi,
            hi.saturating_sub(1),
            (hi + 1).min(ENTRIES - 1),
        ];
        if !probes.iter().all(|&i| fits(i)) || !(1..ENTRIES).all(fits) {
            return false;
        }
        let block = Descriptor::leaf(level, base, attrs, false);
        let needs_break = self.size_change_needs_break();
        self.change_entry(ctx.slot, ctx.addr, level, ctx.old, block, needs_break);
        self.defer_free(table, child);
        match level {
            1 => self.counters.collapses_1g += 1,
            _ => self.counters.collapses_2m += 1,
        }
        true
    }

    /// Sets the hint on the qualifying groups, among the entries at `level` of `table`,
    /// that overlap `[start, end)`.
    fn set_groups(
        &mut self,
        table: PhysAddr,
        level: u8,
        base: u64,
        entries: usize,
        start: u64,
        end: u64,
    ) {
        let size = level_size(level);
        let group_size = size * CONT_ENTRIES as u64;
        let table_end = base + entries as u64 * size;
        let (lo, hi) = (start.max(base), end.min(table_end));
        if lo >= hi {
            return;
        }
        let first = (lo - base) / group_size;
        let last = (hi - 1 - base) / group_size;
        for group in first..=last {
            self.try_set_group(
                table,
                level,
                base + group * group_size,
                group as usize * CONT_ENTRIES,
            );
        }
    }

    fn try_set_group(&mut self, table: PhysAddr, level: u8, addr: u64, first_index: usize) {
        let size = level_size(level);
        let head = self.read(self.slot(table, first_index)).effective();
        if !head.is_leaf(level) || head.attrs() & SW_NO_CONT != 0 {
            return;
        }
        let base = head.output_address();
        if !base.is_multiple_of(size * CONT_ENTRIES as u64) {
            return;
        }
        let mut all_set = head.is_contiguous();
        for j in 1..CONT_ENTRIES {
            let entry = self.read(self.slot(table, first_index + j)).effective();
            if !entry.is_leaf(level)
                || entry.attrs() != head.attrs()
                || entry.output_address() != base + j as u64 * size
            {
                return;
            }
            all_set &= entry.is_contiguous();
        }
        if all_set {
            return;
        }
        // Without FEAT_BBM a change of the contiguous bit is a change of size (RKHRBC
        // relaxes it from level 1 on).
        let needs_break = self.size_change_needs_break();
        for j in 0..CONT_ENTRIES {
            let slot = self.slot(table, first_index + j);
            let old = self.read(slot);
            let new = old.effective().with_contiguous(true);
            self.change_entry(slot, addr + j as u64 * size, level, old, new, needs_break);
        }
        self.counters.cont_groups_set += 1;
    }
}
