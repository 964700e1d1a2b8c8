//! Guest DT tests: each rule is checked by reading the output back with the `fdt` crate
//! (an independent reader) and, when `dtc` is installed, by decompiling it.

use super::*;
use crate::devices::{self, DeviceError};
use alloc::collections::BTreeMap;
use alloc::vec;
use proptest::prelude::*;

const QEMU_SMP2: &[u8] = include_bytes!("../../tests/fixtures/qemu-virt-smp2-2g-kernel-initrd.dtb");
const QEMU_SMP4: &[u8] =
    include_bytes!("../../tests/fixtures/qemu-virt-smp4-2sockets-3g-kernel.dtb");
const SYNTHETIC: &[u8] = include_bytes!("../../tests/fixtures/synthetic-reserved.dtb");

const MIB: u64 = 1 << 20;

fn range(base: u64, size: u64) -> PhysRange {
    PhysRange::new(base, size).unwrap()
}

/// QEMU virt -m 2G with the hypervisor in the first 32 MiB.
const QEMU_HIDDEN: [PhysRange; 1] = [PhysRange {
    base: 0x4000_0000,
    size: 0x200_0000,
}];
const QEMU_GUEST_RAM: [PhysRange; 1] = [PhysRange {
    base: 0x4200_0000,
    size: 0x7e00_0000,
}];

fn qemu_spec(vcpus: usize) -> GuestDtSpec<'static> {
    GuestDtSpec {
        memory: &QEMU_GUEST_RAM,
        bootargs: Some("console=ttyAMA0 earlycon"),
        initrd: Some(range(0x5800_0000, MIB)),
        vcpus,
        psci_conduit: Conduit::Hvc,
        hidden: &QEMU_HIDDEN,
        kaslr_seed: Some(0x0123_4567_89ab_cdef),
        rng_seed: Some(&[1, 2, 3, 4, 5, 6, 7, 8]),
    }
}

const SYNTHETIC_HIDDEN: [PhysRange; 2] = [
    PhysRange {
        base: 0x4000_0000,
        size: 0x200_0000,
    },
    PhysRange {
        base: 0x7c00_0000,
        size: 0x400_0000,
    },
];
const SYNTHETIC_GUEST_RAM: [PhysRange; 2] = [
    PhysRange {
        base: 0x1_0000_0000,
        size: 0x4000_0000,
    },
    PhysRange {
        base: 0x4200_0000,
        size: 0x3a00_0000,
    },
];

fn synthetic_spec(vcpus: usize) -> GuestDtSpec<'static> {
    GuestDtSpec {
        memory: &SYNTHETIC_GUEST_RAM,
        bootargs: Some("console=ttyAMA0"),
        initrd: None,
        vcpus,
        psci_conduit: Conduit::Hvc,
        hidden: &SYNTHETIC_HIDDEN,
        kaslr_seed: None,
        rng_seed: None,
    }
}

type Props = BTreeMap<String, Vec<u8>>;

/// Every node of a DTB by path, with its properties, read with the `fdt` crate.
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

fn reservations(dtb: &[u8]) -> Vec<(u64, u64)> {
    fdt::Fdt::new(dtb)
        .unwrap()
        .memory_reservations()
        .map(|r| (r.address() as u64, r.size() as u64))
        .collect()
}

fn boot_cpuid(dtb: &[u8]) -> u32 {
    u32::from_be_bytes(dtb[28..32].try_into().unwrap())
}

fn string(value: &str) -> Vec<u8> {
    let mut bytes = value.as_bytes().to_vec();
    bytes.push(0);
    bytes
}

fn u64_be(value: u64) -> Vec<u8> {
    value.to_be_bytes().to_vec()
}

fn reg2(base: u64, size: u64) -> Vec<u8> {
    [base.to_be_bytes(), size.to_be_bytes()].concat()
}

fn names(props: &Props) -> Vec<&str> {
    props.keys().map(String::as_str).collect()
}

fn paths_under<'m>(tree: &'m BTreeMap<String, Props>, prefix: &str) -> Vec<&'m str> {
    tree.keys()
        .map(String::as_str)
        .filter(|path| path.starts_with(prefix))
        .collect()
}

#[test]
fn qemu_fixture_follows_every_rule() {
    let spec = qemu_spec(2);
    let dtb = build_guest_dtb(QEMU_SMP2, &spec).unwrap();
    assert!(dtb.len() <= MAX_GUEST_DTB_SIZE);
    let host = model(QEMU_SMP2);
    let guest = model(&dtb);

    // Memory: the guest's only.
    assert!(!guest.contains_key("/memory@40000000"));
    let memory = &guest["/memory@42000000"];
    assert_eq!(memory["device_type"], string("memory"));
    assert_eq!(memory["reg"], reg2(0x4200_0000, 0x7e00_0000));
    assert_eq!(paths_under(&guest, "/memory").len(), 1);

    // /chosen: exactly the guest's properties, no modules.
    let chosen = &guest["/chosen"];
    assert_eq!(
        names(chosen),
        [
            "bootargs",
            "kaslr-seed",
            "linux,initrd-end",
            "linux,initrd-start",
            "rng-seed",
            "stdout-path"
        ]
    );
    assert_eq!(chosen["bootargs"], string("console=ttyAMA0 earlycon"));
    assert_eq!(chosen["linux,initrd-start"], u64_be(0x5800_0000));
    assert_eq!(chosen["linux,initrd-end"], u64_be(0x5810_0000));
    assert_eq!(chosen["stdout-path"], host["/chosen"]["stdout-path"]);
    assert_eq!(chosen["kaslr-seed"], u64_be(0x0123_4567_89ab_cdef));
    assert_ne!(chosen["kaslr-seed"], host["/chosen"]["kaslr-seed"]);
    assert_eq!(chosen["rng-seed"], [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(paths_under(&guest, "/chosen/"), Vec::<&str>::new());

    // PSCI.
    let psci = &guest["/psci"];
    assert_eq!(names(psci), ["compatible", "method"]);
    assert_eq!(psci["compatible"], b"arm,psci-1.0\0arm,psci-0.2\0");
    assert_eq!(psci["method"], string("hvc"));

    // The devices every guest gets, and nothing else: the emulated PL011 and its clock,
    // the timer, the PMU and the emulated GIC; none of fw-cfg, flash, PCIe, virtio-mmio,
    // the ITS, GPIO, RTC or the platform bus.
    let top_level: Vec<&str> = guest
        .keys()
        .map(String::as_str)
        .filter(|path| path.matches('/').count() == 1 && *path != "/")
        .collect();
    assert_eq!(
        top_level,
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
    // Kept devices are the host's, byte for byte (phandles included).
    for path in [
        "/",
        "/aliases",
        "/apb-pclk",
        "/pl011@9000000",
        "/pmu",
        "/timer",
    ] {
        assert_eq!(guest.get(path), host.get(path), "{path}");
    }
    for (path, props) in &host {
        if path.starts_with("/cpus") {
            assert_eq!(guest.get(path), Some(props), "{path}");
        }
    }
    // The emulated GIC: distributor + one redistributor region for 2 vCPUs, no
    // maintenance interrupt, no ITS.
    let gic = &guest["/intc@8000000"];
    let host_gic = &host["/intc@8000000"];
    assert_eq!(
        gic["reg"],
        [reg2(0x800_0000, 0x1_0000), reg2(0x80a_0000, 2 * 0x2_0000)].concat()
    );
    assert_eq!(
        names(gic),
        [
            "#address-cells",
            "#interrupt-cells",
            "#size-cells",
            "compatible",
            "interrupt-controller",
            "phandle",
            "ranges",
            "reg"
        ]
    );
    for name in ["phandle", "#interrupt-cells", "compatible", "ranges"] {
        assert_eq!(gic[name], host_gic[name], "{name}");
    }
    assert!(host_gic.contains_key("interrupts"));
    assert_eq!(paths_under(&guest, "/intc@8000000/"), Vec::<&str>::new());

    assert_eq!(reservations(&dtb), []);
    assert_eq!(boot_cpuid(&dtb), 0);
}

#[test]
fn first_n_cpus_are_kept_and_cpu_map_follows() {
    let dtb = build_guest_dtb(QEMU_SMP2, &qemu_spec(1)).unwrap();
    let guest = model(&dtb);
    assert_eq!(
        paths_under(&guest, "/cpus/"),
        [
            "/cpus/cpu-map",
            "/cpus/cpu-map/socket0",
            "/cpus/cpu-map/socket0/cluster0",
            "/cpus/cpu-map/socket0/cluster0/core0",
            "/cpus/cpu@0",
        ]
    );
    // core0 points at the kept cpu.
    assert_eq!(
        guest["/cpus/cpu-map/socket0/cluster0/core0"]["cpu"],
        guest["/cpus/cpu@0"]["phandle"]
    );
}

#[test]
fn whole_sockets_go_when_their_cpus_go() {
    let spec = GuestDtSpec {
        memory: &[range(0x4200_0000, 0xbe00_0000)],
        ..qemu_spec(2)
    };
    let guest = model(&build_guest_dtb(QEMU_SMP4, &spec).unwrap());
    let cpus: Vec<&str> = paths_under(&guest, "/cpus/");
    assert!(cpus.contains(&"/cpus/cpu-map/socket0/cluster0/core1"));
    assert!(!cpus.iter().any(|p| p.contains("socket1")));
    assert!(!cpus.contains(&"/cpus/cpu@2"));

    let guest = model(&build_guest_dtb(QEMU_SMP4, &GuestDtSpec { vcpus: 3, ..spec }).unwrap());
    assert!(guest.contains_key("/cpus/cpu-map/socket1/cluster0/core0"));
    assert!(!guest.contains_key("/cpus/cpu-map/socket1/cluster0/core1"));
    assert!(guest.contains_key("/cpus/cpu@2"));
    assert!(!guest.contains_key("/cpus/cpu@3"));

    let host = model(QEMU_SMP4);
    let guest = model(&build_guest_dtb(QEMU_SMP4, &GuestDtSpec { vcpus: 4, ..spec }).unwrap());
    for path in paths_under(&host, "/cpus") {
        assert_eq!(guest.get(path), host.get(path), "{path}");
    }
}

#[test]
fn synthetic_fixture_reserved_memory_and_chosen() {
    let dtb = build_guest_dtb(SYNTHETIC, &synthetic_spec(2)).unwrap();
    let guest = model(&dtb);
    let host = model(SYNTHETIC);

    // /memreserve/: inside kept, straddling clipped, hypervisor-only dropped.
    assert_eq!(
        reservations(&dtb),
        [(0x4200_0000, 0x10_0000), (0x4800_0000, 0x10_0000)]
    );

    // /reserved-memory: children inside guest RAM or without reg.
    assert_eq!(
        paths_under(&guest, "/reserved-memory/"),
        [
            "/reserved-memory/guest-buffer@50000000",
            "/reserved-memory/linux,cma"
        ]
    );
    assert_eq!(
        guest["/reserved-memory/guest-buffer@50000000"],
        host["/reserved-memory/guest-buffer@50000000"]
    );
    assert_eq!(guest["/reserved-memory"], host["/reserved-memory"]);
    // The client is not assigned by default; assigned, its memory-region still names
    // the kept reservation.
    assert!(!guest.contains_key("/dma-client@a000000"));
    let request = devices::DeviceRequest {
        vcpus: 2,
        guest_ram: &SYNTHETIC_GUEST_RAM,
        hidden: &SYNTHETIC_HIDDEN,
        passthrough_paths: &["/dma-client@a000000"],
        smmus_driven: &[],
        marked_passthrough: true,
    };
    let assignment = devices::assign_devices(SYNTHETIC, &request).unwrap();
    let assigned = model(&build_guest_dtb_for(SYNTHETIC, &synthetic_spec(2), &assignment).unwrap());
    assert_eq!(
        assigned["/dma-client@a000000"]["memory-region"],
        assigned["/reserved-memory/guest-buffer@50000000"]["phandle"]
    );
    assert_eq!(assigned["/dma-client@a000000"], host["/dma-client@a000000"]);

    // Two guest memory nodes, in address order, where the host's were.
    assert_eq!(
        paths_under(&guest, "/memory"),
        ["/memory@100000000", "/memory@42000000"]
    );
    assert_eq!(
        guest["/memory@42000000"]["reg"],
        reg2(0x4200_0000, 0x3a00_0000)
    );
    assert_eq!(
        guest["/memory@100000000"]["reg"],
        reg2(0x1_0000_0000, 0x4000_0000)
    );

    // /chosen: hypervisor-only properties and children gone, framebuffer kept.
    assert_eq!(
        names(&guest["/chosen"]),
        [
            "#address-cells",
            "#size-cells",
            "bootargs",
            "ranges",
            "stdout-path"
        ]
    );
    assert_eq!(guest["/chosen"]["bootargs"], string("console=ttyAMA0"));
    assert_eq!(guest["/chosen"]["stdout-path"], string("serial0:115200n8"));
    assert_eq!(
        paths_under(&guest, "/chosen/"),
        ["/chosen/framebuffer@60000000"]
    );

    // PSCI below /firmware is rewritten in place; no second one is added.
    assert_eq!(names(&guest["/firmware/psci"]), ["compatible", "method"]);
    assert_eq!(guest["/firmware/psci"]["method"], string("hvc"));
    assert!(!guest.contains_key("/psci"));
}

#[test]
fn cpus_use_psci_and_cpu_map_is_renumbered() {
    let guest = model(&build_guest_dtb(SYNTHETIC, &synthetic_spec(2)).unwrap());
    let host = model(SYNTHETIC);
    // The spin-table CPU now starts through PSCI.
    let cpu1 = &guest["/cpus/cpu@1"];
    assert_eq!(cpu1["enable-method"], string("psci"));
    assert!(!cpu1.contains_key("cpu-release-addr"));
    assert_eq!(cpu1["phandle"], host["/cpus/cpu@1"]["phandle"]);
    assert_eq!(guest["/cpus/cpu@0"], host["/cpus/cpu@0"]);
    assert_eq!(guest["/cpus/l2-cache0"], host["/cpus/l2-cache0"]);
    // Host cluster1 (cpus 0 and 1) is the only one left, renumbered cluster0 because
    // Linux's cpu-map parser stops at the first missing number.
    assert_eq!(
        paths_under(&guest, "/cpus/cpu-map/"),
        [
            "/cpus/cpu-map/cluster0",
            "/cpus/cpu-map/cluster0/core0",
            "/cpus/cpu-map/cluster0/core1",
        ]
    );
    assert_eq!(
        guest["/cpus/cpu-map/cluster0/core0"]["cpu"],
        phandle_of(&host, "/cpus/cpu@0")
    );
    assert_eq!(
        guest["/cpus/cpu-map/cluster0/core1"]["cpu"],
        phandle_of(&host, "/cpus/cpu@1")
    );
}

fn phandle_of(tree: &BTreeMap<String, Props>, path: &str) -> Vec<u8> {
    tree[path]["phandle"].clone()
}

#[test]
fn boot_cpuid_is_kept_when_its_cpu_is() {
    let mut host = SYNTHETIC.to_vec();
    host[28..32].copy_from_slice(&0x101u32.to_be_bytes());
    assert_eq!(
        boot_cpuid(&build_guest_dtb(&host, &synthetic_spec(4)).unwrap()),
        0x101
    );
    // cpu@101 is dropped with 2 vCPUs: the first kept CPU boots.
    assert_eq!(
        boot_cpuid(&build_guest_dtb(&host, &synthetic_spec(2)).unwrap()),
        0
    );
}

/// A minimal host DT written with vm-fdt: root cells, optional memory, chosen, psci.
struct HostDt {
    address_cells: u32,
    size_cells: u32,
    memory: bool,
    chosen: bool,
    psci: bool,
    cpus: bool,
    extra: fn(&mut FdtWriter),
}

impl Default for HostDt {
    fn default() -> Self {
        Self {
            address_cells: 2,
            size_cells: 2,
            memory: true,
            chosen: true,
            psci: true,
            cpus: true,
            extra: |_| {},
        }
    }
}

impl HostDt {
    fn build(&self) -> Vec<u8> {
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", self.address_cells)
            .unwrap();
        w.property_u32("#size-cells", self.size_cells).unwrap();
        if self.memory {
            let memory = w.begin_node("memory@40000000").unwrap();
            w.property_string("device_type", "memory").unwrap();
            w.property_array_u32("reg", &[0, 0x4000_0000, 0, 0x8000_0000])
                .unwrap();
            w.end_node(memory).unwrap();
        }
        if self.chosen {
            let chosen = w.begin_node("chosen").unwrap();
            w.property_string("bootargs", "hyp").unwrap();
            w.end_node(chosen).unwrap();
        }
        if self.psci {
            let psci = w.begin_node("psci").unwrap();
            w.property_string("compatible", "arm,psci-0.2").unwrap();
            w.property_string("method", "smc").unwrap();
            w.end_node(psci).unwrap();
        }
        if self.cpus {
            let cpus = w.begin_node("cpus").unwrap();
            w.property_u32("#address-cells", 1).unwrap();
            w.property_u32("#size-cells", 0).unwrap();
            let cpu = w.begin_node("cpu@0").unwrap();
            w.property_string("device_type", "cpu").unwrap();
            w.property_u32("reg", 0).unwrap();
            w.end_node(cpu).unwrap();
            w.end_node(cpus).unwrap();
        }
        (self.extra)(&mut w);
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }
}

fn small_spec() -> GuestDtSpec<'static> {
    GuestDtSpec {
        initrd: None,
        vcpus: 1,
        ..qemu_spec(1)
    }
}

#[test]
fn missing_memory_chosen_and_psci_nodes_are_added() {
    let host = HostDt {
        memory: false,
        chosen: false,
        psci: false,
        ..HostDt::default()
    }
    .build();
    let guest = model(&build_guest_dtb(&host, &small_spec()).unwrap());
    assert_eq!(
        guest["/memory@42000000"]["reg"],
        reg2(0x4200_0000, 0x7e00_0000)
    );
    assert_eq!(
        names(&guest["/chosen"]),
        ["bootargs", "kaslr-seed", "rng-seed"]
    );
    assert_eq!(guest["/psci"]["method"], string("hvc"));
}

#[test]
fn smc_conduit_and_no_bootargs() {
    let spec = GuestDtSpec {
        psci_conduit: Conduit::Smc,
        bootargs: None,
        kaslr_seed: None,
        rng_seed: None,
        ..small_spec()
    };
    let guest = model(&build_guest_dtb(&HostDt::default().build(), &spec).unwrap());
    assert_eq!(guest["/psci"]["method"], string("smc"));
    assert!(names(&guest["/chosen"]).is_empty());
    // A cpu node without enable-method gets one.
    assert_eq!(guest["/cpus/cpu@0"]["enable-method"], string("psci"));
}

#[test]
fn one_cell_roots_get_one_cell_memory() {
    let host = HostDt {
        address_cells: 1,
        size_cells: 1,
        ..HostDt::default()
    }
    .build();
    let guest = model(&build_guest_dtb(&host, &small_spec()).unwrap());
    let mut reg = 0x4200_0000u32.to_be_bytes().to_vec();
    reg.extend_from_slice(&0x7e00_0000u32.to_be_bytes());
    assert_eq!(guest["/memory@42000000"]["reg"], reg);
}

#[test]
fn error_address_too_wide() {
    let host = HostDt {
        address_cells: 1,
        size_cells: 1,
        ..HostDt::default()
    }
    .build();
    let ram = [range(0x1_0000_0000, 0x1000_0000)];
    let spec = GuestDtSpec {
        memory: &ram,
        ..small_spec()
    };
    let err = build_guest_dtb(&host, &spec).unwrap_err();
    assert_eq!(
        err,
        GuestDtError::AddressTooWide {
            value: 0x1_0000_0000,
            cells: 1
        }
    );
    assert!(err.to_string().contains("0x100000000"));
}

#[test]
fn error_unsupported_cells() {
    let host = HostDt {
        address_cells: 3,
        ..HostDt::default()
    }
    .build();
    let err = build_guest_dtb(&host, &small_spec()).unwrap_err();
    assert_eq!(
        err,
        GuestDtError::UnsupportedCells {
            path: "/".to_string(),
            address_cells: 3,
            size_cells: 2
        }
    );
    assert!(err.to_string().contains("#address-cells = 3"));
}

#[test]
fn error_no_cpus_node() {
    let host = HostDt {
        cpus: false,
        ..HostDt::default()
    }
    .build();
    let err = build_guest_dtb(&host, &small_spec()).unwrap_err();
    assert_eq!(err, GuestDtError::NoCpusNode);
    assert!(err.to_string().contains("/cpus"));
}

#[test]
fn error_too_many_vcpus() {
    let err = build_guest_dtb(QEMU_SMP2, &qemu_spec(3)).unwrap_err();
    assert_eq!(
        err,
        GuestDtError::TooManyVcpus {
            requested: 3,
            available: 2
        }
    );
    assert!(err.to_string().contains("3 vCPUs"));
}

#[test]
fn error_no_vcpus() {
    let err = build_guest_dtb(QEMU_SMP2, &qemu_spec(0)).unwrap_err();
    assert_eq!(err, GuestDtError::NoVcpus);
    assert!(err.to_string().contains("at least one vCPU"));
}

#[test]
fn error_malformed_cpu_map_entry() {
    // A cpu-map entry whose `cpu` is 2 bytes instead of a 4-byte phandle.
    let mut w = FdtWriter::new().unwrap();
    let root = w.begin_node("").unwrap();
    let cpus = w.begin_node("cpus").unwrap();
    w.property_u32("#address-cells", 1).unwrap();
    w.property_u32("#size-cells", 0).unwrap();
    let map = w.begin_node("cpu-map").unwrap();
    let core = w.begin_node("core0").unwrap();
    w.property("cpu", &[0, 1]).unwrap();
    w.end_node(core).unwrap();
    w.end_node(map).unwrap();
    let cpu = w.begin_node("cpu@0").unwrap();
    w.property_string("device_type", "cpu").unwrap();
    w.property_u32("reg", 0).unwrap();
    w.end_node(cpu).unwrap();
    w.end_node(cpus).unwrap();
    w.end_node(root).unwrap();
    let err = build_guest_dtb(&w.finish().unwrap(), &small_spec()).unwrap_err();
    assert_eq!(
        err,
        GuestDtError::MalformedProperty {
            path: "/cpus/cpu-map".to_string(),
            property: "cpu",
            len: 2
        }
    );
    assert!(
        err.to_string()
            .contains("property cpu has a malformed length of 2 bytes")
    );
}

#[test]
fn error_cpu_map_too_deep() {
    let mut w = FdtWriter::new().unwrap();
    let root = w.begin_node("").unwrap();
    let cpus = w.begin_node("cpus").unwrap();
    w.property_u32("#address-cells", 1).unwrap();
    w.property_u32("#size-cells", 0).unwrap();
    let cpu = w.begin_node("cpu@0").unwrap();
    w.property_string("device_type", "cpu").unwrap();
    w.property_u32("reg", 0).unwrap();
    w.end_node(cpu).unwrap();
    let map = w.begin_node("cpu-map").unwrap();
    let mut open = Vec::new();
    for _ in 0..12 {
        open.push(w.begin_node("cluster0").unwrap());
    }
    for node in open.into_iter().rev() {
        w.end_node(node).unwrap();
    }
    w.end_node(map).unwrap();
    w.end_node(cpus).unwrap();
    w.end_node(root).unwrap();
    let err = build_guest_dtb(&w.finish().unwrap(), &small_spec()).unwrap_err();
    assert_eq!(
        err,
        GuestDtError::CpuMapTooDeep {
            path: "/cpus/cpu-map".to_string()
        }
    );
    assert!(err.to_string().contains("deeper than 8"));
}

#[test]
fn error_malformed_device_reg() {
    // The console the guest gets emulated in its place must have a usable reg.
    let host = HostDt {
        chosen: false,
        extra: |w| {
            let chosen = w.begin_node("chosen").unwrap();
            w.property_string("stdout-path", "/uart@9000000").unwrap();
            w.end_node(chosen).unwrap();
            let dev = w.begin_node("uart@9000000").unwrap();
            w.property_string("compatible", "arm,pl011").unwrap();
            w.property("reg", &[0; 12]).unwrap();
            w.end_node(dev).unwrap();
        },
        ..HostDt::default()
    }
    .build();
    let err = build_guest_dtb(&host, &small_spec()).unwrap_err();
    assert_eq!(
        err,
        GuestDtError::Devices(DeviceError::EmulatedMmio {
            kind: devices::EmulatedKind::Pl011,
            error: crate::passthrough::PassthroughError::MalformedProperty {
                path: "/uart@9000000".to_string(),
                property: "reg",
                len: 12
            }
        })
    );
    assert!(err.to_string().contains("/uart@9000000"), "{err}");

    // A device nobody asked for is dropped, whatever its reg says.
    let host = HostDt {
        extra: |w| {
            let dev = w.begin_node("uart@9000000").unwrap();
            w.property("reg", &[0; 12]).unwrap();
            w.end_node(dev).unwrap();
        },
        ..HostDt::default()
    }
    .build();
    let guest = model(&build_guest_dtb(&host, &small_spec()).unwrap());
    assert!(!guest.contains_key("/uart@9000000"));
}

#[test]
fn error_hidden_range_in_a_device() {
    // Pretend the UART's page is hypervisor memory: the emulated console would show it.
    let hidden = [range(0x900_0000, 0x1000)];
    let spec = GuestDtSpec {
        hidden: &hidden,
        ..qemu_spec(2)
    };
    let err = build_guest_dtb(QEMU_SMP2, &spec).unwrap_err();
    assert_eq!(
        err,
        GuestDtError::Devices(DeviceError::EmulatedOverlaps {
            kind: devices::EmulatedKind::Pl011,
            region: range(0x900_0000, 0x1000),
            what: "a hidden range",
            other: hidden[0]
        })
    );
    assert!(
        err.to_string()
            .contains("emulated PL011 at [0x9000000, 0x9001000) overlaps a hidden range"),
        "{err}"
    );
}

#[test]
fn error_assignment_for_another_dtb_or_vcpu_count() {
    let request = devices::DeviceRequest {
        vcpus: 2,
        guest_ram: &QEMU_GUEST_RAM,
        hidden: &QEMU_HIDDEN,
        passthrough_paths: &[],
        smmus_driven: &[],
        marked_passthrough: true,
    };
    let assignment = devices::assign_devices(QEMU_SMP2, &request).unwrap();
    assert!(build_guest_dtb_for(QEMU_SMP2, &qemu_spec(2), &assignment).is_ok());
    assert_eq!(
        build_guest_dtb_for(QEMU_SMP4, &qemu_spec(2), &assignment).unwrap_err(),
        GuestDtError::AssignmentMismatch { what: "host DTB" }
    );
    let err = build_guest_dtb_for(QEMU_SMP2, &qemu_spec(1), &assignment).unwrap_err();
    assert_eq!(err, GuestDtError::AssignmentMismatch { what: "vCPU count" });
    assert!(err.to_string().contains("another vCPU count"), "{err}");
}

#[test]
fn error_writer_rejects_a_bad_node_name() {
    // dtoolkit accepts a node name starting with a digit; the DT spec (and vm-fdt) do not.
    let mut host = QEMU_SMP2.to_vec();
    let at = host.windows(4).position(|w| w == b"pmu\0").unwrap();
    host[at] = b'1';
    let err = build_guest_dtb(&host, &qemu_spec(2)).unwrap_err();
    assert_eq!(
        err,
        GuestDtError::Write {
            path: "/1mu".to_string(),
            error: vm_fdt::Error::InvalidNodeName
        }
    );
    assert!(err.to_string().contains("/1mu"));
}

#[test]
fn error_too_large() {
    let host = HostDt {
        extra: |w| {
            // A node every guest keeps (the PMU), carrying the bulk.
            let blob = w.begin_node("pmu").unwrap();
            w.property_string("compatible", "arm,armv8-pmuv3").unwrap();
            w.property("data", &vec![0u8; MAX_GUEST_DTB_SIZE]).unwrap();
            w.end_node(blob).unwrap();
        },
        ..HostDt::default()
    }
    .build();
    let err = build_guest_dtb(&host, &small_spec()).unwrap_err();
    assert!(matches!(err, GuestDtError::TooLarge { size } if size > MAX_GUEST_DTB_SIZE));
    assert!(err.to_string().contains("2097152-byte limit"));
}

#[test]
fn error_spec_memory() {
    let err = build_guest_dtb(
        QEMU_SMP2,
        &GuestDtSpec {
            memory: &[],
            ..qemu_spec(2)
        },
    )
    .unwrap_err();
    assert_eq!(err, GuestDtError::NoGuestMemory);
    assert!(err.to_string().contains("no guest RAM"));

    let overlapping = [range(0x4200_0000, 0x1000_0000), range(0x4800_0000, MIB)];
    let err = build_guest_dtb(
        QEMU_SMP2,
        &GuestDtSpec {
            memory: &overlapping,
            initrd: None,
            ..qemu_spec(2)
        },
    )
    .unwrap_err();
    assert_eq!(
        err,
        GuestDtError::GuestMemoryOverlap {
            first: overlapping[0],
            second: overlapping[1]
        }
    );
    assert!(err.to_string().contains("overlap"));

    let covering = [range(0x4000_0000, 0x8000_0000)];
    let err = build_guest_dtb(
        QEMU_SMP2,
        &GuestDtSpec {
            memory: &covering,
            ..qemu_spec(2)
        },
    )
    .unwrap_err();
    assert_eq!(
        err,
        GuestDtError::GuestMemoryIncludesHidden {
            memory: covering[0],
            hidden: QEMU_HIDDEN[0]
        }
    );
    assert!(
        err.to_string()
            .contains("covers hidden range [0x40000000, 0x42000000)")
    );
}

#[test]
fn error_initrd_outside_guest_memory() {
    let initrd = range(0x4100_0000, MIB);
    let err = build_guest_dtb(
        QEMU_SMP2,
        &GuestDtSpec {
            initrd: Some(initrd),
            ..qemu_spec(2)
        },
    )
    .unwrap_err();
    assert_eq!(err, GuestDtError::InitrdOutsideGuestMemory { initrd });
    assert!(err.to_string().contains("[0x41000000, 0x41100000)"));
}

#[test]
fn initrd_may_span_adjacent_memory_ranges() {
    let ram = [
        range(0x4200_0000, 0x1000_0000),
        range(0x5200_0000, 0x1000_0000),
    ];
    let spec = GuestDtSpec {
        memory: &ram,
        initrd: Some(range(0x51f0_0000, 2 * MIB)),
        ..qemu_spec(2)
    };
    assert!(build_guest_dtb(QEMU_SMP2, &spec).is_ok());
}

#[test]
fn error_bootargs_with_nul() {
    let err = build_guest_dtb(
        QEMU_SMP2,
        &GuestDtSpec {
            bootargs: Some("a\0b"),
            ..qemu_spec(2)
        },
    )
    .unwrap_err();
    assert_eq!(err, GuestDtError::BootargsContainNul);
    assert!(err.to_string().contains("NUL"));
}

#[test]
fn error_host_dtb_header() {
    let spec = qemu_spec(2);
    let err = build_guest_dtb(&QEMU_SMP2[..39], &spec).unwrap_err();
    assert_eq!(err, GuestDtError::HostDtbTooShort { len: 39 });
    assert!(err.to_string().contains("39 bytes"));
    assert_eq!(
        build_guest_dtb(&[], &spec).unwrap_err(),
        GuestDtError::HostDtbTooShort { len: 0 }
    );

    let mut bad_magic = QEMU_SMP2.to_vec();
    bad_magic[0] = 0;
    let err = build_guest_dtb(&bad_magic, &spec).unwrap_err();
    assert_eq!(err, GuestDtError::HostDtbBadMagic { found: 0x000d_feed });
    assert!(err.to_string().contains("0x000dfeed"));

    let truncated = &QEMU_SMP2[..QEMU_SMP2.len() - 1];
    let err = build_guest_dtb(truncated, &spec).unwrap_err();
    assert_eq!(
        err,
        GuestDtError::HostDtbTruncated {
            totalsize: QEMU_SMP2.len() as u32,
            len: QEMU_SMP2.len() - 1
        }
    );
    assert!(err.to_string().contains("only"));

    // Trailing bytes after totalsize (e.g. QEMU's padding) are fine.
    let mut padded = QEMU_SMP2.to_vec();
    padded.resize(QEMU_SMP2.len() + 4096, 0);
    assert!(build_guest_dtb(&padded, &spec).is_ok());
}

#[test]
fn error_host_dtb_malformed() {
    // Break the root node's FDT_BEGIN_NODE token.
    let mut host = QEMU_SMP2.to_vec();
    let off_dt_struct = u32::from_be_bytes(host[8..12].try_into().unwrap()) as usize;
    host[off_dt_struct + 3] = 7;
    let err = build_guest_dtb(&host, &qemu_spec(2)).unwrap_err();
    assert!(
        matches!(err, GuestDtError::HostDtbMalformed { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("host DTB is malformed: "),
        "{err}"
    );
}

#[test]
fn renumbering_only_touches_cpu_map_levels() {
    let mut next = [0; 4];
    assert_eq!(renumbered_cpu_map_name("cluster5", &mut next), "cluster0");
    assert_eq!(renumbered_cpu_map_name("cluster7", &mut next), "cluster1");
    assert_eq!(renumbered_cpu_map_name("core3", &mut next), "core0");
    assert_eq!(renumbered_cpu_map_name("cluster", &mut next), "cluster");
    assert_eq!(renumbered_cpu_map_name("corex", &mut next), "corex");
    assert_eq!(renumbered_cpu_map_name("other1", &mut next), "other1");
}

/// `dtc` must read the output back without complaint (skipped when it is missing).
#[test]
fn dtc_round_trip() {
    use std::process::{Command, Stdio};
    if Command::new("dtc").arg("--version").output().is_err() {
        std::eprintln!("dtc not installed: skipping");
        return;
    }
    let dir = std::env::temp_dir().join(format!("guest-loader-dtc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, host, spec) in [
        ("qemu", QEMU_SMP2, qemu_spec(2)),
        ("synthetic", SYNTHETIC, synthetic_spec(2)),
    ] {
        let dtb = build_guest_dtb(host, &spec).unwrap();
        let dtb_path = dir.join(format!("{name}.dtb"));
        std::fs::write(&dtb_path, &dtb).unwrap();
        let out = Command::new("dtc")
            .args(["-I", "dtb", "-O", "dts"])
            .arg(&dtb_path)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stderr}");
        // The only warning dtc gives is about the framebuffer's unit address
        // format, which comes from the host fixture.
        let dts = String::from_utf8(out.stdout).unwrap();
        assert!(dts.contains("method = \"hvc\";"), "{name}");
        assert!(!dts.contains("multiboot"), "{name}");
        // And back to a DTB that our reader accepts again.
        let dts_path = dir.join(format!("{name}.dts"));
        std::fs::write(&dts_path, &dts).unwrap();
        let back = Command::new("dtc")
            .args(["-I", "dts", "-O", "dtb"])
            .arg(&dts_path)
            .output()
            .unwrap();
        assert!(back.status.success(), "{name}");
        assert_eq!(model(&back.stdout), model(&dtb), "{name}");
        assert!(
            !stderr.contains("ERROR"),
            "{name}: dtc complained about our output: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Found by tests/fuzz (guest_dtb): a `cpu@1` node whose `device_type` is not "cpu" is
/// no CPU to the platform parser, which sizes the vCPUs, but the builder counted it
/// (name alone) and kept it in place of a real CPU, so the guest's CPUs were not its
/// vCPUs. Only named `cpu` nodes with `device_type = "cpu"` count; look-alikes go.
#[test]
fn cpu_look_alikes_are_neither_counted_nor_kept() {
    let host = HostDt {
        cpus: false,
        extra: |w| {
            let cpus = w.begin_node("cpus").unwrap();
            w.property_u32("#address-cells", 1).unwrap();
            w.property_u32("#size-cells", 0).unwrap();
            for (name, device_type, reg) in [
                ("cpu@0", &b"cpu\0"[..], 0),
                ("cpu@1", &b"cpu\x80"[..], 1),
                ("core@2", &b"cpu\0"[..], 2),
                ("cpu@100", &b"cpu\0"[..], 0x100),
            ] {
                let cpu = w.begin_node(name).unwrap();
                w.property("device_type", device_type).unwrap();
                w.property_u32("reg", reg).unwrap();
                w.end_node(cpu).unwrap();
            }
            w.end_node(cpus).unwrap();
        },
        ..HostDt::default()
    }
    .build();
    let spec = GuestDtSpec {
        vcpus: 2,
        ..small_spec()
    };
    let guest = model(&build_guest_dtb(&host, &spec).unwrap());
    let cpus: Vec<&str> = guest
        .keys()
        .filter_map(|path| path.strip_prefix("/cpus/"))
        .collect();
    assert_eq!(cpus, ["cpu@0", "cpu@100"]);
    assert_eq!(
        build_guest_dtb(&host, &GuestDtSpec { vcpus: 3, ..spec }).unwrap_err(),
        GuestDtError::TooManyVcpus {
            requested: 3,
            available: 2
        }
    );
}

/// Found by tests/fuzz (guest_dtb): a node with `device_type = "memory"` below the root
/// (here under a bus and under a device) was copied, showing host RAM, hypervisor
/// memory included, to the guest; `platform::dt` reads such a node as RAM.
#[test]
fn memory_nodes_below_the_root_are_dropped() {
    let host = HostDt {
        extra: |w| {
            let soc = w.begin_node("soc").unwrap();
            w.property_u32("#address-cells", 2).unwrap();
            w.property_u32("#size-cells", 2).unwrap();
            w.property_null("ranges").unwrap();
            let memory = w.begin_node("memory@40000000").unwrap();
            w.property_string("device_type", "memory").unwrap();
            w.property_array_u32("reg", &[0, 0x4000_0000, 0, 0x4000_0000])
                .unwrap();
            w.end_node(memory).unwrap();
            let device = w.begin_node("fb@10000000").unwrap();
            w.property_null("xen,passthrough").unwrap();
            w.property_array_u32("reg", &[0, 0x1000_0000, 0, 0x1000])
                .unwrap();
            let inner = w.begin_node("ram").unwrap();
            w.property("device_type", b"memory\0other\0").unwrap();
            w.end_node(inner).unwrap();
            w.end_node(device).unwrap();
            w.end_node(soc).unwrap();
        },
        ..HostDt::default()
    }
    .build();
    let guest = model(&build_guest_dtb(&host, &small_spec()).unwrap());
    let memory: Vec<&String> = guest
        .iter()
        .filter(|(_, props)| {
            props
                .get("device_type")
                .is_some_and(|t| t.split(|&b| b == 0).any(|s| s == b"memory"))
        })
        .map(|(path, _)| path)
        .collect();
    assert_eq!(memory, ["/memory@42000000"]);
    // The assigned device stays, in its bus (a container), without the RAM below it.
    assert!(guest.contains_key("/soc/fb@10000000"));
    assert!(!guest.contains_key("/soc/fb@10000000/ram"));
    assert_eq!(
        names(&guest["/soc"]),
        ["#address-cells", "#size-cells", "ranges"]
    );
}

/// Found by tests/fuzz (guest_dtb): a UART whose compatible list also held a string
/// starting with "arm,psci" was taken for the PSCI node and rewritten, losing its
/// "arm,pl011" (the guest's console). PSCI is Linux's (and `platform::dt`'s) three
/// compatibles only.
#[test]
fn only_real_psci_compatibles_are_rewritten() {
    let host = HostDt {
        extra: |w| {
            let uart = w.begin_node("pl011@9000000").unwrap();
            w.property_null("xen,passthrough").unwrap();
            w.property("compatible", b"arm,pl011\0arm,psci-0.2l\0")
                .unwrap();
            w.property_array_u32("reg", &[0, 0x900_0000, 0, 0x1000])
                .unwrap();
            w.end_node(uart).unwrap();
        },
        ..HostDt::default()
    }
    .build();
    let guest = model(&build_guest_dtb(&host, &small_spec()).unwrap());
    let uart = &guest["/pl011@9000000"];
    assert_eq!(uart["compatible"], b"arm,pl011\0arm,psci-0.2l\0");
    assert_eq!(names(uart), ["compatible", "reg", "xen,passthrough"]);
    assert_eq!(
        guest["/psci"]["compatible"],
        b"arm,psci-1.0\0arm,psci-0.2\0"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = build_guest_dtb(&bytes, &qemu_spec(1));
    }

    #[test]
    fn random_bytes_behind_a_valid_header_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        off_struct in 40u32..200,
        off_strings in 40u32..600,
        off_rsv in 40u32..200,
    ) {
        let total = 40 + body.len() as u32;
        let mut blob = Vec::new();
        for word in [0xd00d_feed, total, off_struct, off_strings, off_rsv, 17, 16, 0,
                     total.saturating_sub(off_strings), off_strings.saturating_sub(off_struct)] {
            blob.extend_from_slice(&u32::to_be_bytes(word));
        }
        blob.extend_from_slice(&body);
        let _ = build_guest_dtb(&blob, &qemu_spec(1));
    }

    #[test]
    fn mutated_fixtures_never_panic(
        which in 0usize..3,
        mutations in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        vcpus in 0usize..5,
    ) {
        let (host, spec) = match which {
            0 => (QEMU_SMP2, qemu_spec(vcpus)),
            1 => (QEMU_SMP4, qemu_spec(vcpus)),
            _ => (SYNTHETIC, synthetic_spec(vcpus)),
        };
        let mut bytes = host.to_vec();
        for (index, value) in mutations {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        if let Ok(dtb) = build_guest_dtb(&bytes, &spec) {
            // Whatever came out is a DTB our reader can walk.
            prop_assert!(dtb.len() <= MAX_GUEST_DTB_SIZE);
            prop_assert!(Fdt::new(&dtb).is_ok());
        }
    }

    #[test]
    fn random_specs_never_panic(
        ram in proptest::collection::vec((any::<u64>(), any::<u64>()), 0..4),
        hidden in proptest::collection::vec((any::<u64>(), any::<u64>()), 0..3),
        initrd in proptest::option::of((any::<u64>(), any::<u64>())),
        vcpus in 0usize..4,
        bootargs in ".{0,40}",
    ) {
        let to_ranges = |pairs: &[(u64, u64)]| -> Vec<PhysRange> {
            pairs.iter().filter_map(|&(b, s)| PhysRange::new(b, s)).collect()
        };
        let ram = to_ranges(&ram);
        let hidden = to_ranges(&hidden);
        let spec = GuestDtSpec {
            memory: &ram,
            hidden: &hidden,
            initrd: initrd.and_then(|(b, s)| PhysRange::new(b, s)),
            vcpus,
            bootargs: Some(&bootargs),
            ..synthetic_spec(1)
        };
        if let Ok(dtb) = build_guest_dtb(SYNTHETIC, &spec) {
            let guest = model(&dtb);
            let memory_nodes = guest.keys().filter(|p| p.starts_with("/memory@")).count();
            prop_assert_eq!(memory_nodes, ram.len());
        }
    }
}

#[test]
fn stdout_path_without_unit_address_names_the_console_as_the_hypervisor_reads_it() {
    // `/uart` matches `uart@9000000` by its base name (Linux's `of_find_node_by_path`,
    // `platform::dt`); the guest must get that node emulated, not lose its console.
    // Found by the guest_dtb fuzz target ("/pl011:9000000").
    let host = HostDt {
        chosen: false,
        extra: |w| {
            let chosen = w.begin_node("chosen").unwrap();
            w.property_string("stdout-path", "/uart:9000000").unwrap();
            w.end_node(chosen).unwrap();
            let dev = w.begin_node("uart@9000000").unwrap();
            w.property_string("compatible", "arm,pl011").unwrap();
            w.property_array_u32("reg", &[0, 0x900_0000, 0, 0x1000])
                .unwrap();
            w.end_node(dev).unwrap();
        },
        ..HostDt::default()
    }
    .build();
    let guest = model(&build_guest_dtb(&host, &small_spec()).unwrap());
    assert!(guest.contains_key("/uart@9000000"), "{:?}", guest.keys());
    assert_eq!(guest["/chosen"]["stdout-path"], string("/uart:9000000"));
}
