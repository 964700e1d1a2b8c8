//! The platform facts the hypervisor needs, as one plain value without heap allocation
//! (it is built before the heap exists). Strings borrow from the DTB, which stays reserved
//! for the hypervisor's lifetime.

use arrayvec::ArrayVec;

mod pci;
mod smmu;

pub use pci::{
    IntxMask, IntxRoute, IommuMapEntry, MAX_INTX_ROUTES, MAX_IOMMU_MAP_ENTRIES,
    MAX_PCI_HOST_BRIDGES, MAX_PCI_WINDOWS, PciHostBridge, PciSpace, PciWindow, RID_LIMIT,
};
pub use smmu::{MAX_SMMUS, SmmuV3};

/// Most memory banks kept from `/memory` nodes.
pub const MAX_MEMORY_BANKS: usize = 16;
/// Most reserved ranges (/memreserve/ plus /reserved-memory children).
pub const MAX_RESERVED: usize = 32;
/// Most CPUs described under `/cpus`.
pub const MAX_CPUS: usize = 64;
/// Most `multiboot,module` nodes under `/chosen`.
pub const MAX_MODULES: usize = 8;
/// Most GICv3 redistributor regions.
pub const MAX_REDIST_REGIONS: usize = 4;

/// A physical address range `[base, base + size)`; `size` is never zero and the end
/// never overflows (the parser checks both).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhysRange {
    pub base: u64,
    pub size: u64,
}

impl PhysRange {
    /// Returns `None` for an empty range or one whose end overflows.
    pub const fn new(base: u64, size: u64) -> Option<Self> {
        if size == 0 || base.checked_add(size).is_none() {
            None
        } else {
            Some(Self { base, size })
        }
    }

    /// One past the last byte.
    pub const fn end(&self) -> u64 {
        self.base + self.size
    }

    pub const fn overlaps(&self, other: &PhysRange) -> bool {
        self.base < other.end() && other.base < self.end()
    }

    pub const fn contains_range(&self, other: &PhysRange) -> bool {
        other.base >= self.base && other.end() <= self.end()
    }

    pub const fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr < self.end()
    }
}

/// Where a reserved range came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReservationSource<'dtb> {
    /// The DTB header's memory reservation block.
    MemReserve,
    /// A child of `/reserved-memory` with a `reg`; the node name.
    ReservedMemoryNode(&'dtb str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReservedRange<'dtb> {
    pub range: PhysRange,
    pub source: ReservationSource<'dtb>,
    /// `no-map` was present: the range must not be mapped at all.
    pub no_map: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpu {
    /// The `reg` of the cpu node: MPIDR affinity bits (Aff3..Aff0).
    pub mpidr: u64,
}

/// The serial console named by `/chosen/stdout-path`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Console<'dtb> {
    pub kind: ConsoleKind,
    pub regs: PhysRange,
    /// The node path, e.g. `/pl011@9000000`.
    pub path: &'dtb str,
    /// The baud rate from the stdout-path options (`...:115200n8`), if any.
    pub baud: Option<u32>,
    /// Its interrupt (the first of `interrupts`, as an INTID), for console input; `None`
    /// when absent or malformed: output works without it.
    pub intid: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleKind {
    /// `arm,pl011`.
    Pl011,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GicV3 {
    pub distributor: PhysRange,
    pub redistributors: ArrayVec<PhysRange, MAX_REDIST_REGIONS>,
    /// The virtual CPU interface maintenance interrupt, as an INTID (PPI 9 is INTID 25).
    pub maintenance_intid: Option<u32>,
    /// ITS frame, if described.
    pub its: Option<PhysRange>,
}

/// Generic timer PPIs, as INTIDs (`arm,armv8-timer` interrupts, in binding order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timer {
    pub secure_phys_intid: u32,
    pub nonsecure_phys_intid: u32,
    pub virt_intid: u32,
    pub hyp_phys_intid: u32,
    /// `clock-frequency`, when the DT overrides CNTFRQ_EL0.
    pub frequency_hz: Option<u32>,
}

/// How to reach PSCI firmware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    Smc,
    Hvc,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Psci {
    pub conduit: Conduit,
    /// The highest `arm,psci-X.Y` compatible, as (major, minor); (0, 2) for `arm,psci-0.2`.
    pub version: (u16, u16),
}

/// What the `compatible` of a `multiboot,module` node says the module is. Xen's fallback
/// (first module kernel, second ramdisk) is applied by the guest loader, not here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleKind {
    Kernel,
    Ramdisk,
    DeviceTree,
    XsmPolicy,
    /// Only `multiboot,module`.
    Unspecified,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootModule<'dtb> {
    pub kind: ModuleKind,
    pub range: PhysRange,
    /// The module's own `bootargs` (for a kernel: the guest's command line).
    pub bootargs: Option<&'dtb str>,
    /// The node name, e.g. `module@0x50000000`.
    pub name: &'dtb str,
}

/// Everything the hypervisor learns from the device tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformInfo<'dtb> {
    /// The DTB blob itself (base as handed over, `totalsize` from its header).
    pub dtb: PhysRange,
    /// RAM banks, sorted by base, non-overlapping.
    pub memory: ArrayVec<PhysRange, MAX_MEMORY_BANKS>,
    /// Reserved ranges, sorted by base, non-overlapping.
    pub reserved: ArrayVec<ReservedRange<'dtb>, MAX_RESERVED>,
    /// `/chosen/bootargs`: the hypervisor's command line.
    pub bootargs: Option<&'dtb str>,
    /// `/chosen/stdout-path` as written.
    pub stdout_path: Option<&'dtb str>,
    pub console: Console<'dtb>,
    /// CPUs in DT order; the boot CPU need not be first.
    pub cpus: ArrayVec<Cpu, MAX_CPUS>,
    pub gic: GicV3,
    pub timer: Option<Timer>,
    /// The PMU's per-CPU interrupt (a PPI, as an INTID), if a PMU node names one.
    pub pmu_intid: Option<u32>,
    pub psci: Option<Psci>,
    /// `multiboot,module` children of `/chosen`, in DT order.
    pub modules: ArrayVec<BootModule<'dtb>, MAX_MODULES>,
    /// Available `arm,smmu-v3` nodes, in DT order.
    pub smmus: ArrayVec<SmmuV3, MAX_SMMUS>,
    /// Available generic ECAM PCI host bridges, in DT order; every `iommu-map` entry
    /// names one of `smmus`.
    pub pci_host_bridges: ArrayVec<PciHostBridge, MAX_PCI_HOST_BRIDGES>,
}

impl PlatformInfo<'_> {
    /// Total bytes of RAM over all banks.
    pub fn ram_bytes(&self) -> u64 {
        self.memory.iter().map(|bank| bank.size).sum()
    }
}
