//! This CPU's GIC virtualization interface (ICH_*_EL2, IHI 0069 §12.4): the list
//! registers a vCPU's virtual interrupts are loaded into, its control and its state. A
//! vCPU always runs on the same physical CPU, so these registers are only ever touched by
//! that CPU and are never switched.

use crate::arch::aarch64::sysreg::{read_sysreg, write_sysreg};

/// ICH_HCR_EL2.En: the virtual CPU interface signals virtual interrupts.
pub const HCR_EN: u64 = 1 << 0;
/// ICH_HCR_EL2.UIE: maintenance interrupt while at most one list register is valid
/// (used while more interrupts wait than list registers hold).
pub const HCR_UIE: u64 = 1 << 1;

/// The most list registers the architecture has (ICH_VTR_EL2.ListRegs is 4 bits).
pub const MAX_LIST_REGISTERS: usize = 16;

/// ICH_VTR_EL2: (list registers, priority bits).
pub fn implemented() -> (usize, u8) {
    let vtr = read_sysreg!("ich_vtr_el2");
    let list_registers = (vtr & 0x1f) as usize + 1;
    let priority_bits = ((vtr >> 29) & 0x7) as u8 + 1;
    (list_registers.min(MAX_LIST_REGISTERS), priority_bits)
}

macro_rules! for_list_register {
    ($index:expr, $action:ident $(, $value:expr)?) => {
        match $index {
            0 => $action!("ich_lr0_el2" $(, $value)?),
            1 => $action!("ich_lr1_el2" $(, $value)?),
            2 => $action!("ich_lr2_el2" $(, $value)?),
            3 => $action!("ich_lr3_el2" $(, $value)?),
            4 => $action!("ich_lr4_el2" $(, $value)?),
            5 => $action!("ich_lr5_el2" $(, $value)?),
            6 => $action!("ich_lr6_el2" $(, $value)?),
            7 => $action!("ich_lr7_el2" $(, $value)?),
            8 => $action!("ich_lr8_el2" $(, $value)?),
            9 => $action!("ich_lr9_el2" $(, $value)?),
            10 => $action!("ich_lr10_el2" $(, $value)?),
            11 => $action!("ich_lr11_el2" $(, $value)?),
            12 => $action!("ich_lr12_el2" $(, $value)?),
            13 => $action!("ich_lr13_el2" $(, $value)?),
            14 => $action!("ich_lr14_el2" $(, $value)?),
            _ => $action!("ich_lr15_el2" $(, $value)?),
        }
    };
}

/// Reads list registers `0..lrs.len()` into `lrs`.
pub fn read_all(lrs: &mut [u64]) {
    for (index, slot) in lrs.iter_mut().enumerate().take(MAX_LIST_REGISTERS) {
        *slot = for_list_register!(index, read_sysreg);
    }
}

/// Writes the list registers whose bit is set in `changed`.
pub fn write_changed(lrs: &[u64], changed: u16) {
    for (index, &value) in lrs.iter().enumerate().take(MAX_LIST_REGISTERS) {
        if changed & (1 << index) != 0 {
            for_list_register!(index, write_sysreg, value);
        }
    }
}

/// Sets ICH_HCR_EL2 (takes effect at the next exception return, which is a context
/// synchronisation event: IHI 0069 §12.4.8 and Arm ARM D19.2.3).
pub fn set_control(hcr: u64) {
    write_sysreg!("ich_hcr_el2", hcr);
}

/// Clears the virtual CPU interface for a vCPU's first entry: no list register valid, no
/// active priorities, the guest's own controls (ICH_VMCR_EL2) at their reset-like 0.
pub fn reset_for_new_vcpu(list_registers: usize) {
    let zeros = [0u64; MAX_LIST_REGISTERS];
    write_changed(&zeros[..list_registers.min(MAX_LIST_REGISTERS)], u16::MAX);
    // ICH_AP{0,1}R<n>_EL2 exist for n < 2^(preemption bits - 5) (IHI 0069 §12.4.1/2);
    // the others are UNDEFINED to access.
    let preemption_bits = ((read_sysreg!("ich_vtr_el2") >> 26) & 0x7) + 1;
    write_sysreg!("ich_ap0r0_el2", 0);
    write_sysreg!("ich_ap1r0_el2", 0);
    if preemption_bits >= 6 {
        write_sysreg!("ich_ap0r1_el2", 0);
        write_sysreg!("ich_ap1r1_el2", 0);
    }
    if preemption_bits >= 7 {
        write_sysreg!("ich_ap0r2_el2", 0);
        write_sysreg!("ich_ap1r2_el2", 0);
        write_sysreg!("ich_ap0r3_el2", 0);
        write_sysreg!("ich_ap1r3_el2", 0);
    }
    write_sysreg!("ich_vmcr_el2", 0);
    set_control(HCR_EN);
}
