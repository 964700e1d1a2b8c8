//! The EL2 physical timer (CNTHP_*_EL2), the hypervisor's own: a one-shot deadline on
//! this CPU, taken as its PPI (the DT timer node's fourth interrupt, INTID 26 on QEMU
//! virt) while the CPU runs a guest. Used to write out a guest's unfinished console line
//! (a shell prompt) once the guest has been quiet for a moment.

use super::sysreg::{counter_frequency, write_sysreg};

/// CNTHP_CTL_EL2.ENABLE (IMASK, bit 1, stays 0: the interrupt is wanted).
const CTL_ENABLE: u64 = 1;

/// Fires the timer's interrupt `micros` from now on this CPU (re-arming moves the
/// deadline).
pub fn arm_after_us(micros: u64) {
    let ticks = micros.saturating_mul(counter_frequency()) / 1_000_000;
    // TVAL is a signed 32-bit down-counter: clamp rather than wrap into the past.
    write_sysreg!("cnthp_tval_el2", ticks.min(i32::MAX as u64));
    write_sysreg!("cnthp_ctl_el2", CTL_ENABLE);
}

/// Stops the timer on this CPU (its interrupt line drops with ENABLE = 0).
pub fn disarm() {
    write_sysreg!("cnthp_ctl_el2", 0);
    // The line must be low before the interrupt is deactivated, or it is taken again
    // (Arm ARM D12.8.2: the status is updated by a context synchronisation event).
    super::barrier_isb();
}
