//! Isolation from a stock Linux guest: with `hyp.isolation=1` the guest's /init runs
//! `scripts/guest/isolation`, which reads and writes through /dev/mem (busybox devmem)
//! the holes between its RAM ranges, a sweep above the end of its RAM and any address
//! given in `hyp.probe=`. Every access must end in SIGBUS (the hypervisor injected a
//! synchronous external abort), the guest kernel must stay clean, and the hypervisor must
//! keep running, log each kind of target once and count every refused access. With
//! `scripts/run.sh --probe-devices` the guest also probes every device window of the board
//! it was not given, and the hypervisor must name each device by its DT path, once.

use std::collections::BTreeMap;

use hyp_abi::console::guest_devices::{self, GuestDevices};
use hyp_abi::console::{LineKind, facts, foreign_access};
use hypervisor::vm::emulated_devices::EmulatedDevices;
use hypervisor::vm::foreign_access::{ForeignTarget, HostDevice, HostMemoryMap};
use qemu_tests::{Run, run};

/// The hypervisor's log line for a refused access, up to what it hit.
const REFUSED: &str = "guest access outside its memory refused: ";

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

/// The number of `key` in the tally.
fn tally_count(run: &Run, key: &str) -> u64 {
    let tally = tally(run);
    tally
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, c)| *c)
        .unwrap_or_else(|| panic!("no {key} in the tally {tally:?}"))
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
    let tally = tally(run);
    for &(key, name) in kinds {
        assert!(
            tally_count(run, key) >= 2,
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

/// The guest's emulated devices, from what the hypervisor printed (its `guest-devices:`
/// emulated list and vCPU count) and the GIC's redistributor region in the host DT (the
/// GICv3 binding's second `reg` entry).
fn emulated_devices(run: &Run, dtb: &[u8]) -> EmulatedDevices {
    let line = run
        .console
        .lines()
        .find_map(GuestDevices::parse)
        .unwrap_or_else(|| panic!("no guest-devices line\n{}", run.console));
    let base = |kind| {
        line.emulated
            .iter()
            .find(|d| d.name == kind)
            .and_then(|d| d.base)
            .unwrap_or_else(|| panic!("no emulated {kind} in {line}"))
    };
    let distributor = base(guest_devices::GICV3);
    let devices = HostDevice::from_dtb(dtb, &[]).expect("QEMU's DTB");
    let gic = devices
        .iter()
        .find(|d| d.windows.iter().any(|w| w.contains(distributor)))
        .expect("a host device holds the distributor");
    let vcpus: usize = run
        .fact(facts::GUEST_VCPUS)
        .and_then(|n| n.parse().ok())
        .expect("guest_vcpus fact");
    EmulatedDevices {
        distributor,
        redistributors: gic.windows.get(1).expect("a GICR region").base,
        vcpus,
        uart: Some(base(guest_devices::PL011)),
        uart_intid: None,
    }
}

/// How often the hypervisor's log names each device path as the target of a refused
/// access (`... refused: device /fw-cfg@9020000 at IPA ...`).
fn logged_devices(run: &Run) -> BTreeMap<String, usize> {
    let mut logged = BTreeMap::new();
    for line in run.hypervisor_lines() {
        if let Some((_, rest)) = line.split_once(&format!("{REFUSED}device ")) {
            let path = rest.split(' ').next().unwrap_or_default().to_string();
            *logged.entry(path).or_insert(0) += 1;
        }
    }
    logged
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
    let probes = requested_probes(&run);
    let console = &run.console;
    assert!(!probes.is_empty(), "no device probes requested\n{console}");
    // The board as the hypervisor saw it: QEMU's DTB for the same machine.
    let dtb = std::fs::read(qemu_tests::qemu_dtb("isolation-devices", "max", "2", "2G"))
        .expect("QEMU's DTB");
    let emulated: Vec<_> = emulated_devices(&run, &dtb).ranges().collect();
    let map = HostMemoryMap {
        devices: HostDevice::from_dtb(&dtb, &emulated).expect("QEMU's DTB"),
        ..HostMemoryMap::default()
    };
    // Every probe is a device's, none is in a frame the guest has emulated.
    let mut probed: BTreeMap<String, usize> = BTreeMap::new();
    for &probe in &probes {
        assert!(
            !emulated.iter().any(|frame| frame.contains(probe)),
            "{probe:#x} is in one of the guest's emulated frames {emulated:x?}"
        );
        match map.classify(probe) {
            ForeignTarget::Device(hit) => *probed.entry(hit.path.to_string()).or_insert(0) += 1,
            other => panic!("{probe:#x} is no device's window: {other}"),
        }
    }
    // Every window of the board that is not wholly emulated has a probe.
    for device in &map.devices {
        for window in &device.windows {
            let emulated_whole = emulated.iter().any(|frame| frame.contains_range(window));
            assert!(
                emulated_whole || probes.iter().any(|&p| window.contains(p)),
                "{} [{:#x}, {:#x}) was not probed",
                device.path,
                window.base,
                window.end()
            );
        }
    }
    // The hypervisor named each probed device exactly once, and nothing else as a device.
    let logged = logged_devices(&run);
    let once: BTreeMap<String, usize> = probed.keys().map(|path| (path.clone(), 1)).collect();
    assert_eq!(logged, once, "devices logged vs probed\n{console}");
    // Each probe is a read and a write, each counted as a device access.
    assert_eq!(
        tally_count(&run, foreign_access::DEVICE),
        2 * probes.len() as u64,
        "device accesses\n{console}"
    );
    let refused: u64 = tally(&run).iter().map(|(_, c)| c).sum();
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
