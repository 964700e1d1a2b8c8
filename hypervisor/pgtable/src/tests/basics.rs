//! Map, query, walk: the shapes the engine builds.

use super::support::*;
use crate::check::check_invariants;
use crate::{Access, Attributes, MapFlags, MemoryType, PhysAddr, Regime, SplitStrategy};

#[test]
fn map_1g_aligned_is_one_block() {
    let mut pt = tree(Regime::el2(), caps(SplitStrategy::Bbml2, true), 64);
    pt.map(G1..2 * G1, PhysAddr(4 * G1), Attributes::RW, MapFlags::NONE)
        .unwrap();
    let t = pt.query(G1 + 0x1234).unwrap();
    assert_eq!(t.pa, PhysAddr(4 * G1 + 0x1234));
    assert_eq!(t.level, 1);
    assert_eq!(t.attrs, Attributes::RW);
    let c = pt.counters();
    // Root + one level-1 table; one table descriptor and one block written.
    assert_eq!(c.tables_allocated, 2);
    assert_eq!(c.descriptors_written, 2);
    assert_eq!(
        c.tlbi_total(),
        0,
        "building a tree that is not live needs no TLBI"
    );
    assert_eq!(c.dsb, 0);
    check_invariants(&pt).unwrap();
}

#[test]
fn map_uses_contiguous_groups_of_pages_and_blocks() {
    let mut pt = tree(Regime::el2(), caps(SplitStrategy::Bbml2, true), 64);
    // 64 KiB of pages at a 64 KiB boundary, then 32 MiB of 2 MiB blocks.
    pt.map(K64..2 * K64, PhysAddr(K64), Attributes::RO, MapFlags::NONE)
        .unwrap();
    pt.map(G1..G1 + M32, PhysAddr(G1), Attributes::RW, MapFlags::NONE)
        .unwrap();
    let t = pt.query(K64 + K4).unwrap();
    assert_eq!((t.level, t.contiguous), (3, true));
    let t = pt.query(G1 + M2).unwrap();
    assert_eq!((t.level, t.contiguous), (2, true));
    let runs: std::vec::Vec<_> = dump(&pt);
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].leaves, 16);
    assert_eq!(runs[1].leaves, 16);
    check_invariants(&pt).unwrap();
}

#[test]
fn no_block_and_no_cont_flags_are_honoured_and_remembered() {
    let mut pt = tree(Regime::el2(), caps(SplitStrategy::Bbml2, true), 64);
    pt.map(
        0..M2,
        PhysAddr(0),
        Attributes::RW,
        MapFlags::NO_BLOCK_MAPPINGS,
    )
    .unwrap();
    let t = pt.query(0).unwrap();
    assert_eq!(
        (t.level, t.contiguous, t.flags),
        (3, true, MapFlags::NO_BLOCK_MAPPINGS)
    );
    pt.map(
        M2..2 * M2,
        PhysAddr(M2),
        Attributes::RW,
        MapFlags::NO_CONT_MAPPINGS,
    )
    .unwrap();
    assert_eq!(pt.query(M2).unwrap().level, 2);
    pt.map(
        G1..G1 + M2,
        PhysAddr(G1),
        Attributes::RW,
        MapFlags::NO_BLOCK_MAPPINGS | MapFlags::NO_CONT_MAPPINGS,
    )
    .unwrap();
    let t = pt.query(G1).unwrap();
    assert_eq!((t.level, t.contiguous), (3, false));
    check_invariants(&pt).unwrap();
}

#[test]
fn misaligned_pa_falls_back_to_smaller_leaves() {
    let mut pt = tree(Regime::el2(), caps(SplitStrategy::Bbml2, true), 64);
    // VA 1 GiB aligned, PA only 4 KiB aligned: pages, no blocks, no groups.
    pt.map(
        G1..G1 + 4 * M2,
        PhysAddr(K4),
        Attributes::RW,
        MapFlags::NONE,
    )
    .unwrap();
    let t = pt.query(G1).unwrap();
    assert_eq!((t.level, t.contiguous), (3, false));
    check_invariants(&pt).unwrap();
}

#[test]
fn map_over_identical_mapping_is_allowed_other_is_refused() {
    let mut pt = tree(Regime::el2(), caps(SplitStrategy::Bbml2, true), 64);
    pt.map(0..G1, PhysAddr(0), Attributes::RW, MapFlags::NONE)
        .unwrap();
    let before = raw(&pt);
    pt.map(M2..2 * M2, PhysAddr(M2), Attributes::RW, MapFlags::NONE)
        .unwrap();
    assert_eq!(raw(&pt), before);
    assert_eq!(
        pt.map(M2..2 * M2, PhysAddr(0), Attributes::RW, MapFlags::NONE),
        Err(crate::Error::AlreadyMapped { addr: M2 })
    );
    assert_eq!(
        pt.map(
            G1 - K4..G1 + K4,
            PhysAddr(G1 - K4),
            Attributes::RO,
            MapFlags::NONE
        ),
        Err(crate::Error::AlreadyMapped { addr: G1 - K4 })
    );
    assert_eq!(raw(&pt), before);
}

#[test]
fn bad_requests_are_errors() {
    use crate::Error::*;
    let mut pt = tree(Regime::el2(), caps(SplitStrategy::Bbml2, true), 64);
    let rw = Attributes::RW;
    assert_eq!(
        pt.map(1..K4, PhysAddr(0), rw, MapFlags::NONE),
        Err(Misaligned { value: 1 })
    );
    assert_eq!(
        pt.map(0..K4, PhysAddr(12), rw, MapFlags::NONE),
        Err(Misaligned { value: 12 })
    );
    assert_eq!(
        pt.map(K4..K4, PhysAddr(0), rw, MapFlags::NONE),
        Err(EmptyRange)
    );
    assert_eq!(
        pt.map(0..1 << 49, PhysAddr(0), rw, MapFlags::NONE),
        Err(OutOfRange { addr: 1 << 48 })
    );
    assert_eq!(
        pt.map(0..K4, PhysAddr(1 << 48), rw, MapFlags::NONE),
        Err(OutOfRange { addr: 1 << 48 })
    );
    let wx = Attributes::new(
        Access::READ | Access::WRITE | Access::EXECUTE,
        MemoryType::NormalWriteBack,
    );
    assert_eq!(
        pt.map(0..K4, PhysAddr(0), wx, MapFlags::NONE),
        Err(WriteAndExecute)
    );
    assert_eq!(pt.change_attrs(0..K4, rw), Err(NotMapped { addr: 0 }));
    let mut s2 = tree(
        Regime::stage2(40).unwrap(),
        caps(SplitStrategy::Bbml2, true),
        64,
    );
    assert_eq!(
        s2.map(0..1 << 41, PhysAddr(0), rw, MapFlags::NONE),
        Err(OutOfRange { addr: 1 << 40 })
    );
    assert!(
        s2.map(0..K4, PhysAddr(0), wx, MapFlags::NONE).is_ok(),
        "W+X is a stage-2 guest's business"
    );
}

#[test]
fn stage2_concatenated_root_maps_whole_ipa_space() {
    for bits in [32u8, 36, 40, 42, 44, 48] {
        let regime = Regime::stage2(bits).unwrap();
        let mut pt = tree(regime, caps(SplitStrategy::Bbml2, true), 64);
        let top = (1u64 << bits) - M2;
        pt.map(top..top + M2, PhysAddr(M2), Attributes::RW, MapFlags::NONE)
            .unwrap();
        pt.map(0..K4, PhysAddr(0), Attributes::DEVICE, MapFlags::NONE)
            .unwrap();
        assert_eq!(pt.query(top + 5 * K4).unwrap().pa, PhysAddr(M2 + 5 * K4));
        assert_eq!(pt.query(0).unwrap().attrs, Attributes::DEVICE);
        check_invariants(&pt).unwrap();
    }
}

#[test]
fn live_map_batches_barriers_and_needs_no_tlbi() {
    let mut c = Checked::new(Regime::el2(), caps(SplitStrategy::BreakBeforeMake, false));
    let before = c.pt.counters();
    c.run(|pt| {
        pt.map(
            0..4 * G1 + 3 * M2 + 5 * K4,
            PhysAddr(0),
            Attributes::RW,
            MapFlags::NONE,
        )
        .unwrap()
    });
    let d = c.pt.counters().since(&before);
    assert_eq!(d.tlbi_total(), 0);
    // One DSB publishes the new subtree, one makes the entries visible, one ISB.
    assert_eq!((d.dsb, d.isb), (2, 1));
}
