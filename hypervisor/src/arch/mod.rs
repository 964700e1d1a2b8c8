//! The thin layer that touches the CPU: entry, vectors, system registers, firmware calls.
pub mod aarch64;
pub use aarch64::*;
