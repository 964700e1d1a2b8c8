//! The fast path of `map` (every entry it meets below the shared tables is invalid):
//! bit-for-bit the same tables, counters and live trace as the general two-pass path, the
//! fallback when it meets anything else, and allocation failure inside it.

use std::vec::Vec;

use proptest::prelude::*;

use super::support::*;
use crate::check::{Event, TraceChecker, check_invariants, linked_tables};
use crate::host::HostHardware;
use crate::{Attributes, MapFlags, PageTable, PhysAddr, Regime, SplitStrategy};

type MapOp = (u64, u64, u64, Attributes, MapFlags);

/// Runs `ops` on two trees, one with the fast path allowed and one without, live or not,
/// and checks that every step gives the same result, raw tables (page addresses
/// included), counters and trace, and that the trace passes the checker.
fn same_as_general(regime: Regime, split: SplitStrategy, live: bool, ops: &[MapOp]) -> u64 {
    let mut trees: Vec<PageTable<HostHardware>> = (0..2)
        .map(|_| tree(regime, caps(split, true), 4096))
        .collect();
    trees[1].general_map_only = true;
    let mut checkers = Vec::new();
    for pt in &mut trees {
        if live {
            pt.mark_live();
            pt.hardware_mut().record();
            pt.hardware_mut().take_trace();
        }
        checkers.push(TraceChecker::new(split, linked_tables(pt)));
    }
    for &(start, end, pa, attrs, flags) in ops {
        let mut outs = Vec::new();
        for (pt, checker) in trees.iter_mut().zip(&mut checkers) {
            let out = pt.map(start..end, PhysAddr(pa), attrs, flags);
            let trace: Vec<Event> = pt.hardware_mut().take_trace();
            if live && let Err(v) = checker.check_operation(&trace) {
                panic!("trace violation: {v:?}");
            }
            check_invariants(pt).unwrap();
            outs.push((out, raw(pt), pt.counters(), trace));
        }
        let (fast, general) = (&outs[0], &outs[1]);
        assert_eq!(fast.0, general.0, "{start:#x}..{end:#x}");
        assert_eq!(fast.1, general.1, "raw tables {start:#x}..{end:#x}");
        assert_eq!(fast.2, general.2, "counters {start:#x}..{end:#x}");
        assert_eq!(fast.3, general.3, "trace {start:#x}..{end:#x}");
    }
    assert_eq!(trees[1].fast_maps, 0);
    for pt in &mut trees {
        if live {
            pt.mark_not_live();
        }
    }
    trees[0].fast_maps
}

#[test]
fn fast_path_takes_the_boot_maps_and_matches_the_general_path() {
    let rw = Attributes::RW;
    let none = MapFlags::NONE;
    let ops: &[MapOp] = &[
        // Blocks into an empty tree, across level-0 and level-1 boundaries.
        (0, 16 * G1, 0, rw, none),
        (16 * G1 + M2, 17 * G1 + 5 * K4, 16 * G1 + M2, rw, none),
        // Pages and contiguous groups inside an existing table of blocks' neighbours.
        (
            20 * G1 + K4,
            20 * G1 + M32 + 3 * K4,
            K4,
            Attributes::RO,
            none,
        ),
        (
            21 * G1,
            21 * G1 + 3 * M2,
            0,
            rw,
            MapFlags::NO_BLOCK_MAPPINGS,
        ),
        (22 * G1, 22 * G1 + M32, 0, rw, MapFlags::NO_CONT_MAPPINGS),
        // The last page of a 2 MiB table of pages: the table collapses into a block.
        (30 * G1, 30 * G1 + M2 - K4, 30 * G1, rw, none),
        (30 * G1 + M2 - K4, 30 * G1 + M2, 30 * G1 + M2 - K4, rw, none),
        // Identical remap (fallback, a no-op) and a conflict (fallback, refused).
        (K4, 2 * K4, K4, rw, none),
        (K4, 2 * K4, 0, rw, none),
        // Across a boundary where one side is mapped: fallback.
        (16 * G1 - M2, 16 * G1 + 2 * M2, 16 * G1 - M2, rw, none),
        // Misaligned output: pages under blocks, into an empty level-0 entry.
        (512 * G1, 512 * G1 + G1 + 7 * K4, 3 * K4, rw, none),
    ];
    for regime in [Regime::el2(), Regime::stage2(40).unwrap()] {
        for split in [SplitStrategy::Bbml2, SplitStrategy::BreakBeforeMake] {
            for live in [false, true] {
                let ops: Vec<MapOp> = ops
                    .iter()
                    .copied()
                    .filter(|op| op.1 <= regime.ia_limit())
                    .collect();
                let fast = same_as_general(regime, split, live, &ops);
                assert!(fast >= 6, "fast path taken {fast} times");
            }
        }
    }
}

#[test]
fn fast_path_collapses_the_tables_it_passed_through() {
    let mut pt = tree(Regime::el2(), caps(SplitStrategy::Bbml2, true), 64);
    pt.map(0..M2 - K4, PhysAddr(M2), Attributes::RW, MapFlags::NONE)
        .unwrap();
    let before = pt.fast_maps;
    pt.map(
        M2 - K4..M2,
        PhysAddr(2 * M2 - K4),
        Attributes::RW,
        MapFlags::NONE,
    )
    .unwrap();
    assert_eq!(pt.fast_maps, before + 1);
    assert_eq!(pt.counters().collapses_2m, 1);
    let t = pt.query(K4).unwrap();
    assert_eq!(t.level, 2);
    check_invariants(&pt).unwrap();
}

#[test]
fn fast_path_allocation_failure_leaves_tables_unchanged() {
    let cases: &[MapOp] = &[
        (0, G1 + 3 * M2 + 5 * K4, K4, Attributes::RW, MapFlags::NONE),
        (
            G1 - M2 - K4,
            G1 + M2 + K4,
            G1 - M2 - K4,
            Attributes::RW,
            MapFlags::NONE,
        ),
        (
            4 * G1,
            4 * G1 + 5 * M2,
            0,
            Attributes::RO,
            MapFlags::NO_BLOCK_MAPPINGS,
        ),
        (600 * G1, 601 * G1, 0, Attributes::RW, MapFlags::NONE),
    ];
    for regime in [Regime::el2(), Regime::stage2(40).unwrap()] {
        for live in [false, true] {
            for &(start, end, pa, attrs, flags) in cases {
                if end > regime.ia_limit() {
                    continue;
                }
                let mut pt = tree(regime, caps(SplitStrategy::BreakBeforeMake, true), 4096);
                // A neighbour, so the fast path starts below existing tables.
                pt.map(
                    2 * G1 + M2..2 * G1 + 2 * M2,
                    PhysAddr(0),
                    Attributes::RW,
                    MapFlags::NONE,
                )
                .unwrap();
                if live {
                    pt.mark_live();
                }
                let what = format!("{start:#x}");
                let failures = sweep_allocation_failures(&mut pt, &what, |pt| {
                    let fast = pt.fast_maps;
                    let out = pt.map(start..end, PhysAddr(pa), attrs, flags);
                    assert_eq!(pt.fast_maps, fast + 1, "{start:#x}: fast path");
                    out
                });
                // A 1 GiB block in a stage-2 level-1 root needs no table.
                let needs_table = !(start == 600 * G1 && regime.start_level() == 1);
                assert_eq!(
                    failures >= 1,
                    needs_table,
                    "{start:#x}: failures {failures}"
                );
                check_invariants(&pt).unwrap();
                if live {
                    pt.mark_not_live();
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Random sequences of maps (many into empty space, some over or across existing
    /// mappings): the fast path and the general path agree bit for bit.
    #[test]
    fn fast_path_matches_general_path(
        live in any::<bool>(),
        bbm in any::<bool>(),
        ops in prop::collection::vec(
            (0u64..64, 1u64..20, 0u64..4, prop::sample::select(vec![K4, M2, G1]),
             any::<bool>(), 0u8..3),
            1..12,
        ),
    ) {
        let ops: Vec<MapOp> = ops
            .into_iter()
            .map(|(at, len, skew, unit, ro, flags)| {
                let start = at * unit + skew * K4;
                let end = start + len * unit.min(M2) + skew * K4;
                let attrs = if ro { Attributes::RO } else { Attributes::RW };
                let flags = [MapFlags::NONE, MapFlags::NO_BLOCK_MAPPINGS, MapFlags::NO_CONT_MAPPINGS]
                    [flags as usize];
                (start, end, start, attrs, flags)
            })
            .collect();
        let split = if bbm { SplitStrategy::BreakBeforeMake } else { SplitStrategy::Bbml2 };
        same_as_general(Regime::el2(), split, live, &ops);
    }
}
