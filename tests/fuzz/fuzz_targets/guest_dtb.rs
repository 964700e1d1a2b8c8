//! The guest's device tree, built from a fuzzed host DTB (`guest_loader::build_guest_dtb`,
//! `plan_guest`, `passthrough_regions`).
//!
//! Input: a host DTB; bytes after its `totalsize`, if any, describe the guest (RAM,
//! hidden ranges, vCPUs, bootargs, initrd, seeds); without them a QEMU-like guest is used.
//! Two paths run on each input:
//! - **direct**: `build_guest_dtb(host, spec)`;
//! - **boot**: what the hypervisor does: `remove_nops`, `platform::dt::parse`, the memory
//!   layout (`plan_layout`, with the host's `crashkernel=`), `plan_guest`, then
//!   `passthrough_regions` on the guest DTB.
//!
//! A guest DTB that was built must be a valid DTB (two independent readers accept it) of
//! at most 2 MiB that says exactly what the spec says: the guest RAM and nothing else as
//! memory, the spec's `/chosen` values, the spec's number of CPUs, no boot modules, no
//! memory reservation outside guest RAM. Building again from the guest DTB gives the same
//! bytes. On the boot path the guest DTB must also parse as a platform whose console and
//! CPUs are the host's, whose GIC is the emulated one (the host's distributor, one
//! redistributor frame pair per vCPU, no maintenance interrupt, no ITS) and whose memory
//! is the guest's RAM.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use guest_loader::guest_dt::MAX_GUEST_DTB_SIZE;
use guest_loader::{GuestConfig, GuestDtSpec, build_guest_dtb, passthrough_regions, plan_guest};
use hypervisor::mm::memory_plan::{self, CrashRequest, Exclusion, ExclusionKind};
use hypervisor_fuzz::{assert_platform_info, fdt_totalsize};
use libfuzzer_sys::fuzz_target;
use platform::info::{Conduit, PhysRange, PlatformInfo};

const MIB: u64 = 1 << 20;
const DTB_BASE: u64 = 0x4000_0000;
/// The first 64 bytes of Debian's 6.12 arm64 kernel: what `plan_guest` reads from the
/// kernel module.
const KERNEL_HEAD: &[u8] =
    include_bytes!("../../../guest-loader/tests/fixtures/debian-6.12-arm64-Image.head");

/// Owned values behind a [`GuestDtSpec`].
#[derive(Debug)]
struct Spec {
    memory: Vec<PhysRange>,
    hidden: Vec<PhysRange>,
    bootargs: Option<String>,
    initrd: Option<PhysRange>,
    vcpus: usize,
    conduit: Conduit,
    kaslr_seed: Option<u64>,
    rng_seed: Option<Vec<u8>>,
}

impl Spec {
    fn as_spec(&self) -> GuestDtSpec<'_> {
        GuestDtSpec {
            memory: &self.memory,
            bootargs: self.bootargs.as_deref(),
            initrd: self.initrd,
            vcpus: self.vcpus,
            psci_conduit: self.conduit,
            hidden: &self.hidden,
            kaslr_seed: self.kaslr_seed,
            rng_seed: self.rng_seed.as_deref(),
        }
    }

    /// QEMU virt with 2 GiB, the hypervisor in the first 32 MiB.
    fn qemu() -> Self {
        Spec {
            memory: vec![PhysRange::new(0x4200_0000, 0x7e00_0000).unwrap()],
            hidden: vec![PhysRange::new(0x4000_0000, 32 * MIB).unwrap()],
            bootargs: Some("console=ttyAMA0 earlycon".into()),
            initrd: Some(PhysRange::new(0x4800_0000, MIB).unwrap()),
            vcpus: 1,
            conduit: Conduit::Hvc,
            kaslr_seed: Some(0x1234_5678_9abc_def0),
            rng_seed: Some(vec![0x5a; 32]),
        }
    }

    fn arbitrary(u: &mut Unstructured<'_>) -> arbitrary::Result<Self> {
        let amount = |u: &mut Unstructured<'_>| -> arbitrary::Result<u64> {
            let count = u64::from(u.int_in_range(1u16..=1024)?);
            Ok(match u.int_in_range(0u8..=3)? {
                0 => count * 4096,
                1 | 2 => count * 2 * MIB,
                _ => u64::arbitrary(u)? >> u.int_in_range(0u32..=63)?,
            })
        };
        let mut memory = Vec::new();
        let mut hidden = Vec::new();
        let mut cursor = u64::from(u.int_in_range(0u32..=0x4000)?) * 2 * MIB;
        for _ in 0..u.int_in_range(0u8..=4)? {
            let size = amount(u)?.max(1);
            let Some(range) = PhysRange::new(cursor, size) else {
                break;
            };
            // Ranges are disjoint, usually with a hidden range or a gap in between.
            if u.arbitrary()? {
                memory.push(range);
            } else {
                hidden.push(range);
            }
            cursor = match range.end().checked_add(amount(u)?) {
                Some(next) => next,
                None => break,
            };
        }
        if u.ratio(1u8, 16u8)? {
            // Occasionally something inconsistent, for the spec checks.
            let base = u64::arbitrary(u)?;
            if let Some(range) = PhysRange::new(base, amount(u)?.min(u64::MAX - base)) {
                if u.arbitrary()? {
                    memory.push(range);
                } else {
                    hidden.push(range);
                }
            }
        }
        let initrd = match (u.arbitrary::<bool>()?, memory.first()) {
            (true, Some(first)) => {
                let offset = u64::from(u.int_in_range(0u16..=512)?) * 4096;
                let size = u64::from(u.int_in_range(1u16..=512)?) * 4096;
                first
                    .base
                    .checked_add(offset)
                    .and_then(|base| PhysRange::new(base, size))
            }
            (false, _) if u.ratio(1u8, 8u8)? => {
                let base = u64::arbitrary(u)?;
                PhysRange::new(base, 4096.min(u64::MAX - base))
            }
            _ => None,
        };
        Ok(Spec {
            memory,
            hidden,
            bootargs: Option::<String>::arbitrary(u)?,
            initrd,
            vcpus: u.int_in_range(0usize..=9)?,
            conduit: if u.arbitrary()? {
                Conduit::Hvc
            } else {
                Conduit::Smc
            },
            kaslr_seed: u.arbitrary()?,
            rng_seed: u.arbitrary()?,
        })
    }
}

/// A `reg` value read with `cells` (address, size) per entry.
fn decode_reg(value: &[u8], address_cells: usize, size_cells: usize) -> Vec<(u64, u64)> {
    let entry = 4 * (address_cells + size_cells);
    assert!(
        entry > 0 && value.len().is_multiple_of(entry),
        "reg of {} bytes",
        value.len()
    );
    let number = |bytes: &[u8]| {
        bytes.chunks(4).fold(0u64, |acc, c| {
            (acc << 32) | u64::from(u32::from_be_bytes(c.try_into().unwrap()))
        })
    };
    value
        .chunks(entry)
        .map(|e| {
            let (a, s) = e.split_at(4 * address_cells);
            (number(a), number(s))
        })
        .collect()
}

fn be_u64(value: &[u8]) -> u64 {
    u64::from_be_bytes(value.try_into().expect("a 64-bit property"))
}

/// Everything a guest DTB built for `spec` must be.
fn check_guest_dtb(out: &[u8], spec: &GuestDtSpec<'_>) {
    assert!(out.len() <= MAX_GUEST_DTB_SIZE);
    assert_eq!(
        fdt_totalsize(out),
        Some(out.len()),
        "totalsize is not the length"
    );
    assert_eq!(platform::dt::blob_size(out), Ok(out.len()));
    // Reader 1: dtoolkit validates the whole structure.
    if let Err(error) = dtoolkit::fdt::Fdt::new(out) {
        panic!("dtoolkit refuses the guest DTB: {error}");
    }
    // Reader 2: the `fdt` crate, for the contents.
    let fdt = fdt::Fdt::new(out).expect("fdt refuses the guest DTB");
    assert_eq!(fdt.total_size(), out.len());
    let root = fdt.find_node("/").expect("no root node");
    // The first occurrence of a property wins, as in libfdt and both parsers here
    // (`fdt`'s own `cell_sizes` takes the last, and panics on short values).
    let cell = |name: &str, default: usize| {
        root.property(name).map_or(default, |p| {
            u32::from_be_bytes(p.value.try_into().expect("a one-cell property")) as usize
        })
    };
    let (address_cells, size_cells) = (cell("#address-cells", 2), cell("#size-cells", 1));
    assert!(
        (1..=2).contains(&address_cells) && (1..=2).contains(&size_cells),
        "root cells {address_cells}/{size_cells}"
    );

    // Memory: exactly the guest RAM, at the top level and nowhere else.
    let mut memory: Vec<(u64, u64)> = Vec::new();
    for node in root.children() {
        let is_memory = node
            .property("device_type")
            .is_some_and(|p| p.value == b"memory\0");
        if is_memory {
            let reg = node.property("reg").expect("memory node without reg");
            memory.extend(decode_reg(reg.value, address_cells, size_cells));
        }
    }
    memory.sort_unstable();
    let mut expected: Vec<(u64, u64)> = spec.memory.iter().map(|r| (r.base, r.size)).collect();
    expected.sort_unstable();
    assert_eq!(memory, expected, "guest memory nodes");
    // Nor deeper (`platform::dt` takes a memory node at any depth for RAM).
    let memory_nodes = fdt
        .all_nodes()
        .filter(|node| {
            node.property("device_type")
                .is_some_and(|p| p.value.split(|&b| b == 0).next() == Some(b"memory"))
        })
        .count();
    assert_eq!(
        memory_nodes,
        spec.memory.len(),
        "memory nodes besides guest RAM"
    );
    // /chosen says what the spec says, and has no boot modules (multiboot,*) nor
    // hypervisor nodes (xen,*) left.
    let chosen = fdt.find_node("/chosen").expect("no /chosen");
    for node in chosen.children() {
        if let Some(compatible) = node.property("compatible") {
            assert!(
                !compatible
                    .value
                    .split(|&b| b == 0)
                    .any(|c| c.starts_with(b"multiboot,") || c.starts_with(b"xen,")),
                "boot module or hypervisor node /chosen/{} kept",
                node.name
            );
        }
    }
    let bootargs = chosen.property("bootargs").map(|p| p.value);
    let want = spec.bootargs.map(|s| [s.as_bytes(), b"\0"].concat());
    assert_eq!(bootargs, want.as_deref(), "bootargs");
    let start = chosen
        .property("linux,initrd-start")
        .map(|p| be_u64(p.value));
    let end = chosen.property("linux,initrd-end").map(|p| be_u64(p.value));
    assert_eq!(start, spec.initrd.map(|r| r.base));
    assert_eq!(end, spec.initrd.map(|r| r.end()));
    let kaslr = chosen.property("kaslr-seed").map(|p| be_u64(p.value));
    assert_eq!(kaslr, spec.kaslr_seed);
    assert_eq!(chosen.property("rng-seed").map(|p| p.value), spec.rng_seed);

    // The spec's number of CPUs.
    let cpus = fdt.find_node("/cpus").expect("no /cpus");
    let count = cpus
        .children()
        .filter(|c| {
            c.property("device_type")
                .is_some_and(|p| p.value == b"cpu\0")
                || c.name.split('@').next() == Some("cpu")
        })
        .count();
    assert_eq!(count, spec.vcpus, "guest CPUs");

    // No reservation outside guest RAM.
    for reservation in fdt.memory_reservations() {
        let base = reservation.address() as u64;
        let size = reservation.size() as u64;
        let inside = spec
            .memory
            .iter()
            .any(|r| r.base <= base && base.checked_add(size).is_some_and(|e| e <= r.end()));
        assert!(inside, "/memreserve/ {base:#x}+{size:#x} outside guest RAM");
    }

    // Building from the guest DTB changes nothing.
    match build_guest_dtb(out, spec) {
        Ok(again) => assert!(again == out, "guest DTB is not a fixed point"),
        Err(error) => panic!("the guest DTB cannot be rebuilt: {error}"),
    }
}

fn check_passthrough(dtb: &[u8]) {
    match passthrough_regions(dtb) {
        Ok(regions) => {
            for region in &regions {
                assert_eq!(region.base % 4096, 0);
                assert_eq!(region.size % 4096, 0);
                assert!(region.size > 0 && region.base.checked_add(region.size).is_some());
            }
            // Sorted, merged: neither overlapping nor adjacent.
            for pair in regions.windows(2) {
                assert!(pair[0].end() < pair[1].base, "{pair:x?}");
            }
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
}

/// The boot path from a parsed host platform.
fn boot(info: &PlatformInfo<'_>, host_dtb: &[u8]) {
    let first = info.memory[0];
    let Some(image) = first
        .base
        .checked_next_multiple_of(2 * MIB)
        .and_then(|base| PhysRange::new(base, 2 * MIB))
    else {
        return;
    };
    let mut exclusions = vec![
        Exclusion {
            range: image,
            kind: ExclusionKind::Image,
        },
        Exclusion {
            range: info.dtb,
            kind: ExclusionKind::DeviceTree,
        },
    ];
    exclusions.extend(info.modules.iter().map(|m| Exclusion {
        range: m.range,
        kind: ExclusionKind::Module,
    }));
    exclusions.extend(info.reserved.iter().map(|r| Exclusion {
        range: r.range,
        kind: ExclusionKind::Reserved,
    }));
    let args = platform::bootargs::parse(info.bootargs.unwrap_or("")).args;
    let request = args.crashkernel.map(|c| CrashRequest {
        size: c.size,
        base: c.base,
    });
    let Ok(layout) = memory_plan::plan_layout(
        &info.memory,
        &exclusions,
        request,
        memory_plan::PoolNeeds::default(),
    ) else {
        return;
    };
    let reserved: Vec<PhysRange> = info.reserved.iter().map(|r| r.range).collect();
    let mut hidden = vec![image, layout.pool, info.dtb];
    hidden.extend(layout.crash);
    let config = GuestConfig {
        guest_ram: &layout.guest_ram,
        reserved: &reserved,
        hidden: &hidden,
        vcpus: info.cpus.len(),
        psci_conduit: Conduit::Hvc,
        kaslr_seed: None,
        rng_seed: None,
    };
    let plan = match plan_guest(&info.modules, host_dtb, &config, |_| KERNEL_HEAD) {
        Ok(plan) => plan,
        Err(error) => {
            assert!(!error.to_string().is_empty());
            return;
        }
    };
    let placement = &plan.placement;
    assert!(plan.dtb.len() as u64 <= placement.dtb.size);
    assert!(
        layout
            .guest_ram
            .iter()
            .any(|r| r.contains_range(&placement.dtb)),
        "guest DTB placed outside guest RAM"
    );
    let spec = GuestDtSpec {
        memory: &layout.guest_ram,
        bootargs: plan.modules.bootargs,
        initrd: placement.initrd,
        vcpus: info.cpus.len(),
        psci_conduit: Conduit::Hvc,
        hidden: &hidden,
        kaslr_seed: None,
        rng_seed: None,
    };
    check_guest_dtb(&plan.dtb, &spec);

    // The guest's view of the platform: the host's devices, the guest's memory.
    match platform::dt::parse(&plan.dtb, placement.dtb.base) {
        Ok(guest) => {
            assert_platform_info(&guest, placement.dtb.base, plan.dtb.len() as u64);
            assert_eq!(guest.console, info.console, "console");
            // The guest's GIC is the emulated one: the host's distributor, one
            // redistributor frame pair per vCPU at the host's first region, no
            // maintenance interrupt (the hypervisor's), no ITS.
            assert_eq!(guest.gic.distributor, info.gic.distributor, "GIC distributor");
            let first = info.gic.redistributors.first().expect("host redistributors");
            let sized = PhysRange::new(first.base, guest.cpus.len() as u64 * 0x2_0000);
            assert_eq!(
                guest.gic.redistributors.as_slice(),
                sized.as_slice(),
                "one redistributor region sized for the vCPUs"
            );
            assert_eq!(guest.gic.maintenance_intid, None, "maintenance interrupt in the guest DT");
            assert_eq!(guest.gic.its, None, "ITS in the guest DT");
            assert_eq!(guest.cpus, info.cpus, "CPUs");
            assert!(guest.modules.is_empty(), "modules in the guest DT");
            let mut ram = layout.guest_ram.to_vec();
            ram.sort_unstable();
            assert_eq!(guest.memory.as_slice(), ram.as_slice(), "guest memory");
            assert_eq!(guest.bootargs, plan.modules.bootargs);
        }
        // More guest RAM ranges than a platform description holds.
        Err(platform::dt::DtError::TooMany { .. }) => {}
        Err(error) => panic!("the guest DTB does not parse as a platform: {error}"),
    }
    check_passthrough(&plan.dtb);
}

fuzz_target!(|data: &[u8]| {
    // The DTB, and what follows its totalsize.
    let (dtb, tail) = match fdt_totalsize(data) {
        Some(size) if (40..data.len()).contains(&size) => data.split_at(size),
        _ => (data, &[][..]),
    };
    let spec = if tail.is_empty() {
        Spec::qemu()
    } else {
        Spec::arbitrary(&mut Unstructured::new(tail)).unwrap_or_else(|_| Spec::qemu())
    };

    // Direct.
    let mut blob = dtb.to_vec();
    let _ = platform::dt::remove_nops(&mut blob);
    match build_guest_dtb(&blob, &spec.as_spec()) {
        Ok(out) => check_guest_dtb(&out, &spec.as_spec()),
        Err(error) => assert!(!error.to_string().is_empty()),
    }
    check_passthrough(&blob);

    // Boot.
    if let Ok(info) = platform::dt::parse(&blob, DTB_BASE) {
        boot(&info, &blob);
    }
});
