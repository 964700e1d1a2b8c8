//! The hypervisor's console: the PL011 the device tree names, the logger, and the ring of
//! recent lines the crash record keeps.

pub mod backlog;
pub mod focus;
pub mod guest_output;
pub mod log_ring;

#[cfg(target_os = "none")]
pub mod input;
#[cfg(target_os = "none")]
mod output;
#[cfg(target_os = "none")]
pub use output::*;
