//! Generic ECAM PCI host bridges (`pci-host-ecam-generic`, `device_type = "pci"`): their
//! windows, which StreamID each requester ID uses (`iommu-map`), and where legacy INTx
//! interrupts go (`interrupt-map`). A guest that is given a whole bridge drives its
//! devices, whose DMA the SMMU confines to the guest's stage 2.

use core::ops::Range;

use arrayvec::ArrayVec;

use crate::dt::DtText;
use crate::info::PhysRange;

/// Most PCI host bridges kept.
pub const MAX_PCI_HOST_BRIDGES: usize = 4;
/// Most I/O and memory windows of one bridge (QEMU has three).
pub const MAX_PCI_WINDOWS: usize = 6;
/// Most `iommu-map` entries of one bridge (QEMU has one).
pub const MAX_IOMMU_MAP_ENTRIES: usize = 8;
/// Most `interrupt-map` entries of one bridge (QEMU has 16: 4 slots x 4 pins).
pub const MAX_INTX_ROUTES: usize = 32;

/// Requester IDs are 16 bits: bus, device, function.
pub const RID_LIMIT: u32 = 1 << 16;

/// The PCI address space of a window (bits 24..=25 of the child address's first cell).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciSpace {
    /// I/O space, memory-mapped on Arm.
    Io,
    /// 32-bit memory.
    Mem32,
    /// 64-bit memory.
    Mem64,
}

/// One `ranges` window of a bridge (configuration-space entries are not windows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciWindow {
    pub space: PciSpace,
    pub prefetchable: bool,
    /// The window's start in PCI address space.
    pub pci_address: u64,
    /// Where the CPU sees it.
    pub cpu: PhysRange,
}

/// One `iommu-map` entry: requester IDs `rid_base..rid_base + length` use StreamIDs
/// `sid_base..sid_base + length` of the SMMU `smmu_phandle` names
/// (bindings/pci/pci-iommu.txt; an SMMUv3 has one-cell specifiers). The parser checks
/// that `length` is non-zero and that neither range passes its ID space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IommuMapEntry {
    pub rid_base: u32,
    pub smmu_phandle: u32,
    pub sid_base: u32,
    pub length: u32,
}

impl IommuMapEntry {
    /// The (masked) requester IDs the entry maps.
    pub fn rids(&self) -> Range<u32> {
        self.rid_base..self.rid_base.saturating_add(self.length)
    }

    /// The StreamIDs those requester IDs use.
    pub fn sids(&self) -> Range<u32> {
        self.sid_base..self.sid_base.saturating_add(self.length)
    }

    /// The StreamID of a (masked) requester ID, when the entry maps it.
    pub fn sid_of(&self, rid: u32) -> Option<u32> {
        self.rids()
            .contains(&rid)
            .then(|| self.sid_base + (rid - self.rid_base))
    }
}

/// One `interrupt-map` entry: a child unit address (`phys.hi phys.mid phys.lo`, as
/// written) and pin (1 = INTA .. 4 = INTD) that raise a GIC SPI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntxRoute {
    pub child_address: [u32; 3],
    pub pin: u32,
    /// The SPI as an INTID (SPI n is INTID 32 + n).
    pub intid: u32,
}

impl IntxRoute {
    /// The device number in `phys.hi` (bits 11..=15).
    pub const fn device(&self) -> u32 {
        (self.child_address[0] >> 11) & 0x1f
    }
}

/// `interrupt-map-mask`: what of a child's unit address and pin the lookup compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntxMask {
    pub child_address: [u32; 3],
    pub pin: u32,
}

impl IntxMask {
    /// No mask property: everything is compared (Linux's `of_irq_parse_raw`).
    pub const ALL: Self = Self {
        child_address: [u32::MAX; 3],
        pin: u32::MAX,
    };
}

/// A generic ECAM PCI host bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciHostBridge {
    pub path: DtText,
    /// The configuration space (`reg`): 1 MiB per bus.
    pub ecam: PhysRange,
    /// `bus-range` (0..=255 without one).
    pub first_bus: u8,
    pub last_bus: u8,
    /// The I/O and memory windows, in `ranges` order (size-0 entries left out).
    pub windows: ArrayVec<PciWindow, MAX_PCI_WINDOWS>,
    /// `iommu-map` in order; empty without one (its devices' DMA is then not behind an
    /// IOMMU the DT describes).
    pub iommu_map: ArrayVec<IommuMapEntry, MAX_IOMMU_MAP_ENTRIES>,
    /// `iommu-map-mask`: a requester ID is masked with it before the lookup.
    pub iommu_map_mask: Option<u32>,
    /// `interrupt-map` in order, every parent the GIC (the parser refuses others).
    pub intx: ArrayVec<IntxRoute, MAX_INTX_ROUTES>,
    pub intx_mask: IntxMask,
    /// `msi-parent` is present (MSIs go to one controller, usually the ITS).
    pub msi_parent: bool,
    /// `msi-map` is present (MSIs go to the ITS with a device ID per requester ID).
    pub msi_map: bool,
    /// `dma-coherent`.
    pub coherent: bool,
}

impl PciHostBridge {
    /// The requester IDs of the bridge's buses.
    pub fn rids(&self) -> Range<u32> {
        u32::from(self.first_bus) << 8..(u32::from(self.last_bus) + 1) << 8
    }

    /// The SMMU (its phandle) and StreamID a requester ID's DMA uses, as Linux's
    /// `of_map_id` finds them: the ID masked, then the first entry that maps it. `None`
    /// when the bridge has no `iommu-map` or no entry maps the ID.
    pub fn stream_of(&self, rid: u32) -> Option<(u32, u32)> {
        let masked = rid & self.iommu_map_mask.unwrap_or(u32::MAX);
        self.iommu_map
            .iter()
            .find_map(|entry| Some((entry.smmu_phandle, entry.sid_of(masked)?)))
    }

    /// The INTID a function's INTx pin (1..=4) raises, through `interrupt-map`.
    pub fn intx_intid(&self, bus: u8, device: u8, function: u8, pin: u32) -> Option<u32> {
        let hi =
            u32::from(bus) << 16 | u32::from(device & 0x1f) << 11 | u32::from(function & 7) << 8;
        let mask = self.intx_mask;
        let address = [hi, 0, 0].into_iter().zip(mask.child_address);
        self.intx
            .iter()
            .find(|route| {
                pin & mask.pin == route.pin
                    && address
                        .clone()
                        .zip(route.child_address)
                        .all(|((a, m), r)| a & m == r)
            })
            .map(|route| route.intid)
    }
}
