//! The vCPU side: runs (fold and flush) with the checks on the list registers, the
//! guest acknowledging and deactivating.

use std::vec::Vec;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::super::*;
use super::harness::{Harness, Outcome};
use super::reference::Key;
use crate::vm::vgic::list_register::lr_priority;

impl Harness {
    /// An exit and an entry of `vcpu`, then (if `acknowledge`) the guest takes one
    /// interrupt.
    pub(super) fn run(&mut self, vcpu: usize, acknowledge: bool) -> Outcome {
        let before = self.queued();
        let outcome = self.cpus[vcpu].run(&mut self.vgic, vcpu);
        self.flushed[vcpu] = self.cpus[vcpu].lrs.clone();
        self.resolve_racing_writes(vcpu)?;
        prop_assert_eq!(outcome.underflow_interrupt, outcome.waiting > 0);
        prop_assert_eq!(self.vgic.has_queued(vcpu), outcome.waiting > 0);
        for other in (0..self.vcpus).filter(|&other| other != vcpu) {
            if !before[other] && self.vgic.has_queued(other) {
                prop_assert!(
                    outcome.kick.contains(other),
                    "handoff to {} not kicked",
                    other
                );
            }
        }
        self.check_list_registers(vcpu)?;
        if !outcome.hardware.is_empty() {
            // EL2 applies them after writing the list registers; a physical interrupt
            // they let fire makes the vCPU exit again at once.
            let mut deferred = Effects::new();
            outcome
                .hardware
                .iter()
                .for_each(|&effect| deferred.push(effect));
            self.settle(&deferred, &self.queued())?;
            if self.vgic.has_queued(vcpu) {
                return self.run(vcpu, acknowledge);
            }
        }
        if acknowledge {
            self.acknowledge(vcpu)?;
        }
        Ok(())
    }

    pub(super) fn check_list_registers(&mut self, vcpu: usize) -> Outcome {
        let entries: Vec<ListRegister> = self.cpus[vcpu]
            .entries()
            .filter(|lr| lr.state != LrState::Invalid)
            .collect();
        for (index, lr) in entries.iter().enumerate() {
            prop_assert!(
                entries[..index]
                    .iter()
                    .all(|other| other.vintid != lr.vintid),
                "{} twice",
                lr.vintid
            );
            let key = Key::of(vcpu, lr.vintid);
            prop_assert!(self.model.irqs.contains_key(&key), "unknown {}", lr.vintid);
            let irq = self.model.irqs[&key];
            if lr.state.is_pending() {
                prop_assert!(
                    self.model.deliverable(key, vcpu),
                    "{:?} pending in vCPU {}'s LR: {:?}",
                    key,
                    vcpu,
                    irq
                );
            }
            if lr.state.is_active() {
                prop_assert!(irq.active, "{:?} active in an LR but not in the model", key);
            }
            let kind = match irq.hardware {
                Some(pintid) => LrKind::Hardware { pintid },
                None => LrKind::Software {
                    eoi_maintenance: irq.level_line(),
                },
            };
            prop_assert_eq!(lr.kind, kind);
            prop_assert!(irq.hardware.is_none() || lr.state != LrState::PendingActive);
            prop_assert_eq!(lr.priority, lr_priority(irq.priority, self.priority_bits));
            prop_assert_eq!(lr.group1, irq.group1);
            if let Key::Spi(intid) = key {
                prop_assert!(
                    !self.held_elsewhere(intid, vcpu),
                    "SPI {} in two vCPUs' LRs",
                    intid
                );
            }
        }
        Ok(())
    }

    /// The vCPU whose last flush put `key` in a list register.
    pub(super) fn holder(&self, key: Key) -> Option<usize> {
        let holds = |vcpu: usize| {
            self.flushed[vcpu]
                .iter()
                .map(|&value| ListRegister::decode(value))
                .any(|lr| lr.vintid == key.intid() && lr.state != LrState::Invalid)
        };
        match key {
            Key::Private(vcpu, _) => holds(vcpu).then_some(vcpu),
            Key::Spi(_) => (0..self.vcpus).find(|&vcpu| holds(vcpu)),
        }
    }

    /// After `vcpu`'s fold: the active state of each interrupt whose active-state write
    /// raced with its CPU interface is the vGIC's choice of order; the model adopts it.
    pub(super) fn resolve_racing_writes(&mut self, vcpu: usize) -> Outcome {
        let decided: Vec<(Key, bool)> = self
            .racing_active_writes
            .iter()
            .filter(|&(_, &(_, holder))| holder == vcpu)
            .map(|(&key, &(written, _))| (key, written))
            .collect();
        for (key, written) in decided {
            self.racing_active_writes.remove(&key);
            let (reader, intid) = match key {
                Key::Private(vcpu, intid) => (vcpu, intid),
                Key::Spi(intid) => (0, intid),
            };
            let (offset, bit) = bit_of(GICD_ISACTIVER, intid);
            let active = if intid < 32 {
                redist_read(&mut self.vgic, reader, SGI_BASE + offset) & bit != 0
            } else {
                dist_read(&mut self.vgic, offset) & bit != 0
            };
            // ICACTIVER is the last word; ISACTIVER may come before or after what the
            // CPU interface did (see `flush::folded_active`).
            prop_assert!(written || !active, "{:?} still active after ICACTIVER", key);
            self.model.irq(key).active = active;
        }
        Ok(())
    }

    /// Whether SPI `intid` is in the list registers another vCPU's last flush wrote.
    pub(super) fn held_elsewhere(&self, intid: u32, vcpu: usize) -> bool {
        (0..self.vcpus).filter(|&other| other != vcpu).any(|other| {
            self.flushed[other]
                .iter()
                .map(|&value| ListRegister::decode(value))
                .any(|lr| lr.vintid == intid && lr.state != LrState::Invalid)
        })
    }

    /// The model's candidates for `vcpu`: acknowledgeable and not held by another vCPU.
    pub(super) fn candidates(&self, vcpu: usize) -> Vec<Key> {
        self.model
            .irqs
            .keys()
            .copied()
            .filter(|&key| self.model.acknowledgeable(key, vcpu))
            .filter(|&key| !matches!(key, Key::Spi(intid) if self.held_elsewhere(intid, vcpu)))
            .collect()
    }

    /// The guest acknowledges its highest-priority pending list register.
    pub(super) fn acknowledge(&mut self, vcpu: usize) -> Result<bool, TestCaseError> {
        let candidates = self.candidates(vcpu);
        let Some(lr) = self.cpus[vcpu].acknowledge() else {
            if !candidates.is_empty() {
                let busy = self.cpus[vcpu].entries().all(|lr| lr.state.is_active());
                prop_assert!(busy, "vCPU {} sees nothing but {:?} wait", vcpu, candidates);
            }
            return Ok(false);
        };
        let key = Key::of(vcpu, lr.vintid);
        prop_assert!(
            candidates.contains(&key),
            "vCPU {} acknowledged {:?}, not pending: {:?}",
            vcpu,
            key,
            self.model.irqs.get(&key)
        );
        let best = candidates
            .iter()
            .map(|key| lr_priority(self.model.irqs[key].priority, self.priority_bits))
            .min();
        prop_assert_eq!(Some(lr.priority), best, "not the highest priority");
        let irq = self.model.irq(key);
        irq.latch = false;
        irq.active = true;
        irq.owed = false;
        Ok(true)
    }

    /// The guest deactivates the `nth` active list register (of those there are).
    pub(super) fn deactivate_nth(&mut self, vcpu: usize, nth: usize) -> Outcome {
        let active: Vec<u32> = self.cpus[vcpu]
            .entries()
            .filter(|lr| lr.state.is_active())
            .map(|lr| lr.vintid)
            .collect();
        if active.is_empty() {
            return Ok(());
        }
        self.deactivate(vcpu, active[nth % active.len()])
    }

    pub(super) fn deactivate(&mut self, vcpu: usize, intid: u32) -> Outcome {
        let Some(lr) = self.cpus[vcpu].deactivate(intid) else {
            return Ok(());
        };
        self.model.irq(Key::of(vcpu, intid)).active = false;
        if let LrKind::Hardware { pintid } = lr.kind {
            self.physical
                .entry(Self::physical_key(vcpu, pintid))
                .or_default()
                .active = false;
            return self.fire_physical();
        }
        Ok(())
    }
}
