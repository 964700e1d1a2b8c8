//! Ordering of live changes: batched barriers, batched TLB invalidation, the two halves of
//! break-before-make, deferred publication of new tables and deferred freeing of old ones.
//!
//! An operation changes entries through [`PageTable::change_entry`] and friends, which
//! only record what the TLBs owe; [`PageTable::finish`] then settles the debt once, in the
//! order the Arm ARM asks for:
//!
//! 1. queued new tables: `DSB ISHST` (their fills are visible to walkers), then the table
//!    entries are written (an edit does this itself between its split and its in-place
//!    changes, module `split`);
//! 2. `DSB ISHST`: every store, invalid entries of breaks included, is visible before the
//!    TLBIs (RDDMVT steps 1-2);
//! 3. the TLBIs, then `DSB ISH` (RDDMVT steps 3-4; RGPPYH for permission changes; IHYQMB
//!    for FEAT_BBM level-2 size changes); at stage 2, `TLBI VMALLE1IS` and another
//!    `DSB ISH` for the combined entries. Leaf TLBIs by address are shared where one
//!    address lies in several owed entries (a split block and its page changed
//!    afterwards): a last-level TLBI removes every leaf entry translating its address;
//! 4. the pending halves of breaks are made valid, then `DSB ISHST` (RDDMVT steps 5-6);
//! 5. tables unlinked during the operation are freed: they are unreachable and their
//!    ranges were invalidated, walk caches included;
//! 6. `ISB`, so the local CPU uses the new translations from here on.
//!
//! When the tree is not live none of this happens: stores are plain, nothing is
//! invalidated and unlinked tables are freed at once (seed 002: building a table that no
//! walker sees needs no TLB maintenance).

use core::ops::Range;
use core::ptr::NonNull;

use crate::descriptor::Descriptor;
use crate::hw::{Barrier, Hardware, PhysAddr, SplitStrategy, TlbInvalidation};
use crate::regime::{RegimeKind, level_size};
use crate::table::PageTable;
use crate::walk::{Ctx, Step, Visit, Visitor, flags};

/// Leaf invalidations kept individually; beyond this one range (or whole-regime)
/// invalidation is cheaper than a stream of broadcast TLBIs.
const TLBI_BATCH: usize = 32;
/// Tables waiting to be freed before a mid-operation flush is forced.
const FREE_BATCH: usize = 32;
/// New tables waiting for one barrier before they are linked.
const PUBLISH_BATCH: usize = 16;
/// Separate ranges that hold pending entries.
const PENDING_RANGES: usize = 8;

/// One owed invalidation: a table entry (walk caches included), or a TLBI by address for
/// leaves.
#[derive(Clone, Copy)]
struct Invalidation {
    addr: u64,
    /// The level of the entries the TLBI stands for; `None` once they are of several
    /// levels (then the TLBI carries no level hint).
    level: Option<u8>,
    table: bool,
    /// The TLBI stands for entries of different ranges, all of which translate `addr`:
    /// the address may not move any more.
    pinned: bool,
}

#[derive(Clone, Copy)]
struct Publication {
    slot: NonNull<u64>,
    addr: u64,
    level: u8,
    old: Descriptor,
    new: Descriptor,
}

/// What the current operation still owes the hardware.
pub(crate) struct Maintenance {
    /// Live stores since the last DSB.
    pub(crate) unsynced_stores: bool,
    /// Anything changed in a live tree during this operation (an ISB is due).
    pub(crate) changed: bool,
    invalidations: [Invalidation; TLBI_BATCH],
    invalidation_count: usize,
    /// More invalidations than fit: invalidate the whole hull instead.
    invalidation_overflow: bool,
    /// A table entry was replaced: its walk caches must go too.
    invalidation_hull: Option<(u64, u64)>,
    publications: [Option<Publication>; PUBLISH_BATCH],
    publication_count: usize,
    frees: [(PhysAddr, u8); FREE_BATCH],
    free_count: usize,
    pending: [(u64, u64); PENDING_RANGES],
    pending_count: usize,
    transient: Option<(u64, u64)>,
}

fn hull(a: Option<(u64, u64)>, start: u64, end: u64) -> Option<(u64, u64)> {
    Some(match a {
        None => (start, end),
        Some((s, e)) => (s.min(start), e.max(end)),
    })
}

impl Maintenance {
    pub(crate) const fn new() -> Self {
        Maintenance {
            unsynced_stores: false,
            changed: false,
            invalidations: [Invalidation {
                addr: 0,
                level: None,
                table: false,
                pinned: false,
            }; TLBI_BATCH],
            invalidation_count: 0,
            invalidation_overflow: false,
            invalidation_hull: None,
            publications: [None; PUBLISH_BATCH],
            publication_count: 0,
            frees: [(PhysAddr(0), 0); FREE_BATCH],
            free_count: 0,
            pending: [(0, 0); PENDING_RANGES],
            pending_count: 0,
            transient: None,
        }
    }

    /// Lets an owed leaf TLBI stand for the leaf at `addr`/`level` too, if one can: a
    /// last-level TLBI by address removes every leaf entry that translates that address,
    /// whatever its size (without a level hint). This is how the old block of a split
    /// (FEAT_BBM level 2, RKFLJB) and the page of it changed in place afterwards
    /// (RGPPYH) need one TLBI, at the page, as the single-store split did. Returns
    /// whether the leaf is covered.
    fn share_leaf_invalidation(&mut self, addr: u64, level: u8) -> bool {
        let end = addr + level_size(level);
        for owed in &mut self.invalidations[..self.invalidation_count] {
            if owed.table {
                continue;
            }
            if addr <= owed.addr && owed.addr < end {
                // The new leaf translates the owed address: the same TLBI removes it.
                if owed.level != Some(level) {
                    owed.level = None;
                    owed.pinned = true;
                }
                return true;
            }
            let Some(owed_level) = owed.level else {
                continue;
            };
            let owed_start = owed.addr & !(level_size(owed_level) - 1);
            if !owed.pinned && owed_start <= addr && addr < owed_start + level_size(owed_level) {
                // The owed entry translates `addr` too: one TLBI there removes both.
                owed.addr = addr;
                owed.level = None;
                owed.pinned = true;
                return true;
            }
        }
        false
    }

    fn add_pending(&mut self, start: u64, end: u64) {
        for range in &mut self.pending[..self.pending_count] {
            if start <= range.1 && range.0 <= end {
                *range = (range.0.min(start), range.1.max(end));
                return;
            }
        }
        if self.pending_count == PENDING_RANGES {
            // Out of slots: fold everything into one range (the make walk just visits
            // more entries).
            let mut all = (start, end);
            for range in &self.pending[..self.pending_count] {
                all = (all.0.min(range.0), all.1.max(range.1));
            }
            self.pending[0] = all;
            self.pending_count = 1;
        } else {
            self.pending[self.pending_count] = (start, end);
            self.pending_count += 1;
        }
    }
}

/// Turns pending entries into the valid entries they carry (the "make" of RDDMVT).
struct MakeVisitor;

impl<H: Hardware> Visitor<H> for MakeVisitor {
    const FLAGS: u8 = flags::LEAF;

    fn visit(&mut self, pt: &mut PageTable<H>, ctx: &Ctx, _: Visit) -> Result<Step, crate::Error> {
        if ctx.old.is_pending() {
            pt.store(
                ctx.slot,
                ctx.addr,
                ctx.level,
                ctx.old,
                ctx.old.pending_value(),
            );
        }
        // A made table was built off-line and holds no pending entry.
        Ok(Step::Skip)
    }
}

impl<H: Hardware> PageTable<H> {
    /// Records that the TLBs may hold the entry at `addr`/`level` whose old value was
    /// `old`.
    fn owe_invalidation(&mut self, addr: u64, level: u8, old: Descriptor) {
        if !self.is_live() || !old.is_valid() {
            // Invalid entries are never cached (translation faults are not held in TLBs).
            return;
        }
        let table = old.is_table(level);
        let m = &mut self.maintenance;
        m.invalidation_hull = hull(m.invalidation_hull, addr, addr + level_size(level));
        if !table && m.share_leaf_invalidation(addr, level) {
            return;
        }
        if m.invalidation_count < TLBI_BATCH {
            m.invalidations[m.invalidation_count] = Invalidation {
                addr,
                level: Some(level),
                table,
                pinned: false,
            };
            m.invalidation_count += 1;
        } else {
            m.invalidation_overflow = true;
        }
    }

    /// Replaces an entry of the tree by `new`, choosing how:
    /// - `needs_break`: break-before-make (RDDMVT) — the entry becomes invalid now and is
    ///   made valid in [`finish`](Self::finish) after the invalidation completed;
    /// - a new table over a live leaf: queued, linked after one barrier covering the
    ///   fills of all queued tables (FEAT_BBM level 2 size change, RKFLJB);
    /// - anything else directly (permission changes, RGPPYH; removals; contiguous-hint
    ///   changes under FEAT_BBM, RKHRBC), with the invalidation owed.
    pub(crate) fn change_entry(
        &mut self,
        slot: NonNull<u64>,
        addr: u64,
        level: u8,
        old: Descriptor,
        new: Descriptor,
        needs_break: bool,
    ) {
        if old == new {
            return;
        }
        if !self.is_live() {
            self.store(slot, addr, level, old, new);
            return;
        }
        if old.is_pending() {
            // Already broken by this operation: only the payload changes.
            self.store(slot, addr, level, old, new.as_pending());
            return;
        }
        let end = addr + level_size(level);
        if needs_break && old.is_valid() && new.is_valid() {
            self.store(slot, addr, level, old, new.as_pending());
            self.owe_invalidation(addr, level, old);
            self.counters.transient_unmaps += 1;
            let m = &mut self.maintenance;
            m.add_pending(addr, end);
            m.transient = hull(m.transient, addr, end);
            return;
        }
        if new.is_table(level) && old.is_valid() {
            self.queue_publication(Publication {
                slot,
                addr,
                level,
                old,
                new,
            });
            return;
        }
        self.store(slot, addr, level, old, new);
        self.owe_invalidation(addr, level, old);
    }

    /// Links a new table into an entry: queued while live, so many fills share one
    /// barrier (seed 001), direct otherwise.
    pub(crate) fn publish_table(
        &mut self,
        slot: NonNull<u64>,
        addr: u64,
        level: u8,
        old: Descriptor,
        table: PhysAddr,
    ) {
        let new = Descriptor::table(table.0);
        if self.is_live() {
            self.queue_publication(Publication {
                slot,
                addr,
                level,
                old,
                new,
            });
        } else {
            self.store(slot, addr, level, old, new);
        }
    }

    fn queue_publication(&mut self, publication: Publication) {
        if self.maintenance.publication_count == PUBLISH_BATCH {
            self.flush_publications();
        }
        let m = &mut self.maintenance;
        m.publications[m.publication_count] = Some(publication);
        m.publication_count += 1;
    }

    /// One `DSB ISHST` makes every queued table's zeroing and fill visible to walkers,
    /// then the table entries are written.
    pub(crate) fn flush_publications(&mut self) {
        if self.maintenance.publication_count == 0 {
            return;
        }
        self.dsb(Barrier::StoresIsh);
        for index in 0..self.maintenance.publication_count {
            if let Some(p) = self.maintenance.publications[index].take() {
                self.store(p.slot, p.addr, p.level, p.old, p.new);
                self.owe_invalidation(p.addr, p.level, p.old);
            }
        }
        self.maintenance.publication_count = 0;
    }

    /// Frees the subtree at `table` (entries at `level`) once it is safe: at once when
    /// the tree is not live, else after its unlinking store is visible and its range
    /// invalidated, walk caches included.
    pub(crate) fn defer_free(&mut self, table: PhysAddr, level: u8) {
        if !self.is_live() {
            self.free_subtree(table, level);
            return;
        }
        if self.maintenance.free_count == FREE_BATCH {
            self.invalidate_now();
            self.free_deferred();
        }
        let m = &mut self.maintenance;
        m.frees[m.free_count] = (table, level);
        m.free_count += 1;
    }

    fn free_deferred(&mut self) {
        for index in 0..self.maintenance.free_count {
            let (table, level) = self.maintenance.frees[index];
            self.free_subtree(table, level);
        }
        self.maintenance.free_count = 0;
    }

    fn tlbi(&mut self, op: TlbInvalidation) {
        match op {
            TlbInvalidation::Leaf { .. } => self.counters.tlbi_by_va += 1,
            TlbInvalidation::Range { .. } => self.counters.tlbi_range += 1,
            TlbInvalidation::All | TlbInvalidation::Stage1OfVmid => self.counters.tlbi_all += 1,
        }
        self.hw.tlbi(op);
    }

    /// Steps 1 to 3 of [`finish`](Self::finish): every store visible, every owed
    /// invalidation issued and complete.
    fn invalidate_now(&mut self) {
        self.flush_publications();
        if self.maintenance.unsynced_stores {
            // RDDMVT step 2: the stores (invalid entries included) are observed before
            // the TLBIs that follow.
            self.dsb(Barrier::StoresIsh);
            self.maintenance.unsynced_stores = false;
        }
        let m = &self.maintenance;
        let Some((start, end)) = m.invalidation_hull else {
            return;
        };
        let count = m.invalidation_count;
        let has_table = m.invalidations[..count].iter().any(|i| i.table);
        let ranged = self.capabilities().tlbi_range;
        let mut all = false;
        if m.invalidation_overflow || has_table {
            // Table entries (walk caches and every leaf below them) or too many leaves:
            // one range invalidation, or the whole regime without FEAT_TLBIRANGE (as KVM's
            // kvm_tlb_flush_vmid_range does).
            if ranged {
                self.tlbi(TlbInvalidation::Range {
                    start,
                    size: end - start,
                });
            } else {
                self.tlbi(TlbInvalidation::All);
                all = true;
            }
        } else {
            for index in 0..count {
                let Invalidation { addr, level, .. } = self.maintenance.invalidations[index];
                self.tlbi(TlbInvalidation::Leaf { addr, level });
            }
        }
        // RDDMVT step 4: the invalidation has completed on every CPU.
        self.dsb(Barrier::FullIsh);
        if self.regime().kind() == RegimeKind::Stage2 && !all {
            // IPA-based invalidation leaves combined stage 1+2 entries in place.
            self.tlbi(TlbInvalidation::Stage1OfVmid);
            self.dsb(Barrier::FullIsh);
        }
        let m = &mut self.maintenance;
        m.invalidation_hull = None;
        m.invalidation_count = 0;
        m.invalidation_overflow = false;
    }

    /// Settles everything the operation owes (see the module documentation) and returns
    /// the range that was transiently unmapped.
    pub(crate) fn finish(&mut self) -> Option<Range<u64>> {
        if !self.is_live() {
            return None;
        }
        self.invalidate_now();
        if self.maintenance.pending_count > 0 {
            let count = self.maintenance.pending_count;
            self.maintenance.pending_count = 0;
            for index in 0..count {
                let (start, end) = self.maintenance.pending[index];
                // The make visitor never fails.
                let _ = self.walk(start, end, &mut MakeVisitor);
            }
            // RDDMVT step 6.
            self.dsb(Barrier::StoresIsh);
            self.maintenance.unsynced_stores = false;
        }
        self.free_deferred();
        if self.maintenance.unsynced_stores {
            // New entries over invalid ones: no invalidation, but make them visible.
            self.dsb(Barrier::StoresIsh);
            self.maintenance.unsynced_stores = false;
        }
        if core::mem::take(&mut self.maintenance.changed) {
            self.isb();
        }
        self.maintenance.transient.take().map(|(s, e)| s..e)
    }

    /// Whether a change of block size on a live entry must go through
    /// break-before-make.
    pub(crate) fn size_change_needs_break(&self) -> bool {
        self.is_live() && self.capabilities().split == SplitStrategy::BreakBeforeMake
    }

    /// Whether the store that changes an entry's size may change what it translates in
    /// the same go: when no walker sees the tree, or when the store breaks anyway (the
    /// new value goes over an invalid entry, RDDMVT). FEAT_BBM level 2 relaxes a change
    /// of size alone (RKFLJB, RPVTFW): the attributes change afterwards, in place.
    pub(crate) fn size_change_may_carry_edit(&self) -> bool {
        !self.is_live() || self.capabilities().split == SplitStrategy::BreakBeforeMake
    }
}
