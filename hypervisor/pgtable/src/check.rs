//! Checkers for tests, here and in other crates (feature `host`):
//!
//! - [`TraceChecker`]: replays a recorded trace against a small TLB model and reports
//!   every ordering rule the engine (or a hand-made trace) breaks: break-before-make
//!   (RDDMVT), the FEAT_BBM level-2 relaxation (RKFLJB, RPVTFW: a live store may change
//!   the size of an entry, or what it translates, never both), invalidation before an
//!   operation returns (RGPPYH, IHYQMB), fills visible before a table is linked, and
//!   freeing only unlinked, invalidated tables.
//! - [`check_invariants`]: the structure of a tree: leaves aligned and only where the
//!   regime allows them, consistent contiguous groups, no W+X at EL2, no pending entry,
//!   and a tree exactly as small as the minimal cover of what it maps.

extern crate std;

use core::ops::Range;
use std::collections::{HashMap, HashSet};
use std::format;
use std::string::String;
use std::vec::Vec;

use crate::attrs::{self, Access, MEMORY_TYPE_MASK};
use crate::cover::cover_range;
use crate::descriptor::{Descriptor, SW_NO_BLOCK, SW_NO_CONT};
use crate::hw::{Barrier, DescriptorWrite, Hardware, PhysAddr, SplitStrategy, TlbInvalidation};
use crate::regime::{CONT_ENTRIES, ENTRIES, RegimeKind, cont_allowed, level_shift, level_size};
use crate::table::PageTable;

/// A run of translations a TLB could hold: input range, output address of its start,
/// raw attribute bits, and the size of one TLB entry (a leaf, or a contiguous group).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    /// Input addresses.
    pub ia: Range<u64>,
    /// Output address of `ia.start`.
    pub oa: u64,
    /// Leaf attribute bits.
    pub attrs: u64,
    /// Bytes one descriptor covers: a TLBI by address is only sure to remove this much
    /// (a contiguous group may be cached entry by entry, the hint being only a hint).
    pub leaf_size: u64,
    /// Bytes one TLB entry may cover (a contiguous group as one entry): a change of this
    /// size is a change of block size.
    pub entry_size: u64,
}

impl Run {
    fn oa_at(&self, addr: u64) -> u64 {
        self.oa + (addr - self.ia.start)
    }
}

/// A table and the input range it translates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableRef {
    /// Physical address of the table.
    pub table: u64,
    /// Its input range.
    pub ia: Range<u64>,
}

/// What an entry makes reachable: the translations below it and the tables on the way.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Leaves, merged into runs.
    pub runs: Vec<Run>,
    /// Tables, the entry's own first.
    pub tables: Vec<TableRef>,
}

/// One recorded hardware interaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A table page was handed out.
    Alloc {
        /// Its address.
        table: u64,
    },
    /// A table page was given back.
    Free {
        /// Its address.
        table: u64,
    },
    /// A table was filled off-line.
    Filled {
        /// Its address.
        table: u64,
    },
    /// A store into a live table, with what the old and new values make reachable.
    Write {
        /// The store.
        write: DescriptorWrite,
        /// Footprint of the old value.
        old: Footprint,
        /// Footprint of the new value.
        new: Footprint,
    },
    /// A DSB.
    Dsb(Barrier),
    /// An ISB.
    Isb,
    /// A TLBI.
    Tlbi(TlbInvalidation),
}

/// The footprint of descriptor `value` at `level` covering input from `addr`, reading
/// tables through `read(table, index)`.
pub fn footprint(read: &dyn Fn(u64, usize) -> u64, addr: u64, level: u8, value: u64) -> Footprint {
    let mut out = Footprint::default();
    collect(read, addr, level, Descriptor(value), &mut out);
    out
}

fn collect(
    read: &dyn Fn(u64, usize) -> u64,
    addr: u64,
    level: u8,
    entry: Descriptor,
    out: &mut Footprint,
) {
    let size = level_size(level);
    if entry.is_table(level) {
        let table = entry.output_address();
        out.tables.push(TableRef {
            table,
            ia: addr..addr + size,
        });
        for index in 0..ENTRIES {
            let child = Descriptor(read(table, index));
            collect(
                read,
                addr + index as u64 * level_size(level + 1),
                level + 1,
                child,
                out,
            );
        }
        return;
    }
    if !entry.is_leaf(level) {
        return;
    }
    let entry_size = if entry.is_contiguous() {
        size * CONT_ENTRIES as u64
    } else {
        size
    };
    let run = Run {
        ia: addr..addr + size,
        oa: entry.output_address(),
        attrs: entry.attrs(),
        leaf_size: size,
        entry_size,
    };
    if let Some(last) = out.runs.last_mut()
        && last.ia.end == run.ia.start
        && last.oa_at(last.ia.end - 1) + 1 == run.oa
        && last.attrs == run.attrs
        && last.entry_size == run.entry_size
        && last.leaf_size == run.leaf_size
    {
        last.ia.end = run.ia.end;
        return;
    }
    out.runs.push(run);
}

/// A broken rule, with the index of the event that broke it (the trace length for
/// "at the end of the operation").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Index of the offending event.
    pub event: usize,
    /// What went wrong.
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The store that made it stale may not be visible to walkers yet.
    Written,
    /// The store is visible: a TLBI now removes it.
    Visible,
    /// A TLBI was issued; a DSB ISH completes it.
    Invalidating,
}

/// Something a TLB or walk cache may still hold although the tables changed.
#[derive(Clone, Debug)]
struct Stale {
    run: Run,
    /// A walk-cache entry for this table instead of a leaf.
    table: Option<u64>,
    state: State,
}

/// The TLB model. Feed it each operation's events; it keeps the state that spans
/// operations (which tables are linked).
pub struct TraceChecker {
    strategy: SplitStrategy,
    linked: HashSet<u64>,
    stale: Vec<Stale>,
    filled: HashSet<u64>,
    unsynced: bool,
}

fn overlap(a: &Range<u64>, b: &Range<u64>) -> Option<Range<u64>> {
    let r = a.start.max(b.start)..a.end.min(b.end);
    (r.start < r.end).then_some(r)
}

impl TraceChecker {
    /// A checker for a tree changed with `strategy`, whose currently linked tables are
    /// `linked` (see [`linked_tables`]).
    pub fn new(strategy: SplitStrategy, linked: impl IntoIterator<Item = u64>) -> Self {
        TraceChecker {
            strategy,
            linked: linked.into_iter().collect(),
            stale: Vec::new(),
            filled: HashSet::new(),
            unsynced: false,
        }
    }

    /// Checks the events of one complete operation.
    ///
    /// # Errors
    /// The first [`Violation`].
    pub fn check_operation(&mut self, events: &[Event]) -> Result<(), Violation> {
        for (index, event) in events.iter().enumerate() {
            self.step(event).map_err(|message| Violation {
                event: index,
                message,
            })?;
        }
        let end = |message: String| Violation {
            event: events.len(),
            message,
        };
        if self.unsynced {
            return Err(end(
                "operation returned with stores not made visible by a DSB".into(),
            ));
        }
        if let Some(s) = self.stale.first() {
            return Err(end(format!(
                "operation returned while the TLB may still hold {:?} (state {:?}): missing TLBI or DSB ISH",
                s.run, s.state
            )));
        }
        Ok(())
    }

    fn step(&mut self, event: &Event) -> Result<(), String> {
        match event {
            Event::Alloc { .. } => {}
            Event::Filled { table } => {
                self.filled.insert(*table);
            }
            Event::Free { table } => {
                if self.linked.contains(table) {
                    return Err(format!("table {table:#x} freed while still linked"));
                }
                if self.stale.iter().any(|s| s.table == Some(*table)) {
                    return Err(format!(
                        "table {table:#x} freed before its walk-cache entries were invalidated"
                    ));
                }
            }
            Event::Dsb(barrier) => {
                self.unsynced = false;
                self.filled.clear();
                if *barrier == Barrier::FullIsh {
                    self.stale.retain(|s| s.state != State::Invalidating);
                }
                for s in &mut self.stale {
                    if s.state == State::Written {
                        s.state = State::Visible;
                    }
                }
            }
            Event::Isb => {}
            Event::Tlbi(op) => self.tlbi(*op),
            Event::Write { write, old, new } => self.write(write, old, new)?,
        }
        Ok(())
    }

    fn tlbi(&mut self, op: TlbInvalidation) {
        let mut next = Vec::with_capacity(self.stale.len());
        for s in self.stale.drain(..) {
            if s.state != State::Visible {
                // A TLBI does not reliably see a store that is not yet visible.
                next.push(s);
                continue;
            }
            let covered = match op {
                TlbInvalidation::All => Some(s.run.ia.clone()),
                TlbInvalidation::Range { start, size } => {
                    overlap(&s.run.ia, &(start..start + size))
                }
                TlbInvalidation::Leaf { addr, .. } if s.table.is_none() => {
                    let entry = addr & !(s.run.leaf_size - 1);
                    overlap(&s.run.ia, &(entry..entry + s.run.leaf_size))
                }
                // Last-level invalidations leave walk caches alone.
                TlbInvalidation::Leaf { .. } | TlbInvalidation::Stage1OfVmid => None,
            };
            let Some(covered) = covered else {
                next.push(s);
                continue;
            };
            if s.table.is_some() {
                next.push(Stale {
                    state: State::Invalidating,
                    ..s
                });
                continue;
            }
            for piece in [
                s.run.ia.start..covered.start,
                covered.clone(),
                covered.end..s.run.ia.end,
            ] {
                if piece.start < piece.end {
                    let state = if piece == covered {
                        State::Invalidating
                    } else {
                        State::Visible
                    };
                    next.push(Stale {
                        run: Run {
                            oa: s.run.oa_at(piece.start),
                            ia: piece,
                            ..s.run.clone()
                        },
                        table: None,
                        state,
                    });
                }
            }
        }
        self.stale = next;
    }

    fn write(
        &mut self,
        write: &DescriptorWrite,
        old: &Footprint,
        new: &Footprint,
    ) -> Result<(), String> {
        for t in &new.tables {
            if self.filled.contains(&t.table) {
                return Err(format!(
                    "table {:#x} linked at {:#x} before a DSB made its fill visible",
                    t.table, write.addr
                ));
            }
        }
        if self.strategy == SplitStrategy::Bbml2 {
            size_change_alone(old, new)?;
        }
        self.unsynced = true;
        for t in &old.tables {
            self.linked.remove(&t.table);
            self.stale.push(Stale {
                run: Run {
                    ia: t.ia.clone(),
                    oa: 0,
                    attrs: 0,
                    leaf_size: t.ia.end - t.ia.start,
                    entry_size: t.ia.end - t.ia.start,
                },
                table: Some(t.table),
                state: State::Written,
            });
        }
        for run in &old.runs {
            if new.runs.contains(run) {
                continue;
            }
            self.stale.push(Stale {
                run: run.clone(),
                table: None,
                state: State::Written,
            });
        }
        for t in &new.tables {
            self.linked.insert(t.table);
        }
        for run in &new.runs {
            for s in &self.stale {
                let Some(common) = overlap(&s.run.ia, &run.ia) else {
                    continue;
                };
                if s.table.is_some() {
                    if self.strategy == SplitStrategy::BreakBeforeMake {
                        return Err(format!(
                            "leaf at {:#x} level {} written while the walk cache may hold table {:#x}: \
                             table replaced by a block without break-before-make",
                            common.start,
                            write.level,
                            s.table.unwrap_or(0)
                        ));
                    }
                    continue;
                }
                if s.run.oa_at(common.start) != run.oa_at(common.start) {
                    return Err(format!(
                        "{:#x}: output address changes from {:#x} to {:#x} without break-before-make",
                        common.start,
                        s.run.oa_at(common.start),
                        run.oa_at(common.start)
                    ));
                }
                if (s.run.attrs ^ run.attrs) & MEMORY_TYPE_MASK != 0 {
                    return Err(format!(
                        "{:#x}: memory type changes without break-before-make (RWHZWS)",
                        common.start
                    ));
                }
                if s.run.entry_size != run.entry_size
                    && self.strategy == SplitStrategy::BreakBeforeMake
                {
                    return Err(format!(
                        "{:#x}: TLB entry size changes from {:#x} to {:#x} without break-before-make \
                         and without FEAT_BBM level 2",
                        common.start, s.run.entry_size, run.entry_size
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Descriptor bits [58:55], reserved for software: the walk ignores them, so they are no
/// part of what a TLB caches (this engine keeps its mapping flags there).
const SOFTWARE_BITS: u64 = 0xf << 55;

/// FEAT_BBM level 2 (RKFLJB, RPVTFW) lets one store replace a valid entry by a valid entry
/// of another size (block by table, table by block, contiguous hint set or cleared) only
/// when that is the whole change: every address the old value translated translates,
/// through the new value, to the same output address with the same attributes. Anything
/// more is a multi-hit of entries that differ (RNGLXZ, RJQQTC: a TLB conflict abort, or
/// either value), possible until the old entry is invalidated (IHYQMB). A store of an
/// invalid value is a removal and needs no break; a valid value that leaves a hole where
/// the old one translated is a removal on top of a size change, refused like any other
/// combined change.
fn size_change_alone(old: &Footprint, new: &Footprint) -> Result<(), String> {
    if new.runs.is_empty() && new.tables.is_empty() {
        return Ok(());
    }
    let refuse = |at: u64, change: String| {
        Err(format!(
            "{at:#x}: one store changes {change}: FEAT_BBM level 2 relaxes a change of \
             block size alone (RKFLJB, RPVTFW); split or collapse with identical attributes \
             first, then change the leaves"
        ))
    };
    for before in &old.runs {
        // Runs are in address order: `covered` is how far the new value translates
        // `before` so far.
        let mut covered = before.ia.start;
        for after in &new.runs {
            let Some(common) = overlap(&before.ia, &after.ia) else {
                continue;
            };
            if common.start > covered {
                break;
            }
            covered = common.end;
            if before.entry_size == after.entry_size {
                continue;
            }
            let at = common.start;
            let sizes = format!(
                "the TLB entry size ({:#x} -> {:#x})",
                before.entry_size, after.entry_size
            );
            let (oa_before, oa_after) = (before.oa_at(at), after.oa_at(at));
            if oa_before != oa_after {
                return refuse(
                    at,
                    format!("{sizes} and the output address ({oa_before:#x} -> {oa_after:#x})"),
                );
            }
            let attrs_before = before.attrs & !SOFTWARE_BITS;
            let attrs_after = after.attrs & !SOFTWARE_BITS;
            if attrs_before != attrs_after {
                return refuse(
                    at,
                    format!("{sizes} and the attributes ({attrs_before:#x} -> {attrs_after:#x})"),
                );
            }
        }
        if covered < before.ia.end {
            // Only a table can leave part of what the old value translated unmapped.
            return refuse(
                covered,
                format!(
                    "the TLB entry size (from {:#x}) and leaves the address unmapped",
                    before.entry_size
                ),
            );
        }
    }
    Ok(())
}

/// The tables currently linked below the root of `pt` (to start a [`TraceChecker`]).
pub fn linked_tables<H: Hardware>(pt: &PageTable<H>) -> Vec<u64> {
    let mut out = Vec::new();
    let regime = pt.regime();
    let read = |table: u64, index: usize| pt.read(pt.slot(PhysAddr(table), index)).0;
    for index in 0..regime.root_entries() {
        let entry = read(pt.root().0, index);
        let addr = index as u64 * level_size(regime.start_level());
        let fp = footprint(&read, addr, regime.start_level(), entry);
        out.extend(fp.tables.into_iter().map(|t| t.table));
    }
    out
}

/// Shape statistics of a tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// Leaf descriptors.
    pub leaves: u64,
    /// Tables below the root.
    pub tables: u64,
    /// Leaves with the contiguous hint.
    pub contiguous: u64,
}

impl Shape {
    /// Descriptors: leaves plus the table descriptors that link the tables.
    pub fn descriptors(&self) -> u64 {
        self.leaves + self.tables
    }
}

/// The shape of the minimal cover of the mapping `runs` (input start, input end, output
/// start, leaf attribute bits; sorted, disjoint, each with one attribute value) in a tree
/// whose root is at `start_level`, and its leaves (address, level, hint): the rule of
/// [`crate::MinimalCover`] (one implementation, `cover::cover_range`), here with the
/// mapping flags the software bits record (`NO_BLOCK_MAPPINGS`: pages only;
/// `NO_CONT_MAPPINGS`: no hint), as the engine must honour them.
pub fn minimal_cover(
    start_level: u8,
    runs: &[(u64, u64, u64, u64)],
) -> (Shape, HashSet<(u64, u8, bool)>) {
    let mut shape = Shape::default();
    let mut leaves = HashSet::new();
    let mut tables = HashSet::new();
    for &(start, end, oa, bits) in runs {
        let blocks = bits & SW_NO_BLOCK == 0;
        let cont = bits & SW_NO_CONT == 0;
        cover_range(
            start_level,
            start,
            end,
            oa,
            blocks,
            cont,
            |addr, level, hinted| {
                // The greedy chose `level` at `addr`, so the parent leaf did not fit: every
                // entry of the group is a leaf of this level too.
                leaves.insert((addr, level, hinted));
                shape.leaves += 1;
                if hinted {
                    shape.contiguous += 1;
                }
                for table_level in start_level + 1..=level {
                    tables.insert((table_level, addr >> level_shift(table_level - 1)));
                }
            },
        );
    }
    shape.tables = tables.len() as u64;
    (shape, leaves)
}

/// The minimal cover of one mapping of `[start, end)` to `pa` with `flags` (see
/// [`minimal_cover`]), e.g. to compare an engine's descriptor writes with.
pub fn minimal_cover_of_map(
    start_level: u8,
    start: u64,
    end: u64,
    pa: u64,
    flags: crate::MapFlags,
) -> Shape {
    let mut bits = 0;
    if flags.contains(crate::MapFlags::NO_BLOCK_MAPPINGS) {
        bits |= SW_NO_BLOCK;
    }
    if flags.contains(crate::MapFlags::NO_CONT_MAPPINGS) {
        bits |= SW_NO_CONT;
    }
    minimal_cover(start_level, &[(start, end, pa, bits)]).0
}

/// Checks the structure of `pt` (see the module documentation).
///
/// # Errors
/// A description of the first problem found.
pub fn check_invariants<H: Hardware>(pt: &PageTable<H>) -> Result<Shape, String> {
    let regime = pt.regime();
    let mut shape = Shape::default();
    let mut actual = HashSet::new();
    let mut runs: Vec<(u64, u64, u64, u64)> = Vec::new();
    let mut groups: HashMap<(u8, u64), Vec<(u64, Descriptor)>> = HashMap::new();
    check_table(
        pt,
        pt.root().0,
        regime.start_level(),
        0,
        regime.root_entries(),
        &mut shape,
    )?;
    for (addr, level, entry) in pt.leaves(0..regime.ia_limit()) {
        let size = level_size(level);
        if entry.output_address() % size != 0 {
            return Err(format!(
                "leaf at {addr:#x} level {level}: output address not aligned"
            ));
        }
        if level < 1 {
            return Err(format!("leaf at level 0 ({addr:#x})"));
        }
        if level < 3 && entry.attrs() & SW_NO_BLOCK != 0 {
            return Err(format!(
                "block at {addr:#x} although mapped with NO_BLOCK_MAPPINGS"
            ));
        }
        if regime.kind() == RegimeKind::El2 {
            let a = attrs::decode(regime.kind(), entry.attrs()).access;
            if a.contains(Access::WRITE) && a.contains(Access::EXECUTE) {
                return Err(format!("W+X mapping at {addr:#x}"));
            }
        }
        if entry.is_contiguous() {
            if !cont_allowed(level) || entry.attrs() & SW_NO_CONT != 0 {
                return Err(format!(
                    "contiguous hint at {addr:#x} level {level} not allowed"
                ));
            }
            let group = size * CONT_ENTRIES as u64;
            groups
                .entry((level, addr & !(group - 1)))
                .or_default()
                .push((addr, entry));
        }
        shape.leaves += 1;
        shape.contiguous += entry.is_contiguous() as u64;
        actual.insert((addr, level, entry.is_contiguous()));
        match runs.last_mut() {
            Some(last)
                if last.1 == addr
                    && last.2 + (last.1 - last.0) == entry.output_address()
                    && last.3 == entry.attrs() =>
            {
                last.1 = addr + size;
            }
            _ => runs.push((addr, addr + size, entry.output_address(), entry.attrs())),
        }
    }
    for ((level, group_start), members) in &groups {
        let size = level_size(*level);
        if members.len() != CONT_ENTRIES {
            return Err(format!(
                "contiguous group at {group_start:#x} level {level} has {} entries with the hint",
                members.len()
            ));
        }
        let (_, head) = members[0];
        if head.output_address() % (size * CONT_ENTRIES as u64) != 0 {
            return Err(format!(
                "contiguous group at {group_start:#x}: output not aligned"
            ));
        }
        for (j, (_, e)) in members.iter().enumerate() {
            if e.attrs() != head.attrs()
                || e.output_address() != head.output_address() + j as u64 * size
            {
                return Err(format!(
                    "contiguous group at {group_start:#x}: entries differ"
                ));
            }
        }
    }
    let (minimal, expected) = minimal_cover(regime.start_level(), &runs);
    if minimal != shape || expected != actual {
        let mut extra: Vec<_> = actual.difference(&expected).collect();
        let mut missing: Vec<_> = expected.difference(&actual).collect();
        extra.sort();
        missing.sort();
        extra.truncate(4);
        missing.truncate(4);
        return Err(format!(
            "tree is not the minimal cover: have {shape:?}, minimal {minimal:?}; \
             leaves not in the cover {extra:x?}, cover leaves missing {missing:x?}"
        ));
    }
    Ok(shape)
}

fn check_table<H: Hardware>(
    pt: &PageTable<H>,
    table: u64,
    level: u8,
    base: u64,
    entries: usize,
    shape: &mut Shape,
) -> Result<(), String> {
    for index in 0..entries {
        let entry = pt.read(pt.slot(PhysAddr(table), index));
        let addr = base + index as u64 * level_size(level);
        if entry.is_pending() {
            return Err(format!(
                "pending entry {:#x} at {addr:#x} survived an operation",
                entry.0
            ));
        }
        if entry.is_table(level) {
            shape.tables += 1;
            check_table(pt, entry.output_address(), level + 1, addr, ENTRIES, shape)?;
        }
    }
    Ok(())
}
