//! SGIs the guest sends by writing ICC_SGI1R_EL1, ICC_ASGI1R_EL1 or ICC_SGI0R_EL1 (IHI
//! 0069 §12.2, ICC_SGI1R_EL1): TargetList [15:0], Aff1 [23:16], INTID [27:24],
//! Aff2 [39:32], IRM [40], RS [47:44], Aff3 [55:48].
//!
//! IRM = 1 targets every vCPU but the sender; otherwise the vCPUs whose affinity is
//! Aff3.Aff2.Aff1 and whose Aff0 is RS × 16 + n for each bit n of TargetList. A target
//! that is not one of this guest's vCPUs is dropped and counted.
//!
//! With affinity routing an SGI has no source field (IHI 0069 §12.4, `ICH_LR<n>_EL2`.vINTID:
//! the source CPU ID exists only for legacy operation), so each target vCPU has one
//! pending bit per SGI: an SGI sent by several vCPUs before the target acknowledges it
//! is delivered once.
//!
//! With a single Security state (GICD_CTLR.DS = 1) ICC_SGI1R_EL1 generates the SGI
//! whatever its group, while ICC_SGI0R_EL1, and ICC_ASGI1R_EL1 (there is no other
//! Security state), generate only Group 0 SGIs (IHI 0069 §12.2 and the table
//! "Forwarding an SGI to a target PE"; KVM reads it the same way).

use super::Vgic;
use super::effects::Effects;
use super::state::IrqId;

/// Which register the guest wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SgiRegister {
    /// ICC_SGI1R_EL1.
    Group1,
    /// ICC_ASGI1R_EL1.
    AlternateGroup1,
    /// ICC_SGI0R_EL1.
    Group0,
}

/// What happened to one SGI write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SgiDelivery {
    /// vCPUs on which the SGI is now pending.
    pub delivered: usize,
    /// Targets that got nothing: not a vCPU of this guest, or an SGI of a group the
    /// register cannot generate.
    pub dropped: usize,
}

/// The fields of an ICC_SGI*R_EL1 value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SgiRequest {
    pub(crate) intid: u32,
    pub(crate) broadcast: bool,
    pub(crate) target_list: u16,
    /// Aff3.Aff2.Aff1 in MPIDR_EL1 positions, with RS × 16 in Aff0.
    pub(crate) base_affinity: u64,
}

impl SgiRequest {
    pub(crate) fn decode(value: u64) -> Self {
        let aff1 = (value >> 16) & 0xff;
        let aff2 = (value >> 32) & 0xff;
        let range_selector = (value >> 44) & 0xf;
        let aff3 = (value >> 48) & 0xff;
        Self {
            intid: ((value >> 24) & 0xf) as u32,
            broadcast: value & (1 << 40) != 0,
            target_list: value as u16,
            base_affinity: (aff3 << 32) | (aff2 << 16) | (aff1 << 8) | (range_selector * 16),
        }
    }

    /// The affinity TargetList bit `bit` names.
    pub(crate) fn target_affinity(&self, bit: u32) -> u64 {
        self.base_affinity + u64::from(bit)
    }
}

impl Vgic {
    pub(crate) fn send_sgi(
        &mut self,
        from: usize,
        value: u64,
        kind: SgiRegister,
        effects: &mut Effects,
    ) -> SgiDelivery {
        let mut delivery = SgiDelivery::default();
        if from >= self.vcpus.len() {
            self.stats.bad_vcpu_calls += 1;
            return delivery;
        }
        let request = SgiRequest::decode(value);
        if request.broadcast {
            for vcpu in (0..self.vcpus.len()).filter(|&vcpu| vcpu != from) {
                self.deliver_sgi(vcpu, request.intid, kind, &mut delivery, effects);
            }
        } else {
            for bit in (0..16).filter(|bit| request.target_list & (1 << bit) != 0) {
                match self.vcpu_with_affinity(request.target_affinity(bit)) {
                    Some(vcpu) => {
                        self.deliver_sgi(vcpu, request.intid, kind, &mut delivery, effects)
                    }
                    None => {
                        delivery.dropped += 1;
                        self.stats.sgi_targets_dropped += 1;
                    }
                }
            }
        }
        delivery
    }

    fn deliver_sgi(
        &mut self,
        vcpu: usize,
        intid: u32,
        kind: SgiRegister,
        delivery: &mut SgiDelivery,
        effects: &mut Effects,
    ) {
        let id = IrqId::Private { vcpu, intid };
        let Some(irq) = self.irq(id) else {
            delivery.dropped += 1;
            return;
        };
        let allowed = match kind {
            SgiRegister::Group1 => true,
            SgiRegister::AlternateGroup1 | SgiRegister::Group0 => !irq.group1,
        };
        if !allowed {
            delivery.dropped += 1;
            self.stats.sgis_wrong_group += 1;
            return;
        }
        self.pend(id, effects);
        delivery.delivered += 1;
        self.stats.sgis_delivered += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_decoded() {
        // Aff3 0x12, RS 3, Aff2 0x34, INTID 9, Aff1 0x56, TargetList 0b1010.
        let value = (0x12 << 48) | (3 << 44) | (0x34 << 32) | (9 << 24) | (0x56 << 16) | 0b1010;
        let request = SgiRequest::decode(value);
        assert_eq!(request.intid, 9);
        assert!(!request.broadcast);
        assert_eq!(request.target_list, 0b1010);
        assert_eq!(request.target_affinity(1), 0x12_0034_5631);
        assert_eq!(request.target_affinity(3), 0x12_0034_5633);
        assert!(SgiRequest::decode(1 << 40).broadcast);
    }
}
