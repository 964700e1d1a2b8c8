//! Crashes: the record's format (portable, decoded by `scripts/crash-decode.py`), and on
//! EL2 claiming a crash and writing the record through the crash map.

pub mod record;

#[cfg(target_os = "none")]
mod writer;
#[cfg(target_os = "none")]
pub use writer::*;
