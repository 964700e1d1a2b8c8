//! Device tree (flattened, FDT) to [`PlatformInfo`], without heap and without panics.
//!
//! The blob comes from the loader and is untrusted. The `fdt` crate (0.1.5) panics on
//! many malformed blobs (slice indexing, `expect`, `assert`), mis-walks `FDT_NOP` tokens
//! and recurses without end on an alias that names itself, so:
//! - [`header`] validates the header with checked arithmetic ([`blob_size`]);
//! - [`structure`] walks the whole structure block, bounds-checking every token, name,
//!   property and string offset and limiting the depth, before `fdt` sees the blob;
//! - [`node`] uses only `fdt`'s node and property iteration, and decodes `reg` itself
//!   with the cells that apply (Xen's inheritance rule: QEMU's guest-loader modules
//!   under `/chosen` are 2/2, not the DT spec default 2/1 that `fdt` assumes);
//! - the rest turns nodes into [`PlatformInfo`] fields, with errors that name the node.
//!
//! Nothing here indexes or unwraps on blob data.

// DtError owns short copies of node paths (it cannot borrow the blob: the boot code
// returns it from functions without a lifetime, and there is no heap to box it), which
// makes it ~180 bytes. It is built at most once per boot; the copies cost nothing.
#![allow(clippy::result_large_err)]
// The blob is untrusted: no panicking shortcuts on its data (checked by clippy).
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable
)]

mod bytes;
mod chosen;
mod cpus;
mod error;
mod header;
mod interrupts;
pub mod maps;
mod memory;
mod node;
mod nops;
mod pci;
mod psci;
mod smmu;
mod structure;

use arrayvec::ArrayVec;
use fdt::Fdt;

pub use error::{
    DT_TEXT_CAPACITY, DtError, DtText, InterruptProblem, ReservationOrigin, ReservationSite,
    StructureProblem,
};
pub use header::{HEADER_SIZE, MAX_TOTAL_SIZE};
pub use maps::PciProblem;
pub use nops::remove_nops;
pub use structure::MAX_DEPTH;

use crate::info::{Console, MAX_SMMUS, PhysRange, PlatformInfo};
use header::Header;
use node::Node;

/// Validates the 40-byte FDT header at the start of `header` and returns the blob's
/// `totalsize`, so that the caller can make a slice of exactly that size.
///
/// Checks: the magic; version >= 16 with last compatible version <= 17; totalsize at
/// least the header and at most [`MAX_TOTAL_SIZE`]; the struct, strings and
/// memory reservation blocks after the header and inside totalsize.
///
/// # Errors
/// [`DtError::Truncated`] (fewer than 40 bytes), [`DtError::BadMagic`],
/// [`DtError::UnsupportedVersion`], [`DtError::BadHeader`], [`DtError::TooLarge`].
pub fn blob_size(header: &[u8]) -> Result<usize, DtError> {
    Header::read(header).map(|header| header.total_size as usize)
}

/// Parses the device tree in `dtb` (loaded at physical address `dtb_base`) into the
/// platform facts the hypervisor needs.
///
/// Reads: every `device_type = "memory"` node; /memreserve/ and the `/reserved-memory`
/// children with a `reg`; `/chosen` (`bootargs`, `stdout-path` resolved to an
/// `arm,pl011`, the `multiboot,module` children); `/cpus`; the first `arm,gic-v3`,
/// `arm,armv8-timer` and PSCI nodes. `reg` is decoded with the `#address-cells`/
/// `#size-cells` that apply, a node without them inheriting its parent's.
///
/// # Errors
/// Any [`DtError`]: the blob's header or structure is malformed; there is no memory,
/// console, CPU or GICv3; memory banks or reservations overlap; a property that is read
/// is malformed (the error names the node); a table is full ([`DtError::TooMany`]); a
/// PCI host bridge's `iommu-map` names no SMMUv3 or its `interrupt-map` leads elsewhere
/// than the GIC ([`DtError::MalformedPciHostBridge`]).
pub fn parse(dtb: &[u8], dtb_base: u64) -> Result<PlatformInfo<'_>, DtError> {
    let (blob, header) = checked_blob(dtb)?;
    let dtb_range =
        PhysRange::new(dtb_base, header.total_size.into()).ok_or(DtError::RangeOverflow {
            node: DtText::new("(the DTB itself)"),
            base: dtb_base,
            size: header.total_size.into(),
        })?;
    let fdt = new_fdt(blob)?;
    let root = Node::root(&fdt)?;

    // One walk reads everything; the top-level nodes are matched by name here rather
    // than looked up by path, since each lookup through `fdt` re-reads whole subtrees.
    let mut memory = ArrayVec::new();
    let mut reserved = ArrayVec::new();
    let mut chosen = None;
    let mut cpus = None;
    let mut gic = None;
    let mut timer = None;
    let mut psci = None;
    let mut pmu_intid = None;
    let mut gic_cells = None;
    let mut smmus = ArrayVec::new();
    let mut bridges = pci::PendingBridges::new();
    memory::add_memreserve(header::reservations(blob, &header), &mut reserved)?;
    root.walk(&mut |node| {
        if node.is_top_level() {
            match node.name() {
                "chosen" if chosen.is_none() => chosen = Some(chosen::read_chosen(node)?),
                "cpus" if cpus.is_none() => cpus = Some(cpus::read_cpus(node)?),
                "reserved-memory" => memory::add_reserved_memory(node, &mut reserved)?,
                _ => {}
            }
        }
        if node.device_type_is("memory") {
            memory::add_memory_node(node, &mut memory)?;
        }
        if gic.is_none() && node.is_compatible("arm,gic-v3") {
            gic = Some(interrupts::read_gic(node)?);
            gic_cells = Some(pci::GicCells::of(node)?);
        }
        if smmu::is_smmu_v3(node)
            && let Some(smmu) = smmu::read_smmu(node)?
        {
            smmus.try_push(smmu).map_err(|_| DtError::TooMany {
                what: "SMMUv3s",
                limit: MAX_SMMUS,
            })?;
        }
        if pci::is_ecam_bridge(node) {
            pci::read_bridge(node, &mut bridges)?;
        }
        if timer.is_none() && node.is_compatible("arm,armv8-timer") {
            timer = Some(interrupts::read_timer(node)?);
        }
        if pmu_intid.is_none() && is_pmu(node) {
            pmu_intid =
                interrupts::first_interrupt(node).filter(|&intid| (16..32).contains(&intid));
        }
        if psci.is_none() && psci::is_psci(node) {
            psci = Some(psci::read_psci(node)?);
        }
        Ok(())
    })?;
    memory::finish_memory(&mut memory)?;
    memory::finish_reserved(&mut reserved)?;

    let chosen = chosen.ok_or(DtError::NoConsole)?;
    let stdout_path = chosen.stdout_path.ok_or(DtError::NoConsole)?;
    let console = chosen::resolve_console(&root, stdout_path)?;
    let cpus = cpus.ok_or(DtError::NoCpus)?;
    let gic = gic.ok_or(DtError::MissingGicV3)?;
    let pci_host_bridges = pci::finish_bridges(bridges, gic_cells, &smmus)?;

    Ok(PlatformInfo {
        dtb: dtb_range,
        memory,
        reserved,
        bootargs: chosen.bootargs,
        stdout_path: Some(stdout_path),
        console,
        cpus,
        gic,
        timer,
        pmu_intid,
        psci,
        modules: chosen.modules,
        smmus,
        pci_host_bridges,
    })
}

/// A PMUv3 node (`arm,armv8-pmuv3` or a core's own `arm,cortex-a72-pmu`, ...: the
/// bindings in `arm,pmu.yaml` all end in `-pmu` or `pmuv3`).
fn is_pmu(node: &Node<'_, '_, '_>) -> bool {
    node.compatibles()
        .any(|c| c.ends_with(b"-pmu") || c.ends_with(b"pmuv3"))
}

/// Finds the console, best effort, for reporting a problem when [`parse`] fails or the
/// CPU is not at EL2: `stdout-path` if it resolves to a PL011, else the `serial0` alias,
/// else the first `arm,pl011` node with a `reg` (then [`Console::path`] is the node's
/// name, not its path). `None` if the blob's header or structure is malformed.
pub fn find_console(dtb: &[u8]) -> Option<Console<'_>> {
    let (blob, _) = checked_blob(dtb).ok()?;
    let fdt = new_fdt(blob).ok()?;
    let root = Node::root(&fdt).ok()?;
    let stdout_path = root
        .with_node_at("/chosen", &mut |chosen| chosen.str_property("stdout-path"))
        .ok()
        .flatten()
        .flatten();
    if let Some(console) = stdout_path.and_then(|path| chosen::resolve_console(&root, path).ok()) {
        return Some(console);
    }
    if let Ok(console) = chosen::resolve_console(&root, "serial0") {
        return Some(console);
    }
    let mut first = None;
    let _ = root.walk(&mut |node| {
        if first.is_none() && node.is_compatible("arm,pl011") {
            first = chosen::console_at(node, node.name(), None).ok();
        }
        Ok(())
    });
    first
}

/// The blob cut to its totalsize, after validating the header and the structure block
/// (so that the `fdt` crate can walk it without panicking).
fn checked_blob(dtb: &[u8]) -> Result<(&[u8], Header), DtError> {
    let header = Header::read(dtb)?;
    header.check_fits(dtb.len())?;
    // Version 16 has no struct block size, and `fdt` relies on it.
    if header.struct_size == 0 {
        return Err(header.unsupported_version());
    }
    let blob = dtb
        .get(..header.total_size as usize)
        .ok_or(DtError::Truncated {
            what: "the blob (totalsize)",
            offset: 0,
            size: header.total_size.into(),
            available: dtb.len() as u64,
        })?;
    structure::validate(blob, &header)?;
    Ok((blob, header))
}

fn new_fdt(blob: &[u8]) -> Result<Fdt<'_>, DtError> {
    // Cannot fail after `checked_blob`; mapped rather than unwrapped all the same.
    Fdt::new(blob).map_err(|_| DtError::Truncated {
        what: "the blob (rejected by the fdt crate)",
        offset: 0,
        size: blob.len() as u64,
        available: blob.len() as u64,
    })
}
