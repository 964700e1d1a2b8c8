//! The architecture: decoding what it reports (exception syndromes, the trap frame the
//! vectors save), portable; and on aarch64 the thin layer that touches the CPU: entry,
//! vectors, system registers, EL2 controls, cache maintenance, firmware calls.

pub mod esr;
pub mod gicv3;
pub mod trap_frame;

#[cfg(target_os = "none")]
pub mod aarch64;
#[cfg(target_os = "none")]
pub use aarch64::*;
