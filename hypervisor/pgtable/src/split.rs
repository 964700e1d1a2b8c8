//! Edits of existing mappings (`change_attrs`, `unmap`), in the order Linux v6.18 uses
//! for its linear map (`split_kernel_leaf_mapping`, then `update_range_prot`):
//!
//! 1. [`SplitEdges`]: split only the leaves that straddle the range's edges, only as deep
//!    as the edge needs, and clear the contiguous hint of every group an edge cuts. Under
//!    FEAT_BBM level 2 these stores change the size of entries and nothing else (the new
//!    subtable repeats the old leaf's output addresses and attributes everywhere), the
//!    only change RKFLJB / RPVTFW let a live entry make without break-before-make.
//! 2. The new tables are linked (one `DSB ISHST` for all their fills first).
//! 3. [`EditCommit`]: every leaf inside the range, old or just made by the split, gets the
//!    edit in place: permissions without a break (RGPPYH), a removal without one, a new
//!    memory type with break-before-make (RWHZWS).
//! 4. [`PageTable::finish`]: one invalidation for the whole operation.
//!
//! When a split store breaks anyway (break-before-make, RDDMVT) or no walker sees it (a
//! tree not live), nothing forbids it to carry the edit too: the split builds the final
//! values at once and step 3 finds nothing left to do there (the old single-store split,
//! which keeps break-before-make at one break per split entry).

use core::ops::Range;

use crate::attrs::{self, Attributes, MapFlags, permission_only};
use crate::descriptor::{Descriptor, SW_NO_BLOCK, SW_NO_CONT, cont_group};
use crate::error::Error;
use crate::fill::{Segment, tables_for_entry};
use crate::hw::{Hardware, PhysAddr};
use crate::regime::{CONT_ENTRIES, RegimeKind, level_size};
use crate::reserve::Reservation;
use crate::table::PageTable;
use crate::walk::{Ctx, Step, Visit, Visitor, flags};

/// What happens to the pages inside the range.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Edit {
    /// New attributes: the encoded bits without mapping flags (each leaf keeps its own).
    Attrs(u64),
    /// No mapping.
    Unmap,
}

impl Edit {
    /// New attributes `attrs` in `regime`.
    ///
    /// # Errors
    /// As [`attrs::encode`].
    pub(crate) fn attrs(regime: RegimeKind, attrs: Attributes) -> Result<Edit, Error> {
        attrs::encode(regime, attrs, MapFlags::NONE).map(Edit::Attrs)
    }

    /// The attribute bits the inside of `old` gets (`None`: unmapped).
    #[inline]
    fn inside_bits(&self, old: Descriptor) -> Option<u64> {
        match self {
            Edit::Attrs(bits) => Some(bits | (old.attrs() & (SW_NO_BLOCK | SW_NO_CONT))),
            Edit::Unmap => None,
        }
    }

    /// Whether the leaf `old` is left as it is by the edit.
    #[inline]
    fn keeps(&self, old: Descriptor) -> bool {
        self.inside_bits(old) == Some(old.attrs())
    }

    /// The attribute bits the pieces of `old` inside the range get when it is split:
    /// its own when the split store must change the size alone (FEAT_BBM level 2 on a
    /// live tree, RKFLJB / RPVTFW), the edit's when the store may carry it too.
    #[inline]
    fn split_inside_bits(&self, old: Descriptor, carry_edit: bool) -> Option<u64> {
        if carry_edit {
            self.inside_bits(old)
        } else {
            Some(old.attrs())
        }
    }

    /// The edited value of the leaf `old` at `level`, which lies wholly inside the range,
    /// and whether the change needs break-before-make. `keep_cont` keeps its contiguous
    /// hint (its whole group is inside the range and changes alike).
    fn in_place<H: Hardware>(
        &self,
        pt: &PageTable<H>,
        level: u8,
        old: Descriptor,
        keep_cont: bool,
    ) -> (Descriptor, bool) {
        match self.inside_bits(old) {
            // A removal: invalid now, invalidated before the operation returns; an
            // invalid entry is never cached, so no break is needed.
            None => (Descriptor::INVALID, false),
            Some(bits) => {
                let cont = keep_cont && old.is_contiguous();
                let new = Descriptor::leaf(level, old.output_address(), bits, cont);
                // RGPPYH: permissions change in place; RWHZWS: memory type does not.
                let memory_type = !permission_only(old.attrs(), bits);
                // Dropping the hint is a change of size (RKHRBC relaxes it only with
                // FEAT_BBM).
                let size_change = cont != old.is_contiguous() && pt.size_change_needs_break();
                (new, memory_type || size_change)
            }
        }
    }
}

/// The pieces of the leaf `old` at `[addr, addr + size)`: old attributes outside
/// `[start, end)`, `inside` within. Returns the segments and how many there are. The
/// pieces stay separate segments even when `inside` equals the old attributes, so the
/// table built from them has an entry boundary at each edge of the range.
fn split_segments(
    addr: u64,
    level: u8,
    old: Descriptor,
    start: u64,
    end: u64,
    inside: Option<u64>,
) -> ([Segment; 3], usize) {
    let entry_end = addr + level_size(level);
    let (lo, hi) = (start.max(addr), end.min(entry_end));
    let oa = old.output_address();
    let piece = |s: u64, e: u64, attrs: Option<u64>| Segment {
        start: s,
        end: e,
        oa: oa.wrapping_add(s.wrapping_sub(addr)),
        attrs,
    };
    let mut segments = [piece(0, 0, None); 3];
    let mut count = 0;
    for (s, e, attrs) in [
        (addr, lo, Some(old.attrs())),
        (lo, hi, inside),
        (hi, entry_end, Some(old.attrs())),
    ] {
        if s < e {
            segments[count] = piece(s, e, attrs);
            count += 1;
        }
    }
    (segments, count)
}

/// Read-only first pass: every page mapped (for attribute changes), tables to reserve,
/// and whether anything changes at all. It counts the tables of exactly the splits
/// [`SplitEdges`] will build (same segments), so the commit never needs more.
struct EditPlan {
    start: u64,
    end: u64,
    edit: Edit,
    carry_edit: bool,
    tables: u64,
    changes: bool,
}

impl<H: Hardware> Visitor<H> for EditPlan {
    const FLAGS: u8 = flags::LEAF | flags::TABLE_PRE;

    fn visit(&mut self, _: &mut PageTable<H>, ctx: &Ctx, visit: Visit) -> Result<Step, Error> {
        if visit == Visit::TablePre {
            if matches!(self.edit, Edit::Unmap) && ctx.within(self.start, self.end) {
                self.changes = true;
                return Ok(Step::Skip);
            }
            return Ok(Step::Continue);
        }
        let old = ctx.old;
        if old.is_pending() {
            return Err(Error::Internal);
        }
        if !old.is_valid() {
            return match self.edit {
                Edit::Attrs(_) => Err(Error::NotMapped {
                    addr: ctx.addr.max(self.start),
                }),
                Edit::Unmap => Ok(Step::Skip),
            };
        }
        if self.edit.keeps(old) {
            return Ok(Step::Skip);
        }
        self.changes = true;
        if !ctx.within(self.start, self.end) {
            let inside = self.edit.split_inside_bits(old, self.carry_edit);
            let (segments, count) =
                split_segments(ctx.addr, ctx.level, old, self.start, self.end, inside);
            self.tables += tables_for_entry(&segments[..count], ctx.level, ctx.addr);
        }
        Ok(Step::Skip)
    }
}

/// Groups already unfolded by this pass (at most one per level at each edge).
const UNFOLDED: usize = 8;

/// Step 1: splits the leaves that straddle an edge of the range and unfolds the
/// contiguous groups an edge cuts. Subtables wholly inside the range are not entered:
/// nothing in them straddles an edge, so only the paths to the two edges are walked.
struct SplitEdges {
    start: u64,
    end: u64,
    edit: Edit,
    /// The split stores may carry the edit too (see the module documentation).
    carry_edit: bool,
    reservation: Reservation,
    unfolded: [(u8, u64); UNFOLDED],
    unfolded_count: usize,
}

impl SplitEdges {
    /// Whether the entry at `addr`/`level` lies wholly inside the range.
    #[inline]
    fn within(&self, addr: u64, level: u8) -> bool {
        addr >= self.start && addr + level_size(level) <= self.end
    }

    /// Replaces the leaf `old` at `addr`/`level`, which overlaps the range but is not
    /// inside it, by a table of its pieces.
    fn split<H: Hardware>(
        &mut self,
        pt: &mut PageTable<H>,
        slot: core::ptr::NonNull<u64>,
        addr: u64,
        level: u8,
        old: Descriptor,
    ) -> Result<(), Error> {
        let inside = self.edit.split_inside_bits(old, self.carry_edit);
        let (segments, count) = split_segments(addr, level, old, self.start, self.end, inside);
        let table = pt.build_table(
            &mut self.reservation,
            &segments[..count],
            level + 1,
            addr,
            true,
        )?;
        // Without FEAT_BBM level 2 a change of size breaks (RDDMVT), so the table may
        // carry the edit; with it, the table repeats the block (`split_inside_bits`) and
        // the store changes the size alone (RKFLJB).
        let needs_break = pt.size_change_needs_break();
        pt.change_entry(
            slot,
            addr,
            level,
            old,
            Descriptor::table(table.0),
            needs_break,
        );
        Ok(())
    }

    /// Clears the contiguous hint on the whole group at `group_start` that an edge of
    /// the range cuts (seed 003 review: the whole group, not one entry). The member that
    /// straddles the edge, if any, is split instead; the others keep their output
    /// address and attributes (a change of size only, RKHRBC), unless the stores may
    /// carry the edit.
    fn unfold_group<H: Hardware>(
        &mut self,
        pt: &mut PageTable<H>,
        ctx: &Ctx,
        group_start: u64,
    ) -> Result<(), Error> {
        let level = ctx.level;
        let size = level_size(level);
        let offset = ((ctx.addr - group_start) / size) as usize;
        // SAFETY: the group is aligned and lies in the same table as `ctx`.
        let first = unsafe { ctx.slot.sub(offset) };
        for j in 0..CONT_ENTRIES {
            // SAFETY: as above.
            let slot = unsafe { first.add(j) };
            let addr = group_start + j as u64 * size;
            let old = pt.read(slot);
            if !old.is_leaf(level) {
                continue;
            }
            let entry_end = addr + size;
            let overlaps = addr < self.end && entry_end > self.start;
            if overlaps && !self.within(addr, level) {
                self.split(pt, slot, addr, level, old)?;
                continue;
            }
            let (new, needs_break) = if overlaps && self.carry_edit {
                self.edit.in_place(pt, level, old, false)
            } else {
                (old.with_contiguous(false), pt.size_change_needs_break())
            };
            pt.change_entry(slot, addr, level, old, new, needs_break);
        }
        pt.counters.cont_groups_cleared += 1;
        if self.unfolded_count < UNFOLDED {
            self.unfolded[self.unfolded_count] = (level, group_start);
            self.unfolded_count += 1;
        }
        Ok(())
    }

    fn was_unfolded(&self, level: u8, group_start: u64) -> bool {
        self.unfolded[..self.unfolded_count].contains(&(level, group_start))
    }
}

impl<H: Hardware> Visitor<H> for SplitEdges {
    const FLAGS: u8 = flags::LEAF | flags::TABLE_PRE;

    fn visit(&mut self, pt: &mut PageTable<H>, ctx: &Ctx, visit: Visit) -> Result<Step, Error> {
        if visit == Visit::TablePre {
            return Ok(if ctx.within(self.start, self.end) {
                Step::Skip
            } else {
                Step::Continue
            });
        }
        let old = ctx.old;
        // Not a leaf: a hole, or a member of a group this pass already broke.
        if !old.is_leaf(ctx.level) || self.edit.keeps(old) {
            return Ok(Step::Skip);
        }
        if old.is_contiguous() {
            let (group_start, group_end) = cont_group(ctx.addr, ctx.level);
            if group_start < self.start || group_end > self.end {
                // A member split by the unfolding is still a contiguous block here until
                // its table is linked: the record keeps it from being split twice.
                if !self.was_unfolded(ctx.level, group_start) {
                    self.unfold_group(pt, ctx, group_start)?;
                }
                return Ok(Step::Skip);
            }
        }
        if !ctx.within(self.start, self.end) {
            self.split(pt, ctx.slot, ctx.addr, ctx.level, old)?;
        }
        Ok(Step::Skip)
    }
}

/// Step 3: the edit, in place, of every leaf inside the range, and for an unmap the
/// unlinking of whole subtrees inside it and of tables left empty.
struct EditCommit {
    start: u64,
    end: u64,
    edit: Edit,
    /// The range of leaves whose attributes changed in place: the only places where the
    /// edit can have made a table or a group collapsible (a split table keeps old
    /// attributes next to new ones, and its parent holds a table entry).
    changed_in_place: Option<(u64, u64)>,
}

impl EditCommit {
    fn note_in_place(&mut self, addr: u64, level: u8, old: Descriptor, new: Descriptor) {
        if new.is_leaf(level) && new.attrs() != old.attrs() {
            let end = addr + level_size(level);
            self.changed_in_place = Some(match self.changed_in_place {
                None => (addr, end),
                Some((s, e)) => (s.min(addr), e.max(end)),
            });
        }
    }
}

impl<H: Hardware> Visitor<H> for EditCommit {
    const FLAGS: u8 = flags::LEAF | flags::TABLE_PRE | flags::TABLE_POST;

    fn visit(&mut self, pt: &mut PageTable<H>, ctx: &Ctx, visit: Visit) -> Result<Step, Error> {
        let unmap = matches!(self.edit, Edit::Unmap);
        match visit {
            Visit::TablePre => {
                if unmap && ctx.within(self.start, self.end) {
                    // A whole subtree goes: unlink it, free it once invalidated.
                    pt.change_entry(
                        ctx.slot,
                        ctx.addr,
                        ctx.level,
                        ctx.old,
                        Descriptor::INVALID,
                        false,
                    );
                    pt.defer_free(PhysAddr(ctx.old.output_address()), ctx.level + 1);
                    return Ok(Step::Skip);
                }
                Ok(Step::Continue)
            }
            Visit::TablePost => {
                if unmap {
                    let table = PhysAddr(ctx.old.output_address());
                    let empty = (0..crate::regime::ENTRIES)
                        .all(|i| pt.read(pt.slot(table, i)) == Descriptor::INVALID);
                    if empty {
                        pt.change_entry(
                            ctx.slot,
                            ctx.addr,
                            ctx.level,
                            ctx.old,
                            Descriptor::INVALID,
                            false,
                        );
                        pt.defer_free(table, ctx.level + 1);
                    }
                }
                Ok(Step::Continue)
            }
            Visit::Leaf => {
                let old = ctx.old;
                // Holes, and entries step 1 broke: those already carry their final value.
                if !old.is_leaf(ctx.level) || self.edit.keeps(old) {
                    return Ok(Step::Skip);
                }
                // Step 1 split every leaf across an edge and unfolded every group an edge
                // cuts: what is left here lies inside the range with its whole group.
                let (group_start, group_end) = cont_group(ctx.addr, ctx.level);
                let group_inside = group_start >= self.start && group_end <= self.end;
                if !ctx.within(self.start, self.end) || (old.is_contiguous() && !group_inside) {
                    return Err(Error::Internal);
                }
                let (new, needs_break) = self.edit.in_place(pt, ctx.level, old, true);
                self.note_in_place(ctx.addr, ctx.level, old, new);
                pt.change_entry(ctx.slot, ctx.addr, ctx.level, old, new, needs_break);
                Ok(Step::Skip)
            }
        }
    }
}

/// What an edit did.
#[derive(Default)]
pub(crate) struct Edited {
    /// See [`EditCommit::changed_in_place`].
    pub(crate) changed_in_place: Option<(u64, u64)>,
    /// The range break-before-make made invalid for a moment.
    pub(crate) transiently_unmapped: Option<Range<u64>>,
}

impl<H: Hardware> PageTable<H> {
    /// Applies `edit` to `[start, end)` (a checked range): plan and reserve, then the
    /// steps of the module documentation.
    ///
    /// # Errors
    /// [`Error::NotMapped`] (attribute changes), [`Error::OutOfTables`], with the tables
    /// unchanged; [`Error::Internal`] for a bug.
    pub(crate) fn edit_range(&mut self, start: u64, end: u64, edit: Edit) -> Result<Edited, Error> {
        let carry_edit = self.size_change_may_carry_edit();
        let mut plan = EditPlan {
            start,
            end,
            edit,
            carry_edit,
            tables: 0,
            changes: false,
        };
        self.walk(start, end, &mut plan)?;
        if !plan.changes {
            return Ok(Edited::default());
        }
        // Failure atomicity: every table is taken before the first store.
        let reservation = self.reserve(plan.tables)?;
        let mut split = SplitEdges {
            start,
            end,
            edit,
            carry_edit,
            reservation,
            unfolded: [(0, 0); UNFOLDED],
            unfolded_count: 0,
        };
        let split_result = self.walk(start, end, &mut split);
        self.release(split.reservation);
        let mut commit = EditCommit {
            start,
            end,
            edit,
            changed_in_place: None,
        };
        let result = split_result.and_then(|()| {
            // Step 2: link the split tables now, after one DSB ISHST that makes all their
            // fills visible to walkers (module `maintenance`, step 1). Linked, their
            // leaves are reached by the edit below; and each link store is recorded and
            // seen as what it is, a change of size alone (RKFLJB), before any leaf of
            // the new table changes.
            self.flush_publications();
            self.walk(start, end, &mut commit)
        });
        // Step 4, also after a failure: whatever was stored is settled.
        let transiently_unmapped = self.finish();
        result.map(|()| Edited {
            changed_in_place: commit.changed_in_place,
            transiently_unmapped,
        })
    }
}
