//! EL2 selftests, run before the test guest in `selftest` mode: the live EL2 map checked
//! by the hardware itself (AT, provoked faults caught through the vectors) and the engine
//! on it. Each prints `selftest: <name> ... ok` or `... FAILED: <why>`; scripts/run.sh
//! adds them to the test guest's summary.

pub mod protect_bench;

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::arch::asm;
use core::num::NonZeroU32;

use crate::arch::esr::Esr;
use pgtable::Attributes;
use platform::info::{PhysRange, PlatformInfo};

use crate::hypercall::{self, Hypercall, Permissions};

use crate::arch::trap::expect_fault;
use crate::mm::el2_map::EL2_TABLE;
use crate::mm::memory_plan::Layout;
use crate::mm::report::{Fingerprint, fingerprint};
use crate::mm::table_hw::{disarm_fault_injection, fail_allocation_after};
use crate::vm::guest::Vm;
use core::sync::atomic::Ordering;

type Outcome = Result<(), &'static str>;

fn report(name: &str, result: Outcome) -> bool {
    match result {
        Ok(()) => crate::console::write_raw(format_args!("selftest: {name} ... ok\n")),
        Err(why) => crate::console::write_raw(format_args!("selftest: {name} ... FAILED: {why}\n")),
    }
    result.is_ok()
}

/// A test the machine may be too small for: `Err(why)` skips it (not a failure).
fn report_unless_skipped(name: &str, result: Result<Outcome, &'static str>) -> bool {
    match result {
        Ok(outcome) => report(name, outcome),
        Err(why) => {
            crate::console::write_raw(format_args!("selftest: {name} ... skipped: {why}\n"));
            true
        }
    }
}

/// `AT S1E2R`/`AT S1E2W` of `va`: the PA, or `None` if the translation faults.
fn at(va: u64, write: bool) -> Option<u64> {
    let par: u64;
    // SAFETY: address translation instructions only read the tables and write PAR_EL1;
    // the ISB makes PAR_EL1 current (Arm ARM: AT results need a context synchronisation).
    unsafe {
        if write {
            asm!("at s1e2w, {va}", "isb", "mrs {par}, par_el1", va = in(reg) va, par = out(reg) par, options(nostack));
        } else {
            asm!("at s1e2r, {va}", "isb", "mrs {par}, par_el1", va = in(reg) va, par = out(reg) par, options(nostack));
        }
    }
    (par & 1 == 0).then_some((par & 0x000f_ffff_ffff_f000) | (va & 0xfff))
}

static RODATA_PROBE: [u64; 2] = [0x0123_4567_89ab_cdef, 0];
static mut DATA_PROBE: [u32; 2] = [0, 0];
const RET: u32 = 0xd65f_03c0;

/// The hardware translates sample addresses as the map says: identity for RAM and the
/// image, the table's PA for the heap, text and rodata not writable, data writable.
fn el2_at_translations(layout_pool: PhysRange) -> Outcome {
    let text = el2_at_translations as *const () as u64;
    let rodata = RODATA_PROBE.as_ptr() as u64;
    let data = (&raw const DATA_PROBE) as u64;
    let heap = Box::new(0u64);
    let heap_va = &*heap as *const u64 as u64;
    if at(text, false) != Some(text) || at(text, true).is_some() {
        return Err("text: not identity-readable or writable");
    }
    if at(rodata, false) != Some(rodata) || at(rodata, true).is_some() {
        return Err("rodata: not identity-readable or writable");
    }
    if at(data, true) != Some(data) {
        return Err("data: not identity-writable");
    }
    if at(layout_pool.base, true) != Some(layout_pool.base) {
        return Err("RAM (the pool) is not identity-writable");
    }
    if at(heap_va, true) != crate::mm::heap::virt_to_phys(heap_va) {
        return Err("heap: AT and the table walk disagree");
    }
    Ok(())
}

/// A store to rodata is a permission fault at level 3, caught through the vectors.
fn el2_rodata_write_faults() -> Outcome {
    let target = RODATA_PROBE.as_ptr() as u64;
    let fault = expect_fault(|| {
        // SAFETY: the store must fault (rodata is read-only); the harness resumes after it.
        unsafe { asm!("str xzr, [{}]", in(reg) target, options(nostack)) };
    })
    .ok_or("the store to rodata did not fault")?;
    let esr = Esr(fault.esr);
    if esr.class().0 != 0x25 || esr.fault_status() != 0x0f || !esr.is_write() || fault.far != target
    {
        return Err("wrong syndrome (want EC 0x25, DFSC 0x0f, WnR, FAR = the address)");
    }
    if RODATA_PROBE[0] != 0x0123_4567_89ab_cdef {
        return Err("rodata changed");
    }
    Ok(())
}

/// Executing from data is an instruction abort (XN), caught through the vectors.
fn el2_data_fetch_faults() -> Outcome {
    // SAFETY: a plain write to the probe; nothing else uses it.
    unsafe { (&raw mut DATA_PROBE).cast::<u32>().write_volatile(RET) };
    let target = (&raw const DATA_PROBE) as u64;
    let fault = expect_fault(|| {
        // SAFETY: the branch must fault (data is execute-never); the harness resumes at
        // the return address, as if the `ret` there had run.
        unsafe { asm!("blr {}", in(reg) target, clobber_abi("C"), options(nostack)) };
    })
    .ok_or("the fetch from data did not fault")?;
    let esr = Esr(fault.esr);
    if esr.class().0 != 0x21 || esr.fault_status() != 0x0f || fault.elr != target {
        return Err("wrong syndrome (want EC 0x21, IFSC 0x0f at the data address)");
    }
    Ok(())
}

/// The crash region is not mapped until a crash record is written.
fn el2_crash_region_unmapped(crash: Option<PhysRange>) -> Outcome {
    let Some(region) = crash else {
        return Err("no crash region (run with crashkernel=)");
    };
    let table = EL2_TABLE.lock();
    let table = table.as_ref().ok_or("no EL2 table")?;
    if table.query(region.base).is_some() || table.query(region.end() - 1).is_some() {
        return Err("the crash region is mapped");
    }
    if at(region.base, false).is_some() {
        return Err("AT translates the crash region");
    }
    Ok(())
}

/// What a CPU sees through its own EL2 MMU, one bit per check ([`probe_own_mmu`]).
const PROBE_CONTROLS: u64 = 1 << 0;
const PROBE_TEXT: u64 = 1 << 1;
const PROBE_RAM: u64 = 1 << 2;
const PROBE_CRASH_UNMAPPED: u64 = 1 << 3;
const PROBE_GUARDS_UNMAPPED: u64 = 1 << 4;
const PROBE_ALL: u64 = (1 << 5) - 1;
const PROBE_NAMES: [&str; 5] = [
    "SCTLR_EL2.{M,C,I,WXN} not all set",
    "text not identity-readable, or writable",
    "RAM (the pool) not identity-writable",
    "the crash region translates",
    "a stack guard page translates",
];

/// Runs on each CPU (as [`crate::cpu::Work`]): `args` = [pool base, crash base or 0].
/// Every check goes through this CPU's own MMU and TLB with `AT`.
fn probe_own_mmu(_cpu: usize, [pool, crash]: [u64; 2]) -> u64 {
    const SCTLR_M_C_I_WXN: u64 = (1 << 0) | (1 << 2) | (1 << 12) | (1 << 19);
    let sctlr = crate::arch::sysreg::read_sysreg!("sctlr_el2");
    let text = probe_own_mmu as *const () as u64;
    let mut passed = 0;
    if sctlr & SCTLR_M_C_I_WXN == SCTLR_M_C_I_WXN {
        passed |= PROBE_CONTROLS;
    }
    if at(text, false) == Some(text) && at(text, true).is_none() {
        passed |= PROBE_TEXT;
    }
    if at(pool, true) == Some(pool) {
        passed |= PROBE_RAM;
    }
    if crash == 0 || at(crash, false).is_none() {
        passed |= PROBE_CRASH_UNMAPPED;
    }
    let cpus = crate::cpu::online().count().max(1);
    if crate::mm::image::stack_guard_pages(cpus).all(|guard| at(guard.start, false).is_none()) {
        passed |= PROBE_GUARDS_UNMAPPED;
    }
    passed
}

/// Every CPU of the device tree is up and runs EL2 through the same live map: controls
/// on, text W^X, RAM identity, crash region and stack guard pages unmapped, each checked
/// by `AT S1E2R`/`S1E2W` on that CPU.
fn el2_every_cpu_runs_the_mmu(
    info: &PlatformInfo<'_>,
    pool: PhysRange,
    crash: Option<PhysRange>,
) -> Outcome {
    if crate::cpu::online().count() != info.cpus.len() {
        return Err("not every CPU of the device tree is online");
    }
    let work = crate::cpu::Work {
        run: probe_own_mmu,
        args: [pool.base, crash.map_or(0, |c| c.base)],
    };
    for cpu in crate::cpu::online() {
        let passed = crate::cpu::run_on(cpu, work, 1_000_000).ok_or("a CPU did not answer")?;
        if let Some(bit) = (0..PROBE_NAMES.len()).find(|&bit| passed & (1 << bit) == 0) {
            log::error!("cpu{cpu}: {}", PROBE_NAMES[bit]);
            return Err(PROBE_NAMES[bit]);
        }
        debug_assert_eq!(passed, PROBE_ALL);
        let reported = crate::cpu::reported(cpu).ok_or("a CPU did not report itself")?;
        if !(reported.mmu_on() && reported.dcache_on() && reported.icache_on()) {
            return Err("a CPU's hyp-cpu line reports its MMU or caches off");
        }
    }
    Ok(())
}

/// The crash writer's own map covers the record read-write at 4K, the image W^X and
/// the console, and nothing of RAM beyond them: a crashing CPU switches to it instead of
/// editing the EL2 map, which keeps the region unmapped.
fn el2_crash_map_is_separate_and_small() -> Outcome {
    let record = crate::crash::record().ok_or("no crash region (run with crashkernel=)")?;
    let text = el2_crash_map_is_separate_and_small as *const () as u64;
    let data = (&raw const DATA_PROBE) as u64;
    let heap = Box::new(0u64);
    let heap_va = &*heap as *const u64 as u64;
    crate::crash::with_crash_map(|map| {
        let page = map
            .query(record.start)
            .ok_or("the record's first page is not mapped")?;
        let last = map
            .query(record.end - 1)
            .ok_or("the record's last page is not mapped")?;
        if page.level != 3 || last.level != 3 || page.attrs != Attributes::RW {
            return Err("the record is not mapped read-write at 4K");
        }
        if map.query(record.end).is_some() {
            return Err("the crash map maps more of the crash region than the record");
        }
        if map.query(text).map(|t| t.attrs) != Some(Attributes::RX) {
            return Err("the image's text is not read-execute in the crash map");
        }
        if map.query(data).map(|d| d.attrs) != Some(Attributes::RW) {
            return Err("the image's data is not read-write in the crash map");
        }
        if map.query(heap_va).is_some() {
            return Err("the crash map maps the heap");
        }
        Ok(())
    })
    .ok_or("no crash map")?
}

/// An 8 GiB-aligned window of eight GiBs of guest RAM that holds no module: the EL2 map
/// has it RW in 1G blocks and EL2 touches none of it before the guest is prepared.
fn untouched_8g_window(layout: &Layout, info: &PlatformInfo<'_>) -> Option<u64> {
    const WINDOW: u64 = 8 << 30;
    layout.guest_ram.iter().rev().find_map(|piece| {
        let mut base = piece.end().checked_sub(WINDOW)? & !(WINDOW - 1);
        while base >= piece.base {
            let window = PhysRange { base, size: WINDOW };
            if !info.modules.iter().any(|m| m.range.overlaps(&window)) {
                return Some(base);
            }
            base = base.checked_sub(WINDOW)?;
        }
        None
    })
}

/// Whether a store to `addr` at EL2 faults (a permission fault, caught and stepped over).
fn el2_store_faults(addr: u64) -> bool {
    expect_fault(|| {
        // SAFETY: `addr` is guest RAM before the guest exists, mapped at EL2; the store
        // either writes a word nobody uses or faults, and the harness steps over it.
        unsafe { asm!("str xzr, [{}]", in(reg) addr, options(nostack)) };
    })
    .is_some()
}

/// A range invalidation of exactly 8 GiB covers all of it (`TLBI RVAE2IS` with SCALE 3,
/// NUM 31: it once came out as 2 pages). A page in every GiB of an 8 GiB window of the
/// live EL2 map is made read-only (the window then holds thousands of leaves, so the
/// engine invalidates it with one range operation, or everything without
/// FEAT_TLBIRANGE); a sample page per GiB is stored to (its writable translation is now
/// in this CPU's TLB); the whole window goes read-only in one change: every sample store
/// must fault, or the invalidation missed it (checked: with the range invalidation taken
/// out, a store goes through and this fails). On silicon a range that covers too little
/// fails it too; under TCG it does not, because QEMU flushes its whole TLB when a range
/// touches the region where it saw block mappings: the encoding is checked exhaustively
/// on the host (`mm::tlbi_range`).
fn el2_8g_range_invalidation_covers_it_all(
    layout: &Layout,
    info: &PlatformInfo<'_>,
) -> Result<Outcome, &'static str> {
    let base = untouched_8g_window(layout, info)
        .ok_or("no 8 GiB window of guest RAM (run with --mem 16G or more)")?;
    Ok(range_invalidation_of(base))
}

fn range_invalidation_of(base: u64) -> Outcome {
    const GIB: u64 = 1 << 30;
    let window = base..base + 8 * GIB;
    let sample = |gib: u64| base + gib * GIB + (gib * 7 + 300) % 512 * (2 << 20);
    let mut guard = EL2_TABLE.lock();
    let table = guard.as_mut().ok_or("no EL2 table")?;
    for gib in 0..8 {
        let page = base + gib * GIB + 0x1000;
        table
            .change_attrs(page..page + 4096, Attributes::RO)
            .map_err(|_| "splitting a GiB of the window failed")?;
    }
    drop(guard);
    if (0..8).any(|gib| el2_store_faults(sample(gib))) {
        return Err("a sample store faulted before the window went read-only");
    }
    let before = EL2_TABLE.lock().as_ref().map(|t| t.counters());
    let changed = EL2_TABLE
        .lock()
        .as_mut()
        .map(|t| t.change_attrs(window.clone(), Attributes::RO));
    let stale = (0..8).find(|&gib| !el2_store_faults(sample(gib)));
    let mut guard = EL2_TABLE.lock();
    let table = guard.as_mut().ok_or("no EL2 table")?;
    let restored = table.change_attrs(window.clone(), Attributes::RW);
    let delta = before.map(|b| table.counters().since(&b));
    let collapsed = (0..8).all(|gib| table.query(base + gib * GIB).is_some_and(|l| l.level == 1));
    drop(guard);
    if !matches!(changed, Some(Ok(_))) {
        return Err("making the window read-only failed");
    }
    if let Some(gib) = stale {
        log::error!(
            "store to {:#x} went through after the 8 GiB window went read-only",
            sample(gib)
        );
        return Err(
            "a store went through after the window went read-only: the invalidation missed it",
        );
    }
    if restored.is_err() || !collapsed {
        return Err("the window did not come back to 1G blocks");
    }
    if delta.is_some_and(|d| d.tlbi_range + d.tlbi_all == 0) {
        return Err("the window's change was not invalidated by range (or all)");
    }
    Ok(())
}

/// The heap grows past its first chunk with 2M leaves.
fn el2_heap_grows_with_2m_blocks() -> Outcome {
    let (before, _) = crate::mm::heap::stats();
    let mut big: Vec<u8> = Vec::new();
    big.try_reserve_exact(6 << 20)
        .map_err(|_| "cannot allocate 6 MiB")?;
    big.resize(6 << 20, 0x3c);
    let (after, _) = crate::mm::heap::stats();
    if after.chunks_2m < before.chunks_2m + 3 {
        return Err("the heap did not grow by 2M blocks");
    }
    let table = EL2_TABLE.lock();
    let leaf = table
        .as_ref()
        .and_then(|t| t.query(big.as_ptr() as u64 + (3 << 20)))
        .ok_or("heap not mapped")?;
    if leaf.level != 2 || leaf.attrs != Attributes::RW {
        return Err("the heap is not in read-write 2M leaves");
    }
    Ok(())
}

/// No general RAM (outside the image and the crash region) is mapped with 4K pages.
fn el2_no_4k_ram(info: &PlatformInfo<'_>, image: PhysRange, crash: Option<PhysRange>) -> Outcome {
    let table = EL2_TABLE.lock();
    let table = table.as_ref().ok_or("no EL2 table")?;
    for run in table.mappings(0..1 << 48) {
        if run.level != 3 {
            continue;
        }
        let page = PhysRange {
            base: run.pa.0,
            size: run.ia.end - run.ia.start,
        };
        let in_ram = info.memory.iter().any(|bank| bank.overlaps(&page));
        let allowed = image.contains_range(&page) || crash.is_some_and(|c| c.overlaps(&page));
        if in_ram && !allowed {
            return Err("general RAM is mapped with 4K pages");
        }
    }
    Ok(())
}

/// A heap page inside a 2M block of the live EL2 map goes read-only (the block splits to a
/// level-3 table) and back (the table collapses to the block), with the contents intact.
fn el2_split_and_collapse() -> Outcome {
    let page = Box::new([0x5au8; 4096]);
    let va = page.as_ptr() as u64 & !0xfff;
    let mut guard = EL2_TABLE.lock();
    let table = guard.as_mut().ok_or("no EL2 table")?;
    let before = table.query(va).ok_or("heap page not mapped")?;
    if before.level != 2 {
        return Err("heap page is not in a 2M block");
    }
    let counters = table.counters();
    table
        .change_attrs(va..va + 4096, Attributes::RO)
        .map_err(|_| "change to read-only failed")?;
    let split = table.query(va).ok_or("page lost after the split")?;
    if split.level != 3 || split.attrs != Attributes::RO {
        return Err("the page is not a read-only level-3 leaf after the split");
    }
    let neighbour = table.query(va ^ 0x1000).ok_or("neighbour lost")?;
    if neighbour.attrs != Attributes::RW {
        return Err("the neighbour page changed");
    }
    drop(guard);
    // The hardware agrees: the page is not writable now.
    if at(va, true).is_some() {
        return Err("AT S1E2W still translates the read-only page");
    }
    let mut guard = EL2_TABLE.lock();
    let table = guard.as_mut().ok_or("no EL2 table")?;
    table
        .change_attrs(va..va + 4096, Attributes::RW)
        .map_err(|_| "restore failed")?;
    let after = table.query(va).ok_or("page lost after the restore")?;
    let delta = table.counters().since(&counters);
    drop(guard);
    if after.level != 2 || delta.splits_2m != 1 || delta.collapses_2m != 1 {
        return Err("the restore did not collapse back to the 2M block");
    }
    if page.iter().any(|&b| b != 0x5a) {
        return Err("contents changed");
    }
    Ok(())
}

/// The EL2 map's fingerprint (every run of its ptdump walk, hashed).
fn el2_fingerprint() -> Result<Fingerprint, &'static str> {
    let table = EL2_TABLE.lock();
    Ok(fingerprint(table.as_ref().ok_or("no EL2 table")?, 1 << 48))
}

/// A split whose table allocation fails (fault injection) returns the error and leaves the
/// live map exactly as it was: the engine allocates everything before it touches a live
/// entry. The page stays a writable part of its 2M block, and the same change succeeds
/// once memory is back.
fn el2_split_without_a_table_leaves_the_map_intact() -> Outcome {
    let mut page = Box::new([0xa5u8; 4096]);
    let va = page.as_ptr() as u64 & !0xfff;
    let before = el2_fingerprint()?;
    let result = {
        let mut guard = EL2_TABLE.lock();
        let table = guard.as_mut().ok_or("no EL2 table")?;
        fail_allocation_after(NonZeroU32::MIN);
        let result = table.change_attrs(va..va + 4096, Attributes::RO);
        disarm_fault_injection();
        result
    };
    match result {
        Err(pgtable::Error::OutOfTables) => {}
        Ok(_) => return Err("the split succeeded without its table"),
        Err(_) => return Err("the split failed with another error than OutOfTables"),
    }
    if el2_fingerprint()? != before {
        return Err("the failed split changed the EL2 map (ptdump fingerprint differs)");
    }
    if at(va, true).is_none() {
        return Err("the page is no longer writable after the failed split");
    }
    page[17] = 0x3c;
    let mut guard = EL2_TABLE.lock();
    let table = guard.as_mut().ok_or("no EL2 table")?;
    table
        .change_attrs(va..va + 4096, Attributes::RO)
        .map_err(|_| "the change failed with memory back")?;
    table
        .change_attrs(va..va + 4096, Attributes::RW)
        .map_err(|_| "the restore failed")?;
    let leaf = table.query(va).ok_or("page lost")?;
    drop(guard);
    if leaf.level != 2 || page[17] != 0x3c || page[18] != 0xa5 {
        return Err("the page did not come back to its 2M block with its contents");
    }
    Ok(())
}

/// Heap growth in a fragmented pool (no 2 MiB chunk: 4K pages) whose level-3 table
/// allocation fails: growth reports the error, and the EL2 map, the window and the free
/// frames are as before; the same growth succeeds, with 4K pages, once memory is back.
fn el2_heap_growth_without_a_table_fails_cleanly() -> Outcome {
    use crate::mm::heap::{grow_with_4k_pages_only, stats, try_grow};
    const STEP: u64 = 2 << 20;
    let (counters_before, window_before) = stats();
    let map_before = el2_fingerprint()?;
    let free_before = crate::mm::FRAMES.lock().free_bytes();
    let pages_only = grow_with_4k_pages_only(true);
    fail_allocation_after(NonZeroU32::MIN);
    let failed = try_grow(STEP).is_err();
    disarm_fault_injection();
    let (counters_failed, window_failed) = stats();
    let map_failed = el2_fingerprint()?;
    let free_failed = crate::mm::FRAMES.lock().free_bytes();
    let retried = try_grow(STEP);
    grow_with_4k_pages_only(pages_only);
    let (counters_after, _) = stats();
    if !failed {
        return Err("the growth succeeded without its table");
    }
    if window_failed != window_before || map_failed != map_before || free_failed != free_before {
        return Err("the failed growth changed the window, the EL2 map or the free frames");
    }
    if counters_failed.pages_4k != counters_before.pages_4k {
        return Err("the failed growth counted pages it did not keep");
    }
    if retried != Ok((window_before.1, window_before.1 + STEP)) {
        return Err("the growth failed again with memory back");
    }
    if counters_after.pages_4k != counters_failed.pages_4k + STEP / 4096 {
        return Err("the retried growth did not map 4K pages");
    }
    Ok(())
}

/// A guest MEM_PROTECT, through the hypercall handler, whose split cannot get its table
/// (fault injection): the answer is NO_MEMORY and the stage 2 is exactly as before. The
/// test guest then runs its whole suite on this stage 2.
fn stage2_protect_without_a_table_fails_cleanly(vm: &Vm) -> Outcome {
    let (ram, limit) = (&vm.ram, vm.ipa_limit);
    const BLOCK: u64 = 2 << 20;
    // A page inside a whole 2M block of guest RAM, so the change must split.
    let ipa = ram
        .iter()
        .find_map(|r| {
            let block = r.base.checked_next_multiple_of(BLOCK)?;
            (block.checked_add(BLOCK)? <= r.end()).then_some(block + 5 * 4096)
        })
        .ok_or("no whole 2M block of guest RAM")?;
    let (before, leaf) = {
        let table = vm.stage2.lock();
        (
            fingerprint(&table, limit),
            table.query(ipa).ok_or("guest page not mapped")?,
        )
    };
    if leaf.level > 2 {
        return Err("the guest page is not in a block");
    }
    let read_only = Permissions {
        read: true,
        write: false,
        execute: false,
    };
    fail_allocation_after(NonZeroU32::MIN);
    let answer = crate::hypercall::handler::handle(
        Hypercall::MemProtect {
            ipa,
            size: 4096,
            permissions: read_only,
        },
        vm,
    );
    disarm_fault_injection();
    if answer[0] as i64 != hypercall::NO_MEMORY {
        return Err("MEM_PROTECT did not answer NO_MEMORY without its table");
    }
    let table = vm.stage2.lock();
    if fingerprint(&table, limit) != before {
        return Err("the failed MEM_PROTECT changed stage 2 (ptdump fingerprint differs)");
    }
    if table.query(ipa) != Some(leaf) {
        return Err("the guest page's translation changed");
    }
    Ok(())
}

/// A TLB conflict abort syndrome (DFSC 0b110000) for exception class `class`.
fn conflict_abort_syndrome(class: u64) -> u64 {
    const IL: u64 = 1 << 25;
    (class << 26) | IL | 0x30
}

/// A TLB conflict abort from the guest goes through the trap handler (`handle_sync`)
/// and comes back retried: the guest's PC and PSTATE unchanged, nothing injected (its
/// ELR_EL1/ESR_EL1 untouched), the conflict counted. No CPU of QEMU's raises one, so the
/// syndrome is made up; everything after the vector's register save is the real path.
fn stage2_tlb_conflict_is_retried_not_injected(vm: &'static Vm) -> Outcome {
    use crate::arch::sysreg::read_sysreg;
    use crate::vm::vcpu;
    let mut frame = crate::arch::trap_frame::TrapFrame {
        regs: [0; 31],
        sp: 0,
        elr: 0x4008_1234,
        spsr: 0x3c5,
    };
    // The boot CPU runs vCPU 0 next: it runs this guest already.
    let cpu = crate::cpu::this_cpu().ok_or("the boot CPU has no index")?;
    vcpu::make_current(cpu, vm);
    let before = vm.stats.tlb_conflicts.load(Ordering::Relaxed);
    let elr_el1 = read_sysreg!("elr_el1");
    let esr_el1 = read_sysreg!("esr_el1");
    // EC 0x24: data abort from a lower EL; FAR is a guest VA, HPFAR_EL2 is not valid.
    vcpu::handle_sync(
        &mut frame,
        Esr(conflict_abort_syndrome(0x24)),
        0xffff_8000_0012_3000,
    );
    if vm.stats.tlb_conflicts.load(Ordering::Relaxed) != before + 1 {
        return Err("the conflict abort was not counted as one");
    }
    if frame.elr != 0x4008_1234 || frame.spsr != 0x3c5 {
        return Err("the guest does not resume at the faulting instruction");
    }
    if read_sysreg!("elr_el1") != elr_el1 || read_sysreg!("esr_el1") != esr_el1 {
        return Err("an exception was injected into the guest");
    }
    Ok(())
}

/// A TLB conflict abort at EL2 goes through the EL2 trap handler and is retried (local
/// invalidation, the same ELR), counted, and does not stop the hypervisor. The syndrome
/// is written to ESR_EL2/FAR_EL2 by hand (QEMU raises no conflict aborts) and the handler
/// entered as the vector enters it.
fn el2_tlb_conflict_is_retried() -> Outcome {
    use crate::arch::sysreg::{esr_el2, far_el2, write_sysreg};
    use crate::arch::trap;
    const CURRENT_EL_SPX_SYNC: u64 = 4;
    let saved = (esr_el2(), far_el2());
    let mut frame = crate::arch::trap_frame::TrapFrame {
        regs: [0; 31],
        sp: 0,
        elr: el2_tlb_conflict_is_retried as *const () as u64,
        spsr: 0x3c9,
    };
    let before = crate::arch::aarch64::conflict::el2_tlb_conflicts();
    write_sysreg!("esr_el2", conflict_abort_syndrome(0x25));
    write_sysreg!("far_el2", 0xff00_0000_1000);
    crate::arch::barrier_isb();
    trap::el2_trap(&mut frame, CURRENT_EL_SPX_SYNC);
    write_sysreg!("esr_el2", saved.0);
    write_sysreg!("far_el2", saved.1);
    if crate::arch::aarch64::conflict::el2_tlb_conflicts() != before + 1 {
        return Err("the conflict abort was not counted as one");
    }
    if frame.elr != el2_tlb_conflict_is_retried as *const () as u64 {
        return Err("the handler does not retry the faulting instruction");
    }
    Ok(())
}

/// The stage-2 selftests, once the guest is prepared and before it starts.
pub fn run_stage2(vm: &'static Vm) -> (u32, u32) {
    let results = [
        report(
            "el2_stage2_protect_without_a_table_fails_cleanly",
            stage2_protect_without_a_table_fails_cleanly(vm),
        ),
        report(
            "el2_stage2_tlb_conflict_is_retried_not_injected",
            stage2_tlb_conflict_is_retried_not_injected(vm),
        ),
    ];
    let passed = results.iter().filter(|&&ok| ok).count() as u32;
    (passed, results.len() as u32 - passed)
}

/// Runs the EL2 selftests; returns (passed, failed).
pub fn run(info: &PlatformInfo<'_>, layout: &Layout) -> (u32, u32) {
    let (pool, crash) = (layout.pool, layout.crash);
    let image = crate::mm::image::image_range();
    let results = [
        report("el2_at_translations", el2_at_translations(pool)),
        report(
            "el2_every_cpu_runs_the_mmu",
            el2_every_cpu_runs_the_mmu(info, pool, crash),
        ),
        report("el2_rodata_write_faults", el2_rodata_write_faults()),
        report("el2_data_fetch_faults", el2_data_fetch_faults()),
        report(
            "el2_crash_region_unmapped",
            el2_crash_region_unmapped(crash),
        ),
        report(
            "el2_crash_map_is_separate_and_small",
            el2_crash_map_is_separate_and_small(),
        ),
        report(
            "el2_heap_grows_with_2m_blocks",
            el2_heap_grows_with_2m_blocks(),
        ),
        report("el2_no_4k_ram", el2_no_4k_ram(info, image, crash)),
        report("el2_split_and_collapse", el2_split_and_collapse()),
        report(
            "el2_split_without_a_table_leaves_the_map_intact",
            el2_split_without_a_table_leaves_the_map_intact(),
        ),
        report(
            "el2_heap_growth_without_a_table_fails_cleanly",
            el2_heap_growth_without_a_table_fails_cleanly(),
        ),
        report("el2_tlb_conflict_is_retried", el2_tlb_conflict_is_retried()),
        report_unless_skipped(
            "el2_8g_range_invalidation_covers_it_all",
            el2_8g_range_invalidation_covers_it_all(layout, info),
        ),
    ];
    let passed = results.iter().filter(|&&ok| ok).count() as u32;
    (passed, results.len() as u32 - passed)
}
