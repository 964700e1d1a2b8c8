//! The registers with one field per INTID, which the distributor (SPIs) and each
//! redistributor (its vCPU's SGIs and PPIs) share: IGROUPR, IS/ICENABLER, IS/ICPENDR,
//! IS/ICACTIVER (a bit each), IPRIORITYR (a byte each), ICFGR (two bits each).
//!
//! With affinity routing the distributor's fields for INTIDs 0..32 are RAZ/WI (IHI 0069
//! §12.9, e.g. `GICD_ISENABLER<n>`: "When affinity routing is enabled, GICD_ISENABLER0 is
//! RAZ/WI"); so are the redistributor's for INTIDs it does not have. A field of an SPI
//! the guest does not own reads as zero and ignores writes; a write setting any of
//! those fields is counted ([`super::VgicStats::refused_foreign_writes`]).

use super::Vgic;
use super::config::LAST_SPI;
use super::effects::Effects;
use super::state::{IrqId, PRIVATE_INTIDS, SGIS};

/// Which frame an access came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bank {
    Distributor,
    Redistributor(usize),
}

/// The registers with a bit per INTID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BitRegister {
    Group,
    SetEnable,
    ClearEnable,
    SetPending,
    ClearPending,
    SetActive,
    ClearActive,
}

/// What an INTID's field in a register is.
enum Field {
    Owned(IrqId),
    /// An SPI of another guest (or of nobody).
    Foreign,
    /// RAZ/WI by the architecture (private INTIDs in the distributor, none beyond 1019).
    Reserved,
}

impl Vgic {
    fn field(&self, bank: Bank, intid: u32) -> Field {
        match bank {
            Bank::Distributor if (PRIVATE_INTIDS..=LAST_SPI).contains(&intid) => {
                self.spi_id(intid).map_or(Field::Foreign, Field::Owned)
            }
            Bank::Redistributor(vcpu) if intid < PRIVATE_INTIDS => self
                .id_for(vcpu, intid)
                .map_or(Field::Reserved, Field::Owned),
            _ => Field::Reserved,
        }
    }

    /// The 32 bits of `register` for INTIDs `first..first + 32`.
    pub(crate) fn read_bits(&self, bank: Bank, register: BitRegister, first: u32) -> u32 {
        (0..32u32)
            .filter(|&bit| self.bit(bank, register, first + bit))
            .fold(0, |word, bit| word | (1 << bit))
    }

    fn bit(&self, bank: Bank, register: BitRegister, intid: u32) -> bool {
        let Field::Owned(id) = self.field(bank, intid) else {
            return false;
        };
        let Some(irq) = self.irq(id) else {
            return false;
        };
        match register {
            BitRegister::Group => irq.group1,
            BitRegister::SetEnable | BitRegister::ClearEnable => irq.enabled,
            BitRegister::SetPending | BitRegister::ClearPending => irq.pending(),
            BitRegister::SetActive | BitRegister::ClearActive => irq.active,
        }
    }

    /// A write of `value` to `register` for INTIDs `first..first + 32`: IGROUPR takes
    /// every bit; the set and clear registers act on the 1 bits (IHI 0069 §12.9).
    pub(crate) fn write_bits(
        &mut self,
        bank: Bank,
        register: BitRegister,
        first: u32,
        value: u32,
        effects: &mut Effects,
    ) {
        let mut foreign = false;
        for bit in 0..32u32 {
            let set = value & (1 << bit) != 0;
            match self.field(bank, first + bit) {
                Field::Owned(id) => self.write_bit(register, id, set, effects),
                Field::Foreign => foreign |= set,
                Field::Reserved => {}
            }
        }
        self.count_foreign(foreign);
    }

    fn write_bit(&mut self, register: BitRegister, id: IrqId, set: bool, effects: &mut Effects) {
        match (register, set) {
            (BitRegister::Group, group1) => self.set_group(id, group1, effects),
            (_, false) => {}
            (BitRegister::SetEnable, true) => self.set_enabled(id, true, effects),
            (BitRegister::ClearEnable, true) => self.set_enabled(id, false, effects),
            (BitRegister::SetPending, true) => self.guest_set_pending(id, effects),
            (BitRegister::ClearPending, true) => self.guest_clear_pending(id, effects),
            (BitRegister::SetActive, true) => self.guest_set_active(id, true, effects),
            (BitRegister::ClearActive, true) => self.guest_set_active(id, false, effects),
        }
    }

    /// IPRIORITYR bytes for INTIDs `first..first + count`, little-endian.
    pub(crate) fn read_priorities(&self, bank: Bank, first: u32, count: u32) -> u64 {
        (0..count).fold(0, |value, i| {
            let priority = match self.field(bank, first + i) {
                Field::Owned(id) => self.irq(id).map_or(0, |irq| irq.priority),
                Field::Foreign | Field::Reserved => 0,
            };
            value | (u64::from(priority) << (8 * i))
        })
    }

    /// A write of IPRIORITYR bytes for INTIDs `first..first + count`. All 8 bits are
    /// kept (IHI 0069 §12.9, `GICD_IPRIORITYR<n>`: the number of implemented bits is
    /// IMPLEMENTATION DEFINED); list registers carry the top PRIbits.
    pub(crate) fn write_priorities(
        &mut self,
        bank: Bank,
        first: u32,
        count: u32,
        value: u64,
        effects: &mut Effects,
    ) {
        let mut foreign = false;
        for i in 0..count {
            let priority = (value >> (8 * i)) as u8;
            match self.field(bank, first + i) {
                Field::Owned(id) => self.set_priority(id, priority, effects),
                Field::Foreign => foreign |= priority != 0,
                Field::Reserved => {}
            }
        }
        self.count_foreign(foreign);
    }

    /// ICFGR for INTIDs `first..first + 16`: Int_config[1] (bit 2i + 1) is 1 for
    /// edge-triggered; bit 2i is RES0.
    pub(crate) fn read_config(&self, bank: Bank, first: u32) -> u32 {
        (0..16u32).fold(0, |word, i| {
            let edge = match self.field(bank, first + i) {
                Field::Owned(id) => self.irq(id).is_some_and(|irq| irq.edge),
                Field::Foreign | Field::Reserved => false,
            };
            word | (u32::from(edge) << (2 * i + 1))
        })
    }

    /// A write of ICFGR for INTIDs `first..first + 16`. SGIs are always edge-triggered
    /// (GICR_ICFGR0 is read-only); whether a PPI's configuration is writable is
    /// IMPLEMENTATION DEFINED (IHI 0069, GICR_ICFGR1): here it is, except for the
    /// hardware-linked PPIs, which keep the physical ones' (level: the timers, the PMU).
    pub(crate) fn write_config(
        &mut self,
        bank: Bank,
        first: u32,
        value: u32,
        effects: &mut Effects,
    ) {
        let mut foreign = false;
        for i in 0..16u32 {
            let edge = value & (1 << (2 * i + 1)) != 0;
            match self.field(bank, first + i) {
                Field::Owned(id) => {
                    let changes = self.irq(id).is_some_and(|irq| irq.edge != edge);
                    if changes && Self::config_writable(id, self.irq(id).and_then(|i| i.hardware)) {
                        self.set_edge(id, edge, effects);
                    }
                }
                Field::Foreign => foreign |= edge,
                Field::Reserved => {}
            }
        }
        self.count_foreign(foreign);
    }

    fn config_writable(id: IrqId, hardware: Option<u16>) -> bool {
        match id {
            IrqId::Private { intid, .. } => intid >= SGIS && hardware.is_none(),
            IrqId::Spi { .. } => true,
        }
    }

    fn count_foreign(&mut self, foreign: bool) {
        if foreign {
            self.stats.refused_foreign_writes += 1;
        }
    }
}
