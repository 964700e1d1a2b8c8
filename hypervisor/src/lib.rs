//! The hypervisor's portable logic: everything that can be decided without touching a
//! system register lives here and is tested on the host with `cargo test`. The thin
//! aarch64 layer (entry, vectors, system registers, PSCI calls) is in the binary
//! (`main.rs` and `arch/`).
#![cfg_attr(not(test), no_std)]

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
