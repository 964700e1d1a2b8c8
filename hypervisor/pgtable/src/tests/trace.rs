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
const TLBI: Event = Event::Tlbi(TlbInvalidation::Leaf {
    addr: 0,
    level: Some(2),
});

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

/// The page at `addr` of the 2 MiB at 0, in a table (a store at level 3).
fn page_write(addr: u64, old_attrs: u64, new_attrs: u64) -> Event {
    let page = |attrs: u64| Footprint {
        runs: vec![Run {
            ia: addr..addr + K4,
            oa: addr,
            attrs,
            leaf_size: K4,
            entry_size: K4,
        }],
        tables: vec![],
    };
    Event::Write {
        write: DescriptorWrite {
            addr,
            level: 3,
            old: Descriptor::leaf(3, addr, old_attrs, false).0,
            new: Descriptor::leaf(3, addr, new_attrs, false).0,
        },
        old: page(old_attrs),
        new: page(new_attrs),
    }
}

#[test]
fn bbml2_refuses_a_size_change_combined_with_any_other_change() {
    let illegal = |new: Footprint| {
        let events = [
            Event::Filled { table: TABLE },
            ST,
            write(block(0, RW), new),
            ST,
            TLBI,
            FULL,
        ];
        check(SplitStrategy::Bbml2, &[], &events).unwrap_err()
    };
    // The block becomes a table whose pages are read-only: size and permissions at once.
    let e = illegal(table(0, RO));
    assert!(e.contains("RPVTFW") && e.contains("RKFLJB"), "{e}");
    assert!(e.contains("attributes"), "{e}");
    // Only one page of the new table differs (the split of Linux before v6.18 style).
    let mut one_page_ro = table(0, RW);
    one_page_ro.runs = vec![
        Run {
            ia: 0..K4,
            ..one_page_ro.runs[0].clone()
        },
        Run {
            ia: K4..2 * K4,
            oa: K4,
            attrs: RO,
            ..one_page_ro.runs[0].clone()
        },
        Run {
            ia: 2 * K4..M2,
            oa: 2 * K4,
            ..one_page_ro.runs[0].clone()
        },
    ];
    let e = illegal(one_page_ro);
    assert!(e.starts_with("0x1000:") && e.contains("RPVTFW"), "{e}");
    // A new output address with the new size.
    let e = illegal(table(M2, RW));
    assert!(e.contains("output address") && e.contains("RPVTFW"), "{e}");
    // A hole where the block translated: a removal on top of the size change.
    let mut with_hole = table(0, RW);
    with_hole.runs[0].ia = K4..M2;
    with_hole.runs[0].oa = K4;
    let e = illegal(with_hole);
    assert!(e.contains("unmapped") && e.contains("RPVTFW"), "{e}");
    // The contiguous hint cleared while the permissions change: a size change too.
    let group = |attrs: u64, entry_size: u64| Footprint {
        runs: vec![Run {
            ia: 0..K4,
            oa: 0,
            attrs,
            leaf_size: K4,
            entry_size,
        }],
        tables: vec![],
    };
    let events = [
        page_write(0, RW, RO),
        ST,
        Event::Tlbi(TlbInvalidation::Leaf {
            addr: 0,
            level: Some(3),
        }),
        FULL,
    ];
    let mut events = events.to_vec();
    if let Event::Write { old, new, .. } = &mut events[0] {
        *old = group(RW, K64);
        *new = group(RO, K4);
    }
    let e = check(SplitStrategy::Bbml2, &[], &events).unwrap_err();
    assert!(
        e.contains("entry size (0x10000 -> 0x1000)") && e.contains("RPVTFW"),
        "{e}"
    );
    // Break-before-make makes the combined change legal: invalid first, then the table.
    let events = [
        Event::Filled { table: TABLE },
        write(block(0, RW), Footprint::default()),
        ST,
        TLBI,
        FULL,
        write(Footprint::default(), table(0, RO)),
        ST,
    ];
    check(SplitStrategy::Bbml2, &[], &events).unwrap();
}

#[test]
fn bbml2_accepts_a_size_only_split_then_a_permission_change_in_place() {
    let events = [
        Event::Filled { table: TABLE },
        ST,
        // Size only: the table's pages translate exactly as the block did.
        write(block(0, RW), table(0, RW)),
        // Permissions only, on a leaf of the new table (RGPPYH).
        page_write(K4, RW, RO),
        ST,
        // One TLBI by address inside both the old block and the changed page removes
        // either from the TLB (no level hint: they are at different levels).
        Event::Tlbi(TlbInvalidation::Leaf {
            addr: K4,
            level: None,
        }),
        FULL,
        Event::Isb,
    ];
    check(SplitStrategy::Bbml2, &[], &events).unwrap();
    // The same size-only split is still a size change without FEAT_BBM.
    let e = check(SplitStrategy::BreakBeforeMake, &[], &events).unwrap_err();
    assert!(e.contains("entry size"), "{e}");
}

/// Issue 14: with FEAT_BBM level 2 the split of a block changes the size alone, the page
/// inside the range changes afterwards in place, and one TLBI at that page settles both.
#[test]
fn bbml2_split_changes_the_size_alone_then_the_page_in_place() {
    let page = M2 + 7 * K4;
    for regime in [Regime::el2(), Regime::stage2(40).unwrap()] {
        let setup = |pt: &mut crate::PageTable<crate::host::HostHardware>| {
            pt.map(0..G1, PhysAddr(0), Attributes::RW, MapFlags::NONE)
                .unwrap();
        };
        let mut pt = live_tree(regime, caps(SplitStrategy::Bbml2, false));
        setup(&mut pt);
        pt.hardware_mut().take_trace();
        let linked = linked_tables(&pt);
        let before = pt.counters();
        let report = pt.change_attrs(page..page + K4, Attributes::RO).unwrap();
        let d = pt.counters().since(&before);
        let trace = pt.hardware_mut().take_trace();
        check(SplitStrategy::Bbml2, &linked, &trace).unwrap();
        assert_eq!(report.transiently_unmapped, None);
        assert_eq!(d.transient_unmaps, 0);
        let writes: Vec<_> = trace
            .iter()
            .filter_map(|e| match e {
                Event::Write { write, old, new } => Some((write, old, new)),
                _ => None,
            })
            .collect();
        assert_eq!(
            writes.len(),
            2,
            "the link of the split, then the page: {writes:#?}"
        );
        // The link: every address translates as through the old 1 GiB block.
        let (link, old, new) = writes[0];
        assert_eq!((link.addr, link.level), (0, 1));
        let block_attrs = old.runs[0].attrs;
        assert_eq!(
            new.tables.len(),
            2,
            "a table of 2 MiB blocks and one of pages"
        );
        for run in &new.runs {
            assert_eq!(run.attrs, block_attrs, "{run:x?}");
            assert_eq!(run.oa, run.ia.start, "{run:x?}");
        }
        assert_eq!(new.runs.first().unwrap().ia.start, 0);
        assert_eq!(new.runs.last().unwrap().ia.end, G1);
        // The page, in place: same size, new permissions.
        let (leaf, old, new) = writes[1];
        assert_eq!((leaf.addr, leaf.level), (page, 3));
        assert_eq!(old.runs[0].attrs, block_attrs);
        assert_ne!(new.runs[0].attrs, block_attrs);
        // One invalidation by address, at the page, without a level hint: it removes the
        // old 1 GiB block and the page's first value alike.
        let tlbis: Vec<_> = trace
            .iter()
            .filter_map(|e| match e {
                Event::Tlbi(TlbInvalidation::Leaf { addr, level }) => Some((*addr, *level)),
                _ => None,
            })
            .collect();
        assert_eq!(tlbis, [(page, None)]);
        // DSB ISHST before the link, DSB ISHST before the TLBI, DSB ISH after it (and at
        // stage 2 one more after TLBI VMALLE1IS), as for the single-store split.
        let stage2 = u64::from(regime.kind() == crate::RegimeKind::Stage2);
        assert_eq!(d.dsb, 3 + stage2);
        // The pages of the new table, the link, and the page changed in place.
        assert_eq!(d.descriptors_written, 512 + 512 + 1 + 1);
    }
}
