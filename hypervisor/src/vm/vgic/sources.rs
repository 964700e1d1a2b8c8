//! Interrupts arriving from outside the guest's registers: the lines of emulated devices
//! and hardware-linked physical interrupts.

use super::Vgic;
use super::config::{FIRST_PPI, FIRST_SPI, LAST_PPI, LAST_SPI};
use super::effects::Effects;
use super::state::IrqId;

/// `hardware_fired` named a physical INTID linked to nothing of this guest: EL2 must
/// deactivate it itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotLinked {
    pub physical_intid: u32,
}

impl Vgic {
    /// An emulated SPI's line. Level-sensitive: pending follows it (IHI 0069 §4.1.1);
    /// edge-triggered: a rising edge sets the latch.
    pub(crate) fn drive_line(&mut self, intid: u32, high: bool, effects: &mut Effects) {
        let id = self.spi_id(intid);
        let irq = id.and_then(|id| self.irq_mut(id));
        let Some(irq) = irq.filter(|irq| irq.hardware.is_none()) else {
            self.stats.refused_line_levels += 1;
            return;
        };
        let rising = high && !irq.line;
        irq.line = high;
        if irq.edge && rising {
            irq.latch = true;
        }
        if let Some(id) = id {
            self.notify(id, effects);
        }
    }

    pub(crate) fn fire_hardware(
        &mut self,
        cpu_vcpu: usize,
        physical_intid: u32,
        effects: &mut Effects,
    ) -> Result<(), NotLinked> {
        let Some(id) = self.linked(cpu_vcpu, physical_intid) else {
            self.stats.unlinked_fires += 1;
            return Err(NotLinked { physical_intid });
        };
        self.stats.hardware_fires += 1;
        self.pend(id, effects);
        Ok(())
    }

    /// The interrupt linked to `physical_intid`: a PPI of `cpu_vcpu` (same INTID), or an
    /// SPI.
    fn linked(&self, cpu_vcpu: usize, physical_intid: u32) -> Option<IrqId> {
        if (FIRST_PPI..=LAST_PPI).contains(&physical_intid) {
            let id = self.id_for(cpu_vcpu, physical_intid)?;
            self.irq(id)?.hardware?;
            return Some(id);
        }
        if !(FIRST_SPI..=LAST_SPI).contains(&physical_intid) {
            return None;
        }
        let physical = physical_intid as u16;
        let found = self
            .hardware_spis
            .binary_search_by_key(&physical, |&(p, _)| p)
            .ok()?;
        let &(_, index) = self.hardware_spis.get(found)?;
        Some(IrqId::Spi {
            index: usize::from(index),
        })
    }
}
