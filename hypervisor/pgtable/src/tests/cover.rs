//! The minimal cover the boot reports print (`MinimalCover`, `PageTable::minimal_cover`):
//! hand-counted shapes, and against the trees the engine builds.

use core::ops::Range;
use std::vec::Vec;

use proptest::prelude::*;

use super::support::*;
use crate::check::{check_invariants, minimal_cover};
use crate::{
    Attributes, CoverShape, MapFlags, MinimalCover, PhysAddr, Regime, SplitStrategy,
    host::HostHardware,
};

fn cover_of(regime: Regime, ranges: &[(u64, u64, u64, Attributes)]) -> CoverShape {
    let mut cover = MinimalCover::new(&regime);
    for &(start, end, pa, attrs) in ranges {
        cover.add_range(start..end, PhysAddr(pa), attrs);
    }
    cover.finish()
}

fn mapped(
    regime: Regime,
    ranges: &[(u64, u64, u64, Attributes, MapFlags)],
) -> crate::PageTable<HostHardware> {
    let mut pt = tree(regime, caps(SplitStrategy::Bbml2, true), 1024);
    for &(start, end, pa, attrs, flags) in ranges {
        pt.map(start..end, PhysAddr(pa), attrs, flags).unwrap();
    }
    pt
}

#[test]
fn a_1g_block_is_one_descriptor_plus_the_tables_above_it() {
    let one = [(G1, 2 * G1, G1, Attributes::RW)];
    // EL2 starts at level 0: the block and the level-1 table that holds it.
    let el2 = cover_of(Regime::el2(), &one);
    assert_eq!((el2.leaves, el2.tables, el2.descriptors()), (1, 1, 2));
    assert_eq!(el2.leaves_by_level, [0, 1, 0, 0]);
    // A 40-bit stage 2 starts at level 1 with two concatenated root tables: the block
    // goes into the root.
    let s2 = cover_of(Regime::stage2(40).unwrap(), &one);
    assert_eq!(s2.descriptors(), 1);
    // 44 bits start at level 0 again.
    assert_eq!(cover_of(Regime::stage2(44).unwrap(), &one).descriptors(), 2);
    // A block the output alignment forbids: 512 blocks of 2 MiB and their table.
    let skewed = cover_of(Regime::el2(), &[(G1, 2 * G1, G1 + M2, Attributes::RW)]);
    assert_eq!(skewed.leaves_by_level, [0, 0, 512, 0]);
    assert_eq!(skewed.tables, 2);
    assert_eq!(skewed.contiguous, 0, "output not aligned to 32 MiB");
}

#[test]
fn a_4k_hole_in_a_2m_block() {
    // 2 MiB at 2 MiB without its sixth page: 511 pages in one level-3 table, below a
    // level-2 and a level-1 table; the group the hole cuts has no hint, the 31 others do.
    let ranges = [
        (M2, M2 + 5 * K4, M2, Attributes::RW),
        (M2 + 6 * K4, 2 * M2, M2 + 6 * K4, Attributes::RW),
    ];
    let shape = cover_of(Regime::el2(), &ranges);
    assert_eq!(shape.leaves_by_level, [0, 0, 0, 511]);
    assert_eq!(shape.tables, 3);
    assert_eq!(shape.descriptors(), 514);
    assert_eq!(shape.contiguous, 31 * 16);
    assert_eq!(shape.tlb_entries(), 15 + 31);
    // The engine builds exactly that, and writes no more.
    let pt = mapped(
        Regime::el2(),
        &ranges.map(|(s, e, pa, a)| (s, e, pa, a, MapFlags::NONE)),
    );
    assert_eq!(pt.minimal_cover(), shape);
    assert_eq!(pt.counters().descriptors_written, 514);
}

#[test]
fn contiguous_groups_need_input_and_output_alignment() {
    // 32 MiB at a 32 MiB boundary: one group of 16 blocks, one TLB entry.
    let aligned = cover_of(Regime::el2(), &[(G1, G1 + M32, G1, Attributes::RW)]);
    assert_eq!(
        (aligned.leaves, aligned.contiguous, aligned.tlb_entries()),
        (16, 16, 1)
    );
    // The same 32 MiB straddling two groups: no hint.
    let straddling = cover_of(
        Regime::el2(),
        &[(G1 + M2, G1 + M2 + M32, G1 + M2, Attributes::RW)],
    );
    assert_eq!((straddling.leaves, straddling.contiguous), (16, 0));
    // Input aligned, output only 2 MiB aligned: no hint either.
    let skewed = cover_of(Regime::el2(), &[(G1, G1 + M32, G1 + M2, Attributes::RW)]);
    assert_eq!((skewed.leaves, skewed.contiguous), (16, 0));
    // 64 KiB of pages: one group.
    let pages = cover_of(Regime::el2(), &[(K64, 2 * K64, K64, Attributes::RO)]);
    assert_eq!((pages.leaves, pages.contiguous, pages.tables), (16, 16, 3));
}

#[test]
fn runs_merge_across_levels_and_flags_but_not_attributes() {
    // 1 GiB mapped with 4K pages only (mapping=pages): the cover is still one block.
    let pt = mapped(
        Regime::el2(),
        &[(G1, 2 * G1, G1, Attributes::RW, MapFlags::NO_BLOCK_MAPPINGS)],
    );
    let tree = check_invariants(&pt).unwrap();
    assert_eq!(tree.leaves, 512 * 512);
    let cover = pt.minimal_cover();
    assert_eq!((cover.leaves, cover.tables), (1, 1));
    assert!(cover.descriptors() <= pt.counters().descriptors_written);
    // Two 2 MiB halves with different attributes stay two blocks; with equal attributes
    // but output not consecutive, too.
    let two = cover_of(
        Regime::el2(),
        &[(0, M2, 0, Attributes::RW), (M2, 2 * M2, M2, Attributes::RO)],
    );
    assert_eq!(two.leaves_by_level, [0, 0, 2, 0]);
    let apart = cover_of(
        Regime::el2(),
        &[
            (0, G1 / 2, 0, Attributes::RW),
            (G1 / 2, G1, 3 * G1 / 2, Attributes::RW),
        ],
    );
    assert_eq!(apart.leaves_by_level, [0, 0, 512, 0]);
    let joined = cover_of(
        Regime::el2(),
        &[
            (0, G1 / 2, 0, Attributes::RW),
            (G1 / 2, G1, G1 / 2, Attributes::RW),
        ],
    );
    assert_eq!(joined.leaves_by_level, [0, 1, 0, 0]);
}

#[test]
fn odd_input_does_not_panic() {
    let mut cover = MinimalCover::new(&Regime::el2());
    cover.add_range(Range { start: 5, end: 3 }, PhysAddr(0), Attributes::RW);
    cover.add_range(0x123..0x2000, PhysAddr(u64::MAX - 5), Attributes::RW);
    cover.add_range(u64::MAX - 0x1000..u64::MAX, PhysAddr(0), Attributes::RW);
    cover.add_range(0..K4, PhysAddr(0), Attributes::RW);
    let shape = cover.finish();
    assert!(shape.leaves >= 3);
}

/// Disjoint maps built from (gap, length, unit, output skew, attributes, flags) tuples.
fn layout(ops: &[(u64, u64, u64, u64, u8, u8)]) -> Vec<(u64, u64, u64, Attributes, MapFlags)> {
    let mut at = 0;
    let mut out = Vec::new();
    for &(gap, len, unit, skew, attrs, flags) in ops {
        let start = (at + gap * K4).next_multiple_of(unit);
        let end = start + len * unit;
        // Output skewed by pages over GiBs would need thousands of tables: 2 MiB at most.
        let skew = if unit == G1 {
            skew.next_multiple_of(512)
        } else {
            skew
        };
        let attrs = [Attributes::RW, Attributes::RO, Attributes::DEVICE][usize::from(attrs)];
        let flags = match flags {
            1 if unit <= M2 => MapFlags::NO_BLOCK_MAPPINGS,
            2 => MapFlags::NO_CONT_MAPPINGS,
            _ => MapFlags::NONE,
        };
        out.push((start, end, start + skew * K4, attrs, flags));
        at = end;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A fresh map of random disjoint ranges: the cover never needs more descriptors than
    /// the engine wrote; without mapping flags the engine's tree is the cover itself, and
    /// the streaming count agrees with the invariant checker's.
    #[test]
    fn cover_never_exceeds_what_a_fresh_map_writes(
        stage2 in any::<bool>(),
        ops in prop::collection::vec(
            (0u64..600, 1u64..12, prop::sample::select(vec![K4, K64, M2, M32, G1]),
             prop::sample::select(vec![0u64, 1, 16, 512]), 0u8..3, 0u8..4),
            1..8,
        ),
    ) {
        let regime = if stage2 { Regime::stage2(40).unwrap() } else { Regime::el2() };
        let ranges = layout(&ops);
        let pt = mapped(regime, &ranges);
        let cover = pt.minimal_cover();
        prop_assert!(cover.descriptors() <= pt.counters().descriptors_written,
            "cover {:?} > written {}", cover, pt.counters().descriptors_written);
        let tree = check_invariants(&pt).unwrap();
        let flagged = ranges.iter().any(|r| r.4 != MapFlags::NONE);
        if !flagged {
            prop_assert_eq!((cover.leaves, cover.tables, cover.contiguous),
                            (tree.leaves, tree.tables, tree.contiguous));
        }
        // The checker's rule on the same merged runs (no flag bits): the same counts.
        let mut runs: Vec<(u64, u64, u64, u64)> = Vec::new();
        let mut merged: Vec<(u64, u64, u64, Attributes)> = Vec::new();
        for r in pt.mappings(0..regime.ia_limit()) {
            match merged.last_mut() {
                Some(m) if m.1 == r.ia.start && m.3 == r.attrs && m.2 + (m.1 - m.0) == r.pa.0 => m.1 = r.ia.end,
                _ => merged.push((r.ia.start, r.ia.end, r.pa.0, r.attrs)),
            }
        }
        runs.extend(merged.iter().map(|m| (m.0, m.1, m.2, 0)));
        let (checker, _) = minimal_cover(regime.start_level(), &runs);
        prop_assert_eq!((cover.leaves, cover.tables, cover.contiguous),
                        (checker.leaves, checker.tables, checker.contiguous));
    }
}
