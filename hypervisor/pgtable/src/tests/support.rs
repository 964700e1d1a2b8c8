//! Shared helpers: trees on the host pool, traced operations, full snapshots.

use std::vec::Vec;

use crate::check::{Event, TraceChecker, check_invariants, linked_tables};
use crate::host::HostHardware;
use crate::{Capabilities, Error, MappedRange, PageTable, Regime, SplitStrategy};

pub(crate) const K4: u64 = 4 << 10;
pub(crate) const K64: u64 = 64 << 10;
pub(crate) const M2: u64 = 2 << 20;
pub(crate) const M32: u64 = 32 << 20;
pub(crate) const G1: u64 = 1 << 30;

pub(crate) fn caps(split: SplitStrategy, tlbi_range: bool) -> Capabilities {
    Capabilities { split, tlbi_range }
}

/// A tree on a fresh pool of `pages` pages.
pub(crate) fn tree(regime: Regime, caps: Capabilities, pages: usize) -> PageTable<HostHardware> {
    PageTable::new(HostHardware::new(pages), regime, caps).unwrap()
}

/// A live tree with recording on.
pub(crate) fn live_tree(regime: Regime, caps: Capabilities) -> PageTable<HostHardware> {
    let mut pt = tree(regime, caps, 4096);
    pt.mark_live();
    pt.hardware_mut().record();
    pt.hardware_mut().take_trace();
    pt
}

/// Runs `op` with allocation number `n` failing, for n = 0, 1, ... until it succeeds, and
/// checks after every failure that the tree is exactly as before: raw entries, mappings,
/// pages in use, and no store, barrier or TLBI (and as many tables freed as allocated).
/// Returns how many runs failed; allocation failure is off again afterwards. `what`
/// names the case in messages.
pub(crate) fn sweep_allocation_failures<T>(
    pt: &mut PageTable<HostHardware>,
    what: &str,
    mut op: impl FnMut(&mut PageTable<HostHardware>) -> Result<T, Error>,
) -> usize {
    let (before_raw, before_dump) = (raw(pt), dump(pt));
    let pages = pt.hardware().pages_in_use();
    let mut failures = 0;
    for allowed in 0.. {
        pt.hardware_mut().fail_after(Some(allowed));
        let counters = pt.counters();
        match op(pt) {
            Err(Error::OutOfTables) => {
                failures += 1;
                assert_eq!(
                    raw(pt),
                    before_raw,
                    "{what}: raw tables changed after failure {allowed}"
                );
                assert_eq!(dump(pt), before_dump, "{what}");
                assert_eq!(pt.hardware().pages_in_use(), pages, "{what}: pages leaked");
                let d = pt.counters().since(&counters);
                assert_eq!(
                    (d.tlbi_total(), d.dsb, d.descriptors_written),
                    (0, 0, 0),
                    "{what}"
                );
                assert_eq!(d.tables_allocated, d.tables_freed, "{what}");
            }
            Ok(_) => break,
            Err(e) => panic!("{what}: {e}"),
        }
    }
    pt.hardware_mut().fail_after(None);
    failures
}

pub(crate) fn dump(pt: &PageTable<HostHardware>) -> Vec<MappedRange> {
    pt.mappings(0..pt.regime().ia_limit()).collect()
}

/// Every entry of every table, depth first: the raw state of a tree.
pub(crate) fn raw(pt: &PageTable<HostHardware>) -> Vec<(u64, usize, u64)> {
    fn table(
        pt: &PageTable<HostHardware>,
        pa: u64,
        level: u8,
        entries: usize,
        out: &mut Vec<(u64, usize, u64)>,
    ) {
        for i in 0..entries {
            let v = pt.hardware().read_entry(pa, i);
            out.push((pa, i, v));
            let d = crate::descriptor::Descriptor(v);
            if d.is_table(level) {
                table(pt, d.output_address(), level + 1, crate::ENTRIES, out);
            }
        }
    }
    let mut out = Vec::new();
    let r = pt.regime();
    table(pt, pt.root().0, r.start_level(), r.root_entries(), &mut out);
    out
}

/// Runs `op` on a live, recording tree and checks its trace and the invariants.
pub(crate) struct Checked {
    pub(crate) pt: PageTable<HostHardware>,
    pub(crate) checker: TraceChecker,
}

impl Checked {
    pub(crate) fn new(regime: Regime, caps: Capabilities) -> Self {
        let pt = live_tree(regime, caps);
        let checker = TraceChecker::new(caps.split, linked_tables(&pt));
        Checked { pt, checker }
    }

    pub(crate) fn run<T>(&mut self, op: impl FnOnce(&mut PageTable<HostHardware>) -> T) -> T {
        let out = op(&mut self.pt);
        let trace: Vec<Event> = self.pt.hardware_mut().take_trace();
        if let Err(v) = self.checker.check_operation(&trace) {
            panic!(
                "trace violation: {v:?}\n{:#?}",
                &trace[v.event.saturating_sub(6)..(v.event + 1).min(trace.len())]
            );
        }
        if let Err(e) = check_invariants(&self.pt) {
            panic!("invariant: {e}\n{:#x?}", dump(&self.pt));
        }
        out
    }
}
