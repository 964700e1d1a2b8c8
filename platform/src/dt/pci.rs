//! Generic ECAM PCI host bridges (`pci-host-ecam-generic`, bindings/pci/
//! host-generic-pci.yaml): ECAM, bus range, windows, `iommu-map`, INTx routing.
//!
//! Read in two steps, since the nodes an `iommu-map` or `interrupt-map` names (the
//! SMMUs, the GIC) may come after the bridge in DT order: [`read_bridge`] during the
//! walk decodes what the node alone says and keeps the raw `interrupt-map`;
//! [`finish_bridges`] after it checks every `iommu-map` phandle against the SMMUv3s and
//! decodes `interrupt-map` with the GIC's cells.

use arrayvec::ArrayVec;

use super::DtError;
use super::bytes::{be_u32, cells_value};
use super::maps::{self, InterruptMapCells, PCI_ADDRESS_CELLS, PciProblem};
use super::memory::range_or_empty;
use super::node::Node;
use crate::info::{
    IntxMask, MAX_PCI_HOST_BRIDGES, MAX_PCI_WINDOWS, PciHostBridge, PciSpace, PciWindow, SmmuV3,
};

/// Bits 24..=25 of `phys.hi`: the address space; bit 30: prefetchable.
const SPACE_SHIFT: u32 = 24;
const PREFETCHABLE: u32 = 1 << 30;

pub(super) fn is_ecam_bridge(node: &Node<'_, '_, '_>) -> bool {
    node.is_compatible("pci-host-ecam-generic")
}

/// A bridge read during the walk, its `interrupt-map` not yet decoded.
pub(super) struct PendingBridge<'dtb> {
    bridge: PciHostBridge,
    interrupt_map: Option<&'dtb [u8]>,
    /// The bridge's `#interrupt-cells` (0 when absent, which the decoding refuses).
    interrupt_cells: u32,
}

pub(super) type PendingBridges<'dtb> = ArrayVec<PendingBridge<'dtb>, MAX_PCI_HOST_BRIDGES>;

/// What an `interrupt-map` entry needs of the GIC: the phandles that name it and its
/// cells.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct GicCells {
    phandle: Option<u32>,
    address: u32,
    interrupt: u32,
}

impl GicCells {
    pub(super) fn of(gic: &Node<'_, '_, '_>) -> Result<Self, DtError> {
        Ok(Self {
            phandle: gic.phandle()?,
            address: gic.u32_property("#address-cells")?.unwrap_or(0),
            interrupt: gic.u32_property("#interrupt-cells")?.unwrap_or(0),
        })
    }
}

fn problem(node: &Node<'_, '_, '_>, problem: PciProblem) -> DtError {
    DtError::MalformedPciHostBridge {
        node: node.path(),
        problem,
    }
}

/// Reads a bridge's own properties; `None` when it is disabled.
///
/// # Errors
/// A `device_type` other than "pci", a missing or malformed `reg` or `ranges`, cells a
/// PCI bus cannot have, a malformed `bus-range`, `iommu-map` or `interrupt-map-mask`,
/// a window whose end overflows, too many windows.
pub(super) fn read_bridge<'dtb>(
    node: &Node<'_, '_, 'dtb>,
    pending: &mut PendingBridges<'dtb>,
) -> Result<(), DtError> {
    if !node.is_available() {
        return Ok(());
    }
    if !node.device_type_is("pci") {
        return Err(node.malformed("device_type", "is not \"pci\""));
    }
    let (base, size) = node
        .cpu_reg()?
        .and_then(|mut reg| reg.next())
        .ok_or_else(|| node.missing("reg"))?;
    let ecam = super::memory::range(node.path(), base, size)?;
    let (first_bus, last_bus) = match node.property("bus-range") {
        Some(value) => maps::bus_range(value).map_err(|p| problem(node, p))?,
        None => (0, u8::MAX),
    };
    let iommu_map = match node.property("iommu-map") {
        Some(value) => maps::iommu_map(value).map_err(|p| problem(node, p))?,
        None => ArrayVec::new(),
    };
    let iommu_map_mask = match node.property("iommu-map-mask") {
        Some(value) => Some(maps::iommu_map_mask(value).map_err(|p| problem(node, p))?),
        None => None,
    };
    let intx_mask = match node.property("interrupt-map-mask") {
        Some(value) => maps::interrupt_map_mask(value).map_err(|p| problem(node, p))?,
        None => IntxMask::ALL,
    };
    let bridge = PciHostBridge {
        path: node.path(),
        ecam,
        first_bus,
        last_bus,
        windows: windows(node)?,
        iommu_map,
        iommu_map_mask,
        intx: ArrayVec::new(),
        intx_mask,
        msi_parent: node.property("msi-parent").is_some(),
        msi_map: node.property("msi-map").is_some(),
        coherent: node.property("dma-coherent").is_some(),
    };
    pending
        .try_push(PendingBridge {
            bridge,
            interrupt_map: node.property("interrupt-map"),
            interrupt_cells: node.u32_property("#interrupt-cells")?.unwrap_or(0),
        })
        .map_err(|_| DtError::TooMany {
            what: "PCI host bridges",
            limit: MAX_PCI_HOST_BRIDGES,
        })
}

/// The I/O and memory windows of `ranges` (`<pci-address cpu-address size>`, the CPU
/// address in the parent's cells, which `cpu_reg` has checked are CPU physical).
fn windows(node: &Node<'_, '_, '_>) -> Result<ArrayVec<PciWindow, MAX_PCI_WINDOWS>, DtError> {
    let bad_cells = |which, value, expected| {
        problem(
            node,
            PciProblem::Cells {
                which,
                value,
                expected,
            },
        )
    };
    let address_cells = node.u32_property("#address-cells")?.unwrap_or(0);
    if address_cells != PCI_ADDRESS_CELLS {
        return Err(bad_cells(
            "#address-cells",
            address_cells,
            "3 (a PCI address)",
        ));
    }
    let size_cells = node.u32_property("#size-cells")?.unwrap_or(0);
    if !(1..=2).contains(&size_cells) {
        return Err(bad_cells("#size-cells", size_cells, "1 or 2"));
    }
    // `cpu_reg` accepted the bridge's `reg`, so the parent's address cells are 1 or 2.
    let parent_cells = node.reg_address_cells();
    let entry_cells = (PCI_ADDRESS_CELLS + parent_cells + size_cells) as usize;
    let value = node
        .property("ranges")
        .ok_or_else(|| node.missing("ranges"))?;
    if value.is_empty() || !value.len().is_multiple_of(entry_cells * 4) {
        return Err(problem(
            node,
            PciProblem::Length {
                property: "ranges",
                len: value.len(),
                entry_cells,
            },
        ));
    }
    let mut windows = ArrayVec::new();
    for entry in value.chunks_exact(entry_cells * 4) {
        let (pci, rest) = entry.split_at_checked(12).unwrap_or_default();
        let (cpu, size) = rest
            .split_at_checked(parent_cells as usize * 4)
            .unwrap_or_default();
        let hi = be_u32(pci, 0).unwrap_or(0);
        let space = match (hi >> SPACE_SHIFT) & 0b11 {
            0b01 => PciSpace::Io,
            0b10 => PciSpace::Mem32,
            0b11 => PciSpace::Mem64,
            // Configuration space is reached through ECAM, not a window.
            _ => continue,
        };
        let pci_address = pci.get(4..).and_then(cells_value).unwrap_or(0);
        let (cpu, size) = (
            cells_value(cpu).unwrap_or(0),
            cells_value(size).unwrap_or(0),
        );
        let Some(cpu) = range_or_empty(node.path(), cpu, size)? else {
            continue;
        };
        windows
            .try_push(PciWindow {
                space,
                prefetchable: hi & PREFETCHABLE != 0,
                pci_address,
                cpu,
            })
            .map_err(|_| DtError::TooMany {
                what: "windows of one PCI host bridge",
                limit: MAX_PCI_WINDOWS,
            })?;
    }
    Ok(windows)
}

/// Checks the bridges' `iommu-map` phandles against the SMMUv3s and decodes their
/// `interrupt-map`s with the GIC's cells.
///
/// # Errors
/// [`DtError::MalformedPciHostBridge`] naming the bridge: an `iommu-map` phandle no
/// SMMUv3 has, an `interrupt-map` entry whose parent is not the GIC, or one that cannot
/// be decoded.
pub(super) fn finish_bridges(
    pending: PendingBridges<'_>,
    gic: Option<GicCells>,
    _smmus: &[SmmuV3],
) -> Result<ArrayVec<PciHostBridge, MAX_PCI_HOST_BRIDGES>, DtError> {
    let mut bridges = ArrayVec::new();
    for PendingBridge {
        mut bridge,
        interrupt_map,
        interrupt_cells,
    } in pending
    {
        let fail = |problem| DtError::MalformedPciHostBridge {
            node: bridge.path,
            problem,
        };
        // An iommu-map may name an IOMMU that is no SMMUv3 of this DT (an SMMUv2, a
        // disabled SMMU): the board still boots, and the guest loader refuses to give the
        // bridge away, since no IOMMU the hypervisor drives translates it.
        if let Some(value) = interrupt_map {
            let gic = gic.unwrap_or_default();
            let cells = InterruptMapCells {
                child_address: PCI_ADDRESS_CELLS,
                child_interrupt: interrupt_cells,
                parent_address: gic.address,
                parent_interrupt: gic.interrupt,
            };
            bridge.intx = maps::interrupt_map(value, cells, |phandle| gic.phandle == Some(phandle))
                .map_err(fail)?;
        }
        // Cannot fail: as many bridges as were pending.
        let _ = bridges.try_push(bridge);
    }
    Ok(bridges)
}
