//! The reference model: the architecture's view of each interrupt the operations touch
//! (IHI 0069 §4.1: inactive, pending, active, active and pending; enabled; group;
//! trigger; routing), and of the simulated physical GIC's hardware-linked interrupts.

use std::collections::BTreeMap;

use super::super::*;

/// The INTIDs the operations touch: SGIs 1-3, an emulated PPI, the hardware timer PPI,
/// the emulated SPIs and the hardware-linked SPIs of [`standard_config`].
pub(super) const INTIDS: [u32; 9] = [
    1,
    2,
    3,
    16,
    TIMER_PPI,
    UART_SPI,
    SPARE_SPI,
    DEVICE_SPI,
    OTHER_DEVICE_SPI,
];
pub(super) const SPIS: [u32; 4] = [UART_SPI, SPARE_SPI, DEVICE_SPI, OTHER_DEVICE_SPI];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Key {
    Private(usize, u32),
    Spi(u32),
}

impl Key {
    pub(super) fn of(vcpu: usize, intid: u32) -> Self {
        if intid < 32 {
            Self::Private(vcpu, intid)
        } else {
            Self::Spi(intid)
        }
    }

    pub(super) fn intid(self) -> u32 {
        match self {
            Self::Private(_, intid) | Self::Spi(intid) => intid,
        }
    }
}

/// The architecture's view of one interrupt.
#[derive(Clone, Copy, Debug)]
pub(super) struct ModelIrq {
    pub(super) enabled: bool,
    pub(super) group1: bool,
    pub(super) edge: bool,
    pub(super) priority: u8,
    pub(super) latch: bool,
    pub(super) line: bool,
    pub(super) active: bool,
    pub(super) hardware: Option<u32>,
    /// Hardware-linked: a pend asked for (device or ISPENDR) and not acknowledged yet.
    pub(super) owed: bool,
}

impl ModelIrq {
    pub(super) fn new(intid: u32) -> Self {
        let hardware = match intid {
            TIMER_PPI => Some(TIMER_PPI),
            DEVICE_SPI => Some(DEVICE_PHYSICAL),
            OTHER_DEVICE_SPI => Some(OTHER_DEVICE_PHYSICAL),
            _ => None,
        };
        Self {
            enabled: false,
            group1: true,
            edge: intid < 16,
            priority: 0,
            latch: false,
            line: false,
            active: false,
            hardware,
            owed: false,
        }
    }

    pub(super) fn level_line(&self) -> bool {
        self.hardware.is_none() && !self.edge
    }

    pub(super) fn pending(&self) -> bool {
        self.latch || (self.level_line() && self.line)
    }
}

pub(super) struct Model {
    pub(super) irqs: BTreeMap<Key, ModelIrq>,
    pub(super) targets: BTreeMap<u32, Option<usize>>,
    pub(super) group0: bool,
    pub(super) group1: bool,
}

impl Model {
    pub(super) fn new(vcpus: usize) -> Self {
        let mut irqs = BTreeMap::new();
        for vcpu in 0..vcpus {
            for intid in INTIDS.into_iter().filter(|&i| i < 32) {
                irqs.insert(Key::Private(vcpu, intid), ModelIrq::new(intid));
            }
        }
        for intid in SPIS {
            irqs.insert(Key::Spi(intid), ModelIrq::new(intid));
        }
        Self {
            irqs,
            targets: SPIS.into_iter().map(|intid| (intid, Some(0))).collect(),
            group0: false,
            group1: false,
        }
    }

    pub(super) fn irq(&mut self, key: Key) -> &mut ModelIrq {
        self.irqs.get_mut(&key).unwrap()
    }

    pub(super) fn target(&self, key: Key) -> Option<usize> {
        match key {
            Key::Private(vcpu, _) => Some(vcpu),
            Key::Spi(intid) => self.targets[&intid],
        }
    }

    /// Forwarded to `vcpu` if it can take it: pending, enabled, group enabled, routed.
    pub(super) fn deliverable(&self, key: Key, vcpu: usize) -> bool {
        let irq = &self.irqs[&key];
        let group = if irq.group1 { self.group1 } else { self.group0 };
        irq.enabled && group && irq.pending() && self.target(key) == Some(vcpu)
    }

    pub(super) fn acknowledgeable(&self, key: Key, vcpu: usize) -> bool {
        self.deliverable(key, vcpu) && !self.irqs[&key].active
    }
}

/// A physical interrupt of the simulated GIC: (vCPU for a PPI, physical INTID).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Physical {
    pub(super) enabled: bool,
    pub(super) pending: bool,
    pub(super) active: bool,
}
