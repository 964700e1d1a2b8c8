//! The hypervisor image. On `aarch64-unknown-none` the EL2 program lives in the library
//! (entered through the arm64 Image header in `arch/aarch64/head.S`) and this binary only
//! links it; on any other target it explains how to build it, so that `cargo test` on the
//! host can build the whole workspace.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
use hypervisor as _;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the hypervisor image builds for aarch64-unknown-none: see scripts/build.sh");
}
