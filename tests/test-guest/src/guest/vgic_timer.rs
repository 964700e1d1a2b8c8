//! The virtual timer's PPI, a hardware-linked interrupt: the physical PPI fires at EL2,
//! the hypervisor hands it on through a HW = 1 list register, and the guest's EOI
//! deactivates the physical one too.

use super::Env;
use super::console::say;
use super::cpu::{self, Deadline, read_sysreg, write_sysreg};
use super::gic::{end_of_interrupt, wait_for_interrupt};
use super::vgic_sgi::{MIDDLE_PRIORITY, QUIET_MS, quiet_gic, take_one};
use crate::gicv3::{SPURIOUS, TIMER_ENABLE, TIMER_IMASK, TIMER_ISTATUS, ticks_to_us};
use crate::report::{PREFIX, TestResult};
use crate::{ensure, failed, text};

/// When the timer fires.
const FIRE_AFTER_US: u64 = 1000;
/// How long to wait for it (TCG under load can be slow).
const WAIT_MS: u64 = 1000;

pub fn vgic_virtual_timer_interrupt_arrives(env: &Env) -> TestResult {
    let ppi = env.info.gic.virtual_timer_intid.ok_or_else(|| {
        failed!("the device tree has no arm,armv8-timer node giving the virtual timer's PPI")
    })?;
    ensure!(
        (16..32).contains(&ppi),
        "the device tree's virtual timer interrupt is INTID {ppi}, not a PPI"
    );
    let gic = quiet_gic(env)?;
    // Timer off while its PPI is set up.
    write_sysreg!("cntv_ctl_el0", 0);
    gic.ready_private(1 << ppi, |_| MIDDLE_PRIORITY);
    let rate = cpu::tick_rate();
    write_sysreg!("cntv_tval_el0", rate * FIRE_AFTER_US / 1_000_000);
    write_sysreg!("cntv_ctl_el0", TIMER_ENABLE);
    // The new compare value and control must be in effect before CVAL is read back and
    // the wait starts (a system register write needs a context synchronization event).
    cpu::isb();
    let deadline = read_sysreg!("cntv_cval_el0");
    let got = wait_for_interrupt(&Deadline::after_ms(WAIT_MS));
    let now = cpu::ticks();
    let ctl = read_sysreg!("cntv_ctl_el0");
    // Mask the timer before the EOI: its output stays high until CVAL moves or IMASK is
    // set, and an EOI with it high would make the physical PPI pending again. The ISB
    // puts the mask in effect before the EOI.
    write_sysreg!("cntv_ctl_el0", TIMER_ENABLE | TIMER_IMASK);
    cpu::isb();
    if got != SPURIOUS {
        end_of_interrupt(got);
    }
    let again = take_one(QUIET_MS);
    write_sysreg!("cntv_ctl_el0", 0);
    gic.disable_private(1 << ppi);

    ensure!(
        got != SPURIOUS,
        "PPI {ppi} never arrived: ICC_IAR1_EL1 read 1023 for {WAIT_MS} ms; CNTV_CTL_EL0 {ctl:#x}, CNTVCT {now}, CVAL {deadline}"
    );
    ensure!(
        got == ppi,
        "ICC_IAR1_EL1 acknowledged INTID {got}, want the virtual timer's PPI {ppi}"
    );
    ensure!(
        now >= deadline,
        "PPI {ppi} arrived at CNTVCT {now}, {} ticks before the timer's deadline {deadline}",
        deadline - now
    );
    ensure!(
        ctl & TIMER_ISTATUS != 0,
        "CNTV_CTL_EL0 {ctl:#x} when PPI {ppi} arrived: ISTATUS clear"
    );
    ensure!(
        again == SPURIOUS,
        "after masking the timer and the EOI ICC_IAR1_EL1 acknowledged INTID {again}, want 1023"
    );
    let latency = now - deadline;
    let latency_us = ticks_to_us(latency, rate);
    say!(
        "{PREFIX}vgic-latency: virtual timer PPI {ppi}: {latency} ticks ({latency_us} us at {rate} Hz) from its deadline to the ICC_IAR1_EL1 read"
    );
    Ok(text!(
        "PPI {ppi} acknowledged {latency} ticks ({latency_us} us) after the {FIRE_AFTER_US} us deadline; masked, EOI'd, then 1023"
    ))
}
