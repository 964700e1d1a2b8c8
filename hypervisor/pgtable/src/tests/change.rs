//! change_attrs on live trees, with both split strategies; collapse back.

use super::support::*;
use crate::{Access, Attributes, MapFlags, MemoryType, PhysAddr, Regime, SplitStrategy};

const BOTH: [SplitStrategy; 2] = [SplitStrategy::Bbml2, SplitStrategy::BreakBeforeMake];

#[test]
fn split_1g_block_for_one_page_creates_two_tables() {
    for split in BOTH {
        let mut c = Checked::new(Regime::el2(), caps(split, false));
        c.run(|pt| {
            pt.map(0..G1, PhysAddr(G1), Attributes::RW, MapFlags::NONE)
                .unwrap()
        });
        let before = c.pt.counters();
        let page = 5 * M2 + 7 * K4;
        let report = c.run(|pt| pt.change_attrs(page..page + K4, Attributes::RO).unwrap());
        let d = c.pt.counters().since(&before);
        assert_eq!(
            d.tables_allocated, 2,
            "{split:?}: one table of 2 MiB blocks, one of pages"
        );
        assert_eq!(
            d.tables_freed, 0,
            "the plan reserved exactly what the split used"
        );
        assert_eq!((d.splits_1g, d.splits_2m), (1, 1));
        assert_eq!(d.tlbi_by_va, 1, "one TLBI for the old block");
        assert_eq!(pt_level(&c, page), (3, false));
        assert_eq!(
            pt_level(&c, page + K64),
            (3, true),
            "untouched pages keep the hint"
        );
        assert_eq!(
            pt_level(&c, 64 * M2),
            (2, true),
            "untouched 2 MiB blocks keep the hint"
        );
        assert_eq!(
            pt_level(&c, 4 * M2),
            (2, false),
            "the group of the split block has none"
        );
        assert_eq!(c.pt.query(page).unwrap().attrs, Attributes::RO);
        match split {
            SplitStrategy::Bbml2 => {
                assert_eq!(report.transiently_unmapped, None);
                assert_eq!(d.transient_unmaps, 0);
            }
            SplitStrategy::BreakBeforeMake => {
                assert_eq!(report.transiently_unmapped, Some(0..G1));
                assert_eq!(d.transient_unmaps, 1);
            }
        }
    }
}

fn pt_level(c: &Checked, addr: u64) -> (u8, bool) {
    let t = c.pt.query(addr).unwrap();
    (t.level, t.contiguous)
}

#[test]
fn collapse_restores_block_after_restore() {
    for split in BOTH {
        let mut c = Checked::new(Regime::el2(), caps(split, true));
        c.run(|pt| {
            pt.map(0..G1, PhysAddr(0), Attributes::RW, MapFlags::NONE)
                .unwrap()
        });
        let original = raw(&c.pt);
        let page = 300 * M2 + 3 * K4;
        c.run(|pt| pt.change_attrs(page..page + K4, Attributes::RO).unwrap());
        let before = c.pt.counters();
        c.run(|pt| pt.change_attrs(page..page + K4, Attributes::RW).unwrap());
        let d = c.pt.counters().since(&before);
        assert_eq!((d.collapses_2m, d.collapses_1g), (1, 1), "{split:?}");
        assert_eq!(d.tables_freed, 2);
        assert_eq!(raw(&c.pt), original, "back to the very same tables");
        assert_eq!(c.pt.hardware().pages_in_use(), 2);
    }
}

#[test]
fn permission_change_of_whole_block_is_in_place() {
    for split in BOTH {
        let mut c = Checked::new(Regime::stage2(40).unwrap(), caps(split, false));
        c.run(|pt| {
            pt.map(0..4 * M2, PhysAddr(0), Attributes::RW, MapFlags::NONE)
                .unwrap()
        });
        let before = c.pt.counters();
        let report = c.run(|pt| pt.change_attrs(M2..2 * M2, Attributes::RO).unwrap());
        let d = c.pt.counters().since(&before);
        assert_eq!(
            report.transiently_unmapped, None,
            "RGPPYH: no break for permissions"
        );
        assert_eq!((d.descriptors_written, d.tables_allocated), (1, 0));
        // Stage 2: the IPA invalidation, then the VMID's stage 1 (combined entries).
        assert_eq!((d.tlbi_by_va, d.tlbi_all), (1, 1));
    }
}

#[test]
fn memory_type_change_always_breaks() {
    let mut c = Checked::new(Regime::el2(), caps(SplitStrategy::Bbml2, false));
    c.run(|pt| {
        pt.map(0..4 * M2, PhysAddr(0), Attributes::RW, MapFlags::NONE)
            .unwrap()
    });
    let nc = Attributes::new(Access::READ_WRITE, MemoryType::NormalNonCacheable);
    let report = c.run(|pt| pt.change_attrs(M2..2 * M2, nc).unwrap());
    assert_eq!(
        report.transiently_unmapped,
        Some(M2..2 * M2),
        "RWHZWS even with FEAT_BBM"
    );
    // A split for a new type: with FEAT_BBM the block becomes a table of identical pages
    // without a break (a change of size only, RKFLJB), then the one page inside the range
    // breaks for its new type; the rest of the block stays mapped throughout. (Before
    // issue 14 the block broke whole, its table carrying the new type in the same store.)
    let before = c.pt.counters();
    let report = c.run(|pt| {
        pt.change_attrs(3 * M2..3 * M2 + K4, Attributes::DEVICE)
            .unwrap()
    });
    let d = c.pt.counters().since(&before);
    assert_eq!(
        report.transiently_unmapped,
        Some(3 * M2..3 * M2 + K4),
        "the page with a new type breaks, the split does not"
    );
    assert_eq!((d.splits_2m, d.transient_unmaps), (1, 1));
    assert_eq!(c.pt.query(3 * M2).unwrap().attrs, Attributes::DEVICE);
    assert_eq!(c.pt.query(3 * M2 + K4).unwrap().attrs, Attributes::RW);
    // Without FEAT_BBM the split itself breaks, and carries the new type at once.
    let mut c = Checked::new(Regime::el2(), caps(SplitStrategy::BreakBeforeMake, false));
    c.run(|pt| {
        pt.map(0..4 * M2, PhysAddr(0), Attributes::RW, MapFlags::NONE)
            .unwrap()
    });
    let before = c.pt.counters();
    let report = c.run(|pt| {
        pt.change_attrs(3 * M2..3 * M2 + K4, Attributes::DEVICE)
            .unwrap()
    });
    assert_eq!(report.transiently_unmapped, Some(3 * M2..4 * M2));
    assert_eq!(c.pt.counters().since(&before).transient_unmaps, 1);
    assert_eq!(c.pt.query(3 * M2).unwrap().attrs, Attributes::DEVICE);
}

#[test]
fn cutting_a_contiguous_group_clears_the_whole_group() {
    for split in BOTH {
        let mut c = Checked::new(Regime::el2(), caps(split, false));
        c.run(|pt| {
            pt.map(0..K64, PhysAddr(0), Attributes::RW, MapFlags::NONE)
                .unwrap()
        });
        assert!(c.pt.query(0).unwrap().contiguous);
        let before = c.pt.counters();
        let report = c.run(|pt| pt.change_attrs(K4..2 * K4, Attributes::RO).unwrap());
        let d = c.pt.counters().since(&before);
        assert_eq!(d.cont_groups_cleared, 1);
        assert!((0..16).all(|i| !c.pt.query(i * K4).unwrap().contiguous));
        let expected = match split {
            SplitStrategy::Bbml2 => None,
            SplitStrategy::BreakBeforeMake => Some(0..K64),
        };
        assert_eq!(report.transiently_unmapped, expected);
        // Restoring sets the hint again.
        let before = c.pt.counters();
        c.run(|pt| pt.change_attrs(K4..2 * K4, Attributes::RW).unwrap());
        assert_eq!(c.pt.counters().since(&before).cont_groups_set, 1);
        assert!(c.pt.query(0).unwrap().contiguous);
    }
}

#[test]
fn change_of_range_spanning_blocks_splits_only_the_edges() {
    for split in BOTH {
        let mut c = Checked::new(Regime::el2(), caps(split, true));
        c.run(|pt| {
            pt.map(0..4 * G1, PhysAddr(0), Attributes::RW, MapFlags::NONE)
                .unwrap()
        });
        let before = c.pt.counters();
        c.run(|pt| {
            pt.change_attrs(G1 - K4..3 * G1 + M2, Attributes::RO)
                .unwrap()
        });
        let d = c.pt.counters().since(&before);
        assert_eq!((d.splits_1g, d.splits_2m), (2, 1), "{split:?}");
        assert_eq!(c.pt.query(2 * G1).unwrap().level, 1);
        assert_eq!(c.pt.query(2 * G1).unwrap().attrs, Attributes::RO);
    }
}

#[test]
fn unmap_splits_edges_and_frees_empty_tables() {
    for split in BOTH {
        let mut c = Checked::new(Regime::el2(), caps(split, false));
        c.run(|pt| {
            pt.map(
                0..2 * G1,
                PhysAddr(0),
                Attributes::RW,
                MapFlags::NO_BLOCK_MAPPINGS,
            )
            .unwrap()
        });
        let tables = c.pt.hardware().pages_in_use();
        c.run(|pt| pt.unmap(M2 - K4..G1 + K4).unwrap());
        assert!(c.pt.query(M2 - K4).is_none());
        assert!(c.pt.query(M2 - 2 * K4).is_some());
        assert!(c.pt.query(G1 + K4).is_some());
        assert!(c.pt.hardware().pages_in_use() < tables);
        c.run(|pt| pt.unmap(0..2 * G1).unwrap());
        assert_eq!(
            c.pt.hardware().pages_in_use(),
            1,
            "{split:?}: every emptied table freed"
        );
        assert_eq!(c.pt.unmap(0..1 << 39), Ok(crate::OpReport::default()));
    }
}

/// Issue 14: with FEAT_BBM level 2 an unmap inside a block splits it with the block's own
/// attributes everywhere, then removes the pages inside the range; nothing is broken.
#[test]
fn bbml2_unmap_inside_a_block_splits_before_removing() {
    for tlbi_range in [false, true] {
        let mut c = Checked::new(Regime::el2(), caps(SplitStrategy::Bbml2, tlbi_range));
        c.run(|pt| {
            pt.map(0..4 * M2, PhysAddr(0), Attributes::RW, MapFlags::NONE)
                .unwrap()
        });
        let before = c.pt.counters();
        let report = c.run(|pt| pt.unmap(M2 + K4..2 * M2 + 2 * K4).unwrap());
        let d = c.pt.counters().since(&before);
        assert_eq!(report.transiently_unmapped, None);
        assert_eq!((d.splits_2m, d.tables_allocated, d.tables_freed), (2, 2, 0));
        // 511 + 2 pages removed after the split: too many for TLBIs by address, so one
        // invalidation of the range (or of everything without FEAT_TLBIRANGE).
        assert_eq!(d.tlbi_total(), 1);
        assert_eq!(d.tlbi_range, u64::from(tlbi_range));
        assert!(c.pt.query(M2 + K4).is_none() && c.pt.query(2 * M2 + K4).is_none());
        assert_eq!(c.pt.query(M2).unwrap().level, 3);
        assert_eq!(c.pt.query(2 * M2 + 2 * K4).unwrap().attrs, Attributes::RW);
    }
}

#[test]
fn explicit_collapse_merges_separately_mapped_pieces() {
    for split in BOTH {
        let mut c = Checked::new(Regime::el2(), caps(split, false));
        c.run(|pt| {
            pt.map(0..M2 / 2, PhysAddr(0), Attributes::RW, MapFlags::NONE)
                .unwrap()
        });
        c.run(|pt| {
            pt.map(M2 / 2..M2, PhysAddr(M2 / 2), Attributes::RW, MapFlags::NONE)
                .unwrap()
        });
        // The second map touched the table of the first: already one block.
        assert_eq!(c.pt.query(0).unwrap().level, 2);
        let report = c.run(|pt| pt.collapse(0..G1).unwrap());
        assert_eq!(
            report.transiently_unmapped, None,
            "nothing left to collapse"
        );
    }
}
