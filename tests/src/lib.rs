//! Helpers for the QEMU tests: run `scripts/run.sh` and read what the hypervisor printed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use hyp_abi::console::guest_devices::{self, GuestDevices};
use hyp_abi::console::{Line, LineKind, OUTCOME_PREFIX, Outcome, facts, foreign_access};
use hypervisor::vm::emulated_devices::EmulatedDevices;
use hypervisor::vm::foreign_access::{ForeignTarget, HostDevice, HostMemoryMap};

/// The hypervisor's log line for a refused guest access, up to what it hit.
pub const REFUSED: &str = "guest access outside its memory refused: ";

/// What `scripts/run.sh --probe-devices` prints on standard error before each device
/// window: `run.sh: --probe-devices: PATH [BASE, END): ADDR ADDR` (or `: none (...)`).
const PROBE_DEVICES_PREFIX: &str = "run.sh: --probe-devices: ";

/// The repository root (the parent of this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The result of one `scripts/run.sh` invocation.
#[derive(Debug)]
pub struct Run {
    pub status: Option<i32>,
    /// The serial console, with `\r` removed.
    pub console: String,
    pub stderr: String,
}

impl Run {
    /// The hypervisor's machine-readable lines of `kind`, in console order.
    pub fn lines(&self, kind: LineKind) -> impl Iterator<Item = Line<'_>> {
        self.console
            .lines()
            .filter_map(move |line| Line::parse_as(line, kind))
    }

    /// The `key=value` pairs of every `hyp-facts:` line, line by line.
    pub fn facts(&self) -> Vec<Vec<(String, String)>> {
        self.lines(LineKind::Facts)
            .map(|line| {
                line.pairs()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            })
            .collect()
    }

    /// The value of `key` in the first facts line that has it (keys:
    /// `hyp_abi::console::facts`).
    pub fn fact(&self, key: &str) -> Option<String> {
        self.lines(LineKind::Facts)
            .find_map(|line| line.value(key))
            .map(str::to_owned)
    }

    /// Guest `number`'s console lines (1 for the first), without their `(gN) ` tag
    /// (the convention of `hypervisor/src/console/guest_output.rs`).
    pub fn guest_lines(&self, number: u16) -> impl Iterator<Item = &str> {
        let tag = format!("(g{number}) ");
        self.console
            .lines()
            .filter_map(move |line| line.strip_prefix(tag.as_str()))
    }

    /// The console lines that are not a guest's (those start with `(g`, which no
    /// hypervisor line does): the hypervisor's log and machine-readable lines.
    pub fn hypervisor_lines(&self) -> impl Iterator<Item = &str> {
        self.console.lines().filter(|line| !line.starts_with("(g"))
    }

    /// Whether guest `number` printed `line` exactly.
    pub fn guest_printed(&self, number: u16, line: &str) -> bool {
        self.guest_lines(number).any(|l| l == line)
    }

    /// The last `hyp-exit:` line as printed.
    pub fn outcome_line(&self) -> Option<&str> {
        self.console
            .lines()
            .rev()
            .find(|l| l.starts_with(OUTCOME_PREFIX))
    }

    /// The outcome the last `hyp-exit:` line states (`None` without one, or when it is
    /// malformed).
    pub fn outcome(&self) -> Option<Outcome<'_>> {
        self.outcome_line().and_then(Outcome::parse)
    }

    /// The `foreign-access:` tally the hypervisor prints at power-off, as (kind, count).
    pub fn foreign_access_tally(&self) -> Vec<(String, u64)> {
        let line = self
            .lines(LineKind::ForeignAccess)
            .next()
            .unwrap_or_else(|| panic!("no foreign-access tally\n{}", self.console));
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

    /// The count of `key` (`hyp_abi::console::foreign_access`) in the tally.
    pub fn foreign_access_count(&self, key: &str) -> u64 {
        let tally = self.foreign_access_tally();
        tally
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, c)| *c)
            .unwrap_or_else(|| panic!("no {key} in the tally {tally:?}"))
    }

    /// How often the hypervisor's log names each device path as the target of a refused
    /// access (`... refused: device /fw-cfg@9020000 at IPA ...`).
    pub fn refused_devices(&self) -> BTreeMap<String, usize> {
        let mut logged = BTreeMap::new();
        for line in self.hypervisor_lines() {
            if let Some((_, rest)) = line.split_once(&format!("{REFUSED}device ")) {
                let path = rest.split(' ').next().unwrap_or_default().to_string();
                *logged.entry(path).or_insert(0) += 1;
            }
        }
        logged
    }

    /// The addresses `scripts/run.sh --probe-devices` gave the guest, in order, from the
    /// windows it listed on standard error.
    pub fn listed_device_probes(&self) -> Vec<u64> {
        self.stderr
            .lines()
            .filter_map(|line| line.strip_prefix(PROBE_DEVICES_PREFIX))
            .filter_map(|rest| rest.split_once(" [")?.1.split_once("): "))
            .flat_map(|(_, probes)| {
                let probes = if probes.starts_with("none") {
                    ""
                } else {
                    probes
                };
                probes.split_whitespace().map(|addr| {
                    addr.strip_prefix("0x")
                        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                        .unwrap_or_else(|| panic!("bad probe address {addr:?} from run.sh"))
                })
            })
            .collect()
    }

    /// Panics with the console attached, so a failing test shows what the guest saw.
    pub fn assert_success(&self) {
        assert_eq!(
            self.status,
            Some(0),
            "run failed\n--- console ---\n{}\n--- stderr ---\n{}",
            self.console,
            self.stderr
        );
    }
}

/// Runs `scripts/run.sh` with `args`, its console logged to a fresh file.
pub fn run(name: &str, args: &[&str]) -> Run {
    let root = repo_root();
    let log = root
        .join("target")
        .join("qemu-tests")
        .join(format!("{name}.log"));
    if let Some(dir) = log.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // --log goes first: everything after a `--` in `args` belongs to QEMU.
    let output = Command::new(root.join("scripts/run.sh"))
        .arg("--log")
        .arg(&log)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot start scripts/run.sh: {e}"));
    let console = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .replace('\r', "");
    Run {
        status: output.status.code(),
        console,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// QEMU's own DTB for the machine `scripts/run.sh` boots with `-cpu cpu -smp smp -m mem`
/// (up to 16G: larger machines take another memory backend), written to
/// `target/qemu-tests/{name}.dtb`; its path.
pub fn qemu_dtb(name: &str, cpu: &str, smp: &str, mem: &str) -> PathBuf {
    let dir = repo_root().join("target").join("qemu-tests");
    std::fs::create_dir_all(&dir).expect("target dir");
    let dtb = dir.join(format!("{name}.dtb"));
    let status = Command::new("qemu-system-aarch64")
        .args(["-machine"])
        .arg(format!(
            "virt,virtualization=on,gic-version=3,dumpdtb={}",
            dtb.display()
        ))
        .args([
            "-cpu",
            cpu,
            "-smp",
            smp,
            "-m",
            mem,
            "-nographic",
            "-nic",
            "none",
        ])
        .status()
        .expect("run qemu-system-aarch64");
    assert!(status.success(), "dumpdtb failed");
    dtb
}

/// QEMU's own DTB for the default machine (`-cpu max -smp 2 -m 2G`), as DTS text, and
/// the folder to write variants to.
pub fn qemu_dts(name: &str) -> (PathBuf, String) {
    let dtb = qemu_dtb(&format!("{name}-orig"), "max", "2", "2G");
    let dir = dtb.parent().map(Path::to_path_buf).unwrap_or_default();
    let dts = Command::new("dtc")
        .args(["-q", "-I", "dtb", "-O", "dts"])
        .arg(&dtb)
        .output()
        .expect("run dtc");
    assert!(dts.status.success(), "dtc failed");
    (dir, String::from_utf8_lossy(&dts.stdout).into_owned())
}

pub fn compile_dts(dir: &Path, name: &str, dts: &str) -> PathBuf {
    let source = dir.join(format!("{name}.dts"));
    let out = dir.join(format!("{name}.dtb"));
    std::fs::write(&source, dts).expect("write dts");
    let status = Command::new("dtc")
        .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
        .arg(&out)
        .arg(&source)
        .status()
        .expect("dtc");
    assert!(status.success(), "dtc could not compile {name}");
    out
}

/// The guest's emulated devices, from what the hypervisor printed (its `guest-devices:`
/// emulated list and vCPU count) and the GIC's redistributor region in the host DT
/// `dtb` (the GICv3 binding's second `reg` entry).
pub fn emulated_devices(run: &Run, dtb: &[u8]) -> EmulatedDevices {
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

/// Checks a run whose guest read and wrote each of `probes` (the device probes of
/// `scripts/run.sh --probe-devices`) once, against the board's own DTB `dtb`: every
/// probe is in a device window and in none of the guest's emulated frames; every window
/// not wholly emulated has a probe; the hypervisor named each probed device exactly once
/// (and nothing else as a device) and counted 2 device accesses per probe. Returns how
/// many probes each device path got.
pub fn assert_device_probes_refused(
    run: &Run,
    dtb: &[u8],
    probes: &[u64],
) -> BTreeMap<String, usize> {
    let console = &run.console;
    assert!(!probes.is_empty(), "no device probes\n{console}");
    let emulated: Vec<_> = emulated_devices(run, dtb).ranges().collect();
    let map = HostMemoryMap {
        devices: HostDevice::from_dtb(dtb, &emulated).expect("QEMU's DTB"),
        ..HostMemoryMap::default()
    };
    // Every probe is a device's, none is in a frame the guest has emulated.
    let mut probed: BTreeMap<String, usize> = BTreeMap::new();
    for &probe in probes {
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
    let once: BTreeMap<String, usize> = probed.keys().map(|path| (path.clone(), 1)).collect();
    assert_eq!(
        run.refused_devices(),
        once,
        "devices logged vs probed\n{console}"
    );
    // Each probe is a read and a write, each counted as a device access.
    assert_eq!(
        run.foreign_access_count(foreign_access::DEVICE),
        2 * probes.len() as u64,
        "device accesses\n{console}"
    );
    probed
}
