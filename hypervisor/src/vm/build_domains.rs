//! Preparing several guests from a dom0less description (`guest_loader::domains`): each
//! gets its own VMID, stage 2, RAM, vCPUs pinned to physical CPUs of its own, vGIC view
//! and virtual console. Every guest is planned and checked before any is changed or
//! started, so a bad description stops the boot with no guest started half-way.
//!
//! - **RAM**: each guest sees its RAM at the host's RAM base (its DT's `/memory`), backed
//!   by one physical run chosen by [`crate::mm::guest_backing`] so that IPA and PA agree
//!   modulo 1 GiB (2 MiB for smaller guests): its stage 2 is in 1G/2M blocks.
//! - **CPUs**: vCPU `i` of guest `g` has the MPIDR of the host's CPU `i` (the guest's DT
//!   lists the host's first CPUs) and runs on its own physical CPU, handed out in order
//!   from the boot CPU on; no physical CPU serves two guests.
//! - **Devices**: the emulated GIC and PL011 only. No host device is given: none is more
//!   one guest's than another's, and a dom0less passthrough fragment is not applied yet.

use alloc::vec::Vec;
use arrayvec::ArrayVec;
use guest_loader::{DomainSpec, GuestConfig};
use pgtable::{Capabilities, MapFlags};
use platform::info::{Conduit, MAX_CPUS, PhysRange, PlatformInfo};
use spin::Mutex;

use crate::arch::sysreg;
use crate::boot;
use crate::boot::facts::CpuFacts;
use crate::cpu::features::GuestFeatures;
use crate::mm::guest_backing::{BackingError, RamBacking, RamRequest, back_guest_ram, carve};
use crate::mm::image;
use crate::mm::memory_plan::Layout;
use crate::vm::build::{
    PreparedGuest, RamMapping, emulated_devices, host_devices, module_head, place_modules,
    stage2_for, vgic_for,
};
use crate::vm::change_window::ChangeWindow;
use crate::vm::controls::GuestControls;
use crate::vm::foreign_access::HostMemoryMap;
use crate::vm::guest::{GuestBoot, VcpuSetup, Vcpus, Vm, VmStats};
use crate::vm::virtual_console::VirtualConsole;

/// Stops the boot for a bad description, naming what is wrong.
fn refuse(what: core::fmt::Arguments<'_>) -> ! {
    log::error!("dom0less: {what}");
    boot::stop_failure("the dom0less guests cannot all be started");
}

/// The guests' module ranges (kernel, ramdisk, device-tree fragment), by domain path.
fn module_ranges(domains: &[DomainSpec]) -> Vec<(&str, PhysRange)> {
    domains
        .iter()
        .flat_map(|d| {
            [Some(d.kernel), d.ramdisk, d.device_tree]
                .into_iter()
                .flatten()
                .map(move |range| (d.path.as_str(), range))
        })
        .collect()
}

/// Memory the guests' RAM may come from: the layout's guest RAM less the modules (kept
/// whole: a reset guest boots from them again) and the firmware's reservations.
fn free_for_guests(
    info: &PlatformInfo<'_>,
    layout: &Layout,
    modules: &[(&str, PhysRange)],
) -> Vec<PhysRange> {
    modules
        .iter()
        .map(|&(_, range)| range)
        .chain(info.reserved.iter().map(|r| r.range))
        .fold(layout.guest_ram.to_vec(), |free, hole| carve(&free, hole))
}

/// What a dom0less node may ask that this hypervisor does not do yet, said once per
/// domain rather than dropped silently.
fn warn_unhonoured(domain: &DomainSpec) {
    if domain.device_tree.is_some() {
        log::warn!(
            "{}: its multiboot,device-tree (passthrough) fragment is not applied: dom0less guests get no host device yet",
            domain.path
        );
    }
    if domain.direct_map {
        log::warn!(
            "{}: direct-map is not honoured: its RAM is at the host's RAM base (IPA), backed elsewhere",
            domain.path
        );
    }
    if !domain.static_mem.is_empty() {
        log::warn!(
            "{}: xen,static-mem is not honoured: its RAM is backed where the hypervisor chooses",
            domain.path
        );
    }
}

/// Physical CPUs in the order guests get them: the boot CPU first (guest 1's vCPU 0
/// runs there, where the boot continues), then the others in the DT's order.
fn cpu_order(info: &PlatformInfo<'_>) -> Vec<(usize, u64)> {
    let this = crate::cpu::this_cpu().unwrap_or(0);
    let all = info.cpus.iter().map(|c| c.mpidr).enumerate();
    all.clone()
        .filter(|&(index, _)| index == this)
        .chain(all.filter(|&(index, _)| index != this))
        .collect()
}

/// How every guest's stage 2 is built: what the CPUs and the command line allow, and the
/// command line's cap on its table pages (`stage2_table_cap=`).
#[derive(Clone, Copy, Debug)]
pub struct Stage2Choice {
    pub caps: Capabilities,
    pub flags: MapFlags,
    pub table_cap: Option<u32>,
}

/// Plans, places and builds every guest of `domains`: `Vm`s ready to enter
/// (`vm::vcpu::start`), guest `i` with number and VMID `i + 1`.
pub fn prepare_domains(
    info: &PlatformInfo<'_>,
    host_dtb: &[u8],
    layout: &Layout,
    cpu: &CpuFacts,
    stage2: Stage2Choice,
    domains: &[DomainSpec],
) -> Vec<PreparedGuest> {
    if domains.len() > crate::vm::registry::MAX_GUESTS {
        refuse(format_args!(
            "{} guests, more than the {} this build runs",
            domains.len(),
            crate::vm::registry::MAX_GUESTS
        ));
    }
    let modules = module_ranges(domains);
    // The pool and the crash region were placed before the description was read (it
    // needs the heap): they must have missed every module.
    for &(path, module) in &modules {
        let hypervisor = [Some(layout.pool), layout.crash, Some(image::image_range())];
        if let Some(hit) = hypervisor
            .into_iter()
            .flatten()
            .find(|r| r.overlaps(&module))
        {
            refuse(format_args!(
                "{path}: module [{:#x}, {:#x}) overlaps the hypervisor's memory [{:#x}, {:#x})",
                module.base,
                module.end(),
                hit.base,
                hit.end()
            ));
        }
    }
    let Some(ram_base) = info.memory.iter().map(|bank| bank.base).min() else {
        refuse(format_args!("the host has no RAM"));
    };
    let requests: Vec<RamRequest> = domains
        .iter()
        .map(|d| RamRequest {
            ipa_base: ram_base,
            bytes: d.memory_bytes,
        })
        .collect();
    let free = free_for_guests(info, layout, &modules);
    let backings = match back_guest_ram(&free, &requests) {
        Ok(backings) => backings,
        Err(error) => {
            let (BackingError::BadRequest { guest } | BackingError::DoesNotFit { guest, .. }) =
                error;
            let path = domains.get(guest).map_or("?", |d| d.path.as_str());
            refuse(format_args!("{path}: {error}"))
        }
    };
    for domain in domains {
        warn_unhonoured(domain);
    }
    let order = cpu_order(info);
    let mut next_cpu = 0;
    let mut prepared = Vec::with_capacity(domains.len());
    for (index, (domain, backing)) in domains.iter().zip(&backings).enumerate() {
        let number = (index + 1) as u16;
        let vcpus = domain.vcpus as usize;
        let Some(physical) = order.get(next_cpu..next_cpu + vcpus) else {
            refuse(format_args!("{}: not enough CPUs left", domain.path));
        };
        next_cpu += vcpus;
        let others: Vec<(u16, PhysRange)> = backings
            .iter()
            .enumerate()
            .filter(|&(other, _)| other != index)
            .map(|(other, b)| ((other + 1) as u16, b.physical()))
            .collect();
        let guest = prepare_one(
            info,
            host_dtb,
            layout,
            cpu,
            stage2,
            (domain, number),
            backing,
            physical,
            others,
        );
        prepared.push(guest);
    }
    prepared
}

/// A guest's cap on stage-2 table pages: `stage2_table_cap=` when given, else its own
/// worst case (all its RAM in 4 KiB pages), so that it never takes another guest's share
/// of the pool, which is sized for all of RAM in pages.
fn table_cap(ram_bytes: u64, asked: Option<u32>) -> u32 {
    asked.unwrap_or_else(|| {
        let bytes = crate::mm::memory_plan::tables_for_4k_mapping(ram_bytes, 1);
        u32::try_from(bytes / crate::mm::memory_plan::PAGE_SIZE).unwrap_or(u32::MAX)
    })
}

/// One guest of the description: planned, placed, its stage 2 built.
#[allow(clippy::too_many_arguments)]
fn prepare_one(
    info: &PlatformInfo<'_>,
    host_dtb: &[u8],
    layout: &Layout,
    cpu: &CpuFacts,
    stage2: Stage2Choice,
    (domain, number): (&DomainSpec, u16),
    backing: &RamBacking,
    physical: &[(usize, u64)],
    other_guests: Vec<(u16, PhysRange)>,
) -> PreparedGuest {
    let heap_before = crate::mm::heap::bytes_in_use();
    let vcpus = physical.len();
    let ipa_ram = [backing.ipa];
    let (entry, dtb) = match load_domain(domain, host_dtb, backing, vcpus) {
        Ok(started) => started,
        Err(error) => refuse(format_args!("{error}")),
    };
    let devices = emulated_devices(info, vcpus);
    let ram = [RamMapping {
        ipa: backing.ipa,
        pa: backing.pa,
    }];
    let (mut table, regime) = stage2_for(cpu, stage2.caps, stage2.flags, &ram, &[]);
    let cap = table_cap(backing.ipa.size, stage2.table_cap);
    table.hardware_mut().set_page_cap(cap);
    let vtcr = match pgtable::vtcr_el2(&regime, cpu.features.pa_bits.min(48)) {
        Ok(vtcr) => vtcr,
        Err(error) => refuse(format_args!("{}: VTCR_EL2: {error}", domain.path)),
    };
    let ids = sysreg::id_registers();
    let mpidrs: ArrayVec<u64, MAX_CPUS> = info.cpus.iter().take(vcpus).map(|c| c.mpidr).collect();
    let vgic = vgic_for(info, &mpidrs, &devices, &[]);
    // SAFETY: the host DTB stays mapped in the EL2 direct map for the hypervisor's life
    // and nothing writes it (no guest's RAM, the pool or the crash region covers it).
    let host_dtb: &'static [u8] =
        unsafe { core::slice::from_raw_parts(host_dtb.as_ptr(), host_dtb.len()) };
    let boot = GuestBoot {
        ram: *backing,
        domain: domain.clone(),
        host_dtb,
        vcpus,
        vgic: vgic.clone(),
    };
    let vmid = number;
    let vttbr = (u64::from(vmid) << 48) | table.root().0;
    table.hardware_mut().set_vttbr(vttbr);
    let vm = Vm {
        vmid,
        setup: VcpuSetup {
            controls: GuestControls::for_features(&GuestFeatures::decode(&ids)),
            vtcr,
            vttbr,
            midr: ids.midr,
        },
        stage2: Mutex::new(table),
        ipa_limit: regime.ia_limit(),
        ram: ipa_ram.into_iter().collect(),
        vcpus: Vcpus::pinned(mpidrs, physical.iter().copied().collect()),
        host: HostMemoryMap {
            image: Some(image::image_range()),
            pool: Some(layout.pool),
            crash: layout.crash,
            dtb: Some(info.dtb),
            ram: info.memory.clone(),
            devices: host_devices(host_dtb, &devices),
            guests: other_guests,
        },
        change_window: ChangeWindow::new(),
        stats: VmStats::default(),
        vgic: Mutex::new(vgic),
        console: Mutex::new(VirtualConsole::new(number)),
        devices,
        number,
        boot: Some(boot),
    };
    // What this guest costs the hypervisor: its `Vm` (vGIC, console queue, counters,
    // boot recipe) and whatever its preparation kept on the heap; the plan's DTB and
    // scratch were freed again.
    let vm = alloc::boxed::Box::new(vm);
    let heap_bytes = crate::mm::heap::bytes_in_use().saturating_sub(heap_before);
    let vgic_bytes = core::mem::size_of_val(&*vm.vgic.lock());
    let cpus: Vec<alloc::string::String> = physical
        .iter()
        .map(|&(cpu, _)| alloc::format!("{cpu}"))
        .collect();
    let cpus = cpus.join(",");
    crate::console::write_raw(format_args!(
        "hyp-facts: guest={number} name={} guest_ram_bytes={} guest_vcpus={vcpus} guest_entry={:#x} guest_dtb={:#x} ram_ipa={:#x} ram_pa={:#x} ipa_pa_congruence={:#x} physical_cpus={cpus} stage2_ipa_bits={} stage2_tables={} stage2_table_cap={cap} heap_bytes={heap_bytes} vm_bytes={} vgic_inline_bytes={vgic_bytes}\n",
        domain.name,
        backing.ipa.size,
        entry,
        dtb,
        backing.ipa.base,
        backing.pa,
        backing.congruence(),
        regime.ia_bits(),
        vm.stage2.lock().hardware().page_use().0,
        core::mem::size_of::<Vm>(),
    ));
    PreparedGuest {
        // The guest lives as long as the hypervisor.
        vm: alloc::boxed::Box::leak(vm),
        entry,
        dtb,
    }
}

/// Plans `domain` in `backing`'s RAM and puts its images and DTB there (through the
/// EL2 direct map); returns its entry point and DTB address. At boot and again at each
/// reset (`crate::vm::reset`), so a restarted guest boots as it did the first time.
///
/// # Errors
/// The loader's refusal, or a plan that would write outside the guest's RAM, each
/// naming the domain's node.
pub fn load_domain(
    domain: &DomainSpec,
    host_dtb: &[u8],
    backing: &RamBacking,
    vcpus: usize,
) -> Result<(u64, u64), alloc::string::String> {
    let ipa_ram = [backing.ipa];
    let config = GuestConfig {
        guest_ram: &ipa_ram,
        // The host's reservations are physical; the backing avoided them.
        reserved: &[],
        // The guest's address space is its own: nothing of the host's lies in its RAM.
        hidden: &[],
        vcpus,
        psci_conduit: Conduit::Hvc,
        kaslr_seed: None,
        rng_seed: None,
    };
    let plan =
        guest_loader::plan_domain(domain, host_dtb, &config, module_head).map_err(|error| {
            match error {
                // Already names the domain's node.
                guest_loader::LoadError::KernelExtent { .. } => alloc::format!("{error}"),
                other => alloc::format!("{}: {other}", domain.path),
            }
        })?;
    let inside = |ipa: u64, len: u64| {
        len > 0 && backing.pa_of(ipa).is_some() && backing.pa_of(ipa + (len - 1)).is_some()
    };
    if !plan.placement.copies.iter().all(|c| inside(c.dst, c.len))
        || !inside(plan.placement.dtb.base, plan.dtb.len() as u64)
    {
        return Err(alloc::format!(
            "{}: a module placed outside its RAM",
            domain.path
        ));
    }
    place_modules(&plan, |ipa| backing.pa_of(ipa).unwrap_or(u64::MAX));
    Ok((plan.placement.entry, plan.placement.dtb.base))
}
