//! What runs after the boot report: decide who owns which memory, then run what the
//! device tree and command line ask for (the hypervisor alone, or a guest).

use crate::boot::facts::CpuFacts;
use crate::boot::outcome::Outcome;
use crate::mm::memory_plan::{
    self, CrashRequest, Exclusion, ExclusionKind, Layout, MAX_EXCLUSIONS,
};
use arrayvec::ArrayVec;
use hyp_abi::console::FACTS_PREFIX;
use hyp_abi::console::facts::{CRASH_BASE, CRASH_SIZE, GUEST_RAM_AVAILABLE, POOL_BASE, POOL_SIZE};
use pgtable::{Capabilities, MapFlags};
use platform::bootargs::{HypervisorArgs, MappingMode};
use platform::info::{ModuleKind, PhysRange, PlatformInfo};

use crate::{boot, mm};

/// Exercises the heap once at boot: a block-sized allocation must come back mapped.
fn heap_smoke_check() {
    let mut buffer = alloc::vec::Vec::<u8>::new();
    if buffer.try_reserve_exact(3 << 20).is_err() {
        log::error!("heap: cannot allocate 3 MiB");
        boot::stop_failure("heap unusable");
    }
    buffer.resize(3 << 20, 0xa5);
    let va = buffer.as_ptr() as u64;
    mm::report::heap_stats();
    let (counters, (start, end)) = mm::heap::stats();
    log::info!(
        "heap: window [{start:#x}, {end:#x}), {} 2M block(s), {} 4K page(s), {} fallback(s); {va:#x} -> PA {:#x}",
        counters.chunks_2m,
        counters.pages_4k,
        counters.fallbacks,
        mm::heap::virt_to_phys(va).unwrap_or(0)
    );
}

/// The ranges that are not free RAM at boot.
fn exclusions(info: &PlatformInfo<'_>) -> arrayvec::ArrayVec<Exclusion, MAX_EXCLUSIONS> {
    let mut list = arrayvec::ArrayVec::new();
    let mut push = |range: PhysRange, kind| {
        let _ = list.try_push(Exclusion { range, kind });
    };
    push(crate::mm::image::image_range(), ExclusionKind::Image);
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
    let needs = memory_plan::PoolNeeds {
        el2_in_pages: args.mapping == MappingMode::Pages,
        selftests: args.selftest,
    };
    let layout = match memory_plan::plan_layout(&info.memory, &exclusions(info), request, needs) {
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
    if let Some(region) = layout.crash {
        crate::crash::set_region(region);
    }
    match (layout.crash, layout.crash_error) {
        (Some(region), _) => log::info!(
            "crash region: [{:#x}, {:#x}) {} MiB (unmapped in the EL2 map; a crashing CPU writes its record through a separate crash map)",
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
    crate::console::write_raw(format_args!(
        "{FACTS_PREFIX} {POOL_BASE}={:#x} {POOL_SIZE}={:#x} {GUEST_RAM_AVAILABLE}={guest_bytes}",
        layout.pool.base, layout.pool.size
    ));
    if let Some(region) = layout.crash {
        crate::console::write_raw(format_args!(
            " {CRASH_BASE}={:#x} {CRASH_SIZE}={:#x}",
            region.base, region.size
        ));
    }
    crate::console::write_raw(format_args!("\n"));
    layout
}

/// Gives the pool to the frame allocator, builds the EL2 map, switches the MMU on and
/// reports the map; the heap grows on first use.
fn bring_up_memory(
    info: &PlatformInfo<'_>,
    cpu: &CpuFacts,
    args: &HypervisorArgs,
    layout: &Layout,
    flags: MapFlags,
) {
    // SAFETY: the pool is RAM that plan_layout kept out of every other use; identity
    // mapped (MMU off now, the EL2 direct map later).
    unsafe {
        mm::FRAMES
            .lock()
            .add_range(layout.pool.base, layout.pool.end())
    };
    mm::table_hw::inject_table_allocation_failure(args.fail_table_alloc);
    if args.mapping == MappingMode::Pages {
        mm::heap::grow_with_4k_pages_only(true);
    }
    // The boot CPU's features until the others report theirs (`share_with_every_cpu`).
    let caps = mm::el2_map::capabilities(&cpu.features, args);
    let (table, build) = match mm::el2_map::build(info, layout.crash, caps, flags) {
        Ok(built) => built,
        Err(error) => {
            log::error!("EL2 map: {error}");
            boot::stop_failure("cannot build the EL2 map");
        }
    };
    let frequency = crate::arch::sysreg::counter_frequency().max(1);
    let build_us = build.build_ticks * 1_000_000 / frequency;
    let image = crate::mm::image::image_range();
    // In the pool: the frames handed out so far (the tables just built) and the
    // allocator's links at page starts, or all of it if it lost count (mapping=pages).
    // Copied, so the frame lock is not held while enable() takes the EL2 table's.
    let pool_handed_out = mm::FRAMES
        .lock()
        .handed_out()
        .and_then(|runs| ArrayVec::try_from(runs).ok());
    let written = mm::el2_map::WrittenWithMmuOff {
        whole: [image.base..image.end(), info.dtb.base..info.dtb.end()],
        pool: layout.pool.base..layout.pool.end(),
        pool_handed_out,
    };
    if let Err(error) = mm::el2_map::enable(table, cpu.features.pa_bits.min(48), &written) {
        log::error!("EL2 map: {error}");
        boot::stop_failure("cannot switch the MMU on");
    }
    crate::crash::prepare_map(info);
    log::info!(
        "EL2 map live: MMU on ({:?} splits{})",
        caps.split,
        if caps.tlbi_range { ", range TLBIs" } else { "" }
    );
    let table = mm::el2_map::EL2_TABLE.lock();
    if let Some(table) = table.as_ref() {
        let image = crate::mm::image::image_range();
        let mut general_ram: arrayvec::ArrayVec<PhysRange, 32> = arrayvec::ArrayVec::new();
        for bank in &info.memory {
            for piece in crate::mm::memory_plan::free_ranges(
                core::slice::from_ref(bank),
                &[Exclusion {
                    range: image,
                    kind: ExclusionKind::Image,
                }],
            ) {
                let _ = general_ram.try_push(piece);
            }
        }
        let leaves = mm::report::ptdump(table, "el2", 1 << 48, &general_ram);
        mm::report::map_stats(table, "el2", &leaves, build_us);
    }
}

/// Starts the other CPUs on the EL2 map and settles the features the tables may rely
/// on: those every CPU has. A CPU with less than the boot CPU lowers the EL2 map's
/// strategy here, before anything changes it live again.
fn share_with_every_cpu(info: &PlatformInfo<'_>, args: &HypervisorArgs) -> Capabilities {
    let common = crate::cpu::bring_up(info);
    mm::table_hw::allow_range_tlbi(common.tlbi_range);
    let caps = mm::el2_map::capabilities(&common, args);
    if let Some(table) = mm::el2_map::EL2_TABLE.lock().as_mut()
        && table.capabilities() != caps
    {
        log::warn!(
            "EL2 map: not every CPU has what the boot CPU has; now {:?} splits{}",
            caps.split,
            if caps.tlbi_range {
                ", range TLBIs"
            } else {
                ", no range TLBIs"
            }
        );
        table.set_capabilities(caps);
    }
    caps
}

pub fn after_boot(
    info: &PlatformInfo<'_>,
    host_dtb: &[u8],
    cpu: &CpuFacts,
    args: &HypervisorArgs,
) -> ! {
    let layout = plan_memory(info, args);
    // What the command line allows the mappings, decided once for the EL2 map, the heap
    // and the guest's stage 2.
    let flags = mm::el2_map::map_flags(args);
    bring_up_memory(info, cpu, args, &layout, flags);
    let caps = share_with_every_cpu(info, args);
    heap_smoke_check();
    if args.panic_on_boot {
        panic!("panic_on_boot: the crash-record path was asked for on the command line");
    }
    // The dom0less description needs the heap, so it is read only now.
    let domains = match guest_loader::parse_domains(host_dtb, info.cpus.len(), &info.memory) {
        Ok(guest_loader::DomainsPlan::Domains(domains)) => Some(domains),
        Ok(guest_loader::DomainsPlan::Legacy) => None,
        Err(error) => {
            log::error!("dom0less: {error}");
            boot::stop_failure("the dom0less description is refused");
        }
    };
    let has_kernel = info
        .modules
        .iter()
        .any(|m| matches!(m.kind, ModuleKind::Kernel | ModuleKind::Unspecified));
    if args.selftest {
        let (passed, failed) = crate::selftest::run(info, &layout);
        log::info!("EL2 selftests: {passed} passed, {failed} failed; the test guest follows");
    }
    if !has_kernel && domains.is_none() {
        log::info!("no guest kernel module in /chosen: nothing to run");
        boot::stop(Outcome::Success);
    }
    if let Err(error) = crate::vm::interrupts::init_gic(info) {
        log::error!("gic: {error}");
        boot::stop_failure("cannot take over the GIC");
    }
    if let Some(domains) = domains {
        let guests = crate::vm::build_domains::prepare_domains(
            info,
            host_dtb,
            &layout,
            cpu,
            crate::vm::build_domains::Stage2Choice {
                caps,
                flags,
                table_cap: args.stage2_table_cap.map(core::num::NonZeroU32::get),
            },
            &domains,
        );
        for guest in &guests {
            crate::vm::registry::register(guest.vm);
        }
        init_console_input(info);
        crate::vm::vcpu::start(&guests)
    }
    let guest = crate::vm::build::prepare(info, host_dtb, &layout, cpu, caps, flags);
    crate::vm::registry::register(guest.vm);
    init_console_input(info);
    if args.selftest {
        crate::selftest::protect_bench::run(guest.vm);
        crate::selftest::run_stage2(guest.vm);
    }
    crate::vm::vcpu::start(core::slice::from_ref(&guest))
}

/// Console input for the registered guests (Ctrl-a three times cycles through them and
/// the hypervisor).
fn init_console_input(info: &PlatformInfo<'_>) {
    crate::console::input::init(
        &info.console,
        crate::vm::registry::count(),
        crate::console::input::InputSinks {
            guest: crate::vm::emulation::console_input_for,
            hypervisor: crate::vm::emulation::hypervisor_key,
            guest_alive: crate::vm::registry::is_running,
        },
    );
}
