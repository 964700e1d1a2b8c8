//! System registers, SMCCC calls, cache maintenance and the counter.

use core::arch::asm;

use crate::dtinfo::Conduit;

macro_rules! read_sysreg {
    ($name:literal) => {{
        let value: u64;
        // SAFETY: reading a system register has no side effect on memory.
        unsafe {
            core::arch::asm!(concat!("mrs {}, ", $name), out(reg) value,
                options(nomem, nostack, preserves_flags))
        };
        value
    }};
}
pub(crate) use read_sysreg;

macro_rules! write_sysreg {
    ($name:literal, $value:expr) => {{
        let value: u64 = $value;
        // SAFETY: the callers write registers that only affect this CPU's EL1 state in
        // the way each call site documents.
        unsafe {
            core::arch::asm!(concat!("msr ", $name, ", {}"), in(reg) value,
                options(nostack, preserves_flags))
        };
    }};
}
pub(crate) use write_sysreg;

pub fn isb() {
    // SAFETY: a barrier.
    unsafe { asm!("isb", options(nostack, preserves_flags)) };
}

pub fn dsb_ish() {
    // SAFETY: a barrier.
    unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
}

pub fn dsb_sy() {
    // SAFETY: a barrier.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

pub fn current_el() -> u64 {
    (read_sysreg!("CurrentEL") >> 2) & 3
}

/// MPIDR_EL1 affinity (Aff3, Aff2..Aff0).
pub fn mpidr() -> u64 {
    read_sysreg!("mpidr_el1") & crate::dtinfo::MPIDR_AFFINITY_MASK
}

/// This CPU's slot (0 boot CPU, 1 secondary), kept in TPIDR_EL1 by head.S.
pub fn slot() -> usize {
    (read_sysreg!("tpidr_el1") as usize).min(super::MAX_SLOTS - 1)
}

/// An SMCCC call with x1..x3 as arguments; x0..x3 of the answer. x4..x17 are treated
/// as clobbered (SMCCC 1.0 callees may change them).
pub fn smccc(conduit: Conduit, function: u32, a1: u64, a2: u64, a3: u64) -> [u64; 4] {
    let (mut r0, mut r1, mut r2, mut r3) = (u64::from(function), a1, a2, a3);
    // SAFETY: a firmware/hypervisor call per SMCCC; it touches no memory of ours except
    // what the call is documented to do (none of the calls made here write memory).
    unsafe {
        match conduit {
            Conduit::Hvc => asm!("hvc #0",
                inout("x0") r0, inout("x1") r1, inout("x2") r2, inout("x3") r3,
                out("x4") _, out("x5") _, out("x6") _, out("x7") _,
                out("x8") _, out("x9") _, out("x10") _, out("x11") _,
                out("x12") _, out("x13") _, out("x14") _, out("x15") _,
                out("x16") _, out("x17") _, options(nostack)),
            Conduit::Smc => asm!("smc #0",
                inout("x0") r0, inout("x1") r1, inout("x2") r2, inout("x3") r3,
                out("x4") _, out("x5") _, out("x6") _, out("x7") _,
                out("x8") _, out("x9") _, out("x10") _, out("x11") _,
                out("x12") _, out("x13") _, out("x14") _, out("x15") _,
                out("x16") _, out("x17") _, options(nostack)),
        }
    }
    [r0, r1, r2, r3]
}

/// A vendor hypercall: always HVC, whatever the DT's PSCI conduit.
pub fn hvc(function: u32, a1: u64, a2: u64, a3: u64) -> [u64; 4] {
    smccc(Conduit::Hvc, function, a1, a2, a3)
}

/// The smallest data cache line (CTR_EL0.DminLine).
fn dcache_line() -> u64 {
    4 << ((read_sysreg!("ctr_el0") >> 16) & 0xf)
}

/// The smallest instruction cache line (CTR_EL0.IminLine).
fn icache_line() -> u64 {
    4 << (read_sysreg!("ctr_el0") & 0xf)
}

macro_rules! by_line {
    ($op:literal, $line:expr, $start:expr, $len:expr) => {{
        let line = $line;
        let mut a = $start & !(line - 1);
        let end = $start.saturating_add($len);
        while a < end {
            // SAFETY: cache maintenance by VA on memory the caller owns.
            unsafe { asm!(concat!($op, ", {}"), in(reg) a, options(nostack, preserves_flags)) };
            a += line;
        }
    }};
}

/// Makes instructions just written at `[start, start + len)` visible to fetches
/// (Arm ARM "Concurrent modification and execution of instructions"): DC CVAU, DSB ISH,
/// IC IVAU, DSB ISH, ISB.
pub fn sync_icache(start: u64, len: u64) {
    by_line!("dc cvau", dcache_line(), start, len);
    dsb_ish();
    by_line!("ic ivau", icache_line(), start, len);
    dsb_ish();
    isb();
}

/// Cleans `[start, start + len)` to the point of coherency, for a CPU that reads it with
/// its MMU (and so its caches) off.
pub fn clean_to_poc(start: u64, len: u64) {
    by_line!("dc cvac", dcache_line(), start, len);
    dsb_sy();
}

/// Invalidates `[start, start + len)` from the data caches (before the MMU goes on, so
/// no stale line hides what was written with the MMU off).
pub fn invalidate_dcache(start: u64, len: u64) {
    by_line!("dc ivac", dcache_line(), start, len);
    dsb_sy();
}

/// The virtual counter.
pub fn ticks() -> u64 {
    isb();
    read_sysreg!("cntvct_el0")
}

/// Counter ticks per second (CNTFRQ_EL0; 62.5 MHz, QEMU's value, if unset).
pub fn tick_rate() -> u64 {
    match read_sysreg!("cntfrq_el0") & 0xffff_ffff {
        0 => 62_500_000,
        f => f,
    }
}

/// A deadline `ms` milliseconds from now.
pub struct Deadline(u64);

impl Deadline {
    pub fn after_ms(ms: u64) -> Self {
        Self(ticks().saturating_add(tick_rate() / 1000 * ms))
    }

    pub fn passed(&self) -> bool {
        ticks() >= self.0
    }
}

/// Milliseconds since `start` (a [`ticks`] value).
pub fn ms_since(start: u64) -> u64 {
    ticks().wrapping_sub(start) / (tick_rate() / 1000).max(1)
}

unsafe extern "C" {
    fn park() -> !;
}

/// Stops this CPU for good.
pub fn halt() -> ! {
    // SAFETY: `park` masks interrupts and loops on WFI; it touches no memory.
    unsafe { park() }
}
