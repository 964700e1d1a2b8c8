//! The SMMUv3s (`arm,smmu-v3`) the device tree describes: the hypervisor drives them
//! itself, so that the devices behind them can be given to a guest whose stage-2 tables
//! they then translate through.

use crate::dt::DtText;
use crate::info::PhysRange;

/// Most SMMUv3 nodes kept.
pub const MAX_SMMUS: usize = 4;

/// One `arm,smmu-v3` node (bindings/iommu/arm,smmu-v3.yaml).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmmuV3 {
    /// The register frame (page 0 and page 1: 128 KiB on QEMU).
    pub regs: PhysRange,
    /// The node path, for messages (long paths keep their end).
    pub path: DtText,
    /// What `iommus` and `iommu-map` entries name it by; `None` when nothing can.
    pub phandle: Option<u32>,
    /// The wired interrupts as INTIDs, by `interrupt-names` (`eventq`, `gerror`,
    /// `priq`, `cmdq-sync`; `combined` stands for the first three), else in the
    /// binding's order eventq, gerror, priq, cmdq-sync. `None` when not wired (an SMMU
    /// may signal by MSI only).
    pub event_intid: Option<u32>,
    pub gerror_intid: Option<u32>,
    pub priq_intid: Option<u32>,
    pub cmdq_sync_intid: Option<u32>,
    /// `dma-coherent`: its table walks and queue accesses snoop the CPUs' caches.
    pub coherent: bool,
}
