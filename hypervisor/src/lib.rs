//! The hypervisor, one folder per topic. Each topic's portable half (what can be decided
//! without touching a system register) builds and is tested on the host with `cargo
//! test`; its EL2 half is compiled only for the bare-metal target (`target_os = "none"`)
//! and gated inside the topic's own module. `main.rs` only links the library into the
//! image.
//!
//! | module | job |
//! |---|---|
//! | [`arch`] | the architecture's facts (syndromes, trap frames); on aarch64 the only code that touches registers: entry, vectors, EL2 controls, cache and firmware calls |
//! | [`boot`] | from the Image entry to a running system: DT, command line, report, memory bring-up, the outcome line |
//! | [`console`] | the console and the log ring the crash record keeps |
//! | [`cpu`] | CPU features (and what every CPU shares); starting the physical CPUs with the MMU on |
//! | [`mm`] | the pool's frames, the memory layout, the EL2 map, the heap, TLBI range encoding |
//! | [`vm`] | a guest: building its stage 2, vCPUs, PSCI, exception injection, stage-2 faults, trapped registers |
//! | [`hypercall`] | the SMCCC conduit and the vendor hypercall ABI; the handler on the guest's stage 2 |
//! | [`iommu`] | the SMMUv3: stage-2 STEs from VTCR_EL2, commands mirroring the CPU's TLBIs, queues, event records (portable); bringing it up and attaching a guest's streams to its stage 2 (EL2) |
//! | [`crash`] | the crash record's format and the ELF core header for a capture kernel; claiming a crash and writing the record |
//! | `selftest` | the EL2 selftests and the MEM_PROTECT benchmark (EL2 only) |
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod arch;
pub mod boot;
pub mod console;
pub mod cpu;
pub mod crash;
pub mod hypercall;
pub mod iommu;
pub mod mm;
#[cfg(target_os = "none")]
mod selftest;
pub mod vm;
