//! aarch64 entry, exception vectors and system-register access.

pub mod psci;
pub mod sysreg;
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
