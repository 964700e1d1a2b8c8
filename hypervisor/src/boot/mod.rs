//! From the Image entry to a running system: the device tree, the command line, the boot
//! report (`facts`), memory and CPU bring-up (`sequence`), and the outcome line every
//! stop prints (`outcome`).

pub mod facts;
pub mod outcome;

#[cfg(target_os = "none")]
pub mod bootargs;
#[cfg(target_os = "none")]
mod entry;
#[cfg(target_os = "none")]
mod power;
#[cfg(target_os = "none")]
pub mod sequence;

#[cfg(target_os = "none")]
pub use power::{stop, stop_failure};
