//! The EL2 stage-1 map: RAM identity-mapped in 1G/2M blocks (plus contiguous hints),
//! read-write and execute-never; the image W^X by section; the console and GIC as
//! Device-nGnRE; the crash region left unmapped. Built while not live (no TLBI at all),
//! then switched on with one sequence.

use core::ops::Range;

use crate::cpu::features::CpuFeatures;
use arrayvec::ArrayVec;
use pgtable::{
    Access, Attributes, Capabilities, MapFlags, MemoryType, PageTable, PhysAddr, Regime,
    SplitStrategy,
};
use platform::bootargs::{HypervisorArgs, MappingMode};
use platform::info::{PhysRange, PlatformInfo};
use spin::Mutex;

use super::image::{ImageSections, image_sections};
use super::table_hw::{TableHw, TlbRegime};
use crate::arch::sysreg::{read_sysreg, write_sysreg};

pub type Table = PageTable<TableHw>;

/// The live EL2 table, once the MMU is on.
pub static EL2_TABLE: Mutex<Option<Table>> = Mutex::new(None);

const PAGE: u64 = 4096;

/// The engine's capabilities for `features` (the CPUs' common ones), unless the command
/// line forces a strategy.
pub fn capabilities(features: &CpuFeatures, args: &HypervisorArgs) -> Capabilities {
    let mut caps = Capabilities {
        split: if features.has_bbml2() {
            SplitStrategy::Bbml2
        } else {
            SplitStrategy::BreakBeforeMake
        },
        tlbi_range: features.tlbi_range,
    };
    match args.split {
        platform::bootargs::SplitRequest::Auto => {}
        platform::bootargs::SplitRequest::Bbm => caps.split = SplitStrategy::BreakBeforeMake,
        platform::bootargs::SplitRequest::Bbml2 => {
            if caps.split != SplitStrategy::Bbml2 {
                log::warn!("split=bbml2 ignored: this CPU does not implement FEAT_BBM level 2");
            }
        }
    }
    caps
}

pub fn map_flags(args: &HypervisorArgs) -> MapFlags {
    match args.mapping {
        MappingMode::Blocks => MapFlags::NONE,
        MappingMode::Pages => MapFlags::NO_BLOCK_MAPPINGS | MapFlags::NO_CONT_MAPPINGS,
    }
}

/// Holes in the RAM mapping: the image (mapped by section), the crash region and every
/// `no-map` reservation.
const MAX_HOLES: usize = platform::info::MAX_RESERVED + 2;

/// `range` minus `holes` (each hole inside or outside it), in order.
fn subtract(range: Range<u64>, holes: &[Range<u64>]) -> ArrayVec<Range<u64>, { MAX_HOLES + 1 }> {
    let mut pieces = ArrayVec::new();
    let mut cursor = range.start;
    let mut sorted: ArrayVec<Range<u64>, MAX_HOLES> = holes
        .iter()
        .filter(|h| h.start < range.end && range.start < h.end)
        .cloned()
        .collect();
    sorted.sort_unstable_by_key(|h| h.start);
    for hole in &sorted {
        if hole.start > cursor {
            let _ = pieces.try_push(cursor..hole.start);
        }
        cursor = cursor.max(hole.end);
    }
    if cursor < range.end {
        let _ = pieces.try_push(cursor..range.end);
    }
    pieces
}

fn page_round(range: &PhysRange) -> Range<u64> {
    (range.base & !(PAGE - 1))..range.end().next_multiple_of(PAGE)
}

/// What the build measured, for the boot report.
pub struct BuildReport {
    pub build_ticks: u64,
}

/// Device ranges the EL2 map holds: the console, the GIC distributor, its redistributor
/// regions and the SMMUs.
const MAX_DEVICE_RANGES: usize = 2 + platform::info::MAX_REDIST_REGIONS + platform::info::MAX_SMMUS;

/// Builds the EL2 map (not live: no TLB maintenance) for RAM, the image and the devices.
///
/// # Errors
/// The engine's error (out of tables, or a range the regime refuses).
pub fn build(
    info: &PlatformInfo<'_>,
    crash: Option<PhysRange>,
    caps: Capabilities,
    flags: MapFlags,
) -> Result<(Table, BuildReport), pgtable::Error> {
    let start = crate::arch::sysreg::counter();
    let mut table = PageTable::new(TableHw::new(TlbRegime::El2), Regime::el2(), caps)?;
    let image = image_sections();
    let image_range = image.text.start..image.writable.end;
    let crash_range = crash.map(|c| page_round(&c));
    let mut holes: ArrayVec<Range<u64>, MAX_HOLES> = ArrayVec::new();
    holes.push(image_range.clone());
    if let Some(crash) = crash_range.clone() {
        holes.push(crash);
    }
    // `no-map` (devicetree reserved-memory binding): the OS must not map it at all, not
    // even for speculative accesses. It is typically a secure or firmware carve-out,
    // where a speculative cacheable access can raise an SError or leave a line behind.
    for reserved in info.reserved.iter().filter(|r| r.no_map) {
        holes.push(page_round(&reserved.range));
    }
    let rw = Attributes::RW;
    for bank in &info.memory {
        for piece in subtract(bank.base..bank.end(), &holes) {
            table.map(piece.clone(), PhysAddr(piece.start), rw, flags)?;
        }
    }
    map_image(&mut table, &image, info.cpus.len(), flags)?;

    let device = Attributes::new(Access::READ_WRITE, MemoryType::Device);
    let mut devices: ArrayVec<Range<u64>, MAX_DEVICE_RANGES> = ArrayVec::new();
    devices.push(page_round(&info.console.regs));
    devices.push(page_round(&info.gic.distributor));
    for redist in &info.gic.redistributors {
        let _ = devices.try_push(page_round(redist));
    }
    // The SMMUs the hypervisor drives (iommu::setup): their two register pages each.
    for smmu in &info.smmus {
        let _ = devices.try_push(page_round(&smmu.regs));
    }
    for range in merge(&mut devices) {
        table.map(range.clone(), PhysAddr(range.start), device, MapFlags::NONE)?;
    }
    let end = crate::arch::sysreg::counter();
    Ok((
        table,
        BuildReport {
            build_ticks: end.wrapping_sub(start),
        },
    ))
}

/// The image W^X by section (pages only where a section edge is not block aligned), with
/// the guard page under each of `cpus` CPUs' stacks left out.
fn map_image(
    table: &mut Table,
    image: &ImageSections,
    cpus: usize,
    flags: MapFlags,
) -> Result<(), pgtable::Error> {
    table.map(
        image.text.clone(),
        PhysAddr(image.text.start),
        Attributes::RX,
        flags,
    )?;
    if !image.rodata.is_empty() {
        table.map(
            image.rodata.clone(),
            PhysAddr(image.rodata.start),
            Attributes::RO,
            flags,
        )?;
    }
    // The writable sections between the stack guard pages (sorted: the boot stack's guard
    // comes before the secondary slots): mapped around them rather than mapped and then
    // unmapped, so the engine writes exactly the minimal cover.
    let mut cursor = image.writable.start;
    for guard in super::image::stack_guard_pages(cpus) {
        if guard.start > cursor {
            table.map(cursor..guard.start, PhysAddr(cursor), Attributes::RW, flags)?;
        }
        cursor = cursor.max(guard.end);
    }
    if cursor < image.writable.end {
        let rest = cursor..image.writable.end;
        table.map(rest.clone(), PhysAddr(rest.start), Attributes::RW, flags)?;
    }
    Ok(())
}

/// The crash writer's own map, built once at boot and never changed: the image (as in the
/// EL2 map), the console, and `record` read-write at 4K. A CPU that crashes switches to
/// it, so writing the record needs no lock on the EL2 map and never edits a table
/// another CPU may be editing; the EL2 map keeps the crash region unmapped throughout.
/// Nothing of the heap is mapped: the crash path does not allocate.
///
/// # Errors
/// The engine's error (out of tables).
pub fn build_crash_map(
    info: &PlatformInfo<'_>,
    record: Range<u64>,
) -> Result<Table, pgtable::Error> {
    let mut table = PageTable::new(
        TableHw::new(TlbRegime::El2),
        Regime::el2(),
        Capabilities::BASELINE,
    )?;
    map_image(
        &mut table,
        &image_sections(),
        info.cpus.len(),
        MapFlags::NONE,
    )?;
    let console = page_round(&info.console.regs);
    let device = Attributes::new(Access::READ_WRITE, MemoryType::Device);
    table.map(
        console.clone(),
        PhysAddr(console.start),
        device,
        MapFlags::NONE,
    )?;
    table.map(
        record.clone(),
        PhysAddr(record.start),
        Attributes::RW,
        MapFlags::NO_BLOCK_MAPPINGS | MapFlags::NO_CONT_MAPPINGS,
    )?;
    Ok(table)
}

/// Sorts and merges overlapping ranges.
fn merge(
    ranges: &mut ArrayVec<Range<u64>, MAX_DEVICE_RANGES>,
) -> ArrayVec<Range<u64>, MAX_DEVICE_RANGES> {
    ranges.sort_unstable_by_key(|r| r.start);
    let mut merged: ArrayVec<Range<u64>, MAX_DEVICE_RANGES> = ArrayVec::new();
    for range in ranges.iter() {
        match merged.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => {
                let _ = merged.try_push(range.clone());
            }
        }
    }
    merged
}

/// What was written while the MMU was off, for [`enable`] to invalidate.
pub struct WrittenWithMmuOff {
    /// Ranges written anywhere (the image, the DTB).
    pub whole: [Range<u64>; 2],
    /// The frame pool.
    pub pool: Range<u64>,
    /// The runs the frame allocator handed out, if it kept count: outside them only the
    /// first bytes of each pool page were written (its free-list links). `None`: treat
    /// the whole pool as written.
    pub pool_handed_out: Option<ArrayVec<Range<u64>, { crate::mm::frames::HANDED_OUT_LOG }>>,
}

/// Switches the MMU on with `table` (Arm ARM D8.2 / "Enabling the MMU"): MAIR, TCR, TTBR0,
/// then a local invalidation of any stale EL2 entries, then SCTLR_EL2.{M, C, I, WXN}.
pub fn enable(
    mut table: Table,
    pa_bits: u8,
    written_with_mmu_off: &WrittenWithMmuOff,
) -> Result<(), pgtable::Error> {
    let tcr = pgtable::tcr_el2(pa_bits)?;
    // Stale clean lines from before (firmware, the loader) would shadow what went straight
    // to memory once accesses are cacheable: drop them (Arm ARM D7.5.9, "Data cache
    // maintenance instructions"; Linux does the same for its MMU-off page tables).
    for range in &written_with_mmu_off.whole {
        crate::arch::cache::invalidate_to_poc(range.clone());
    }
    let pool = written_with_mmu_off.pool.clone();
    match &written_with_mmu_off.pool_handed_out {
        Some(runs) => {
            for run in runs {
                crate::arch::cache::invalidate_to_poc(run.clone());
            }
            crate::arch::cache::invalidate_page_heads(pool, crate::mm::frames::LINK_BYTES);
        }
        None => crate::arch::cache::invalidate_to_poc(pool),
    }
    // The tables' contents must be visible to the walker before it is enabled.
    table.mark_live();
    write_sysreg!("mair_el2", pgtable::MAIR_EL2);
    write_sysreg!("tcr_el2", tcr);
    write_sysreg!("ttbr0_el2", table.root().0);
    // Drop whatever the TLB held for EL2 before (its reset contents are UNKNOWN),
    // complete it locally, synchronise the new controls.
    crate::arch::aarch64::tlb::invalidate_el2_locally();
    const SCTLR_M: u64 = 1 << 0;
    const SCTLR_C: u64 = 1 << 2;
    const SCTLR_I: u64 = 1 << 12;
    const SCTLR_WXN: u64 = 1 << 19;
    let sctlr = read_sysreg!("sctlr_el2") | SCTLR_M | SCTLR_C | SCTLR_I | SCTLR_WXN;
    write_sysreg!("sctlr_el2", sctlr);
    crate::arch::barrier_isb();
    *EL2_TABLE.lock() = Some(table);
    Ok(())
}
