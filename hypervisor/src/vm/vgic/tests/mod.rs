//! Tests of the whole vGIC through its public API: the register maps
//! (`distributor`, `redistributor`), hostile accesses (`hostile`), configurations
//! (`config`), directed delivery scenarios (`delivery`), and the property test against a
//! reference model (`model`). Helpers shared by them are here, among them a simulated
//! CPU interface ([`CpuInterface`]) that acknowledges and deactivates list registers as a
//! guest's would.

mod config;
mod delivery;
mod distributor;
mod hostile;
mod model;
mod redistributor;

use std::vec::Vec;

use super::list_register::{ListRegister, LrKind, LrState};
use super::*;
use crate::vm::mmio::AccessSize::{self, Word};

/// The emulated SPIs of [`standard_config`] (a UART's line, a spare).
pub(super) const UART_SPI: u32 = 33;
pub(super) const SPARE_SPI: u32 = 34;
/// The hardware-linked SPIs of [`standard_config`] and their physical INTIDs.
pub(super) const DEVICE_SPI: u32 = 40;
pub(super) const DEVICE_PHYSICAL: u32 = 72;
pub(super) const OTHER_DEVICE_SPI: u32 = 41;
pub(super) const OTHER_DEVICE_PHYSICAL: u32 = 73;
/// The hardware-linked PPIs of [`standard_config`]: a timer, the PMU.
pub(super) const TIMER_PPI: u32 = 27;
pub(super) const PMU_PPI: u32 = 23;

/// Distributor offsets.
pub(super) const GICD_CTLR: u64 = 0x0000;
pub(super) const GICD_ISENABLER: u64 = 0x0100;
pub(super) const GICD_ICENABLER: u64 = 0x0180;
pub(super) const GICD_ISPENDR: u64 = 0x0200;
pub(super) const GICD_ICPENDR: u64 = 0x0280;
pub(super) const GICD_ISACTIVER: u64 = 0x0300;
pub(super) const GICD_ICACTIVER: u64 = 0x0380;
pub(super) const GICD_IGROUPR: u64 = 0x0080;
pub(super) const GICD_IPRIORITYR: u64 = 0x0400;
pub(super) const GICD_ICFGR: u64 = 0x0c00;
pub(super) const GICD_IROUTER: u64 = 0x6000;

/// SGI_base offsets in a redistributor frame.
pub(super) const SGI_BASE: u64 = 0x1_0000;

/// vCPU `i` has MPIDR Aff1 = 1, Aff0 = i.
pub(super) fn mpidr(vcpu: usize) -> u64 {
    0x100 | vcpu as u64
}

/// `vcpus` vCPUs, `lrs` list registers, 5 priority bits; SPIs 33 and 34 emulated, 40
/// and 41 hardware-linked (to 72 and 73); PPIs 23 and 27 hardware-linked.
pub(super) fn standard_config(vcpus: usize, lrs: usize) -> VgicConfig {
    VgicConfig {
        vcpu_mpidrs: (0..vcpus).map(mpidr).collect(),
        spis: std::vec![
            SpiAssignment {
                intid: UART_SPI,
                source: SpiSource::Emulated,
            },
            SpiAssignment {
                intid: DEVICE_SPI,
                source: SpiSource::Hardware {
                    physical_intid: DEVICE_PHYSICAL,
                },
            },
            SpiAssignment {
                intid: SPARE_SPI,
                source: SpiSource::Emulated,
            },
            SpiAssignment {
                intid: OTHER_DEVICE_SPI,
                source: SpiSource::Hardware {
                    physical_intid: OTHER_DEVICE_PHYSICAL,
                },
            },
        ],
        hardware_ppis: std::vec![TIMER_PPI, PMU_PPI],
        list_registers: lrs,
        priority_bits: 5,
    }
}

pub(super) fn standard(vcpus: usize, lrs: usize) -> Vgic {
    Vgic::new(standard_config(vcpus, lrs)).unwrap()
}

/// The bit of `intid` in its 32-bit register, and that register's offset from `base`.
pub(super) fn bit_of(base: u64, intid: u32) -> (u64, u64) {
    (base + 4 * u64::from(intid / 32), 1 << (intid % 32))
}

pub(super) fn dist_write(vgic: &mut Vgic, offset: u64, value: u64) -> Effects {
    let mut effects = Effects::new();
    vgic.distributor_write(offset, Word, value, &mut effects)
        .unwrap();
    effects
}

pub(super) fn dist_read(vgic: &mut Vgic, offset: u64) -> u64 {
    vgic.distributor_read(offset, Word).unwrap()
}

pub(super) fn redist_write(vgic: &mut Vgic, vcpu: usize, offset: u64, value: u64) -> Effects {
    let mut effects = Effects::new();
    vgic.redistributor_write(vcpu, offset, Word, value, &mut effects)
        .unwrap();
    effects
}

pub(super) fn redist_read(vgic: &mut Vgic, vcpu: usize, offset: u64) -> u64 {
    vgic.redistributor_read(vcpu, offset, Word).unwrap()
}

/// Writes the one-bit register `base` for `intid` (an SPI through the distributor, a
/// private one through `vcpu`'s redistributor).
pub(super) fn set_bit(vgic: &mut Vgic, vcpu: usize, base: u64, intid: u32) -> Effects {
    let (offset, bit) = bit_of(base, intid);
    if intid < 32 {
        redist_write(vgic, vcpu, SGI_BASE + offset, bit)
    } else {
        dist_write(vgic, offset, bit)
    }
}

/// Writes `intid`'s priority byte.
pub(super) fn set_priority(vgic: &mut Vgic, vcpu: usize, intid: u32, priority: u8) -> Effects {
    let mut effects = Effects::new();
    let offset = GICD_IPRIORITYR + u64::from(intid);
    let value = u64::from(priority);
    if intid < 32 {
        vgic.redistributor_write(
            vcpu,
            SGI_BASE + offset,
            AccessSize::Byte,
            value,
            &mut effects,
        )
    } else {
        vgic.distributor_write(offset, AccessSize::Byte, value, &mut effects)
    }
    .unwrap();
    effects
}

/// Group 0 and Group 1 forwarding on.
pub(super) fn enable_groups(vgic: &mut Vgic) {
    dist_write(vgic, GICD_CTLR, 0b11);
}

/// A guest's CPU interface as the tests drive it: the list registers of one vCPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct CpuInterface {
    pub(super) lrs: Vec<u64>,
}

impl CpuInterface {
    pub(super) fn new(count: usize) -> Self {
        Self {
            lrs: std::vec![0; count],
        }
    }

    /// An exit and an entry: fold, then flush.
    pub(super) fn run(&mut self, vgic: &mut Vgic, vcpu: usize) -> FlushOutcome {
        vgic.fold_list_registers(vcpu, &self.lrs);
        vgic.flush_list_registers(vcpu, &mut self.lrs)
    }

    pub(super) fn entries(&self) -> impl Iterator<Item = ListRegister> + '_ {
        self.lrs.iter().map(|&value| ListRegister::decode(value))
    }

    /// The guest reads ICC_IAR1_EL1: the highest-priority pending list register (lowest
    /// priority value, then lowest INTID) becomes active. Pending-and-active entries are
    /// not signalled.
    pub(super) fn acknowledge(&mut self) -> Option<ListRegister> {
        let (slot, lr) = self
            .entries()
            .enumerate()
            .filter(|(_, lr)| lr.state == LrState::Pending)
            .min_by_key(|(_, lr)| (lr.priority, lr.vintid))?;
        let acknowledged = ListRegister {
            state: LrState::Active,
            ..lr
        };
        self.lrs[slot] = acknowledged.encode();
        Some(lr)
    }

    /// The guest deactivates `intid` (EOIR with EOImode 0, or DIR): its list register's
    /// active state ends. Returns the entry as it was.
    pub(super) fn deactivate(&mut self, intid: u32) -> Option<ListRegister> {
        let (slot, lr) = self
            .entries()
            .enumerate()
            .find(|(_, lr)| lr.vintid == intid && lr.state.is_active())?;
        let state = if lr.state == LrState::PendingActive {
            LrState::Pending
        } else {
            LrState::Invalid
        };
        self.lrs[slot] = ListRegister { state, ..lr }.encode();
        Some(lr)
    }

    /// The state of `intid`'s list register, if a valid one holds it.
    pub(super) fn state_of(&self, intid: u32) -> Option<LrState> {
        self.entries()
            .find(|lr| lr.vintid == intid && lr.state != LrState::Invalid)
            .map(|lr| lr.state)
    }

    /// Whether the entry for `intid` is hardware-linked, and to what.
    pub(super) fn kind_of(&self, intid: u32) -> Option<LrKind> {
        self.entries()
            .find(|lr| lr.vintid == intid && lr.state != LrState::Invalid)
            .map(|lr| lr.kind)
    }

    /// Acknowledges and deactivates everything it can, repeatedly with `vgic` flushing
    /// in between; returns the INTIDs in the order acknowledged.
    pub(super) fn drain(&mut self, vgic: &mut Vgic, vcpu: usize) -> Vec<u32> {
        let mut order = Vec::new();
        for _ in 0..256 {
            self.run(vgic, vcpu);
            let Some(lr) = self.acknowledge() else {
                if self.entries().all(|lr| !lr.state.is_active()) {
                    break;
                }
                let active: Vec<u32> = self
                    .entries()
                    .filter(|lr| lr.state.is_active())
                    .map(|lr| lr.vintid)
                    .collect();
                for intid in active {
                    self.deactivate(intid);
                }
                continue;
            };
            order.push(lr.vintid);
            self.deactivate(lr.vintid);
        }
        order
    }
}
