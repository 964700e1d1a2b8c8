//! A PCI host bridge given whole to a guest when the hypervisor drives its SMMU (issue
//! 17), on QEMU's SMMUv3 board with a virtio disk and NIC (`fixtures/README.md`), and
//! refused when it does not or when the maps say some DMA would escape.

use std::collections::BTreeMap;

use guest_loader::devices::{InterruptProblem, XEN_PASSTHROUGH};
use guest_loader::{
    DeviceAssignment, DeviceRequest, GuestDtSpec, PassthroughDevice, Refusal, StreamRange,
    assign_devices, build_guest_dtb_for, passthrough_regions,
};
use platform::dt::PciProblem;
use platform::info::{Conduit, PhysRange};
use vm_fdt::FdtWriter;

/// `iommu=smmuv3`, `arm-smmuv3.stage=2`, virtio-blk-pci and virtio-net-pci.
const QEMU_SMMU: &[u8] = include_bytes!("fixtures/qemu-virt-smp4-2g-smmuv3-s2-virtio.dtb");
/// The same with `xen,passthrough` on /pcie@10000000.
const QEMU_SMMU_XEN_PCIE: &[u8] =
    include_bytes!("fixtures/qemu-virt-smp4-2g-smmuv3-s2-virtio-pcie-xen-passthrough.dtb");
const PCIE: &str = "/pcie@10000000";
const SMMU: &str = "/smmuv3@9050000";
const SMMU_PHANDLE: u32 = 0x8007;
const GIC_PHANDLE: u32 = 0x8005;

const HIDDEN: [PhysRange; 1] = [PhysRange {
    base: 0x4000_0000,
    size: 0x200_0000,
}];
const GUEST_RAM: [PhysRange; 1] = [PhysRange {
    base: 0x4200_0000,
    size: 0x7e00_0000,
}];

fn range(base: u64, size: u64) -> PhysRange {
    PhysRange::new(base, size).unwrap()
}

fn assign(host: &[u8], paths: &[&str], smmus_driven: &[u32]) -> DeviceAssignment {
    assign_devices(
        host,
        &DeviceRequest {
            vcpus: 4,
            guest_ram: &GUEST_RAM,
            hidden: &HIDDEN,
            passthrough_paths: paths,
            smmus_driven,
            marked_passthrough: true,
        },
    )
    .unwrap()
}

fn guest_dtb(host: &[u8], assignment: &DeviceAssignment) -> Vec<u8> {
    let spec = GuestDtSpec {
        memory: &GUEST_RAM,
        bootargs: Some("console=ttyAMA0"),
        initrd: None,
        vcpus: 4,
        psci_conduit: Conduit::Hvc,
        hidden: &HIDDEN,
        kaslr_seed: None,
        rng_seed: None,
    };
    build_guest_dtb_for(host, &spec, assignment).unwrap()
}

type Props = BTreeMap<String, Vec<u8>>;

/// Every node of a DTB by path, with its properties.
fn model(dtb: &[u8]) -> BTreeMap<String, Props> {
    fn walk(node: fdt::node::FdtNode<'_, '_>, path: String, out: &mut BTreeMap<String, Props>) {
        let props = node
            .properties()
            .map(|p| (p.name.to_string(), p.value.to_vec()))
            .collect();
        for child in node.children() {
            let child_path = if path == "/" {
                format!("/{}", child.name)
            } else {
                format!("{path}/{}", child.name)
            };
            walk(child, child_path, out);
        }
        out.insert(path, props);
    }
    let fdt = fdt::Fdt::new(dtb).unwrap();
    let mut out = BTreeMap::new();
    walk(fdt.find_node("/").unwrap(), "/".to_string(), &mut out);
    out
}

fn cells(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// `host` with properties of nodes set (`Some`) or removed (`None`). Tests only: the
/// `fdt` crate panics on malformed blobs, and the fixtures are well formed.
fn with(host: &[u8], edits: &[(&str, &str, Option<Vec<u8>>)]) -> Vec<u8> {
    fn copy(
        node: fdt::node::FdtNode<'_, '_>,
        path: &str,
        w: &mut FdtWriter,
        edits: &[(&str, &str, Option<Vec<u8>>)],
    ) {
        let handle = w
            .begin_node(if path == "/" { "" } else { node.name })
            .unwrap();
        let mut props: Vec<(String, Vec<u8>)> = node
            .properties()
            .map(|p| (p.name.to_string(), p.value.to_vec()))
            .collect();
        for (at, name, value) in edits.iter().filter(|(at, _, _)| *at == path) {
            props.retain(|(n, _)| n != name);
            if let Some(value) = value {
                props.push((name.to_string(), value.clone()));
            }
            let _ = at;
        }
        for (name, value) in &props {
            w.property(name, value).unwrap();
        }
        for child in node.children() {
            let child_path = if path == "/" {
                format!("/{}", child.name)
            } else {
                format!("{path}/{}", child.name)
            };
            copy(child, &child_path, w, edits);
        }
        w.end_node(handle).unwrap();
    }
    let fdt = fdt::Fdt::new(host).unwrap();
    let mut w = FdtWriter::new().unwrap();
    copy(fdt.find_node("/").unwrap(), "/", &mut w, edits);
    w.finish().unwrap()
}

fn refusal<'a>(assignment: &'a DeviceAssignment, path: &str) -> &'a Refusal {
    &assignment
        .refused
        .iter()
        .find(|r| r.path == path)
        .unwrap_or_else(|| panic!("{path} not refused: {assignment:#?}"))
        .reason
}

/// The bridge as QEMU describes it, given whole.
fn qemu_bridge() -> PassthroughDevice {
    PassthroughDevice {
        path: PCIE.to_string(),
        // ECAM, then the I/O, 32-bit and 64-bit windows.
        mmio: vec![
            range(0x40_1000_0000, 0x1000_0000),
            range(0x3eff_0000, 0x1_0000),
            range(0x1000_0000, 0x2eff_0000),
            range(0x80_0000_0000, 0x80_0000_0000),
        ],
        regions: vec![
            range(0x1000_0000, 0x2f00_0000),
            range(0x40_1000_0000, 0x1000_0000),
            range(0x80_0000_0000, 0x80_0000_0000),
        ],
        // interrupt-map: INTA..INTD of the four slots onto SPIs 3..6.
        intids: vec![35, 36, 37, 38],
        streams: vec![StreamRange {
            smmu: SMMU_PHANDLE,
            sids: 0..0x1_0000,
        }],
    }
}

#[test]
fn without_a_driven_smmu_nothing_changes() {
    // No request: the same assignment as the board without the virtio devices.
    let plain = assign(QEMU_SMMU, &[], &[]);
    assert_eq!(plain.passthrough, []);
    assert_eq!(plain.refused, []);
    assert_eq!(plain.streams(), []);
    let guest = model(&guest_dtb(QEMU_SMMU, &plain));
    assert!(
        !guest
            .keys()
            .any(|p| p.contains("pcie") || p.contains("smmu"))
    );
    // Asked for (either way) while the hypervisor drives no SMMU: refused as before.
    for (host, paths) in [(QEMU_SMMU_XEN_PCIE, &[][..]), (QEMU_SMMU, &[PCIE][..])] {
        let assignment = assign(host, paths, &[]);
        assert_eq!(assignment.passthrough, []);
        assert!(matches!(
            refusal(&assignment, PCIE),
            Refusal::DmaWithoutIommu { evidence } if evidence.contains("PCI host bridge")
        ));
        assert_eq!(assignment.streams(), []);
    }
}

#[test]
fn with_its_smmu_driven_the_bridge_is_given_whole() {
    for (host, paths) in [(QEMU_SMMU_XEN_PCIE, &[][..]), (QEMU_SMMU, &[PCIE][..])] {
        let assignment = assign(host, paths, &[SMMU_PHANDLE]);
        assert_eq!(assignment.refused, [], "{assignment:#?}");
        assert_eq!(assignment.passthrough, [qemu_bridge()]);
        assert_eq!(
            assignment.streams(),
            [StreamRange {
                smmu: SMMU_PHANDLE,
                sids: 0..0x1_0000,
            }]
        );
        assert_eq!(assignment.passthrough_intids(), [35, 36, 37, 38]);
        // The 64-bit window ends at 1 TiB: a 40-bit IPA space (the hypervisor's floor).
        let regions = assignment.passthrough_regions();
        assert_eq!(regions, qemu_bridge().regions);
        assert_eq!(regions.last().map(PhysRange::end), Some(1 << 40));
        assert_eq!(
            assignment.console_line(1),
            "guest-devices: guest=1 emulated=gicv3@0x8000000,pl011@0x9000000 \
             passthrough=pcie@0x4010000000 refused=none"
        );

        let dtb = guest_dtb(host, &assignment);
        let guest = model(&dtb);
        let host_model = model(host);
        let bridge = &guest[PCIE];
        for gone in ["iommu-map", "iommu-map-mask", "msi-map", "msi-parent"] {
            assert!(!bridge.contains_key(gone), "{gone}");
        }
        // INTx stays routed to the emulated GIC, which keeps the host's phandle.
        for kept in [
            "interrupt-map",
            "interrupt-map-mask",
            "#interrupt-cells",
            "reg",
            "ranges",
            "bus-range",
            "dma-coherent",
            "device_type",
        ] {
            assert_eq!(bridge.get(kept), host_model[PCIE].get(kept), "{kept}");
        }
        assert_eq!(guest["/intc@8000000"]["phandle"], cells(&[GIC_PHANDLE]));
        assert!(
            !guest
                .keys()
                .any(|p| p.contains("smmu") || p.contains("its@"))
        );
        // What the guest's DT shows is what stage 2 maps.
        assert_eq!(passthrough_regions(&dtb).unwrap(), regions);
        // The guest's DT parses as a platform whose bridge has INTx and no IOMMU.
        let info = platform::dt::parse(&dtb, 0x4200_0000).unwrap();
        assert!(info.smmus.is_empty());
        let [parsed] = info.pci_host_bridges.as_slice() else {
            panic!("{:?}", info.pci_host_bridges)
        };
        assert!(parsed.iommu_map.is_empty() && !parsed.msi_map && !parsed.msi_parent);
        assert_eq!(parsed.intx_intid(0, 1, 0, 1), Some(36));
    }
}

#[test]
fn the_smmu_itself_is_never_given() {
    let assignment = assign(QEMU_SMMU, &[SMMU, PCIE], &[SMMU_PHANDLE]);
    assert!(matches!(
        refusal(&assignment, SMMU),
        Refusal::HypervisorOwned { .. }
    ));
    assert_eq!(assignment.passthrough, [qemu_bridge()]);
}

#[test]
fn an_smmu_the_hypervisor_does_not_drive_keeps_the_bridge_refused() {
    let assignment = assign(QEMU_SMMU, &[PCIE], &[0x1234]);
    let reason = refusal(&assignment, PCIE);
    assert_eq!(
        reason,
        &Refusal::IommuNotDriven {
            rid: 0,
            smmu: Some(SMMU_PHANDLE)
        }
    );
    let message = reason.to_string();
    assert!(
        message.starts_with("DMA-capable: no IOMMU the hypervisor controls: requester ID 0x0000"),
        "{message}"
    );
    assert_eq!(assignment.streams(), []);
}

#[test]
fn every_requester_id_must_reach_a_driven_smmu() {
    let refused = |edits: &[(&str, &str, Option<Vec<u8>>)]| {
        let host = with(QEMU_SMMU, edits);
        refusal(&assign(&host, &[PCIE], &[SMMU_PHANDLE]), PCIE).clone()
    };
    // Half of the buses have no entry.
    assert_eq!(
        refused(&[(
            PCIE,
            "iommu-map",
            Some(cells(&[0, SMMU_PHANDLE, 0, 0x8000]))
        )]),
        Refusal::IommuNotDriven {
            rid: 0x8000,
            smmu: None
        }
    );
    // The second half goes to another SMMU.
    let split = cells(&[0, SMMU_PHANDLE, 0, 0x8000, 0x8000, 0x4321, 0, 0x8000]);
    assert_eq!(
        refused(&[(PCIE, "iommu-map", Some(split))]),
        Refusal::IommuNotDriven {
            rid: 0x8000,
            smmu: Some(0x4321)
        }
    );
    // No iommu-map at all.
    let none = refused(&[(PCIE, "iommu-map", None)]);
    assert_eq!(none, Refusal::IommuNotDriven { rid: 0, smmu: None });
    assert!(
        none.to_string().contains("has no iommu-map entry"),
        "{none}"
    );
    // Truncated.
    assert_eq!(
        refused(&[(PCIE, "iommu-map", Some(cells(&[0, SMMU_PHANDLE, 0])))]),
        Refusal::PciMap(PciProblem::Length {
            property: "iommu-map",
            len: 12,
            entry_cells: 4
        })
    );
    // RIDs past 0xffff.
    assert!(matches!(
        refused(&[(
            PCIE,
            "iommu-map",
            Some(cells(&[0xff00, SMMU_PHANDLE, 0, 0x200]))
        )]),
        Refusal::PciMap(PciProblem::RidsOverflow { .. })
    ));
}

#[test]
fn fewer_buses_or_a_mask_give_fewer_streams() {
    let assign_with = |edits: &[(&str, &str, Option<Vec<u8>>)]| {
        let host = with(QEMU_SMMU, edits);
        assign(&host, &[PCIE], &[SMMU_PHANDLE])
    };
    // Buses 0..=0x7f: half the requester IDs, half the StreamIDs.
    let half = assign_with(&[(PCIE, "bus-range", Some(cells(&[0, 0x7f])))]);
    assert_eq!(
        half.streams(),
        [StreamRange {
            smmu: SMMU_PHANDLE,
            sids: 0..0x8000
        }]
    );
    // Two entries with an offset, and functions folded by iommu-map-mask.
    let folded = assign_with(&[
        (
            PCIE,
            "iommu-map",
            Some(cells(&[
                0,
                SMMU_PHANDLE,
                0x10_0000,
                0x8000,
                0x8000,
                SMMU_PHANDLE,
                0x20_0000,
                0x8000,
            ])),
        ),
        (PCIE, "iommu-map-mask", Some(cells(&[0xfff8]))),
    ]);
    assert_eq!(
        folded.streams(),
        [
            StreamRange {
                smmu: SMMU_PHANDLE,
                sids: 0x10_0000..0x10_7ff9
            },
            StreamRange {
                smmu: SMMU_PHANDLE,
                sids: 0x20_0000..0x20_7ff9
            },
        ]
    );
}

#[test]
fn intx_must_lead_to_the_gic() {
    let refused = |map: Vec<u8>| {
        let host = with(QEMU_SMMU, &[(PCIE, "interrupt-map", Some(map))]);
        refusal(&assign(&host, &[PCIE], &[SMMU_PHANDLE]), PCIE).clone()
    };
    let entry = |parent: u32, kind: u32| cells(&[0, 0, 0, 1, parent, 0, 0, kind, 3, 4]);
    assert_eq!(
        refused(entry(SMMU_PHANDLE, 0)),
        Refusal::Interrupts(InterruptProblem::NotTheGic {
            parent: SMMU.to_string()
        })
    );
    assert_eq!(
        refused(entry(0x4444, 0)),
        Refusal::Interrupts(InterruptProblem::UnknownParent { phandle: 0x4444 })
    );
    assert_eq!(
        refused(entry(GIC_PHANDLE, 1)),
        Refusal::PciMap(PciProblem::NotSpi {
            entry: 0,
            kind: 1,
            number: 3
        })
    );
    // One entry, one SPI.
    let host = with(
        QEMU_SMMU,
        &[(PCIE, "interrupt-map", Some(entry(GIC_PHANDLE, 0)))],
    );
    assert_eq!(
        assign(&host, &[PCIE], &[SMMU_PHANDLE]).passthrough_intids(),
        [35]
    );
    // A disabled bridge is refused as disabled, whatever its maps.
    let disabled = with(QEMU_SMMU, &[(PCIE, "status", Some(b"disabled\0".to_vec()))]);
    assert!(matches!(
        refusal(&assign(&disabled, &[PCIE], &[SMMU_PHANDLE]), PCIE),
        Refusal::Disabled { .. }
    ));
}

#[test]
fn marking_with_xen_passthrough_is_the_same_as_naming_the_path() {
    let marked = with(QEMU_SMMU, &[(PCIE, XEN_PASSTHROUGH, Some(vec![]))]);
    assert_eq!(
        assign(&marked, &[], &[SMMU_PHANDLE]).passthrough,
        assign(QEMU_SMMU, &[PCIE], &[SMMU_PHANDLE]).passthrough
    );
}

#[test]
fn msi_parent_goes_without_a_note() {
    // `msi-parent` to the ITS instead of `msi-map`: dropped from the guest's copy, and
    // not reported as a reference the guest's DT cannot satisfy.
    let host = with(
        QEMU_SMMU,
        &[
            (PCIE, "msi-map", None),
            // The ITS has `#msi-cells = <1>`: a device ID follows.
            (PCIE, "msi-parent", Some(cells(&[0x8006, 0]))),
        ],
    );
    let assignment = assign(&host, &[PCIE], &[SMMU_PHANDLE]);
    assert_eq!(assignment.passthrough.len(), 1, "{assignment:#?}");
    assert_eq!(assignment.notes, []);
    let guest = model(&guest_dtb(&host, &assignment));
    assert!(!guest[PCIE].contains_key("msi-parent"));
    // Even a malformed one (the device ID missing) does not matter: the guest never
    // sees it.
    let short = with(QEMU_SMMU, &[(PCIE, "msi-parent", Some(cells(&[0x8006])))]);
    assert_eq!(
        assign(&short, &[PCIE], &[SMMU_PHANDLE]).passthrough.len(),
        1
    );
}
