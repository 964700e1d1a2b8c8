//! The main job: Debian's arm64 cloud kernel with a busybox initramfs boots under the
//! hypervisor to userspace, runs the guest checks (nproc, MemTotal against the RAM the
//! hypervisor gave, a clean kernel log) and powers off through the hypervisor's PSCI.

use hyp_abi::console::{LineKind, TABLE_STAGE2, cpu, facts, map_stats};
use qemu_tests::run;

fn check_linux(name: &str, cpu: &str, smp: &str, mem: &str, hypervisor_args: &str) {
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
            "--append",
            hypervisor_args,
            "--timeout",
            "300",
        ],
    );
    run.assert_success();
    assert!(run.guest_printed(1, "guest-check: pass"), "{}", run.console);
    assert!(
        run.guest_printed(1, &format!("guest-check: nproc={smp} ok")),
        "{}",
        run.console
    );
    assert!(
        !run.console.contains("guest access outside its memory"),
        "{}",
        run.console
    );
    // Every CPU runs EL2 with its MMU and caches on, from before the guest starts.
    let cpus: Vec<_> = run.lines(LineKind::Cpu).collect();
    assert_eq!(cpus.len().to_string(), smp, "{}", run.console);
    for line in cpus {
        for key in [cpu::MMU, cpu::DCACHE, cpu::ICACHE] {
            assert_eq!(line.value(key), Some(cpu::ON), "{line}");
        }
    }
    // Stage 2 is block-mapped: 4K leaves only at the edges of the hypervisor's holes.
    let stage2 = run
        .lines(LineKind::MapStats)
        .find(|line| line.value(map_stats::TABLE) == Some(TABLE_STAGE2))
        .unwrap_or_else(|| panic!("no stage-2 map-stats line\n{}", run.console));
    let field = |key: &str| -> u64 {
        stage2
            .value(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{key} missing in {stage2}"))
    };
    assert!(field(map_stats::LEAVES_2M) > 0, "{stage2}");
    assert!(
        field(map_stats::RAM_4K_BYTES) < 8 << 20,
        "too much guest RAM at 4K: {stage2}"
    );
    assert_eq!(
        field(map_stats::TLBI),
        0,
        "building a table that is not live needs no TLBI: {stage2}"
    );
    // The IPA space is only as large as the guest needs (QEMU virt's high PCIe windows
    // end at 1 TiB), so the stage-2 walk starts at level 1, where the 1G blocks are.
    let guest_facts = run
        .lines(LineKind::Facts)
        .find(|line| line.value(facts::GUEST_RAM_BYTES).is_some())
        .unwrap_or_else(|| panic!("no guest hyp-facts line\n{}", run.console));
    let ipa_bits: u32 = guest_facts
        .value(facts::STAGE2_IPA_BITS)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("stage2_ipa_bits missing in {guest_facts}"));
    assert!(
        (35..=43).contains(&ipa_bits),
        "stage 2 should start at level 1: {guest_facts}"
    );
}

macro_rules! linux_matrix {
    ($($name:ident: $cpu:literal, $smp:literal, $mem:literal, $args:literal;)*) => {
        $(
            #[test]
            fn $name() {
                check_linux(stringify!($name), $cpu, $smp, $mem, $args);
            }
        )*
    };
}

linux_matrix! {
    max_smp1: "max", "1", "2G", "";
    max_smp2: "max", "2", "2G", "";
    max_smp1_crashkernel: "max", "1", "2G", "crashkernel=64M";
    max_smp2_crashkernel: "max", "2", "3G", "crashkernel=128M";
    cortex_a72_smp1: "cortex-a72", "1", "1G", "";
    cortex_a72_smp2: "cortex-a72", "2", "2G", "";
    cortex_a72_smp1_crashkernel: "cortex-a72", "1", "1G", "crashkernel=32M";
    cortex_a72_smp4_crashkernel: "cortex-a72", "4", "2G", "crashkernel=64M@0x60000000";
    max_smp4: "max", "4", "2G", "";
    neoverse_v1_smp4: "neoverse-v1", "4", "2G", "crashkernel=64M";
    cortex_a57_smp4: "cortex-a57", "4", "2G", "";
}

/// The guest owns nothing of the hypervisor's: not its console lines. A guest that prints
/// the outcome marker and other machine-readable lines (even after a carriage return or
/// an erase-line escape) shows them only as its own `(g1) ` lines; the outcome is the
/// hypervisor's, and the scripts' parsers never see the spoofed lines.
#[test]
fn guest_output_cannot_pass_for_the_hypervisors() {
    let run = run(
        "guest_spoof",
        &["linux", "--guest-append", "hyp.spoof=1", "--timeout", "300"],
    );
    run.assert_success();
    assert_eq!(
        run.outcome_line(),
        Some("hyp-exit: success"),
        "{}",
        run.console
    );
    for line in run.console.lines() {
        assert!(
            !line.contains("spoofed") || line.starts_with("(g1) "),
            "an untagged guest line: {line:?}"
        );
    }
    assert!(
        run.guest_lines(1)
            .any(|l| l == "hyp-exit: failure: spoofed by the guest")
    );
    assert!(
        run.guest_lines(1)
            .any(|l| l == "hyp-exit: failure: spoofed after a carriage return"),
        "the carriage return is dropped, the line stays the guest's\n{}",
        run.console
    );
    assert!(
        run.guest_lines(1)
            .any(|l| l.starts_with("\\x1b[2K\\x1b[1Ghyp-facts:")),
        "escape sequences are shown, not obeyed\n{}",
        run.console
    );
    let ram = run
        .lines(LineKind::Facts)
        .find_map(|line| line.number(facts::GUEST_RAM_BYTES));
    assert!(
        ram.is_some_and(|bytes| bytes > 1),
        "the real guest_ram_bytes: {ram:?}"
    );
    let tally = run
        .lines(LineKind::ForeignAccess)
        .last()
        .unwrap_or_else(|| panic!("no foreign-access line\n{}", run.console));
    assert_eq!(tally.value("image"), Some("0"), "{tally}");
}

/// A device assigned on purpose (`passthrough=` on the hypervisor's command line): the
/// guest's DT has it, its registers reach the device through stage 2, and its interrupt
/// (a hardware-linked SPI) reaches the guest: the PL031 RTC's alarm fires once.
#[test]
fn an_assigned_rtc_works_and_its_interrupt_arrives() {
    let run = run(
        "passthrough_rtc",
        &[
            "linux",
            "--append",
            "passthrough=/pl031@9010000",
            "--guest-append",
            "hyp.rtc=1",
            "--timeout",
            "300",
        ],
    );
    run.assert_success();
    let devices = run
        .lines(LineKind::GuestDevices)
        .next()
        .unwrap_or_else(|| panic!("no guest-devices line\n{}", run.console));
    assert_eq!(
        devices.value("passthrough"),
        Some("pl031@0x9010000"),
        "{devices}"
    );
    assert!(
        run.guest_lines(1)
            .any(|l| l.starts_with("guest-rtc: name=rtc-pl031") && !l.ends_with("time=none")),
        "the guest has no working RTC\n{}",
        run.console
    );
    // The guest's own kernel may print into the line before its newline (the tty and
    // printk share the UART), so only the digits after `after=` are read.
    let after: Option<u32> = run.guest_lines(1).find_map(|l| {
        let rest = l.strip_prefix("guest-rtc: alarm interrupts before=0 after=")?;
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        rest.get(..digits)?.parse().ok()
    });
    assert_eq!(
        after,
        Some(1),
        "the alarm interrupt did not arrive exactly once\n{}",
        run.console
    );
}

/// By default the guest gets only its emulated GIC and console: nothing passed through,
/// nothing refused (nothing was asked for).
#[test]
fn by_default_a_guest_gets_only_its_emulated_devices() {
    let run = run("default_devices", &["linux", "--check", "--timeout", "300"]);
    run.assert_success();
    let devices = run
        .lines(LineKind::GuestDevices)
        .next()
        .unwrap_or_else(|| panic!("no guest-devices line\n{}", run.console));
    assert_eq!(devices.value("guest"), Some("1"), "{devices}");
    assert_eq!(
        devices.value("emulated"),
        Some("gicv3@0x8000000,pl011@0x9000000"),
        "{devices}"
    );
    assert_eq!(devices.value("passthrough"), Some("none"), "{devices}");
    assert_eq!(devices.value("refused"), Some("none"), "{devices}");
}
