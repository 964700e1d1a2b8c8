//! Hostile DMA from the guest, stopped by the SMMU walking the guest's own stage 2: the
//! test guest (`tests/test-guest/src/guest/virtio_blk.rs`) drives the virtio-blk disk of
//! the PCI host bridge it was given (`passthrough=/pcie@10000000`) and points reads at
//! the hypervisor's pool and crash region, at a page it made read-only with MEM_PROTECT,
//! and a request header at a page it made no-access. Each access is stopped: the target
//! memory is unchanged (checked from inside where the guest can read it; for the
//! hypervisor's memory, the hypervisor running on proves its tables intact), the SMMU's
//! events are logged and counted, and the guest and the hypervisor go on.

use hyp_abi::console::{LineKind, facts};
use qemu_tests::{repo_root, run};

const CASES: [&str; 4] = [
    "dma_read_into_own_ram",
    "dma_write_outside_own_ram_is_stopped",
    "dma_to_a_protected_page_is_stopped",
    "dma_from_a_no_access_page_is_stopped",
];

/// The hypervisor's pool and crash region for the selftest machine (`run.sh none` with
/// the same command line as `run.sh selftest`: the layout depends on it, not on devices).
fn hypervisor_memory() -> (u64, u64) {
    let layout = run(
        "dma-layout",
        &["none", "--append", "crashkernel=32M selftest"],
    );
    layout.assert_success();
    let fact = |key: &str| {
        layout
            .lines(LineKind::Facts)
            .find_map(|line| line.number(key))
            .unwrap_or_else(|| panic!("no {key}\n{}", layout.console))
    };
    (fact(facts::POOL_BASE), fact(facts::CRASH_BASE))
}

#[test]
fn dma_outside_the_guest_or_against_its_permissions_is_stopped_by_the_smmu() {
    let (pool, crash) = hypervisor_memory();
    let disk = repo_root()
        .join("target")
        .join("qemu-tests")
        .join("dma.ext4");
    let _ = std::fs::create_dir_all(disk.parent().expect("a folder"));
    let built = std::process::Command::new(repo_root().join("scripts/make-disk-image.sh"))
        .arg(&disk)
        .status()
        .expect("run scripts/make-disk-image.sh");
    assert!(built.success());
    let disk = disk.display().to_string();
    let probes = format!("dma_probe={pool:#x},{crash:#x}");
    let run = run(
        "dma",
        &[
            "selftest",
            "--disk",
            &disk,
            "--append",
            "passthrough=/pcie@10000000",
            "--guest-append",
            &probes,
            "--timeout",
            "400",
        ],
    );
    run.assert_success();
    for case in CASES {
        assert!(
            run.guest_lines(1)
                .any(|l| l.starts_with(&format!("selftest: {case} ... ok"))),
            "{case} did not pass\n{}",
            run.console
        );
    }
    // Every stopped access is an SMMU event: logged (the first ones in full) and counted.
    let stats = run
        .console
        .lines()
        .find_map(|l| l.strip_prefix("smmu-stats: "))
        .unwrap_or_else(|| panic!("no smmu-stats line\n{}", run.console));
    let events: u64 = stats
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("events="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no events count: {stats}"));
    assert!(events >= 4, "fewer SMMU events than stopped DMAs: {stats}");
    assert!(
        run.console
            .lines()
            .any(|l| l.contains("WARN  SMMU /smmuv3@9050000: ") && l.contains("stream 0x")),
        "no SMMU event logged\n{}",
        run.console
    );
}
