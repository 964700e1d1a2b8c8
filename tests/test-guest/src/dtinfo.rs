//! What the guest needs from its device tree: RAM, what in RAM is taken, the CPUs, the
//! console, the PSCI conduit and the interrupt controller (`gic_dt`). Missing or
//! malformed parts leave fields empty (and a note in `problems`); parsing never fails as
//! a whole and never panics.

use core::fmt;

use crate::fdt::{Fdt, Node, read_cells};
use crate::fixed::List;
use crate::gic_dt::GicInfo;
use crate::layout::{MAX_PROBE_ARGS, ProbeArgError, Range, parse_probe_args};

pub const MAX_RAM_RANGES: usize = 16;
pub const MAX_RESERVED: usize = 32;
pub const MAX_CPUS: usize = 8;

/// MPIDR affinity fields Aff3 [39:32] and Aff2..Aff0 [23:0].
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Conduit {
    #[default]
    Hvc,
    Smc,
}

impl fmt::Display for Conduit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Hvc => "HVC",
            Self::Smc => "SMC",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Console {
    /// A PL011 at this address: the one `/chosen/stdout-path` names, or failing that
    /// the first enabled `arm,pl011` node.
    Pl011 { base: u64, from_stdout_path: bool },
    #[default]
    None,
}

/// Things that were wrong or missing, reported once the console works.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Problem {
    #[default]
    NoMemory,
    TooManyRamRanges,
    TooManyReservations,
    NoCpus,
    TooManyCpus,
    NoPsci,
    StdoutPathUnusable,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoMemory => "no usable memory node",
            Self::TooManyRamRanges => "more RAM ranges than the guest tracks; the rest ignored",
            Self::TooManyReservations => {
                "more reserved ranges than the guest tracks; the rest ignored"
            }
            Self::NoCpus => "no cpu nodes under /cpus",
            Self::TooManyCpus => "more cpu nodes than the guest tracks; the rest ignored",
            Self::NoPsci => "no arm,psci node; assuming PSCI over HVC",
            Self::StdoutPathUnusable => {
                "/chosen/stdout-path names no usable PL011; using the first arm,pl011 node"
            }
        })
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct GuestInfo {
    /// Memory-node ranges, sorted, with overlapping and touching ranges merged.
    pub ram: List<Range, MAX_RAM_RANGES>,
    /// Ranges of RAM that are not free: /memreserve/ entries, /reserved-memory children
    /// and the initrd.
    pub reserved: List<Range, MAX_RESERVED>,
    /// MPIDR affinity of each cpu node, in DT order.
    pub cpus: List<u64, MAX_CPUS>,
    pub console: Console,
    pub conduit: Conduit,
    /// Addresses `isolation_probe=` in `/chosen/bootargs` names (layout.rs).
    pub probe_args: List<u64, MAX_PROBE_ARGS>,
    /// A malformed `isolation_probe=` (then `probe_args` is empty).
    pub probe_args_error: Option<ProbeArgError>,
    pub problems: List<Problem, 8>,
    /// The GICv3's frames and the INTIDs the vGIC tests use.
    pub gic: GicInfo,
    /// The PCI host bridge (`pci-host-ecam-generic`) the hypervisor passed through.
    pub pci: Option<crate::pci::PciHost>,
    /// Addresses `dma_probe=` in `/chosen/bootargs` names (pci.rs).
    pub dma_probes: List<u64, { crate::pci::MAX_DMA_PROBES }>,
}

impl GuestInfo {
    pub fn parse(fdt: &Fdt<'_>) -> Self {
        let mut info = Self::default();
        let mut psci_found = false;
        let mut in_cpus = false;
        let mut in_reserved_memory = false;
        let mut first_pl011 = None;
        for node in fdt.nodes() {
            if node.depth == 1 {
                in_cpus = node.name == b"cpus";
                in_reserved_memory = node.name_without_address() == b"reserved-memory";
                if is_memory_node(&node) && node.is_enabled() {
                    for (base, size) in node.reg() {
                        if size > 0 && !info.ram.push(Range { base, size }) {
                            info.problem(Problem::TooManyRamRanges);
                        }
                    }
                }
            }
            if node.depth == 2 && in_cpus && is_cpu_node(&node) {
                let mpidr = node
                    .property(b"reg")
                    .and_then(|reg| read_cells(reg, node.parent_cells.address));
                if let Some(mpidr) = mpidr
                    && !info.cpus.push(mpidr & MPIDR_AFFINITY_MASK)
                {
                    info.problem(Problem::TooManyCpus);
                }
            }
            if node.depth == 2 && in_reserved_memory {
                for (base, size) in node.reg() {
                    info.reserve(base, size);
                }
            }
            if node
                .compatible_strings()
                .any(|c| c.starts_with(b"arm,psci"))
            {
                psci_found = true;
                if node.str_property(b"method") == Some(b"smc") {
                    info.conduit = Conduit::Smc;
                }
            }
            if first_pl011.is_none() && node.is_compatible(b"arm,pl011") && node.is_enabled() {
                first_pl011 = node.reg().next().map(|(base, _)| base);
            }
        }
        for (base, size) in fdt.reservations() {
            info.reserve(base, size);
        }
        if let Some(chosen) = fdt.find(b"/chosen") {
            let start = chosen.property(b"linux,initrd-start").and_then(read_number);
            let end = chosen.property(b"linux,initrd-end").and_then(read_number);
            if let (Some(start), Some(end)) = (start, end)
                && end > start
            {
                info.reserve(start, end - start);
            }
            if let Some(bootargs) = chosen.str_property(b"bootargs") {
                info.dma_probes = crate::pci::parse_dma_probes(bootargs);
                match parse_probe_args(bootargs) {
                    Ok(addresses) => info.probe_args = addresses,
                    Err(error) => info.probe_args_error = Some(error),
                }
            }
        }
        merge(&mut info.ram);
        if info.ram.is_empty() {
            info.problem(Problem::NoMemory);
        }
        if info.cpus.is_empty() {
            info.problem(Problem::NoCpus);
        }
        if !psci_found {
            info.problem(Problem::NoPsci);
        }
        info.console = match stdout_pl011(fdt) {
            Some(base) => Console::Pl011 {
                base,
                from_stdout_path: true,
            },
            None => {
                if fdt
                    .find(b"/chosen")
                    .is_some_and(|c| stdout_path(&c).is_some())
                {
                    info.problem(Problem::StdoutPathUnusable);
                }
                match first_pl011 {
                    Some(base) => Console::Pl011 {
                        base,
                        from_stdout_path: false,
                    },
                    None => Console::None,
                }
            }
        };
        info.gic = GicInfo::parse(fdt, info.console_base());
        info.pci = crate::pci::PciHost::parse(fdt);
        info
    }

    fn reserve(&mut self, base: u64, size: u64) {
        if size > 0 && !self.reserved.push(Range { base, size }) {
            self.problem(Problem::TooManyReservations);
        }
    }

    fn problem(&mut self, problem: Problem) {
        if !self.problems.iter().any(|p| p == problem) {
            let _ = self.problems.push(problem);
        }
    }

    pub fn console_base(&self) -> Option<u64> {
        match self.console {
            Console::Pl011 { base, .. } => Some(base),
            Console::None => None,
        }
    }
}

fn is_memory_node(node: &Node<'_>) -> bool {
    node.name_without_address() == b"memory" || node.str_property(b"device_type") == Some(b"memory")
}

fn is_cpu_node(node: &Node<'_>) -> bool {
    node.str_property(b"device_type") == Some(b"cpu")
        || (node.name_without_address() == b"cpu" && node.property(b"reg").is_some())
}

/// A 32- or 64-bit big-endian number property (the initrd bounds come in both sizes).
fn read_number(value: &[u8]) -> Option<u64> {
    match value.len() {
        4 => read_cells(value, 1),
        8 => read_cells(value, 2),
        _ => None,
    }
}

fn stdout_path<'a>(chosen: &Node<'a>) -> Option<&'a [u8]> {
    chosen
        .str_property(b"stdout-path")
        .or_else(|| chosen.str_property(b"linux,stdout-path"))
}

/// The PL011 `/chosen/stdout-path` names (directly or through `/aliases`), ignoring the
/// `:options` suffix. Only nodes whose parent maps addresses one to one are expected
/// (QEMU's UART is a child of the root); `ranges` are not applied.
fn stdout_pl011(fdt: &Fdt<'_>) -> Option<u64> {
    let chosen = fdt.find(b"/chosen")?;
    let path = stdout_path(&chosen)?;
    let path = path.split(|&b| b == b':').next()?;
    let node = if path.first() == Some(&b'/') {
        fdt.find(path)?
    } else {
        let alias = fdt.find(b"/aliases")?.str_property(path)?;
        fdt.find(alias)?
    };
    if !node.is_compatible(b"arm,pl011") {
        return None;
    }
    node.reg().next().map(|(base, _)| base)
}

/// Sorts `ranges` and merges overlapping or touching ones.
pub fn merge<const N: usize>(ranges: &mut List<Range, N>) {
    ranges.sort_by_key(|r| r.base);
    let mut i: usize = 1;
    while let (Some(prev), Some(cur)) = (ranges.get(i.wrapping_sub(1)), ranges.get(i)) {
        let prev_end = prev.end_saturating();
        if cur.base <= prev_end {
            let end = prev_end.max(cur.end_saturating());
            ranges.set(
                i - 1,
                Range {
                    base: prev.base,
                    size: end - prev.base,
                },
            );
            let _ = ranges.remove(i);
        } else {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdt::builder::{Builder, Value};

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn ranges<const N: usize>(list: &List<Range, N>) -> Vec<(u64, u64)> {
        list.iter().map(|r| (r.base, r.size)).collect()
    }

    #[test]
    fn qemu_virt_two_cpus() {
        let blob = fixture("qemu-2g-smp2-max.dtb");
        let info = GuestInfo::parse(&Fdt::new(&blob).unwrap());
        assert_eq!(ranges(&info.ram), [(0x4000_0000, 0x8000_0000)]);
        assert_eq!(info.cpus.iter().collect::<Vec<_>>(), [0, 1]);
        assert_eq!(
            info.console,
            Console::Pl011 {
                base: 0x0900_0000,
                from_stdout_path: true
            }
        );
        // QEMU's own DT (virtualization=on) says SMC; the guest's says HVC.
        assert_eq!(info.conduit, Conduit::Smc);
        // The GIC is read too (gic_dt.rs has the details), with the console's SPI.
        assert_eq!(info.gic.ranges().count(), 2);
        assert_eq!(info.gic.console_intid, Some(33));
        assert!(info.problems.is_empty(), "{:?}", info.problems);
    }

    #[test]
    fn qemu_two_banks_and_alias_stdout() {
        let blob = fixture("hand-two-banks.dtb");
        let info = GuestInfo::parse(&Fdt::new(&blob).unwrap());
        assert_eq!(
            ranges(&info.ram),
            [
                (0x4000_0000, 0x2000_0000),
                (0x7000_0000, 0x1000_0000),
                (0x1_0000_0000, 0x4000_0000)
            ]
        );
        let blob = fixture("hand-reserved.dtb");
        let info = GuestInfo::parse(&Fdt::new(&blob).unwrap());
        assert_eq!(info.console_base(), Some(0x0900_0000));
        assert!(!info.reserved.is_empty());
    }

    #[test]
    fn guest_like_tree() {
        // What the hypervisor hands its guest: one memory node per guest RAM range,
        // PSCI over HVC, a memreserve and an initrd.
        let blob = Builder::new()
            .reserve(0x4400_0000, 0x1000)
            .begin("")
            .prop("#address-cells", Value::U32(2))
            .prop("#size-cells", Value::U32(2))
            .begin("psci")
            .prop("compatible", Value::Str("arm,psci-1.0\0arm,psci-0.2"))
            .prop("method", Value::Str("hvc"))
            .end()
            .begin("memory@100000000")
            .prop("device_type", Value::Str("memory"))
            .prop("reg", Value::Cells(&[1, 0, 0, 0x4000_0000]))
            .end()
            .begin("memory@42000000")
            .prop("device_type", Value::Str("memory"))
            .prop("reg", Value::Cells(&[0, 0x4200_0000, 0, 0x3e00_0000]))
            .end()
            .begin("aliases")
            .prop("serial0", Value::Str("/pl011@9000000"))
            .end()
            .begin("chosen")
            .prop("stdout-path", Value::Str("serial0:115200n8"))
            .prop(
                "bootargs",
                Value::Str("quiet isolation_probe=0x13e000000,0x140000000"),
            )
            .prop("linux,initrd-start", Value::Cells(&[0, 0x4800_0000]))
            .prop("linux,initrd-end", Value::U32(0x4810_0000))
            .end()
            .begin("cpus")
            .prop("#address-cells", Value::U32(2))
            .prop("#size-cells", Value::U32(0))
            .begin("cpu@0")
            .prop("device_type", Value::Str("cpu"))
            .prop("reg", Value::Cells(&[0, 0]))
            .end()
            .begin("cpu@100")
            .prop("device_type", Value::Str("cpu"))
            .prop("reg", Value::Cells(&[0x1, 0x8000_0100]))
            .end()
            .begin("cpu-map")
            .end()
            .end()
            .begin("pl011@9000000")
            .prop("compatible", Value::Str("arm,pl011\0arm,primecell"))
            .prop("reg", Value::Cells(&[0, 0x0900_0000, 0, 0x1000]))
            .end()
            .end()
            .finish();
        let info = GuestInfo::parse(&Fdt::new(&blob).unwrap());
        assert_eq!(
            ranges(&info.ram),
            [(0x4200_0000, 0x3e00_0000), (0x1_0000_0000, 0x4000_0000)]
        );
        assert_eq!(
            ranges(&info.reserved),
            [(0x4400_0000, 0x1000), (0x4800_0000, 0x10_0000)]
        );
        assert_eq!(info.cpus.iter().collect::<Vec<_>>(), [0, 0x1_0000_0100]);
        assert_eq!(info.probe_args.as_slice(), [0x1_3e00_0000, 0x1_4000_0000]);
        assert_eq!(info.probe_args_error, None);
        assert_eq!(info.conduit, Conduit::Hvc);
        assert_eq!(
            info.console,
            Console::Pl011 {
                base: 0x0900_0000,
                from_stdout_path: true
            }
        );
        assert!(info.problems.is_empty(), "{:?}", info.problems);
    }

    #[test]
    fn missing_parts_are_problems_not_failures() {
        let blob = Builder::new()
            .begin("")
            .begin("chosen")
            .prop("stdout-path", Value::Str("/nowhere"))
            .end()
            .begin("uart@1000")
            .prop("compatible", Value::Str("arm,pl011"))
            .prop("reg", Value::Cells(&[0, 0x1000, 0x1000]))
            .end()
            .end()
            .finish();
        let info = GuestInfo::parse(&Fdt::new(&blob).unwrap());
        assert!(info.ram.is_empty());
        assert!(info.probe_args.is_empty() && info.probe_args_error.is_none());
        assert_eq!(
            info.console,
            Console::Pl011 {
                base: 0x1000,
                from_stdout_path: false
            }
        );
        let problems: Vec<_> = info.problems.iter().collect();
        assert_eq!(
            problems,
            [
                Problem::NoMemory,
                Problem::NoCpus,
                Problem::NoPsci,
                Problem::StdoutPathUnusable
            ]
        );
    }

    #[test]
    fn malformed_probe_option_is_kept_as_an_error() {
        let blob = Builder::new()
            .begin("")
            .begin("chosen")
            .prop("bootargs", Value::Str("isolation_probe=0x4,nope"))
            .end()
            .end()
            .finish();
        let info = GuestInfo::parse(&Fdt::new(&blob).unwrap());
        assert!(info.probe_args.is_empty());
        assert!(matches!(
            info.probe_args_error,
            Some(ProbeArgError::BadAddress(t)) if t.as_str() == "nope"
        ));
    }

    #[test]
    fn merge_sorts_and_joins() {
        let mut l: List<Range, 8> = List::new();
        for (base, size) in [
            (0x3000, 0x1000),
            (0x1000, 0x1000),
            (0x2000, 0x1000),
            (0x8000, 0x10),
        ] {
            l.push(Range { base, size });
        }
        merge(&mut l);
        assert_eq!(ranges(&l), [(0x1000, 0x3000), (0x8000, 0x10)]);
        let mut l: List<Range, 8> = List::new();
        l.push(Range {
            base: 0x1000,
            size: 0x10_0000,
        });
        l.push(Range {
            base: 0x2000,
            size: 0x1000,
        });
        merge(&mut l);
        assert_eq!(ranges(&l), [(0x1000, 0x10_0000)]);
    }
}
