//! The decision, as one value: what the guest gets emulated, what it gets passed
//! through, what it asked for and was refused, and (for the guest DT builder) which host
//! nodes its DT keeps and how.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use hyp_abi::console::guest_devices::{Device, DeviceList, GuestDevices};
use platform::info::PhysRange;

use super::problems::{DeviceNote, Refusal};
use crate::passthrough::merge;

/// The devices the hypervisor emulates for every guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EmulatedKind {
    /// A GICv3: the distributor and one redistributor frame pair per vCPU.
    GicV3,
    /// A PL011 UART: the guest's console.
    Pl011,
}

impl EmulatedKind {
    /// The name in the `guest-devices:` console line.
    pub const fn line_name(self) -> &'static str {
        match self {
            Self::GicV3 => "gicv3",
            Self::Pl011 => "pl011",
        }
    }
}

impl fmt::Display for EmulatedKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::GicV3 => "GICv3",
            Self::Pl011 => "PL011",
        })
    }
}

/// A device the hypervisor emulates: its frames stay unmapped in stage 2, so every
/// access traps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmulatedDevice {
    pub kind: EmulatedKind,
    /// The host node it stands in for (the guest's DT keeps the path).
    pub path: String,
    /// The MMIO as the guest sees it (CPU physical = IPA), not rounded: for the GIC the
    /// distributor, then one redistributor region of `vcpus * 128 KiB`; for the PL011
    /// its `reg`.
    pub regions: Vec<PhysRange>,
    /// The SPI the device interrupts with, as an INTID (the PL011's; `None` for the GIC
    /// or a UART without `interrupts`).
    pub intid: Option<u32>,
}

/// A device the guest drives itself: its MMIO is mapped in stage 2 and its SPIs are
/// routed to the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassthroughDevice {
    pub path: String,
    /// Its MMIO and that of every node below it, CPU physical, as the DT gives it.
    pub mmio: Vec<PhysRange>,
    /// `mmio` rounded out to 4 KiB pages, sorted and merged: what stage 2 maps.
    pub regions: Vec<PhysRange>,
    /// Its (and its subtree's) interrupts as INTIDs, all SPIs, sorted, no repeats: for
    /// a PCI host bridge, the SPIs its `interrupt-map` routes INTx to.
    pub intids: Vec<u32>,
    /// The SMMU StreamIDs its DMA uses (a PCI host bridge's: its requester IDs through
    /// `iommu-map`), sorted, merged; empty for a device that masters no DMA.
    pub streams: Vec<StreamRange>,
}

/// StreamIDs of one SMMU that a guest's devices use: the hypervisor gives each a
/// stage-2 STE for the guest (every other StreamID aborts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRange {
    /// The SMMU's phandle (`platform::info::SmmuV3::phandle`).
    pub smmu: u32,
    pub sids: Range<u32>,
}

/// Sorts by SMMU and first StreamID and merges ranges of one SMMU that overlap or touch.
pub(crate) fn merge_streams(streams: &mut Vec<StreamRange>) {
    streams.retain(|stream| !stream.sids.is_empty());
    streams.sort_by_key(|stream| (stream.smmu, stream.sids.start, stream.sids.end));
    let mut merged: Vec<StreamRange> = Vec::with_capacity(streams.len());
    for stream in streams.drain(..) {
        match merged.last_mut() {
            Some(last) if last.smmu == stream.smmu && stream.sids.start <= last.sids.end => {
                last.sids.end = last.sids.end.max(stream.sids.end);
            }
            _ => merged.push(stream),
        }
    }
    *streams = merged;
}

/// A device that was asked for and is not given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedDevice {
    pub path: String,
    /// The CPU physical base of its first MMIO region, when it has one that translates
    /// (for the console line).
    pub address: Option<u64>,
    pub reason: Refusal,
}

impl fmt::Display for RefusedDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: not given to the guest: {}", self.path, self.reason)
    }
}

/// Which devices a guest gets; see [`crate::devices`] for the rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceAssignment {
    /// The GIC, then the console, when the host has them.
    pub emulated: Vec<EmulatedDevice>,
    /// In DT order.
    pub passthrough: Vec<PassthroughDevice>,
    /// In DT order.
    pub refused: Vec<RefusedDevice>,
    /// Warnings: references the guest's DT cannot satisfy, missing GIC or console.
    pub notes: Vec<DeviceNote>,
    pub(crate) layout: GuestTreeLayout,
}

impl DeviceAssignment {
    /// What stage 2 maps as device memory: every passthrough device's pages, sorted by
    /// base, merged. The emulated devices' frames are never in it.
    pub fn passthrough_regions(&self) -> Vec<PhysRange> {
        merge(
            self.passthrough
                .iter()
                .flat_map(|device| device.regions.iter().copied())
                .collect(),
        )
    }

    /// Every passthrough device's SPIs (INTIDs), sorted, no repeats: what the vGIC links
    /// to the physical interrupts.
    pub fn passthrough_intids(&self) -> Vec<u32> {
        let mut intids: Vec<u32> = self
            .passthrough
            .iter()
            .flat_map(|device| device.intids.iter().copied())
            .collect();
        intids.sort_unstable();
        intids.dedup();
        intids
    }

    /// Every passthrough device's StreamIDs, by SMMU phandle, sorted and merged: what
    /// the hypervisor gives stage-2 STEs for the guest before it runs.
    pub fn streams(&self) -> Vec<StreamRange> {
        let mut streams = self
            .passthrough
            .iter()
            .flat_map(|device| device.streams.iter().cloned())
            .collect();
        merge_streams(&mut streams);
        streams
    }

    /// The emulated device of `kind`, when the host has one to stand in for.
    pub fn emulated(&self, kind: EmulatedKind) -> Option<&EmulatedDevice> {
        self.emulated.iter().find(|device| device.kind == kind)
    }

    /// The `guest-devices:` console line for guest number `guest` (1 for the first),
    /// without its newline; see `hyp_abi::console::guest_devices`.
    pub fn console_line(&self, guest: u64) -> String {
        let emulated: Vec<Device<'_>> = self
            .emulated
            .iter()
            .map(|device| Device {
                name: device.kind.line_name(),
                base: device.regions.first().map(|r| r.base),
            })
            .collect();
        let passthrough: Vec<Device<'_>> = self
            .passthrough
            .iter()
            .map(|device| Device {
                name: node_name(&device.path),
                base: device.mmio.first().map(|r| r.base),
            })
            .collect();
        let refused: Vec<Device<'_>> = self
            .refused
            .iter()
            .map(|device| Device {
                name: node_name(&device.path),
                base: device.address,
            })
            .collect();
        GuestDevices {
            guest,
            emulated: DeviceList::Devices(&emulated),
            passthrough: DeviceList::Devices(&passthrough),
            refused: DeviceList::Devices(&refused),
        }
        .to_string()
    }
}

/// The last path component without its unit address (`/soc/serial@1000` -> `serial`).
fn node_name(path: &str) -> &str {
    let last = path.rsplit('/').next().unwrap_or(path);
    last.split('@').next().unwrap_or(last)
}

/// How the guest DT builder writes a kept host node (every other node outside
/// `/chosen`, `/cpus`, memory and `/reserved-memory`, which have rules of their own, is
/// dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NodeRole {
    /// A device (emulated PL011, passthrough, timer, PMU, PSCI, a dependency) or a node
    /// below one: copied with its properties.
    Device,
    /// The emulated GIC: its `reg` rewritten, its maintenance interrupt and extra
    /// redistributor properties dropped.
    EmulatedGic,
    /// A passthrough PCI host bridge: copied without the maps that name the SMMU and
    /// the ITS (`devices::pci::DROPPED_PROPERTIES`).
    PciHostBridge,
    /// An ancestor of kept nodes that is not kept itself: only what its children need
    /// (see `guest_dt`).
    Container,
}

/// The assignment as the guest DT builder needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GuestTreeLayout {
    /// Kept host nodes by path (the root is always kept and not listed).
    pub roles: BTreeMap<String, NodeRole>,
    /// The emulated GIC's `reg`, encoded for its parent bus.
    pub gic_reg: Vec<u8>,
    /// The phandles of kept nodes (what a container's `interrupt-parent` may name).
    pub kept_phandles: BTreeSet<u32>,
    /// What the assignment was made for, so that a DT cannot be built from another.
    pub vcpus: usize,
    pub host_fingerprint: u64,
}

impl GuestTreeLayout {
    pub(crate) fn role(&self, path: &str) -> Option<NodeRole> {
        self.roles.get(path).copied()
    }

    pub(crate) fn keeps_phandle(&self, phandle: u32) -> bool {
        self.kept_phandles.contains(&phandle)
    }

    /// Whether the guest gets the node at `path` as a device (what `/aliases` may name).
    pub(crate) fn is_device(&self, path: &str) -> bool {
        matches!(
            self.role(path),
            Some(NodeRole::Device | NodeRole::EmulatedGic | NodeRole::PciHostBridge)
        )
    }
}

/// FNV-1a over the host DTB: ties a layout to the blob it was made from.
pub(crate) fn fingerprint(blob: &[u8]) -> u64 {
    blob.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
