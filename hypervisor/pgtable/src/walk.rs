//! The one walker every operation uses: visits the entries of a range in address order,
//! with visit flags (leaf / table pre-order / table post-order) and a context carrying the
//! entry's address, level, slot and old value, like Linux's `kvm_pgtable_walk`.

use core::ptr::NonNull;

use crate::descriptor::Descriptor;
use crate::error::Error;
use crate::hw::{Hardware, PhysAddr};
use crate::regime::{ENTRIES, level_shift, level_size};
use crate::table::PageTable;

/// Which visits a visitor wants.
pub(crate) mod flags {
    /// Entries that are not tables: blocks, pages, invalid and pending entries.
    pub(crate) const LEAF: u8 = 1;
    /// Table entries, before their subtable is walked.
    pub(crate) const TABLE_PRE: u8 = 2;
    /// Table entries, after their subtable was walked.
    pub(crate) const TABLE_POST: u8 = 4;
}

/// Why the visitor is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Visit {
    Leaf,
    TablePre,
    TablePost,
}

/// What to do after a visit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Walk the entry's subtable if it is (now) a table.
    Continue,
    /// Do not walk below this entry.
    Skip,
}

/// One entry being visited.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ctx {
    /// Start of the input range the entry covers.
    pub(crate) addr: u64,
    pub(crate) level: u8,
    pub(crate) slot: NonNull<u64>,
    /// The entry's value when the visit began.
    pub(crate) old: Descriptor,
}

impl Ctx {
    /// One past the end of the entry's input range.
    #[inline]
    pub(crate) fn end(&self) -> u64 {
        self.addr + level_size(self.level)
    }

    /// Whether the entry lies entirely within `[start, end)`.
    #[inline]
    pub(crate) fn within(&self, start: u64, end: u64) -> bool {
        self.addr >= start && self.end() <= end
    }
}

/// An operation's per-entry logic.
pub(crate) trait Visitor<H: Hardware> {
    /// A combination of [`flags`].
    const FLAGS: u8;

    /// Visits one entry.
    fn visit(&mut self, pt: &mut PageTable<H>, ctx: &Ctx, visit: Visit) -> Result<Step, Error>;
}

impl<H: Hardware> PageTable<H> {
    /// Walks every entry that overlaps `[start, end)`, from the root.
    pub(crate) fn walk<V: Visitor<H>>(
        &mut self,
        start: u64,
        end: u64,
        visitor: &mut V,
    ) -> Result<(), Error> {
        let regime = self.regime();
        let root = self.root();
        self.walk_table(
            visitor,
            root,
            regime.start_level(),
            0,
            regime.root_entries(),
            start,
            end,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn walk_table<V: Visitor<H>>(
        &mut self,
        visitor: &mut V,
        table: PhysAddr,
        level: u8,
        base: u64,
        entries: usize,
        start: u64,
        end: u64,
    ) -> Result<(), Error> {
        let shift = level_shift(level);
        let first = (start.max(base) - base) >> shift;
        let last = ((end - 1 - base) >> shift).min(entries as u64 - 1);
        let entries_ptr = self.hw.table_ptr(table);
        for index in first..=last {
            // SAFETY: index < entries of this table.
            let slot = unsafe { entries_ptr.add(index as usize) };
            let mut ctx = Ctx {
                addr: base + (index << shift),
                level,
                slot,
                old: self.read(slot),
            };
            let was_table = ctx.old.is_table(level);
            let (wanted, kind) = if was_table {
                (V::FLAGS & flags::TABLE_PRE != 0, Visit::TablePre)
            } else {
                (V::FLAGS & flags::LEAF != 0, Visit::Leaf)
            };
            if wanted {
                if visitor.visit(self, &ctx, kind)? == Step::Skip {
                    continue;
                }
                // The visitor may have turned a leaf into a table (or the reverse).
                ctx.old = self.read(slot);
            }
            if !ctx.old.is_table(level) {
                continue;
            }
            let child = PhysAddr(ctx.old.output_address());
            self.walk_table(visitor, child, level + 1, ctx.addr, ENTRIES, start, end)?;
            if V::FLAGS & flags::TABLE_POST != 0 {
                ctx.old = self.read(slot);
                if ctx.old.is_table(level) {
                    visitor.visit(self, &ctx, Visit::TablePost)?;
                }
            }
        }
        Ok(())
    }
}
