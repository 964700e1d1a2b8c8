//! The board the hypervisor runs on.
//!
//! Portable parts (plain Rust, tested on the host):
//! - [`info`]: the facts the device tree gives, as one plain value ([`info::PlatformInfo`]);
//! - [`dt`]: parsing a flattened device tree into that value;
//! - [`bootargs`]: the hypervisor's command line.
//!
//! Device drivers (MMIO; they build anywhere but only run on the board):
//! - [`pl011`]: the console UART.
#![cfg_attr(not(test), no_std)]

pub mod bootargs;
pub mod dt;
pub mod info;
pub mod pl011;
