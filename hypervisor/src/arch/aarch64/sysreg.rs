//! System-register access: typed reads through `aarch64-cpu` where it has the register,
//! and `read_sysreg!`/`write_sysreg!` by name or encoding for the rest.

/// Reads a system register by name or `s<op0>_<op1>_c<n>_c<m>_<op2>` encoding.
macro_rules! read_sysreg {
    ($name:literal) => {{
        let value: u64;
        // SAFETY: reading an ID or control register has no side effects on memory.
        unsafe {
            core::arch::asm!(concat!("mrs {}, ", $name), out(reg) value, options(nomem, nostack, preserves_flags))
        };
        value
    }};
}

/// Writes a system register by name or encoding. Callers pair it with an ISB before
/// relying on the new value (Arm ARM D19.2.3).
macro_rules! write_sysreg {
    ($name:literal, $value:expr) => {{
        let value: u64 = $value;
        // SAFETY: used only for EL2/EL1 control and context registers whose values the
        // callers derive from the CPU's ID registers or the guest's own state; none of
        // them changes the memory EL2 itself relies on.
        unsafe { core::arch::asm!(concat!("msr ", $name, ", {}"), in(reg) value, options(nostack, preserves_flags)) };
    }};
}

pub(crate) use {read_sysreg, write_sysreg};

use crate::cpu::features::IdRegisters;
use aarch64_cpu::registers::{
    CNTFRQ_EL0, CNTPCT_EL0, ESR_EL2, FAR_EL2, ID_AA64ISAR0_EL1, ID_AA64MMFR0_EL1, ID_AA64MMFR1_EL1,
    ID_AA64MMFR2_EL1, ID_AA64PFR0_EL1, MIDR_EL1, MPIDR_EL1, Readable,
};

pub fn id_registers() -> IdRegisters {
    IdRegisters {
        midr: MIDR_EL1.get(),
        mpidr: MPIDR_EL1.get(),
        id_aa64mmfr0: ID_AA64MMFR0_EL1.get(),
        id_aa64mmfr1: ID_AA64MMFR1_EL1.get(),
        id_aa64mmfr2: ID_AA64MMFR2_EL1.get(),
        id_aa64isar0: ID_AA64ISAR0_EL1.get(),
        id_aa64pfr0: ID_AA64PFR0_EL1.get(),
        id_aa64pfr1: read_sysreg!("id_aa64pfr1_el1"),
        id_aa64mmfr3: read_sysreg!("s3_0_c0_c7_3"), // ID_AA64MMFR3_EL1
        id_aa64isar2: read_sysreg!("s3_0_c0_c6_2"), // ID_AA64ISAR2_EL1
        id_aa64smfr0: read_sysreg!("s3_0_c0_c4_5"), // ID_AA64SMFR0_EL1
        id_aa64dfr0: read_sysreg!("id_aa64dfr0_el1"),
        pmu_counters: pmu_event_counters(),
    }
}

/// PMCR_EL0.N, bits [15:11], when the CPU has a PMUv3 (ID_AA64DFR0_EL1.PMUVer neither 0
/// nor 0xf); PMCR_EL0 is not to be read otherwise.
fn pmu_event_counters() -> u8 {
    let pmu_version = (read_sysreg!("id_aa64dfr0_el1") >> 8) & 0xf;
    if matches!(pmu_version, 0 | 0xf) {
        return 0;
    }
    ((read_sysreg!("pmcr_el0") >> 11) & 0x1f) as u8
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

/// Counter ticks as microseconds.
pub fn ticks_to_micros(ticks: u64) -> u64 {
    (u128::from(ticks) * 1_000_000 / u128::from(counter_frequency().max(1))) as u64
}

pub fn esr_el2() -> u64 {
    ESR_EL2.get()
}

pub fn far_el2() -> u64 {
    FAR_EL2.get()
}

/// Calls `ready` until it is true or `timeout_us` passed by the physical counter (a CPU
/// or lock holder that never answers must not hang the caller). Whether `ready` held.
pub fn wait_until(mut ready: impl FnMut() -> bool, timeout_us: u64) -> bool {
    let frequency = counter_frequency().max(1);
    let start = counter();
    let ticks = timeout_us.saturating_mul(frequency) / 1_000_000;
    while !ready() {
        if counter().wrapping_sub(start) > ticks {
            return ready();
        }
        core::hint::spin_loop();
    }
    true
}
