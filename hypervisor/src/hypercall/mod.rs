//! Calls from the guest: the SMC Calling Convention (`smccc`), the project's vendor
//! hypercall ABI and its validation (`abi`, re-exported here), and on EL2 the handler that
//! runs them on the guest's stage 2.

pub mod abi;
pub mod smccc;

pub use abi::*;

#[cfg(target_os = "none")]
pub mod handler;
