//! The hypercall ABI from a stock Linux guest: `scripts/build-guest-module.sh` cross-builds
//! `hypmem.ko` (scripts/guest-module/) against Debian's arm64 headers for the guest kernel,
//! the initramfs carries it, and with `hyp.modtest=1` the guest's /init loads it. The
//! module checks the UID, write-protects one of its pages with MEM_PROTECT, takes the
//! stage-2 permission fault on a write (fixed up to -EFAULT, no oops), reads the page,
//! checks MEM_QUERY reports a read-only 4K leaf, restores RWX and writes again.

use std::process::Command;
use std::sync::{Mutex, OnceLock};

use hyp_abi::hypercall::UUID;
use qemu_tests::{repo_root, run};

/// Builds the module once per test process; the runs share the initramfs, so one at a time.
fn module_test(name: &str, cpu: &str) {
    static SERIAL: Mutex<()> = Mutex::new(());
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let built = BUILT.get_or_init(|| {
        let out = Command::new(repo_root().join("scripts/build-guest-module.sh"))
            .output()
            .map_err(|e| format!("cannot start scripts/build-guest-module.sh: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "scripts/build-guest-module.sh failed ({})\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = built {
        panic!("{e}");
    }

    let run = run(
        name,
        &[
            "linux",
            "--cpu",
            cpu,
            "--guest-append",
            "hyp.modtest=1",
            "--timeout",
            "300",
        ],
    );
    run.assert_success();
    let console = &run.console;
    let has = |needle: &str| console.lines().any(|l| l.contains(needle));
    assert!(has("hypmem: pass"), "{console}");
    assert!(has("guest-modtest: pass"), "{console}");
    assert!(
        has(&format!("hypmem: hypervisor UID {UUID} ok")),
        "{console}"
    );
    assert!(
        has("hypmem: MEM_QUERY read-only:") && has("perms=r-- level=3 leaf_size=0x1000"),
        "MEM_QUERY did not report a read-only 4K leaf\n{console}"
    );
    assert!(
        has("hypmem: write to the read-only page: write_nofault = -14"),
        "the write to the read-only page did not fault\n{console}"
    );
    assert!(
        has("hypmem: write after restoring: write_nofault = 0, read back ok"),
        "{console}"
    );
    for bad in [
        "Unable to handle kernel",
        "Internal error",
        "Oops",
        "Call trace",
        "BUG:",
        "WARNING:",
        "guest access outside its memory",
    ] {
        assert!(!console.contains(bad), "console has {bad:?}\n{console}");
    }
}

#[test]
fn max() {
    module_test("linux_hypercall_max", "max");
}

#[test]
fn cortex_a72() {
    module_test("linux_hypercall_cortex_a72", "cortex-a72");
}
