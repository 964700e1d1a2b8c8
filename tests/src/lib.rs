//! Helpers for the QEMU tests: run `scripts/run.sh` and read what the hypervisor printed.

use std::path::{Path, PathBuf};
use std::process::Command;

use hyp_abi::console::{Line, LineKind, OUTCOME_PREFIX, Outcome};

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
