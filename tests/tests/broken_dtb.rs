//! A device tree the hypervisor cannot accept gives a clear error on the console (when
//! the DT still names one) and a failure exit, never a hang.

use hyp_abi::console::{Outcome, facts};
use qemu_tests::{compile_dts as compile, qemu_dts, run};

#[test]
fn overlapping_reservations_are_reported_and_fail_the_run() {
    let (dir, dts) = qemu_dts("overlap");
    let broken = dts.replacen(
        "/ {",
        "/memreserve/ 0x50000000 0x200000;\n/memreserve/ 0x50100000 0x200000;\n\n/ {",
        1,
    );
    let dtb = compile(&dir, "broken-overlap", &broken);
    let dtb = dtb.to_string_lossy().into_owned();
    let run = run(
        "broken-overlap",
        &["none", "--timeout", "60", "--", "-dtb", &dtb],
    );
    assert_eq!(run.status, Some(1), "{}\n{}", run.console, run.stderr);
    assert!(
        run.console.contains("overlap"),
        "no clear error on the console:\n{}",
        run.console
    );
    assert_eq!(run.outcome(), Some(Outcome::Failure("invalid device tree")));
}

#[test]
fn a_dtb_without_stdout_path_is_reported_on_the_first_pl011_and_fails() {
    let (dir, dts) = qemu_dts("noconsole");
    let broken: String = dts
        .lines()
        .filter(|line| !line.contains("stdout-path"))
        .collect::<Vec<_>>()
        .join("\n");
    let dtb = compile(&dir, "broken-noconsole", &broken);
    let dtb = dtb.to_string_lossy().into_owned();
    let run = run(
        "broken-noconsole",
        &["none", "--timeout", "60", "--", "-dtb", &dtb],
    );
    assert_eq!(run.status, Some(1), "{}\n{}", run.console, run.stderr);
    assert!(
        run.console.contains("stdout-path is missing"),
        "{}",
        run.console
    );
    assert_eq!(run.outcome(), Some(Outcome::Failure("invalid device tree")));
}

#[test]
fn a_dtb_from_qemu_dtb_with_nop_tokens_boots() {
    // QEMU's -dtb loader deletes properties with libfdt, leaving FDT_NOP tokens.
    let (dir, dts) = qemu_dts("nops");
    let dtb = compile(&dir, "nops", &dts);
    let dtb = dtb.to_string_lossy().into_owned();
    let run = run("nops", &["none", "--timeout", "60", "--", "-dtb", &dtb]);
    run.assert_success();
    assert_eq!(run.fact(facts::RAM_BYTES).as_deref(), Some("2147483648"));
}
