//! aarch64 entry, exception vectors and system-register access.

pub mod cache;
pub mod conflict;
pub mod el2_setup;

pub mod firmware;
pub mod gic;
pub mod hyp_timer;
pub mod sysreg;
pub mod tlb;
pub mod trap;

core::arch::global_asm!(include_str!("head.S"));
core::arch::global_asm!(include_str!("vectors.S"));

unsafe extern "C" {
    /// Masks interrupts and waits forever (head.S).
    fn park() -> !;
}

/// Stops this CPU for good.
pub fn halt() -> ! {
    // SAFETY: `park` only masks interrupts and loops on WFI; it touches no memory.
    unsafe { park() }
}

/// Context synchronisation (Arm ARM D19.2.3): system-register writes before it take effect
/// for the instructions after it.
pub fn barrier_isb() {
    // SAFETY: ISB only synchronises the instruction stream.
    unsafe { core::arch::asm!("isb", options(nostack, preserves_flags)) };
}
