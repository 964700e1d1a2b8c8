//! The harness: a vGIC, the reference model, a simulated CPU interface per vCPU and the
//! simulated physical GIC, driven by one operation at a time, with the checks after each.

use std::collections::BTreeMap;
use std::vec::Vec;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::super::*;
use super::ops::Op;
use super::reference::{Key, Model, Physical};

pub(super) type Outcome = Result<(), TestCaseError>;

pub(super) struct Harness {
    pub(super) vgic: Vgic,
    pub(super) model: Model,
    pub(super) cpus: Vec<CpuInterface>,
    /// What each vCPU's last flush wrote.
    pub(super) flushed: Vec<Vec<u64>>,
    pub(super) physical: BTreeMap<(Option<usize>, u32), Physical>,
    /// Active-state writes racing with the CPU interface of the vCPU holding the
    /// interrupt in a list register: the value written and that vCPU. The order is not
    /// knowable; the holder's next fold decides.
    pub(super) racing_active_writes: BTreeMap<Key, (bool, usize)>,
    pub(super) vcpus: usize,
    pub(super) priority_bits: u8,
}

impl Harness {
    pub(super) fn new(vcpus: usize, lrs: usize, priority_bits: u8) -> Self {
        let mut config = standard_config(vcpus, lrs);
        config.priority_bits = priority_bits;
        Self {
            vgic: Vgic::new(config).unwrap(),
            model: Model::new(vcpus),
            cpus: (0..vcpus).map(|_| CpuInterface::new(lrs)).collect(),
            flushed: (0..vcpus).map(|_| std::vec![0; lrs]).collect(),
            physical: BTreeMap::new(),
            racing_active_writes: BTreeMap::new(),
            vcpus,
            priority_bits,
        }
    }

    pub(super) fn queued(&self) -> Vec<bool> {
        (0..self.vcpus)
            .map(|vcpu| self.vgic.has_queued(vcpu))
            .collect()
    }

    pub(super) fn physical_key(vcpu: usize, physical_intid: u32) -> (Option<usize>, u32) {
        if physical_intid < 32 {
            (Some(vcpu), physical_intid)
        } else {
            (None, physical_intid)
        }
    }

    pub(super) fn virtual_key(physical: (Option<usize>, u32)) -> Key {
        match physical {
            (Some(vcpu), intid) => Key::Private(vcpu, intid),
            (None, DEVICE_PHYSICAL) => Key::Spi(DEVICE_SPI),
            (None, _) => Key::Spi(OTHER_DEVICE_SPI),
        }
    }

    /// After a call: its kicks cover every vCPU it gave queued work, its hardware effects
    /// reach the simulated physical GIC, which may fire.
    pub(super) fn settle(&mut self, effects: &Effects, before: &[bool]) -> Outcome {
        prop_assert!(!effects.overflowed());
        for (vcpu, &was_queued) in before.iter().enumerate() {
            if !was_queued && self.vgic.has_queued(vcpu) {
                prop_assert!(effects.kicks().contains(vcpu), "vCPU {} not kicked", vcpu);
            }
        }
        for effect in effects.iter() {
            match effect {
                Effect::HardwareEnable {
                    physical_intid,
                    vcpu,
                    enabled,
                } => {
                    self.physical
                        .entry(Self::physical_key(vcpu, physical_intid))
                        .or_default()
                        .enabled = enabled;
                }
                Effect::HardwarePending {
                    physical_intid,
                    vcpu,
                    pending,
                } => {
                    self.physical
                        .entry(Self::physical_key(vcpu, physical_intid))
                        .or_default()
                        .pending = pending;
                }
                Effect::HardwareActive {
                    physical_intid,
                    vcpu,
                    active,
                } => {
                    self.physical
                        .entry(Self::physical_key(vcpu, physical_intid))
                        .or_default()
                        .active = active;
                }
                Effect::Kick { .. }
                | Effect::HardwareRoute { .. }
                | Effect::HardwareTrigger { .. } => {}
            }
        }
        self.fire_physical()
    }

    /// The physical GIC signals what it can; EL2 acknowledges it and tells the vGIC.
    pub(super) fn fire_physical(&mut self) -> Outcome {
        let ready: Vec<(Option<usize>, u32)> = self
            .physical
            .iter()
            .filter(|(_, p)| p.enabled && p.pending && !p.active)
            .map(|(&key, _)| key)
            .collect();
        for key in ready {
            let physical = self.physical.get_mut(&key).unwrap();
            physical.active = true;
            physical.pending = false;
            let before = self.queued();
            let mut effects = Effects::new();
            let fired = self
                .vgic
                .hardware_fired(key.0.unwrap_or(0), key.1, &mut effects);
            prop_assert!(fired.is_ok());
            self.model.irq(Self::virtual_key(key)).latch = true;
            self.settle(&effects, &before)?;
        }
        Ok(())
    }

    pub(super) fn bit_write(&mut self, vcpu: usize, base: u64, intid: u32) -> Effects {
        set_bit(&mut self.vgic, vcpu, base, intid)
    }

    pub(super) fn apply(&mut self, op: Op) -> Outcome {
        let before = self.queued();
        let effects = match op {
            Op::Run { vcpu } => return self.run(vcpu, true),
            Op::Deactivate { vcpu, nth } => return self.deactivate_nth(vcpu, nth),
            Op::Device { vcpu, intid } => return self.device(vcpu, intid),
            Op::Sgi { .. } => self.sgi(op)?,
            _ => self.register_write(op)?,
        };
        self.settle(&effects, &before)
    }

    /// A device asserts hardware-linked `intid` (for the timer, on `vcpu`'s CPU).
    pub(super) fn device(&mut self, vcpu: usize, intid: u32) -> Outcome {
        let key = Key::of(vcpu, intid);
        let physical_intid = self.model.irqs[&key].hardware.unwrap();
        self.physical
            .entry(Self::physical_key(vcpu, physical_intid))
            .or_default()
            .pending = true;
        self.model.irq(key).owed = true;
        self.fire_physical()
    }
}
