//! Which devices a guest gets: a guest gets only what it is assigned.
//!
//! [`assign_devices`] reads the host DTB and a [`DeviceRequest`] and returns one
//! [`DeviceAssignment`]; the guest DT builder ([`crate::guest_dt`]) writes the guest's
//! DT from it and the hypervisor maps its
//! [`DeviceAssignment::passthrough_regions`] in stage 2, so the DT and the stage-2
//! mappings cannot disagree. Rules:
//!
//! - **Every guest gets** its RAM, `/cpus`, PSCI, `/chosen` and reserved memory (rules of
//!   [`crate::guest_dt`]), the architected timer (`arm,armv8-timer`/`arm,armv7-timer`),
//!   the PMU (`arm,armv8-pmuv3`, `arm,cortex-a*-pmu`, `arm,cortex-x*-pmu`,
//!   `arm,neoverse-*-pmu`, without `reg`) and two emulated devices:
//!   - **the GICv3**: the host's first `arm,gic-v3` node (in DT order, as `platform::dt`
//!     takes it), kept at its addresses with its phandle, `#interrupt-cells`,
//!     `interrupt-controller`, cells and `ranges`, but with `reg` = the distributor plus
//!     ONE redistributor region at the host's first redistributor base of
//!     `vcpus * 128 KiB` (no GICv2 CPU/hyp/vcpu frames), without
//!     `#redistributor-regions`, `redistributor-stride`, `interrupts` (the
//!     maintenance interrupt is the hypervisor's) and the MBI properties
//!     (`msi-controller`, `mbi-ranges`, `mbi-alias`), and without its ITS
//!     (`arm,gic-v3-its`) or any other child with a `reg`;
//!   - **the PL011**: the `arm,pl011` node `/chosen/stdout-path` names, as it is (same
//!     `reg`, same `interrupts`; its SPI is [`EmulatedDevice::intid`], `None` with a
//!     note when it is not a GIC SPI).
//!
//!   Both stay unmapped in stage 2, so every access traps to the emulation. A host
//!   without either is not an error here (a [`DeviceNote`] says so); an emulated
//!   device whose frames overlap guest RAM or a hidden range is.
//! - **Assigned** devices are the nodes that carry `xen,passthrough` (Xen's binding)
//!   and the nodes the hypervisor's `passthrough=` option names by full path
//!   (`platform::bootargs`); a named path that does not exist is a [`DeviceError`]. A
//!   request is refused, with its [`Refusal`], when the node is: not a device (root,
//!   memory, `/cpus`, `/chosen`, `/aliases`, reserved memory, timer, PMU, PSCI); the
//!   hypervisor's own (the GIC and any GICv3 or ITS node, the console UART, an SMMU);
//!   disabled, or inside a disabled node; fw-cfg (`qemu,fw-cfg-mmio`); flash
//!   (`cfi-flash`, `jedec-flash`, `arm,vexpress-flash`, `mtd-rom`); DMA-capable with no
//!   IOMMU the hypervisor controls (`virtio,mmio`, `device_type = "pci"`/`"pciex"`,
//!   a node with `iommus`, `iommu-map`, `dma-coherent`, `msi-parent` or `msi-map`; but
//!   see PCI host bridges below); an interrupt nexus (`interrupt-map`, but for such a
//!   bridge); a node with a `reg` on a bus that is not
//!   memory-mapped; a node whose MMIO does not translate ([`crate::passthrough`]), or
//!   whose MMIO pages overlap guest RAM, a hidden range, an emulated device's frames or
//!   the registers of any node the guest does not get (in use or not: a page is mapped
//!   whole); a node with an interrupt that is not an SPI of the emulated GIC (a PPI, an
//!   extended SPI, another interrupt parent) or that the console's SPI is; a node with
//!   a phandle reference that cannot be parsed (a specifier list of the wrong length).
//!   The checks apply to the whole subtree (a bus cannot smuggle a virtio device in). A
//!   request inside another granted one goes with it.
//! - **PCI host bridges** (issue 17): when [`DeviceRequest::smmus_driven`] is not
//!   empty, a requested bridge is given whole if every requester ID of its
//!   `bus-range` reaches, through `iommu-map` (and `iommu-map-mask`), an SMMU that list
//!   names, and every `interrupt-map` entry leads to an SPI of the emulated GIC; else it
//!   is refused with [`Refusal::IommuNotDriven`], [`Refusal::PciMap`] or an interrupt
//!   problem. Its MMIO is its ECAM and its I/O and memory windows; its interrupts are
//!   the SPIs of its `interrupt-map`; its StreamIDs ([`PassthroughDevice::streams`],
//!   [`DeviceAssignment::streams`]) are what its requester IDs map to, which the
//!   hypervisor gives stage-2 STEs. The guest's copy drops `iommu-map`,
//!   `iommu-map-mask`, `msi-map`, `msi-map-mask` and `msi-parent` (the guest has no
//!   SMMU and no ITS: its drivers use INTx). With no SMMU driven, bridges are refused
//!   as DMA-capable, as before.
//! - **A passthrough device** is its node with everything below it; its MMIO is every
//!   memory-mapped node's `reg` in that subtree (nodes not in use excluded),
//!   CPU-physical and rounded out to pages, and its interrupts every SPI of the subtree,
//!   as INTIDs (SPI n is INTID 32 + n).
//! - **References**: whatever a kept node refers to by phandle (the properties listed
//!   in `references`: `clocks`, `resets`, `power-domains`, `pinctrl-N`, `*-supply`,
//!   `*-gpios`, `interrupt-parent`, ...) is kept with its subtree when no node of that
//!   subtree has a `reg` and it does not lie inside a node with one: a `fixed-clock`
//!   comes along, a clock controller with MMIO does not (a [`DeviceNote`] says so, and
//!   the guest's driver may not probe). The kept nodes are every device above, the
//!   root, and the `/cpus` nodes the guest keeps. References into `/cpus`, `/chosen`,
//!   memory and `/reserved-memory` are left to their own rules.
//! - **Rebuilding from the guest's DT gives the same DT** (the guest DT is a valid host
//!   DT, and the `guest_dtb` fuzz target checks this): so a kept device keeps its
//!   `xen,passthrough`, and a phandle that names no node is a [`DeviceNote`], not a
//!   refusal, since a reference to a node the guest does not get (above) names no node
//!   in the guest's DT. For the same reason a specifier list is not followed past an
//!   entry whose provider the guest does not get. (The exception: a PCI host bridge
//!   given because its SMMU is driven loses its `iommu-map` in the guest's DT, so a
//!   guest DT rebuilt with SMMUs driven refuses it. The guest has no SMMU to drive.)
//! - **Containers**: every ancestor of a kept node is written with only what its
//!   children need (see [`crate::guest_dt`]); every other node is dropped.
//! - **Paths** two sibling nodes share are never kept (a path could not tell them
//!   apart).

mod assign;
mod assignment;
mod classify;
mod emulated;
mod interrupts;
mod pci;
mod problems;
mod references;
mod tree;

#[cfg(test)]
mod tests;

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use dtoolkit::fdt::Fdt;
use platform::info::PhysRange;

pub use assignment::{
    DeviceAssignment, EmulatedDevice, EmulatedKind, PassthroughDevice, RefusedDevice, StreamRange,
};
pub(crate) use assignment::{GuestTreeLayout, NodeRole};
pub use emulated::REDISTRIBUTOR_FRAMES_SIZE;
pub(crate) use pci::DROPPED_PROPERTIES as BRIDGE_PROPERTIES_DROPPED;
pub use problems::{
    DeviceError, DeviceNote, InterruptProblem, NotKeptReason, ReferenceProblem, Refusal,
};

use crate::dtb;

/// The property (Xen's binding, `docs/misc/arm/passthrough.txt`) that assigns a host
/// node to the guest.
pub const XEN_PASSTHROUGH: &str = "xen,passthrough";

/// What the assignment needs to know about the guest.
#[derive(Clone, Copy, Debug)]
pub struct DeviceRequest<'r> {
    /// The guest's vCPUs: the emulated GIC has one redistributor per vCPU.
    pub vcpus: usize,
    /// Guest RAM (IPA = PA): no device may show there.
    pub guest_ram: &'r [PhysRange],
    /// Ranges the guest must never see (hypervisor memory, crash region, host DTB).
    pub hidden: &'r [PhysRange],
    /// Host node paths from the hypervisor's `passthrough=` option.
    pub passthrough_paths: &'r [&'r str],
    /// The phandles of the SMMUs (`platform::info::SmmuV3::phandle`) the hypervisor
    /// drives, ready to give the guest's devices stage-2 STEs. A PCI host bridge whose
    /// every requester ID reaches one of them through `iommu-map` may be assigned
    /// (empty: none may, as DMA-capable).
    pub smmus_driven: &'r [u32],
    /// Whether the host nodes marked `xen,passthrough` are given. A single guest takes
    /// them; each of several guests gets only what its own description names (a
    /// device cannot be two guests').
    pub marked_passthrough: bool,
}

/// Decides which devices the guest gets (see the module docs).
///
/// # Errors
///
/// A bad blob ([`DeviceError::DtbTooShort`], [`DeviceError::DtbBadMagic`],
/// [`DeviceError::DtbTruncated`], [`DeviceError::DtbMalformed`], [`DeviceError::RootCells`]),
/// [`DeviceError::NoVcpus`], a `passthrough=` path that names no single node
/// ([`DeviceError::PassthroughPathNotFound`], [`DeviceError::PassthroughPathAmbiguous`]),
/// or an emulated device that cannot be built ([`DeviceError::EmulatedNotMemoryMapped`],
/// [`DeviceError::EmulatedMmio`], [`DeviceError::GicReg`],
/// [`DeviceError::RedistributorsTooLarge`], [`DeviceError::EmulatedOverlaps`]). A
/// requested device that cannot be given is not
/// an error: it is in [`DeviceAssignment::refused`].
pub fn assign_devices(
    host_dtb: &[u8],
    request: &DeviceRequest<'_>,
) -> Result<DeviceAssignment, DeviceError> {
    let fdt = dtb::open(host_dtb).map_err(|error| match error {
        dtb::OpenError::TooShort { len } => DeviceError::DtbTooShort { len },
        dtb::OpenError::BadMagic { found } => DeviceError::DtbBadMagic { found },
        dtb::OpenError::Truncated { totalsize, len } => {
            DeviceError::DtbTruncated { totalsize, len }
        }
        dtb::OpenError::Malformed { detail } => DeviceError::DtbMalformed { detail },
    })?;
    assign::assign(&fdt, request)
}

/// [`assign_devices`] on a blob the caller has opened already.
pub(crate) fn assign_opened(
    fdt: &Fdt<'_>,
    request: &DeviceRequest<'_>,
) -> Result<DeviceAssignment, DeviceError> {
    assign::assign(fdt, request)
}

/// The fingerprint [`GuestTreeLayout`] records, for the blob `fdt` reads.
pub(crate) fn host_fingerprint(fdt: &Fdt<'_>) -> u64 {
    assignment::fingerprint(fdt.data())
}

/// The paths of the nodes a tree's emulated devices stand in for (the GIC and the
/// PL011 console), found by the rules above; for reading a guest DTB back.
pub(crate) fn emulated_device_paths(fdt: &Fdt<'_>) -> Vec<String> {
    let tree = tree::HostTree::new(fdt.root());
    [emulated::find_gic(&tree), emulated::pl011_console(&tree)]
        .into_iter()
        .flatten()
        .map(|index| tree.path(index).to_string())
        .collect()
}

/// Whether `path` is `root` or below it.
pub(crate) fn is_same_or_below(path: &str, root: &str) -> bool {
    match path.strip_prefix(root) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || root == "/",
        None => false,
    }
}
