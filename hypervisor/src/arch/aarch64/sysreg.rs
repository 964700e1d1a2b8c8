//! Reads of the system registers the hypervisor reports or decides on.

use aarch64_cpu::registers::{
    CNTFRQ_EL0, CNTPCT_EL0, ESR_EL2, FAR_EL2, ID_AA64ISAR0_EL1, ID_AA64MMFR0_EL1, ID_AA64MMFR1_EL1,
    ID_AA64MMFR2_EL1, ID_AA64PFR0_EL1, MIDR_EL1, MPIDR_EL1, Readable,
};
use hypervisor::cpu_features::IdRegisters;

pub fn id_registers() -> IdRegisters {
    IdRegisters {
        midr: MIDR_EL1.get(),
        mpidr: MPIDR_EL1.get(),
        id_aa64mmfr0: ID_AA64MMFR0_EL1.get(),
        id_aa64mmfr1: ID_AA64MMFR1_EL1.get(),
        id_aa64mmfr2: ID_AA64MMFR2_EL1.get(),
        id_aa64isar0: ID_AA64ISAR0_EL1.get(),
        id_aa64pfr0: ID_AA64PFR0_EL1.get(),
    }
}

/// The physical counter. An ISB first so the read is not hoisted above earlier code
/// (Arm ARM D12.1.2: reads of CNTPCT_EL0 can occur speculatively and out of order).
pub fn counter() -> u64 {
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    CNTPCT_EL0.get()
}

pub fn counter_frequency() -> u64 {
    CNTFRQ_EL0.get()
}

pub fn esr_el2() -> u64 {
    ESR_EL2.get()
}

pub fn far_el2() -> u64 {
    FAR_EL2.get()
}
