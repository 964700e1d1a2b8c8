//! A guest: the stage-2 IPA size it needs, PSCI as offered to it, exception injection,
//! stage-2 fault and trapped-register decisions, the change window and the tally of its
//! accesses outside its memory (portable); on EL2, building its stage 2 and running its
//! vCPUs.

pub mod change_window;
pub mod controls;
pub mod emulated_devices;
pub mod fault;
pub mod foreign_access;
pub mod inject;
pub mod ipa_size;
pub mod mmio;
pub mod psci;
pub mod sysreg_trap;
pub mod vgic;
pub mod virtual_console;
pub mod vpl011;

#[cfg(target_os = "none")]
pub mod build;
#[cfg(target_os = "none")]
pub mod build_domains;
#[cfg(target_os = "none")]
pub mod emulation;
#[cfg(target_os = "none")]
pub mod guest;
#[cfg(target_os = "none")]
pub mod interrupts;
#[cfg(target_os = "none")]
pub mod registry;
#[cfg(target_os = "none")]
pub mod reset;
#[cfg(target_os = "none")]
pub mod vcpu;
