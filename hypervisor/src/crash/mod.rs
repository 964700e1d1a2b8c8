//! Crashes: the record's format (portable, decoded by `scripts/crash-decode.py`), the
//! ELF core header a capture kernel will read (portable, not written yet: issue 18), and
//! on EL2 claiming a crash and writing the record through the crash map.

pub mod elf_core;
pub mod record;

#[cfg(target_os = "none")]
mod writer;
#[cfg(target_os = "none")]
pub use writer::*;
