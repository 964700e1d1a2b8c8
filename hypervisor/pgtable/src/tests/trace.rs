//! The trace checker catches what it must: hand-made broken traces, and real traces with
//! one barrier or TLBI removed.

use std::vec::Vec;

use super::support::*;
use crate::check::{Event, Footprint, Run, TableRef, TraceChecker, linked_tables};
use crate::descriptor::Descriptor;
use crate::{
    Attributes, Barrier, DescriptorWrite, MapFlags, PhysAddr, Regime, SplitStrategy,
    TlbInvalidation,
};

const RW: u64 = (0b01 << 6) | (0b11 << 8) | (1 << 10) | (1 << 54);
const RO: u64 = (0b11 << 6) | (0b11 << 8) | (1 << 10) | (1 << 54);
const DEVICE: u64 = (1 << 2) | (0b01 << 6) | (1 << 10) | (1 << 54);
const TABLE: u64 = 0x4000_5000;

fn block(oa: u64, attrs: u64) -> Footprint {
    Footprint {
        runs: vec![Run {
            ia: 0..M2,
            oa,
            attrs,
            leaf_size: M2,
            entry_size: M2,
        }],
        tables: vec![],
    }
}

/// The same 2 MiB as a table of pages.
fn table(oa: u64, attrs: u64) -> Footprint {
    Footprint {
        runs: vec![Run {
            ia: 0..M2,
            oa,
            attrs,
            leaf_size: K4,
            entry_size: K4,
        }],
        tables: vec![TableRef {
            table: TABLE,
            ia: 0..M2,
        }],
    }
}

fn write(old: Footprint, new: Footprint) -> Event {
    let value = |f: &Footprint| match (f.tables.first(), f.runs.first()) {
        (Some(t), _) => Descriptor::table(t.table).0,
        (None, Some(r)) => Descriptor::leaf(2, r.oa, r.attrs, false).0,
        _ => 0,
    };
    Event::Write {
        write: DescriptorWrite {
            addr: 0,
            level: 2,
            old: value(&old),
            new: value(&new),
        },
        old,
        new,
    }
}

const ST: Event = Event::Dsb(Barrier::StoresIsh);
const FULL: Event = Event::Dsb(Barrier::FullIsh);
const TLBI: Event = Event::Tlbi(TlbInvalidation::Leaf { addr: 0, level: 2 });

fn check(strategy: SplitStrategy, linked: &[u64], events: &[Event]) -> Result<(), String> {
    TraceChecker::new(strategy, linked.iter().copied())
        .check_operation(events)
        .map_err(|v| v.message)
}

#[test]
fn break_before_make_split_passes() {
    let events = [
        Event::Filled { table: TABLE },
        write(block(0, RW), Footprint::default()),
        ST,
        TLBI,
        FULL,
        write(Footprint::default(), table(0, RW)),
        ST,
        Event::Isb,
    ];
    check(SplitStrategy::BreakBeforeMake, &[], &events).unwrap();
}

#[test]
fn split_without_break_is_caught_without_bbml2_only() {
    let events = [
        Event::Filled { table: TABLE },
        ST,
        write(block(0, RW), table(0, RW)),
        ST,
        TLBI,
        FULL,
        Event::Isb,
    ];
    let e = check(SplitStrategy::BreakBeforeMake, &[], &events).unwrap_err();
    assert!(e.contains("entry size"), "{e}");
    check(SplitStrategy::Bbml2, &[], &events).unwrap();
}

#[test]
fn tlbi_before_the_invalid_entry_is_visible_is_caught() {
    let events = [
        write(block(0, RW), Footprint::default()),
        TLBI,
        FULL,
        write(Footprint::default(), block(M2, RW)),
        ST,
    ];
    let e = check(SplitStrategy::BreakBeforeMake, &[], &events).unwrap_err();
    assert!(e.contains("output address"), "{e}");
}

#[test]
fn make_before_the_tlbi_completes_is_caught() {
    let events = [
        write(block(0, RW), Footprint::default()),
        ST,
        TLBI,
        write(Footprint::default(), block(M2, RW)),
        FULL,
    ];
    assert!(check(SplitStrategy::BreakBeforeMake, &[], &events).is_err());
}

#[test]
fn missing_tlbi_after_permission_change_is_caught_at_return() {
    let events = [write(block(0, RW), block(0, RO)), ST, Event::Isb];
    let e = check(SplitStrategy::Bbml2, &[], &events).unwrap_err();
    assert!(e.contains("returned while the TLB may still hold"), "{e}");
    let events = [
        write(block(0, RW), block(0, RO)),
        ST,
        TLBI,
        FULL,
        Event::Isb,
    ];
    check(SplitStrategy::BreakBeforeMake, &[], &events).unwrap();
}

#[test]
fn bbml2_does_not_excuse_a_new_memory_type_or_output_address() {
    let e = check(
        SplitStrategy::Bbml2,
        &[],
        &[write(block(0, RW), block(0, DEVICE)), ST, TLBI, FULL],
    )
    .unwrap_err();
    assert!(e.contains("memory type"), "{e}");
    let e = check(
        SplitStrategy::Bbml2,
        &[],
        &[write(block(0, RW), block(M2, RW)), ST, TLBI, FULL],
    )
    .unwrap_err();
    assert!(e.contains("output address"), "{e}");
}

#[test]
fn linking_a_table_before_its_fill_is_visible_is_caught() {
    let events = [
        Event::Filled { table: TABLE },
        write(Footprint::default(), table(0, RW)),
        ST,
    ];
    let e = check(SplitStrategy::Bbml2, &[], &events).unwrap_err();
    assert!(e.contains("before a DSB made its fill visible"), "{e}");
}

#[test]
fn freeing_a_linked_or_uninvalidated_table_is_caught() {
    let e = check(
        SplitStrategy::Bbml2,
        &[TABLE],
        &[Event::Free { table: TABLE }],
    )
    .unwrap_err();
    assert!(e.contains("still linked"), "{e}");
    // Unlinked, but the walk cache may still point at it.
    let range = Event::Tlbi(TlbInvalidation::Range { start: 0, size: M2 });
    let unlink = write(table(0, RW), Footprint::default());
    let e = check(
        SplitStrategy::Bbml2,
        &[TABLE],
        &[unlink.clone(), ST, Event::Free { table: TABLE }],
    )
    .unwrap_err();
    assert!(e.contains("walk-cache"), "{e}");
    // A last-level TLBI does not clean walk caches.
    let e = check(
        SplitStrategy::Bbml2,
        &[TABLE],
        &[unlink.clone(), ST, TLBI, FULL, Event::Free { table: TABLE }],
    )
    .unwrap_err();
    assert!(e.contains("walk-cache"), "{e}");
    check(
        SplitStrategy::Bbml2,
        &[TABLE],
        &[unlink, ST, range, FULL, Event::Free { table: TABLE }],
    )
    .unwrap();
}

#[test]
fn collapse_without_break_is_caught_without_bbml2() {
    let range = Event::Tlbi(TlbInvalidation::Range { start: 0, size: M2 });
    let events = [
        write(table(0, RW), block(0, RW)),
        ST,
        range,
        FULL,
        Event::Free { table: TABLE },
    ];
    let e = check(SplitStrategy::BreakBeforeMake, &[TABLE], &events).unwrap_err();
    assert!(e.contains("without break-before-make"), "{e}");
    check(SplitStrategy::Bbml2, &[TABLE], &events).unwrap();
}

/// Records the trace of one operation on a fresh live tree prepared by `setup`.
fn real_trace(
    split: SplitStrategy,
    setup: impl Fn(&mut crate::PageTable<crate::host::HostHardware>),
    op: impl Fn(&mut crate::PageTable<crate::host::HostHardware>),
) -> (Vec<u64>, Vec<Event>) {
    let mut pt = live_tree(Regime::el2(), caps(split, false));
    setup(&mut pt);
    pt.hardware_mut().take_trace();
    let linked = linked_tables(&pt);
    op(&mut pt);
    (linked, pt.hardware_mut().take_trace())
}

#[test]
fn removing_any_barrier_or_tlbi_from_real_traces_is_caught() {
    type Op = fn(&mut crate::PageTable<crate::host::HostHardware>);
    let setup: Op = |pt| {
        pt.map(0..G1, PhysAddr(0), Attributes::RW, MapFlags::NONE)
            .unwrap();
        pt.map(G1..G1 + K64, PhysAddr(G1), Attributes::RW, MapFlags::NONE)
            .unwrap();
    };
    let ops: [Op; 4] = [
        |pt| {
            pt.change_attrs(M2 + K4..M2 + 2 * K4, Attributes::RO)
                .unwrap();
        },
        |pt| {
            pt.change_attrs(G1 + K4..G1 + 2 * K4, Attributes::RO)
                .unwrap();
        },
        |pt| {
            pt.unmap(M2..M2 + K4).unwrap();
        },
        |pt| {
            pt.change_attrs(0..G1, Attributes::RO).unwrap();
        },
    ];
    let mut mutants = 0;
    for split in [SplitStrategy::Bbml2, SplitStrategy::BreakBeforeMake] {
        for op in ops {
            let (linked, trace) = real_trace(split, setup, op);
            check(split, &linked, &trace).unwrap();
            for (i, event) in trace.iter().enumerate() {
                if !matches!(event, Event::Dsb(_) | Event::Tlbi(_)) {
                    continue;
                }
                let mut broken = trace.clone();
                broken.remove(i);
                assert!(
                    check(split, &linked, &broken).is_err(),
                    "{split:?}: removing event {i} ({event:?}) went unnoticed in {trace:#?}"
                );
                mutants += 1;
            }
        }
    }
    assert!(mutants >= 20, "{mutants}");
}
