//! The hypervisor's two public contracts, in one place so that every side reads the
//! same numbers and the same words:
//!
//! - [`hypercall`]: the vendor hypercall ABI a guest uses (function IDs, UID, status
//!   codes, permission bits, STATS groups, the FEATURES bitmap). The hypervisor decodes
//!   with it, the EL1 test guest and the fuzz targets call and check with it, and a test
//!   here compares it with the constants of the Linux module
//!   `scripts/guest-module/hypmem.c`.
//! - [`console`]: the grammar of the console lines printed for scripts (`hyp-facts:`,
//!   `hyp-cpu:`, `ptdump:`, `map-stats:`, `heap-stats:`, `foreign-access:`,
//!   `hyp-exits:` and the `hyp-exit:` outcome marker): their prefixes, the keys the
//!   tests and scripts rely on, and an allocation-free parser and writer.
//!
//! `no_std` and without dependencies: the bare-metal test guest and the EL2 binary link
//! it as they are, and the host tests get exactly the same definitions.
#![cfg_attr(not(test), no_std)]

pub mod console;
pub mod hypercall;

#[cfg(test)]
mod hypmem_c;
