//! Allocation failure at every allocation point of every operation leaves the tables
//! exactly as they were.

use super::support::*;
use crate::host::HostHardware;
use crate::{Attributes, Error, MapFlags, PageTable, PhysAddr, Regime, SplitStrategy};

type Op = fn(&mut PageTable<HostHardware>) -> Result<crate::OpReport, Error>;

fn setup(pt: &mut PageTable<HostHardware>) {
    pt.map(
        0..4 * crate::tests::support::G1,
        PhysAddr(0),
        Attributes::RW,
        MapFlags::NONE,
    )
    .unwrap();
    pt.map(
        8 * G1..8 * G1 + 3 * M2,
        PhysAddr(8 * G1),
        Attributes::RO,
        MapFlags::NO_BLOCK_MAPPINGS,
    )
    .unwrap();
}

const OPS: [(&str, Op); 6] = [
    ("map pages across a new level-1 table", |pt| {
        pt.map(
            5 * G1 - 3 * M2 - K4..5 * G1 + M2 + 5 * K4,
            PhysAddr(5 * G1 - 3 * M2 - K4),
            Attributes::RW,
            MapFlags::NONE,
        )
    }),
    ("map forced pages", |pt| {
        pt.map(
            16 * G1..16 * G1 + 5 * M2,
            PhysAddr(0),
            Attributes::RW,
            MapFlags::NO_BLOCK_MAPPINGS,
        )
    }),
    ("change one page in a 1 GiB block", |pt| {
        pt.change_attrs(G1 + 3 * K4..G1 + 4 * K4, Attributes::RO)
    }),
    ("change across two blocks", |pt| {
        pt.change_attrs(G1 - K4..2 * G1 + M2 + K4, Attributes::RO)
    }),
    ("unmap inside blocks", |pt| {
        pt.unmap(3 * G1 + K4..3 * G1 + M2 + 2 * K4)
    }),
    ("unmap inside pages", |pt| {
        pt.unmap(8 * G1 + K4..8 * G1 + 2 * K4)
    }),
];

#[test]
fn every_allocation_failure_leaves_tables_unchanged() {
    for regime in [Regime::el2(), Regime::stage2(40).unwrap()] {
        for split in [SplitStrategy::Bbml2, SplitStrategy::BreakBeforeMake] {
            for live in [false, true] {
                for (name, op) in OPS {
                    let mut pt = tree(regime, caps(split, true), 4096);
                    setup(&mut pt);
                    if live {
                        pt.mark_live();
                    }
                    let failures = sweep_allocation_failures(&mut pt, name, op);
                    if name.contains("pages") && name.starts_with("unmap") {
                        assert_eq!(failures, 0, "unmapping whole pages needs no table");
                    } else {
                        assert!(failures >= 1, "{name}: needs at least one table");
                    }
                    if live {
                        pt.mark_not_live();
                    }
                }
            }
        }
    }
}

#[test]
fn root_allocation_failure_is_an_error() {
    let mut hw = HostHardware::new(16);
    hw.fail_after(Some(0));
    assert!(matches!(
        PageTable::new(
            hw,
            Regime::stage2(42).unwrap(),
            caps(SplitStrategy::Bbml2, false)
        ),
        Err(Error::OutOfTables)
    ));
}
