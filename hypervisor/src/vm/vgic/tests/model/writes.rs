//! The guest's register writes, SGIs and lines as the harness performs them, with what
//! each does to the reference model.

use std::vec::Vec;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::super::*;
use super::harness::Harness;
use super::ops::{Op, Route};
use super::reference::Key;

impl Harness {
    pub(super) fn register_write(&mut self, op: Op) -> Result<Effects, TestCaseError> {
        let effects = match op {
            Op::Enable { vcpu, intid, on } => {
                self.model.irq(Key::of(vcpu, intid)).enabled = on;
                let base = if on { GICD_ISENABLER } else { GICD_ICENABLER };
                self.bit_write(vcpu, base, intid)
            }
            Op::Pend { vcpu, intid, on } => return self.pend(vcpu, intid, on),
            Op::Activate { vcpu, intid, on } => self.activate(vcpu, intid, on),
            Op::Priority {
                vcpu,
                intid,
                priority,
            } => {
                self.model.irq(Key::of(vcpu, intid)).priority = priority;
                set_priority(&mut self.vgic, vcpu, intid, priority)
            }
            Op::Group {
                vcpu,
                intid,
                group1,
            } => self.group(vcpu, intid, group1),
            Op::Trigger { vcpu, intid, edge } => self.trigger(vcpu, intid, edge),
            Op::Route { intid, route } => self.route(intid, route),
            Op::Groups { group0, group1 } => {
                self.model.group0 = group0;
                self.model.group1 = group1;
                let ctlr = u64::from(group0) | (u64::from(group1) << 1);
                dist_write(&mut self.vgic, GICD_CTLR, ctlr)
            }
            Op::Line { intid, high } => self.line(intid, high),
            _ => Effects::new(),
        };
        Ok(effects)
    }

    /// ISACTIVER/ICACTIVER. On an interrupt a list register holds, the write races with
    /// the guest's CPU interface: noted for the holder's next run to settle.
    fn activate(&mut self, vcpu: usize, intid: u32, on: bool) -> Effects {
        let key = Key::of(vcpu, intid);
        if let Some(holder) = self.holder(key) {
            self.racing_active_writes.insert(key, (on, holder));
        }
        self.model.irq(key).active = on;
        let base = if on { GICD_ISACTIVER } else { GICD_ICACTIVER };
        self.bit_write(vcpu, base, intid)
    }

    fn group(&mut self, vcpu: usize, intid: u32, group1: bool) -> Effects {
        self.model.irq(Key::of(vcpu, intid)).group1 = group1;
        let bit = 1 << (intid % 32);
        let value = if group1 { bit } else { 0 };
        let offset = GICD_IGROUPR + 4 * u64::from(intid / 32);
        self.read_modify_write(vcpu, intid, offset, bit, value)
    }

    /// ICFGR: SGIs and the hardware-linked PPI keep their configuration.
    fn trigger(&mut self, vcpu: usize, intid: u32, edge: bool) -> Effects {
        let irq = self.model.irq(Key::of(vcpu, intid));
        let fixed = intid < 16 || (intid < 32 && irq.hardware.is_some());
        if !fixed {
            irq.edge = edge;
        }
        let field = 2u64 << (2 * (intid % 16));
        let value = if edge { field } else { 0 };
        let offset = GICD_ICFGR + 4 * u64::from(intid / 16);
        self.read_modify_write(vcpu, intid, offset, field, value)
    }

    /// IROUTER: to a vCPU, to any (vCPU 0 takes it), or to an affinity no vCPU has.
    fn route(&mut self, intid: u32, route: Route) -> Effects {
        let (value, target) = match route {
            Route::Vcpu(vcpu) => (mpidr(vcpu), Some(vcpu)),
            Route::Any => (1 << 31, Some(0)),
            Route::Nowhere => (mpidr(7), None),
        };
        self.model.targets.insert(intid, target);
        let mut effects = Effects::new();
        let offset = GICD_IROUTER + 8 * u64::from(intid);
        self.vgic
            .distributor_write(offset, AccessSize::Double, value, &mut effects)
            .unwrap();
        effects
    }

    /// An emulated SPI's line: a rising edge latches an edge-triggered one.
    fn line(&mut self, intid: u32, high: bool) -> Effects {
        let irq = self.model.irq(Key::Spi(intid));
        if irq.edge && high && !irq.line {
            irq.latch = true;
        }
        irq.line = high;
        let mut effects = Effects::new();
        self.vgic.set_line_level(intid, high, &mut effects);
        effects
    }

    /// Reads the register at `offset` that holds `intid` (a private one through `vcpu`'s
    /// redistributor), replaces the `mask` bits with `bits`, writes it back, as a driver
    /// does.
    pub(super) fn read_modify_write(
        &mut self,
        vcpu: usize,
        intid: u32,
        offset: u64,
        mask: u64,
        bits: u64,
    ) -> Effects {
        if intid < 32 {
            let old = redist_read(&mut self.vgic, vcpu, SGI_BASE + offset);
            redist_write(
                &mut self.vgic,
                vcpu,
                SGI_BASE + offset,
                (old & !mask) | bits,
            )
        } else {
            let old = dist_read(&mut self.vgic, offset);
            dist_write(&mut self.vgic, offset, (old & !mask) | bits)
        }
    }

    /// ISPENDR/ICPENDR. A hardware-linked interrupt's ISPENDR may take one of three legal
    /// paths, seen in the effects: pending at once with the physical one made active (if
    /// nothing was pending), the physical one made pending (it comes back through the
    /// physical GIC), or nothing (a pend was outstanding already).
    pub(super) fn pend(
        &mut self,
        vcpu: usize,
        intid: u32,
        on: bool,
    ) -> Result<Effects, TestCaseError> {
        let key = Key::of(vcpu, intid);
        let effects = self.bit_write(vcpu, if on { GICD_ISPENDR } else { GICD_ICPENDR }, intid);
        let irq = self.model.irq(key);
        match (on, irq.hardware) {
            (true, None) => irq.latch = true,
            (false, _) => {
                irq.latch = false;
                irq.owed = false;
            }
            (true, Some(physical_intid)) => {
                let direct = effects.iter().any(|effect| {
                    let made_active = Effect::HardwareActive {
                        physical_intid,
                        vcpu: effect_vcpu(effect),
                        active: true,
                    };
                    effect == made_active
                });
                let physical = effects.iter().any(|effect| {
                    let made_pending = Effect::HardwarePending {
                        physical_intid,
                        vcpu: effect_vcpu(effect),
                        pending: true,
                    };
                    effect == made_pending
                });
                if direct {
                    prop_assert!(!irq.latch, "a second virtual pend of {:?}", key);
                    irq.latch = true;
                } else if !physical {
                    prop_assert!(irq.latch, "ISPENDR of {:?} went nowhere", key);
                }
                irq.owed = true;
            }
        }
        Ok(effects)
    }

    pub(super) fn sgi(&mut self, op: Op) -> Result<Effects, TestCaseError> {
        let Op::Sgi {
            from,
            intid,
            targets,
            broadcast,
            kind,
        } = op
        else {
            return Ok(Effects::new());
        };
        let value = (1 << 16)
            | (u64::from(intid) << 24)
            | u64::from(targets)
            | (u64::from(broadcast) << 40);
        let mut effects = Effects::new();
        let delivery = self.vgic.generate_sgi(from, value, kind, &mut effects);
        let chosen: Vec<usize> = if broadcast {
            (0..self.vcpus).filter(|&v| v != from).collect()
        } else {
            (0..self.vcpus)
                .filter(|&v| targets & (1 << v) != 0)
                .collect()
        };
        let mut expected = SgiDelivery {
            delivered: 0,
            dropped: if broadcast {
                0
            } else {
                (targets >> self.vcpus).count_ones() as usize
            },
        };
        for target in chosen {
            let irq = self.model.irq(Key::Private(target, intid));
            if kind == SgiRegister::Group1 || !irq.group1 {
                irq.latch = true;
                expected.delivered += 1;
            } else {
                expected.dropped += 1;
            }
        }
        prop_assert_eq!(delivery, expected);
        Ok(effects)
    }
}

/// The vCPU a hardware effect names (0 for the kinds that name none).
fn effect_vcpu(effect: Effect) -> usize {
    match effect {
        Effect::Kick { vcpu }
        | Effect::HardwareEnable { vcpu, .. }
        | Effect::HardwareRoute { vcpu, .. }
        | Effect::HardwarePending { vcpu, .. }
        | Effect::HardwareActive { vcpu, .. } => vcpu,
        Effect::HardwareTrigger { .. } => 0,
    }
}
