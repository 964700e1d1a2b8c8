//! Isolation from a stock Linux guest: with `hyp.isolation=1` the guest's /init runs
//! `scripts/guest/isolation`, which reads and writes through /dev/mem (busybox devmem)
//! the holes between its RAM ranges, a sweep above the end of its RAM and any address
//! given in `hyp.probe=`. Every access must end in SIGBUS (the hypervisor injected a
//! synchronous external abort), the guest kernel must stay clean, and the hypervisor must
//! keep running, log each kind of target once and count every refused access. With
//! `scripts/run.sh --probe-devices` the guest also probes every device window of the board
//! it was not given, and the hypervisor must name each device by its DT path, once.

use hyp_abi::console::foreign_access;
use qemu_tests::{REFUSED, Run, run};

/// A `linux` run of the isolation script on 2 GiB (and `extra` run.sh options): the
/// guest's own verdict is a pass and no access went through.
fn isolation_run(
    name: &str,
    cpu: &str,
    hypervisor_args: &str,
    guest_args: &str,
    extra: &[&str],
) -> Run {
    let guest_append = format!("hyp.isolation=1 {guest_args}");
    let mut args = vec![
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
    ];
    args.extend_from_slice(extra);
    let run = run(name, &args);
    run.assert_success();
    let console = &run.console;
    assert!(
        run.guest_lines(1)
            .any(|l| l.trim_end() == "guest-isolation: pass"),
        "the guest's isolation probes did not pass\n{console}"
    );
    assert!(
        !run.guest_lines(1).any(|l| l.contains("NOT refused")),
        "an access was not refused\n{console}"
    );
    run
}

/// The accesses the guest made: `guest-isolation: H hole(s), N access(es), ...`.
fn guest_accesses(run: &Run) -> u64 {
    run.guest_lines(1)
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
        .unwrap_or_else(|| panic!("no probe count\n{}", run.console))
}

/// Each kind the guest reached is logged exactly once and counted as often as probed.
fn assert_kinds(run: &Run, kinds: &[(&str, &str)]) {
    let tally = run.foreign_access_tally();
    for &(key, name) in kinds {
        assert!(
            run.foreign_access_count(key) >= 2,
            "{key}: want a refused read and write, tally {tally:?}\n{}",
            run.console
        );
        let logged = run
            .hypervisor_lines()
            .filter(|l| l.contains(&format!("{REFUSED}{name} ")))
            .count();
        assert_eq!(logged, 1, "{key} logged {logged} times\n{}", run.console);
    }
    let refused: u64 = tally.iter().map(|(_, c)| c).sum();
    assert_eq!(
        refused,
        guest_accesses(run),
        "every guest access is counted once by the hypervisor"
    );
}

/// What the log says an access outside guest RAM hit when it hit nothing the host DT names.
const OUTSIDE_RAM: &str = "neither RAM nor a device of the host DT (a hole or beyond the end)";

#[test]
fn devmem_cannot_reach_the_image_pool_dtb_crash_region_or_beyond_ram_with_bbml2() {
    // The default placement puts the crash region at the top of RAM, above the pool:
    // the guest's sweep above its RAM reaches both.
    let run = isolation_run("isolation-max", "max", "crashkernel=32M", "", &[]);
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
            (foreign_access::OUTSIDE_RAM, OUTSIDE_RAM),
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
        &[],
    );
    assert!(
        run.guest_printed(1, "guest-isolation: hole 0x60000000-0x61ffffff"),
        "the crash region is not a hole in the guest's RAM\n{}",
        run.console
    );
    assert_kinds(
        &run,
        &[
            (foreign_access::IMAGE, "the hypervisor's image"),
            (foreign_access::CRASH, "the crash region"),
            (foreign_access::OUTSIDE_RAM, OUTSIDE_RAM),
        ],
    );
}

/// The addresses the guest was asked to probe (`guest-isolation: requested probe ADDR`).
fn requested_probes(run: &Run) -> Vec<u64> {
    run.guest_lines(1)
        .filter_map(|l| {
            l.trim_end()
                .strip_prefix("guest-isolation: requested probe ")
        })
        .map(|addr| {
            addr.strip_prefix("0x")
                .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                .unwrap_or_else(|| panic!("bad probe address {addr:?}"))
        })
        .collect()
}

#[test]
fn devmem_cannot_reach_any_device_window_the_guest_was_not_given() {
    let run = isolation_run(
        "isolation-devices",
        "max",
        "",
        "",
        &["--smp", "2", "--probe-devices"],
    );
    // What the guest was given: run.sh's list on standard error. The guest's own
    // `requested probe` lines only confirm it (the console can split a guest line that a
    // hypervisor warning interrupts, so one may not parse).
    let probes = run.listed_device_probes();
    let requested = requested_probes(&run);
    assert!(
        !requested.is_empty() && requested.iter().all(|p| probes.contains(p)),
        "the guest probed {requested:x?}, run.sh listed {probes:x?}"
    );
    // The board as the hypervisor saw it: QEMU's DTB for the same machine. Every probe
    // refused, each probed device named once, two device accesses counted per probe.
    let dtb = std::fs::read(qemu_tests::qemu_dtb("isolation-devices", "max", "2", "2G"))
        .expect("QEMU's DTB");
    let probed = qemu_tests::assert_device_probes_refused(&run, &dtb, &probes);
    let refused: u64 = run.foreign_access_tally().iter().map(|(_, c)| c).sum();
    assert_eq!(
        refused,
        guest_accesses(&run),
        "every guest access is counted"
    );
    eprintln!(
        "isolation-devices: {} probes of {} devices, each refused and named once",
        probes.len(),
        probed.len()
    );
}
