//! `map`: new mappings with the largest leaves alignment allows.

use core::ops::Range;

use crate::attrs::{self, Attributes, MapFlags};
use crate::descriptor::{Descriptor, cont_group};
use crate::error::Error;
use crate::fill::{Cover, Segment, classify, tables_for_entry};
use crate::hw::{Hardware, PhysAddr};
use crate::regime::{CONT_ENTRIES, cont_allowed};
use crate::reserve::Reservation;
use crate::table::{OpReport, PageTable};
use crate::walk::{Ctx, Step, Visit, Visitor, flags};

/// Read-only first pass: refuses conflicts, counts the tables to reserve.
struct MapPlan {
    segment: Segment,
    tables: u64,
}

impl<H: Hardware> Visitor<H> for MapPlan {
    const FLAGS: u8 = flags::LEAF;

    fn visit(&mut self, _: &mut PageTable<H>, ctx: &Ctx, _: Visit) -> Result<Step, Error> {
        let s = &self.segment;
        let first = ctx.addr.max(s.start);
        if ctx.old.is_leaf(ctx.level) {
            let same_output = ctx.old.output_address() + (first - ctx.addr) == s.oa_at(first);
            if Some(ctx.old.attrs()) == s.attrs && same_output {
                return Ok(Step::Skip);
            }
            return Err(Error::AlreadyMapped { addr: first });
        }
        if ctx.old.is_pending() {
            return Err(Error::Internal);
        }
        self.tables += tables_for_entry(core::slice::from_ref(s), ctx.level, ctx.addr);
        Ok(Step::Skip)
    }
}

/// Second pass: writes leaves into invalid entries, builds new subtrees off-line, and
/// collapses the existing tables it passed through.
struct MapCommit {
    segment: Segment,
    reservation: Reservation,
}

impl<H: Hardware> Visitor<H> for MapCommit {
    const FLAGS: u8 = flags::LEAF | flags::TABLE_POST;

    fn visit(&mut self, pt: &mut PageTable<H>, ctx: &Ctx, visit: Visit) -> Result<Step, Error> {
        let s = self.segment;
        if visit == Visit::TablePost {
            // An existing table that may now hold one aligned run (seed 003: collapse,
            // so the map does not degrade).
            pt.collapse_entry(ctx, s.start, s.end);
            return Ok(Step::Continue);
        }
        if ctx.old.is_valid() {
            // Identical to the request (the plan checked).
            return Ok(Step::Skip);
        }
        match classify(core::slice::from_ref(&s), ctx.addr, ctx.end()) {
            Cover::Empty => {}
            Cover::Inside(seg) if seg.leaf_fits(ctx.level, ctx.addr) => {
                let (group_start, group_end) = cont_group(ctx.addr, ctx.level);
                let group_inside = cont_allowed(ctx.level)
                    && group_start == ctx.addr
                    && group_start >= s.start
                    && group_end <= s.end
                    && seg.group_fits(ctx.level, ctx.addr);
                if group_inside && pt.group_is_empty(ctx) {
                    // Invalid to valid needs no break; a walker that meets a written
                    // entry of the group before the others gets the same translation.
                    for j in 0..CONT_ENTRIES {
                        let addr = ctx.addr + j as u64 * (ctx.end() - ctx.addr);
                        // SAFETY: the group lies inside this table (16 | 512, aligned).
                        let slot = unsafe { ctx.slot.add(j) };
                        let new = Descriptor::leaf(
                            ctx.level,
                            seg.oa_at(addr),
                            s.attrs.unwrap_or(0),
                            true,
                        );
                        pt.store(slot, addr, ctx.level, Descriptor::INVALID, new);
                    }
                } else {
                    let new = Descriptor::leaf(
                        ctx.level,
                        seg.oa_at(ctx.addr),
                        s.attrs.unwrap_or(0),
                        false,
                    );
                    pt.store(ctx.slot, ctx.addr, ctx.level, ctx.old, new);
                }
            }
            _ => {
                let table = pt.build_table(
                    &mut self.reservation,
                    core::slice::from_ref(&s),
                    ctx.level + 1,
                    ctx.addr,
                    false,
                )?;
                pt.publish_table(ctx.slot, ctx.addr, ctx.level, ctx.old, table);
            }
        }
        Ok(Step::Skip)
    }
}

impl<H: Hardware> PageTable<H> {
    /// Maps `range` (input addresses) to `pa` onwards with `attrs`, using the largest
    /// blocks alignment allows (1 GiB at level 1, 2 MiB at level 2, else 4 KiB pages) and
    /// the contiguous hint on every whole aligned group of 16 (64 KiB of pages, 32 MiB of
    /// 2 MiB blocks), unless `flags` says otherwise.
    ///
    /// Parts of `range` that are already mapped must be mapped identically (same output
    /// address, attributes and flags): they are left as they are, and the operation
    /// succeeds. Any other existing mapping is a conflict and nothing is changed.
    /// New subtrees are built off-line and linked with one barrier; filling entries that
    /// were invalid needs no TLB invalidation. Existing tables the walk passed through are
    /// collapsed where they now hold one aligned run.
    ///
    /// # Errors
    /// [`Error::Misaligned`], [`Error::EmptyRange`], [`Error::OutOfRange`] for bad
    /// ranges; [`Error::WriteAndExecute`], [`Error::AccessNotExpressible`],
    /// [`Error::ExecutableDevice`] for attributes the regime refuses;
    /// [`Error::AlreadyMapped`] for a conflict; [`Error::OutOfTables`] if the tables
    /// cannot be allocated. In every case the tables are unchanged.
    pub fn map(
        &mut self,
        range: Range<u64>,
        pa: PhysAddr,
        attrs: Attributes,
        flags: MapFlags,
    ) -> Result<OpReport, Error> {
        let (start, end) = self.check_range(&range)?;
        self.check_output(pa, end - start)?;
        let bits = attrs::encode(self.regime().kind(), attrs, flags)?;
        let segment = Segment {
            start,
            end,
            oa: pa.0,
            attrs: Some(bits),
        };
        let mut plan = MapPlan { segment, tables: 0 };
        self.walk(start, end, &mut plan)?;
        let reservation = self.reserve(plan.tables)?;
        let mut commit = MapCommit {
            segment,
            reservation,
        };
        let result = self.walk(start, end, &mut commit);
        self.collapse_root_groups(start, end);
        self.release(commit.reservation);
        let transiently_unmapped = self.finish();
        result.map(|()| OpReport {
            transiently_unmapped,
        })
    }

    /// Whether the contiguous group starting at `ctx` is entirely invalid.
    fn group_is_empty(&self, ctx: &Ctx) -> bool {
        (0..CONT_ENTRIES).all(|j| {
            // SAFETY: the group lies inside this table.
            self.read(unsafe { ctx.slot.add(j) }) == Descriptor::INVALID
        })
    }
}
