//! Which devices a guest gets, end to end: `assign_devices` on QEMU's virt DTB (see
//! `fixtures/README.md`), the guest DT written from it, the stage-2 regions read back,
//! and hostile trees edited from the fixture.

use std::collections::BTreeMap;

use guest_loader::devices::{
    DeviceNote, InterruptProblem, NotKeptReason, ReferenceProblem, XEN_PASSTHROUGH,
};
use guest_loader::{
    DeviceAssignment, DeviceError, DeviceRequest, EmulatedDevice, EmulatedKind, GuestDtSpec,
    PassthroughDevice, Refusal, assign_devices, build_guest_dtb_for, passthrough_regions,
};
use platform::info::{Conduit, PhysRange};
use proptest::prelude::*;
use vm_fdt::FdtWriter;

/// `-smp 4 -m 2G`.
const QEMU: &[u8] = include_bytes!("fixtures/qemu-virt-smp4-2g.dtb");
/// The same with `iommu=smmuv3`.
const QEMU_SMMU: &[u8] = include_bytes!("fixtures/qemu-virt-smp4-2g-smmuv3.dtb");
/// The same with `xen,passthrough` on /pl031@9010000.
const QEMU_XEN_PL031: &[u8] =
    include_bytes!("fixtures/qemu-virt-smp4-2g-pl031-xen-passthrough.dtb");

/// The hypervisor in the first 32 MiB of RAM, the rest the guest's.
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

fn request<'r>(vcpus: usize, paths: &'r [&'r str]) -> DeviceRequest<'r> {
    DeviceRequest {
        vcpus,
        guest_ram: &GUEST_RAM,
        hidden: &HIDDEN,
        passthrough_paths: paths,
        smmus_driven: &[],
        marked_passthrough: true,
    }
}

fn assign(host: &[u8], paths: &[&str]) -> DeviceAssignment {
    assign_devices(host, &request(4, paths)).unwrap()
}

fn spec(vcpus: usize) -> GuestDtSpec<'static> {
    GuestDtSpec {
        memory: &GUEST_RAM,
        bootargs: Some("console=ttyAMA0"),
        initrd: None,
        vcpus,
        psci_conduit: Conduit::Hvc,
        hidden: &HIDDEN,
        kaslr_seed: None,
        rng_seed: None,
    }
}

fn guest_dtb(host: &[u8], assignment: &DeviceAssignment) -> Vec<u8> {
    build_guest_dtb_for(host, &spec(4), assignment).unwrap()
}

type Props = BTreeMap<String, Vec<u8>>;

/// Every node of a DTB by path, with its properties (read with the `fdt` crate).
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

fn top_level(tree: &BTreeMap<String, Props>) -> Vec<&str> {
    tree.keys()
        .map(String::as_str)
        .filter(|p| p.matches('/').count() == 1 && *p != "/")
        .collect()
}

fn cells(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

fn reg2(base: u64, size: u64) -> Vec<u8> {
    [base.to_be_bytes(), size.to_be_bytes()].concat()
}

/// A node's properties, in order, as `rewrite` hands them to its edit.
type PropertyList = Vec<(String, Vec<u8>)>;
/// Edits one node's properties (by path).
type EditProperties<'e> = &'e dyn Fn(&str, &mut PropertyList);
/// Writes extra children into one node (by path).
type AddChildren<'e> = &'e dyn Fn(&str, &mut FdtWriter);

/// A copy of `host` with `edit` applied to each node's properties (by path) and `add`
/// writing extra children into each node (by path). Tests only: the `fdt` crate panics
/// on malformed blobs, and the fixtures are well formed.
fn rewrite(host: &[u8], edit: EditProperties<'_>, add: AddChildren<'_>) -> Vec<u8> {
    fn copy(
        node: fdt::node::FdtNode<'_, '_>,
        path: &str,
        w: &mut FdtWriter,
        edit: EditProperties<'_>,
        add: AddChildren<'_>,
    ) {
        let handle = w
            .begin_node(if path == "/" { "" } else { node.name })
            .unwrap();
        let mut props: PropertyList = node
            .properties()
            .map(|p| (p.name.to_string(), p.value.to_vec()))
            .collect();
        edit(path, &mut props);
        for (name, value) in &props {
            w.property(name, value).unwrap();
        }
        for child in node.children() {
            let child_path = if path == "/" {
                format!("/{}", child.name)
            } else {
                format!("{path}/{}", child.name)
            };
            copy(child, &child_path, w, edit, add);
        }
        add(path, w);
        w.end_node(handle).unwrap();
    }
    let fdt = fdt::Fdt::new(host).unwrap();
    let mut w = FdtWriter::new().unwrap();
    copy(fdt.find_node("/").unwrap(), "/", &mut w, edit, add);
    w.finish().unwrap()
}

/// `host` with properties set (added or replaced) on nodes.
fn with_properties(host: &[u8], set: &[(&str, &str, Vec<u8>)]) -> Vec<u8> {
    rewrite(
        host,
        &|path, props| {
            for (node, name, value) in set {
                if *node == path {
                    props.retain(|(n, _)| n != name);
                    props.push((name.to_string(), value.clone()));
                }
            }
        },
        &|_, _| {},
    )
}

fn phandle(host: &[u8], path: &str) -> u32 {
    u32::from_be_bytes(model(host)[path]["phandle"][..4].try_into().unwrap())
}

fn refusal<'a>(assignment: &'a DeviceAssignment, path: &str) -> &'a Refusal {
    &assignment
        .refused
        .iter()
        .find(|r| r.path == path)
        .unwrap_or_else(|| panic!("{path} not refused: {assignment:#?}"))
        .reason
}

fn pl031(intids: Vec<u32>) -> PassthroughDevice {
    PassthroughDevice {
        path: "/pl031@9010000".to_string(),
        mmio: vec![range(0x901_0000, 0x1000)],
        regions: vec![range(0x901_0000, 0x1000)],
        intids,
        streams: vec![],
    }
}

#[test]
fn the_default_guest_gets_the_emulated_gic_and_pl011_and_nothing_else() {
    let assignment = assign(QEMU, &[]);
    assert_eq!(
        assignment.emulated,
        [
            EmulatedDevice {
                kind: EmulatedKind::GicV3,
                path: "/intc@8000000".to_string(),
                // The distributor and 4 vCPUs' redistributor frames.
                regions: vec![range(0x800_0000, 0x1_0000), range(0x80a_0000, 4 * 0x2_0000)],
                intid: None,
            },
            EmulatedDevice {
                kind: EmulatedKind::Pl011,
                path: "/pl011@9000000".to_string(),
                regions: vec![range(0x900_0000, 0x1000)],
                // SPI 1.
                intid: Some(33),
            },
        ]
    );
    assert_eq!(assignment.passthrough, []);
    assert_eq!(assignment.refused, []);
    assert_eq!(assignment.notes, []);
    // Nothing is mapped: the emulated frames trap.
    assert_eq!(assignment.passthrough_regions(), []);
    assert_eq!(
        assignment.console_line(1),
        "guest-devices: guest=1 emulated=gicv3@0x8000000,pl011@0x9000000 passthrough=none \
         refused=none"
    );

    let dtb = guest_dtb(QEMU, &assignment);
    let guest = model(&dtb);
    let host = model(QEMU);
    assert_eq!(
        top_level(&guest),
        [
            "/aliases",
            "/apb-pclk",
            "/chosen",
            "/cpus",
            "/intc@8000000",
            "/memory@42000000",
            "/pl011@9000000",
            "/pmu",
            "/psci",
            "/timer",
        ]
    );
    for gone in [
        "fw-cfg",
        "flash",
        "pcie",
        "virtio_mmio",
        "its",
        "pl061",
        "pl031",
        "gpio-keys",
    ] {
        assert!(!guest.keys().any(|p| p.contains(gone)), "{gone}");
    }
    // The PL011 and its clock are the host's.
    for path in ["/pl011@9000000", "/apb-pclk", "/timer", "/pmu"] {
        assert_eq!(guest[path], host[path], "{path}");
    }
    // The GIC: two reg entries, the redistributor sized for the vCPUs, no maintenance
    // interrupt, no ITS, the same phandle.
    let gic = &guest["/intc@8000000"];
    assert_eq!(
        gic["reg"],
        [reg2(0x800_0000, 0x1_0000), reg2(0x80a_0000, 0x8_0000)].concat()
    );
    assert!(!gic.contains_key("interrupts"));
    assert!(!gic.contains_key("#redistributor-regions"));
    assert_eq!(gic["phandle"], host["/intc@8000000"]["phandle"]);
    assert!(gic.contains_key("interrupt-controller"));
    assert!(!guest.contains_key("/intc@8000000/its@8080000"));
    assert_eq!(guest["/aliases"]["serial0"], b"/pl011@9000000\0");
    assert_eq!(
        guest["/chosen"]["stdout-path"],
        host["/chosen"]["stdout-path"]
    );
    // What stage 2 maps, read back from the guest DTB, agrees: nothing.
    assert_eq!(passthrough_regions(&dtb).unwrap(), []);
}

#[test]
fn the_gic_is_sized_for_the_vcpus() {
    for vcpus in [1, 2, 4] {
        let assignment = assign_devices(QEMU, &request(vcpus, &[])).unwrap();
        let gic = assignment.emulated(EmulatedKind::GicV3).unwrap();
        assert_eq!(gic.regions[1], range(0x80a_0000, vcpus as u64 * 0x2_0000));
        let dtb = build_guest_dtb_for(QEMU, &spec(vcpus), &assignment).unwrap();
        assert_eq!(
            model(&dtb)["/intc@8000000"]["reg"][16..],
            reg2(0x80a_0000, vcpus as u64 * 0x2_0000)
        );
    }
    assert_eq!(
        assign_devices(QEMU, &request(0, &[])).unwrap_err(),
        DeviceError::NoVcpus
    );
}

#[test]
fn aliases_keep_only_kept_devices() {
    let host = rewrite(
        QEMU,
        &|path, props| {
            if path == "/aliases" {
                props.push(("rtc0".to_string(), b"/pl031@9010000\0".to_vec()));
                props.push(("gpio0".to_string(), b"/pl061@9030000\0".to_vec()));
            }
        },
        &|_, _| {},
    );
    let guest = model(&guest_dtb(&host, &assign(&host, &[])));
    let aliases: Vec<&str> = guest["/aliases"].keys().map(String::as_str).collect();
    assert_eq!(aliases, ["serial0"]);

    let guest = model(&guest_dtb(&host, &assign(&host, &["/pl031@9010000"])));
    let aliases: Vec<&str> = guest["/aliases"].keys().map(String::as_str).collect();
    assert_eq!(aliases, ["rtc0", "serial0"]);
}

#[test]
fn a_pl031_marked_xen_passthrough_is_passed_through() {
    let assignment = assign(QEMU_XEN_PL031, &[]);
    // SPI 2 is INTID 34.
    assert_eq!(assignment.passthrough, [pl031(vec![34])]);
    assert_eq!(assignment.refused, []);
    assert_eq!(
        assignment.passthrough_regions(),
        [range(0x901_0000, 0x1000)]
    );
    assert_eq!(
        assignment.console_line(1),
        "guest-devices: guest=1 emulated=gicv3@0x8000000,pl011@0x9000000 \
         passthrough=pl031@0x9010000 refused=none"
    );
    let dtb = guest_dtb(QEMU_XEN_PL031, &assignment);
    let guest = model(&dtb);
    let host = model(QEMU_XEN_PL031);
    // As the host has it, `xen,passthrough` included (the guest DT rebuilds to itself).
    assert!(host["/pl031@9010000"].contains_key(XEN_PASSTHROUGH));
    assert_eq!(guest["/pl031@9010000"], host["/pl031@9010000"]);
    // Its clock is the console's, kept once.
    assert_eq!(guest["/apb-pclk"], host["/apb-pclk"]);
    assert_eq!(
        passthrough_regions(&dtb).unwrap(),
        assignment.passthrough_regions()
    );
}

#[test]
fn the_command_line_passes_the_same_pl031_through() {
    let by_property = assign(QEMU_XEN_PL031, &[]);
    let by_path = assign(QEMU, &["/pl031@9010000"]);
    assert_eq!(by_path.passthrough, by_property.passthrough);
    // A trailing '/' and a repeat change nothing.
    let again = assign(QEMU, &["/pl031@9010000/", "/pl031@9010000"]);
    assert_eq!(again.passthrough, by_path.passthrough);
    let guest = model(&guest_dtb(QEMU, &by_path));
    assert!(guest.contains_key("/pl031@9010000"));
}

#[test]
fn two_devices_and_a_node_without_mmio() {
    let assignment = assign(QEMU, &["/pl061@9030000", "/pl031@9010000", "/gpio-keys"]);
    let paths: Vec<&str> = assignment
        .passthrough
        .iter()
        .map(|d| d.path.as_str())
        .collect();
    // DT order.
    assert_eq!(paths, ["/gpio-keys", "/pl061@9030000", "/pl031@9010000"]);
    assert_eq!(
        assignment.passthrough_regions(),
        [range(0x901_0000, 0x1000), range(0x903_0000, 0x1000)]
    );
    assert_eq!(assignment.passthrough[1].intids, [39]);
    assert_eq!(assignment.notes, []);
    let dtb = guest_dtb(QEMU, &assignment);
    assert_eq!(
        passthrough_regions(&dtb).unwrap(),
        assignment.passthrough_regions()
    );
    assert!(
        assignment
            .console_line(1)
            .contains("passthrough=gpio-keys,pl061@0x9030000,pl031@0x9010000 refused=none")
    );
}

#[test]
fn a_reference_to_an_unassigned_device_is_a_note() {
    // gpio-keys' key uses a GPIO of the pl061, which has MMIO and is not assigned.
    let assignment = assign(QEMU, &["/gpio-keys"]);
    assert_eq!(assignment.passthrough.len(), 1);
    assert_eq!(
        assignment.notes,
        [DeviceNote::ReferenceNotKept {
            from: "/gpio-keys/poweroff".to_string(),
            property: "gpios".to_string(),
            target: "/pl061@9030000".to_string(),
            why: NotKeptReason::HasMmio,
        }]
    );
    let note = assignment.notes[0].to_string();
    assert!(note.contains("it has MMIO and is not assigned"), "{note}");
    let guest = model(&guest_dtb(QEMU, &assignment));
    assert!(guest.contains_key("/gpio-keys/poweroff"));
    assert!(!guest.contains_key("/pl061@9030000"));
}

#[test]
fn dma_capable_firmware_and_flash_devices_are_refused() {
    let assignment = assign(
        QEMU,
        &[
            "/virtio_mmio@a000000",
            "/fw-cfg@9020000",
            "/flash@0",
            "/pcie@10000000",
        ],
    );
    assert_eq!(assignment.passthrough, []);
    assert_eq!(assignment.passthrough_regions(), []);
    assert!(matches!(
        refusal(&assignment, "/virtio_mmio@a000000"),
        Refusal::DmaWithoutIommu { evidence } if evidence.contains("virtio-mmio")
    ));
    assert!(matches!(
        refusal(&assignment, "/pcie@10000000"),
        Refusal::DmaWithoutIommu { evidence } if evidence.contains("PCI host bridge")
    ));
    assert_eq!(
        refusal(&assignment, "/fw-cfg@9020000"),
        &Refusal::FirmwareConfig
    );
    assert_eq!(refusal(&assignment, "/flash@0"), &Refusal::Flash);
    let message = refusal(&assignment, "/virtio_mmio@a000000").to_string();
    assert!(message.contains("no IOMMU (SMMU) support yet"), "{message}");
    assert!(
        refusal(&assignment, "/fw-cfg@9020000")
            .to_string()
            .contains("DMA interface")
    );
    assert_eq!(
        assignment.console_line(1),
        "guest-devices: guest=1 emulated=gicv3@0x8000000,pl011@0x9000000 passthrough=none \
         refused=fw-cfg@0x9020000,virtio_mmio@0xa000000,pcie@0x4010000000,flash@0x0"
    );
    let guest = model(&guest_dtb(QEMU, &assignment));
    for gone in ["fw-cfg", "flash", "pcie", "virtio_mmio"] {
        assert!(!guest.keys().any(|p| p.contains(gone)), "{gone}");
    }
    // A refusal reads as a log line.
    assert!(
        assignment.refused[0]
            .to_string()
            .starts_with("/fw-cfg@9020000: not given to the guest: QEMU fw-cfg")
    );
}

#[test]
fn the_hypervisors_own_devices_and_non_devices_are_refused() {
    let assignment = assign(
        QEMU_SMMU,
        &[
            "/intc@8000000",
            "/intc@8000000/its@8080000",
            "/pl011@9000000",
            "/smmuv3@9050000",
            "/memory@40000000",
            "/timer",
            "/pmu",
            "/psci",
            "/cpus/cpu@0",
            "/chosen",
            "/aliases",
            "/pcie@10000000",
        ],
    );
    assert_eq!(assignment.passthrough, []);
    for path in [
        "/intc@8000000",
        "/intc@8000000/its@8080000",
        "/pl011@9000000",
        "/smmuv3@9050000",
    ] {
        assert!(
            matches!(refusal(&assignment, path), Refusal::HypervisorOwned { .. }),
            "{path}"
        );
    }
    for path in [
        "/memory@40000000",
        "/timer",
        "/pmu",
        "/psci",
        "/cpus/cpu@0",
        "/chosen",
        "/aliases",
    ] {
        assert!(
            matches!(refusal(&assignment, path), Refusal::NotAssignable { .. }),
            "{path}"
        );
    }
    assert!(matches!(
        refusal(&assignment, "/pcie@10000000"),
        Refusal::DmaWithoutIommu { .. }
    ));
    // The default guest of the SMMU board does not see the SMMU.
    let guest = model(&guest_dtb(QEMU_SMMU, &assign(QEMU_SMMU, &[])));
    assert!(!guest.keys().any(|p| p.contains("smmu")));
}

#[test]
fn iommu_and_dma_properties_refuse_any_device() {
    for property in [
        "iommus",
        "iommu-map",
        "dma-coherent",
        "msi-parent",
        "msi-map",
    ] {
        let value = match property {
            "dma-coherent" => vec![],
            "iommus" | "msi-parent" => cells(&[phandle(QEMU, "/apb-pclk")]),
            _ => cells(&[0, phandle(QEMU, "/apb-pclk"), 0, 1]),
        };
        let host = with_properties(QEMU, &[("/pl031@9010000", property, value)]);
        let assignment = assign(&host, &["/pl031@9010000"]);
        assert!(
            matches!(
                refusal(&assignment, "/pl031@9010000"),
                Refusal::DmaWithoutIommu { evidence } if evidence.contains(property)
            ),
            "{property}: {assignment:?}"
        );
    }
}

#[test]
fn disabled_devices_are_refused() {
    let disabled = with_properties(
        QEMU,
        &[("/pl031@9010000", "status", b"disabled\0".to_vec())],
    );
    let marked = with_properties(&disabled, &[("/pl031@9010000", XEN_PASSTHROUGH, vec![])]);
    let expected = Refusal::Disabled {
        status: "disabled".to_string(),
    };
    assert_eq!(
        refusal(&assign(&disabled, &["/pl031@9010000"]), "/pl031@9010000"),
        &expected
    );
    assert_eq!(refusal(&assign(&marked, &[]), "/pl031@9010000"), &expected);
}

#[test]
fn a_missing_path_is_an_error() {
    for path in [
        "/pl031@9999999",
        "/pl031",
        "pl031@9010000",
        "/nope/pl031@9010000",
        "",
    ] {
        let err = assign_devices(QEMU, &request(4, &[path])).unwrap_err();
        assert_eq!(
            err,
            DeviceError::PassthroughPathNotFound {
                path: path.to_string()
            },
            "{path}"
        );
        assert!(err.to_string().contains("no such node"), "{err}");
    }
}

/// The guest's DT is a host DT too: rebuilding from it gives it back (what the
/// `guest_dtb` fuzz target checks), passthrough devices and notes included.
#[test]
fn the_guest_dt_rebuilds_to_itself() {
    let gpio_keys = with_properties(QEMU, &[("/gpio-keys", XEN_PASSTHROUGH, vec![])]);
    // A list whose first provider (the GPIO block, made a clock provider) the guest
    // does not get: not read past it, so the oscillator after it stays out.
    let osc = 0x7300;
    let two_clocks = rewrite(
        QEMU_XEN_PL031,
        &|path, props| match path {
            "/pl061@9030000" => props.push(("#clock-cells".to_string(), cells(&[0]))),
            "/pl031@9010000" => {
                props.retain(|(n, _)| n != "clocks");
                props.push((
                    "clocks".to_string(),
                    cells(&[phandle(QEMU, "/pl061@9030000"), osc]),
                ));
            }
            _ => {}
        },
        &|path, w| {
            if path == "/" {
                let node = w.begin_node("osc").unwrap();
                w.property_string("compatible", "fixed-clock").unwrap();
                w.property_u32("#clock-cells", 0).unwrap();
                w.property_u32("phandle", osc).unwrap();
                w.end_node(node).unwrap();
            }
        },
    );
    let assignment = assign(&two_clocks, &[]);
    assert_eq!(assignment.passthrough.len(), 1);
    assert!(matches!(
        &assignment.notes[..],
        [DeviceNote::ReferenceNotKept { target, .. }] if target == "/pl061@9030000"
    ));
    assert!(!model(&guest_dtb(&two_clocks, &assignment)).contains_key("/osc"));
    for host in [QEMU, QEMU_SMMU, QEMU_XEN_PL031, &gpio_keys, &two_clocks] {
        let dtb = guest_dtb(host, &assign(host, &[]));
        let again = guest_dtb(&dtb, &assign(&dtb, &[]));
        assert!(again == dtb, "{:?}", model(&dtb).keys().collect::<Vec<_>>());
        assert_eq!(guest_loader::build_guest_dtb(&dtb, &spec(4)).unwrap(), dtb);
    }
}

// --- Hostile trees: errors or refusals, never a panic. ---

#[test]
fn phandle_loops_end() {
    // pl031 -> a -> b -> a, none with MMIO: all kept, the walk ends.
    let (a, b) = (0x7001, 0x7002);
    let host = rewrite(
        QEMU,
        &|path, props| {
            if path == "/pl031@9010000" {
                props.retain(|(n, _)| n != "clocks");
                props.push(("clocks".to_string(), cells(&[a])));
            }
        },
        &|path, w| {
            if path == "/" {
                for (name, me, other) in [("clk-a", a, b), ("clk-b", b, a)] {
                    let node = w.begin_node(name).unwrap();
                    w.property_u32("phandle", me).unwrap();
                    w.property_u32("#clock-cells", 0).unwrap();
                    w.property_array_u32("clocks", &[other]).unwrap();
                    w.property_array_u32("resets", &[me]).unwrap();
                    w.end_node(node).unwrap();
                }
            }
        },
    );
    let assignment = assign(&host, &["/pl031@9010000"]);
    assert_eq!(assignment.passthrough.len(), 1);
    let guest = model(&guest_dtb(&host, &assignment));
    assert!(guest.contains_key("/clk-a") && guest.contains_key("/clk-b"));
    // `resets` needs `#reset-cells`, which the clocks lack: a note, not a loop.
    assert!(
        assignment
            .notes
            .iter()
            .all(|note| matches!(note, DeviceNote::BadReference { .. }))
    );
}

#[test]
fn dangling_phandles_are_notes_and_malformed_lists_refusals() {
    // A phandle no node has: the device is given (its driver may not probe), with a
    // note; in the guest's DT such references exist anyway (see the module docs).
    let host = with_properties(QEMU, &[("/pl031@9010000", "clocks", cells(&[0xdead]))]);
    let assignment = assign(&host, &["/pl031@9010000"]);
    assert_eq!(assignment.passthrough.len(), 1);
    assert_eq!(
        assignment.notes,
        [DeviceNote::BadReference {
            from: "/pl031@9010000".to_string(),
            problem: ReferenceProblem::Dangling {
                property: "clocks".to_string(),
                phandle: 0xdead
            }
        }]
    );
    // The same on the console is a note: the emulated PL011 stays.
    let host = with_properties(QEMU, &[("/pl011@9000000", "clocks", cells(&[0xdead]))]);
    let assignment = assign(&host, &[]);
    assert_eq!(assignment.emulated.len(), 2);
    assert!(matches!(
        &assignment.notes[..],
        [DeviceNote::BadReference { from, .. }] if from == "/pl011@9000000"
    ));
    // A truncated specifier list is malformed.
    let host = with_properties(
        QEMU,
        &[(
            "/pl031@9010000",
            "resets",
            cells(&[phandle(QEMU, "/apb-pclk")]),
        )],
    );
    assert!(matches!(
        refusal(&assign(&host, &["/pl031@9010000"]), "/pl031@9010000"),
        Refusal::Reference(ReferenceProblem::Malformed { .. })
    ));
}

#[test]
fn devices_overlapping_ram_or_hidden_ranges_are_refused() {
    let add = |name: &'static str, base: u64| {
        move |path: &str, w: &mut FdtWriter| {
            if path == "/" {
                let node = w.begin_node(name).unwrap();
                w.property_null(XEN_PASSTHROUGH).unwrap();
                w.property("reg", &reg2(base, 0x1000)).unwrap();
                w.end_node(node).unwrap();
            }
        }
    };
    let host = rewrite(QEMU, &|_, _| {}, &add("in-ram@50000000", 0x5000_0000));
    let assignment = assign(&host, &[]);
    assert_eq!(
        refusal(&assignment, "/in-ram@50000000"),
        &Refusal::OverlapsGuestRam {
            region: range(0x5000_0000, 0x1000),
            ram: GUEST_RAM[0]
        }
    );
    let host = rewrite(QEMU, &|_, _| {}, &add("in-hyp@40001000", 0x4000_1000));
    assert_eq!(
        refusal(&assign(&host, &[]), "/in-hyp@40001000"),
        &Refusal::OverlapsHidden {
            region: range(0x4000_1000, 0x1000),
            hidden: HIDDEN[0]
        }
    );
    // Registers in the emulated GIC's frames.
    let host = rewrite(QEMU, &|_, _| {}, &add("in-gicr@80a1000", 0x80a_1000));
    assert!(matches!(
        refusal(&assign(&host, &[]), "/in-gicr@80a1000"),
        Refusal::OverlapsEmulated {
            kind: EmulatedKind::GicV3,
            ..
        }
    ));
    // A page shared with a device the guest does not get (the console here).
    let host = rewrite(QEMU, &|_, _| {}, &add("beside-uart@9000800", 0x900_0800));
    assert!(matches!(
        refusal(&assign(&host, &[]), "/beside-uart@9000800"),
        Refusal::OverlapsEmulated {
            kind: EmulatedKind::Pl011,
            ..
        }
    ));
    // (0x9010800 + 0x1000 spans two pages.)
    let host = rewrite(QEMU, &|_, _| {}, &add("beside-rtc@9010800", 0x901_0800));
    assert_eq!(
        refusal(&assign(&host, &[]), "/beside-rtc@9010800"),
        &Refusal::SharesPage {
            region: range(0x901_0000, 0x2000),
            other: "/pl031@9010000".to_string()
        }
    );
    // ...but not when both are given.
    let assignment = assign(&host, &["/pl031@9010000"]);
    assert_eq!(assignment.passthrough.len(), 2);
    assert_eq!(
        assignment.passthrough_regions(),
        [range(0x901_0000, 0x2000)]
    );
}

#[test]
fn interrupts_must_be_gic_spis() {
    let gpio = phandle(QEMU, "/pl061@9030000");
    // Another interrupt parent (the GPIO block as an interrupt controller).
    let host = with_properties(
        QEMU,
        &[
            ("/pl061@9030000", "interrupt-controller", vec![]),
            ("/pl061@9030000", "#interrupt-cells", cells(&[2])),
            ("/pl031@9010000", "interrupt-parent", cells(&[gpio])),
            ("/pl031@9010000", "interrupts", cells(&[3, 4])),
        ],
    );
    assert_eq!(
        refusal(&assign(&host, &["/pl031@9010000"]), "/pl031@9010000"),
        &Refusal::Interrupts(InterruptProblem::NotTheGic {
            parent: "/pl061@9030000".to_string()
        })
    );
    // A PPI.
    let host = with_properties(QEMU, &[("/pl031@9010000", "interrupts", cells(&[1, 5, 4]))]);
    assert_eq!(
        refusal(&assign(&host, &["/pl031@9010000"]), "/pl031@9010000"),
        &Refusal::Interrupts(InterruptProblem::Private { intid: 21 })
    );
    // The console's SPI.
    let host = with_properties(QEMU, &[("/pl031@9010000", "interrupts", cells(&[0, 1, 4]))]);
    assert!(matches!(
        refusal(&assign(&host, &["/pl031@9010000"]), "/pl031@9010000"),
        Refusal::SharesInterrupt { intid: 33, .. }
    ));
    // interrupts-extended (which Linux prefers to `interrupts`) through the GIC works,
    // with an unknown parent it does not.
    let gic = phandle(QEMU, "/intc@8000000");
    let host = with_properties(
        QEMU,
        &[(
            "/pl031@9010000",
            "interrupts-extended",
            cells(&[gic, 0, 9, 4, gic, 0, 10, 4]),
        )],
    );
    assert_eq!(
        assign(&host, &["/pl031@9010000"]).passthrough[0].intids,
        [41, 42]
    );
    let host = with_properties(
        QEMU,
        &[(
            "/pl031@9010000",
            "interrupts-extended",
            cells(&[0x4444, 0, 9, 4]),
        )],
    );
    assert_eq!(
        refusal(&assign(&host, &["/pl031@9010000"]), "/pl031@9010000"),
        &Refusal::Interrupts(InterruptProblem::UnknownParent { phandle: 0x4444 })
    );
    // An interrupt-parent loop that never reaches a controller.
    let rtc = 0x7100;
    let host = with_properties(
        QEMU,
        &[
            ("/pl031@9010000", "phandle", cells(&[rtc])),
            ("/pl031@9010000", "interrupt-parent", cells(&[rtc])),
        ],
    );
    assert_eq!(
        refusal(&assign(&host, &["/pl031@9010000"]), "/pl031@9010000"),
        &Refusal::Interrupts(InterruptProblem::NoInterruptParent)
    );
    // A malformed specifier.
    let host = with_properties(QEMU, &[("/pl031@9010000", "interrupts", cells(&[0, 2]))]);
    assert!(matches!(
        refusal(&assign(&host, &["/pl031@9010000"]), "/pl031@9010000"),
        Refusal::Interrupts(InterruptProblem::Malformed { .. })
    ));
}

#[test]
fn a_bus_cannot_smuggle_a_refused_device_in() {
    let host = rewrite(QEMU, &|_, _| {}, &|path, w| {
        if path == "/" {
            let bus = w.begin_node("soc").unwrap();
            w.property_null(XEN_PASSTHROUGH).unwrap();
            w.property_string("compatible", "simple-bus").unwrap();
            w.property_u32("#address-cells", 1).unwrap();
            w.property_u32("#size-cells", 1).unwrap();
            // Free space on virt (0x20000000 would be inside the PCIe window, and
            // refused for sharing its pages).
            w.property_array_u32("ranges", &[0, 0, 0x0b00_0000, 0x10_0000])
                .unwrap();
            let ok = w.begin_node("timer@1000").unwrap();
            w.property_array_u32("reg", &[0x1000, 0x1000]).unwrap();
            w.end_node(ok).unwrap();
            let virtio = w.begin_node("virtio@2000").unwrap();
            w.property_string("compatible", "virtio,mmio").unwrap();
            w.property_array_u32("reg", &[0x2000, 0x200]).unwrap();
            w.end_node(virtio).unwrap();
            w.end_node(bus).unwrap();
        }
    });
    let assignment = assign(&host, &[]);
    let reason = refusal(&assignment, "/soc");
    assert!(
        matches!(reason, Refusal::Contains { path, .. } if path == "/soc/virtio@2000"),
        "{reason:?}"
    );
    assert!(matches!(
        reason.innermost(),
        Refusal::DmaWithoutIommu { .. }
    ));
    // The timer alone is fine, inside its bus kept as a container.
    let assignment = assign(&host, &["/soc/timer@1000"]);
    assert_eq!(
        assignment.passthrough_regions(),
        [range(0x0b00_1000, 0x1000)]
    );
    let guest = model(&guest_dtb(&host, &assignment));
    assert!(guest.contains_key("/soc/timer@1000"));
    assert!(!guest.contains_key("/soc/virtio@2000"));
    // The container keeps only what its children need.
    assert!(!guest["/soc"].contains_key(XEN_PASSTHROUGH));
    assert_eq!(
        guest["/soc"]["ranges"],
        cells(&[0, 0, 0x0b00_0000, 0x10_0000])
    );
}

#[test]
fn duplicate_paths_and_phandles() {
    let host = rewrite(QEMU, &|_, _| {}, &|path, w| {
        if path == "/" {
            for _ in 0..2 {
                let node = w.begin_node("twin@20000000").unwrap();
                w.property("reg", &reg2(0x2000_0000, 0x1000)).unwrap();
                w.property_u32("phandle", 0x7200).unwrap();
                w.end_node(node).unwrap();
            }
        }
    });
    assert_eq!(
        assign_devices(&host, &request(4, &["/twin@20000000"])).unwrap_err(),
        DeviceError::PassthroughPathAmbiguous {
            path: "/twin@20000000".to_string()
        }
    );
    let assignment = assign(&host, &[]);
    assert!(assignment.notes.contains(&DeviceNote::DuplicatePath {
        path: "/twin@20000000".to_string()
    }));
    // A reference to the doubled phandle cannot be followed.
    let host = with_properties(&host, &[("/pl031@9010000", "clocks", cells(&[0x7200]))]);
    let assignment = assign(&host, &["/pl031@9010000"]);
    assert!(assignment.notes.iter().any(|note| matches!(
        note,
        DeviceNote::BadReference {
            problem: ReferenceProblem::Dangling {
                phandle: 0x7200,
                ..
            },
            ..
        }
    )));
}

#[test]
fn emulated_frames_must_not_overlap_ram_or_hidden_memory() {
    // Guest RAM right after the distributor: the redistributor frames would be RAM.
    let ram = [range(0x80a_0000 + 0x2_0000, 0x100_0000)];
    let err = assign_devices(
        QEMU,
        &DeviceRequest {
            guest_ram: &ram,
            ..request(4, &[])
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            DeviceError::EmulatedOverlaps {
                kind: EmulatedKind::GicV3,
                what: "guest RAM",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn hosts_without_gic_or_pl011_console_get_notes() {
    let host = rewrite(
        QEMU,
        &|path, props| {
            if path == "/intc@8000000" {
                props.retain(|(n, _)| n != "compatible");
            }
            if path == "/chosen" {
                props.retain(|(n, _)| n != "stdout-path");
            }
        },
        &|_, _| {},
    );
    let assignment = assign(&host, &[]);
    assert_eq!(assignment.emulated, []);
    assert_eq!(
        assignment.notes,
        [
            DeviceNote::NoGicV3,
            DeviceNote::NoPl011Console { stdout_path: None },
            // The root's interrupt-parent names a node with MMIO nobody is given.
            DeviceNote::ReferenceNotKept {
                from: "/".to_string(),
                property: "interrupt-parent".to_string(),
                target: "/intc@8000000".to_string(),
                why: NotKeptReason::HasMmio,
            },
        ]
    );
    assert_eq!(
        assignment.console_line(1),
        "guest-devices: guest=1 emulated=none passthrough=none refused=none"
    );
}

#[test]
fn a_console_without_a_usable_spi_is_emulated_without_one() {
    let host = with_properties(QEMU, &[("/pl011@9000000", "interrupts", cells(&[1, 3, 4]))]);
    let assignment = assign(&host, &[]);
    let uart = assignment.emulated(EmulatedKind::Pl011).unwrap();
    assert_eq!(uart.intid, None);
    assert_eq!(
        assignment.notes,
        [DeviceNote::ConsoleInterrupt {
            path: "/pl011@9000000".to_string(),
            problem: InterruptProblem::Private { intid: 19 }
        }]
    );
}

#[test]
fn the_emulated_gic_loses_the_physical_gics_extras() {
    let host = with_properties(
        QEMU,
        &[
            ("/intc@8000000", "msi-controller", vec![]),
            ("/intc@8000000", "mbi-ranges", cells(&[64, 64])),
            (
                "/intc@8000000",
                "redistributor-stride",
                cells(&[0, 0x4_0000]),
            ),
            ("/intc@8000000", "#redistributor-regions", cells(&[2])),
            (
                "/intc@8000000",
                "reg",
                [
                    reg2(0x800_0000, 0x1_0000),
                    reg2(0x80a_0000, 0x10_0000),
                    reg2(0x81a_0000, 0x10_0000),
                    // GICv2-compatible CPU, hyp and vcpu frames.
                    reg2(0x801_0000, 0x1_0000),
                    reg2(0x803_0000, 0x1_0000),
                    reg2(0x804_0000, 0x1_0000),
                ]
                .concat(),
            ),
        ],
    );
    let assignment = assign(&host, &[]);
    let guest = model(&guest_dtb(&host, &assignment));
    let gic = &guest["/intc@8000000"];
    for gone in [
        "msi-controller",
        "mbi-ranges",
        "redistributor-stride",
        "#redistributor-regions",
        "interrupts",
    ] {
        assert!(!gic.contains_key(gone), "{gone}");
    }
    assert_eq!(
        gic["reg"],
        [reg2(0x800_0000, 0x1_0000), reg2(0x80a_0000, 0x8_0000)].concat()
    );
}

#[test]
fn the_vgic_gets_every_passthrough_spi_once() {
    let host = with_properties(
        QEMU,
        &[("/pl061@9030000", "interrupts", cells(&[0, 2, 4, 0, 7, 4]))],
    );
    let assignment = assign(&host, &["/pl031@9010000", "/pl061@9030000"]);
    assert_eq!(assignment.passthrough_intids(), [34, 39]);
}

#[test]
fn bad_blobs_are_errors() {
    assert_eq!(
        assign_devices(&QEMU[..10], &request(1, &[])).unwrap_err(),
        DeviceError::DtbTooShort { len: 10 }
    );
    let mut bad = QEMU.to_vec();
    bad[0] = 0;
    assert!(matches!(
        assign_devices(&bad, &request(1, &[])).unwrap_err(),
        DeviceError::DtbBadMagic { .. }
    ));
}

fn requestable() -> impl Strategy<Value = Vec<&'static str>> {
    proptest::sample::subsequence(
        vec![
            "/pl031@9010000",
            "/pl061@9030000",
            "/gpio-keys",
            "/virtio_mmio@a000000",
            "/fw-cfg@9020000",
            "/flash@0",
            "/pcie@10000000",
            "/intc@8000000",
            "/pl011@9000000",
            "/apb-pclk",
            "/platform-bus@c000000",
        ],
        0..6,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever is asked: what stage 2 maps never touches guest RAM, hidden memory or
    /// the emulated frames; the guest DTB agrees with the assignment; every request is
    /// granted or refused.
    #[test]
    fn any_request_keeps_the_invariants(paths in requestable(), vcpus in 1usize..=4) {
        let assignment = assign_devices(QEMU, &request(vcpus, &paths)).unwrap();
        let mapped = assignment.passthrough_regions();
        for region in &mapped {
            prop_assert!(!GUEST_RAM.iter().chain(&HIDDEN).any(|r| r.overlaps(region)));
            for device in &assignment.emulated {
                prop_assert!(!device.regions.iter().any(|r| r.overlaps(region)));
            }
        }
        for path in &paths {
            let granted = assignment.passthrough.iter().any(|d| d.path == *path);
            let refused = assignment.refused.iter().any(|d| d.path == *path);
            prop_assert!(granted != refused, "{path}");
        }
        let dtb = build_guest_dtb_for(QEMU, &spec(vcpus), &assignment).unwrap();
        prop_assert_eq!(passthrough_regions(&dtb).unwrap(), mapped);
    }

    /// Mutated fixtures give errors or refusals, never a panic.
    #[test]
    fn mutated_fixtures_never_panic(
        mutations in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        paths in requestable(),
        which in 0usize..3,
    ) {
        let host = [QEMU, QEMU_SMMU, QEMU_XEN_PL031][which];
        let mut bytes = host.to_vec();
        for (index, value) in mutations {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        if let Ok(assignment) = assign_devices(&bytes, &request(4, &paths)) {
            let _ = assignment.console_line(1);
            for refused in &assignment.refused {
                let _ = refused.to_string();
            }
            for note in &assignment.notes {
                let _ = note.to_string();
            }
            let _ = build_guest_dtb_for(&bytes, &spec(4), &assignment);
        }
        // As the fuzz target checks: a guest DT built rebuilds to itself.
        if let Ok(dtb) = guest_loader::build_guest_dtb(&bytes, &spec(4)) {
            prop_assert_eq!(guest_loader::build_guest_dtb(&dtb, &spec(4)), Ok(dtb));
        }
    }
}
