//! The guest's virtio-pci disk and NIC (`scripts/run.sh --disk --net`), booted directly by
//! QEMU (no hypervisor, so the guest's lines carry no `(g1) ` tag): the guest loads its
//! virtio_blk and virtio_net modules, mounts the default ext4 image
//! (scripts/make-disk-image.sh), reads back random data it wrote past the page cache and
//! the host's SHA256SUMS, takes a DHCP lease on QEMU's user network and pings its gateway.
//! Under the hypervisor the PCI host bridge is given to the guest on purpose
//! (`passthrough=/pcie@10000000`) and every DMA goes through the SMMU, which walks the
//! guest's own stage-2 tables (`hypervisor/src/iommu/`).

use std::time::{Duration, Instant};

use hyp_abi::console::LineKind;
use qemu_tests::{repo_root, run};

/// A disk image of this test's own (QEMU locks an image it writes: two tests running at
/// once cannot share one), built as the default one is.
fn own_disk(name: &str) -> String {
    let path = repo_root()
        .join("target")
        .join("qemu-tests")
        .join(format!("{name}.ext4"));
    let _ = std::fs::create_dir_all(path.parent().expect("a folder"));
    let status = std::process::Command::new(repo_root().join("scripts/make-disk-image.sh"))
        .arg(&path)
        .status()
        .expect("run scripts/make-disk-image.sh");
    assert!(status.success(), "scripts/make-disk-image.sh failed");
    path.display().to_string()
}

/// The `key=value` value of `key` in `line`.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn direct_guest_disk_and_net() {
    let start = Instant::now();
    let disk = own_disk("disk_net");
    let run = run(
        "disk_net",
        &[
            "direct",
            "--disk",
            &disk,
            "--net",
            "--check",
            "--timeout",
            "60",
        ],
    );
    run.assert_success();
    let console = &run.console;
    let guest = |prefix: &str| -> &str {
        console
            .lines()
            .find(|line| line.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line\n{console}"))
    };
    assert!(
        console.lines().any(|line| line == "guest-check: pass"),
        "{console}"
    );
    assert!(!console.contains("FAIL"), "{console}");

    let disk = guest("guest-check: disk ok ");
    assert_eq!(field(disk, "dev"), Some("/dev/vda"), "{disk}");
    assert_eq!(field(disk, "fs"), Some("ext4"), "{disk}");
    assert_eq!(field(disk, "manifest"), Some("ok"), "{disk}");
    assert_eq!(field(disk, "readback_mib"), Some("4"), "{disk}");

    let net = guest("guest-check: net ok ");
    assert_eq!(field(net, "ip"), Some("10.0.2.15"), "{net}");
    assert_eq!(field(net, "gateway"), Some("10.0.2.2"), "{net}");
    assert_eq!(field(net, "dhcp"), Some("ok"), "{net}");
    assert_eq!(field(net, "ping"), Some("ok"), "{net}");

    assert!(
        start.elapsed() < Duration::from_secs(60),
        "took {:?}",
        start.elapsed()
    );
}

/// The same checks under the hypervisor: the devices' DMA is translated by the SMMU
/// through the guest's stage 2, every other stream aborts, and no DMA fault happened.
#[test]
fn guest_disk_and_net_through_the_smmu() {
    let disk = own_disk("disk_net_smmu");
    let run = run(
        "disk_net_smmu",
        &[
            "linux",
            "--disk",
            &disk,
            "--net",
            "--check",
            "--append",
            "passthrough=/pcie@10000000",
            "--timeout",
            "240",
        ],
    );
    run.assert_success();
    assert!(run.guest_printed(1, "guest-check: pass"), "{}", run.console);
    let disk = run
        .guest_lines(1)
        .find(|l| l.starts_with("guest-check: disk ok "))
        .unwrap_or_else(|| panic!("no disk line\n{}", run.console));
    assert_eq!(field(disk, "manifest"), Some("ok"), "{disk}");
    assert!(
        run.guest_lines(1)
            .any(|l| l.starts_with("guest-check: net ok ")),
        "{}",
        run.console
    );
    let devices = run
        .lines(LineKind::GuestDevices)
        .next()
        .unwrap_or_else(|| panic!("no guest-devices line\n{}", run.console));
    assert_eq!(
        devices.value("passthrough"),
        Some("pcie@0x4010000000"),
        "{devices}"
    );
    assert!(
        run.console.contains("SMMU /smmuv3@9050000: driven;"),
        "the SMMU was not brought up\n{}",
        run.console
    );
    let stats = run
        .console
        .lines()
        .find_map(|l| l.strip_prefix("smmu-stats: "))
        .unwrap_or_else(|| panic!("no smmu-stats line\n{}", run.console));
    assert!(
        stats.contains("events=0"),
        "DMA faults in a clean run: {stats}"
    );
}
