//! The Rust side of the EL2 vectors. Until guests run, every trap is unexpected: report
//! it with the decoded syndrome and the registers, then stop with a failure outcome.

use hypervisor::esr::Esr;
use hypervisor::trap_frame::{TrapFrame, VectorSlot};

use super::sysreg;
use crate::boot;

#[unsafe(no_mangle)]
extern "C" fn el2_trap(frame: &mut TrapFrame, slot: u64) {
    let esr = Esr(sysreg::esr_el2());
    let far = sysreg::far_el2();
    report_unexpected(frame, slot, esr, far);
    boot::stop_failure("unexpected exception at EL2");
}

fn report_unexpected(frame: &TrapFrame, slot: u64, esr: Esr, far: u64) {
    let origin = VectorSlot::from_slot(slot);
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
