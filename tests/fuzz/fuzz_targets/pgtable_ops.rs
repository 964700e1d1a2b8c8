//! The translation-table engine (`pgtable`, public API and the `host` feature only):
//! sequences of map / change_attrs / unmap / collapse on one tree, in the EL2 regime and
//! several stage-2 sizes, with both split strategies, live or not (or going live midway),
//! with table allocations made to fail at a chosen point.
//!
//! After every operation:
//! - the result is the one a simple model predicts (a sorted list of runs
//!   input address -> (output address, attributes, flags)); an injected allocation
//!   failure may turn a success into `OutOfTables`, nothing else;
//! - a failed operation left every table entry and the pool exactly as they were;
//! - `mappings()` and `query()` read back the model;
//! - `check::check_invariants` holds (structure, W^X at EL2, contiguous groups, minimal
//!   cover), and on a live tree `check::TraceChecker` accepts the recorded stores,
//!   barriers and TLBIs (break-before-make or FEAT_BBM level 2 rules).

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pgtable::check::{Event, TraceChecker, check_invariants, linked_tables};
use pgtable::host::HostHardware;
use pgtable::{
    Access, Attributes, Capabilities, Error, MapFlags, MemoryType, PageTable, PhysAddr, Regime,
    RegimeKind, SplitStrategy,
};

const K4: u64 = 4 << 10;
const K64: u64 = 64 << 10;
const M2: u64 = 2 << 20;
const M32: u64 = 32 << 20;
const G1: u64 = 1 << 30;
/// Addresses stay in the first 4 GiB (plus a little, to cross a 32-bit IPA limit).
const WINDOW: u64 = 4 * G1;
/// Table pages in the pool (a fresh pool per input costs time, so not too many): about
/// what the largest scenarios below use. An operation may run out of tables only when
/// fewer than [`POOL_SLACK`] are left.
const POOL_PAGES: usize = 768;
const POOL_SLACK: usize = 64;
const OA_LIMIT: u64 = 1 << 48;

// ---- the model -----------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    start: u64,
    end: u64,
    pa: u64,
    attrs: Attributes,
    flags: MapFlags,
}

/// Sorted, disjoint, merged runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Model(Vec<Run>);

impl Model {
    fn overlapping(&self, s: u64, e: u64) -> impl Iterator<Item = &Run> {
        self.0.iter().filter(move |r| r.start < e && s < r.end)
    }

    fn lookup(&self, addr: u64) -> Option<(u64, Attributes, MapFlags)> {
        self.0
            .iter()
            .find(|r| r.start <= addr && addr < r.end)
            .map(|r| (r.pa + (addr - r.start), r.attrs, r.flags))
    }

    fn conflict(&self, new: &Run) -> Option<u64> {
        self.overlapping(new.start, new.end)
            .find(|r| {
                r.pa.wrapping_sub(r.start) != new.pa.wrapping_sub(new.start)
                    || r.attrs != new.attrs
                    || r.flags != new.flags
            })
            .map(|r| r.start.max(new.start))
    }

    fn first_hole(&self, s: u64, e: u64) -> Option<u64> {
        let mut at = s;
        for r in self.overlapping(s, e) {
            if r.start > at {
                return Some(at);
            }
            at = r.end;
        }
        (at < e).then_some(at)
    }

    fn remove(&mut self, s: u64, e: u64) {
        let mut out = Vec::new();
        for &r in &self.0 {
            if r.end <= s || r.start >= e {
                out.push(r);
                continue;
            }
            if r.start < s {
                out.push(Run { end: s, ..r });
            }
            if r.end > e {
                out.push(Run {
                    start: e,
                    pa: r.pa + (e - r.start),
                    ..r
                });
            }
        }
        self.0 = out;
    }

    fn insert(&mut self, run: Run) {
        self.remove(run.start, run.end);
        self.0.push(run);
        self.normalize();
    }

    fn change(&mut self, s: u64, e: u64, attrs: Attributes) {
        let changed: Vec<Run> = self
            .overlapping(s, e)
            .map(|r| {
                let (cs, ce) = (r.start.max(s), r.end.min(e));
                Run {
                    start: cs,
                    end: ce,
                    pa: r.pa + (cs - r.start),
                    attrs,
                    flags: r.flags,
                }
            })
            .collect();
        self.remove(s, e);
        self.0.extend(changed);
        self.normalize();
    }

    fn normalize(&mut self) {
        self.0.sort_by_key(|r| r.start);
        let mut out: Vec<Run> = Vec::new();
        for &r in &self.0 {
            match out.last_mut() {
                Some(l)
                    if l.end == r.start
                        && l.pa + (l.end - l.start) == r.pa
                        && l.attrs == r.attrs
                        && l.flags == r.flags =>
                {
                    l.end = r.end;
                }
                _ => out.push(r),
            }
        }
        self.0 = out;
    }
}

/// The engine's checks of an input range, in its order.
fn check_range(regime: &Regime, s: u64, e: u64) -> Result<(), Error> {
    if !s.is_multiple_of(K4) {
        return Err(Error::Misaligned { value: s });
    }
    if !e.is_multiple_of(K4) {
        return Err(Error::Misaligned { value: e });
    }
    if s >= e {
        return Err(Error::EmptyRange);
    }
    if e > regime.ia_limit() {
        return Err(Error::OutOfRange {
            addr: s.max(regime.ia_limit()),
        });
    }
    Ok(())
}

/// Which attributes a regime can express (Arm ARM; W^X at EL2 is this project's rule).
fn check_attrs(kind: RegimeKind, a: Attributes) -> Result<(), Error> {
    let x = a.access.contains(Access::EXECUTE);
    if x && a.memory == MemoryType::Device {
        return Err(Error::ExecutableDevice);
    }
    if kind == RegimeKind::El2 {
        if x && a.access.contains(Access::WRITE) {
            return Err(Error::WriteAndExecute);
        }
        if !a.access.contains(Access::READ) {
            return Err(Error::AccessNotExpressible);
        }
    }
    Ok(())
}

// ---- fuzz input ----------------------------------------------------------------------

/// An address near a block boundary, sometimes misaligned.
#[derive(Arbitrary, Clone, Copy, Debug)]
struct Addr {
    anchor: u8,
    unit: u8,
    steps: i8,
    misalign: bool,
}

impl Addr {
    fn get(self) -> u64 {
        const ANCHORS: [u64; 9] = [
            0,
            G1 - M2,
            G1,
            2 * G1 - K64,
            2 * G1 + M2,
            3 * G1,
            3 * G1 + M32,
            4 * G1 - M2,
            G1 + 512 * K4,
        ];
        const UNITS: [u64; 4] = [K4, K64, M2, M32];
        let anchor = ANCHORS[usize::from(self.anchor) % ANCHORS.len()];
        let unit = UNITS[usize::from(self.unit) % UNITS.len()];
        let steps = i64::from(self.steps % 9);
        let addr = (anchor as i64 + steps * unit as i64).clamp(0, (WINDOW - K4) as i64) as u64;
        if self.misalign { addr + 0x800 } else { addr }
    }
}

#[derive(Arbitrary, Clone, Copy, Debug)]
enum Len {
    Pages(u8),
    Groups(u8),
    Blocks(u8),
    Gigs(u8),
    BlockAndPage,
    GigBlockAndPage,
    Empty,
    Odd,
}

impl Len {
    fn get(self) -> u64 {
        match self {
            Len::Pages(n) => u64::from(n % 32 + 1) * K4,
            Len::Groups(n) => u64::from(n % 4 + 1) * K64,
            Len::Blocks(n) => u64::from(n % 24 + 1) * M2,
            Len::Gigs(n) => u64::from(n % 3 + 1) * G1,
            Len::BlockAndPage => M2 + K4,
            Len::GigBlockAndPage => G1 + M2 + K4,
            Len::Empty => 0,
            Len::Odd => 0x1800,
        }
    }
}

#[derive(Arbitrary, Clone, Copy, Debug)]
enum Attr {
    Rw,
    Ro,
    Rx,
    Device,
    NonCacheableRo,
    Any { access: u8, memory: u8 },
}

impl Attr {
    fn get(self) -> Attributes {
        match self {
            Attr::Rw => Attributes::RW,
            Attr::Ro => Attributes::RO,
            Attr::Rx => Attributes::RX,
            Attr::Device => Attributes::DEVICE,
            Attr::NonCacheableRo => Attributes::new(Access::READ, MemoryType::NormalNonCacheable),
            Attr::Any { access, memory } => Attributes::new(
                Access::from_bits_truncate(access & 7),
                match memory % 3 {
                    0 => MemoryType::NormalWriteBack,
                    1 => MemoryType::Device,
                    _ => MemoryType::NormalNonCacheable,
                },
            ),
        }
    }
}

#[derive(Arbitrary, Clone, Copy, Debug)]
enum Shift {
    Identity,
    Page,
    Group,
    Block,
    Gig,
    High,
    Misaligned,
}

#[derive(Arbitrary, Clone, Copy, Debug)]
enum Op {
    Map {
        at: Addr,
        len: Len,
        shift: Shift,
        attrs: Attr,
        flags: u8,
        fail_after: Option<u8>,
    },
    Unmap {
        at: Addr,
        len: Len,
        fail_after: Option<u8>,
    },
    Change {
        at: Addr,
        len: Len,
        attrs: Attr,
        fail_after: Option<u8>,
    },
    /// A whole aligned 2 MiB or 1 GiB block back to RW: undoes edits, so tables collapse.
    Restore {
        at: Addr,
        gig: bool,
        fail_after: Option<u8>,
    },
    Collapse {
        at: Addr,
        len: Len,
    },
    GoLive,
}

#[derive(Arbitrary, Debug)]
struct Scenario {
    regime: u8,
    bbml2: bool,
    tlbi_range: bool,
    live: bool,
    /// The first operation: a large block mapping, so later edits land on mapped memory.
    base_start: u8,
    base_len: u8,
    base_shift: u8,
    ops: Vec<Op>,
}

// ---- the run -------------------------------------------------------------------------

/// Every entry of the root and every linked table.
fn snapshot(pt: &PageTable<HostHardware>) -> Vec<(u64, Vec<u64>)> {
    let regime = pt.regime();
    let shift = 12 + 9 * (3 - u32::from(regime.start_level()));
    let root_entries = (regime.ia_limit() >> shift) as usize;
    let read = |table: u64, n: usize| -> (u64, Vec<u64>) {
        (
            table,
            (0..n).map(|i| pt.hardware().read_entry(table, i)).collect(),
        )
    };
    let mut out = vec![read(pt.root().0, root_entries)];
    let mut tables = linked_tables(pt);
    tables.sort_unstable();
    out.extend(tables.into_iter().map(|t| read(t, 512)));
    out
}

struct Tree {
    pt: PageTable<HostHardware>,
    checker: Option<TraceChecker>,
    model: Model,
    split: SplitStrategy,
}

impl Tree {
    fn go_live(&mut self) {
        if self.checker.is_none() {
            self.pt.mark_live();
            self.pt.hardware_mut().record();
            self.checker = Some(TraceChecker::new(self.split, linked_tables(&self.pt)));
        }
    }

    /// Runs one operation and checks it against `expected` (the model's result, applied
    /// by `apply` on success).
    fn step(
        &mut self,
        what: &str,
        expected: Result<(), Error>,
        fail_after: Option<u8>,
        op: impl FnOnce(&mut PageTable<HostHardware>) -> Result<pgtable::OpReport, Error>,
        apply: impl FnOnce(&mut Model),
        probes: &[u64],
    ) {
        let injected = fail_after.map(u64::from);
        let in_use = self.pt.hardware().pages_in_use();
        let pool_low = in_use + POOL_SLACK >= POOL_PAGES;
        // Only an operation that may fail needs the tables kept for comparison.
        let before =
            (expected.is_err() || injected.is_some() || pool_low).then(|| snapshot(&self.pt));
        self.pt.hardware_mut().fail_after(injected);
        let result = op(&mut self.pt);
        self.pt.hardware_mut().fail_after(None);

        match (&result, &expected) {
            (Ok(_), Ok(())) => apply(&mut self.model),
            (Err(Error::OutOfTables), Ok(())) if injected.is_some() || pool_low => {}
            (Err(got), Err(want)) if got == want => {}
            _ => panic!("{what}: engine {result:?}, model {expected:?}"),
        }
        if result.is_err() {
            let before = before.expect("snapshot of an operation that may fail");
            assert!(
                snapshot(&self.pt) == before,
                "{what}: failed with {result:?} but changed the tables"
            );
            assert_eq!(
                self.pt.hardware().pages_in_use(),
                in_use,
                "{what}: failed but kept tables"
            );
        }
        if let Some(checker) = &mut self.checker {
            let trace: Vec<Event> = self.pt.hardware_mut().take_trace();
            if let Err(v) = checker.check_operation(&trace) {
                panic!("{what}: trace violation: {v:?}");
            }
        }
        if let Err(problem) = check_invariants(&self.pt) {
            panic!("{what}: invariant: {problem}");
        }
        let mut walked = Model(
            self.pt
                .mappings(0..self.pt.regime().ia_limit())
                .map(|m| Run {
                    start: m.ia.start,
                    end: m.ia.end,
                    pa: m.pa.0,
                    attrs: m.attrs,
                    flags: m.flags,
                })
                .collect(),
        );
        walked.normalize();
        assert_eq!(walked, self.model, "{what}: tables and model differ");
        for &addr in probes {
            let addr = addr & !(K4 - 1);
            if addr >= self.pt.regime().ia_limit() {
                continue;
            }
            let got = self.pt.query(addr).map(|t| (t.pa.0, t.attrs, t.flags));
            assert_eq!(got, self.model.lookup(addr), "{what}: query({addr:#x})");
        }
    }
}

fuzz_target!(|scenario: Scenario| {
    let regime = match scenario.regime % 5 {
        0 => Regime::el2(),
        1 => Regime::stage2(32).unwrap(),
        2 => Regime::stage2(36).unwrap(),
        3 => Regime::stage2(40).unwrap(),
        _ => Regime::stage2(44).unwrap(),
    };
    let kind = regime.kind();
    let split = if scenario.bbml2 {
        SplitStrategy::Bbml2
    } else {
        SplitStrategy::BreakBeforeMake
    };
    let caps = Capabilities {
        split,
        tlbi_range: scenario.tlbi_range,
    };
    let pt = PageTable::new(HostHardware::new(POOL_PAGES), regime, caps).expect("new tree");
    let mut run = Tree {
        pt,
        checker: None,
        model: Model::default(),
        split,
    };
    if scenario.live {
        run.go_live();
    }

    let base_start = [0, M2, G1 - M32, G1][usize::from(scenario.base_start % 4)];
    let base_len = [G1, G1 + M2, 2 * G1, 3 * G1][usize::from(scenario.base_len % 4)];
    let base_shift = [0, 0, M2, G1][usize::from(scenario.base_shift % 4)];
    let mut ops = vec![Op::Map {
        at: Addr {
            anchor: 0,
            unit: 0,
            steps: 0,
            misalign: false,
        },
        len: Len::Empty,
        shift: Shift::Identity,
        attrs: Attr::Rw,
        flags: 0,
        fail_after: None,
    }];
    ops.extend(scenario.ops.iter().take(24).copied());

    for (i, op) in ops.into_iter().enumerate() {
        match op {
            Op::Map {
                at,
                len,
                shift,
                attrs,
                flags,
                fail_after,
            } => {
                let (s, e, pa, attrs, flags) = if i == 0 {
                    let e = (base_start + base_len).min(WINDOW);
                    (
                        base_start,
                        e,
                        base_start + base_shift,
                        Attributes::RW,
                        MapFlags::NONE,
                    )
                } else {
                    let s = at.get();
                    let e = s.saturating_add(len.get()).min(WINDOW + M2);
                    let small = e.saturating_sub(s) <= M32;
                    // Forced pages only on small ranges, to keep the pool and checks small.
                    let mut f = match flags % 5 {
                        0..=2 => MapFlags::NONE,
                        3 => MapFlags::NO_BLOCK_MAPPINGS,
                        _ => MapFlags::NO_CONT_MAPPINGS,
                    };
                    if f == MapFlags::NO_BLOCK_MAPPINGS && !small {
                        f = MapFlags::NONE;
                    }
                    let d = match shift {
                        Shift::Identity => 0,
                        Shift::Page => K4,
                        Shift::Group => K64,
                        Shift::Block => M2,
                        Shift::Gig => G1,
                        Shift::High => OA_LIMIT - 8 * G1,
                        Shift::Misaligned => 0x800,
                    };
                    // Page-aligned output forces pages too.
                    let d = if d % M2 != 0 && d != 0x800 && !small {
                        M2
                    } else {
                        d
                    };
                    (s, e, s + d, attrs.get(), f)
                };
                let new = Run {
                    start: s,
                    end: e,
                    pa,
                    attrs,
                    flags,
                };
                let expected = check_range(&regime, s, e)
                    .and_then(|()| {
                        if pa % K4 != 0 {
                            Err(Error::Misaligned { value: pa })
                        } else if pa.checked_add(e - s).is_none_or(|end| end > OA_LIMIT) {
                            Err(Error::OutOfRange { addr: pa })
                        } else {
                            Ok(())
                        }
                    })
                    .and_then(|()| check_attrs(kind, attrs))
                    .and_then(|()| match run.model.conflict(&new) {
                        Some(addr) => Err(Error::AlreadyMapped { addr }),
                        None => Ok(()),
                    });
                run.step(
                    &format!("op {i}: map {s:#x}..{e:#x} -> {pa:#x} {attrs:?} {flags:?}"),
                    expected,
                    fail_after,
                    |pt| pt.map(s..e, PhysAddr(pa), attrs, flags),
                    |m| m.insert(new),
                    &[s, e.wrapping_sub(K4), s + (e.saturating_sub(s)) / 2],
                );
            }
            Op::Unmap {
                at,
                len,
                fail_after,
            } => {
                let s = at.get();
                let e = s.saturating_add(len.get()).min(WINDOW + M2);
                run.step(
                    &format!("op {i}: unmap {s:#x}..{e:#x}"),
                    check_range(&regime, s, e),
                    fail_after,
                    |pt| pt.unmap(s..e),
                    |m| m.remove(s, e),
                    &[s.wrapping_sub(K4), s, e.wrapping_sub(K4), e],
                );
            }
            Op::Change {
                at,
                len,
                attrs,
                fail_after,
            } => {
                let s = at.get();
                let e = s.saturating_add(len.get()).min(WINDOW + M2);
                change(&mut run, i, kind, s, e, attrs.get(), fail_after);
            }
            Op::Restore {
                at,
                gig,
                fail_after,
            } => {
                let unit = if gig { G1 } else { M2 };
                let s = at.get() & !(unit - 1);
                let e = (s + unit).min(WINDOW);
                change(&mut run, i, kind, s, e, Attributes::RW, fail_after);
            }
            Op::Collapse { at, len } => {
                let s = at.get();
                let e = s.saturating_add(len.get()).min(WINDOW + M2);
                run.step(
                    &format!("op {i}: collapse {s:#x}..{e:#x}"),
                    check_range(&regime, s, e),
                    None,
                    |pt| pt.collapse(s..e),
                    |_| {},
                    &[s, e.wrapping_sub(K4)],
                );
            }
            Op::GoLive => run.go_live(),
        }
    }
});

fn change(
    run: &mut Tree,
    i: usize,
    kind: RegimeKind,
    s: u64,
    e: u64,
    attrs: Attributes,
    fail_after: Option<u8>,
) {
    let regime = run.pt.regime();
    let expected = check_range(&regime, s, e)
        .and_then(|()| check_attrs(kind, attrs))
        .and_then(|()| match run.model.first_hole(s, e) {
            Some(addr) => Err(Error::NotMapped { addr }),
            None => Ok(()),
        });
    run.step(
        &format!("op {i}: change {s:#x}..{e:#x} to {attrs:?}"),
        expected,
        fail_after,
        |pt| pt.change_attrs(s..e, attrs),
        |m| m.change(s, e, attrs),
        &[s.wrapping_sub(K4), s, e.wrapping_sub(K4), e],
    );
}
