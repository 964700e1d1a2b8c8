//! `platform::dt` on small synthetic trees, one edge case each (the fixtures cover what
//! QEMU produces; these cover what it doesn't).

mod common;

use common::{FdtBuilder, cells, string, tree};
use platform::dt::{self, DtError, InterruptProblem, StructureProblem};
use platform::info::{Conduit, ModuleKind, PhysRange};

const BASE: u64 = 0x4800_0000;

/// Parses a tree built for one test (leaked: the info borrows it).
fn parse_ok(blob: Vec<u8>) -> platform::info::PlatformInfo<'static> {
    let blob: &'static [u8] = Box::leak(blob.into_boxed_slice());
    match dt::parse(blob, BASE) {
        Ok(info) => info,
        Err(error) => panic!("parse failed: {error}"),
    }
}

fn parse_err(blob: &[u8]) -> DtError {
    match dt::parse(blob, BASE) {
        Ok(info) => panic!("expected an error, got {info:?}"),
        Err(error) => error,
    }
}

fn node_of(error: &DtError) -> &str {
    match error {
        DtError::ConsoleUnsupported { node, .. }
        | DtError::CellsOutOfRange { node, .. }
        | DtError::MalformedReg { node, .. }
        | DtError::MalformedInterrupts { node, .. }
        | DtError::MalformedProperty { node, .. }
        | DtError::MissingProperty { node, .. }
        | DtError::DuplicateMpidr { node, .. }
        | DtError::BadPsciMethod { node, .. }
        | DtError::RangeOverflow { node, .. }
        | DtError::EmptyRange { node, .. }
        | DtError::UntranslatableAddress { node } => node.as_str(),
        other => panic!("{other:?} names no node"),
    }
}

#[test]
fn minimal_tree_parses() {
    let blob = tree(&[], |_| {});
    let info = dt::parse(&blob, BASE).expect("minimal tree");
    assert_eq!(
        info.memory.as_slice(),
        &[PhysRange::new(0x4000_0000, 1 << 30).unwrap()]
    );
    assert_eq!(info.console.path, "/pl011@9000000");
    assert_eq!(info.console.baud, None);
    let psci = info.psci.unwrap();
    assert_eq!((psci.conduit, psci.version), (Conduit::Hvc, (0, 2)));
    assert_eq!(info.bootargs, None);
}

#[test]
fn optional_nodes_may_be_absent() {
    let info = parse_ok(tree(&["timer", "psci"], |_| {}));
    assert_eq!((info.timer, info.psci), (None, None));
}

#[test]
fn empty_bootargs_is_an_empty_string() {
    let blob = tree(&["chosen"], |b| {
        b.begin("chosen")
            .prop_str("stdout-path", "serial0")
            .prop("bootargs", &[])
            .end();
    });
    assert_eq!(parse_ok(blob).bootargs, Some(""));
}

#[test]
fn stdout_path_without_unit_address_and_with_options() {
    let blob = tree(&["chosen"], |b| {
        b.begin("chosen")
            .prop_str("stdout-path", "/pl011:9600n8")
            .end();
    });
    let info = parse_ok(blob);
    assert_eq!(info.console.path, "/pl011");
    assert_eq!(info.console.baud, Some(9600));
    assert_eq!(info.console.regs.base, 0x900_0000);
}

#[test]
fn alias_naming_itself_does_not_recurse() {
    // fdt 0.1.5's `find_node`/`chosen().stdout()` overflow the stack on this tree.
    let blob = tree(&["aliases", "chosen"], |b| {
        b.begin("aliases").prop_str("loop", "loop").end();
        b.begin("chosen").prop_str("stdout-path", "loop").end();
    });
    assert!(matches!(
        parse_err(&blob),
        DtError::StdoutPathUnresolvable { stdout_path } if stdout_path.as_str() == "loop"
    ));
    // find_console falls back to the first PL011.
    let console = dt::find_console(&blob).unwrap();
    assert_eq!(
        (console.path, console.regs.base),
        ("pl011@9000000", 0x900_0000)
    );
}

#[test]
fn alias_with_sub_path() {
    let blob = tree(&["aliases", "chosen"], |b| {
        b.begin("bus")
            .prop("ranges", &[])
            .prop_cells("#address-cells", &[1])
            .prop_cells("#size-cells", &[1]);
        b.begin("uart@1c090000")
            .prop_str("compatible", "arm,pl011")
            .prop_cells("reg", &[0x1c09_0000, 0x1000])
            .end();
        b.end();
        b.begin("aliases").prop_str("bus0", "/bus").end();
        b.begin("chosen")
            .prop_str("stdout-path", "bus0/uart@1c090000:38400")
            .end();
    });
    let info = parse_ok(blob);
    assert_eq!(info.console.path, "bus0/uart@1c090000");
    assert_eq!(
        info.console.regs,
        PhysRange::new(0x1c09_0000, 0x1000).unwrap()
    );
    assert_eq!(info.console.baud, Some(38400));
}

#[test]
fn console_behind_a_translating_bus_is_refused() {
    let blob = tree(&["chosen"], |b| {
        b.begin("soc")
            .prop_cells("#address-cells", &[1])
            .prop_cells("#size-cells", &[1])
            .prop_cells("ranges", &[0, 0, 0x1000_0000, 0x100_0000]);
        b.begin("serial@0")
            .prop_str("compatible", "arm,pl011")
            .prop_cells("reg", &[0, 0x1000])
            .end();
        b.end();
        b.begin("chosen")
            .prop_str("stdout-path", "/soc/serial@0")
            .end();
    });
    let error = parse_err(&blob);
    assert!(
        matches!(error, DtError::UntranslatableAddress { .. }),
        "{error:?}"
    );
    assert_eq!(node_of(&error), "/soc/serial@0");
}

#[test]
fn console_without_reg_is_unsupported() {
    let blob = tree(&["pl011"], |b| {
        b.begin("pl011@9000000")
            .prop_str("compatible", "arm,pl011")
            .end();
    });
    let error = parse_err(&blob);
    assert!(
        matches!(
            error,
            DtError::ConsoleUnsupported {
                reason: "no reg",
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn nesting_depth_is_limited() {
    let nested = |levels: usize| {
        tree(&[], |b| {
            for level in 0..levels {
                b.begin(&format!("n{level}"));
            }
            for _ in 0..levels {
                b.end();
            }
        })
    };
    // The root is depth 1.
    assert!(dt::parse(&nested(dt::MAX_DEPTH - 1), BASE).is_ok());
    assert!(matches!(
        parse_err(&nested(dt::MAX_DEPTH)),
        DtError::Structure {
            problem: StructureProblem::TooDeep { limit: 16 },
            ..
        }
    ));
}

#[test]
fn property_after_child_is_refused() {
    let blob = tree(&[], |b| {
        b.begin("odd")
            .begin("child")
            .end()
            .prop_cells("late", &[1])
            .end();
    });
    assert!(matches!(
        parse_err(&blob),
        DtError::Structure {
            problem: StructureProblem::PropertyAfterChild,
            ..
        }
    ));
}

#[test]
fn malformed_cell_property_names_the_node() {
    let blob = tree(&[], |b| {
        b.begin("bus").prop("#address-cells", &cells(&[1, 1])).end();
    });
    let error = parse_err(&blob);
    assert!(
        matches!(
            error,
            DtError::MalformedProperty {
                property: "#address-cells",
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(node_of(&error), "/bus");
}

#[test]
fn root_without_cells_uses_the_spec_default() {
    // 2 address cells and 1 size cell: a 3-cell memory reg.
    let mut b = FdtBuilder::new();
    b.begin("");
    b.begin("memory@80000000")
        .prop_str("device_type", "memory")
        .prop_cells("reg", &[0, 0x8000_0000, 0x1000_0000])
        .end();
    common::platform_nodes(&mut b, &["memory", "intc", "pl011"]);
    b.begin("intc")
        .prop_str("compatible", "arm,gic-v3")
        .prop_cells("reg", &[0, 0x800_0000, 0x1_0000, 0, 0x80a_0000, 0xf6_0000])
        .end();
    b.begin("pl011@9000000")
        .prop_str("compatible", "arm,pl011")
        .prop_cells("reg", &[0, 0x900_0000, 0x1000])
        .end();
    b.end();
    let info = parse_ok(b.finish());
    assert_eq!(
        info.memory.as_slice(),
        &[PhysRange::new(0x8000_0000, 0x1000_0000).unwrap()]
    );
    assert_eq!(info.gic.distributor.base, 0x800_0000);
    assert_eq!(info.gic.maintenance_intid, None);
    assert_eq!(info.gic.its, None);
}

#[test]
fn disabled_memory_and_empty_banks_are_skipped() {
    let blob = tree(&[], |b| {
        b.begin("memory@80000000")
            .prop_str("device_type", "memory")
            .prop_str("status", "disabled")
            .prop_cells("reg", &[0, 0x8000_0000, 0, 0x1000])
            .end();
        b.begin("memory@c0000000")
            .prop_str("device_type", "memory")
            .prop_cells("reg", &[0, 0xc000_0000, 0, 0])
            .end();
    });
    assert_eq!(parse_ok(blob).memory.len(), 1);
}

#[test]
fn too_many_memory_banks() {
    let blob = tree(&["memory"], |b| {
        let reg: Vec<u32> = (0..17u32).flat_map(|i| [1 + i, 0, 0, 0x1000]).collect();
        b.begin("memory@100000000")
            .prop_str("device_type", "memory")
            .prop_cells("reg", &reg)
            .end();
    });
    assert_eq!(
        parse_err(&blob),
        DtError::TooMany {
            what: "memory banks",
            limit: 16
        }
    );
}

fn with_cpus(address_cells: u32, regs: &[&[u32]]) -> Vec<u8> {
    tree(&["cpus"], |b| {
        b.begin("cpus")
            .prop_cells("#address-cells", &[address_cells])
            .prop_cells("#size-cells", &[0]);
        for (index, reg) in regs.iter().enumerate() {
            b.begin(&format!("cpu@{index}"))
                .prop_str("device_type", "cpu")
                .prop_cells("reg", reg)
                .end();
        }
        // Not CPUs: another name, or no device_type.
        b.begin("cpu-map").end();
        b.begin("cpu@99").prop_cells("reg", &[0x99]).end();
        b.end();
    })
}

#[test]
fn two_cell_mpidrs() {
    let blob = with_cpus(2, &[&[0, 0x100], &[1, 0x1]]);
    let info = parse_ok(blob);
    let mpidrs: Vec<u64> = info.cpus.iter().map(|c| c.mpidr).collect();
    assert_eq!(mpidrs, [0x100, 0x1_0000_0001]);
}

#[test]
fn cpu_errors() {
    let error = parse_err(&with_cpus(1, &[&[0], &[0]]));
    assert!(
        matches!(error, DtError::DuplicateMpidr { mpidr: 0, .. }),
        "{error:?}"
    );
    assert_eq!(node_of(&error), "/cpus/cpu@1");

    let error = parse_err(&with_cpus(1, &[&[0x0100_0000]]));
    assert!(
        matches!(
            error,
            DtError::MalformedProperty {
                property: "reg",
                ..
            }
        ),
        "{error:?}"
    );

    let error = parse_err(&with_cpus(3, &[&[0, 0, 0]]));
    assert!(
        matches!(
            error,
            DtError::CellsOutOfRange {
                address_cells: 3,
                ..
            }
        ),
        "{error:?}"
    );

    assert_eq!(parse_err(&with_cpus(1, &[])), DtError::NoCpus);
    assert_eq!(parse_err(&tree(&["cpus"], |_| {})), DtError::NoCpus);

    let many: Vec<[u32; 1]> = (0..65).map(|i| [i]).collect();
    let many: Vec<&[u32]> = many.iter().map(|r| &r[..]).collect();
    assert_eq!(
        parse_err(&with_cpus(1, &many)),
        DtError::TooMany {
            what: "CPUs",
            limit: 64
        }
    );
}

fn with_gic(props: &[(&str, Vec<u8>)]) -> Vec<u8> {
    tree(&["intc"], |b| {
        b.begin("intc@8000000")
            .prop_str("compatible", "arm,gic-v3")
            .prop_cells("#address-cells", &[2])
            .prop_cells("#size-cells", &[2])
            .prop("ranges", &[]);
        for (name, value) in props {
            b.prop(name, value);
        }
        b.begin("its@8080000")
            .prop_str("compatible", "arm,gic-v3-its")
            .prop_cells("reg", &[0, 0x808_0000, 0, 0x2_0000])
            .end();
        b.end();
    })
}

const GIC_REG_3: [u32; 12] = [
    0,
    0x800_0000,
    0,
    0x1_0000,
    0,
    0x80a_0000,
    0,
    0xf6_0000,
    0,
    0x1000_0000,
    0,
    0x2_0000,
];

#[test]
fn gic_with_two_redistributor_regions() {
    let blob = with_gic(&[
        ("reg", cells(&GIC_REG_3)),
        ("#redistributor-regions", cells(&[2])),
        ("interrupts", cells(&[0, 5, 4])),
    ]);
    let gic = parse_ok(blob).gic;
    assert_eq!(gic.redistributors.len(), 2);
    assert_eq!(
        gic.redistributors[1],
        PhysRange::new(0x1000_0000, 0x2_0000).unwrap()
    );
    assert_eq!(gic.maintenance_intid, Some(37), "SPI 5");
    assert_eq!(gic.its, Some(PhysRange::new(0x808_0000, 0x2_0000).unwrap()));
}

#[test]
fn gic_errors() {
    let error = parse_err(&with_gic(&[
        ("reg", cells(&GIC_REG_3)),
        ("#redistributor-regions", cells(&[3])),
    ]));
    assert!(
        matches!(
            error,
            DtError::MalformedProperty {
                property: "reg",
                ..
            }
        ),
        "{error:?}"
    );

    let error = parse_err(&with_gic(&[
        ("reg", cells(&GIC_REG_3)),
        ("#redistributor-regions", cells(&[5])),
    ]));
    assert_eq!(
        error,
        DtError::TooMany {
            what: "GICv3 redistributor regions",
            limit: 4
        }
    );

    let error = parse_err(&with_gic(&[
        ("reg", cells(&GIC_REG_3)),
        ("interrupts", cells(&[2, 1, 4])),
    ]));
    assert!(
        matches!(
            error,
            DtError::MalformedInterrupts {
                problem: InterruptProblem::UnknownType { kind: 2 },
                ..
            }
        ),
        "{error:?}"
    );

    let error = parse_err(&with_gic(&[
        ("reg", cells(&GIC_REG_3)),
        ("interrupts", cells(&[1, 16, 4])),
    ]));
    assert!(
        matches!(
            error,
            DtError::MalformedInterrupts {
                problem: InterruptProblem::PpiOutOfRange { number: 16 },
                ..
            }
        ),
        "{error:?}"
    );

    let error = parse_err(&with_gic(&[
        ("reg", cells(&GIC_REG_3)),
        ("interrupts", cells(&[1, 9])),
    ]));
    assert!(
        matches!(
            error,
            DtError::MalformedInterrupts {
                problem: InterruptProblem::Length { len: 8 },
                ..
            }
        ),
        "{error:?}"
    );

    let error = parse_err(&with_gic(&[]));
    assert!(
        matches!(
            error,
            DtError::MissingProperty {
                property: "reg",
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(node_of(&error), "/intc@8000000");
}

#[test]
fn timer_frequency_and_too_few_interrupts() {
    let timer = |interrupts: &[u32]| {
        tree(&["timer"], |b| {
            b.begin("timer")
                .prop_str("compatible", "arm,armv8-timer")
                .prop_cells("interrupts", interrupts)
                .prop_cells("clock-frequency", &[62_500_000])
                .end();
        })
    };
    let info = parse_ok(timer(&[1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4, 1, 12, 4]));
    let t = info.timer.unwrap();
    assert_eq!(t.frequency_hz, Some(62_500_000));
    assert_eq!(t.hyp_phys_intid, 26);
    assert!(matches!(
        parse_err(&timer(&[1, 13, 4, 1, 14, 4, 1, 11, 4])),
        DtError::MalformedInterrupts {
            problem: InterruptProblem::TooFew {
                found: 3,
                needed: 4
            },
            ..
        }
    ));
}

#[test]
fn psci_variants() {
    let psci = |compatible: &[u8], method: Option<&str>| {
        tree(&["psci"], |b| {
            b.begin("psci").prop("compatible", compatible);
            if let Some(method) = method {
                b.prop_str("method", method);
            }
            b.end();
        })
    };
    let info = parse_ok(psci(b"arm,psci\0", Some("smc")));
    assert_eq!(info.psci.unwrap().version, (0, 1));
    let info = parse_ok(psci(b"arm,psci-1.0\0arm,psci-0.2\0", Some("smc")));
    assert_eq!(info.psci.unwrap().version, (1, 0));
    assert!(matches!(
        parse_err(&psci(b"arm,psci-1.0\0", None)),
        DtError::MissingProperty {
            property: "method",
            ..
        }
    ));
    let error = parse_err(&psci(b"arm,psci-1.0\0", Some("\u{ff}x")));
    assert!(matches!(error, DtError::BadPsciMethod { .. }), "{error:?}");
}

fn with_module(reg: &[u32]) -> Vec<u8> {
    tree(&["chosen"], |b| {
        b.begin("chosen").prop_str("stdout-path", "serial0");
        b.begin("module@0")
            .prop("compatible", b"multiboot,module\0")
            .prop_cells("reg", reg)
            .end();
        b.end();
    })
}

#[test]
fn module_reg_checks() {
    let info = parse_ok(with_module(&[0, 0x5000_0000, 0, 0x10]));
    assert_eq!(info.modules[0].kind, ModuleKind::Unspecified);
    assert_eq!(
        info.modules[0].range,
        PhysRange::new(0x5000_0000, 0x10).unwrap()
    );

    let error = parse_err(&with_module(&[
        0,
        0x5000_0000,
        0,
        0x10,
        0,
        0x6000_0000,
        0,
        0x10,
    ]));
    assert!(
        matches!(
            error,
            DtError::MalformedProperty {
                property: "reg",
                ..
            }
        ),
        "{error:?}"
    );
    let error = parse_err(&with_module(&[0, 0x5000_0000, 0, 0]));
    assert!(
        matches!(
            error,
            DtError::EmptyRange {
                base: 0x5000_0000,
                ..
            }
        ),
        "{error:?}"
    );
    // The DT spec default (2/1) would read these 4 cells as one entry and a half.
    let error = parse_err(&with_module(&[0, 0x5000_0000, 0x10]));
    assert!(
        matches!(
            error,
            DtError::MalformedReg {
                len: 12,
                address_cells: 2,
                size_cells: 2,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn too_many_modules() {
    let blob = tree(&["chosen"], |b| {
        b.begin("chosen").prop_str("stdout-path", "serial0");
        for i in 0..9u32 {
            b.begin(&format!("module@{i}"))
                .prop("compatible", b"multiboot,module\0")
                .prop_cells("reg", &[0, 0x5000_0000 + i * 0x1000, 0, 0x1000])
                .end();
        }
        b.end();
    });
    assert_eq!(
        parse_err(&blob),
        DtError::TooMany {
            what: "boot modules (multiboot,module)",
            limit: 8
        }
    );
}

#[test]
fn memreserve_and_reserved_memory_merge_sorted() {
    let mut b = FdtBuilder::new();
    b.reserve(0x7000_0000, 0x1000)
        .reserve(0x6000_0000, 0)
        .reserve(0x5000_0000, 0x1000);
    b.begin("")
        .prop_cells("#address-cells", &[2])
        .prop_cells("#size-cells", &[2]);
    common::platform_nodes(&mut b, &[]);
    b.begin("reserved-memory").prop("ranges", &[]);
    b.begin("a@60000000")
        .prop_cells("reg", &[0, 0x6000_0000, 0, 0x1000])
        .end();
    b.end();
    b.end();
    let info = parse_ok(b.finish());
    let bases: Vec<u64> = info.reserved.iter().map(|r| r.range.base).collect();
    assert_eq!(
        bases,
        [0x5000_0000, 0x6000_0000, 0x7000_0000],
        "the size-0 entry is skipped"
    );
}

#[test]
fn memreserve_without_terminator_is_truncated() {
    // Move the reservation block to the end of the blob: one entry, then the blob ends.
    let mut blob = tree(&[], |_| {});
    while blob.len() % 8 != 0 {
        blob.push(0);
    }
    let offset = blob.len() as u32;
    blob.extend_from_slice(&0x1000u64.to_be_bytes());
    blob.extend_from_slice(&0x1000u64.to_be_bytes());
    let total = blob.len() as u32;
    blob[4..8].copy_from_slice(&total.to_be_bytes());
    blob[16..20].copy_from_slice(&offset.to_be_bytes());
    let error = parse_err(&blob);
    assert!(
        matches!(error, DtError::Truncated { what, .. } if what.starts_with("memory reservation block")),
        "{error:?}"
    );
}

#[test]
fn header_checks() {
    let good = tree(&[], |_| {});
    let with_field = |index: usize, value: u32| {
        let mut blob = good.clone();
        blob[index * 4..index * 4 + 4].copy_from_slice(&value.to_be_bytes());
        blob
    };
    assert_eq!(
        dt::blob_size(&with_field(1, 17 << 20)),
        Err(DtError::TooLarge {
            totalsize: 17 << 20,
            limit: 16 << 20
        })
    );
    assert_eq!(
        dt::blob_size(&with_field(5, 15)),
        Err(DtError::UnsupportedVersion {
            version: 15,
            last_compatible: 16
        })
    );
    assert_eq!(
        dt::blob_size(&with_field(6, 18)),
        Err(DtError::UnsupportedVersion {
            version: 17,
            last_compatible: 18
        })
    );
    assert!(matches!(
        dt::blob_size(&with_field(2, (good.len() as u32 + 3) & !3)),
        Err(DtError::Truncated {
            what: "struct block",
            ..
        })
    ));
    assert!(matches!(
        dt::blob_size(&with_field(4, 44)),
        Err(DtError::BadHeader {
            field: "off_mem_rsvmap",
            problem: "is misaligned",
            ..
        })
    ));
    assert!(matches!(
        dt::blob_size(&with_field(3, 8)),
        Err(DtError::BadHeader {
            field: "off_dt_strings",
            problem: "points into the header",
            ..
        })
    ));
    assert!(matches!(
        dt::blob_size(&with_field(1, 20)),
        Err(DtError::BadHeader {
            field: "totalsize",
            ..
        })
    ));
}

#[test]
fn long_paths_keep_their_end() {
    let long = "x".repeat(80);
    let blob = tree(&[], |b| {
        b.begin(&long)
            .begin("bad@0")
            .prop("#size-cells", &[1])
            .end()
            .end();
    });
    let error = parse_err(&blob);
    let node = node_of(&error);
    assert!(
        node.starts_with("...") && node.ends_with("x/bad@0"),
        "{node}"
    );
    assert!(node.len() <= dt::DT_TEXT_CAPACITY);
}

#[test]
fn invalid_utf8_strings_are_errors_not_panics() {
    let blob = tree(&["chosen"], |b| {
        b.begin("chosen")
            .prop_str("stdout-path", "serial0")
            .prop("bootargs", &[0xff, 0xfe, 0])
            .end();
    });
    let error = parse_err(&blob);
    assert!(
        matches!(
            error,
            DtError::MalformedProperty {
                property: "bootargs",
                ..
            }
        ),
        "{error:?}"
    );
    let _ = string("unused");
}

/// QEMU's `-dtb` loader leaves FDT_NOP tokens where libfdt deleted properties; after
/// `remove_nops` the blob parses as if they had never been there.
#[test]
fn nop_tokens_are_compacted_out_in_place() {
    let clean = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/qemu-2g-smp2-max.dtb"
    ))
    .expect("fixture");
    let expected = dt::parse(&clean, 0x4800_0000)
        .expect("clean fixture parses")
        .memory;
    // Turn the first property of the root node into NOPs, as fdt_nop_property() does.
    let mut blob = clean.clone();
    let struct_offset = u32::from_be_bytes(blob[8..12].try_into().unwrap()) as usize;
    // BEGIN_NODE "" (8 bytes with padding), then the first FDT_PROP.
    let prop = struct_offset + 8;
    assert_eq!(
        u32::from_be_bytes(blob[prop..prop + 4].try_into().unwrap()),
        3
    );
    let len = u32::from_be_bytes(blob[prop + 4..prop + 8].try_into().unwrap()) as usize;
    let words = (12 + len.next_multiple_of(4)) / 4;
    for word in 0..words {
        blob[prop + 4 * word..prop + 4 * word + 4].copy_from_slice(&4u32.to_be_bytes());
    }
    assert!(matches!(
        dt::parse(&blob, 0x4800_0000),
        Err(DtError::Structure { .. })
    ));
    assert_eq!(dt::remove_nops(&mut blob), Ok(words));
    assert_eq!(
        dt::parse(&blob, 0x4800_0000)
            .expect("compacted blob parses")
            .memory,
        expected
    );
    // A second pass finds nothing to do.
    assert_eq!(dt::remove_nops(&mut blob), Ok(0));
}

#[test]
fn remove_nops_leaves_a_malformed_blob_unchanged() {
    let clean = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/qemu-2g-smp2-max.dtb"
    ))
    .expect("fixture");
    let mut blob = clean.clone();
    let struct_offset = u32::from_be_bytes(blob[8..12].try_into().unwrap()) as usize;
    blob[struct_offset + 8..struct_offset + 12].copy_from_slice(&4u32.to_be_bytes());
    blob[struct_offset + 12..struct_offset + 16].copy_from_slice(&0x77u32.to_be_bytes());
    let before = blob.clone();
    assert!(dt::remove_nops(&mut blob).is_err());
    assert_eq!(blob, before);
}
