//! `scripts/run.sh selftest`: the EL2 selftests, then the EL1 test guest checking the
//! hypercalls, permission faults, splits, collapses, concurrent changes, isolation and
//! the two-vCPU stress run from inside. The run exits 0 only when the combined summary
//! reports no failure; the stress and isolation counts are checked here too. With
//! `--probe-devices` the test guest also reads and writes every device window of the
//! board it was not given (`isolation_probe=`), and the hypervisor must refuse each
//! access, name each device once and count them all.

use hyp_abi::console::{LineKind, cpu, exits, facts, foreign_access, vgic_stats};
use qemu_tests::run;

/// CPUs every selftest run has: every one runs EL2 with its MMU on.
const SMP: usize = 4;

/// RAM of every selftest run.
const MEM: &str = "4G";

/// A selftest run without device probes: everything passes, the test guest's
/// `isolation_probe_addresses` is skipped (no `isolation_probe=`) and nothing touched a
/// device window.
fn selftest(name: &str, cpu: &str) -> qemu_tests::Run {
    let run = selftest_with(name, cpu, &[]);
    assert!(
        run.guest_lines(1)
            .any(|l| l.starts_with("selftest: isolation_probe_addresses ... skipped: ")),
        "{}",
        run.console
    );
    assert_eq!(
        run.foreign_access_count(foreign_access::DEVICE),
        0,
        "{}",
        run.console
    );
    run
}

/// `scripts/run.sh selftest` with `extra` options on `cpu`: every test passes and the
/// counts agree.
fn selftest_with(name: &str, cpu: &str, extra: &[&str]) -> qemu_tests::Run {
    let smp = SMP.to_string();
    let mut args = vec![
        "selftest",
        "--cpu",
        cpu,
        "--smp",
        &smp,
        "--mem",
        MEM,
        "--timeout",
        "300",
    ];
    args.extend_from_slice(extra);
    let run = run(name, &args);
    run.assert_success();
    for test in [
        "el2_every_cpu_runs_the_mmu",
        "el2_crash_map_is_separate_and_small",
        "el2_tlb_conflict_is_retried",
        "el2_stage2_tlb_conflict_is_retried_not_injected",
        "stage1_walk_faults_reach_the_guest",
        "cpu_off_then_on_at_once",
        "trapped_system_registers",
        "el2_split_and_collapse",
        "uid",
        "features",
        "protect_readonly_page",
        "restore_collapses",
        "execute_never",
        "hostile_arguments",
        "isolation_outside_ram",
        "concurrent_split_restore",
        "stress_protect_restore",
        "el2_split_without_a_table_leaves_the_map_intact",
        "el2_heap_growth_without_a_table_fails_cleanly",
        "el2_stage2_protect_without_a_table_fails_cleanly",
        "vgic_sgi_to_self_arrives",
        "vgic_more_pending_than_list_registers_all_arrive_in_priority_order",
        "vgic_sgi_to_a_cpu_that_is_not_ours_is_dropped",
        "vgic_sgi_between_vcpus_arrives",
        "vgic_virtual_timer_interrupt_arrives",
        "vgic_unowned_spis_and_lpi_registers_are_refused",
    ] {
        assert!(
            run.console.contains(&format!("selftest: {test} ... ok")),
            "{test} did not pass\n{}",
            run.console
        );
    }
    assert!(
        run.guest_lines(1)
            .any(|l| l.starts_with("selftest: ") && l.ends_with(" passed, 0 failed")),
        "{}",
        run.console
    );
    check_stress(&run);
    check_isolation(&run);
    check_cpus(&run, SMP);
    check_trapped_system_registers(&run);
    check_vgic(&run);
    run
}

/// The vGIC's counters agree with what the test guest did: 16 SGIs pending at once on 4
/// list registers (12 queued), one SGI aimed at no vCPU, the timer's hardware-linked
/// interrupt, LPI registers and another guest's SPIs written.
fn check_vgic(run: &qemu_tests::Run) {
    let line = run
        .lines(LineKind::VgicStats)
        .last()
        .unwrap_or_else(|| panic!("no vgic-stats line\n{}", run.console));
    let number = |key: &str| {
        line.number(key)
            .unwrap_or_else(|| panic!("no number for {key:?} in {line}"))
    };
    assert!(number(vgic_stats::MAX_QUEUE_DEPTH) >= 12, "{line}");
    assert!(number(vgic_stats::UNDERFLOW_REQUESTS) >= 1, "{line}");
    assert!(number(vgic_stats::SGI_TARGETS_DROPPED) >= 1, "{line}");
    assert!(number(vgic_stats::HARDWARE_FIRES) >= 1, "{line}");
    assert!(number(vgic_stats::REFUSED_LPI_ACCESSES) >= 2, "{line}");
    assert!(number(vgic_stats::REFUSED_FOREIGN_WRITES) >= 2, "{line}");
    assert!(
        run.guest_lines(1).any(|l| l.contains("vgic-latency:")),
        "no timer latency line\n{}",
        run.console
    );
}

/// One `hyp-cpu:` line per CPU, each with its MMU and caches on and its own features.
fn check_cpus(run: &qemu_tests::Run, cpus: usize) {
    let lines: Vec<_> = run.lines(LineKind::Cpu).collect();
    assert_eq!(lines.len(), cpus, "hyp-cpu lines:\n{}", run.console);
    for (index, line) in lines.iter().enumerate() {
        assert_eq!(line.value(cpu::CPU), Some(&*index.to_string()), "{line}");
        assert!(
            [cpu::MMU, cpu::DCACHE, cpu::ICACHE]
                .iter()
                .all(|key| line.value(key) == Some(cpu::ON)),
            "a CPU runs EL2 without its MMU or caches: {line}"
        );
        assert!(
            line.value(cpu::BBM_LEVEL).is_some() && line.value(cpu::TLBI_RANGE).is_some(),
            "{line}"
        );
    }
}

/// The test guest's accesses to ACTLR_EL1 and an IMPDEF encoding (and ERRIDR_EL1 with
/// FEAT_RAS) trapped to the hypervisor: QEMU would answer most of them the same way
/// untrapped, so the exit counter is what shows the traps are set.
fn check_trapped_system_registers(run: &qemu_tests::Run) {
    let line = run
        .lines(LineKind::Exits)
        .next()
        .unwrap_or_else(|| panic!("no hyp-exits line\n{}", run.console));
    let sysreg = line
        .number(exits::SYSREG)
        .unwrap_or_else(|| panic!("no number for {:?} in {line}", exits::SYSREG));
    assert!(sysreg >= 4, "{line}");
}

/// The note of a passed test: the text in the parentheses of `selftest: NAME ... ok (...)`
/// (an EL2 test's line is the hypervisor's, a guest test's the test guest's).
fn ok_note<'r>(run: &'r qemu_tests::Run, test: &str) -> &'r str {
    let prefix = format!("selftest: {test} ... ok (");
    run.hypervisor_lines()
        .chain(run.guest_lines(1))
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no ok line with numbers from {test}\n{}", run.console))
}

/// The number right after `key` in `note` (digits only; a `+` before them is skipped).
fn number_after(note: &str, key: &str) -> u64 {
    note.split_once(key)
        .map(|(_, rest)| rest.trim_start_matches('+'))
        .and_then(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or_else(|| panic!("no number after {key:?} in {note:?}"))
}

/// `stress_protect_restore`: 10,000 operations from two vCPUs, data checked, every
/// expected fault seen, blocks split and collapsed.
fn check_stress(run: &qemu_tests::Run) {
    let note = ok_note(run, "stress_protect_restore");
    let ops = number_after(note, "ops ");
    let words = number_after(note, "words checked ");
    let expected = number_after(note, "faults expected ");
    let seen = number_after(note, " seen ");
    let splits = number_after(note, "splits 1G ") + number_after(note, " 2M ");
    let collapses = number_after(note, "collapses ");
    eprintln!(
        "stress_protect_restore: {ops} ops, {words} words checked, faults {seen}/{expected}, \
         {splits} splits, {collapses} collapses"
    );
    assert_eq!(ops, 10_000, "{note}");
    assert!(words > 0, "{note}");
    assert!(expected > 0, "{note}");
    assert_eq!(seen, expected, "{note}");
    assert!(splits > 0 && collapses > 0, "{note}");
}

/// `isolation_outside_ram`: at least every window of the 512 MiB above guest RAM and the
/// far one.
fn check_isolation(run: &qemu_tests::Run) {
    let note = ok_note(run, "isolation_outside_ram");
    let windows: u64 = note
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no window count in {note:?}"));
    assert!(windows > 256, "{note}");
    // The hypervisor named what the probes hit: with 4 GiB the crash region (placed
    // below 4 GiB) leaves a hole in guest RAM, and the pool sits above it.
    let tally = run
        .lines(LineKind::ForeignAccess)
        .next()
        .unwrap_or_else(|| panic!("no foreign-access tally\n{}", run.console));
    for kind in [
        foreign_access::IMAGE,
        foreign_access::POOL,
        foreign_access::CRASH,
        foreign_access::OUTSIDE_RAM,
    ] {
        let count = tally
            .number(kind)
            .unwrap_or_else(|| panic!("no number for {kind:?} in {tally}"));
        assert!(count >= 2, "{kind}: {tally}");
    }
    // Device windows are the test guest's `isolation_probe=` addresses alone (checked by
    // the callers), but the key is always there.
    assert!(tally.number(foreign_access::DEVICE).is_some(), "{tally}");
}

/// `--probe-devices`: run.sh gives the test guest the first and last word of every
/// device window of the board it was not given (`isolation_probe=`), and the guest reads
/// and writes each through its own 4 KiB Device page.
#[test]
fn selftest_probes_every_device_window_the_guest_was_not_given() {
    let name = "selftest-devices";
    let run = selftest_with(name, "max", &["--probe-devices"]);
    let probes = run.listed_device_probes();
    assert!(
        !probes.is_empty(),
        "run.sh listed no device probes\n{}",
        run.stderr
    );
    // The guest probed every address run.sh listed, and left none out.
    let note = ok_note(&run, "isolation_probe_addresses");
    let probed: u64 = note
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no address count in {note:?}"));
    assert_eq!(probed, probes.len() as u64, "{note}");
    assert!(!note.contains("not probed"), "{note}");
    // Each refused as a device's window, each device named once, 2 accesses per probe.
    let dtb = std::fs::read(qemu_tests::qemu_dtb(name, "max", &SMP.to_string(), MEM))
        .expect("QEMU's DTB");
    let devices = qemu_tests::assert_device_probes_refused(&run, &dtb, &probes);
    eprintln!(
        "{name}: the test guest probed {probed} addresses of {} devices, each refused and named once",
        devices.len()
    );
}

fn retried_faults(run: &qemu_tests::Run) -> u64 {
    run.console
        .lines()
        .find_map(|l| l.split("PSCI SYSTEM_OFF (").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no retried-fault count\n{}", run.console))
}

#[test]
fn selftests_pass_on_max_with_bbml2_and_no_transient_faults() {
    let run = selftest("selftest-max", "max");
    assert_eq!(
        retried_faults(&run),
        0,
        "BBML2 splits never break the mapping"
    );
}

/// FEAT_BBM level 2 without FEAT_TLBIRANGE: every invalidation by address or whole.
#[test]
fn selftests_pass_on_neoverse_v1_without_range_tlbis() {
    let run = selftest("selftest-v1", "neoverse-v1");
    assert_eq!(run.fact(facts::TLBI_RANGE).as_deref(), Some("0"));
    assert_eq!(
        retried_faults(&run),
        0,
        "BBML2 splits never break the mapping"
    );
}

/// A core without FEAT_BBM (break-before-make) and without FEAT_RAS.
#[test]
fn selftests_pass_on_cortex_a57() {
    let run = selftest("selftest-a57", "cortex-a57");
    assert_eq!(run.fact(facts::BBM_LEVEL).as_deref(), Some("0"));
}

#[test]
fn selftests_pass_on_cortex_a72_with_break_before_make_hidden_from_the_guest() {
    let run = selftest("selftest-a72", "cortex-a72");
    // The guest saw no fault (checked by the test guest); the hypervisor retried the
    // transient ones break-before-make caused.
    assert!(
        retried_faults(&run) > 0,
        "the concurrent test never hit a break-before-make window"
    );
}
