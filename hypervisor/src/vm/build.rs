//! Preparing a guest: plan it with `guest-loader`, put the pieces in place, build its
//! stage-2 map (guest RAM identity-mapped with blocks, passthrough MMIO as device memory,
//! everything of the hypervisor's left out) and make it a [`Vm`]. Entering it is
//! `vm::vcpu::start`'s job.

use crate::boot::facts::CpuFacts;
use crate::mm::memory_plan::Layout;
use crate::vm::foreign_access::{HostDevice, HostMemoryMap};
use arrayvec::ArrayVec;
use guest_loader::{GuestConfig as LoaderConfig, GuestPlan};
use pgtable::{
    Access, Attributes, Capabilities, MapFlags, MemoryType, PageTable, PhysAddr, Regime,
    SplitStrategy,
};
use platform::info::{Conduit, MAX_RESERVED, PhysRange, PlatformInfo};
use spin::Mutex;

use crate::arch::cache;
use crate::arch::sysreg;
use crate::boot;
use crate::cpu::features::GuestFeatures;
use crate::iommu::ste::Stage2Config;
use crate::mm::image;
use crate::mm::report;
use crate::mm::table_hw::{TableHw, TlbRegime};
use crate::vm::change_window::ChangeWindow;
use crate::vm::controls::GuestControls;
use crate::vm::emulated_devices::EmulatedDevices;
use crate::vm::guest::{Stage2, VcpuSetup, Vcpus, Vm, VmStats};
use crate::vm::vgic::{SpiAssignment, SpiSource, Vgic, VgicConfig};
use crate::vm::virtual_console::VirtualConsole;

/// The first guest's VMID (0 is left unused, so a VTTBR_EL2 never set reads as no guest).
const FIRST_VMID: u16 = 1;
/// The first guest's number (its `(g1) ` console tag).
const GUEST_NUMBER: u16 = 1;

/// Where the guest's emulated devices sit: the physical GIC's and console's addresses,
/// as the guest's DT names them (one redistributor frame pair per vCPU).
pub(super) fn emulated_devices(info: &PlatformInfo<'_>, vcpus: usize) -> EmulatedDevices {
    let Some(redistributors) = info.gic.redistributors.first() else {
        boot::stop_failure("the GICv3 has no redistributor region");
    };
    EmulatedDevices {
        distributor: info.gic.distributor.base,
        redistributors: redistributors.base,
        vcpus,
        uart: Some(info.console.regs.base),
        uart_intid: info.console.intid,
    }
}

/// The guest's vGIC: its vCPUs, its console's SPI (emulated) and its assigned devices'
/// SPIs (hardware-linked), its timers' and PMU's PPIs (hardware-linked).
pub(super) fn vgic_for(
    info: &PlatformInfo<'_>,
    vcpu_mpidrs: &[u64],
    devices: &EmulatedDevices,
    device_spis: &[u32],
) -> Vgic {
    let mut spis: alloc::vec::Vec<SpiAssignment> = device_spis
        .iter()
        .map(|&intid| SpiAssignment {
            intid,
            source: SpiSource::Hardware {
                physical_intid: intid,
            },
        })
        .collect();
    if let Some(intid) = devices.uart_intid {
        spis.push(SpiAssignment {
            intid,
            source: SpiSource::Emulated,
        });
    }
    let mut hardware_ppis = alloc::vec::Vec::new();
    if let Some(timer) = info.timer {
        hardware_ppis.extend([timer.virt_intid, timer.nonsecure_phys_intid]);
    }
    hardware_ppis.extend(info.pmu_intid);
    let (list_registers, priority_bits) = crate::vm::interrupts::list_register_facts();
    let config = VgicConfig {
        vcpu_mpidrs: vcpu_mpidrs
            .iter()
            .map(|mpidr| mpidr & 0xff_00ff_ffff)
            .collect(),
        spis,
        hardware_ppis,
        list_registers,
        priority_bits,
    };
    match Vgic::new(config) {
        Ok(vgic) => vgic,
        Err(error) => {
            log::error!("guest: vGIC: {error}");
            boot::stop_failure("cannot configure the guest's vGIC");
        }
    }
}

/// The first bytes of a kernel module (up to a page: enough for the Image header and the
/// PE/COFF section table), for the guest loader's checks while it plans a guest.
pub(super) fn module_head<'h>(kernel: PhysRange) -> &'h [u8] {
    // SAFETY: boot modules lie in host RAM (the platform parser and `parse_domains` check
    // it), which the EL2 direct map covers; the loader reads the slice only while it
    // plans. The single guest's modules are read before it runs; a dom0less guest's are
    // no guest's RAM (also when a reset plans it again).
    unsafe { core::slice::from_raw_parts(kernel.base as *const u8, kernel.size.min(4096) as usize) }
}

fn plan<'d>(info: &PlatformInfo<'d>, host_dtb: &[u8], layout: &Layout) -> GuestPlan<'d> {
    let reserved: ArrayVec<PhysRange, MAX_RESERVED> =
        info.reserved.iter().map(|r| r.range).collect();
    let mut hidden: ArrayVec<PhysRange, 4> = ArrayVec::new();
    hidden.push(image::image_range());
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
    // The command line was checked and its diagnostics logged by `boot::bootargs`.
    let cmdline = platform::bootargs::parse(info.bootargs.unwrap_or(""));
    let passthrough = cmdline.passthrough.as_slice();
    let smmus_driven = crate::iommu::setup::drivable(info);
    let devices = guest_loader::DeviceOptions {
        passthrough_paths: passthrough,
        smmus_driven: &smmus_driven,
    };
    match guest_loader::plan_guest_with_devices(
        &info.modules,
        host_dtb,
        &config,
        &devices,
        module_head,
    ) {
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

/// Guest RAM at an IPA range and the physical address behind its start.
#[derive(Clone, Copy, Debug)]
pub(super) struct RamMapping {
    pub ipa: PhysRange,
    pub pa: u64,
}

impl RamMapping {
    /// RAM at IPA = PA (the single guest's).
    pub(super) fn identity(range: PhysRange) -> Self {
        Self {
            ipa: range,
            pa: range.base,
        }
    }
}

/// Builds the guest's stage 2 (not live: no TLBI).
fn build_stage2(
    regime: Regime,
    caps: Capabilities,
    flags: MapFlags,
    ram: &[RamMapping],
    mmio: &[PhysRange],
) -> Result<PageTable<TableHw>, pgtable::Error> {
    let mut table = PageTable::new(TableHw::new(TlbRegime::Stage2), regime, caps)?;
    let rwx = Attributes::new(
        Access::from_bits_truncate(0b111),
        MemoryType::NormalWriteBack,
    );
    for piece in ram {
        table.map(
            piece.ipa.base..piece.ipa.end(),
            PhysAddr(piece.pa),
            rwx,
            flags,
        )?;
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

/// The regions of the devices assigned to the guest, checked again here (the loader
/// refused overlaps already): none may touch RAM (the guest's or the hypervisor's), and
/// regions beyond the stage-2 input size are left out with a warning.
fn passthrough_mmio(
    regions: alloc::vec::Vec<PhysRange>,
    layout: &Layout,
    ia_limit: u64,
) -> alloc::vec::Vec<PhysRange> {
    let mut kept = alloc::vec::Vec::with_capacity(regions.len());
    for region in regions {
        let touches_ram = layout
            .guest_ram
            .iter()
            .chain(core::iter::once(&layout.pool))
            .chain(layout.crash.iter())
            .any(|ram| ram.overlaps(&region))
            || region.overlaps(&image::image_range());
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

/// Brings up the SMMUs (every drivable one: streams the guest was not given abort) and
/// points the guest's streams at its stage 2, whose invalidations the SMMU then mirrors.
/// An SMMU that has the guest's devices but cannot walk its stage 2 stops the boot: the
/// guest must not get a DMA-capable device without translation.
fn attach_smmus(
    info: &PlatformInfo<'_>,
    plan: &GuestPlan<'_>,
    table: &mut Stage2,
    vtcr: u64,
    layout: &Layout,
) {
    if info.smmus.is_empty() {
        return;
    }
    let streams: alloc::vec::Vec<(u32, core::ops::Range<u32>)> = plan
        .devices
        .streams()
        .into_iter()
        .map(|stream| (stream.smmu, stream.sids))
        .collect();
    let config = match Stage2Config::from_vtcr(vtcr, table.root().0, FIRST_VMID) {
        Ok(config) => config,
        Err(error) => {
            log::error!("SMMU: the guest's stage 2 as an STE: {error:?}");
            boot::stop_failure("the SMMU cannot describe the guest's stage 2");
        }
    };
    // The SMMU reads the tables (in the pool) and outputs guest RAM and device MMIO.
    let output_end = layout
        .guest_ram
        .iter()
        .chain(core::iter::once(&layout.pool))
        .chain(plan.devices.passthrough_regions().iter())
        .map(PhysRange::end)
        .max()
        .unwrap_or(0);
    let serving = match crate::iommu::setup::bring_up(info, &streams, &config, output_end) {
        Ok(serving) => serving,
        Err(error) => {
            log::error!("{error}");
            boot::stop_failure("cannot bring up the SMMU for the guest's devices");
        }
    };
    let Some(&smmu) = serving.first() else {
        return;
    };
    if serving.len() > 1 {
        log::warn!(
            "SMMU: only the first of {} SMMUs mirrors the guest's invalidations",
            serving.len()
        );
    }
    if !smmu.features.supports_bbml2() {
        // FEAT_BBM level 2's size-only changes are only safe if every walker of the
        // table allows them: the SMMU too (IDR3.BBML).
        let caps = table.capabilities();
        table.set_capabilities(Capabilities {
            split: SplitStrategy::BreakBeforeMake,
            ..caps
        });
        log::info!("stage 2: the SMMU has no BBML2: live splits use break-before-make");
    }
    table.hardware_mut().mirror_to_smmu(smmu, FIRST_VMID);
}

/// Logs what the guest was refused and why, and prints its `guest-devices:` line.
fn report_devices(plan: &GuestPlan<'_>) {
    for refused in &plan.devices.refused {
        log::warn!("guest: {refused}");
    }
    for note in &plan.devices.notes {
        log::info!("guest: {note}");
    }
    crate::console::write_raw(format_args!(
        "{}\n",
        plan.devices.console_line(u64::from(GUEST_NUMBER))
    ));
}

/// `regions` with the emulated devices' frames cut out: those must trap, whatever else
/// the DT put around them.
fn without_emulated_frames(
    regions: alloc::vec::Vec<PhysRange>,
    devices: &EmulatedDevices,
) -> alloc::vec::Vec<PhysRange> {
    let mut kept = regions;
    for hole in devices.ranges() {
        kept = kept
            .into_iter()
            .flat_map(|region| {
                let below = PhysRange::new(
                    region.base,
                    hole.base.saturating_sub(region.base).min(region.size),
                );
                let above_base = hole.end().max(region.base);
                let above = PhysRange::new(above_base, region.end().saturating_sub(above_base));
                if region.overlaps(&hole) {
                    [below, above]
                } else {
                    [Some(region), None]
                }
            })
            .flatten()
            .collect();
    }
    kept
}

/// A guest ready to run: its `Vm` and where its boot CPU starts.
pub struct PreparedGuest {
    pub vm: &'static Vm,
    /// The kernel's entry point, and x0 there: its DTB (booting.rst).
    pub entry: u64,
    pub dtb: u64,
}

/// Copies the kernel and initrd where the plan places them and writes the guest's DTB,
/// each cleaned to the PoC (the guest starts with its MMU and caches off). `to_pa` gives
/// the physical address behind a guest address the plan chose (the identity for the
/// single guest); the guest RAM behind each piece is one contiguous physical range.
pub(super) fn place_modules(plan: &GuestPlan<'_>, to_pa: impl Fn(u64) -> u64) {
    let placement = &plan.placement;
    for copy in &placement.copies {
        let dst = to_pa(copy.dst);
        log::info!(
            "guest: moving {:?} {:#x} -> {:#x} (PA {dst:#x}, {} bytes)",
            copy.module,
            copy.src,
            copy.dst,
            copy.len
        );
        // SAFETY: both ranges are guest RAM or module memory, mapped in the EL2 direct
        // map; the planner ordered the copies so memmove semantics suffice.
        unsafe { core::ptr::copy(copy.src as *const u8, dst as *mut u8, copy.len as usize) };
        cache::clean_to_poc(dst..dst + copy.len);
    }
    let dtb = to_pa(placement.dtb.base);
    // SAFETY: the DTB slot is guest RAM reserved for it by the planner (2 MiB), mapped.
    unsafe { core::ptr::copy_nonoverlapping(plan.dtb.as_ptr(), dtb as *mut u8, plan.dtb.len()) };
    cache::clean_to_poc(dtb..dtb + plan.dtb.len() as u64);
    cache::sync_instruction_cache();
}

/// Builds, reports and publishes the guest's stage 2 for `ram` and `mmio`; returns the
/// tree (live: visible to walkers) and its regime.
pub(super) fn stage2_for(
    cpu: &CpuFacts,
    caps: Capabilities,
    flags: MapFlags,
    ram: &[RamMapping],
    mmio: &[PhysRange],
) -> (Stage2, Regime) {
    let highest_end = ram
        .iter()
        .map(|piece| &piece.ipa)
        .chain(mmio.iter())
        .map(|range| range.end())
        .max()
        .unwrap_or(0);
    let regime = stage2_regime(cpu, highest_end);
    let started = sysreg::counter();
    let mut table = match build_stage2(regime, caps, flags, ram, mmio) {
        Ok(table) => table,
        Err(error) => {
            log::error!("stage 2: {error}");
            boot::stop_failure("cannot build the stage-2 map");
        }
    };
    let build_us =
        sysreg::counter().wrapping_sub(started) * 1_000_000 / sysreg::counter_frequency().max(1);
    let ipa_ram: alloc::vec::Vec<PhysRange> = ram.iter().map(|piece| piece.ipa).collect();
    let leaves = report::ptdump(&table, "stage2", regime.ia_limit(), &ipa_ram);
    report::map_stats(&table, "stage2", &leaves, build_us);
    // The tables must be visible to the walkers before VTTBR_EL2 points at them.
    table.mark_live();
    (table, regime)
}

/// The host DT's devices by node path, so that a refused guest access names the device
/// it hit; the GIC is marked as partly emulated. Only a diagnostic: an unreadable host DT
/// (the guest was planned from it already) leaves the devices unnamed, with a warning.
pub(super) fn host_devices(
    host_dtb: &[u8],
    devices: &EmulatedDevices,
) -> alloc::vec::Vec<HostDevice> {
    let emulated: alloc::vec::Vec<PhysRange> = devices.ranges().collect();
    match HostDevice::from_dtb(host_dtb, &emulated) {
        Ok(devices) => devices,
        Err(error) => {
            log::warn!(
                "guest: host devices unnamed ({error}); refused accesses to them count as {}",
                crate::vm::foreign_access::ForeignKind::OutsideRam.key()
            );
            alloc::vec::Vec::new()
        }
    }
}

/// Plans the guest, puts its kernel, initrd and DTB in place and builds its stage 2: a
/// `Vm` ready to enter (`vm::vcpu::start`). What runs in between (selftests, the
/// MEM_PROTECT benchmark) is the caller's business.
pub fn prepare(
    info: &PlatformInfo<'_>,
    host_dtb: &[u8],
    layout: &Layout,
    cpu: &CpuFacts,
    caps: Capabilities,
    flags: MapFlags,
) -> PreparedGuest {
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
    place_modules(&plan, |address| address);
    let devices = emulated_devices(info, info.cpus.len());
    report_devices(&plan);
    let mmio = without_emulated_frames(
        passthrough_mmio(
            plan.devices.passthrough_regions(),
            layout,
            cpu_ipa_limit(cpu),
        ),
        &devices,
    );
    let mmio_spis = plan.devices.passthrough_intids();
    let ram: alloc::vec::Vec<RamMapping> = layout
        .guest_ram
        .iter()
        .copied()
        .map(RamMapping::identity)
        .collect();
    let (table, regime) = stage2_for(cpu, caps, flags, &ram, &mmio);
    let vtcr = match pgtable::vtcr_el2(&regime, cpu.features.pa_bits.min(48)) {
        Ok(vtcr) => vtcr,
        Err(error) => {
            log::error!("stage 2: VTCR_EL2: {error}");
            boot::stop_failure("cannot configure stage 2");
        }
    };
    let mut table = table;
    attach_smmus(info, &plan, &mut table, vtcr, layout);
    let ids = sysreg::id_registers();
    let vttbr = (u64::from(FIRST_VMID) << 48) | table.root().0;
    table.hardware_mut().set_vttbr(vttbr);
    let mpidrs: alloc::vec::Vec<u64> = info.cpus.iter().map(|c| c.mpidr).collect();
    let vgic = vgic_for(info, &mpidrs, &devices, &mmio_spis);
    let vm = Vm {
        vmid: FIRST_VMID,
        setup: VcpuSetup {
            controls: GuestControls::for_features(&GuestFeatures::decode(&ids)),
            vtcr,
            vttbr,
            midr: ids.midr,
        },
        stage2: Mutex::new(table),
        ipa_limit: regime.ia_limit(),
        ram: layout.guest_ram.clone(),
        vcpus: Vcpus::new(info.cpus.iter().map(|c| c.mpidr).collect()),
        host: HostMemoryMap {
            image: Some(image::image_range()),
            pool: Some(layout.pool),
            crash: layout.crash,
            dtb: Some(info.dtb),
            ram: info.memory.clone(),
            devices: host_devices(host_dtb, &devices),
            guests: alloc::vec::Vec::new(),
        },
        change_window: ChangeWindow::new(),
        stats: VmStats::default(),
        vgic: Mutex::new(vgic),
        console: Mutex::new(VirtualConsole::new(GUEST_NUMBER)),
        devices,
        number: GUEST_NUMBER,
        boot: None,
    };
    let guest_ram_bytes: u64 = layout.guest_ram.iter().map(|r| r.size).sum();
    crate::console::write_raw(format_args!(
        "hyp-facts: guest_ram_bytes={guest_ram_bytes} guest_vcpus={} guest_entry={:#x} guest_dtb={:#x} stage2_ipa_bits={} table_allocations={} injected_failures={}\n",
        info.cpus.len(),
        placement.entry,
        placement.dtb.base,
        regime.ia_bits(),
        crate::mm::table_hw::table_allocations(),
        crate::mm::table_hw::injected_failures()
    ));
    PreparedGuest {
        // The guest lives as long as the hypervisor.
        vm: alloc::boxed::Box::leak(alloc::boxed::Box::new(vm)),
        entry: placement.entry,
        dtb: placement.dtb.base,
    }
}
