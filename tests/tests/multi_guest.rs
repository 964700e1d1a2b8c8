//! Several Linux guests side by side (issue 20), described the way Xen's dom0less does
//! (`scripts/run.sh --guests N` builds the DTB): each boots to userspace on vCPUs pinned
//! to its own physical CPUs, with its own RAM (at the same IPA, on different physical
//! memory congruent to it), passes its checks and powers off alone; the run succeeds
//! once every guest has.

use std::sync::Mutex;

use qemu_tests::{Run, run};

/// Two-to-four-vCPU machines on a small host: these runs take turns.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The `hyp-facts: guest=N ...` line of guest `number`, as key/value pairs.
fn guest_facts(run: &Run, number: u16) -> Vec<(String, String)> {
    run.facts()
        .into_iter()
        .find(|pairs| {
            pairs
                .iter()
                .any(|(k, v)| k == "guest" && *v == number.to_string())
        })
        .unwrap_or_else(|| panic!("no hyp-facts line for guest {number}\n{}", run.console))
}

fn value<'a>(pairs: &'a [(String, String)], key: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in {pairs:?}"))
}

fn number(text: &str) -> u64 {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.unwrap_or_else(|_| panic!("not a number: {text}"))
}

/// Every guest of `expected` (vCPUs, RAM bytes) booted, passed its checks with its own
/// CPU count, and got RAM at the same IPA on physical memory of its own, congruent to
/// the IPA modulo 1 GiB when it has a gigabyte, else 2 MiB; no two guests share a
/// physical CPU.
fn assert_guests(run: &Run, expected: &[(u32, u64)]) {
    run.assert_success();
    let mut physical_ram = Vec::new();
    let mut cpus_seen = Vec::new();
    for (index, &(vcpus, bytes)) in expected.iter().enumerate() {
        let guest = index as u16 + 1;
        assert!(
            run.guest_printed(guest, "guest-check: pass"),
            "guest {guest} did not pass\n{}",
            run.console
        );
        assert!(
            run.guest_printed(guest, &format!("guest-check: nproc={vcpus} ok")),
            "guest {guest}: nproc\n{}",
            run.console
        );
        let facts = guest_facts(run, guest);
        assert_eq!(number(value(&facts, "guest_ram_bytes")), bytes, "{facts:?}");
        assert_eq!(number(value(&facts, "guest_vcpus")), u64::from(vcpus));
        let ipa = number(value(&facts, "ram_ipa"));
        let pa = number(value(&facts, "ram_pa"));
        let congruence = number(value(&facts, "ipa_pa_congruence"));
        assert_eq!(ipa, 0x4000_0000, "guest RAM where QEMU virt's DT says");
        let wanted = if bytes >= 1 << 30 { 1 << 30 } else { 2 << 20 };
        assert!(congruence >= wanted, "{facts:?}");
        assert_eq!(ipa % wanted, pa % wanted, "{facts:?}");
        physical_ram.push((pa, pa + bytes));
        for cpu in value(&facts, "physical_cpus").split(',') {
            assert!(!cpus_seen.contains(&cpu.to_owned()), "cpu{cpu} given twice");
            cpus_seen.push(cpu.to_owned());
        }
        // Its own report at power-off.
        assert!(
            run.console
                .lines()
                .any(|l| l.starts_with(&format!("hyp-exits: guest={guest} "))),
            "{}",
            run.console
        );
    }
    for (i, a) in physical_ram.iter().enumerate() {
        for b in &physical_ram[i + 1..] {
            assert!(
                a.1 <= b.0 || b.1 <= a.0,
                "guest RAM overlaps: {a:x?} {b:x?}"
            );
        }
    }
    assert!(
        !run.console.contains("guest access outside its memory"),
        "{}",
        run.console
    );
}

/// Debian bookworm's own cloud kernel (6.1), beside the default guest's backports one
/// (`scripts/setup.sh --stable-kernel` fetches it once).
fn stable_kernel() -> String {
    let setup = std::process::Command::new(qemu_tests::repo_root().join("scripts/setup.sh"))
        .arg("--stable-kernel")
        .output()
        .expect("cannot start scripts/setup.sh");
    assert!(
        setup.status.success(),
        "scripts/setup.sh --stable-kernel failed\n{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let image = qemu_tests::repo_root().join(".cache/guest-stable/Image");
    image.to_string_lossy().into_owned()
}

#[test]
fn two_guests_of_different_kernels_and_sizes_boot_side_by_side_on_max() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let stable = stable_kernel();
    let run = run(
        "multi_guest_two_max",
        &[
            "linux",
            "--check",
            "--cpu",
            "max",
            "--smp",
            "4",
            "--mem",
            "3G",
            "--guests",
            "2",
            "--guest",
            "1",
            "--guest-mem",
            "1G",
            "--guest-cpus",
            "3",
            "--guest",
            "2",
            "--kernel",
            &stable,
            "--guest-mem",
            "512M",
            "--guest-cpus",
            "1",
            "--guest-append",
            "quiet",
            "--timeout",
            "600",
        ],
    );
    assert_guests(&run, &[(3, 1 << 30), (1, 512 << 20)]);
    // Each runs its own kernel: the default (backports) one and bookworm's 6.1.
    let release = |guest| {
        run.guest_lines(guest)
            .find_map(|l| l.strip_prefix("guest: userspace reached on "))
            .and_then(|rest| rest.split(',').next())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("guest {guest} reached no userspace\n{}", run.console))
    };
    let (first, second) = (release(1), release(2));
    assert_ne!(first, second, "both guests ran one kernel");
    assert!(second.starts_with("6.1."), "guest 2 ran {second}");
}

#[test]
fn three_guests_boot_side_by_side_on_cortex_a72() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let run = run(
        "multi_guest_three_a72",
        &[
            "linux",
            "--check",
            "--cpu",
            "cortex-a72",
            "--smp",
            "4",
            "--mem",
            "2G",
            "--guests",
            "3",
            "--guest",
            "1",
            "--guest-mem",
            "512M",
            "--guest-cpus",
            "2",
            "--guest",
            "2",
            "--guest-mem",
            "384M",
            "--guest-cpus",
            "1",
            "--guest",
            "3",
            "--guest-mem",
            "256M",
            "--guest-cpus",
            "1",
            "--timeout",
            "600",
        ],
    );
    assert_guests(&run, &[(2, 512 << 20), (1, 384 << 20), (1, 256 << 20)]);
}

#[test]
fn a_guest_that_panics_restarts_alone_while_the_other_runs_on() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Guest 2 panics once (scripts/guest/init, hyp.crash=1); panic=1 reboots it through
    // PSCI SYSTEM_RESET, and the hypervisor restarts it alone from its images, RAM
    // scrubbed, with hyp.reset=1 on its command line; then it passes its checks.
    let run = run(
        "multi_guest_panic_reset",
        &[
            "linux",
            "--check",
            "--cpu",
            "max",
            "--smp",
            "4",
            "--mem",
            "3G",
            "--guests",
            "2",
            "--guest",
            "1",
            "--guest-mem",
            "1G",
            "--guest-cpus",
            "2",
            "--guest",
            "2",
            "--guest-mem",
            "512M",
            "--guest-cpus",
            "2",
            "--guest-append",
            "panic=1 hyp.crash=1",
            "--timeout",
            "600",
        ],
    );
    assert_guests(&run, &[(2, 1 << 30), (2, 512 << 20)]);
    assert!(
        run.guest_printed(2, "guest-crash: panicking on purpose"),
        "{}",
        run.console
    );
    assert!(
        run.guest_printed(2, "guest-reset: restarted (hyp.reset=1)"),
        "{}",
        run.console
    );
    assert!(
        run.console.contains("guest 2: reset (1 so far)"),
        "{}",
        run.console
    );
    // Guest 1 booted once and never saw a reset.
    assert!(!run.guest_lines(1).any(|l| l.starts_with("guest-reset:")));
    assert_eq!(
        run.guest_lines(1)
            .filter(|l| l.starts_with("guest: userspace reached"))
            .count(),
        1,
        "{}",
        run.console
    );
}

#[test]
fn a_guest_at_its_table_cap_gets_no_memory_while_the_other_still_splits() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    build_guest_module();
    // Cap 12 table pages a guest: guest 1 splits one 2 MiB block after another
    // (hypmem.ko exhaust=32) until MEM_PROTECT says NO_MEMORY, restores them and splits
    // again; guest 2 runs the ordinary MEM_PROTECT self-test meanwhile, under its own cap.
    let run = run(
        "multi_guest_table_cap",
        &[
            "linux",
            "--cpu",
            "max",
            "--smp",
            "4",
            "--mem",
            "3G",
            "--append",
            "stage2_table_cap=12",
            "--guests",
            "2",
            "--guest",
            "1",
            "--guest-mem",
            "1G",
            "--guest-cpus",
            "2",
            "--guest-append",
            "hyp.modtest=1 hyp.modtest_exhaust=32",
            "--guest",
            "2",
            "--guest-mem",
            "512M",
            "--guest-cpus",
            "2",
            "--guest-append",
            "hyp.modtest=1",
            "--timeout",
            "600",
        ],
    );
    run.assert_success();
    for guest in [1, 2] {
        assert!(
            run.guest_printed(guest, "guest-modtest: pass"),
            "guest {guest}\n{}",
            run.console
        );
        let facts = guest_facts(&run, guest);
        assert_eq!(value(&facts, "stage2_table_cap"), "12", "{facts:?}");
    }
    let exhaust = run
        .guest_lines(1)
        .find_map(|l| l.split("hypmem: exhaust: chunks=").nth(1))
        .unwrap_or_else(|| panic!("no exhaust line\n{}", run.console));
    // "32 split=N then status=-5": NO_MEMORY (-5) after some splits, well before 32.
    let split: u32 = exhaust
        .split("split=")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{exhaust}"));
    assert!((1..12).contains(&split), "{exhaust}");
    assert!(exhaust.ends_with("then status=-5"), "{exhaust}");
    assert!(
        run.guest_lines(1)
            .any(|l| l.contains("hypmem: exhaust: a split after restoring = 0")),
        "{}",
        run.console
    );
    assert!(
        run.hypervisor_lines()
            .any(|l| l.contains("no table memory")),
        "{}",
        run.console
    );
}

/// Guest `number`'s `foreign-access:` tally (several guests: the line names it).
fn foreign_accesses(run: &Run, number: u16) -> Vec<(String, u64)> {
    let prefix = format!("foreign-access: guest={number} ");
    let line = run
        .console
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no tally for guest {number}\n{}", run.console));
    line.split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| {
            (
                k.to_owned(),
                v.parse()
                    .unwrap_or_else(|_| panic!("{pair_k}={v}", pair_k = k)),
            )
        })
        .collect()
}

#[test]
fn each_guest_is_refused_everything_outside_its_ram_including_the_others_ram() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    build_guest_module();
    // Both sweep /dev/mem past their RAM (scripts/guest/isolation) while their
    // MEM_PROTECT self-test (hypmem.ko) runs. Guest 2's 512 MiB end at IPA 0x6000_0000;
    // its 2 GiB sweep crosses guest 1's RAM, which sits at PA 0x8000_0000 (1 GiB
    // congruent): the hypervisor names those accesses other_guest.
    let run = run(
        "multi_guest_isolation",
        &[
            "linux",
            "--cpu",
            "max",
            "--smp",
            "4",
            "--mem",
            "3G",
            "--guests",
            "2",
            "--guest",
            "1",
            "--guest-mem",
            "1G",
            "--guest-cpus",
            "2",
            "--guest-append",
            "hyp.isolation=1 hyp.modtest=1",
            "--guest",
            "2",
            "--guest-mem",
            "512M",
            "--guest-cpus",
            "2",
            "--guest-append",
            "hyp.isolation=1 hyp.modtest=1 hyp.sweep_span=0x80000000",
            "--timeout",
            "600",
        ],
    );
    run.assert_success();
    for guest in [1, 2] {
        assert!(
            run.guest_printed(guest, "guest-isolation: pass")
                && run.guest_printed(guest, "guest-modtest: pass"),
            "guest {guest}\n{}",
            run.console
        );
    }
    let guest1_pa = number(value(&guest_facts(&run, 1), "ram_pa"));
    assert_eq!(guest1_pa, 0x8000_0000, "the sweep below assumes it");
    let tally = foreign_accesses(&run, 2);
    let other_guest = tally
        .iter()
        .find(|(k, _)| k == "other_guest")
        .map_or(0, |&(_, n)| n);
    // 1 GiB of guest 1 in 16 MiB steps, a read and a write each.
    assert_eq!(other_guest, 2 * 64, "{tally:?}\n{}", run.console);
    assert!(
        run.hypervisor_lines().any(|l| l.contains("guest 1's RAM")),
        "{}",
        run.console
    );
}

/// The DTB `run.sh` writes for `args` (from its `--print-qemu` line), copied to
/// `target/qemu-tests/NAME.dtb` for a test to break.
fn guests_dtb_copy(name: &str, args: &[&str]) -> std::path::PathBuf {
    let root = qemu_tests::repo_root();
    let out = std::process::Command::new(root.join("scripts/run.sh"))
        .args(args)
        .arg("--print-qemu")
        .output()
        .expect("cannot start scripts/run.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == "-dtb")
        .expect("a -dtb argument");
    let copy = root.join("target/qemu-tests").join(format!("{name}.dtb"));
    std::fs::create_dir_all(copy.parent().expect("a folder")).expect("target/qemu-tests");
    std::fs::copy(words[at + 1], &copy).expect("copy the guests' DTB");
    copy
}

fn fdtput(dtb: &std::path::Path, args: &[&str]) {
    let status = std::process::Command::new("fdtput")
        .arg("-t")
        .arg("u")
        .arg(dtb)
        .args(args)
        .status()
        .expect("cannot start fdtput");
    assert!(status.success(), "fdtput {args:?}");
}

#[test]
fn a_bad_description_is_refused_naming_the_node_before_any_guest_starts() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let args = [
        "linux",
        "--smp",
        "2",
        "--mem",
        "3G",
        "--guests",
        "2",
        "--timeout",
        "120",
    ];
    // domU2 asks for 64 GiB (in KiB, two cells); domU1 is fine.
    let dtb = guests_dtb_copy("multi_guest_bad_memory", &args);
    fdtput(
        &dtb,
        &["/chosen/domU2", "memory", "0", &(64u64 << 20).to_string()],
    );
    let dtb = dtb.to_string_lossy().into_owned();
    let mut with_dtb: Vec<&str> = args.to_vec();
    with_dtb.extend(["--", "-dtb", &dtb]);
    let run = run("multi_guest_bad_memory", &with_dtb);
    assert_eq!(run.status, Some(1), "{}", run.console);
    let outcome = run.outcome_line().unwrap_or_default();
    assert!(outcome.starts_with("hyp-exit: failure"), "{}", run.console);
    assert!(
        run.hypervisor_lines()
            .any(|l| l.contains("/chosen/domU2") && l.contains("RAM")),
        "{}",
        run.console
    );
    assert_eq!(run.guest_lines(1).count() + run.guest_lines(2).count(), 0);

    // domU1's kernel module is said to be 1 MiB: shorter than its own PE/COFF sections.
    let dtb = guests_dtb_copy("multi_guest_truncated_kernel", &args);
    let listing = std::process::Command::new("fdtget")
        .args(["-l"])
        .arg(&dtb)
        .arg("/chosen/domU1")
        .output()
        .expect("cannot start fdtget");
    let kernel = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .map(|module| format!("/chosen/domU1/{module}"))
        .find(|path| {
            std::process::Command::new("fdtget")
                .arg(&dtb)
                .arg(path)
                .arg("compatible")
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("multiboot,kernel"))
        })
        .expect("domU1's kernel module");
    let base = std::process::Command::new("fdtget")
        .args(["-t", "u"])
        .arg(&dtb)
        .arg(&kernel)
        .arg("reg")
        .output()
        .expect("fdtget reg");
    let reg: Vec<String> = String::from_utf8_lossy(&base.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(reg.len(), 4, "{reg:?}");
    fdtput(&dtb, &[&kernel, "reg", &reg[0], &reg[1], "0", "1048576"]);
    let dtb = dtb.to_string_lossy().into_owned();
    let mut with_dtb: Vec<&str> = args.to_vec();
    with_dtb.extend(["--", "-dtb", &dtb]);
    let run = qemu_tests::run("multi_guest_truncated_kernel", &with_dtb);
    assert_eq!(run.status, Some(1), "{}", run.console);
    assert!(
        run.hypervisor_lines()
            .any(|l| l.contains("/chosen/domU1") && l.contains("truncated")),
        "{}",
        run.console
    );
    assert_eq!(run.guest_lines(1).count() + run.guest_lines(2).count(), 0);
}

#[test]
fn console_input_reaches_each_guest_in_turn_and_the_hypervisor() {
    use std::io::Write;
    use std::time::{Duration, Instant};
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let root = qemu_tests::repo_root();
    let log = root.join("target/qemu-tests/multi_guest_console_focus.log");
    let _ = std::fs::remove_file(&log);
    // Both guests end at a shell (no check options); what is typed goes to the guest with
    // focus, Ctrl-a three times moves it on: guest 1, guest 2, the hypervisor, guest 1.
    let mut child = std::process::Command::new(root.join("scripts/run.sh"))
        .arg("--log")
        .arg(&log)
        .args(["linux", "--guests", "2", "--timeout", "300"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cannot start scripts/run.sh");
    let mut input = child.stdin.take().expect("stdin");
    let console = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .replace('\r', "")
    };
    let wait_for = |what: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            let text = console();
            if what(&text) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out\n{text}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let mut send = |bytes: &[u8]| {
        input.write_all(bytes).expect("type");
        input.flush().expect("type");
        std::thread::sleep(Duration::from_millis(500));
    };
    let printed = |text: &str, guest: u16, line: &str| {
        text.lines().any(|l| l == format!("(g{guest}) {line}"))
    };
    wait_for(&|t| t.matches("guest: type 'poweroff -f' to stop").count() == 2);
    // The shell computes what it echoes, so only the guest's own answer matches.
    send(b"echo typed-into-$((40+1))\r");
    wait_for(&|t| printed(t, 1, "typed-into-41"));
    send(b"\x01\x01\x01");
    send(b"echo typed-into-$((40+2))\r");
    wait_for(&|t| printed(t, 2, "typed-into-42"));
    send(b"\x01\x01\x01");
    send(b"s");
    wait_for(&|t| t.contains("guest 2: exits "));
    send(b"\x01\x01\x01");
    send(b"poweroff -f\r");
    wait_for(&|t| t.contains("hyp-exits: guest=1 "));
    // Focus stays on guest 1, which has ended; one more switch reaches guest 2.
    send(b"\x01\x01\x01");
    send(b"poweroff -f\r");
    wait_for(&|t| t.contains("hyp-exit: "));
    let _ = child.wait();
    let text = console();
    assert!(text.contains("hyp-exit: success"), "{text}");
    assert!(!printed(&text, 2, "typed-into-41") && !printed(&text, 1, "typed-into-42"));
}

/// hypmem.ko for the guest kernel (scripts/build-guest-module.sh; the initramfs packs it).
fn build_guest_module() {
    let built =
        std::process::Command::new(qemu_tests::repo_root().join("scripts/build-guest-module.sh"))
            .output()
            .expect("cannot start scripts/build-guest-module.sh");
    assert!(
        built.status.success(),
        "scripts/build-guest-module.sh failed\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
}
