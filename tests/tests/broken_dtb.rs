//! A device tree the hypervisor cannot accept gives a clear error on the console (when
//! the DT still names one) and a failure exit, never a hang.

use qemu_tests::{repo_root, run};
use std::path::PathBuf;
use std::process::Command;

/// QEMU's own DTB for the default machine, as DTS text.
fn qemu_dts(name: &str) -> (PathBuf, String) {
    let dir = repo_root().join("target").join("qemu-tests");
    std::fs::create_dir_all(&dir).expect("target dir");
    let dtb = dir.join(format!("{name}-orig.dtb"));
    let status = Command::new("qemu-system-aarch64")
        .args(["-machine"])
        .arg(format!(
            "virt,virtualization=on,gic-version=3,dumpdtb={}",
            dtb.display()
        ))
        .args([
            "-cpu",
            "max",
            "-smp",
            "2",
            "-m",
            "2G",
            "-nographic",
            "-nic",
            "none",
        ])
        .status()
        .expect("run qemu-system-aarch64");
    assert!(status.success(), "dumpdtb failed");
    let dts = Command::new("dtc")
        .args(["-q", "-I", "dtb", "-O", "dts"])
        .arg(&dtb)
        .output()
        .expect("run dtc");
    assert!(dts.status.success(), "dtc failed");
    (dir, String::from_utf8_lossy(&dts.stdout).into_owned())
}

fn compile(dir: &std::path::Path, name: &str, dts: &str) -> PathBuf {
    let source = dir.join(format!("{name}.dts"));
    let out = dir.join(format!("{name}.dtb"));
    std::fs::write(&source, dts).expect("write dts");
    let status = Command::new("dtc")
        .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
        .arg(&out)
        .arg(&source)
        .status()
        .expect("dtc");
    assert!(status.success(), "dtc could not compile {name}");
    out
}

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
    assert_eq!(
        run.outcome_line(),
        Some("hyp-exit: failure: invalid device tree")
    );
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
    assert_eq!(
        run.outcome_line(),
        Some("hyp-exit: failure: invalid device tree")
    );
}

#[test]
fn a_dtb_from_qemu_dtb_with_nop_tokens_boots() {
    // QEMU's -dtb loader deletes properties with libfdt, leaving FDT_NOP tokens.
    let (dir, dts) = qemu_dts("nops");
    let dtb = compile(&dir, "nops", &dts);
    let dtb = dtb.to_string_lossy().into_owned();
    let run = run("nops", &["none", "--timeout", "60", "--", "-dtb", &dtb]);
    run.assert_success();
    assert_eq!(run.fact("ram_bytes").as_deref(), Some("2147483648"));
}
