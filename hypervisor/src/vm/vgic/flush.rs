//! Fold and flush: moving interrupts between the vGIC's state and a vCPU's list
//! registers (IHI 0069 §6, "Virtual interrupt handling and prioritization", and §12.4,
//! `ICH_LR<n>_EL2`).
//!
//! **Fold** (after the vCPU ran): each list register the last flush filled is read back.
//! Invalid means the guest acknowledged and deactivated it: the pending state it carried
//! is consumed. Otherwise its pending and active bits are the current ones; a pending
//! state that is still there goes back to the interrupt's latch, for the next flush to
//! move in again. A pend that arrived meanwhile is in the latch already, so an edge
//! interrupt re-latched while the guest handled it is pending again.
//!
//! **Flush** (before the vCPU runs): every interrupt gets the list register state it
//! should have ([`Vgic::desired_lr_state`]). An interrupt already in a list register
//! keeps that register; one that no longer needs it (disabled, pending cleared, routed
//! elsewhere) leaves it. The waiting interrupts, highest priority first (lower value,
//! then lower INTID), take free registers, or evict a pending-only register of lower
//! priority back to the queue; active interrupts are never evicted, so the guest can
//! always deactivate them. If interrupts still wait, the caller sets ICH_HCR_EL2.UIE: the
//! underflow maintenance interrupt fires when at most one list register is valid, and
//! the next exit folds and flushes again.

use arrayvec::ArrayVec;

use super::Vgic;
use super::config::MAX_LIST_REGISTERS;
use super::effects::{Effect, VcpuSet};
use super::irq::LrLink;
use super::list_register::{ListRegister, LrKind, LrState, lr_priority};
use super::state::{DEFERRED_EFFECTS, IrqId, ids_of_vcpu};

/// What a flush tells the caller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlushOutcome {
    /// Set ICH_HCR_EL2.UIE: more interrupts wait than the list registers hold.
    pub underflow_interrupt: bool,
    /// Bit n set: the value of list register n changed.
    pub changed: u16,
    /// How many interrupts wait for a list register.
    pub waiting: usize,
    /// vCPUs to kick: this vCPU's fold or flush let go of an SPI routed to them, which
    /// they can now take.
    pub kick: VcpuSet,
    /// Hardware effects to apply (after writing the list registers): the fold found a
    /// physical activation nobody owns any more (see `folded_active`).
    pub hardware: ArrayVec<Effect, DEFERRED_EFFECTS>,
}

/// A waiting interrupt's place in line: lower priority value first, then lower INTID.
type Rank = (u8, u32);

/// The best waiting interrupts, in order, as many as there are list registers.
type Shortlist = ArrayVec<(Rank, IrqId), MAX_LIST_REGISTERS>;

/// How a waiting interrupt got a list register, if it did.
enum Placement {
    Free,
    Evicted,
    NoRoom,
}

impl Vgic {
    /// The state vCPU `vcpu`'s list register for `id` should have now.
    pub(crate) fn desired_lr_state(&self, vcpu: usize, id: IrqId) -> LrState {
        let Some(irq) = self.irq(id) else {
            return LrState::Invalid;
        };
        let targeted = self.target(id) == Some(vcpu);
        let held_here = irq.lr.is_some_and(|link| link.vcpu() == vcpu);
        // A HW = 1 list register never holds pending and active together (IHI 0069
        // §12.4): a new pending state waits for the deactivation.
        let hardware_active = irq.hardware.is_some() && irq.active;
        let pending =
            targeted && irq.enabled && self.group_enabled(irq) && irq.pending() && !hardware_active;
        // An active interrupt stays with the vCPU that acknowledged it until deactivated.
        let active = irq.active && (targeted || held_here);
        LrState::new(pending, active)
    }

    /// `id` wants a list register of `vcpu` and has none (it is in none anywhere).
    fn waits_for_lr(&self, vcpu: usize, id: IrqId) -> bool {
        self.irq(id).is_some_and(|irq| irq.lr.is_none())
            && self.desired_lr_state(vcpu, id) != LrState::Invalid
    }

    /// The vCPU whose list register holds `id` without showing its state: the state to
    /// write changed, or a new pending state arrived that the register does not carry
    /// (the guest may have acknowledged the one it carries: an edge-triggered interrupt
    /// raises no maintenance interrupt when deactivated, so only a flush delivers it).
    pub(crate) fn stale_holder(&self, id: IrqId) -> Option<usize> {
        let irq = self.irq(id)?;
        let holder = irq.lr?.vcpu();
        let desired = self.desired_lr_state(holder, id);
        let unshown_latch = irq.latch && desired.is_pending();
        (desired != irq.lr_state || unshown_latch).then_some(holder)
    }

    pub(crate) fn queued(&self, vcpu: usize) -> bool {
        vcpu < self.vcpus.len()
            && ids_of_vcpu(vcpu, self.spis.len())
                .any(|id| self.waits_for_lr(vcpu, id) || self.stale_holder(id) == Some(vcpu))
    }

    pub(crate) fn fold(&mut self, vcpu: usize, lrs: &[u64]) {
        if vcpu >= self.vcpus.len() {
            self.stats.bad_vcpu_calls += 1;
            return;
        }
        for (slot, &value) in lrs.iter().enumerate().take(self.list_registers) {
            let Some(id) = self.id_in_slot(vcpu, slot) else {
                continue;
            };
            let lr = ListRegister::decode(value);
            if lr.vintid != self.intid_of(id) {
                // Not what the last flush wrote: keep the vGIC's view, lose nothing.
                self.stats.fold_mismatches += 1;
                continue;
            }
            self.fold_one(vcpu, slot, id, lr.state);
        }
    }

    fn fold_one(&mut self, vcpu: usize, slot: usize, id: IrqId, state: LrState) {
        let effect_vcpu = self.target(id).unwrap_or(vcpu);
        let Some(irq) = self.irq_mut(id) else {
            return;
        };
        let guest_write = irq.active_write.take();
        irq.active = folded_active(irq.lr_state, state, guest_write);
        let freed = state == LrState::Invalid;
        if freed {
            irq.leave_lr(true);
        } else {
            if state.is_pending() {
                irq.latch |= irq.latch_in_lr;
            }
            irq.latch_in_lr = false;
            irq.lr_state = state;
        }
        // An ISACTIVER the guest's deactivation overtook: the physical activation it made
        // belongs to nothing now.
        let orphaned = guest_write == Some(true) && !irq.active && !irq.pending();
        let release = irq
            .hardware
            .filter(|_| orphaned)
            .map(|physical| Effect::HardwareActive {
                physical_intid: u32::from(physical),
                vcpu: effect_vcpu,
                active: false,
            });
        if freed {
            self.free_slot(vcpu, slot, id);
        }
        if let (Some(effect), Some(state)) = (release, self.vcpus.get_mut(vcpu)) {
            // Bounded by one per list register per fold; a caller folding again and
            // again without flushing loses only repeats of this release.
            let _ = state.deferred.try_push(effect);
        }
    }

    pub(crate) fn flush(&mut self, vcpu: usize, lrs: &mut [u64]) -> FlushOutcome {
        if vcpu >= self.vcpus.len() {
            self.stats.bad_vcpu_calls += 1;
            return FlushOutcome::default();
        }
        let count = lrs.len().min(self.list_registers);
        self.retire_unwanted(vcpu, count);
        let (shortlist, mut waiting) = self.shortlist(vcpu, count);
        for (rank, id) in shortlist {
            match self.place(vcpu, count, rank, id) {
                Placement::Free => waiting -= 1,
                Placement::Evicted => {}
                Placement::NoRoom => break,
            }
        }
        let changed = self.write_lrs(vcpu, lrs.get_mut(..count).unwrap_or_default());
        if waiting > 0 {
            self.stats.underflow_requests += 1;
        }
        self.stats.max_queue_depth = self.stats.max_queue_depth.max(waiting as u64);
        let (kick, hardware) = self
            .vcpus
            .get_mut(vcpu)
            .map(|state| {
                (
                    core::mem::take(&mut state.handoff),
                    core::mem::take(&mut state.deferred),
                )
            })
            .unwrap_or_default();
        FlushOutcome {
            underflow_interrupt: waiting > 0,
            changed,
            waiting,
            kick,
            hardware,
        }
    }

    /// Frees the list registers (below `count`) whose interrupt no longer needs one.
    fn retire_unwanted(&mut self, vcpu: usize, count: usize) {
        for slot in 0..count {
            let Some(id) = self.id_in_slot(vcpu, slot) else {
                continue;
            };
            if self.desired_lr_state(vcpu, id) == LrState::Invalid {
                self.release(vcpu, slot, id);
            }
        }
    }

    /// The `count` best interrupts waiting for a list register, and how many wait.
    fn shortlist(&self, vcpu: usize, count: usize) -> (Shortlist, usize) {
        let mut best = Shortlist::new();
        let mut waiting = 0;
        for id in ids_of_vcpu(vcpu, self.spis.len()) {
            if !self.waits_for_lr(vcpu, id) {
                continue;
            }
            waiting += 1;
            let rank = self.rank(id);
            let position = best
                .iter()
                .position(|&(r, _)| rank < r)
                .unwrap_or(best.len());
            if position >= count {
                continue;
            }
            if best.len() >= count {
                best.pop();
            }
            // position < count <= capacity, and position <= len after the pop.
            let position = position.min(best.len());
            let _ = best.try_insert(position, (rank, id));
        }
        (best, waiting)
    }

    fn rank(&self, id: IrqId) -> Rank {
        let priority = self.irq(id).map_or(u8::MAX, |irq| irq.priority);
        (priority, self.intid_of(id))
    }

    /// Gives `id` a free list register, or the one of the lowest-ranked pending-only
    /// interrupt if that ranks below `rank`.
    fn place(&mut self, vcpu: usize, count: usize, rank: Rank, id: IrqId) -> Placement {
        if let Some(slot) = (0..count).find(|&slot| self.id_in_slot(vcpu, slot).is_none()) {
            self.occupy(vcpu, slot, id);
            return Placement::Free;
        }
        let victim = (0..count)
            .filter_map(|slot| self.id_in_slot(vcpu, slot).map(|victim| (slot, victim)))
            .filter(|&(_, victim)| self.desired_lr_state(vcpu, victim) == LrState::Pending)
            .max_by_key(|&(_, victim)| self.rank(victim));
        match victim {
            Some((slot, victim)) if self.rank(victim) > rank => {
                self.release(vcpu, slot, victim);
                self.occupy(vcpu, slot, id);
                Placement::Evicted
            }
            _ => Placement::NoRoom,
        }
    }

    fn occupy(&mut self, vcpu: usize, slot: usize, id: IrqId) {
        let intid = self.intid_of(id) as u16;
        if let Some(entry) = self.vcpus.get_mut(vcpu).and_then(|v| v.slots.get_mut(slot)) {
            *entry = Some(intid);
        }
        if let Some(irq) = self.irq_mut(id) {
            irq.lr = Some(LrLink {
                vcpu: vcpu as u16,
                slot: slot as u8,
            });
            irq.lr_state = LrState::Invalid;
        }
    }

    /// Takes `id` out of list register `slot` before the guest acknowledged what it held.
    fn release(&mut self, vcpu: usize, slot: usize, id: IrqId) {
        if let Some(irq) = self.irq_mut(id) {
            irq.leave_lr(false);
        }
        self.free_slot(vcpu, slot, id);
    }

    fn free_slot(&mut self, vcpu: usize, slot: usize, id: IrqId) {
        let target = self.target(id);
        let Some(state) = self.vcpus.get_mut(vcpu) else {
            return;
        };
        if let Some(entry) = state.slots.get_mut(slot) {
            *entry = None;
        }
        // An SPI routed elsewhere meanwhile can go to its new vCPU now.
        if let (IrqId::Spi { .. }, Some(other)) = (id, target)
            && other != vcpu
        {
            state.handoff.insert(other);
        }
    }

    /// Writes every list register below `lrs.len()`; returns which changed.
    fn write_lrs(&mut self, vcpu: usize, lrs: &mut [u64]) -> u16 {
        let mut changed = 0;
        for (slot, lr) in lrs.iter_mut().enumerate() {
            let value = match self.id_in_slot(vcpu, slot) {
                Some(id) => self.commit(vcpu, slot, id),
                None => ListRegister::EMPTY,
            };
            if *lr != value {
                changed |= 1 << slot;
            }
            *lr = value;
        }
        changed
    }

    /// The value of `id`'s list register; moves its latch in if the register shows it
    /// pending.
    fn commit(&mut self, vcpu: usize, slot: usize, id: IrqId) -> u64 {
        let state = self.desired_lr_state(vcpu, id);
        if state == LrState::Invalid {
            self.release(vcpu, slot, id);
            return ListRegister::EMPTY;
        }
        let intid = self.intid_of(id);
        let priority_bits = self.priority_bits;
        let Some(irq) = self.irq_mut(id) else {
            return ListRegister::EMPTY;
        };
        if state.is_pending() {
            irq.latch_in_lr |= irq.latch;
            irq.latch = false;
        } else {
            irq.latch |= irq.latch_in_lr;
            irq.latch_in_lr = false;
        }
        irq.lr_state = state;
        irq.active_write = None;
        let kind = match irq.hardware {
            Some(physical) => LrKind::Hardware {
                pintid: u32::from(physical),
            },
            None => LrKind::Software {
                eoi_maintenance: irq.wants_eoi_maintenance(),
            },
        };
        ListRegister {
            vintid: intid,
            state,
            priority: lr_priority(irq.priority, priority_bits),
            group1: irq.group1,
            kind,
        }
        .encode()
    }
}

/// The active state after a fold: the list register's, `written` then `read`, unless the
/// guest wrote GICD_ISACTIVER/ICACTIVER meanwhile. Such a write races with the vCPU's CPU
/// interface (KVM stops the guest to order them; a vGIC without that cannot know the
/// order). ICACTIVER is taken as the last word: the interrupt ends inactive. ISACTIVER
/// is taken as coming first: it stays active unless the list register shows the guest
/// deactivated it afterwards. Either way no interrupt is left active that the guest
/// believes it has finished with, so nothing stays blocked. (For a hardware-linked
/// interrupt whose ISACTIVER made the physical one active, the fold then has the flush
/// release that activation: [`FlushOutcome::hardware`].)
fn folded_active(written: LrState, read: LrState, guest_write: Option<bool>) -> bool {
    match guest_write {
        None => read.is_active(),
        Some(false) => false,
        Some(true) => {
            let acknowledged = written.is_pending() && !read.is_pending();
            let deactivated = (written.is_active() || acknowledged) && !read.is_active();
            read.is_active() || !deactivated
        }
    }
}
