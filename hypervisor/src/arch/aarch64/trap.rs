//! The Rust side of the EL2 vectors: traps from the guest go to [`super::guest`]; any
//! exception taken at EL2 itself is a hypervisor bug: report it with the decoded syndrome
//! and the registers, then stop with a failure outcome.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch::esr::{Esr, ExceptionClass};
use crate::arch::trap_frame::{TrapFrame, TrapKind, VectorSlot};
use crate::vm::fault::is_el2_tlb_conflict;

use super::sysreg;
use crate::vm::vcpu;
use crate::{boot, console};

/// An EL2 selftest that provokes a fault arms this first; the handler then records the
/// syndrome and resumes instead of stopping (see [`expect_fault`]).
static EXPECTED_FAULT: spin::Mutex<Option<CaughtFault>> = spin::Mutex::new(None);
static FAULT_ARMED: AtomicBool = AtomicBool::new(false);

/// A fault caught for a selftest.
#[derive(Clone, Copy, Debug, Default)]
pub struct CaughtFault {
    pub esr: u64,
    pub far: u64,
    pub elr: u64,
}

/// Runs `provoke`, which must fault at EL2 exactly once with a single-instruction access
/// (a data abort resumes after the instruction; an instruction abort of a `blr` target
/// resumes at the return address), and returns the fault, or `None` if none came.
pub fn expect_fault(provoke: impl FnOnce()) -> Option<CaughtFault> {
    *EXPECTED_FAULT.lock() = None;
    FAULT_ARMED.store(true, Ordering::SeqCst);
    provoke();
    FAULT_ARMED.store(false, Ordering::SeqCst);
    EXPECTED_FAULT.lock().take()
}

fn catch_expected(frame: &mut TrapFrame, esr: Esr, far: u64) -> bool {
    if !FAULT_ARMED.swap(false, Ordering::SeqCst) {
        return false;
    }
    *EXPECTED_FAULT.lock() = Some(CaughtFault {
        esr: esr.0,
        far,
        elr: frame.elr,
    });
    frame.elr = if esr.class() == ExceptionClass::INSTR_ABORT_SAME {
        frame.regs[30]
    } else {
        frame.elr + 4
    };
    true
}

/// The vectors' entry for every exception taken to EL2 (vectors.S), after the frame
/// is saved.
#[unsafe(no_mangle)]
pub extern "C" fn el2_trap(frame: &mut TrapFrame, slot: u64) {
    if crate::crash::another_cpu_crashed() {
        // Stop here, touching nothing shared: the crashing CPU reports and powers off.
        super::halt();
    }
    let esr = Esr(sysreg::esr_el2());
    let far = sysreg::far_el2();
    match VectorSlot::from_slot(slot) {
        Some(VectorSlot::LowerElAarch64(
            kind @ (TrapKind::Synchronous | TrapKind::Irq | TrapKind::Fiq),
        )) => {
            let started = sysreg::counter();
            if kind == TrapKind::Synchronous {
                vcpu::handle_sync(frame, esr, far);
            } else {
                // HCR_EL2.IMO/FMO: every physical interrupt comes here while a guest runs.
                vcpu::handle_interrupt();
            }
            vcpu::account_el2_time(started);
        }
        Some(VectorSlot::CurrentElSpx(TrapKind::Synchronous))
            if is_el2_tlb_conflict(esr) && super::conflict::retry_el2_tlb_conflict(frame) => {}
        Some(VectorSlot::CurrentElSpx(TrapKind::Synchronous))
            if catch_expected(frame, esr, far) => {}
        origin => {
            if !crate::crash::claim() {
                super::halt();
            }
            console::break_locks_for_crash();
            report_unexpected(frame, origin, esr, far);
            let registers = crate::crash::record::CrashRegisters {
                esr: esr.0,
                far,
                elr: frame.elr,
                spsr: frame.spsr,
                regs: frame.regs,
            };
            crate::crash::write("unexpected exception at EL2", &registers);
            boot::stop_failure("unexpected exception at EL2");
        }
    }
}

fn report_unexpected(frame: &TrapFrame, origin: Option<VectorSlot>, esr: Esr, far: u64) {
    log::error!("unexpected exception: {origin:?}");
    log::error!("  ESR_EL2  {esr}");
    log::error!("  FAR_EL2  {far:#018x}");
    log::error!("  ELR_EL2  {:#018x}", frame.elr);
    log::error!("  SPSR_EL2 {:#018x}", frame.spsr);
    log::error!("  SP       {:#018x}", frame.sp);
    for (pair, regs) in frame.regs.chunks(2).enumerate() {
        let n = pair * 2;
        match regs {
            [a, b] => log::error!("  x{:<2} {a:#018x}  x{:<2} {b:#018x}", n, n + 1),
            [a] => log::error!("  x{n:<2} {a:#018x}"),
            _ => {}
        }
    }
}
