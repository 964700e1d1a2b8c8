//! What runs after the boot report: decide who owns which memory, then run what the
//! device tree and command line ask for (the hypervisor alone, or a guest).

use hypervisor::facts::CpuFacts;
use hypervisor::memory_plan::{
    self, CrashRequest, Exclusion, ExclusionKind, Layout, MAX_EXCLUSIONS,
};
use hypervisor::outcome::Outcome;
use platform::bootargs::HypervisorArgs;
use platform::info::{ModuleKind, PhysRange, PlatformInfo};

use crate::boot;

/// Where the image sits, from the linker's symbols (head.S relocated them).
pub fn image_range() -> PhysRange {
    unsafe extern "C" {
        static __image_start: u8;
        static __image_end: u8;
    }
    let start = core::ptr::addr_of!(__image_start) as u64;
    let end = core::ptr::addr_of!(__image_end) as u64;
    PhysRange {
        base: start,
        size: end - start,
    }
}

/// The ranges that are not free RAM at boot.
fn exclusions(info: &PlatformInfo<'_>) -> arrayvec::ArrayVec<Exclusion, MAX_EXCLUSIONS> {
    let mut list = arrayvec::ArrayVec::new();
    let mut push = |range: PhysRange, kind| {
        let _ = list.try_push(Exclusion { range, kind });
    };
    push(image_range(), ExclusionKind::Image);
    push(info.dtb, ExclusionKind::DeviceTree);
    for module in &info.modules {
        push(module.range, ExclusionKind::Module);
    }
    for reserved in &info.reserved {
        push(reserved.range, ExclusionKind::Reserved);
    }
    list
}

fn plan_memory(info: &PlatformInfo<'_>, args: &HypervisorArgs) -> Layout {
    let request = args.crashkernel.map(|c| CrashRequest {
        size: c.size,
        base: c.base,
    });
    let layout = match memory_plan::plan_layout(&info.memory, &exclusions(info), request) {
        Ok(layout) => layout,
        Err(error) => {
            log::error!("memory: {error}");
            boot::stop_failure("no memory for the hypervisor");
        }
    };
    log::info!(
        "memory: hypervisor pool [{:#x}, {:#x}) {} MiB",
        layout.pool.base,
        layout.pool.end(),
        layout.pool.size >> 20
    );
    match (layout.crash, layout.crash_error) {
        (Some(region), _) => log::info!(
            "crash region: [{:#x}, {:#x}) {} MiB (unmapped; mapped at 4K only while a crash record is written)",
            region.base,
            region.end(),
            region.size >> 20
        ),
        (None, Some(error)) => log::error!("{error}; continuing without a crash region"),
        (None, None) => {}
    }
    let guest_bytes: u64 = layout.guest_ram.iter().map(|r| r.size).sum();
    log::info!(
        "memory: {} MiB for the guest in {} range(s)",
        guest_bytes >> 20,
        layout.guest_ram.len()
    );
    layout
}

pub fn after_boot(info: &PlatformInfo<'_>, cpu: &CpuFacts, args: &HypervisorArgs) -> ! {
    let layout = plan_memory(info, args);
    let _ = (&layout, cpu);
    let has_kernel = info
        .modules
        .iter()
        .any(|m| matches!(m.kind, ModuleKind::Kernel | ModuleKind::Unspecified));
    if args.selftest {
        log::error!("selftest: the EL2 selftests and the test guest are not implemented yet");
        boot::stop_failure("selftest not implemented");
    }
    if !has_kernel {
        log::info!("no guest kernel module in /chosen: nothing to run");
        boot::stop(Outcome::Success);
    }
    log::error!("guest boot: stage 2 is not implemented yet");
    boot::stop_failure("guest boot not implemented")
}
