//! Edits of existing mappings (`change_attrs`, `unmap`): split only the entries that
//! straddle the range's edges, and only as deep as the edge needs; unfold the contiguous
//! groups the edges cut through; change everything inside in place.

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
}

/// The pieces of the leaf `old` at `[addr, addr + size)`: old attributes outside
/// `[start, end)`, `inside` within. Returns the segments and how many there are.
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
/// and whether anything changes at all.
pub(crate) struct EditPlan {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) edit: Edit,
    pub(crate) tables: u64,
    pub(crate) changes: bool,
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
        let inside = self.edit.inside_bits(old);
        if inside == Some(old.attrs()) {
            return Ok(Step::Skip);
        }
        self.changes = true;
        if !ctx.within(self.start, self.end) {
            let (segments, count) =
                split_segments(ctx.addr, ctx.level, old, self.start, self.end, inside);
            self.tables += tables_for_entry(&segments[..count], ctx.level, ctx.addr);
        }
        Ok(Step::Skip)
    }
}

/// Groups already unfolded by this pass (at most one per level at each edge).
const UNFOLDED: usize = 8;

/// Second pass: the changes themselves.
pub(crate) struct EditCommit {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) edit: Edit,
    pub(crate) reservation: Reservation,
    unfolded: [(u8, u64); UNFOLDED],
    unfolded_count: usize,
    /// The range of leaves whose attributes changed in place: the only places where the
    /// edit can have made a table or a group collapsible (a split table keeps old
    /// attributes next to new ones, and its parent holds a table entry).
    pub(crate) changed_in_place: Option<(u64, u64)>,
}

impl EditCommit {
    pub(crate) fn new(start: u64, end: u64, edit: Edit, reservation: Reservation) -> Self {
        EditCommit {
            start,
            end,
            edit,
            reservation,
            unfolded: [(0, 0); UNFOLDED],
            unfolded_count: 0,
            changed_in_place: None,
        }
    }

    fn note_in_place(&mut self, addr: u64, level: u8, old: Descriptor, new: Descriptor) {
        if new.is_leaf(level) && new.attrs() != old.attrs() {
            let end = addr + level_size(level);
            self.changed_in_place = Some(match self.changed_in_place {
                None => (addr, end),
                Some((s, e)) => (s.min(addr), e.max(end)),
            });
        }
    }

    /// The new value of the leaf `old` at `addr`/`level` and whether it must go through
    /// break-before-make. `keep_cont` keeps the contiguous hint of an entry inside the
    /// range (its whole group changes alike).
    fn replacement<H: Hardware>(
        &mut self,
        pt: &mut PageTable<H>,
        addr: u64,
        level: u8,
        old: Descriptor,
        keep_cont: bool,
    ) -> Result<(Descriptor, bool), Error> {
        let entry_end = addr + level_size(level);
        let inside = self.edit.inside_bits(old);
        let size_change = pt.size_change_needs_break();
        if addr >= self.start && entry_end <= self.end {
            return Ok(match inside {
                // Removal: invalid now, invalidated before the operation returns.
                None => (Descriptor::INVALID, false),
                Some(bits) => {
                    let cont = keep_cont && old.is_contiguous();
                    let new = Descriptor::leaf(level, old.output_address(), bits, cont);
                    // RGPPYH: permissions change in place; RWHZWS: memory type does not.
                    let memory_type = !permission_only(old.attrs(), bits);
                    (
                        new,
                        memory_type || (cont != old.is_contiguous() && size_change),
                    )
                }
            });
        }
        if entry_end <= self.start || addr >= self.end {
            // Outside the range, in a group being unfolded: only the hint goes.
            return Ok((old.with_contiguous(false), size_change));
        }
        let (segments, count) = split_segments(addr, level, old, self.start, self.end, inside);
        let table = pt.build_table(
            &mut self.reservation,
            &segments[..count],
            level + 1,
            addr,
            true,
        )?;
        // RPVTFW: FEAT_BBM relaxes a change of size only; a new memory type inside the
        // block still needs the break.
        let memory_type = inside.is_some_and(|bits| !permission_only(old.attrs(), bits));
        Ok((Descriptor::table(table.0), size_change || memory_type))
    }

    /// Clears the contiguous hint on the whole group at `group_start` that an edge of
    /// the range cuts (seed 003 review: the whole group, not one entry), applying the edit
    /// to its entries on the way.
    fn unfold_group<H: Hardware>(
        &mut self,
        pt: &mut PageTable<H>,
        ctx: &Ctx,
        group_start: u64,
    ) -> Result<(), Error> {
        let size = level_size(ctx.level);
        let offset = ((ctx.addr - group_start) / size) as usize;
        // SAFETY: the group is aligned and lies in the same table as `ctx`.
        let first = unsafe { ctx.slot.sub(offset) };
        for j in 0..CONT_ENTRIES {
            // SAFETY: as above.
            let slot = unsafe { first.add(j) };
            let addr = group_start + j as u64 * size;
            let old = pt.read(slot);
            if !old.is_leaf(ctx.level) {
                continue;
            }
            let (new, needs_break) = self.replacement(pt, addr, ctx.level, old, false)?;
            self.note_in_place(addr, ctx.level, old, new);
            pt.change_entry(slot, addr, ctx.level, old, new, needs_break);
        }
        pt.counters.cont_groups_cleared += 1;
        if self.unfolded_count < UNFOLDED {
            self.unfolded[self.unfolded_count] = (ctx.level, group_start);
            self.unfolded_count += 1;
        }
        Ok(())
    }

    fn was_unfolded(&self, level: u8, group_start: u64) -> bool {
        self.unfolded[..self.unfolded_count].contains(&(level, group_start))
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
                if !old.is_leaf(ctx.level) {
                    return Ok(Step::Skip);
                }
                if self.edit.inside_bits(old) == Some(old.attrs()) {
                    return Ok(Step::Skip);
                }
                if old.is_contiguous() {
                    let (group_start, group_end) = cont_group(ctx.addr, ctx.level);
                    if group_start < self.start || group_end > self.end {
                        if !self.was_unfolded(ctx.level, group_start) {
                            self.unfold_group(pt, ctx, group_start)?;
                        }
                        return Ok(Step::Skip);
                    }
                }
                let (new, needs_break) = self.replacement(pt, ctx.addr, ctx.level, old, true)?;
                self.note_in_place(ctx.addr, ctx.level, old, new);
                pt.change_entry(ctx.slot, ctx.addr, ctx.level, old, new, needs_break);
                Ok(Step::Skip)
            }
        }
    }
}
