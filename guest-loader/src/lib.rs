//! Loading the guest: Xen's multiboot device-tree protocol to find the kernel, initrd
//! and command line ([`modules`]), the arm64 `Image` header ([`image`]), where the pieces
//! go in guest RAM ([`placement`]), which devices the guest gets ([`devices`], with the
//! address translation of [`passthrough`]) and the guest's device tree ([`guest_dt`]);
//! [`plan`] chains them.
//!
//! Everything here is portable `no_std` + `alloc` code that never touches memory itself:
//! the hypervisor reads the kernel header, performs the copies the [`Placement`] lists,
//! writes the DTB and enters the guest. Every malformed input (module list, kernel
//! header, host DTB) yields an error value with a message naming the problem; nothing
//! here panics on input data, so the hypervisor can report it and stop before entering
//! the guest.
//!
//! ```text
//! let plan = guest_loader::plan_guest(&info.modules, host_dtb, &config, |kernel| {
//!     // SAFETY (hypervisor): the module range is identity mapped and readable.
//!     unsafe { core::slice::from_raw_parts(kernel.base as *const u8, 4096.min(kernel.size as usize)) }
//! })?;
//! for copy in &plan.placement.copies { memmove(copy.dst, copy.src, copy.len) }
//! write(plan.placement.dtb.base, &plan.dtb);
//! clean_to_poc(...); enter_guest(plan.placement.entry, /* x0 = */ plan.placement.dtb.base);
//! ```
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod devices;
pub mod domains;
mod dtb;
pub mod guest_dt;
pub mod image;
pub mod modules;
pub mod passthrough;
pub mod placement;
pub mod plan;

pub use devices::{
    DeviceAssignment, DeviceError, DeviceRequest, EmulatedDevice, EmulatedKind, PassthroughDevice,
    Refusal, RefusedDevice, StreamRange, assign_devices,
};
pub use domains::{
    DomainSpec, DomainsError, DomainsPlan, KernelExtentError, check_kernel_extent, parse_domains,
};
pub use guest_dt::{GuestDtError, GuestDtSpec, build_guest_dtb, build_guest_dtb_for};
pub use image::{ImageError, ImageHeader};
pub use modules::{GuestModuleRole, GuestModules, ModuleError, select_modules};
pub use passthrough::{PassthroughError, device_regions, passthrough_regions};
pub use placement::{
    ModuleCopy, ModuleSources, Placement, PlacementError, PlacementRequest, place_guest,
};
pub use plan::{
    DeviceOptions, GuestConfig, GuestPlan, LoadError, plan_domain, plan_guest,
    plan_guest_with_devices, plan_guest_with_passthrough,
};
