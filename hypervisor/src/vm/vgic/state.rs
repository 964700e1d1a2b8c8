//! Where the interrupts live and how an INTID finds its state: 32 private interrupts in a
//! fixed array per vCPU, the guest's SPIs in a Vec sorted by INTID (sized once, in
//! [`Vgic::new`]), and lookup tables built with them.

use arrayvec::ArrayVec;

use super::Vgic;
use super::config::{AFFINITY_MASK, FIRST_SPI, MAX_LIST_REGISTERS, SpiAssignment, SpiSource};
use super::effects::{Effect, VcpuSet};
use super::irq::IrqState;

/// INTIDs 0..32 are private to each vCPU: SGIs 0..16, PPIs 16..32.
pub(crate) const PRIVATE_INTIDS: u32 = 32;
pub(crate) const SGIS: u32 = 16;

/// `GICD_IROUTER<n>`.Interrupt_Routing_Mode: 1 = any participating PE (IHI 0069 §12.9,
/// `GICD_IROUTER<n>`).
pub(crate) const ROUTE_ANY: u64 = 1 << 31;

/// Hardware effects folds can leave for the next flush: one per list register per fold,
/// for two folds.
pub(crate) const DEFERRED_EFFECTS: usize = 2 * MAX_LIST_REGISTERS;

/// Marks an INTID the guest does not own in [`Vgic::spi_lookup`].
pub(crate) const NOT_OWNED: u16 = u16::MAX;

/// One interrupt of the guest: a vCPU's private one, or an SPI by its index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IrqId {
    Private { vcpu: usize, intid: u32 },
    Spi { index: usize },
}

/// A vCPU's private interrupts, its list register shadow and its redistributor state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VcpuState {
    /// MPIDR_EL1's affinity fields.
    pub(crate) mpidr: u64,
    pub(crate) private: [IrqState; PRIVATE_INTIDS as usize],
    /// The INTID each list register holds, as last flushed (None: free).
    pub(crate) slots: [Option<u16>; MAX_LIST_REGISTERS],
    /// GICR_WAKER.ProcessorSleep (ChildrenAsleep follows it at once).
    pub(crate) asleep: bool,
    /// vCPUs to kick because this vCPU's fold or flush let go of an SPI routed to them.
    pub(crate) handoff: VcpuSet,
    /// Hardware effects a fold found necessary, for the next flush to hand over.
    pub(crate) deferred: ArrayVec<Effect, DEFERRED_EFFECTS>,
}

impl VcpuState {
    /// SGIs are edge-triggered (IHI 0069 §12.11, GICR_ICFGR0 is read-only); PPIs reset
    /// level-sensitive; `hardware_ppis` are linked to the physical PPI of the same INTID.
    pub(crate) fn new(mpidr: u64, hardware_ppis: &[u32]) -> Self {
        let private = core::array::from_fn(|intid| {
            let intid = intid as u32;
            let hardware = hardware_ppis.contains(&intid).then_some(intid as u16);
            IrqState::new(intid < SGIS, hardware)
        });
        Self {
            mpidr,
            private,
            slots: [None; MAX_LIST_REGISTERS],
            // GICR_WAKER.ProcessorSleep resets to 1 (IHI 0069 §12.11, GICR_WAKER).
            asleep: true,
            handoff: VcpuSet::new(),
            deferred: ArrayVec::new_const(),
        }
    }
}

/// One SPI the guest owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SpiState {
    pub(crate) intid: u32,
    pub(crate) irq: IrqState,
    /// `GICD_IROUTER<n>` as the guest wrote it (affinity and Interrupt_Routing_Mode).
    pub(crate) router: u64,
    /// The vCPU it is delivered to: the one whose MPIDR matches the router, vCPU 0 for
    /// Interrupt_Routing_Mode 1, none if no vCPU matches.
    pub(crate) target: Option<usize>,
}

impl SpiState {
    /// Level-sensitive at reset, routed to vCPU 0 (`GICD_IROUTER<n>` resets UNKNOWN; KVM
    /// and QEMU reset it to 0, which is vCPU 0 on usual MPIDRs).
    pub(crate) fn new(assignment: &SpiAssignment, vcpu0_mpidr: u64) -> Self {
        let hardware = match assignment.source {
            SpiSource::Emulated => None,
            SpiSource::Hardware { physical_intid } => Some(physical_intid as u16),
        };
        Self {
            intid: assignment.intid,
            irq: IrqState::new(false, hardware),
            router: vcpu0_mpidr & AFFINITY_MASK,
            target: Some(0),
        }
    }
}

/// Every interrupt that can concern vCPU `vcpu`: its private ones, then all SPIs.
pub(crate) fn ids_of_vcpu(vcpu: usize, spi_count: usize) -> impl Iterator<Item = IrqId> {
    let private = (0..PRIVATE_INTIDS).map(move |intid| IrqId::Private { vcpu, intid });
    private.chain((0..spi_count).map(|index| IrqId::Spi { index }))
}

/// Every interrupt of a guest with `vcpu_count` vCPUs and `spi_count` SPIs.
pub(crate) fn all_ids(vcpu_count: usize, spi_count: usize) -> impl Iterator<Item = IrqId> {
    let private = (0..vcpu_count)
        .flat_map(|vcpu| (0..PRIVATE_INTIDS).map(move |intid| IrqId::Private { vcpu, intid }));
    private.chain((0..spi_count).map(|index| IrqId::Spi { index }))
}

impl Vgic {
    pub(crate) fn irq(&self, id: IrqId) -> Option<&IrqState> {
        match id {
            IrqId::Private { vcpu, intid } => self
                .vcpus
                .get(vcpu)
                .and_then(|v| v.private.get(intid as usize)),
            IrqId::Spi { index } => self.spis.get(index).map(|spi| &spi.irq),
        }
    }

    pub(crate) fn irq_mut(&mut self, id: IrqId) -> Option<&mut IrqState> {
        match id {
            IrqId::Private { vcpu, intid } => self
                .vcpus
                .get_mut(vcpu)
                .and_then(|v| v.private.get_mut(intid as usize)),
            IrqId::Spi { index } => self.spis.get_mut(index).map(|spi| &mut spi.irq),
        }
    }

    /// The SPI `intid` if the guest owns it.
    pub(crate) fn spi_id(&self, intid: u32) -> Option<IrqId> {
        let offset = intid.checked_sub(FIRST_SPI)?;
        let index = *self.spi_lookup.get(offset as usize)?;
        (index != NOT_OWNED).then_some(IrqId::Spi {
            index: usize::from(index),
        })
    }

    /// Interrupt `intid` as vCPU `vcpu` sees it: its own private one or an owned SPI.
    pub(crate) fn id_for(&self, vcpu: usize, intid: u32) -> Option<IrqId> {
        if intid < PRIVATE_INTIDS {
            (vcpu < self.vcpus.len()).then_some(IrqId::Private { vcpu, intid })
        } else {
            self.spi_id(intid)
        }
    }

    pub(crate) fn intid_of(&self, id: IrqId) -> u32 {
        match id {
            IrqId::Private { intid, .. } => intid,
            IrqId::Spi { index } => self.spis.get(index).map_or(0, |spi| spi.intid),
        }
    }

    /// The vCPU the interrupt is delivered to.
    pub(crate) fn target(&self, id: IrqId) -> Option<usize> {
        match id {
            IrqId::Private { vcpu, .. } => Some(vcpu),
            IrqId::Spi { index } => self.spis.get(index).and_then(|spi| spi.target),
        }
    }

    /// GICD_CTLR.EnableGrp0/EnableGrp1 for the interrupt's group: the distributor
    /// forwards nothing of a disabled group (IHI 0069 §12.9, GICD_CTLR).
    pub(crate) fn group_enabled(&self, irq: &IrqState) -> bool {
        if irq.group1 {
            self.enable_group1
        } else {
            self.enable_group0
        }
    }

    /// The vCPU whose MPIDR affinity is `affinity` (Aff3..Aff0 as in MPIDR_EL1).
    pub(crate) fn vcpu_with_affinity(&self, affinity: u64) -> Option<usize> {
        let found = self
            .affinities
            .binary_search_by_key(&affinity, |&(mpidr, _)| mpidr);
        let index = found.ok()?;
        self.affinities
            .get(index)
            .map(|&(_, vcpu)| usize::from(vcpu))
    }

    /// The interrupt in list register `slot` of vCPU `vcpu`.
    pub(crate) fn id_in_slot(&self, vcpu: usize, slot: usize) -> Option<IrqId> {
        let intid = (*self.vcpus.get(vcpu)?.slots.get(slot)?)?;
        self.id_for(vcpu, u32::from(intid))
    }
}
