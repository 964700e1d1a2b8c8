//! The hypervisor image. On `aarch64-unknown-none` this is the EL2 program entered through
//! the arm64 Image header (arch/aarch64/head.S); on any other target it only explains how
//! to build it, so that `cargo test` on the host can build the whole workspace.
#![cfg_attr(target_os = "none", no_std, no_main)]

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

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the hypervisor image builds for aarch64-unknown-none: see scripts/build.sh");
}
