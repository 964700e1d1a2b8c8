//! Isolation from a stock Linux guest: with `hyp.isolation=1` the guest's /init runs
//! `scripts/guest/isolation`, which reads and writes through /dev/mem (busybox devmem)
//! the holes between its RAM ranges, a sweep above the end of its RAM and any address
//! given in `hyp.probe=`. Every access must end in SIGBUS (the hypervisor injected a
//! synchronous external abort), the guest kernel must stay clean, and the hypervisor must
//! keep running, log each kind of target once and count every refused access.

use hyp_abi::console::{LineKind, foreign_access};
use qemu_tests::{Run, run};

/// The `foreign-access:` tally the hypervisor prints at power-off, as (kind, count).
fn tally(run: &Run) -> Vec<(String, u64)> {
    let line = run
        .lines(LineKind::ForeignAccess)
        .next()
        .unwrap_or_else(|| panic!("no foreign-access tally\n{}", run.console));
    if let Some(word) = line.words().next() {
        panic!("bad tally entry {word:?}");
    }
    line.pairs()
        .map(|(key, value)| {
            let count = value
                .parse()
                .unwrap_or_else(|_| panic!("bad tally count {key}={value}"));
            (key.to_string(), count)
        })
        .collect()
}

fn isolation_run(name: &str, cpu: &str, hypervisor_args: &str, guest_args: &str) -> Run {
    let guest_append = format!("hyp.isolation=1 {guest_args}");
    let run = run(
        name,
        &[
            "linux",
            "--cpu",
            cpu,
            "--mem",
            "2G",
            "--append",
            hypervisor_args,
            "--guest-append",
            &guest_append,
            "--timeout",
            "300",
        ],
    );
    run.assert_success();
    let console = &run.console;
    assert!(
        console
            .lines()
            .any(|l| l.trim_end() == "guest-isolation: pass"),
        "the guest's isolation probes did not pass\n{console}"
    );
    assert!(
        !console.contains("NOT refused"),
        "an access was not refused\n{console}"
    );
    run
}

/// Each kind the guest reached is logged exactly once and counted as often as probed.
fn assert_kinds(run: &Run, kinds: &[(&str, &str)]) {
    let tally = tally(run);
    let count = |key: &str| {
        tally
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, c)| *c)
            .unwrap_or_else(|| panic!("no {key} in the tally {tally:?}"))
    };
    for &(key, name) in kinds {
        assert!(
            count(key) >= 2,
            "{key}: want a refused read and write, tally {tally:?}\n{}",
            run.console
        );
        let logged = run
            .console
            .lines()
            .filter(|l| l.contains(&format!("guest access outside its memory refused: {name} ")))
            .count();
        assert_eq!(logged, 1, "{key} logged {logged} times\n{}", run.console);
    }
    let probes: u64 = run
        .console
        .lines()
        .find_map(|l| {
            l.trim_end()
                .strip_prefix("guest-isolation: ")?
                .split_once(" access(es), ")?
                .0
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no probe count\n{}", run.console));
    let refused: u64 = tally.iter().map(|(_, c)| c).sum();
    assert_eq!(
        refused, probes,
        "every guest access is counted once by the hypervisor"
    );
}

#[test]
fn devmem_cannot_reach_the_image_pool_dtb_crash_region_or_beyond_ram_with_bbml2() {
    // The default placement puts the crash region at the top of RAM, above the pool:
    // the guest's sweep above its RAM reaches both.
    let run = isolation_run("isolation-max", "max", "crashkernel=32M", "");
    assert_kinds(
        &run,
        &[
            (foreign_access::IMAGE, "the hypervisor's image"),
            (
                foreign_access::POOL,
                "the hypervisor's pool (heap and page tables)",
            ),
            (foreign_access::CRASH, "the crash region"),
            (foreign_access::DTB, "the host device tree"),
            (
                foreign_access::OUTSIDE_RAM,
                "no RAM (a hole, an unassigned device or beyond the end)",
            ),
        ],
    );
}

#[test]
fn devmem_cannot_reach_a_crash_region_inside_ram_without_bbml2() {
    // A crash region at a chosen base in the middle of RAM splits the guest's RAM; the
    // guest probes the hole it leaves, both ends, and a far address given on its command
    // line.
    let run = isolation_run(
        "isolation-a72",
        "cortex-a72",
        "crashkernel=32M@0x60000000",
        "hyp.probe=0x60000000,0x61ffff00,0x4000000000",
    );
    assert!(
        run.console
            .contains("guest-isolation: hole 0x60000000-0x61ffffff"),
        "the crash region is not a hole in the guest's RAM\n{}",
        run.console
    );
    assert_kinds(
        &run,
        &[
            (foreign_access::IMAGE, "the hypervisor's image"),
            (foreign_access::CRASH, "the crash region"),
            (
                foreign_access::OUTSIDE_RAM,
                "no RAM (a hole, an unassigned device or beyond the end)",
            ),
        ],
    );
}
