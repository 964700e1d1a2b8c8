//! Firmware reservations in the EL2 map: `no-map` memory is never mapped (not even for
//! speculative accesses), while an ordinary reservation stays in the RAM map.

use hyp_abi::console::{Line, LineKind, TABLE_EL2, facts, parse_hex, ptdump};
use qemu_tests::{compile_dts, qemu_dts, run};

/// The EL2 `ptdump:` runs as (va, end).
fn el2_runs(console: &str) -> Vec<(u64, u64)> {
    console
        .lines()
        .filter_map(|line| Line::parse_as(line, LineKind::Ptdump))
        .filter(|line| line.value(ptdump::TABLE) == Some(TABLE_EL2))
        .filter_map(|line| {
            let hex = |key: &str| line.value(key).and_then(parse_hex);
            Some((hex(ptdump::VA)?, hex(ptdump::END)?))
        })
        .collect()
}

fn mapped(runs: &[(u64, u64)], addr: u64) -> bool {
    runs.iter().any(|&(start, end)| start <= addr && addr < end)
}

#[test]
fn no_map_reservations_are_left_out_of_the_el2_map() {
    let (dir, dts) = qemu_dts("reserved");
    // A 1 MiB no-map carve-out in the middle of a 2 MiB block, and an ordinary one.
    // Subnodes go after the root's properties: insert before the root's closing brace.
    let Some(root_end) = dts.rfind("};") else {
        panic!("no root node in QEMU's DTS:\n{dts}");
    };
    let reservations = "\treserved-memory {\n\t\t#address-cells = <2>;\n\t\t#size-cells = <2>;\n\t\tranges;\n\
         \t\tsecure@60080000 {\n\t\t\treg = <0x0 0x60080000 0x0 0x100000>;\n\t\t\tno-map;\n\t\t};\n\
         \t\tshared@70000000 {\n\t\t\treg = <0x0 0x70000000 0x0 0x200000>;\n\t\t};\n\t};\n";
    let with_reservations = format!("{}{reservations}{}", &dts[..root_end], &dts[root_end..]);
    let dtb = compile_dts(&dir, "reserved-no-map", &with_reservations);
    let dtb = dtb.to_string_lossy().into_owned();
    let run = run(
        "reserved-no-map",
        &["none", "--timeout", "60", "--", "-dtb", &dtb],
    );
    run.assert_success();
    assert!(
        run.lines(LineKind::Facts).any(|line| {
            line.group() == Some(facts::RESERVED_LINE) && line.value(facts::NO_MAP) == Some("1")
        }),
        "the reservation was not read as no-map:\n{}",
        run.console
    );
    let runs = el2_runs(&run.console);
    assert!(!runs.is_empty(), "no EL2 ptdump:\n{}", run.console);
    for page in (0x6008_0000..0x6018_0000).step_by(4096) {
        assert!(
            !mapped(&runs, page),
            "no-map page {page:#x} is in the EL2 map"
        );
    }
    for addr in [
        0x6000_0000u64,
        0x6007_f000,
        0x6018_0000,
        0x601f_f000,
        0x7000_0000,
    ] {
        assert!(
            mapped(&runs, addr),
            "RAM at {addr:#x} is not in the EL2 map"
        );
    }
}
