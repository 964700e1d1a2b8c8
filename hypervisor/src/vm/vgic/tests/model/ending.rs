//! The end of a scenario: the guest drains everything, then nothing may be left
//! undelivered and the registers must read back the model.

use std::vec::Vec;

use proptest::prelude::*;

use super::super::*;
use super::harness::{Harness, Outcome};
use super::ops::Op;
use super::reference::{Key, ModelIrq};

impl Harness {
    /// Lines drop, devices stop; every vCPU runs, acknowledging and deactivating, until
    /// nothing changes.
    pub(super) fn quiesce(&mut self) -> Outcome {
        for intid in [UART_SPI, SPARE_SPI] {
            self.apply(Op::Line { intid, high: false })?;
        }
        for _ in 0..64 {
            let mut progress = false;
            for vcpu in 0..self.vcpus {
                self.run(vcpu, false)?;
                while self.acknowledge(vcpu)? {
                    progress = true;
                }
                let active: Vec<u32> = self.cpus[vcpu]
                    .entries()
                    .filter(|lr| lr.state.is_active())
                    .map(|lr| lr.vintid)
                    .collect();
                progress |= !active.is_empty();
                for intid in active {
                    self.deactivate(vcpu, intid)?;
                }
            }
            // A handoff (an SPI let go by one vCPU's fold) leaves work queued.
            if !progress && self.queued().iter().all(|&queued| !queued) {
                return Ok(());
            }
        }
        prop_assert!(false, "the guest never quiesced");
        Ok(())
    }

    /// Nothing deliverable is left, no hardware pend is lost, and the registers read back
    /// the model.
    pub(super) fn check_final(&mut self) -> Outcome {
        let keys: Vec<Key> = self.model.irqs.keys().copied().collect();
        for key in keys {
            let irq = self.model.irqs[&key];
            let target = self.model.target(key);
            let delivered = target.is_none_or(|vcpu| !self.model.acknowledgeable(key, vcpu));
            prop_assert!(delivered, "{:?} left undelivered: {:?}", key, irq);
            let group = if irq.group1 {
                self.model.group1
            } else {
                self.model.group0
            };
            let reachable = irq.enabled && group && target.is_some() && !irq.active;
            prop_assert!(
                !(irq.owed && reachable),
                "a hardware pend of {:?} was lost",
                key
            );
            self.check_registers(key, irq)?;
        }
        Ok(())
    }

    pub(super) fn check_registers(&mut self, key: Key, irq: ModelIrq) -> Outcome {
        let (vcpu, intid) = match key {
            Key::Private(vcpu, intid) => (vcpu, intid),
            Key::Spi(intid) => (0, intid),
        };
        let bit = 1u64 << (intid % 32);
        let word = 4 * u64::from(intid / 32);
        let read = |vgic: &mut Vgic, offset: u64| {
            if intid < 32 {
                redist_read(vgic, vcpu, SGI_BASE + offset)
            } else {
                dist_read(vgic, offset)
            }
        };
        prop_assert_eq!(
            read(&mut self.vgic, GICD_ISPENDR + word) & bit != 0,
            irq.pending(),
            "pending {:?}",
            key
        );
        prop_assert_eq!(
            read(&mut self.vgic, GICD_ISACTIVER + word) & bit != 0,
            irq.active,
            "active {:?}",
            key
        );
        prop_assert_eq!(
            read(&mut self.vgic, GICD_ISENABLER + word) & bit != 0,
            irq.enabled
        );
        prop_assert_eq!(
            read(&mut self.vgic, GICD_IGROUPR + word) & bit != 0,
            irq.group1
        );
        let config = read(&mut self.vgic, GICD_ICFGR + 4 * u64::from(intid / 16));
        prop_assert_eq!(config & (2 << (2 * (intid % 16))) != 0, irq.edge);
        let priority = read(&mut self.vgic, GICD_IPRIORITYR + u64::from(intid & !3));
        prop_assert_eq!((priority >> (8 * (intid % 4))) as u8, irq.priority);
        Ok(())
    }
}
