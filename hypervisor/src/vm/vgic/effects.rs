//! What the EL2 layer must do to hardware (or to other CPUs) after a call into the vGIC.
//! Fixed capacity, no allocation: kicks are a set of vCPUs, the hardware effects a short
//! list (the most one call produces is two per interrupt of one 32-bit register write).

use arrayvec::ArrayVec;

use super::config::MAX_VCPUS;

/// Hardware effects one [`Effects`] holds. One register write yields at most 64 (ICPENDR
/// over 32 hardware-linked interrupts: clear the physical pending state and release the
/// physical activation of each); `vcpu_came_online` 32 for the PPIs plus one per
/// hardware-linked SPI routed to the vCPU.
pub const HARDWARE_EFFECT_CAPACITY: usize = 128;

/// One thing for the EL2 layer to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// vCPU `vcpu` has new pending work (or its list registers must change): if it runs
    /// on another physical CPU, kick that CPU so it exits, folds and flushes. For the
    /// vCPU that made the call, it means "flush before resuming it".
    Kick { vcpu: usize },
    /// Mirror the guest's enable of a hardware-linked interrupt onto the physical one
    /// (for PPIs, on the redistributor of the CPU running `vcpu`).
    HardwareEnable {
        physical_intid: u32,
        vcpu: usize,
        enabled: bool,
    },
    /// Route a hardware-linked SPI to the CPU running `vcpu` (the guest wrote its
    /// GICD_IROUTER).
    HardwareRoute { physical_intid: u32, vcpu: usize },
    /// Set or clear the physical pending state (GICD_ISPENDR/ICPENDR or, for a PPI, the
    /// GICR_ of the CPU running `vcpu`).
    HardwarePending {
        physical_intid: u32,
        vcpu: usize,
        pending: bool,
    },
    /// Set or clear the physical active state (GICD/GICR_ISACTIVER/ICACTIVER; clearing it
    /// may also be done with ICC_DIR_EL1 on the CPU that acknowledged it).
    HardwareActive {
        physical_intid: u32,
        vcpu: usize,
        active: bool,
    },
    /// Mirror the guest's GICD_ICFGR trigger mode onto a hardware-linked SPI.
    HardwareTrigger { physical_intid: u32, edge: bool },
}

/// A set of vCPU numbers below [`MAX_VCPUS`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuSet {
    words: [u64; MAX_VCPUS / 64],
}

impl VcpuSet {
    pub const fn new() -> Self {
        Self {
            words: [0; MAX_VCPUS / 64],
        }
    }

    /// Adds `vcpu`; numbers at or above [`MAX_VCPUS`] are ignored.
    pub fn insert(&mut self, vcpu: usize) {
        if let Some(word) = self.words.get_mut(vcpu / 64) {
            *word |= 1 << (vcpu % 64);
        }
    }

    pub fn contains(&self, vcpu: usize) -> bool {
        self.words
            .get(vcpu / 64)
            .is_some_and(|word| word & (1 << (vcpu % 64)) != 0)
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&word| word == 0)
    }

    pub fn len(&self) -> usize {
        self.words
            .iter()
            .map(|word| word.count_ones() as usize)
            .sum()
    }

    /// The vCPUs in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..MAX_VCPUS).filter(|&vcpu| self.contains(vcpu))
    }
}

/// The effects of one or more calls, to apply in order: hardware effects first (in the
/// order they arose), then the kicks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    hardware: ArrayVec<Effect, HARDWARE_EFFECT_CAPACITY>,
    kicks: VcpuSet,
    overflowed: bool,
}

impl Effects {
    pub const fn new() -> Self {
        Self {
            hardware: ArrayVec::new_const(),
            kicks: VcpuSet::new(),
            overflowed: false,
        }
    }

    /// Forgets everything (after the caller applied it).
    pub fn clear(&mut self) {
        self.hardware.clear();
        self.kicks = VcpuSet::new();
        self.overflowed = false;
    }

    pub fn is_empty(&self) -> bool {
        self.hardware.is_empty() && self.kicks.is_empty()
    }

    /// Every effect: the hardware ones, then one [`Effect::Kick`] per vCPU.
    pub fn iter(&self) -> impl Iterator<Item = Effect> + '_ {
        let kicks = self.kicks.iter().map(|vcpu| Effect::Kick { vcpu });
        self.hardware.iter().copied().chain(kicks)
    }

    /// The vCPUs to kick.
    pub fn kicks(&self) -> &VcpuSet {
        &self.kicks
    }

    /// Whether a hardware effect was lost because the list was full (the caller batched
    /// too many calls without [`Effects::clear`]); never happens for one call.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    pub(crate) fn kick(&mut self, vcpu: usize) {
        self.kicks.insert(vcpu);
    }

    pub(crate) fn push(&mut self, effect: Effect) {
        if self.hardware.try_push(effect).is_err() {
            self.overflowed = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kicks_are_a_set_listed_after_hardware_effects() {
        let mut effects = Effects::new();
        assert!(effects.is_empty());
        effects.kick(3);
        effects.kick(1);
        effects.kick(3);
        effects.kick(MAX_VCPUS);
        let enable = Effect::HardwareEnable {
            physical_intid: 40,
            vcpu: 0,
            enabled: true,
        };
        effects.push(enable);
        let all: std::vec::Vec<_> = effects.iter().collect();
        assert_eq!(
            all,
            [enable, Effect::Kick { vcpu: 1 }, Effect::Kick { vcpu: 3 }]
        );
        assert_eq!(effects.kicks().len(), 2);
        effects.clear();
        assert!(effects.is_empty());
    }

    #[test]
    fn a_full_list_reports_overflow_instead_of_panicking() {
        let mut effects = Effects::new();
        for intid in 0..=HARDWARE_EFFECT_CAPACITY as u32 {
            effects.push(Effect::HardwareTrigger {
                physical_intid: intid,
                edge: true,
            });
        }
        assert!(effects.overflowed());
        assert_eq!(effects.iter().count(), HARDWARE_EFFECT_CAPACITY);
    }
}
