//! The CPUs: the features the hypervisor depends on, decoded from ID registers (and what
//! every CPU shares), and on EL2 the physical CPUs themselves, started with the MMU on and
//! given work.

pub mod features;

#[cfg(target_os = "none")]
mod online;
#[cfg(target_os = "none")]
pub use online::*;
