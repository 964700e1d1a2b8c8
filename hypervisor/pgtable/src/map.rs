//! `map`: new mappings with the largest leaves alignment allows.

use core::ops::Range;
use core::ptr::NonNull;

use crate::attrs::{self, Attributes, MapFlags};
use crate::descriptor::{Descriptor, cont_group};
use crate::error::Error;
use crate::fill::{Cover, Segment, classify, tables_for_segment};
use crate::hw::{Hardware, PhysAddr};
use crate::regime::{CONT_ENTRIES, cont_allowed, level_shift, level_size};
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
        self.tables += tables_for_segment(s, ctx.level, ctx.addr);
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
        pt.map_into_invalid(&s, ctx, &mut self.reservation)?;
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
        #[cfg(test)]
        let fast = !self.general_map_only;
        #[cfg(not(test))]
        let fast = true;
        if fast && let Some(result) = self.map_fast(segment) {
            #[cfg(test)]
            {
                self.fast_maps += 1;
            }
            return result;
        }
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

    /// The fast path for the common case (boot, a new guest's memory): below the tables
    /// the range shares, every entry it overlaps is invalid. One read-only descent finds
    /// the table where the range spreads over several entries (or meets a non-table
    /// entry) and checks that those entries are all invalid; the tables to reserve then
    /// follow from the range alone, with no plan walk: the first and last entries may be
    /// partial, every entry between them is wholly inside the segment with the same
    /// alignment and so needs the same number of tables. Everything is reserved before
    /// the first store, as on the general path, and the entries are written exactly as
    /// [`MapCommit`] writes invalid entries; the tables passed through on the way down
    /// get the same post-order collapse check.
    ///
    /// Returns `None`, having read only, when an entry in the range is anything but
    /// invalid (a table to walk into, a leaf to compare, a pending entry): the general
    /// two-pass path handles it.
    fn map_fast(&mut self, s: Segment) -> Option<Result<OpReport, Error>> {
        let target = self.find_invalid_spread(&s)?;
        let mut reservation = match self.reserve(target.tables_needed(&s)) {
            Ok(reservation) => reservation,
            Err(e) => return Some(Err(e)),
        };
        let result = self.fill_invalid_spread(&s, &target, &mut reservation);
        if result.is_ok() {
            self.collapse_fast_path(&target, s.start, s.end);
        }
        self.collapse_root_groups(s.start, s.end);
        self.release(reservation);
        let transiently_unmapped = self.finish();
        Some(result.map(|()| OpReport {
            transiently_unmapped,
        }))
    }

    /// The read-only descent of [`map_fast`](Self::map_fast): follows table entries while
    /// the range lies inside one entry, and stops at the table where it spreads over
    /// several entries (or meets a non-table entry). `None` unless every entry the range
    /// overlaps there is invalid.
    fn find_invalid_spread(&self, s: &Segment) -> Option<FastSpread> {
        let (start, end) = (s.start, s.end);
        let mut table = self.root();
        let mut level = self.regime().start_level();
        let mut base = 0;
        let mut path = [(NonNull::dangling(), 0, 0); 3];
        let mut depth = 0;
        loop {
            let shift = level_shift(level);
            // `check_range` keeps the range below the root's limit; below the root it
            // lies inside the entry walked into. So both indexes are in the table.
            let first = ((start - base) >> shift) as usize;
            let last = ((end - 1 - base) >> shift) as usize;
            let entries = self.hw.table_ptr(table);
            if first == last {
                // SAFETY: `first` is an index of this table (above).
                let slot = unsafe { entries.add(first) };
                let old = self.read(slot);
                if old.is_table(level) && depth < path.len() {
                    let addr = base + ((first as u64) << shift);
                    path[depth] = (slot, addr, level);
                    depth += 1;
                    table = PhysAddr(old.output_address());
                    base = addr;
                    level += 1;
                    continue;
                }
            }
            for index in first..=last {
                // SAFETY: as above.
                if self.read(unsafe { entries.add(index) }) != Descriptor::INVALID {
                    return None;
                }
            }
            return Some(FastSpread {
                entries,
                level,
                base,
                first,
                last,
                path,
                depth,
            });
        }
    }

    /// Writes every entry of the spread, as [`MapCommit`] writes invalid entries.
    fn fill_invalid_spread(
        &mut self,
        s: &Segment,
        target: &FastSpread,
        reservation: &mut Reservation,
    ) -> Result<(), Error> {
        let mut index = target.first;
        while index <= target.last {
            let ctx = Ctx {
                addr: target.addr_of(index),
                level: target.level,
                // SAFETY: `index` is between the spread's first and last entries, indexes
                // of its table (`find_invalid_spread`).
                slot: unsafe { target.entries.add(index) },
                old: Descriptor::INVALID,
            };
            index += self.map_into_invalid(s, &ctx, reservation)?;
        }
        Ok(())
    }

    /// What the walker's post-order visits of [`MapCommit`] do to the tables passed
    /// through on the way down, deepest first: collapse what now maps one aligned run.
    fn collapse_fast_path(&mut self, target: &FastSpread, start: u64, end: u64) {
        for &(slot, addr, level) in target.path[..target.depth].iter().rev() {
            let old = self.read(slot);
            if old.is_table(level) {
                let ctx = Ctx {
                    addr,
                    level,
                    slot,
                    old,
                };
                self.collapse_entry(&ctx, start, end);
            }
        }
    }

    /// Maps `s` into the invalid entry `ctx`: a leaf (with the whole contiguous group when
    /// the group lies in the range, is empty and fits), or a new subtree built off-line
    /// from `reservation`. Returns the number of entries written from `ctx` on (16 for a
    /// group, else 1).
    ///
    /// # Errors
    /// [`Error::Internal`] if the reservation is short (a bug in a plan).
    fn map_into_invalid(
        &mut self,
        s: &Segment,
        ctx: &Ctx,
        reservation: &mut Reservation,
    ) -> Result<usize, Error> {
        match classify(core::slice::from_ref(s), ctx.addr, ctx.end()) {
            Cover::Empty => {}
            Cover::Inside(seg) if seg.leaf_fits(ctx.level, ctx.addr) => {
                let (group_start, group_end) = cont_group(ctx.addr, ctx.level);
                let group_inside = cont_allowed(ctx.level)
                    && group_start == ctx.addr
                    && group_start >= s.start
                    && group_end <= s.end
                    && seg.group_fits(ctx.level, ctx.addr);
                if group_inside && self.group_is_empty(ctx) {
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
                        self.store(slot, addr, ctx.level, Descriptor::INVALID, new);
                    }
                    return Ok(CONT_ENTRIES);
                }
                let new =
                    Descriptor::leaf(ctx.level, seg.oa_at(ctx.addr), s.attrs.unwrap_or(0), false);
                self.store(ctx.slot, ctx.addr, ctx.level, ctx.old, new);
            }
            _ => {
                let table = self.build_table(
                    reservation,
                    core::slice::from_ref(s),
                    ctx.level + 1,
                    ctx.addr,
                    false,
                )?;
                self.publish_table(ctx.slot, ctx.addr, ctx.level, ctx.old, table);
            }
        }
        Ok(1)
    }

    /// Whether the contiguous group starting at `ctx` is entirely invalid.
    fn group_is_empty(&self, ctx: &Ctx) -> bool {
        (0..CONT_ENTRIES).all(|j| {
            // SAFETY: the group lies inside this table.
            self.read(unsafe { ctx.slot.add(j) }) == Descriptor::INVALID
        })
    }
}

/// Where [`PageTable::map_fast`] writes: entries `first..=last` of the table at `entries`
/// (at `level`, translating from `base`), all invalid, and the table entries passed
/// through on the way down (root first).
struct FastSpread {
    entries: NonNull<u64>,
    level: u8,
    base: u64,
    first: usize,
    last: usize,
    path: [(NonNull<u64>, u64, u8); 3],
    depth: usize,
}

impl FastSpread {
    fn addr_of(&self, index: usize) -> u64 {
        self.base + index as u64 * level_size(self.level)
    }

    /// The tables the spread needs, from the range alone: the first and last entries may
    /// be partial, every entry between them is wholly inside the segment with the same
    /// alignment and so needs the same number of tables.
    fn tables_needed(&self, s: &Segment) -> u64 {
        let (first, last) = (self.first, self.last);
        let mut tables = tables_for_segment(s, self.level, self.addr_of(first));
        if last > first {
            tables += tables_for_segment(s, self.level, self.addr_of(last));
            if last > first + 1 {
                tables += (last - first - 1) as u64
                    * tables_for_segment(s, self.level, self.addr_of(first + 1));
            }
        }
        tables
    }
}
