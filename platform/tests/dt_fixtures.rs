//! `platform::dt` against real QEMU device trees and hand-broken ones
//! (platform/tests/fixtures/, made by scripts/make-dt-fixtures.sh; README.md there says how).

use platform::dt::{self, DtError, ReservationOrigin, StructureProblem};
use platform::info::{
    BootModule, Conduit, ConsoleKind, ModuleKind, PhysRange, PlatformInfo, ReservationSource,
    ReservedRange,
};

/// Where QEMU puts the DTB of a `-kernel` boot with 1 GiB (any base works for parsing).
const DTB_BASE: u64 = 0x4800_0000;
const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/",
            $name
        ))
    };
}

fn range(base: u64, size: u64) -> PhysRange {
    PhysRange::new(base, size).expect("test ranges are valid")
}

fn parse_ok(blob: &[u8]) -> PlatformInfo<'_> {
    match dt::parse(blob, DTB_BASE) {
        Ok(info) => info,
        Err(error) => panic!("parse failed: {error}"),
    }
}

fn parse_err(blob: &[u8]) -> DtError {
    match dt::parse(blob, DTB_BASE) {
        Ok(info) => panic!("parse succeeded on a broken blob: {info:?}"),
        Err(error) => error,
    }
}

/// What every QEMU virt (GICv3, virtualization=on) tree has, whatever -m/-smp/-cpu.
fn assert_qemu_virt_devices(info: &PlatformInfo<'_>) {
    assert_eq!(info.console.kind, ConsoleKind::Pl011);
    assert_eq!(info.console.regs, range(0x900_0000, 0x1000));
    assert_eq!(info.console.path, "/pl011@9000000");
    assert_eq!(info.stdout_path, Some("/pl011@9000000"));

    assert_eq!(info.gic.distributor, range(0x800_0000, 0x1_0000));
    assert_eq!(
        info.gic.redistributors.as_slice(),
        &[range(0x80a_0000, 0xf6_0000)]
    );
    assert_eq!(info.gic.maintenance_intid, Some(25));
    assert_eq!(info.gic.its, Some(range(0x808_0000, 0x2_0000)));

    let timer = info.timer.expect("QEMU describes the timer");
    assert_eq!(
        (
            timer.secure_phys_intid,
            timer.nonsecure_phys_intid,
            timer.virt_intid,
            timer.hyp_phys_intid
        ),
        (29, 30, 27, 26)
    );
    assert_eq!(timer.frequency_hz, None);

    let psci = info.psci.expect("QEMU describes PSCI");
    assert_eq!(psci.conduit, Conduit::Smc);
    assert_eq!(psci.version, (1, 0));
}

fn mpidrs(info: &PlatformInfo<'_>) -> Vec<u64> {
    info.cpus.iter().map(|cpu| cpu.mpidr).collect()
}

#[test]
fn qemu_1g_one_cpu_max() {
    let blob = fixture!("qemu-1g-smp1-max.dtb");
    let info = parse_ok(blob);
    assert_qemu_virt_devices(&info);
    assert_eq!(info.dtb, range(DTB_BASE, blob.len() as u64));
    assert_eq!(info.memory.as_slice(), &[range(0x4000_0000, GIB)]);
    assert_eq!(info.ram_bytes(), GIB);
    assert!(info.reserved.is_empty());
    assert_eq!(mpidrs(&info), [0]);
    assert_eq!(info.bootargs, None);
    assert!(info.modules.is_empty());
}

#[test]
fn qemu_2g_two_cpus_max() {
    let info = parse_ok(fixture!("qemu-2g-smp2-max.dtb"));
    assert_qemu_virt_devices(&info);
    assert_eq!(info.memory.as_slice(), &[range(0x4000_0000, 2 * GIB)]);
    assert_eq!(mpidrs(&info), [0, 1]);
}

#[test]
fn qemu_5g_four_cortex_a72() {
    let info = parse_ok(fixture!("qemu-5g-smp4-a72.dtb"));
    assert_qemu_virt_devices(&info);
    assert_eq!(info.memory.as_slice(), &[range(0x4000_0000, 5 * GIB)]);
    assert_eq!(mpidrs(&info), [0, 1, 2, 3]);
}

#[test]
fn qemu_2g_eight_neoverse_n2() {
    let info = parse_ok(fixture!("qemu-2g-smp8-n2.dtb"));
    assert_qemu_virt_devices(&info);
    assert_eq!(info.memory.as_slice(), &[range(0x4000_0000, 2 * GIB)]);
    assert_eq!(mpidrs(&info), [0, 1, 2, 3, 4, 5, 6, 7]);
}

#[test]
fn qemu_guest_loader_modules_read_with_inherited_cells() {
    // /chosen has no #address-cells/#size-cells; QEMU writes 4-cell regs. With the DT
    // spec default (2/1) these would misparse; inherited from the root (2/2) they don't.
    let info = parse_ok(fixture!("qemu-2g-smp2-modules.dtb"));
    assert_qemu_virt_devices(&info);
    assert_eq!(
        info.modules.as_slice(),
        &[
            BootModule {
                kind: ModuleKind::Ramdisk,
                range: range(0x5800_0000, 3000),
                bootargs: None,
                name: "module@0x58000000",
            },
            BootModule {
                kind: ModuleKind::Kernel,
                range: range(0x5000_0000, 4000),
                bootargs: Some("console=ttyAMA0"),
                name: "module@0x50000000",
            },
        ]
    );
    assert_eq!(info.bootargs, None);
}

#[test]
fn qemu_append_gives_hypervisor_bootargs() {
    let info = parse_ok(fixture!("qemu-1g-smp1-bootargs.dtb"));
    assert_qemu_virt_devices(&info);
    assert_eq!(
        info.bootargs,
        Some("loglevel=debug crashkernel=64M split=bbm")
    );
    assert_eq!(mpidrs(&info), [0]);
}

#[test]
fn hand_reserved_memory_alias_console_and_bootargs() {
    let info = parse_ok(fixture!("hand-reserved.dtb"));
    assert_eq!(
        info.reserved.as_slice(),
        &[
            ReservedRange {
                range: range(0x7e00_0000, 4 * MIB),
                source: ReservationSource::ReservedMemoryNode("shmem@7e000000"),
                no_map: false,
            },
            ReservedRange {
                range: range(0x7f00_0000, MIB),
                source: ReservationSource::ReservedMemoryNode("secmon@7f000000"),
                no_map: true,
            },
            ReservedRange {
                range: range(0x7fe0_0000, 2 * MIB),
                source: ReservationSource::MemReserve,
                no_map: false,
            },
        ],
        "sorted; the dynamic (size-only) and disabled children are skipped"
    );
    assert_eq!(info.stdout_path, Some("serial0:115200n8"));
    assert_eq!(
        info.console.path, "/pl011@9000000",
        "resolved through /aliases"
    );
    assert_eq!(info.console.baud, Some(115_200));
    assert_eq!(info.console.regs, range(0x900_0000, 0x1000));
    assert_eq!(
        info.bootargs,
        Some("loglevel=info split=bbml2 mapping=pages")
    );
}

#[test]
fn hand_two_banks_sorted() {
    let info = parse_ok(fixture!("hand-two-banks.dtb"));
    assert_eq!(
        info.memory.as_slice(),
        &[
            range(0x4000_0000, 512 * MIB),
            range(0x7000_0000, 256 * MIB),
            range(0x1_0000_0000, GIB),
        ]
    );
    assert_eq!(info.ram_bytes(), GIB + 768 * MIB);
}

#[test]
fn hand_legacy_and_specific_module_kinds() {
    // /chosen has its own #address-cells = <1>, #size-cells = <1> here.
    let info = parse_ok(fixture!("hand-legacy-modules.dtb"));
    let modules: Vec<_> = info
        .modules
        .iter()
        .map(|module| (module.kind, module.range.base, module.range.size))
        .collect();
    assert_eq!(
        modules,
        [
            (ModuleKind::Kernel, 0x6000_0000, 0x20_0000),
            (ModuleKind::Ramdisk, 0x6100_0000, 0x10_0000),
            (ModuleKind::DeviceTree, 0x6200_0000, 0x2000),
            (ModuleKind::XsmPolicy, 0x6300_0000, 0x1000),
            (ModuleKind::Unspecified, 0x6400_0000, 0x3000),
        ]
    );
    assert_eq!(info.modules[0].bootargs, Some("console=hvc0 root=/dev/ram"));
    assert_eq!(info.modules[0].name, "module@60000000");
}

#[test]
fn version_16_has_a_size_but_cannot_be_parsed() {
    let blob = fixture!("hand-v16.dtb");
    assert_eq!(dt::blob_size(blob), Ok(blob.len()));
    assert!(matches!(
        parse_err(blob),
        DtError::UnsupportedVersion { version: 16, .. }
    ));
}

#[test]
fn blob_size_of_every_good_fixture_is_its_file_size() {
    for blob in [
        &fixture!("qemu-1g-smp1-max.dtb")[..],
        fixture!("qemu-2g-smp2-max.dtb"),
        fixture!("qemu-5g-smp4-a72.dtb"),
        fixture!("qemu-2g-smp8-n2.dtb"),
        fixture!("qemu-2g-smp2-modules.dtb"),
        fixture!("qemu-1g-smp1-bootargs.dtb"),
        fixture!("hand-reserved.dtb"),
        fixture!("hand-two-banks.dtb"),
        fixture!("hand-legacy-modules.dtb"),
    ] {
        assert_eq!(dt::blob_size(&blob[..dt::HEADER_SIZE]), Ok(blob.len()));
        // Trailing bytes after totalsize (a loader's page) are not part of the tree.
        let mut padded = blob.to_vec();
        padded.extend_from_slice(&[0xff; 64]);
        assert_eq!(
            dt::parse(&padded, DTB_BASE).map(|info| info.dtb.size),
            Ok(blob.len() as u64)
        );
    }
}

#[test]
fn broken_bad_magic() {
    let blob = fixture!("broken-bad-magic.dtb");
    assert_eq!(
        dt::blob_size(blob),
        Err(DtError::BadMagic { found: 0xdead_beef })
    );
    assert_eq!(parse_err(blob), DtError::BadMagic { found: 0xdead_beef });
    assert_eq!(dt::find_console(blob), None);
}

#[test]
fn broken_truncated() {
    let blob = fixture!("broken-truncated.dtb");
    // The header is intact: the size is known, the bytes are not there.
    assert_eq!(dt::blob_size(blob), Ok(7572));
    assert_eq!(
        parse_err(blob),
        DtError::Truncated {
            what: "the blob (totalsize)",
            offset: 0,
            size: 7572,
            available: 4096
        }
    );
    assert_eq!(dt::find_console(blob), None);
}

#[test]
fn short_header_is_truncated() {
    let blob = fixture!("qemu-1g-smp1-max.dtb");
    assert!(matches!(
        dt::blob_size(&blob[..39]),
        Err(DtError::Truncated {
            size: 40,
            available: 39,
            ..
        })
    ));
}

#[test]
fn broken_no_memory() {
    let blob = fixture!("broken-no-memory.dtb");
    assert_eq!(parse_err(blob), DtError::NoMemory);
    // The console is still found, to report the error on.
    let console = dt::find_console(blob).expect("the console is intact");
    assert_eq!(console.regs, range(0x900_0000, 0x1000));
}

#[test]
fn broken_no_stdout_path() {
    let blob = fixture!("broken-no-stdout-path.dtb");
    assert_eq!(parse_err(blob), DtError::NoConsole);
    // Best effort falls back to the serial0 alias.
    let console = dt::find_console(blob).expect("serial0 alias");
    assert_eq!(console.path, "/pl011@9000000");
}

#[test]
fn broken_console_not_pl011() {
    let blob = fixture!("broken-console-not-pl011.dtb");
    let error = parse_err(blob);
    assert!(
        matches!(error, DtError::ConsoleUnsupported { node, .. } if node.as_str() == "/pl061@9030000"),
        "{error:?}"
    );
    assert!(error.to_string().contains("/pl061@9030000"));
    assert_eq!(
        dt::find_console(blob).map(|c| c.path),
        Some("/pl011@9000000")
    );
}

#[test]
fn broken_stdout_unresolvable() {
    let error = parse_err(fixture!("broken-stdout-unresolvable.dtb"));
    assert!(
        matches!(error, DtError::StdoutPathUnresolvable { stdout_path } if stdout_path.as_str() == "serial7:115200"),
        "{error:?}"
    );
}

#[test]
fn broken_overlapping_reservations_names_both() {
    let error = parse_err(fixture!("broken-overlapping-reservations.dtb"));
    let DtError::OverlappingReservations { first, second } = error else {
        panic!("{error:?}");
    };
    assert_eq!(first.range, range(0x7f00_0000, 2 * MIB));
    assert_eq!(first.origin, ReservationOrigin::MemReserve);
    assert_eq!(second.range, range(0x7f10_0000, MIB));
    assert!(
        matches!(second.origin, ReservationOrigin::Node(path) if path.as_str() == "/reserved-memory/firmware@7f100000")
    );
    let message = error.to_string();
    assert!(
        message.contains("/memreserve/") && message.contains("firmware@7f100000"),
        "{message}"
    );
}

#[test]
fn broken_overlapping_memory() {
    assert_eq!(
        parse_err(fixture!("broken-overlapping-memory.dtb")),
        DtError::OverlappingMemory {
            first: range(0x4000_0000, 2 * GIB),
            second: range(0x6000_0000, GIB),
        }
    );
}

#[test]
fn broken_address_cells_3() {
    let error = parse_err(fixture!("broken-address-cells-3.dtb"));
    assert!(
        matches!(
            error,
            DtError::CellsOutOfRange { node, address_cells: 3, size_cells: 2 }
                if node.as_str() == "/reserved-memory/odd@0"
        ),
        "{error:?}"
    );
}

#[test]
fn broken_reg_length() {
    let error = parse_err(fixture!("broken-reg-length.dtb"));
    assert!(
        matches!(
            error,
            DtError::MalformedReg { node, len: 12, address_cells: 2, size_cells: 2 }
                if node.as_str() == "/memory@40000000"
        ),
        "{error:?}"
    );
}

#[test]
fn broken_module_overflow() {
    let error = parse_err(fixture!("broken-module-overflow.dtb"));
    assert!(
        matches!(
            error,
            DtError::RangeOverflow { node, base: 0xffff_ffff_ffff_f000, size: 0x2000 }
                if node.as_str() == "/chosen/module@fffffffffffff000"
        ),
        "{error:?}"
    );
}

#[test]
fn broken_psci_method() {
    let error = parse_err(fixture!("broken-psci-method.dtb"));
    assert!(
        matches!(error, DtError::BadPsciMethod { node, method } if node.as_str() == "/psci" && method.as_str() == "svc"),
        "{error:?}"
    );
}

#[test]
fn broken_no_gic() {
    assert_eq!(
        parse_err(fixture!("broken-no-gic.dtb")),
        DtError::MissingGicV3
    );
}

/// The offset of the struct-block token of the first property named `name`.
fn property_offset(blob: &[u8], name: &str) -> Option<(usize, usize)> {
    let be = |at: usize| u32::from_be_bytes(blob[at..at + 4].try_into().unwrap()) as usize;
    let (structs, strings) = (be(8), be(12));
    let end = structs + be(36);
    let mut at = structs;
    while at < end {
        match be(at) {
            1 => {
                let len = blob[at + 4..].iter().position(|&b| b == 0).unwrap();
                at = (at + 4 + len + 1 + 3) & !3;
            }
            3 => {
                let (len, name_offset) = (be(at + 4), be(at + 8));
                let next = (at + 12 + len + 3) & !3;
                let start = strings + name_offset;
                let stored =
                    &blob[start..start + blob[start..].iter().position(|&b| b == 0).unwrap()];
                if stored == name.as_bytes() {
                    return Some((at, next));
                }
                at = next;
            }
            _ => at += 4,
        }
    }
    None
}

#[test]
fn nop_tokens_are_refused_not_mis_walked() {
    // libfdt's fdt_nop_property() turns a property into FDT_NOP tokens. fdt 0.1.5 then
    // loses every node after it or panics, so the validator refuses the blob instead.
    let mut blob = fixture!("qemu-1g-smp1-max.dtb").to_vec();
    let (start, end) = property_offset(&blob, "dma-coherent").expect("QEMU sets dma-coherent");
    for word in (start..end).step_by(4) {
        blob[word..word + 4].copy_from_slice(&4u32.to_be_bytes());
    }
    let structs = u32::from_be_bytes(blob[8..12].try_into().unwrap()) as usize;
    assert_eq!(
        parse_err(&blob),
        DtError::Structure {
            offset: start - structs,
            problem: StructureProblem::NopToken
        }
    );
}

#[test]
fn errors_display_where_and_what() {
    let messages: Vec<String> = [
        &fixture!("broken-bad-magic.dtb")[..],
        fixture!("broken-truncated.dtb"),
        fixture!("broken-no-memory.dtb"),
        fixture!("broken-reg-length.dtb"),
        fixture!("broken-address-cells-3.dtb"),
        fixture!("broken-module-overflow.dtb"),
    ]
    .iter()
    .map(|blob| parse_err(blob).to_string())
    .collect();
    assert!(messages[0].contains("0xdeadbeef"), "{}", messages[0]);
    assert!(
        messages[1].contains("0x1d94") && messages[1].contains("0x1000"),
        "{}",
        messages[1]
    );
    assert!(messages[2].contains("memory"), "{}", messages[2]);
    assert!(
        messages[3].contains("/memory@40000000") && messages[3].contains("12 bytes"),
        "{}",
        messages[3]
    );
    assert!(
        messages[4].contains("/reserved-memory/odd@0") && messages[4].contains("= 3"),
        "{}",
        messages[4]
    );
    assert!(
        messages[5].contains("/chosen/module@fffffffffffff000"),
        "{}",
        messages[5]
    );
}
