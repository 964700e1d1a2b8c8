//! A PCI host bridge given whole to a guest, when the hypervisor drives the SMMU that
//! every one of its requester IDs masters DMA through (issue 17).
//!
//! The devices behind the bridge then translate through the guest's own stage 2: the
//! hypervisor installs a stage-2 STE for each StreamID [`BridgeGrant::streams`] lists,
//! and every other StreamID aborts. The guest gets neither the SMMU nor the ITS, so its
//! copy of the node loses the maps that name them ([`DROPPED_PROPERTIES`]) and its
//! drivers fall back to legacy INTx, whose SPIs (`interrupt-map`, which must lead to the
//! GIC only) are passed through. An MSI a guest still makes a device write is DMA like
//! any other: the SMMU translates it through the guest's stage 2, which does not map the
//! ITS, so it faults.
//!
//! The maps are decoded by `platform::dt::maps`, as the hypervisor's own parse does, so
//! the StreamIDs and SPIs here are the ones the hypervisor reads.

use alloc::string::ToString;
use alloc::vec::Vec;

use dtoolkit::fdt::FdtNode;
use dtoolkit::{Node, Property};
use platform::dt::maps::{self, InterruptMapCells, PCI_ADDRESS_CELLS};
use platform::info::IommuMapEntry;

use super::assignment::StreamRange;
use super::classify::strings;
use super::problems::{InterruptProblem, Refusal};
use super::tree::{HostTree, PhandleTarget};

/// What the guest's copy of an assigned bridge leaves out: the SMMU and the ITS are the
/// hypervisor's, and nothing in the guest's DT could resolve them.
pub(crate) const DROPPED_PROPERTIES: [&str; 5] = [
    "iommu-map",
    "iommu-map-mask",
    "msi-map",
    "msi-map-mask",
    "msi-parent",
];

/// An assignable bridge: the SPIs of its `interrupt-map` and the StreamIDs of its
/// requester IDs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BridgeGrant {
    pub intids: Vec<u32>,
    pub streams: Vec<StreamRange>,
}

/// Whether the node is a PCI host bridge (`device_type = "pci"` or `"pciex"`).
pub(crate) fn is_pci_bridge(node: &FdtNode<'_>) -> bool {
    strings(node, "device_type").any(|s| s == b"pci" || s == b"pciex")
}

/// The grant for the bridge at `index`, `None` when the request drives no SMMU (the
/// bridge then stays refused as DMA-capable, as before issue 17), or why it cannot be
/// given.
pub(crate) fn assess(
    tree: &HostTree<'_>,
    gic: Option<usize>,
    index: usize,
    smmus_driven: &[u32],
) -> Option<Result<BridgeGrant, Refusal>> {
    if smmus_driven.is_empty() {
        return None;
    }
    let node = tree.node(index)?;
    Some(grant(tree, gic, &node, smmus_driven))
}

fn grant(
    tree: &HostTree<'_>,
    gic: Option<usize>,
    node: &FdtNode<'_>,
    smmus_driven: &[u32],
) -> Result<BridgeGrant, Refusal> {
    // Without `iommu-map` no requester ID has a known StreamID: `streams` refuses.
    let map = match node.property("iommu-map") {
        Some(map) => maps::iommu_map(map.value()).map_err(Refusal::PciMap)?,
        None => Default::default(),
    };
    let mask = match node.property("iommu-map-mask") {
        Some(mask) => maps::iommu_map_mask(mask.value()).map_err(Refusal::PciMap)?,
        None => u32::MAX,
    };
    let (first_bus, last_bus) = match node.property("bus-range") {
        Some(range) => maps::bus_range(range.value()).map_err(Refusal::PciMap)?,
        None => (0, u8::MAX),
    };
    let rids = u32::from(first_bus) << 8..(u32::from(last_bus) + 1) << 8;
    Ok(BridgeGrant {
        streams: streams(&map, mask, rids, smmus_driven)?,
        intids: intx_intids(tree, gic, node)?,
    })
}

/// The StreamIDs the requester IDs `rids` use, by SMMU, when every one of them is
/// mapped (as Linux's `of_map_id`: masked, first matching entry) to an SMMU the
/// hypervisor drives. At most 65536 IDs: checking each is exact and cheap.
fn streams(
    map: &[IommuMapEntry],
    mask: u32,
    rids: core::ops::Range<u32>,
    smmus_driven: &[u32],
) -> Result<Vec<StreamRange>, Refusal> {
    // Per entry, the lowest and highest StreamID a RID of the bridge reaches.
    let mut used: Vec<Option<(u32, u32)>> = alloc::vec![None; map.len()];
    for rid in rids {
        let masked = rid & mask;
        let Some((position, smmu, sid)) = map.iter().enumerate().find_map(|(position, entry)| {
            Some((position, entry.smmu_phandle, entry.sid_of(masked)?))
        }) else {
            return Err(Refusal::IommuNotDriven { rid, smmu: None });
        };
        if !smmus_driven.contains(&smmu) {
            return Err(Refusal::IommuNotDriven {
                rid,
                smmu: Some(smmu),
            });
        }
        if let Some(slot) = used.get_mut(position) {
            let (low, high) = slot.get_or_insert((sid, sid));
            *low = (*low).min(sid);
            *high = (*high).max(sid);
        }
    }
    let mut streams: Vec<StreamRange> = map
        .iter()
        .zip(used)
        .filter_map(|(entry, used)| {
            let (low, high) = used?;
            Some(StreamRange {
                smmu: entry.smmu_phandle,
                sids: low..high.saturating_add(1),
            })
        })
        .collect();
    super::assignment::merge_streams(&mut streams);
    Ok(streams)
}

/// The SPIs of the bridge's `interrupt-map`, sorted, no repeats; every entry must lead
/// to the emulated GIC (whose phandle the guest's DT keeps, so the map stays valid).
fn intx_intids(
    tree: &HostTree<'_>,
    gic: Option<usize>,
    node: &FdtNode<'_>,
) -> Result<Vec<u32>, Refusal> {
    let Some(map) = node.property("interrupt-map") else {
        return Ok(Vec::new());
    };
    let gic_node = gic.and_then(|gic| tree.node(gic));
    let cell = |node: Option<&FdtNode<'_>>, name: &str| {
        node.and_then(|n| n.property(name))
            .and_then(|p| <[u8; 4]>::try_from(p.value()).ok())
            .map_or(0, u32::from_be_bytes)
    };
    let cells = InterruptMapCells {
        child_address: PCI_ADDRESS_CELLS,
        child_interrupt: cell(Some(node), "#interrupt-cells"),
        parent_address: cell(gic_node.as_ref(), "#address-cells"),
        parent_interrupt: cell(gic_node.as_ref(), "#interrupt-cells"),
    };
    if let Some(mask) = node.property("interrupt-map-mask") {
        maps::interrupt_map_mask(mask.value()).map_err(Refusal::PciMap)?;
    }
    let is_gic =
        |phandle| gic.is_some() && tree.by_phandle(phandle) == gic.map(PhandleTarget::Node);
    let routes = maps::interrupt_map(map.value(), cells, is_gic).map_err(|problem| {
        match problem {
            // Said the way every other interrupt parent refusal is.
            maps::PciProblem::ParentNotGic { phandle, .. } => {
                Refusal::Interrupts(match tree.by_phandle(phandle) {
                    Some(PhandleTarget::Node(parent)) => InterruptProblem::NotTheGic {
                        parent: tree.path(parent).to_string(),
                    },
                    _ => InterruptProblem::UnknownParent { phandle },
                })
            }
            problem => Refusal::PciMap(problem),
        }
    })?;
    let mut intids: Vec<u32> = routes.iter().map(|route| route.intid).collect();
    intids.sort_unstable();
    intids.dedup();
    Ok(intids)
}
