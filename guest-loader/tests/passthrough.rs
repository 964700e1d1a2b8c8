//! `device_regions` (the address translation under every passthrough device's regions)
//! against QEMU's virt DTBs, the hand-written `passthrough-buses.dts`, small trees built
//! here for each error, and fuzzing. Which devices a guest gets is `tests/devices.rs`.

use guest_loader::passthrough::{
    PASSTHROUGH_PAGE_SIZE, PassthroughError, device_regions, named_device_regions,
};
use platform::info::PhysRange;
use proptest::prelude::*;
use vm_fdt::FdtWriter;

const QEMU_FIXTURES: [(&str, &[u8]); 8] = [
    (
        "qemu-virt-smp2-2g-kernel-initrd",
        include_bytes!("fixtures/qemu-virt-smp2-2g-kernel-initrd.dtb"),
    ),
    (
        "qemu-virt-smp4-2sockets-3g-kernel",
        include_bytes!("fixtures/qemu-virt-smp4-2sockets-3g-kernel.dtb"),
    ),
    (
        "qemu-1g-smp1-bootargs",
        include_bytes!("../../platform/tests/fixtures/qemu-1g-smp1-bootargs.dtb"),
    ),
    (
        "qemu-1g-smp1-max",
        include_bytes!("../../platform/tests/fixtures/qemu-1g-smp1-max.dtb"),
    ),
    (
        "qemu-2g-smp2-max",
        include_bytes!("../../platform/tests/fixtures/qemu-2g-smp2-max.dtb"),
    ),
    (
        "qemu-2g-smp2-modules",
        include_bytes!("../../platform/tests/fixtures/qemu-2g-smp2-modules.dtb"),
    ),
    (
        "qemu-2g-smp8-n2",
        include_bytes!("../../platform/tests/fixtures/qemu-2g-smp8-n2.dtb"),
    ),
    (
        "qemu-5g-smp4-a72",
        include_bytes!("../../platform/tests/fixtures/qemu-5g-smp4-a72.dtb"),
    ),
];

const BUSES: &[u8] = include_bytes!("fixtures/passthrough-buses.dtb");

fn range(base: u64, end: u64) -> PhysRange {
    PhysRange::new(base, end - base).expect("test range")
}

fn covers(regions: &[PhysRange], base: u64, size: u64) -> bool {
    let wanted = PhysRange::new(base, size).expect("test range");
    regions.iter().any(|region| region.contains_range(&wanted))
}

/// Page-aligned, sorted, and no two overlapping or touching.
fn assert_canonical(regions: &[PhysRange]) {
    for region in regions {
        assert_eq!(region.base % PASSTHROUGH_PAGE_SIZE, 0, "{region:x?}");
        assert_eq!(region.size % PASSTHROUGH_PAGE_SIZE, 0, "{region:x?}");
    }
    for pair in regions.windows(2) {
        assert!(pair[0].end() < pair[1].base, "{pair:x?}");
    }
}

/// Every QEMU 10 virt board in the fixtures has the same MMIO map (`dtc -I dtb -O dts`):
/// flash@0 (two 64 MiB banks), GICD 0x8000000/64K, ITS 0x8080000/128K, GICR
/// 0x80a0000/0xf60000, pl011 0x9000000/4K, pl031 0x9010000/4K, fw-cfg 0x9020000/0x18,
/// pl061 0x9030000/4K, 32 virtio-mmio at 0xa000000 + n * 0x200, PCIe ECAM
/// 0x4010000000/256M, PCI I/O 0x3eff0000/64K (CPU side), mem32 0x10000000/0x2eff0000,
/// mem64 0x8000000000/512G. platform-bus@c000000 has `ranges` but no `reg` and no
/// children, so it adds nothing.
#[test]
fn qemu_virt_fixtures() {
    let expected = vec![
        // flash 0..0x8000000 and GICD touch.
        range(0x0, 0x801_0000),
        // ITS, GICR, pl011 touch.
        range(0x808_0000, 0x900_1000),
        range(0x901_0000, 0x901_1000),
        // fw-cfg, 0x18 bytes rounded to a page.
        range(0x902_0000, 0x902_1000),
        range(0x903_0000, 0x903_1000),
        // 32 x 0x200 of virtio-mmio.
        range(0xa00_0000, 0xa00_4000),
        // PCI mem32 window then the I/O window, back to back.
        range(0x1000_0000, 0x3f00_0000),
        // High ECAM.
        range(0x40_1000_0000, 0x40_2000_0000),
        // PCI mem64 window.
        range(0x80_0000_0000, 0x100_0000_0000),
    ];
    for (name, dtb) in QEMU_FIXTURES {
        let regions = device_regions(dtb).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(regions, expected, "{name}");
        assert_canonical(&regions);
    }
}

#[test]
fn qemu_virt_excludes_ram_modules_and_cpus() {
    let (_, dtb) = QEMU_FIXTURES[0];
    let regions = device_regions(dtb).unwrap();
    // RAM, and the guest-loader modules under /chosen (inside RAM).
    for address in [0x4000_0000, 0x5000_0000, 0x5800_0000, 0xbfff_f000] {
        assert!(
            !regions.iter().any(|r| r.contains(address)),
            "{address:#x} in {regions:x?}"
        );
    }
    // The platform bus's window is not a device.
    assert!(!regions.iter().any(|r| r.contains(0xc00_0000)));
}

#[test]
fn hand_made_buses() {
    let regions = device_regions(BUSES).unwrap();
    let expected = vec![
        // GICD.
        range(0x800_0000, 0x801_0000),
        // ITS and GICR touch.
        range(0x808_0000, 0x80c_0000),
        // GICC, GICH, GICV.
        range(0x810_0000, 0x810_2000),
        range(0x811_0000, 0x812_2000),
        // uart (0x100 bytes rounded up).
        range(0x900_0000, 0x900_1000),
        // disabled-bus@9100000 and secure-uart@9200000 ("reserved") are absent.
        range(0x930_0000, 0x930_1000),
        // i2c@9400000 (its rtc@68 is an I2C address).
        range(0x940_0000, 0x940_1000),
        // timer@9500000 (arm,armv7-timer-mem).
        range(0x950_0000, 0x950_1000),
        // straddle@9600800: two pages.
        range(0x960_0000, 0x960_2000),
        // soc/sysctl@1000.
        range(0x2000_1000, 0x2000_2000),
        // soc/bus@100000's own reg.
        range(0x2010_0000, 0x2010_1000),
        // soc/bus@100000/serial@0.
        range(0x2020_0000, 0x2020_1000),
        // soc/bus@100000/serial@2000's two entries touch.
        range(0x2020_2000, 0x2020_4000),
        // soc/bus@100000/i2c@8000; gone@9000 is disabled, empty@a000 has size 0.
        range(0x2020_8000, 0x2020_9000),
        // soc/gpio-bus/gpio@400000 through empty ranges.
        range(0x2040_0000, 0x2040_1000),
        // soc/pcie@800000 ECAM.
        range(0x2080_0000, 0x2090_0000),
        // PCI I/O window.
        range(0x20f0_0000, 0x20f1_0000),
        // soc/high@80001000 through the soc's second window.
        range(0x1_0000_1000, 0x1_0000_3000),
        // PCI mem64 then mem32 windows, back to back.
        range(0x1_0004_0000, 0x1_0010_0000),
    ];
    assert_eq!(regions, expected);
    assert_canonical(&regions);
    // Not regions: RAM, /reserved-memory, a /chosen module, the disabled bus's child,
    // the PCI config-space window, the MDIO PHY (its parent has no ranges).
    for address in [
        0x4000_0000,
        0x7f00_0000,
        0x5000_0000,
        0x911_0000,
        0x2050_0000,
        0x2000_0000,
    ] {
        assert!(!regions.iter().any(|r| r.contains(address)), "{address:#x}");
    }
}

/// Builds a tree: the root has 2/2 cells unless `root` says otherwise, then `body`
/// writes the rest.
fn tree(root: &[(&str, &[u8])], body: impl FnOnce(&mut FdtWriter)) -> Vec<u8> {
    let mut w = FdtWriter::new().unwrap();
    let node = w.begin_node("").unwrap();
    if !root.iter().any(|(name, _)| *name == "#address-cells") {
        w.property_u32("#address-cells", 2).unwrap();
    }
    if !root.iter().any(|(name, _)| *name == "#size-cells") {
        w.property_u32("#size-cells", 2).unwrap();
    }
    for (name, value) in root {
        w.property(name, value).unwrap();
    }
    body(&mut w);
    w.end_node(node).unwrap();
    w.finish().unwrap()
}

/// A node with these properties and no children.
fn leaf(w: &mut FdtWriter, name: &str, properties: &[(&str, &[u8])]) {
    let node = w.begin_node(name).unwrap();
    for (name, value) in properties {
        w.property(name, value).unwrap();
    }
    w.end_node(node).unwrap();
}

fn cells(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// A bus at the root with 1/1 cells, the given `ranges` (None: none) and one child
/// whose `reg` is `child_reg`.
fn bus(ranges: Option<&[u32]>, child_reg: &[u32]) -> Vec<u8> {
    tree(&[], |w| {
        let node = w.begin_node("bus").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 1).unwrap();
        if let Some(ranges) = ranges {
            w.property("ranges", &cells(ranges)).unwrap();
        }
        leaf(w, "dev@0", &[("reg", &cells(child_reg))]);
        w.end_node(node).unwrap();
    })
}

#[test]
fn reg_through_ranges() {
    let dtb = bus(Some(&[0x0, 0x0, 0x1000_0000, 0x10000]), &[0x1000, 0x1000]);
    assert_eq!(
        device_regions(&dtb).unwrap(),
        [range(0x1000_1000, 0x1000_2000)]
    );
    // The last byte of the window.
    let dtb = bus(Some(&[0x0, 0x0, 0x1000_0000, 0x10000]), &[0xffff, 0x1]);
    assert_eq!(
        device_regions(&dtb).unwrap(),
        [range(0x1000_f000, 0x1001_0000)]
    );
    // No ranges: the child is not memory-mapped, and that is not an error.
    assert_eq!(device_regions(&bus(None, &[0x1000, 0x1000])).unwrap(), []);
    // Empty ranges: identity.
    assert_eq!(
        device_regions(&bus(Some(&[]), &[0x1000, 0x1000])).unwrap(),
        [range(0x1000, 0x2000)]
    );
}

#[test]
fn reg_outside_the_window_is_an_error() {
    for reg in [[0x10000, 0x1000], [0xf800, 0x1000], [0x10000, 0x1]] {
        let dtb = bus(Some(&[0x0, 0x0, 0x1000_0000, 0x10000]), &reg);
        assert_eq!(
            device_regions(&dtb),
            Err(PassthroughError::OutsideParentRanges {
                path: "/bus/dev@0".into(),
                property: "reg",
                base: u64::from(reg[0]),
                size: u64::from(reg[1]),
            }),
            "{reg:x?}"
        );
    }
}

#[test]
fn ranges_outside_the_grandparent_window_is_an_error() {
    let dtb = tree(&[], |w| {
        let outer = w.begin_node("outer").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 1).unwrap();
        w.property("ranges", &cells(&[0x0, 0x0, 0x2000_0000, 0x10000]))
            .unwrap();
        let inner = w.begin_node("inner@8000").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 1).unwrap();
        // [0x8000, +0x10000) runs past outer's 64 KiB window.
        w.property("ranges", &cells(&[0x0, 0x8000, 0x10000]))
            .unwrap();
        w.end_node(inner).unwrap();
        w.end_node(outer).unwrap();
    });
    let error = device_regions(&dtb).unwrap_err();
    assert_eq!(
        error,
        PassthroughError::OutsideParentRanges {
            path: "/outer/inner@8000".into(),
            property: "ranges",
            base: 0x8000,
            size: 0x10000,
        }
    );
    assert_eq!(
        error.to_string(),
        "/outer/inner@8000: ranges entry [0x8000, +0x10000) is not inside any ranges window \
         of the parent bus"
    );
}

#[test]
fn size_zero_is_skipped() {
    let dtb = tree(&[], |w| {
        leaf(w, "a@1000", &[("reg", &cells(&[0, 0x1000, 0, 0]))]);
        leaf(w, "b@2000", &[("reg", &cells(&[0, 0x2000, 0, 0x10]))]);
    });
    assert_eq!(device_regions(&dtb).unwrap(), [range(0x2000, 0x3000)]);
    // A size-0 window translates nothing; a reg in it is outside the bus's ranges.
    let dtb = bus(Some(&[0x0, 0x0, 0x1000_0000, 0x0]), &[0x0, 0x0]);
    assert_eq!(device_regions(&dtb).unwrap(), []);
    let dtb = bus(Some(&[0x0, 0x0, 0x1000_0000, 0x0]), &[0x0, 0x10]);
    assert!(matches!(
        device_regions(&dtb),
        Err(PassthroughError::OutsideParentRanges { .. })
    ));
}

#[test]
fn overflow_is_an_error() {
    for (base, size) in [
        // The end passes 2^64.
        (0xffff_ffff_ffff_f000, 0x2000),
        // The end is 2^64 exactly, which a PhysRange cannot hold.
        (0xffff_ffff_ffff_f000, 0x1000),
        // The end rounded up to a page is 2^64.
        (0xffff_ffff_ffff_f800, 0x100),
    ] {
        let dtb = tree(&[], |w| {
            leaf(
                w,
                "dev",
                &[("reg", &cells(&[(base >> 32) as u32, base as u32, 0, size]))],
            )
        });
        assert_eq!(
            device_regions(&dtb),
            Err(PassthroughError::Overflow {
                path: "/dev".into(),
                property: "reg",
                base,
                size: u64::from(size),
            }),
            "{base:#x} {size:#x}"
        );
    }
    // The last whole page below 2^64 is fine.
    let dtb = tree(&[], |w| {
        leaf(
            w,
            "dev",
            &[("reg", &cells(&[0xffff_ffff, 0xffff_e000, 0, 0x1000]))],
        )
    });
    assert_eq!(
        device_regions(&dtb).unwrap(),
        [range(0xffff_ffff_ffff_e000, 0xffff_ffff_ffff_f000)]
    );
    // A ranges window whose CPU end passes 2^64.
    let dtb = bus(Some(&[0x0, 0xffff_ffff, 0xffff_f000, 0x2000]), &[0x0, 0x10]);
    assert!(matches!(
        device_regions(&dtb),
        Err(PassthroughError::Overflow {
            property: "ranges",
            ..
        })
    ));
}

#[test]
fn malformed_properties() {
    // A reg of 3 cells under 2/2.
    let dtb = tree(&[], |w| leaf(w, "dev@0", &[("reg", &cells(&[0, 0, 0]))]));
    let error = device_regions(&dtb).unwrap_err();
    assert_eq!(
        error,
        PassthroughError::MalformedProperty {
            path: "/dev@0".into(),
            property: "reg",
            len: 12,
        }
    );
    assert_eq!(
        error.to_string(),
        "/dev@0: property reg has a malformed length of 12 bytes"
    );
    // ranges of 5 cells under 1/1 in 2-cell parent (needs 4 per entry).
    let dtb = bus(Some(&[0, 0, 0, 0x1000, 0]), &[0, 0x10]);
    assert!(matches!(
        device_regions(&dtb),
        Err(PassthroughError::MalformedProperty {
            property: "ranges",
            len: 20,
            ..
        })
    ));
    // An 8-byte #address-cells on the root.
    let dtb = tree(&[("#address-cells", &[0; 8])], |_| {});
    assert_eq!(
        device_regions(&dtb),
        Err(PassthroughError::MalformedProperty {
            path: "/".into(),
            property: "#address-cells",
            len: 8,
        })
    );
}

#[test]
fn unsupported_cells_only_matter_when_used() {
    // Three address cells on the root: every root device's reg is undecodable.
    let three = 3u32.to_be_bytes();
    let dtb = tree(&[("#address-cells", &three)], |w| {
        leaf(w, "dev@0", &[("reg", &cells(&[0, 0, 0x1000, 0, 0x1000]))])
    });
    let error = device_regions(&dtb).unwrap_err();
    assert_eq!(
        error,
        PassthroughError::UnsupportedCells {
            path: "/dev@0".into(),
            property: "reg",
            which: "parent #address-cells",
            value: 3,
        }
    );
    assert_eq!(
        error.to_string(),
        "/dev@0: cannot decode reg: parent #address-cells is 3, only 1 or 2 are supported"
    );
    // An I2C-like bus (size cells 0, no ranges): its children are never decoded.
    let dtb = tree(&[], |w| {
        let node = w.begin_node("i2c@1000").unwrap();
        w.property("reg", &cells(&[0, 0x1000, 0, 0x1000])).unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 0).unwrap();
        leaf(w, "eeprom@50", &[("reg", &cells(&[0x50]))]);
        w.end_node(node).unwrap();
    });
    assert_eq!(device_regions(&dtb).unwrap(), [range(0x1000, 0x2000)]);
    // The same bus given ranges: its child's reg needs a size cell.
    let dtb = tree(&[], |w| {
        let node = w.begin_node("i2c@1000").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 0).unwrap();
        w.property_null("ranges").unwrap();
        leaf(w, "eeprom@50", &[("reg", &cells(&[0x50]))]);
        w.end_node(node).unwrap();
    });
    assert!(matches!(
        device_regions(&dtb),
        Err(PassthroughError::UnsupportedCells {
            which: "parent #size-cells",
            value: 0,
            ..
        })
    ));
}

#[test]
fn pci_host_bridges() {
    let pci = |address_cells: u32, ranges: &[u32]| {
        tree(&[], |w| {
            let node = w.begin_node("pcie@4010000000").unwrap();
            w.property_string("device_type", "pci").unwrap();
            w.property_u32("#address-cells", address_cells).unwrap();
            w.property_u32("#size-cells", 2).unwrap();
            w.property("reg", &cells(&[0x40, 0x1000_0000, 0, 0x1000_0000]))
                .unwrap();
            w.property("ranges", &cells(ranges)).unwrap();
            leaf(w, "dev@0,0", &[("reg", &cells(&[0; 5]))]);
            w.end_node(node).unwrap();
        })
    };
    let ranges = [
        // Config space: not a window.
        0x0000_0000,
        0,
        0,
        0,
        0x2000_0000,
        0,
        0x1000, //
        // I/O, with the relocatable/prefetchable bits set in other fields.
        0x8100_0000,
        0,
        0,
        0,
        0x3eff_0000,
        0,
        0x10000, //
        // mem32.
        0x0200_0000,
        0,
        0x1000_0000,
        0,
        0x1000_0000,
        0,
        0x2eff_0000, //
        // prefetchable mem64.
        0x4300_0000,
        0x80,
        0,
        0x80,
        0,
        0x80,
        0,
    ];
    assert_eq!(
        device_regions(&pci(3, &ranges)).unwrap(),
        [
            range(0x1000_0000, 0x3f00_0000),
            range(0x40_1000_0000, 0x40_2000_0000),
            range(0x80_0000_0000, 0x100_0000_0000),
        ]
    );
    let error = device_regions(&pci(2, &[])).unwrap_err();
    assert_eq!(
        error,
        PassthroughError::PciAddressCells {
            path: "/pcie@4010000000".into(),
            address_cells: 2,
        }
    );
    assert_eq!(
        error.to_string(),
        "/pcie@4010000000: PCI host bridge has #address-cells = 2, expected 3"
    );
    // A window that overflows once translated.
    let bad = [0x0200_0000, 0, 0, 0xffff_ffff, 0xffff_f000, 0, 0x2000];
    assert!(matches!(
        device_regions(&pci(3, &bad)),
        Err(PassthroughError::Overflow {
            property: "ranges",
            ..
        })
    ));
}

#[test]
fn skipped_nodes_and_status() {
    let reg = |base: u32| cells(&[0, base, 0, 0x1000]);
    let dtb = tree(&[], |w| {
        leaf(w, "memory@1000", &[("reg", &reg(0x1000))]);
        leaf(
            w,
            "ram@2000",
            &[("device_type", b"memory\0"), ("reg", &reg(0x2000))],
        );
        leaf(w, "reserved-memory", &[("reg", &reg(0x3000))]);
        leaf(w, "chosen", &[("reg", &reg(0x4000))]);
        leaf(w, "aliases", &[("reg", &reg(0x5000))]);
        leaf(w, "cpus", &[("reg", &reg(0x6000))]);
        leaf(w, "psci", &[("reg", &reg(0x7000))]);
        leaf(w, "timer", &[("reg", &reg(0x8000))]);
        leaf(w, "pmu", &[("reg", &reg(0x9000))]);
        leaf(
            w,
            "firmware@a000",
            &[("compatible", b"arm,psci-1.0\0"), ("reg", &reg(0xa000))],
        );
        leaf(
            w,
            "arch-timer@b000",
            &[("compatible", b"arm,armv8-timer\0"), ("reg", &reg(0xb000))],
        );
        leaf(
            w,
            "cpu@c000",
            &[("device_type", b"cpu\0"), ("reg", &reg(0xc000))],
        );
        for (i, status) in [&b"disabled\0"[..], b"reserved\0", b"fail\0", b"fail-sss\0"]
            .into_iter()
            .enumerate()
        {
            let base = 0x10_0000 + 0x1000 * i as u32;
            leaf(
                w,
                &format!("off@{base:x}"),
                &[("status", status), ("reg", &reg(base))],
            );
        }
        // Kept: "okay", "ok", no status, and a unit-addressed timer/pmu (MMIO ones).
        leaf(
            w,
            "on@20000",
            &[("status", b"okay\0"), ("reg", &reg(0x20000))],
        );
        leaf(
            w,
            "on@22000",
            &[("status", b"ok\0"), ("reg", &reg(0x22000))],
        );
        leaf(w, "timer@24000", &[("reg", &reg(0x24000))]);
        leaf(w, "pmu@26000", &[("reg", &reg(0x26000))]);
    });
    assert_eq!(
        device_regions(&dtb).unwrap(),
        [
            range(0x20000, 0x21000),
            range(0x22000, 0x23000),
            range(0x24000, 0x25000),
            range(0x26000, 0x27000),
        ]
    );
}

#[test]
fn bad_blobs() {
    let (_, qemu) = QEMU_FIXTURES[0];
    assert_eq!(
        device_regions(&qemu[..8]),
        Err(PassthroughError::DtbTooShort { len: 8 })
    );
    let mut bad_magic = qemu.to_vec();
    bad_magic[..4].copy_from_slice(&0xdead_beef_u32.to_be_bytes());
    assert_eq!(
        device_regions(&bad_magic),
        Err(PassthroughError::DtbBadMagic { found: 0xdead_beef })
    );
    assert!(matches!(
        device_regions(&qemu[..4096]),
        Err(PassthroughError::DtbTruncated { len: 4096, .. })
    ));
    let mut broken = qemu.to_vec();
    // off_dt_struct past the end.
    broken[8..12].copy_from_slice(&0xffff_0000_u32.to_be_bytes());
    assert!(matches!(
        device_regions(&broken),
        Err(PassthroughError::DtbMalformed { .. })
    ));
}

const QEMU_VIRT_SMP4: &[u8] = include_bytes!("fixtures/qemu-virt-smp4-2g.dtb");

/// `(path, base, size)` of each named region, for comparing with expected lists.
fn named(dtb: &[u8]) -> Vec<(String, u64, u64)> {
    named_device_regions(dtb)
        .unwrap()
        .into_iter()
        .map(|(path, range)| (path, range.base, range.size))
        .collect()
}

fn entry(path: &str, base: u64, size: u64) -> (String, u64, u64) {
    (path.to_string(), base, size)
}

/// QEMU virt's devices by node path, each `reg` entry and PCI window exactly as the DT
/// states it (fw-cfg's 0x18 bytes, not a page), in DT order.
#[test]
fn named_regions_of_qemu_virt() {
    let mut expected = vec![entry("/fw-cfg@9020000", 0x902_0000, 0x18)];
    expected.extend((0..32u64).map(|slot| {
        let base = 0xa00_0000 + slot * 0x200;
        entry(&format!("/virtio_mmio@{base:x}"), base, 0x200)
    }));
    expected.extend([
        entry("/pl061@9030000", 0x903_0000, 0x1000),
        // ECAM, then the I/O, mem32 and mem64 windows in `ranges` order.
        entry("/pcie@10000000", 0x40_1000_0000, 0x1000_0000),
        entry("/pcie@10000000", 0x3eff_0000, 0x1_0000),
        entry("/pcie@10000000", 0x1000_0000, 0x2eff_0000),
        entry("/pcie@10000000", 0x80_0000_0000, 0x80_0000_0000),
        entry("/pl031@9010000", 0x901_0000, 0x1000),
        entry("/pl011@9000000", 0x900_0000, 0x1000),
        // GICD, then the GICR region.
        entry("/intc@8000000", 0x800_0000, 0x1_0000),
        entry("/intc@8000000", 0x80a_0000, 0xf6_0000),
        entry("/intc@8000000/its@8080000", 0x808_0000, 0x2_0000),
        entry("/flash@0", 0x0, 0x400_0000),
        entry("/flash@0", 0x400_0000, 0x400_0000),
    ]);
    assert_eq!(named(QEMU_VIRT_SMP4), expected);
}

/// Every fixture: the named regions are exactly [`device_regions`]' devices (each one
/// inside the page union, and the union rebuilt from them).
#[test]
fn named_regions_cover_the_same_devices_as_device_regions() {
    for (name, dtb) in QEMU_FIXTURES.iter().copied().chain([
        ("passthrough-buses", BUSES),
        ("qemu-virt-smp4-2g", QEMU_VIRT_SMP4),
    ]) {
        let regions = device_regions(dtb).unwrap_or_else(|e| panic!("{name}: {e}"));
        let named = named_device_regions(dtb).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (path, range) in &named {
            assert!(
                covers(&regions, range.base, range.size),
                "{name}: {path} {range:x?}"
            );
        }
        let mut pages: Vec<PhysRange> = named
            .iter()
            .map(|(_, r)| {
                let start = r.base & !(PASSTHROUGH_PAGE_SIZE - 1);
                let end = r.end().next_multiple_of(PASSTHROUGH_PAGE_SIZE);
                range(start, end)
            })
            .collect();
        pages.sort_unstable();
        let mut union: Vec<PhysRange> = Vec::new();
        for page in pages {
            match union.last_mut() {
                Some(last) if page.base <= last.end() => {
                    last.size = last.size.max(page.end() - last.base);
                }
                _ => union.push(page),
            }
        }
        assert_eq!(union, regions, "{name}");
    }
}

/// Nested translation gives each region the full path of its node; disabled, reserved
/// and non-memory-mapped nodes, and PCI config space, have none.
#[test]
fn named_regions_of_hand_made_buses() {
    assert_eq!(
        named(BUSES),
        vec![
            entry("/intc@8000000", 0x800_0000, 0x1_0000),
            entry("/intc@8000000", 0x80a_0000, 0x2_0000),
            entry("/intc@8000000", 0x810_0000, 0x2000),
            entry("/intc@8000000", 0x811_0000, 0x1_0000),
            entry("/intc@8000000", 0x812_0000, 0x2000),
            entry("/intc@8000000/its@8080000", 0x808_0000, 0x2_0000),
            entry("/uart@9000000", 0x900_0000, 0x100),
            entry("/watchdog@9300000", 0x930_0000, 0x1000),
            entry("/i2c@9400000", 0x940_0000, 0x1000),
            entry("/timer@9500000", 0x950_0000, 0x1000),
            entry("/straddle@9600800", 0x960_0800, 0x1000),
            entry("/soc/sysctl@1000", 0x2000_1000, 0x1000),
            entry("/soc/bus@100000", 0x2010_0000, 0x1000),
            entry("/soc/bus@100000/serial@0", 0x2020_0000, 0x100),
            entry("/soc/bus@100000/serial@2000", 0x2020_2000, 0x100),
            entry("/soc/bus@100000/serial@2000", 0x2020_3000, 0x100),
            entry("/soc/bus@100000/i2c@8000", 0x2020_8000, 0x1000),
            entry("/soc/gpio-bus/gpio@400000", 0x2040_0000, 0x1000),
            entry("/soc/high@80001000", 0x1_0000_1000, 0x2000),
            entry("/soc/pcie@800000", 0x2080_0000, 0x10_0000),
            entry("/soc/pcie@800000", 0x20f0_0000, 0x1_0000),
            entry("/soc/pcie@800000", 0x1_0008_0000, 0x8_0000),
            entry("/soc/pcie@800000", 0x1_0004_0000, 0x4_0000),
        ]
    );
}

/// A node that cannot be read loses its name only: the others keep theirs, where
/// `device_regions` refuses the whole tree.
#[test]
fn named_regions_skip_an_unreadable_node() {
    let dtb = tree(&[], |w| {
        leaf(w, "good@1000", &[("reg", &cells(&[0, 0x1000, 0, 0x100]))]);
        leaf(w, "bad@2000", &[("reg", &cells(&[0, 0x2000, 0]))]);
        leaf(
            w,
            "also-good@3000",
            &[("reg", &cells(&[0, 0x3000, 0, 0x10]))],
        );
    });
    assert!(device_regions(&dtb).is_err());
    assert_eq!(
        named(&dtb),
        vec![
            entry("/good@1000", 0x1000, 0x100),
            entry("/also-good@3000", 0x3000, 0x10),
        ]
    );
}

#[test]
fn named_regions_of_bad_blobs_are_errors() {
    let (_, qemu) = QEMU_FIXTURES[0];
    assert_eq!(
        named_device_regions(&qemu[..8]),
        Err(PassthroughError::DtbTooShort { len: 8 })
    );
    let dtb = tree(&[("#address-cells", &[0; 8])], |_| {});
    assert!(matches!(
        named_device_regions(&dtb),
        Err(PassthroughError::MalformedProperty {
            property: "#address-cells",
            ..
        })
    ));
}

/// A blob written token by token (vm-fdt refuses more than 64 levels): `depth` nested
/// `busN` nodes with empty `ranges` and no cell properties (so the DT spec's 2/1), the
/// innermost holding `dev@1000` with `reg = <0 0x1000 0x10>`.
fn deeply_nested(depth: usize) -> Vec<u8> {
    let strings = b"#address-cells\0#size-cells\0ranges\0reg\0";
    let (address_cells, size_cells, ranges, reg) = (0u32, 15u32, 27u32, 34u32);
    let mut body: Vec<u8> = Vec::new();
    let word = |body: &mut Vec<u8>, value: u32| body.extend_from_slice(&value.to_be_bytes());
    let begin = |body: &mut Vec<u8>, name: &str| {
        body.extend_from_slice(&1u32.to_be_bytes());
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body.resize(body.len().next_multiple_of(4), 0);
    };
    let property = |body: &mut Vec<u8>, name: u32, value: &[u8]| {
        body.extend_from_slice(&3u32.to_be_bytes());
        body.extend_from_slice(&(value.len() as u32).to_be_bytes());
        body.extend_from_slice(&name.to_be_bytes());
        body.extend_from_slice(value);
        body.resize(body.len().next_multiple_of(4), 0);
    };
    begin(&mut body, "");
    property(&mut body, address_cells, &cells(&[2]));
    property(&mut body, size_cells, &cells(&[2]));
    for i in 0..depth {
        begin(&mut body, &format!("bus{i}"));
        property(&mut body, ranges, &[]);
    }
    begin(&mut body, "dev@1000");
    property(&mut body, reg, &cells(&[0, 0x1000, 0x10]));
    for _ in 0..depth + 2 {
        word(&mut body, 2);
    }
    word(&mut body, 9);

    let off_struct = 40 + 16;
    let off_strings = off_struct + body.len();
    let total = off_strings + strings.len();
    let mut blob = Vec::with_capacity(total);
    for value in [
        0xd00d_feed,
        total as u32,
        off_struct as u32,
        off_strings as u32,
        40,
        17,
        16,
        0,
        strings.len() as u32,
        body.len() as u32,
    ] {
        word(&mut blob, value);
    }
    blob.extend_from_slice(&[0; 16]);
    blob.extend_from_slice(&body);
    blob.extend_from_slice(strings);
    blob
}

/// Deep nesting is walked without recursion.
#[test]
fn deep_nesting() {
    let dtb = deeply_nested(1000);
    assert_eq!(device_regions(&dtb).unwrap(), [range(0x1000, 0x2000)]);
}

fn check_invariants(regions: &[PhysRange]) -> Result<(), TestCaseError> {
    for region in regions {
        prop_assert_eq!(region.base % PASSTHROUGH_PAGE_SIZE, 0);
        prop_assert_eq!(region.size % PASSTHROUGH_PAGE_SIZE, 0);
        prop_assert!(region.size > 0);
        prop_assert!(region.base.checked_add(region.size).is_some());
    }
    for pair in regions.windows(2) {
        prop_assert!(pair[0].end() < pair[1].base);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = device_regions(&bytes);
        let _ = named_device_regions(&bytes);
    }

    #[test]
    fn random_bodies_with_a_valid_header_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let (_, qemu) = QEMU_FIXTURES[0];
        let mut bytes = qemu[..40].to_vec();
        bytes[4..8].copy_from_slice(&((40 + body.len()) as u32).to_be_bytes());
        bytes.extend_from_slice(&body);
        let _ = device_regions(&bytes);
    }

    #[test]
    fn mutated_fixtures_never_panic(
        fixture in 0..QEMU_FIXTURES.len() + 1,
        mutations in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = QEMU_FIXTURES
            .get(fixture)
            .map_or(BUSES, |(_, dtb)| dtb)
            .to_vec();
        for (index, byte) in mutations {
            let at = index.index(bytes.len());
            bytes[at] = byte;
        }
        if let Ok(regions) = device_regions(&bytes) {
            check_invariants(&regions)?;
        }
        let _ = named_device_regions(&bytes);
    }

    /// Random root devices (2/2 cells): the result is exactly the union of their
    /// page-rounded ranges.
    #[test]
    fn result_is_the_page_union(
        entries in proptest::collection::vec(
            (0u64..0x1_0000_0000, 0u64..0x10_0000).prop_map(|(page, size)| (page * 0x800, size)),
            0..24,
        ),
    ) {
        let dtb = tree(&[], |w| {
            for (i, (base, size)) in entries.iter().enumerate() {
                let reg = cells(&[(base >> 32) as u32, *base as u32, (size >> 32) as u32, *size as u32]);
                leaf(w, &format!("dev{i}@{base:x}"), &[("reg", &reg)]);
            }
        });
        let regions = device_regions(&dtb).unwrap();
        check_invariants(&regions)?;
        let rounded: Vec<PhysRange> = entries
            .iter()
            .filter(|(_, size)| *size > 0)
            .map(|&(base, size)| {
                let start = base & !0xfff;
                let end = (base + size).next_multiple_of(0x1000);
                PhysRange::new(start, end - start).unwrap()
            })
            .collect();
        // Every input is inside one output region...
        for input in &rounded {
            prop_assert!(covers(&regions, input.base, input.size), "{:x?}", input);
        }
        // ...and every page of the output is in some input.
        for region in &regions {
            let mut next = region.base;
            while next < region.end() {
                let Some(end) = rounded
                    .iter()
                    .filter(|input| input.contains(next))
                    .map(PhysRange::end)
                    .max()
                else {
                    return Err(TestCaseError::fail(format!("{next:#x} is in no input")));
                };
                next = end;
            }
        }
    }
}
