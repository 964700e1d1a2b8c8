//! SMMUv3s and generic ECAM PCI host bridges (issue 17): QEMU's SMMU board (the fixture
//! the guest loader's tests use too, `guest-loader/tests/fixtures/README.md`), a
//! synthetic copy of its nodes, and hostile edits of that copy, each refused with an
//! error that names the node and never a panic.

mod common;

use common::{FdtBuilder, GOOD_FIXTURES, cells, tree};
use platform::dt::{self, DtError, PciProblem};
use platform::info::{
    IntxMask, IommuMapEntry, PciHostBridge, PciSpace, PciWindow, PhysRange, PlatformInfo, SmmuV3,
};

const BASE: u64 = 0x4800_0000;
/// `-machine iommu=smmuv3 -global arm-smmuv3.stage=2` with a virtio disk and NIC.
const QEMU_SMMU: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../guest-loader/tests/fixtures/qemu-virt-smp4-2g-smmuv3-s2-virtio.dtb"
));

fn range(base: u64, size: u64) -> PhysRange {
    PhysRange::new(base, size).unwrap()
}

fn parse_ok(blob: &[u8]) -> PlatformInfo<'_> {
    dt::parse(blob, BASE).unwrap_or_else(|error| panic!("parse failed: {error}"))
}

fn parse_err(blob: &[u8]) -> DtError {
    match dt::parse(blob, BASE) {
        Ok(info) => panic!("expected an error, got {info:?}"),
        Err(error) => error,
    }
}

/// The bridge problem of an error, checking that it names `/pcie@10000000`.
fn bridge_problem(error: DtError) -> PciProblem {
    match error {
        DtError::MalformedPciHostBridge { node, problem } => {
            assert_eq!(node.as_str(), "/pcie@10000000");
            let message = DtError::MalformedPciHostBridge { node, problem }.to_string();
            assert!(
                message.starts_with("/pcie@10000000: PCI host bridge: "),
                "{message}"
            );
            problem
        }
        other => panic!("not a bridge problem: {other:?}"),
    }
}

#[test]
fn qemu_smmu_and_bridge() {
    let info = parse_ok(QEMU_SMMU);
    let [smmu] = info.smmus.as_slice() else {
        panic!("{:?}", info.smmus)
    };
    // QEMU names them eventq, priq, cmdq-sync, gerror (SPIs 74..77): the names rule.
    assert_eq!(
        *smmu,
        SmmuV3 {
            regs: range(0x905_0000, 0x2_0000),
            path: dt::DtText::new("/smmuv3@9050000"),
            phandle: Some(0x8007),
            event_intid: Some(106),
            gerror_intid: Some(109),
            priq_intid: Some(107),
            cmdq_sync_intid: Some(108),
            coherent: true,
        }
    );
    let [bridge] = info.pci_host_bridges.as_slice() else {
        panic!("{:?}", info.pci_host_bridges)
    };
    assert_eq!(bridge.path.as_str(), "/pcie@10000000");
    assert_eq!(bridge.ecam, range(0x40_1000_0000, 0x1000_0000));
    assert_eq!((bridge.first_bus, bridge.last_bus), (0, 255));
    assert_eq!(bridge.rids(), 0..0x1_0000);
    assert_eq!(
        bridge.windows.as_slice(),
        [
            PciWindow {
                space: PciSpace::Io,
                prefetchable: false,
                pci_address: 0,
                cpu: range(0x3eff_0000, 0x1_0000),
            },
            PciWindow {
                space: PciSpace::Mem32,
                prefetchable: false,
                pci_address: 0x1000_0000,
                cpu: range(0x1000_0000, 0x2eff_0000),
            },
            PciWindow {
                space: PciSpace::Mem64,
                prefetchable: false,
                pci_address: 0x80_0000_0000,
                cpu: range(0x80_0000_0000, 0x80_0000_0000),
            },
        ]
    );
    assert_eq!(
        bridge.iommu_map.as_slice(),
        [IommuMapEntry {
            rid_base: 0,
            smmu_phandle: 0x8007,
            sid_base: 0,
            length: 0x1_0000,
        }]
    );
    assert_eq!(bridge.iommu_map_mask, None);
    assert_eq!(bridge.stream_of(0x0808), Some((0x8007, 0x0808)));
    assert!(bridge.msi_map && !bridge.msi_parent && bridge.coherent);
    assert_eq!(
        bridge.intx_mask,
        IntxMask {
            child_address: [0x1800, 0, 0],
            pin: 7
        }
    );
    // 4 slots x 4 pins onto SPIs 3..6, swizzled (INTA of slot n is SPI 3 + n % 4).
    assert_eq!(bridge.intx.len(), 16);
    let mut spis: Vec<u32> = bridge.intx.iter().map(|r| r.intid).collect();
    spis.sort_unstable();
    spis.dedup();
    assert_eq!(spis, [35, 36, 37, 38]);
    for device in 0..32u8 {
        for pin in 1..=4u32 {
            let expected = 35 + (u32::from(device) + pin - 1) % 4;
            assert_eq!(
                bridge.intx_intid(0, device, 0, pin),
                Some(expected),
                "{device} {pin}"
            );
        }
    }
    assert_eq!(bridge.intx[4].device(), 1);
}

#[test]
fn platform_fixtures_have_a_bridge_without_an_iommu() {
    // Plain QEMU virt: the same bridge with msi-map but no iommu-map, and no SMMU.
    for (name, blob) in GOOD_FIXTURES.iter().filter(|(n, _)| n.starts_with("qemu")) {
        let info = parse_ok(blob);
        assert!(info.smmus.is_empty(), "{name}");
        let [bridge] = info.pci_host_bridges.as_slice() else {
            panic!("{name}: {:?}", info.pci_host_bridges)
        };
        assert!(bridge.iommu_map.is_empty(), "{name}");
        assert_eq!(bridge.stream_of(0), None);
        assert_eq!(bridge.intx.len(), 16, "{name}");
        assert!(bridge.msi_map, "{name}");
    }
}

/// The properties of the synthetic tree's GIC, SMMU and bridge, by node and name.
type Props = Vec<(&'static str, &'static str, Vec<u8>)>;

const GIC: &str = "intc@8000000";
const SMMU: &str = "smmuv3@9050000";
const PCIE: &str = "pcie@10000000";
const GIC_PHANDLE: u32 = 0x8005;
const SMMU_PHANDLE: u32 = 0x8007;

/// QEMU's GIC, SMMU and bridge (fewer interrupt-map entries).
fn qemu_props() -> Props {
    let mut map = Vec::new();
    for (slot, pin, spi) in [(0, 1, 3), (0, 2, 4), (1, 1, 4), (1, 2, 5)] {
        map.extend([slot << 11, 0, 0, pin, GIC_PHANDLE, 0, 0, 0, spi, 4]);
    }
    vec![
        (GIC, "compatible", b"arm,gic-v3\0".to_vec()),
        (GIC, "phandle", cells(&[GIC_PHANDLE])),
        (GIC, "#address-cells", cells(&[2])),
        (GIC, "#size-cells", cells(&[2])),
        (GIC, "ranges", vec![]),
        (GIC, "#interrupt-cells", cells(&[3])),
        (GIC, "interrupt-controller", vec![]),
        (
            GIC,
            "reg",
            cells(&[0, 0x800_0000, 0, 0x1_0000, 0, 0x80a_0000, 0, 0xf6_0000]),
        ),
        (SMMU, "compatible", b"arm,smmu-v3\0".to_vec()),
        (SMMU, "phandle", cells(&[SMMU_PHANDLE])),
        (SMMU, "#iommu-cells", cells(&[1])),
        (SMMU, "dma-coherent", vec![]),
        (
            SMMU,
            "interrupt-names",
            b"eventq\0priq\0cmdq-sync\0gerror\0".to_vec(),
        ),
        (
            SMMU,
            "interrupts",
            cells(&[0, 0x4a, 1, 0, 0x4b, 1, 0, 0x4c, 1, 0, 0x4d, 1]),
        ),
        (SMMU, "reg", cells(&[0, 0x905_0000, 0, 0x2_0000])),
        (PCIE, "compatible", b"pci-host-ecam-generic\0".to_vec()),
        (PCIE, "device_type", b"pci\0".to_vec()),
        (PCIE, "#address-cells", cells(&[3])),
        (PCIE, "#size-cells", cells(&[2])),
        (PCIE, "#interrupt-cells", cells(&[1])),
        (PCIE, "bus-range", cells(&[0, 0xff])),
        (PCIE, "reg", cells(&[0x40, 0x1000_0000, 0, 0x1000_0000])),
        (
            PCIE,
            "ranges",
            cells(&[
                0x100_0000,
                0,
                0,
                0,
                0x3eff_0000,
                0,
                0x1_0000, //
                0x200_0000,
                0,
                0x1000_0000,
                0,
                0x1000_0000,
                0,
                0x2eff_0000, //
                0x300_0000,
                0x80,
                0,
                0x80,
                0,
                0x80,
                0,
            ]),
        ),
        (PCIE, "iommu-map", cells(&[0, SMMU_PHANDLE, 0, 0x1_0000])),
        (PCIE, "msi-map", cells(&[0, 0x8006, 0, 0x1_0000])),
        (PCIE, "interrupt-map-mask", cells(&[0x1800, 0, 0, 7])),
        (PCIE, "interrupt-map", cells(&map)),
        (PCIE, "dma-coherent", vec![]),
    ]
}

/// A platform tree (`common::tree`, its own GIC left out) with the nodes of `props`.
fn bridge_tree(props: &Props) -> Vec<u8> {
    tree(&["intc"], |b: &mut FdtBuilder| {
        for node in [GIC, SMMU, PCIE] {
            b.begin(node);
            for (_, name, value) in props.iter().filter(|(n, _, _)| *n == node) {
                b.prop(name, value);
            }
            b.end();
        }
    })
}

/// `qemu_props` with `node`'s `name` set to `value` (`None`: removed).
fn with(edits: &[(&'static str, &'static str, Option<Vec<u8>>)]) -> Vec<u8> {
    let mut props = qemu_props();
    for (node, name, value) in edits {
        props.retain(|(n, p, _)| !(n == node && p == name));
        if let Some(value) = value {
            props.push((node, name, value.clone()));
        }
    }
    bridge_tree(&props)
}

fn bridge_of(blob: &[u8]) -> PciHostBridge {
    let info = parse_ok(blob);
    let [bridge] = info.pci_host_bridges.as_slice() else {
        panic!("{:?}", info.pci_host_bridges)
    };
    bridge.clone()
}

#[test]
fn the_synthetic_copy_reads_like_qemu() {
    let blob = bridge_tree(&qemu_props());
    let info = parse_ok(&blob);
    assert_eq!(info.smmus.len(), 1);
    assert_eq!(info.smmus[0].event_intid, Some(106));
    let bridge = &info.pci_host_bridges[0];
    assert_eq!(bridge.windows.len(), 3);
    assert_eq!(bridge.intx_intid(0, 1, 0, 2), Some(37));
    assert_eq!(bridge.intx_intid(0, 2, 0, 1), None);
}

#[test]
fn truncated_iommu_map_is_refused() {
    for len in [4, 12, 20, 0] {
        let blob = with(&[(
            PCIE,
            "iommu-map",
            Some(cells(&[0, SMMU_PHANDLE, 0, 0x1_0000, 0])[..len].to_vec()),
        )]);
        assert_eq!(
            bridge_problem(parse_err(&blob)),
            PciProblem::Length {
                property: "iommu-map",
                len,
                entry_cells: 4
            }
        );
    }
}

/// An iommu-map naming an IOMMU that is no SMMUv3 of the DT (an SMMUv2, the GIC by
/// mistake, a disabled SMMU) does not stop the boot: the bridge is kept with the map as
/// written, and the guest loader refuses to give it away (no driven SMMU translates it).
#[test]
fn iommu_map_to_an_unknown_or_disabled_smmu_is_kept_for_the_loader_to_refuse() {
    for (name, blob) in [
        (
            "unknown",
            with(&[(PCIE, "iommu-map", Some(cells(&[0, 0x99, 0, 0x100])))]),
        ),
        (
            "the GIC",
            with(&[(
                PCIE,
                "iommu-map",
                Some(cells(&[
                    0,
                    SMMU_PHANDLE,
                    0,
                    0x100,
                    0x100,
                    GIC_PHANDLE,
                    0,
                    0x100,
                ])),
            )]),
        ),
        (
            "disabled",
            with(&[(SMMU, "status", Some(b"disabled\0".to_vec()))]),
        ),
    ] {
        let info = parse_ok(&blob);
        let bridge = info
            .pci_host_bridges
            .first()
            .unwrap_or_else(|| panic!("{name}: the bridge is kept"));
        assert!(!bridge.iommu_map.is_empty(), "{name}");
    }
}

#[test]
fn overflowing_ids_and_cells_are_refused() {
    let cases: [(&str, &str, Vec<u8>, PciProblem); 6] = [
        (
            PCIE,
            "iommu-map",
            cells(&[0xffff, SMMU_PHANDLE, 0, 2]),
            PciProblem::RidsOverflow {
                entry: 0,
                rid_base: 0xffff,
                length: 2,
            },
        ),
        (
            PCIE,
            "iommu-map",
            cells(&[0, SMMU_PHANDLE, 0xffff_ffff, 1]),
            PciProblem::SidsOverflow {
                entry: 0,
                sid_base: 0xffff_ffff,
                length: 1,
            },
        ),
        (
            PCIE,
            "iommu-map",
            cells(&[0, SMMU_PHANDLE, 0, 0]),
            PciProblem::EmptyIommuMapEntry { entry: 0 },
        ),
        (
            GIC,
            "#interrupt-cells",
            cells(&[0xffff_ffff]),
            PciProblem::Cells {
                which: "the GIC's #interrupt-cells",
                value: 0xffff_ffff,
                expected: "2 to 16 (type, number, ...)",
            },
        ),
        (
            GIC,
            "#address-cells",
            cells(&[0x4000_0000]),
            PciProblem::Cells {
                which: "the GIC's #address-cells",
                value: 0x4000_0000,
                expected: "at most 3",
            },
        ),
        (
            PCIE,
            "bus-range",
            cells(&[0, 0x100]),
            PciProblem::BusRange {
                first: 0,
                last: 0x100,
            },
        ),
    ];
    for (node, name, value, expected) in cases {
        let blob = with(&[(node, name, Some(value))]);
        assert_eq!(bridge_problem(parse_err(&blob)), expected, "{node} {name}");
    }
    // A window whose end passes 2^64.
    let window = cells(&[0x300_0000, 0, 0, 0xffff_ffff, 0xffff_0000, 0, 0x2_0000]);
    let error = parse_err(&with(&[(PCIE, "ranges", Some(window))]));
    assert!(
        matches!(&error, DtError::RangeOverflow { node, .. } if node.as_str() == "/pcie@10000000"),
        "{error:?}"
    );
    // A bridge whose address is not three cells.
    let error = parse_err(&with(&[(PCIE, "#address-cells", Some(cells(&[2])))]));
    assert!(matches!(
        bridge_problem(error),
        PciProblem::Cells {
            which: "#address-cells",
            value: 2,
            ..
        }
    ));
}

#[test]
fn interrupt_map_must_lead_to_gic_spis() {
    let entry = |parent: u32, kind: u32| cells(&[0, 0, 0, 1, parent, 0, 0, kind, 3, 4]);
    let to_smmu = with(&[(PCIE, "interrupt-map", Some(entry(SMMU_PHANDLE, 0)))]);
    assert_eq!(
        bridge_problem(parse_err(&to_smmu)),
        PciProblem::ParentNotGic {
            entry: 0,
            phandle: SMMU_PHANDLE
        }
    );
    let ppi = with(&[(PCIE, "interrupt-map", Some(entry(GIC_PHANDLE, 1)))]);
    assert_eq!(
        bridge_problem(parse_err(&ppi)),
        PciProblem::NotSpi {
            entry: 0,
            kind: 1,
            number: 3
        }
    );
    // A GIC without a phandle cannot be named by any entry.
    let anonymous = with(&[(GIC, "phandle", None)]);
    assert!(matches!(
        bridge_problem(parse_err(&anonymous)),
        PciProblem::ParentNotGic { entry: 0, .. }
    ));
    // One cell short: the entries no longer divide the property.
    let mut short = entry(GIC_PHANDLE, 0);
    short.truncate(36);
    assert!(matches!(
        bridge_problem(parse_err(&with(&[(PCIE, "interrupt-map", Some(short))]))),
        PciProblem::Length {
            property: "interrupt-map",
            ..
        }
    ));
    // A bridge without #interrupt-cells cannot be decoded.
    assert!(matches!(
        bridge_problem(parse_err(&with(&[(PCIE, "#interrupt-cells", None)]))),
        PciProblem::Cells {
            which: "#interrupt-cells",
            value: 0,
            ..
        }
    ));
    // Without interrupt-map there are no routes, and nothing to refuse.
    let bridge = bridge_of(&with(&[(PCIE, "interrupt-map", None)]));
    assert!(bridge.intx.is_empty());
    assert_eq!(bridge.intx_intid(0, 0, 0, 1), None);
}

#[test]
fn iommu_map_mask_and_several_entries() {
    // Two SMMU ranges, functions folded onto function 0 by the mask.
    let blob = with(&[
        (
            PCIE,
            "iommu-map",
            Some(cells(&[
                0,
                SMMU_PHANDLE,
                0x100,
                0x80,
                0x80,
                SMMU_PHANDLE,
                0x1000,
                0x80,
            ])),
        ),
        (PCIE, "iommu-map-mask", Some(cells(&[0xfff8]))),
    ]);
    let bridge = bridge_of(&blob);
    assert_eq!(bridge.iommu_map_mask, Some(0xfff8));
    assert_eq!(bridge.stream_of(0x0f), Some((SMMU_PHANDLE, 0x108)));
    assert_eq!(bridge.stream_of(0x81), Some((SMMU_PHANDLE, 0x1000)));
    assert_eq!(bridge.stream_of(0x100), None);
    assert_eq!(bridge.iommu_map[1].sids(), 0x1000..0x1080);
    let bad_mask = with(&[(PCIE, "iommu-map-mask", Some(vec![0; 3]))]);
    assert!(matches!(
        bridge_problem(parse_err(&bad_mask)),
        PciProblem::Length {
            property: "iommu-map-mask",
            len: 3,
            ..
        }
    ));
}

#[test]
fn smmu_interrupts_by_name_binding_order_or_combined() {
    let smmu_of = |edits: &[(&'static str, &'static str, Option<Vec<u8>>)]| {
        let blob = with(edits);
        let info = parse_ok(&blob);
        info.smmus[0]
    };
    let ordered = smmu_of(&[(SMMU, "interrupt-names", None)]);
    assert_eq!(
        (
            ordered.event_intid,
            ordered.gerror_intid,
            ordered.priq_intid,
            ordered.cmdq_sync_intid
        ),
        (Some(106), Some(107), Some(108), Some(109))
    );
    let combined = smmu_of(&[
        (SMMU, "interrupt-names", Some(b"combined\0".to_vec())),
        (SMMU, "interrupts", Some(cells(&[0, 0x4a, 1]))),
    ]);
    assert_eq!(
        (
            combined.event_intid,
            combined.gerror_intid,
            combined.priq_intid,
            combined.cmdq_sync_intid
        ),
        (Some(106), Some(106), Some(106), None)
    );
    let msi_only = smmu_of(&[
        (SMMU, "interrupt-names", None),
        (SMMU, "interrupts", None),
        (SMMU, "dma-coherent", None),
    ]);
    assert_eq!((msi_only.event_intid, msi_only.coherent), (None, false));

    for (edits, property) in [
        (
            vec![(SMMU, "interrupt-names", Some(b"eventq\0gerror\0".to_vec()))],
            "interrupt-names",
        ),
        (
            vec![(SMMU, "#iommu-cells", Some(cells(&[2])))],
            "#iommu-cells",
        ),
    ] {
        let error = parse_err(&with(&edits));
        assert!(
            matches!(
                &error,
                DtError::MalformedProperty { node, property: p, .. }
                    if node.as_str() == "/smmuv3@9050000" && *p == property
            ),
            "{error:?}"
        );
    }
    let error = parse_err(&with(&[(SMMU, "interrupts", Some(cells(&[0, 1])))]));
    assert!(
        matches!(error, DtError::MalformedInterrupts { .. }),
        "{error:?}"
    );
    let error = parse_err(&with(&[(SMMU, "#iommu-cells", None)]));
    assert!(
        matches!(error, DtError::MissingProperty { .. }),
        "{error:?}"
    );
}

#[test]
fn disabled_bridges_are_skipped_and_tables_have_limits() {
    let info_blob = with(&[(PCIE, "status", Some(b"disabled\0".to_vec()))]);
    assert!(parse_ok(&info_blob).pci_host_bridges.is_empty());
    let mut props = qemu_props();
    let bridge: Vec<_> = props
        .iter()
        .filter(|(n, _, _)| *n == PCIE)
        .map(|(_, name, value)| (*name, value.clone()))
        .collect();
    props.retain(|(n, _, _)| *n != PCIE);
    let blob = tree(&["intc"], |b: &mut FdtBuilder| {
        for node in [GIC, SMMU] {
            b.begin(node);
            for (_, name, value) in props.iter().filter(|(n, _, _)| *n == node) {
                b.prop(name, value);
            }
            b.end();
        }
        for i in 0..=platform::info::MAX_PCI_HOST_BRIDGES {
            b.begin(&format!("pcie@{i}"));
            for (name, value) in &bridge {
                b.prop(name, value);
            }
            b.end();
        }
    });
    assert!(matches!(
        parse_err(&blob),
        DtError::TooMany {
            what: "PCI host bridges",
            ..
        }
    ));
    let wrong_type = with(&[(PCIE, "device_type", Some(b"pciex\0".to_vec()))]);
    assert!(matches!(
        parse_err(&wrong_type),
        DtError::MalformedProperty {
            property: "device_type",
            ..
        }
    ));
}

/// Every cell of every property of the three nodes replaced by a few values, and every
/// property cut short: `parse` returns, and a bridge it accepts keeps its promises.
#[test]
fn every_map_cell_replaced_or_cut_never_panics() {
    let props = qemu_props();
    let check = |blob: &[u8], what: &str| {
        // The error as text: `DtError` is large by design, too large for a closure's
        // result by clippy's measure.
        let result = std::panic::catch_unwind(|| {
            dt::parse(blob, BASE)
                .map(|info| (info.smmus.to_vec(), info.pci_host_bridges.to_vec()))
                .map_err(|error| error.to_string())
        });
        match result {
            Err(_) => panic!("parse panicked: {what}"),
            Ok(Err(error)) => assert!(!error.is_empty()),
            Ok(Ok((_smmus, bridges))) => {
                // An iommu-map entry may name an IOMMU that is no SMMUv3 (the loader
                // refuses such a bridge), but it is always a well-formed one.
                for bridge in &bridges {
                    assert!(bridge.first_bus <= bridge.last_bus, "{what}");
                    for entry in &bridge.iommu_map {
                        assert!(entry.length > 0 && entry.rids().end <= 0x1_0000, "{what}");
                    }
                    for route in &bridge.intx {
                        assert!((32..1020).contains(&route.intid), "{what}");
                    }
                }
            }
        }
    };
    for (index, (node, name, value)) in props.iter().enumerate() {
        for cell in 0..value.len() / 4 {
            for word in [0u32, 1, 3, 0x8005, 0x8007, 0xffff_ffff] {
                let mut edited = props.clone();
                edited[index].2[cell * 4..cell * 4 + 4].copy_from_slice(&word.to_be_bytes());
                check(
                    &bridge_tree(&edited),
                    &format!("{node} {name}[{cell}] = {word:#x}"),
                );
            }
        }
        for len in 0..value.len() {
            let mut edited = props.clone();
            edited[index].2.truncate(len);
            check(
                &bridge_tree(&edited),
                &format!("{node} {name} cut to {len}"),
            );
        }
    }
}
