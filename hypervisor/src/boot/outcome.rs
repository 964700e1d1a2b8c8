//! How a run's outcome reaches the calling script.
//!
//! The last thing the hypervisor prints before PSCI SYSTEM_OFF is one marker line,
//! `hyp-exit: success` or `hyp-exit: failure: <reason>`. Scripts (scripts/run.sh, the
//! QEMU tests) take the outcome from that line; a run that ends without it (a hang, a
//! lost console) counts as a failure. A marker line works on any board, where QEMU's
//! semihosting exit would need `-semihosting` and a debugger-style trap. The line's
//! grammar (and its parser) is the ABI crate's.

pub use hyp_abi::console::{OUTCOME_PREFIX as MARKER, Outcome};
