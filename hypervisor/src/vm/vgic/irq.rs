//! One interrupt's state: per vCPU for SGIs and PPIs, per guest for SPIs (IHI 0069 §1.2.2
//! and §4.1, "Interrupt lifecycle": inactive, pending, active, active and pending).
//!
//! **Pending** is the OR of three things:
//! - `latch`: an edge seen, an SGI sent, a GICD_ISPENDR write, a hardware-linked
//!   interrupt that fired; it is a state, not a count, so repeated pends before the guest
//!   acknowledges collapse into one (IHI 0069 §4.1.1);
//! - `latch_in_lr`: the latch moved into a list register by the last flush. The LR owns
//!   it until the fold shows the guest acknowledged it (gone) or not (moved back); a
//!   GICD_ICPENDR write in between clears it, so the fold cannot bring it back;
//! - `line`, for an emulated level-sensitive interrupt: pending while the line is high
//!   (IHI 0069 §4.1.1, "level-sensitive": the pending state follows the line, plus a
//!   latch set by GICD_ISPENDR that the acknowledgment clears).
//!
//! **Active** is the last value known: written by the guest through GICD_ISACTIVER or
//! ICACTIVER, or folded back from the list register the guest acknowledged it in.

use super::list_register::LrState;

/// A list register slot of a vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LrLink {
    pub(crate) vcpu: u16,
    pub(crate) slot: u8,
}

impl LrLink {
    pub(crate) fn vcpu(self) -> usize {
        usize::from(self.vcpu)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IrqState {
    /// IPRIORITYR: all 8 bits are kept; list registers carry the top PRIbits.
    pub(crate) priority: u8,
    /// ISENABLER/ICENABLER.
    pub(crate) enabled: bool,
    /// IGROUPR: Group 1 (true) or Group 0.
    pub(crate) group1: bool,
    /// ICFGR Int_config[1]: edge-triggered (true) or level-sensitive.
    pub(crate) edge: bool,
    pub(crate) latch: bool,
    pub(crate) latch_in_lr: bool,
    pub(crate) line: bool,
    pub(crate) active: bool,
    /// The physical INTID of a hardware-linked interrupt.
    pub(crate) hardware: Option<u16>,
    /// The list register holding it, if any: at most one at a time, across all vCPUs.
    pub(crate) lr: Option<LrLink>,
    /// The state that list register was last written with or folded back as.
    pub(crate) lr_state: LrState,
    /// The last active state the guest wrote (ISACTIVER: true, ICACTIVER: false) while a
    /// list register held the interrupt, for the next fold to reconcile with what the
    /// guest's CPU interface did meanwhile.
    pub(crate) active_write: Option<bool>,
}

impl IrqState {
    /// An interrupt at reset: disabled, inactive, priority 0, Group 1 (Linux puts every
    /// interrupt in Group 1 and KVM resets GICv3 guests' interrupts there too).
    pub(crate) const fn new(edge: bool, hardware: Option<u16>) -> Self {
        Self {
            priority: 0,
            enabled: false,
            group1: true,
            edge,
            latch: false,
            latch_in_lr: false,
            line: false,
            active: false,
            hardware,
            lr: None,
            lr_state: LrState::Invalid,
            active_write: None,
        }
    }

    /// An emulated level-sensitive interrupt, whose pending state follows its line. A
    /// hardware-linked one's level is sampled by the physical GIC: it arrives through
    /// `hardware_fired` like an edge.
    pub(crate) fn follows_line(&self) -> bool {
        !self.edge && self.hardware.is_none()
    }

    /// The pending state as the guest's GICD_ISPENDR reads it.
    pub(crate) fn pending(&self) -> bool {
        self.latch || self.latch_in_lr || (self.follows_line() && self.line)
    }

    /// Whether the guest's deactivation must raise the EOI maintenance interrupt (a
    /// level-sensitive emulated interrupt: the hypervisor re-samples its line).
    pub(crate) fn wants_eoi_maintenance(&self) -> bool {
        self.follows_line()
    }

    /// A list register no longer holds the interrupt: the latch it held comes back
    /// unless `consumed` (the guest acknowledged it).
    pub(crate) fn leave_lr(&mut self, consumed: bool) {
        if !consumed {
            self.latch |= self.latch_in_lr;
        }
        self.latch_in_lr = false;
        self.lr = None;
        self.lr_state = LrState::Invalid;
        self.active_write = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_level_interrupt_is_pending_while_its_line_is_high() {
        let mut irq = IrqState::new(false, None);
        assert!(!irq.pending());
        irq.line = true;
        assert!(irq.pending());
        irq.line = false;
        irq.latch = true;
        assert!(irq.pending());
    }

    #[test]
    fn an_edge_or_hardware_interrupt_ignores_the_line() {
        let mut edge = IrqState::new(true, None);
        edge.line = true;
        assert!(!edge.pending());
        let mut hardware = IrqState::new(false, Some(40));
        hardware.line = true;
        assert!(!hardware.pending());
        assert!(!hardware.wants_eoi_maintenance());
    }

    #[test]
    fn leaving_a_list_register_returns_an_unconsumed_latch() {
        let mut irq = IrqState::new(true, None);
        irq.latch_in_lr = true;
        irq.lr = Some(LrLink { vcpu: 0, slot: 1 });
        irq.leave_lr(false);
        assert!(irq.latch && !irq.latch_in_lr && irq.lr.is_none());

        irq.latch = false;
        irq.latch_in_lr = true;
        irq.leave_lr(true);
        assert!(!irq.pending());
    }
}
