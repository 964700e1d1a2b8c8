//! Starting the guest: plan it with `guest-loader`, put the pieces in place, build its
//! stage-2 map (guest RAM identity-mapped with blocks, passthrough MMIO as device memory,
//! everything of the hypervisor's left out) and enter it.

use crate::boot::facts::CpuFacts;
use crate::mm::memory_plan::Layout;
use crate::vm::foreign_access::HostMemoryMap;
use arrayvec::ArrayVec;
use guest_loader::{GuestConfig as LoaderConfig, GuestPlan};
use pgtable::{
    Access, Attributes, Capabilities, MapFlags, MemoryType, PageTable, PhysAddr, Regime,
};
use platform::info::{Conduit, MAX_RESERVED, PhysRange, PlatformInfo};
use spin::Mutex;

use crate::arch::cache;
use crate::arch::el2_setup::GuestFeatures;
use crate::arch::sysreg;
use crate::boot;
use crate::boot::sequence;
use crate::mm::hw::{TableHw, TlbRegime};
use crate::mm::report;
use crate::vm::vcpu::{self, GuestConfig};

/// The guest's stage-2 tree (VMID 1).
pub static STAGE2: Mutex<Option<PageTable<TableHw>>> = Mutex::new(None);
pub const VMID: u64 = 1;

fn plan<'d>(info: &PlatformInfo<'d>, host_dtb: &[u8], layout: &Layout) -> GuestPlan<'d> {
    let reserved: ArrayVec<PhysRange, MAX_RESERVED> =
        info.reserved.iter().map(|r| r.range).collect();
    let mut hidden: ArrayVec<PhysRange, 4> = ArrayVec::new();
    hidden.push(sequence::image_range());
    hidden.push(layout.pool);
    hidden.push(info.dtb);
    if let Some(crash) = layout.crash {
        hidden.push(crash);
    }
    let config = LoaderConfig {
        guest_ram: &layout.guest_ram,
        reserved: &reserved,
        hidden: &hidden,
        vcpus: info.cpus.len(),
        psci_conduit: Conduit::Hvc,
        kaslr_seed: None,
        rng_seed: None,
    };
    let read_head = |kernel: PhysRange| -> &[u8] {
        // SAFETY: the kernel module lies in RAM, which the EL2 direct map covers.
        unsafe {
            core::slice::from_raw_parts(kernel.base as *const u8, kernel.size.min(4096) as usize)
        }
    };
    match guest_loader::plan_guest(&info.modules, host_dtb, &config, read_head) {
        Ok(plan) => plan,
        Err(error) => {
            log::error!("guest: {error}");
            boot::stop_failure("cannot load the guest");
        }
    }
}

/// The largest stage-2 input range this CPU allows, for choosing what can be mapped.
fn cpu_ipa_limit(cpu: &CpuFacts) -> u64 {
    1 << cpu.features.pa_bits.min(crate::vm::ipa_size::CEILING_BITS)
}

/// The stage-2 regime for a guest whose highest RAM or device address ends at
/// `highest_end`: no larger than it needs (see `crate::vm::ipa_size`).
fn stage2_regime(cpu: &CpuFacts, highest_end: u64) -> Regime {
    let ipa_bits = crate::vm::ipa_size::stage2_ipa_bits(cpu.features.pa_bits, highest_end);
    match Regime::stage2(ipa_bits) {
        Ok(regime) => regime,
        Err(error) => {
            log::error!("stage 2: {ipa_bits}-bit IPA: {error}");
            boot::stop_failure("no stage-2 regime for this CPU");
        }
    }
}

/// Builds the guest's stage 2 (not live: no TLBI).
fn build_stage2(
    regime: Regime,
    caps: Capabilities,
    flags: MapFlags,
    ram: &[PhysRange],
    mmio: &[PhysRange],
) -> Result<PageTable<TableHw>, pgtable::Error> {
    let mut table = PageTable::new(TableHw::new(TlbRegime::Stage2), regime, caps)?;
    let rwx = Attributes::new(
        Access::from_bits_truncate(0b111),
        MemoryType::NormalWriteBack,
    );
    for range in ram {
        table.map(range.base..range.end(), PhysAddr(range.base), rwx, flags)?;
    }
    let device = Attributes::new(Access::READ_WRITE, MemoryType::Device);
    for range in mmio {
        table.map(
            range.base..range.end(),
            PhysAddr(range.base),
            device,
            MapFlags::NONE,
        )?;
    }
    Ok(table)
}

/// The device regions of the guest's DT, checked: none may touch RAM (the guest's or the
/// hypervisor's), and regions beyond the stage-2 input size are left out with a warning.
fn passthrough_mmio(
    guest_dtb: &[u8],
    layout: &Layout,
    ia_limit: u64,
) -> alloc::vec::Vec<PhysRange> {
    let regions = match guest_loader::passthrough_regions(guest_dtb) {
        Ok(regions) => regions,
        Err(error) => {
            log::error!("guest: passthrough devices: {error}");
            boot::stop_failure("cannot map the guest's devices");
        }
    };
    let mut kept = alloc::vec::Vec::with_capacity(regions.len());
    for region in regions {
        let touches_ram = layout
            .guest_ram
            .iter()
            .chain(core::iter::once(&layout.pool))
            .chain(layout.crash.iter())
            .any(|ram| ram.overlaps(&region))
            || region.overlaps(&sequence::image_range());
        if touches_ram {
            log::error!(
                "guest: device region [{:#x}, {:#x}) overlaps RAM",
                region.base,
                region.end()
            );
            boot::stop_failure("a guest device region overlaps RAM");
        }
        if region.end() > ia_limit {
            log::warn!(
                "guest: device region [{:#x}, {:#x}) lies beyond the {:#x} stage-2 input range; not mapped",
                region.base,
                region.end(),
                ia_limit
            );
            continue;
        }
        kept.push(region);
    }
    kept
}

pub fn boot_guest(
    measure_protect: bool,
    info: &PlatformInfo<'_>,
    host_dtb: &[u8],
    layout: &Layout,
    cpu: &CpuFacts,
    caps: Capabilities,
    flags: MapFlags,
) -> ! {
    let plan = plan(info, host_dtb, layout);
    let placement = &plan.placement;
    log::info!(
        "guest: kernel {:#x} ({} KiB) entry {:#x}, initrd {}, DTB {:#x} ({} bytes), bootargs \"{}\"",
        plan.modules.kernel.range.base,
        plan.modules.kernel.range.size >> 10,
        placement.entry,
        placement.initrd.map_or(0, |r| r.base),
        placement.dtb.base,
        plan.dtb.len(),
        plan.modules.bootargs.unwrap_or("")
    );
    for copy in &placement.copies {
        log::info!(
            "guest: moving {:?} {:#x} -> {:#x} ({} bytes)",
            copy.module,
            copy.src,
            copy.dst,
            copy.len
        );
        // SAFETY: both ranges are guest RAM or module memory, mapped in the EL2 direct
        // map; the planner ordered the copies so memmove semantics suffice.
        unsafe {
            core::ptr::copy(
                copy.src as *const u8,
                copy.dst as *mut u8,
                copy.len as usize,
            )
        };
        cache::clean_to_poc(copy.dst..copy.dst + copy.len);
    }
    // SAFETY: the DTB slot is guest RAM reserved for it by the planner (2 MiB), mapped.
    unsafe {
        core::ptr::copy_nonoverlapping(
            plan.dtb.as_ptr(),
            placement.dtb.base as *mut u8,
            plan.dtb.len(),
        )
    };
    cache::clean_to_poc(placement.dtb.base..placement.dtb.base + plan.dtb.len() as u64);
    cache::sync_instruction_cache();

    let mmio = passthrough_mmio(&plan.dtb, layout, cpu_ipa_limit(cpu));
    let highest_end = layout
        .guest_ram
        .iter()
        .chain(mmio.iter())
        .map(|range| range.end())
        .max()
        .unwrap_or(0);
    let regime = stage2_regime(cpu, highest_end);
    let started = sysreg::counter();
    let mut table = match build_stage2(regime, caps, flags, &layout.guest_ram, &mmio) {
        Ok(table) => table,
        Err(error) => {
            log::error!("stage 2: {error}");
            boot::stop_failure("cannot build the stage-2 map");
        }
    };
    let build_us =
        sysreg::counter().wrapping_sub(started) * 1_000_000 / sysreg::counter_frequency().max(1);
    let leaves = report::ptdump(&table, "stage2", regime.ia_limit(), &layout.guest_ram);
    report::map_stats(&table, "stage2", &leaves, build_us);
    let vtcr = match pgtable::vtcr_el2(&regime, cpu.features.pa_bits.min(48)) {
        Ok(vtcr) => vtcr,
        Err(error) => {
            log::error!("stage 2: VTCR_EL2: {error}");
            boot::stop_failure("cannot configure stage 2");
        }
    };
    let vttbr = (VMID << 48) | table.root().0;
    // The tables must be visible to the walkers before VTTBR_EL2 points at them.
    table.mark_live();
    if measure_protect {
        // Stage-2 TLBIs act on the VMID in VTTBR_EL2: make it current for the benchmark.
        crate::arch::sysreg::write_sysreg!("vttbr_el2", vttbr);
        crate::arch::barrier_isb();
        crate::selftest::protect_bench::run(&mut table, &layout.guest_ram);
    }
    *STAGE2.lock() = Some(table);
    if measure_protect {
        crate::selftest::run_stage2(&layout.guest_ram, regime.ia_limit());
    }

    let ids = sysreg::id_registers();
    let config = GuestConfig {
        features: GuestFeatures::probe(&ids),
        vtcr,
        vttbr,
        midr: ids.midr,
        cpus: info.cpus.iter().map(|c| c.mpidr).collect(),
        ram: layout.guest_ram.clone(),
        host: HostMemoryMap {
            image: Some(sequence::image_range()),
            pool: Some(layout.pool),
            crash: layout.crash,
            dtb: Some(info.dtb),
            ram: info.memory.clone(),
        },
    };
    let guest_ram_bytes: u64 = layout.guest_ram.iter().map(|r| r.size).sum();
    crate::console::write_raw(format_args!(
        "hyp-facts: guest_ram_bytes={guest_ram_bytes} guest_vcpus={} guest_entry={:#x} guest_dtb={:#x} stage2_ipa_bits={} table_allocations={} injected_failures={}\n",
        info.cpus.len(),
        placement.entry,
        placement.dtb.base,
        regime.ia_bits(),
        crate::mm::hw::table_allocations(),
        crate::mm::hw::injected_failures()
    ));
    log::info!("guest: entering at EL1 on {} vCPU(s)", info.cpus.len());
    vcpu::start(config, placement.entry, placement.dtb.base)
}
