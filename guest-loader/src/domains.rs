//! Several guests described the way Xen's dom0less does (`docs/misc/arm/device-tree/
//! booting.txt` in Xen): each `/chosen/<name>` node with `compatible = "xen,domain"` is
//! one guest, with
//! - `#address-cells` / `#size-cells` (required explicitly, 1 or 2 each) for its
//!   modules' `reg`;
//! - `memory`: the guest's RAM in KiB, a 64-bit value in two cells (non-zero, whole
//!   4 KiB pages);
//! - `cpus`: its vCPU count, one cell (non-zero);
//! - `vpl011`: an empty property asking for a virtual PL011;
//! - children `multiboot,module` with `multiboot,kernel` / `multiboot,ramdisk` /
//!   `multiboot,device-tree` (a passthrough fragment), each with one `reg` range; the
//!   kernel's `bootargs` is the guest's command line. Untyped modules follow Xen's guess
//!   within the domain (as [`crate::modules`]): first the kernel, then the ramdisk.
//!
//! Also kept: `direct-map` (guest RAM at IPA = PA), `xen,enhanced` (its string, not acted
//! on: we have no Xenstore), `xen,static-mem` (host ranges backing the guest RAM, read
//! with `#xen,static-mem-address-cells` / `-size-cells`, which must add up to `memory`).
//! Ignored with no effect: `nr_spis`, `max_grant_frames`, `max_maptrack_frames`,
//! `domain-cpupool`, `capabilities`, `passthrough`, `llc-colors`, `sve`,
//! `xen,uefi-binary`, `multiboot,device-tree`'s content (only its range is checked).
//!
//! Static partitioning: every vCPU is pinned to its own physical CPU, so the domains'
//! `cpus` must add up to at most the host's CPUs. Every refusal names the node.
//! Nothing here panics on DT data.

mod kernel;
#[cfg(test)]
mod tests;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use dtoolkit::fdt::FdtNode;
use dtoolkit::{Node, Property};
use platform::info::PhysRange;

pub use kernel::{KernelExtentError, check_kernel_extent, pe_file_extent};

use crate::modules::RangeDisplay;

const KIB: u64 = 1024;

/// What `/chosen` describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomainsPlan {
    /// No `xen,domain` node: one guest from bare `multiboot,module` nodes, as before
    /// (handled by [`crate::plan`]).
    Legacy,
    /// The dom0less guests, in DT order.
    Domains(Vec<DomainSpec>),
}

/// One guest of a dom0less description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainSpec {
    /// The node name, e.g. `domU1`: the guest's name.
    pub name: String,
    /// `/chosen/domU1`.
    pub path: String,
    pub memory_bytes: u64,
    pub vcpus: u32,
    pub vpl011: bool,
    pub kernel: PhysRange,
    pub ramdisk: Option<PhysRange>,
    /// A `multiboot,device-tree` module: the passthrough fragment.
    pub device_tree: Option<PhysRange>,
    /// The kernel module's `bootargs`.
    pub bootargs: Option<String>,
    /// `direct-map`: guest RAM at IPA = PA.
    pub direct_map: bool,
    /// `xen,enhanced`'s value (`"enabled"` for an empty property); informational.
    pub enhanced: Option<String>,
    /// `xen,static-mem`: host ranges that back the guest RAM (empty: anywhere).
    pub static_mem: Vec<PhysRange>,
}

/// Why a dom0less description is refused. `path` is the node at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomainsError {
    /// The blob is not a valid DTB.
    Dtb {
        detail: String,
    },
    /// `#address-cells` / `#size-cells` missing on a domain node or not 1 or 2.
    Cells {
        path: String,
        property: &'static str,
        found: Option<u32>,
    },
    /// A required property is absent.
    Missing {
        path: String,
        property: &'static str,
    },
    /// A property whose bytes do not have the expected shape.
    Malformed {
        path: String,
        property: &'static str,
        expected: &'static str,
        len: usize,
    },
    /// `memory` is 0, not whole 4 KiB pages, or overflows in bytes.
    BadMemory {
        path: String,
        kib: u64,
    },
    /// `cpus = <0>`.
    NoCpus {
        path: String,
    },
    /// The domains up to and including `path` want more vCPUs than the host has CPUs.
    TooManyCpus {
        path: String,
        total: u64,
        host_cpus: usize,
    },
    /// The domains up to and including `path` want more RAM than the host has.
    MemoryDoesNotFit {
        path: String,
        total_bytes: u64,
        host_bytes: u64,
    },
    /// `xen,static-mem` does not add up to `memory`.
    StaticMemMismatch {
        path: String,
        static_bytes: u64,
        memory_bytes: u64,
    },
    NoKernel {
        path: String,
    },
    /// A domain has two modules of one role (`module` is the second).
    TwoModules {
        module: String,
        role: &'static str,
        first: String,
    },
    /// A module (or static-memory range) is not inside one host RAM range.
    OutsideRam {
        path: String,
        range: PhysRange,
    },
    /// Two modules or static-memory ranges share bytes (within or across domains).
    Overlap {
        path: String,
        range: PhysRange,
        other: String,
        other_range: PhysRange,
    },
    /// Two domain nodes with one name.
    DuplicateName {
        path: String,
    },
    /// Bare `multiboot,module` nodes under `/chosen` next to `xen,domain` nodes: they
    /// would belong to a dom0, which this hypervisor has not.
    StrayModule {
        path: String,
    },
}

impl fmt::Display for DomainsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dtb { detail } => write!(f, "dom0less description: bad DTB: {detail}"),
            Self::Cells {
                path,
                property,
                found: None,
            } => write!(
                f,
                "{path}: no {property} (a xen,domain node must state it, 1 or 2)"
            ),
            Self::Cells {
                path,
                property,
                found: Some(n),
            } => {
                write!(f, "{path}: {property} = <{n}>, must be 1 or 2")
            }
            Self::Missing { path, property } => write!(f, "{path}: no {property} property"),
            Self::Malformed {
                path,
                property,
                expected,
                len,
            } => write!(
                f,
                "{path}: malformed {property} ({len} bytes, expected {expected})"
            ),
            Self::BadMemory { path, kib } => write!(
                f,
                "{path}: memory = {kib} KiB, must be non-zero whole 4 KiB pages"
            ),
            Self::NoCpus { path } => write!(f, "{path}: cpus = <0>"),
            Self::TooManyCpus {
                path,
                total,
                host_cpus,
            } => write!(
                f,
                "{path}: the domains want {total} vCPUs so far, the host has {host_cpus} CPUs \
                 (each vCPU is pinned to its own CPU)"
            ),
            Self::MemoryDoesNotFit {
                path,
                total_bytes,
                host_bytes,
            } => write!(
                f,
                "{path}: the domains want {total_bytes:#x} bytes of RAM so far, the host has \
                 {host_bytes:#x}"
            ),
            Self::StaticMemMismatch {
                path,
                static_bytes,
                memory_bytes,
            } => write!(
                f,
                "{path}: xen,static-mem covers {static_bytes:#x} bytes, memory says \
                 {memory_bytes:#x}"
            ),
            Self::NoKernel { path } => write!(f, "{path}: no kernel module"),
            Self::TwoModules {
                module,
                role,
                first,
            } => {
                write!(f, "{module}: a second {role} module (the first is {first})")
            }
            Self::OutsideRam { path, range } => {
                write!(f, "{path}: {} is not inside host RAM", RangeDisplay(*range))
            }
            Self::Overlap {
                path,
                range,
                other,
                other_range,
            } => write!(
                f,
                "{path}: {} overlaps {other} {}",
                RangeDisplay(*range),
                RangeDisplay(*other_range)
            ),
            Self::DuplicateName { path } => write!(f, "{path}: two domains with this name"),
            Self::StrayModule { path } => write!(
                f,
                "{path}: a multiboot module directly under /chosen next to xen,domain nodes"
            ),
        }
    }
}

/// Reads the dom0less guests out of `dtb` and checks them against the host.
///
/// # Errors
///
/// A [`DomainsError`] naming the node at fault; see the module docs.
pub fn parse_domains(
    dtb: &[u8],
    host_cpus: usize,
    host_ram: &[PhysRange],
) -> Result<DomainsPlan, DomainsError> {
    let fdt = crate::dtb::open(dtb).map_err(|error| DomainsError::Dtb {
        detail: alloc::format!("{error:?}"),
    })?;
    let root = fdt.root();
    let Some(chosen) = root.children().find(|c| c.name() == "chosen") else {
        return Ok(DomainsPlan::Legacy);
    };
    let mut domains: Vec<DomainSpec> = Vec::new();
    let mut stray: Option<String> = None;
    for child in chosen.children() {
        let path = alloc::format!("/chosen/{}", child.name());
        if has_compatible(&child, "xen,domain") {
            if domains.iter().any(|d| d.name == child.name()) {
                return Err(DomainsError::DuplicateName { path });
            }
            domains.push(parse_domain(&child, path)?);
        } else if stray.is_none() && has_compatible(&child, "multiboot,module") {
            stray = Some(path);
        }
    }
    if domains.is_empty() {
        return Ok(DomainsPlan::Legacy);
    }
    if let Some(path) = stray {
        return Err(DomainsError::StrayModule { path });
    }
    check_host_fit(&domains, host_cpus, host_ram)?;
    Ok(DomainsPlan::Domains(domains))
}

fn check_host_fit(
    domains: &[DomainSpec],
    host_cpus: usize,
    host_ram: &[PhysRange],
) -> Result<(), DomainsError> {
    let host_bytes = host_ram
        .iter()
        .fold(0u64, |sum, r| sum.saturating_add(r.size));
    let (mut cpus, mut bytes) = (0u64, 0u64);
    for domain in domains {
        cpus = cpus.saturating_add(u64::from(domain.vcpus));
        if cpus > host_cpus as u64 {
            return Err(DomainsError::TooManyCpus {
                path: domain.path.clone(),
                total: cpus,
                host_cpus,
            });
        }
        bytes = bytes.saturating_add(domain.memory_bytes);
        if bytes > host_bytes {
            return Err(DomainsError::MemoryDoesNotFit {
                path: domain.path.clone(),
                total_bytes: bytes,
                host_bytes,
            });
        }
    }
    // Every module and static-memory range, named by its node.
    let mut ranges: Vec<(String, PhysRange)> = Vec::new();
    for d in domains {
        let module = |what: &str| alloc::format!("{} ({what})", d.path);
        ranges.push((module("kernel"), d.kernel));
        ranges.extend(d.ramdisk.map(|r| (module("ramdisk"), r)));
        ranges.extend(d.device_tree.map(|r| (module("device-tree"), r)));
        ranges.extend(d.static_mem.iter().map(|r| (module("xen,static-mem"), *r)));
    }
    for (path, range) in &ranges {
        if !host_ram.iter().any(|ram| ram.contains_range(range)) {
            return Err(DomainsError::OutsideRam {
                path: path.clone(),
                range: *range,
            });
        }
    }
    // Sorted by base, any overlap shows against the range reaching furthest so far.
    ranges.sort_by_key(|(_, r)| (r.base, r.size));
    let mut furthest: Option<&(String, PhysRange)> = None;
    for entry in &ranges {
        if let Some(prev) = furthest
            && prev.1.overlaps(&entry.1)
        {
            return Err(DomainsError::Overlap {
                path: entry.0.clone(),
                range: entry.1,
                other: prev.0.clone(),
                other_range: prev.1,
            });
        }
        if furthest.is_none_or(|prev| entry.1.end() > prev.1.end()) {
            furthest = Some(entry);
        }
    }
    Ok(())
}

fn parse_domain(node: &FdtNode<'_>, path: String) -> Result<DomainSpec, DomainsError> {
    let address_cells = cells(node, &path, "#address-cells")?;
    let size_cells = cells(node, &path, "#size-cells")?;

    let memory = required(node, &path, "memory")?;
    let kib = match <[u8; 8]>::try_from(memory) {
        Ok(bytes) => u64::from_be_bytes(bytes),
        Err(_) => return Err(malformed(&path, "memory", "two cells", memory.len())),
    };
    let memory_bytes = kib
        .checked_mul(KIB)
        .filter(|_| kib != 0 && kib.is_multiple_of(4))
        .ok_or_else(|| DomainsError::BadMemory {
            path: path.clone(),
            kib,
        })?;

    let cpus = required(node, &path, "cpus")?;
    let vcpus = match <[u8; 4]>::try_from(cpus) {
        Ok(bytes) => u32::from_be_bytes(bytes),
        Err(_) => return Err(malformed(&path, "cpus", "one cell", cpus.len())),
    };
    if vcpus == 0 {
        return Err(DomainsError::NoCpus { path });
    }

    let enhanced = match prop(node, "xen,enhanced") {
        None => None,
        Some([]) => Some(String::from("enabled")),
        Some(p) => Some(string(p, &path, "xen,enhanced")?.to_string()),
    };

    let static_mem = match prop(node, "xen,static-mem") {
        None => Vec::new(),
        Some(p) => {
            let ac = cells(node, &path, "#xen,static-mem-address-cells")?;
            let sc = cells(node, &path, "#xen,static-mem-size-cells")?;
            let ranges = reg_ranges(p, ac, sc, &path, "xen,static-mem")?;
            let total = ranges.iter().fold(0u64, |s, r| s.saturating_add(r.size));
            if total != memory_bytes {
                return Err(DomainsError::StaticMemMismatch {
                    path,
                    static_bytes: total,
                    memory_bytes,
                });
            }
            ranges
        }
    };

    let mut spec = DomainSpec {
        name: node.name().to_string(),
        path: path.clone(),
        memory_bytes,
        vcpus,
        vpl011: node.property("vpl011").is_some(),
        kernel: PhysRange { base: 0, size: 1 },
        ramdisk: None,
        device_tree: None,
        bootargs: None,
        direct_map: node.property("direct-map").is_some(),
        enhanced,
        static_mem,
    };
    let (mut kernel, mut ramdisk, mut device_tree) = (None, None, None);
    let mut untyped = 0usize;
    for child in node.children() {
        if !has_compatible(&child, "multiboot,module") {
            continue;
        }
        let module_path = alloc::format!("{path}/{}", child.name());
        let role = if has_compatible(&child, "multiboot,kernel") {
            Some("kernel")
        } else if has_compatible(&child, "multiboot,ramdisk") {
            Some("ramdisk")
        } else if has_compatible(&child, "multiboot,device-tree") {
            Some("device-tree")
        } else if has_compatible(&child, "xen,xsm-policy") {
            None
        } else {
            untyped += 1;
            match untyped {
                1 => Some("kernel"),
                2 => Some("ramdisk"),
                _ => None,
            }
        };
        let Some(role) = role else { continue };
        let reg = required(&child, &module_path, "reg")?;
        let range = match reg_ranges(reg, address_cells, size_cells, &module_path, "reg")?[..] {
            [range] => range,
            _ => return Err(malformed(&module_path, "reg", "one range", reg.len())),
        };
        let slot = match role {
            "kernel" => &mut kernel,
            "ramdisk" => &mut ramdisk,
            _ => &mut device_tree,
        };
        if let Some((first, _)) = slot {
            return Err(DomainsError::TwoModules {
                module: module_path,
                role,
                first: core::mem::take(first),
            });
        }
        if role == "kernel" {
            spec.bootargs = match prop(&child, "bootargs") {
                None => None,
                Some(p) => Some(string(p, &module_path, "bootargs")?.to_string()),
            };
        }
        *slot = Some((module_path, range));
    }
    spec.kernel = kernel.ok_or(DomainsError::NoKernel { path })?.1;
    spec.ramdisk = ramdisk.map(|(_, r)| r);
    spec.device_tree = device_tree.map(|(_, r)| r);
    Ok(spec)
}

/// A property's bytes, borrowed from the blob.
fn prop<'a>(node: &FdtNode<'a>, name: &str) -> Option<&'a [u8]> {
    // Converting to `&[u8]` cannot fail.
    node.property(name)
        .map(|p| p.value_as::<&'a [u8]>().unwrap_or(&[]))
}

fn has_compatible(node: &FdtNode<'_>, wanted: &str) -> bool {
    prop(node, "compatible")
        .is_some_and(|p| p.split(|&b| b == 0).any(|entry| entry == wanted.as_bytes()))
}

fn required<'a>(
    node: &FdtNode<'a>,
    path: &str,
    property: &'static str,
) -> Result<&'a [u8], DomainsError> {
    prop(node, property).ok_or_else(|| DomainsError::Missing {
        path: path.to_string(),
        property,
    })
}

fn malformed(
    path: &str,
    property: &'static str,
    expected: &'static str,
    len: usize,
) -> DomainsError {
    DomainsError::Malformed {
        path: path.to_string(),
        property,
        expected,
        len,
    }
}

/// A `#...-cells` property that must be present and be 1 or 2.
fn cells(node: &FdtNode<'_>, path: &str, property: &'static str) -> Result<u32, DomainsError> {
    let Some(p) = prop(node, property) else {
        return Err(DomainsError::Cells {
            path: path.to_string(),
            property,
            found: None,
        });
    };
    let value = <[u8; 4]>::try_from(p)
        .map(u32::from_be_bytes)
        .map_err(|_| malformed(path, property, "one cell", p.len()))?;
    if matches!(value, 1 | 2) {
        Ok(value)
    } else {
        Err(DomainsError::Cells {
            path: path.to_string(),
            property,
            found: Some(value),
        })
    }
}

/// A NUL-terminated UTF-8 string property.
fn string<'a>(
    bytes: &'a [u8],
    path: &str,
    property: &'static str,
) -> Result<&'a str, DomainsError> {
    bytes
        .strip_suffix(&[0])
        .filter(|s| !s.contains(&0))
        .and_then(|s| core::str::from_utf8(s).ok())
        .ok_or_else(|| malformed(path, property, "a NUL-terminated UTF-8 string", bytes.len()))
}

/// `(address, size)` pairs of `address_cells` + `size_cells` cells (each 1 or 2); at least
/// one, none empty or overflowing.
fn reg_ranges(
    bytes: &[u8],
    address_cells: u32,
    size_cells: u32,
    path: &str,
    property: &'static str,
) -> Result<Vec<PhysRange>, DomainsError> {
    let bad = || {
        malformed(
            path,
            property,
            "non-empty (address, size) pairs",
            bytes.len(),
        )
    };
    let (ac, sc) = (address_cells as usize * 4, size_cells as usize * 4);
    let entry = ac + sc;
    if bytes.is_empty() || !bytes.len().is_multiple_of(entry) {
        return Err(bad());
    }
    bytes
        .chunks_exact(entry)
        .map(|chunk| {
            let (address, size) = chunk.split_at(ac);
            PhysRange::new(be_number(address), be_number(size)).ok_or_else(bad)
        })
        .collect()
}

/// A big-endian number of 4 or 8 bytes.
fn be_number(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b))
}
