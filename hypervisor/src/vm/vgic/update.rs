//! Changes to an interrupt the guest makes through its registers, or a device makes by
//! pending it; each one kicks the vCPUs whose list registers must change and, for a
//! hardware-linked interrupt, tells the EL2 layer what to mirror onto the physical one.
//!
//! **Hardware-linked interrupts** keep one rule: the physical interrupt is active while
//! the virtual one is pending or active (EL2 acknowledged it, or the guest set it), and
//! the guest's deactivation through the HW = 1 list register ends both. Hence:
//! - GICD_ISPENDR: an inactive interrupt becomes pending and the physical one is made
//!   active; for an active one (or one a list register may have had acknowledged), the
//!   physical one is made pending and fires again once the guest deactivates (IHI 0069
//!   §12.4: the pending state of an active hardware interrupt is held in the physical
//!   distributor);
//! - GICD_ICPENDR: the physical pending state is cleared too, and the physical
//!   activation that stood for the virtual pending state is released;
//! - GICD_ISACTIVER/ICACTIVER: mirrored as they are.

use super::Vgic;
use super::config::{AFFINITY_MASK, FIRST_PPI, LAST_PPI};
use super::effects::{Effect, Effects};
use super::list_register::LrState;
use super::state::{IrqId, ROUTE_ANY, all_ids};

impl Vgic {
    /// Kicks the vCPU whose list register for `id` no longer shows its state, or the
    /// vCPU it now waits for.
    pub(crate) fn notify(&self, id: IrqId, effects: &mut Effects) {
        let Some(irq) = self.irq(id) else {
            return;
        };
        if irq.lr.is_some() {
            if let Some(holder) = self.stale_holder(id) {
                effects.kick(holder);
            }
        } else if let Some(target) = self.target(id)
            && self.desired_lr_state(target, id) != LrState::Invalid
        {
            effects.kick(target);
        }
    }

    /// The vCPU a hardware effect for `id` names: a PPI's own, an SPI's target (vCPU 0
    /// if it routes nowhere).
    fn effect_vcpu(&self, id: IrqId) -> usize {
        self.target(id).unwrap_or(0)
    }

    /// `id`'s physical INTID, if it is hardware-linked.
    fn physical(&self, id: IrqId) -> Option<u32> {
        self.irq(id)?.hardware.map(u32::from)
    }

    /// GICD_ISENABLER/ICENABLER (and GICR_): mirrored onto a hardware-linked interrupt.
    pub(crate) fn set_enabled(&mut self, id: IrqId, enabled: bool, effects: &mut Effects) {
        if let Some(irq) = self.irq_mut(id) {
            irq.enabled = enabled;
        }
        if let Some(physical_intid) = self.physical(id) {
            effects.push(Effect::HardwareEnable {
                physical_intid,
                vcpu: self.effect_vcpu(id),
                enabled,
            });
        }
        self.notify(id, effects);
    }

    /// GICD_IGROUPR.
    pub(crate) fn set_group(&mut self, id: IrqId, group1: bool, effects: &mut Effects) {
        if let Some(irq) = self.irq_mut(id) {
            irq.group1 = group1;
        }
        self.notify(id, effects);
    }

    /// GICD_IPRIORITYR.
    pub(crate) fn set_priority(&mut self, id: IrqId, priority: u8, effects: &mut Effects) {
        if let Some(irq) = self.irq_mut(id) {
            irq.priority = priority;
        }
        self.notify(id, effects);
    }

    /// GICD_ICFGR Int_config[1]: mirrored onto a hardware-linked SPI.
    pub(crate) fn set_edge(&mut self, id: IrqId, edge: bool, effects: &mut Effects) {
        if let Some(irq) = self.irq_mut(id) {
            irq.edge = edge;
        }
        if let Some(physical_intid) = self.physical(id) {
            effects.push(Effect::HardwareTrigger {
                physical_intid,
                edge,
            });
        }
        self.notify(id, effects);
    }

    /// GICD_ISPENDR (IHI 0069 §12.9: sets the pending state; for a level-sensitive
    /// interrupt it stays until acknowledged or cleared, whatever the line does).
    pub(crate) fn guest_set_pending(&mut self, id: IrqId, effects: &mut Effects) {
        let vcpu = self.effect_vcpu(id);
        let Some(irq) = self.irq_mut(id) else {
            return;
        };
        match irq.hardware.map(u32::from) {
            None => irq.latch = true,
            // Active, or perhaps acknowledged since a list register took the pending
            // state (the vGIC learns it at the next fold): pend the physical interrupt,
            // which fires again once the guest deactivates this one.
            Some(physical_intid) if irq.active || irq.latch_in_lr => {
                effects.push(Effect::HardwarePending {
                    physical_intid,
                    vcpu,
                    pending: true,
                });
            }
            Some(physical_intid) if !irq.pending() => {
                irq.latch = true;
                effects.push(Effect::HardwareActive {
                    physical_intid,
                    vcpu,
                    active: true,
                });
            }
            Some(_) => {}
        }
        self.notify(id, effects);
    }

    /// GICD_ICPENDR. A pending state a list register holds is dropped too: the next
    /// fold does not bring it back (the line of a level-sensitive interrupt still counts).
    pub(crate) fn guest_clear_pending(&mut self, id: IrqId, effects: &mut Effects) {
        let vcpu = self.effect_vcpu(id);
        let Some(irq) = self.irq_mut(id) else {
            return;
        };
        // A hardware-linked interrupt's pending state always holds a physical activation
        // (EL2 acknowledged it, or ISPENDR made it active): release it. If the guest was
        // handling the interrupt too (the two shared the activation), its deactivation
        // later finds the physical interrupt inactive, which does no harm.
        let held_for_pending = irq.hardware.is_some() && irq.pending();
        irq.latch = false;
        irq.latch_in_lr = false;
        if let Some(physical_intid) = irq.hardware.map(u32::from) {
            effects.push(Effect::HardwarePending {
                physical_intid,
                vcpu,
                pending: false,
            });
            if held_for_pending {
                effects.push(Effect::HardwareActive {
                    physical_intid,
                    vcpu,
                    active: false,
                });
            }
        }
        self.notify(id, effects);
    }

    /// GICD_ISACTIVER/ICACTIVER. If a list register holds the interrupt, the next fold
    /// reconciles the write with the register (see `flush::folded_active`).
    pub(crate) fn guest_set_active(&mut self, id: IrqId, active: bool, effects: &mut Effects) {
        let vcpu = self.effect_vcpu(id);
        let Some(irq) = self.irq_mut(id) else {
            return;
        };
        irq.active = active;
        if irq.lr.is_some() {
            irq.active_write = Some(active);
        }
        if let Some(physical_intid) = irq.hardware.map(u32::from) {
            effects.push(Effect::HardwareActive {
                physical_intid,
                vcpu,
                active,
            });
        }
        self.notify(id, effects);
    }

    /// An edge, an SGI or a hardware fire: the latch is set (pending is a state: a pend
    /// before the guest acknowledged the last one changes nothing, IHI 0069 §4.1).
    pub(crate) fn pend(&mut self, id: IrqId, effects: &mut Effects) {
        if let Some(irq) = self.irq_mut(id) {
            irq.latch = true;
        }
        self.notify(id, effects);
    }

    /// `GICD_IROUTER<n>` of SPI `index` (IHI 0069 §12.9): Aff3.Aff2.Aff1.Aff0 and
    /// Interrupt_Routing_Mode; other bits are RES0. Mode 1 ("any participating PE") goes
    /// to vCPU 0, a fixed choice that keeps delivery predictable; an affinity matching no
    /// vCPU delivers to nobody (the interrupt stays pending).
    pub(crate) fn set_router(&mut self, index: usize, value: u64, effects: &mut Effects) {
        let router = value & (AFFINITY_MASK | ROUTE_ANY);
        let target = if router & ROUTE_ANY != 0 {
            Some(0)
        } else {
            self.vcpu_with_affinity(router & AFFINITY_MASK)
        };
        let id = IrqId::Spi { index };
        let Some(spi) = self.spis.get_mut(index) else {
            return;
        };
        spi.router = router;
        spi.target = target;
        if let (Some(physical_intid), Some(vcpu)) = (spi.irq.hardware.map(u32::from), target) {
            effects.push(Effect::HardwareRoute {
                physical_intid,
                vcpu,
            });
        }
        self.notify(id, effects);
    }

    /// GICD_CTLR.EnableGrp0/EnableGrp1 (IHI 0069 §12.9): every interrupt of a group
    /// whose enable changed may need a list register change.
    pub(crate) fn set_group_enables(&mut self, group0: bool, group1: bool, effects: &mut Effects) {
        if (group0, group1) == (self.enable_group0, self.enable_group1) {
            return;
        }
        self.enable_group0 = group0;
        self.enable_group1 = group1;
        for id in all_ids(self.vcpus.len(), self.spis.len()) {
            self.notify(id, effects);
        }
    }

    /// vCPU `vcpu` starts on a physical CPU: that CPU's copies of its hardware-linked
    /// PPIs get the guest's enable, and are active while the virtual one is pending or
    /// active (the rule above); its hardware-linked SPIs are routed there.
    pub(crate) fn mirror_onto_cpu(&mut self, vcpu: usize, effects: &mut Effects) {
        if vcpu >= self.vcpus.len() {
            self.stats.bad_vcpu_calls += 1;
            return;
        }
        for intid in FIRST_PPI..=LAST_PPI {
            let Some(irq) = self.irq(IrqId::Private { vcpu, intid }) else {
                continue;
            };
            let Some(physical_intid) = irq.hardware.map(u32::from) else {
                continue;
            };
            effects.push(Effect::HardwareEnable {
                physical_intid,
                vcpu,
                enabled: irq.enabled,
            });
            effects.push(Effect::HardwareActive {
                physical_intid,
                vcpu,
                active: irq.active || irq.pending(),
            });
        }
        for spi in self.spis.iter().filter(|spi| spi.target == Some(vcpu)) {
            if let Some(physical_intid) = spi.irq.hardware.map(u32::from) {
                effects.push(Effect::HardwareRoute {
                    physical_intid,
                    vcpu,
                });
            }
        }
        if self.queued(vcpu) {
            effects.kick(vcpu);
        }
    }
}
