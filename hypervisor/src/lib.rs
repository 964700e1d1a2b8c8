//! The hypervisor. Everything that can be decided without touching a system register is
//! portable and tested on the host with `cargo test`; the EL2 program (entry, vectors,
//! system registers, the boot path, the guest's traps) is compiled only for the
//! bare-metal target (`target_os = "none"`), and `main.rs` only links it into the image.
#![cfg_attr(not(test), no_std)]

#[cfg(target_os = "none")]
extern crate alloc;

pub mod change_window;
pub mod cpu_features;
pub mod crash_record;
pub mod esr;
pub mod facts;
pub mod foreign_access;
pub mod frames;
pub mod heap_window;
pub mod hypercall;
pub mod inject;
pub mod ipa_size;
pub mod log_ring;
pub mod memory_plan;
pub mod outcome;
pub mod psci;
pub mod smccc;
pub mod stage2_fault;
pub mod sysreg_trap;
pub mod tlbi_range;
pub mod trap_frame;

// The EL2 program.
#[cfg(target_os = "none")]
mod arch;
#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
mod bootargs;
#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
mod cpus;
#[cfg(target_os = "none")]
mod crash;
#[cfg(target_os = "none")]
mod guest_boot;
#[cfg(target_os = "none")]
mod hypercalls;
#[cfg(target_os = "none")]
mod mm;
#[cfg(target_os = "none")]
mod protect_bench;
#[cfg(target_os = "none")]
mod run;
#[cfg(target_os = "none")]
mod selftest;
