//! The test guest: a freestanding EL1 program the hypervisor boots like a Linux kernel
//! (an arm64 Image, x0 = DTB, MMU off) that checks the hypervisor's vendor hypercalls,
//! the stage-2 permission faults they cause, live block splits and collapses, from the
//! guest's side. See `tests/test-guest/README.md` for the layout, the tests and the
//! console protocol (also in [`report`]).
//!
//! The portable logic (DTB parsing, the memory layout, the stage-1 tables, syndrome
//! checks, the data patterns, the result lines) is plain Rust with host unit tests; the
//! bare-metal part (`guest`) is built only for `target_os = "none"`.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]
#![cfg_attr(not(target_os = "none"), allow(dead_code))]
// Failures carry their message in a fixed-size `Text` (there is no allocator); the size
// of the `Err` variant is the price of that.
#![allow(clippy::result_large_err)]

pub mod fixed;

pub mod abi;
pub mod cases;
pub mod dtinfo;
pub mod esr;
pub mod fdt;
pub mod gic_dt;
pub mod gicv3;
pub mod layout;
pub mod pci;
pub mod report;
pub mod sgi_order;
pub mod stage1;
pub mod stress_plan;
pub mod sweep;

#[cfg(target_os = "none")]
mod guest;

#[cfg(not(target_os = "none"))]
fn main() {
    println!(
        "test-guest is a bare-metal EL1 program: build it with scripts/build-test-guest.sh \
         (aarch64-unknown-none-softfloat); on the host only its unit tests run"
    );
}
