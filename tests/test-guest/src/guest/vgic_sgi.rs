//! SGIs a vCPU sends itself through the trapped ICC_SGI1R_EL1: one arrives once; sixteen
//! at once (more than QEMU's 4 list registers) all arrive, in priority order; one aimed at
//! an affinity no vCPU has is dropped.

use super::Env;
use super::cpu::{self, Deadline, hvc};
use super::gic::{self, Gic, end_of_interrupt, send_sgi, wait_for_interrupt};
use crate::abi::{CALL_UID, UID};
use crate::fixed::{List, Text};
use crate::gicv3::{SGIS, SPURIOUS, ticks_to_us};
use crate::report::{Failure, TestResult};
use crate::{ensure, failed, sgi_order, text};

/// How long an interrupt that should come may take (generous: TCG on a loaded host).
pub(super) const ARRIVE_MS: u64 = 500;
/// How long ICC_IAR1_EL1 must stay 1023 when nothing should come.
pub(super) const QUIET_MS: u64 = 20;
/// A priority in the middle of the range, for tests where it does not matter.
pub(super) const MIDDLE_PRIORITY: u8 = 0x80;

const SELF_SGI: u32 = 1;
const DROPPED_SGI: u32 = 2;
/// Aff1 0x7f: a cluster no vCPU of a QEMU virt machine is in.
const NOBODY: u64 = 0x7f00;

/// Readies the GIC for this CPU and checks nothing is pending already (a leftover of an
/// earlier test would be taken for this test's interrupt).
pub(super) fn quiet_gic(env: &Env) -> Result<Gic, Failure> {
    let gic = Gic::init(&env.info.gic)?;
    let strays = gic::drain::<8>();
    ensure!(
        strays.is_empty(),
        "interrupts pending before the test (acknowledged and ended): {:?}",
        strays
    );
    Ok(gic)
}

/// Waits for the interrupt that should come and ends it; what ICC_IAR1_EL1 returned.
pub(super) fn take_one(ms: u64) -> u32 {
    let intid = wait_for_interrupt(&Deadline::after_ms(ms));
    if intid != SPURIOUS {
        end_of_interrupt(intid);
    }
    intid
}

pub fn vgic_sgi_to_self_arrives(env: &Env) -> TestResult {
    let gic = quiet_gic(env)?;
    gic.ready_private(1 << SELF_SGI, |_| MIDDLE_PRIORITY);
    let sent = cpu::ticks();
    send_sgi(env.own_mpidr, SELF_SGI)?;
    let first = wait_for_interrupt(&Deadline::after_ms(ARRIVE_MS));
    let took = cpu::ticks().wrapping_sub(sent);
    if first != SPURIOUS {
        end_of_interrupt(first);
    }
    let again = take_one(QUIET_MS);
    gic.disable_private(1 << SELF_SGI);
    ensure!(
        first != SPURIOUS,
        "SGI {SELF_SGI} sent to our own affinity {:#x} never arrived: ICC_IAR1_EL1 read 1023 for {ARRIVE_MS} ms",
        env.own_mpidr
    );
    ensure!(
        first == SELF_SGI,
        "ICC_IAR1_EL1 acknowledged INTID {first}, want SGI {SELF_SGI}"
    );
    ensure!(
        again == SPURIOUS,
        "after the EOI ICC_IAR1_EL1 acknowledged INTID {again}, want 1023 (nothing more pending)"
    );
    Ok(text!(
        "SGI {SELF_SGI} acknowledged {} us after the ICC_SGI1R_EL1 write, EOI'd; ICC_IAR1_EL1 then 1023 for {QUIET_MS} ms",
        ticks_to_us(took, cpu::tick_rate())
    ))
}

/// All 16 SGIs made pending on this vCPU, sent in INTID order, each at its own priority
/// (`sgi_order`): the hypervisor must queue the 12 that do not fit QEMU's 4 list
/// registers and refill them on the underflow maintenance interrupt. Each must arrive
/// exactly once, highest priority first.
///
/// They are acknowledged and ended one at a time. ICC_IAR1_EL1 only acknowledges an
/// interrupt of higher priority than the running priority; with EOImode 0 the EOI both
/// drops the running priority and deactivates. Acknowledging all before ending any
/// cannot work here: once the highest-priority SGI is acknowledged the running priority
/// is its own, every other SGI is lower, and IAR reads 1023 until the EOI. So each IAR
/// read happens with nothing active and returns the highest-priority SGI still pending,
/// which is the order under test. The wait per SGI (ARRIVE_MS) covers the gap between
/// the guest emptying its list registers and the maintenance interrupt refilling them;
/// after the 16th, ICC_IAR1_EL1 must stay 1023 for QUIET_MS.
pub fn vgic_more_pending_than_list_registers_all_arrive_in_priority_order(env: &Env) -> TestResult {
    const ALL_SGIS: u32 = (1 << SGIS) - 1;
    let gic = quiet_gic(env)?;
    gic.ready_private(ALL_SGIS, sgi_order::priority);
    for intid in 0..SGIS {
        send_sgi(env.own_mpidr, intid)?;
    }
    let mut received: List<u32, { SGIS as usize + 1 }> = List::new();
    while received.len() < SGIS as usize {
        let intid = take_one(ARRIVE_MS);
        if intid == SPURIOUS {
            break;
        }
        received.push(intid);
    }
    // Nothing more may come: a 17th acknowledgement is a duplicate (or a stranger).
    let extra = take_one(QUIET_MS);
    if extra != SPURIOUS {
        received.push(extra);
    }
    gic.disable_private(ALL_SGIS);
    sgi_order::check(received.as_slice())
        .map_err(|why| failed!("{why}; acknowledged in this order: {:?}", received))?;
    let mut order = Text::<80>::new();
    for intid in received.iter() {
        use core::fmt::Write;
        let _ = write!(order, "{intid} ");
    }
    Ok(text!(
        "16 SGIs pending at once, sent in INTID order; each acknowledged once, by priority: {}; then 1023",
        order.as_str().trim_end()
    ))
}

pub fn vgic_sgi_to_a_cpu_that_is_not_ours_is_dropped(env: &Env) -> TestResult {
    ensure!(
        !env.info.cpus.iter().any(|mpidr| mpidr == NOBODY),
        "a CPU of the device tree has affinity {NOBODY:#x}: the test needs one no vCPU has"
    );
    let gic = quiet_gic(env)?;
    gic.ready_private(1 << DROPPED_SGI, |_| MIDDLE_PRIORITY);
    send_sgi(NOBODY, DROPPED_SGI)?;
    let stray = take_one(QUIET_MS);
    // Control: the same SGI to our own affinity arrives, so the wait above could have
    // seen one.
    send_sgi(env.own_mpidr, DROPPED_SGI)?;
    let control = take_one(ARRIVE_MS);
    gic.disable_private(1 << DROPPED_SGI);
    ensure!(
        stray == SPURIOUS,
        "SGI {DROPPED_SGI} aimed at affinity {NOBODY:#x} arrived here (ICC_IAR1_EL1 {stray}): want it dropped"
    );
    ensure!(
        control == DROPPED_SGI,
        "control: SGI {DROPPED_SGI} to our own affinity {:#x} gave ICC_IAR1_EL1 {control}, want {DROPPED_SGI}",
        env.own_mpidr
    );
    let uid = hvc(CALL_UID, 0, 0, 0);
    ensure!(
        uid[0] == u64::from(UID[0]),
        "the hypervisor stopped answering CALL_UID after the SGI to {NOBODY:#x}"
    );
    Ok(text!(
        "SGI {DROPPED_SGI} to affinity {NOBODY:#x}: nothing for {QUIET_MS} ms; the same SGI to our own affinity arrived; CALL_UID still answers"
    ))
}
