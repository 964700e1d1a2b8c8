//! The main job: Debian's arm64 cloud kernel with a busybox initramfs boots under the
//! hypervisor to userspace, runs the guest checks (nproc, MemTotal against the RAM the
//! hypervisor gave, a clean kernel log) and powers off through the hypervisor's PSCI.

use qemu_tests::run;

fn check_linux(name: &str, cpu: &str, smp: &str, mem: &str) {
    let run = run(
        name,
        &[
            "linux",
            "--check",
            "--cpu",
            cpu,
            "--smp",
            smp,
            "--mem",
            mem,
            "--timeout",
            "300",
        ],
    );
    run.assert_success();
    assert!(run.console.contains("guest-check: pass"), "{}", run.console);
    assert!(
        run.console
            .contains(&format!("guest-check: nproc={smp} ok")),
        "{}",
        run.console
    );
    assert!(
        !run.console.contains("guest access outside its memory"),
        "{}",
        run.console
    );
    // Stage 2 is block-mapped: 4K leaves only at the edges of the hypervisor's holes.
    let stage2 = run
        .console
        .lines()
        .find(|l| l.starts_with("map-stats: table=stage2"))
        .unwrap_or_else(|| panic!("no stage-2 map-stats line\n{}", run.console));
    let field = |key: &str| -> u64 {
        stage2
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{key} missing in {stage2}"))
    };
    assert!(field("leaves_2m") > 0, "{stage2}");
    assert!(
        field("ram_4k_bytes") < 8 << 20,
        "too much guest RAM at 4K: {stage2}"
    );
    assert_eq!(
        field("tlbi"),
        0,
        "building a table that is not live needs no TLBI: {stage2}"
    );
}

#[test]
fn linux_boots_to_userspace_on_max_with_bbml2() {
    check_linux("linux-max", "max", "2", "2G");
}

#[test]
fn linux_boots_to_userspace_on_cortex_a72_without_bbml2() {
    check_linux("linux-a72", "cortex-a72", "4", "1G");
}
