//! The Rust side of the EL2 vectors: traps from the guest go to [`super::guest`]; any
//! exception taken at EL2 itself is a hypervisor bug: report it with the decoded syndrome
//! and the registers, then stop with a failure outcome.

use hypervisor::esr::Esr;
use hypervisor::trap_frame::{TrapFrame, TrapKind, VectorSlot};

use super::{guest, sysreg};
use crate::boot;

#[unsafe(no_mangle)]
extern "C" fn el2_trap(frame: &mut TrapFrame, slot: u64) {
    let esr = Esr(sysreg::esr_el2());
    let far = sysreg::far_el2();
    match VectorSlot::from_slot(slot) {
        Some(VectorSlot::LowerElAarch64(TrapKind::Synchronous)) => {
            guest::handle_sync(frame, esr, far)
        }
        origin => {
            report_unexpected(frame, origin, esr, far);
            let registers = hypervisor::crash_record::CrashRegisters {
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
