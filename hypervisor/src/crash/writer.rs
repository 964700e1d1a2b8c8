//! The crash path: the first CPU to panic or take an unexpected exception claims the
//! crash, the others stop at their next entry to EL2, and the claimant writes the crash
//! record (format in `crate::crash::record`) through its own map.
//!
//! The crash region is invalid in the EL2 map, always. At boot a separate, tiny map is
//! built for the crash writer (`mm::el2_map::build_crash_map`: the image, the console and
//! the record's pages at 4K) and never changed afterwards. The crashing CPU switches
//! TTBR0_EL2 to it, so writing the record takes no lock on the EL2 map and edits no
//! table: whatever another CPU was doing to the EL2 map (or this one, interrupted by the
//! panic), there is never a second writer on any table. The record is cleaned to the
//! Point of Coherency for an outside reader.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::crash::record::{self, CrashRegisters};
use platform::info::{PhysRange, PlatformInfo};
use spin::{Mutex, Once};

use crate::mm::el2_map::Table;

use crate::arch::sysreg::{read_sysreg, write_sysreg};
use crate::console;

static REGION: Once<PhysRange> = Once::new();
/// The crash writer's map root (TTBR0_EL2 value); 0 until built. The crash path reads
/// only this, never the lock below.
static CRASH_MAP_ROOT: AtomicU64 = AtomicU64::new(0);
/// The crash map itself, kept for the selftests to read (never changed after boot).
static CRASH_MAP: Mutex<Option<Table>> = Mutex::new(None);
/// 1 + the index of the CPU that claimed the crash; 0 while nothing crashed.
static CLAIMED_BY: AtomicUsize = AtomicUsize::new(0);

/// Bytes of the region a record may use: header, message and the whole log ring.
const RECORD_BYTES: u64 =
    (record::HEADER_SIZE + record::MAX_MESSAGE + console::LOG_RING_BYTES) as u64;

fn record_range(region: &PhysRange) -> core::ops::Range<u64> {
    let len = RECORD_BYTES.min(region.size).next_multiple_of(4096);
    region.base..region.base + len
}

pub fn set_region(region: PhysRange) {
    REGION.call_once(|| region);
}

/// Builds the crash writer's map once the EL2 map is live (its tables come from the
/// pool like every other). Without a crash region there is nothing to build.
pub fn prepare_map(info: &PlatformInfo<'_>) {
    let Some(region) = REGION.get() else { return };
    match crate::mm::el2_map::build_crash_map(info, record_range(region)) {
        Ok(mut table) => {
            // Its stores visible to a walker before a crashing CPU may point at it.
            table.mark_live();
            CRASH_MAP_ROOT.store(table.root().0, Ordering::Release);
            *CRASH_MAP.lock() = Some(table);
        }
        Err(error) => log::error!("crash record: cannot build the crash map: {error}"),
    }
}

/// Reads the crash map (selftests): `None` before it is built.
pub fn with_crash_map<R>(read: impl FnOnce(&Table) -> R) -> Option<R> {
    CRASH_MAP.lock().as_ref().map(read)
}

/// The range the record uses, if there is a crash region.
pub fn record() -> Option<core::ops::Range<u64>> {
    REGION.get().map(record_range)
}

/// Claims the crash for this CPU. `false` if another CPU claimed it first: this one must
/// stop without touching anything shared (the claimant reports and powers off).
pub fn claim() -> bool {
    let me = crate::cpu::this_cpu().map_or(usize::MAX, |i| i + 1);
    match CLAIMED_BY.compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => true,
        Err(owner) => owner == me,
    }
}

/// Whether another CPU is crashing: a CPU entering EL2 then stops there.
pub fn another_cpu_crashed() -> bool {
    let owner = CLAIMED_BY.load(Ordering::Acquire);
    owner != 0 && crate::cpu::this_cpu().map_or(usize::MAX, |i| i + 1) != owner
}

/// Switches this CPU to the crash map. Both maps translate the image identically, so
/// entries of the old map still in this CPU's TLB cannot conflict with the new walk's;
/// they are dropped anyway (EL2 has no ASID: TLBI ALLE2 after the TTBR0_EL2 write and
/// its ISB, then DSB NSH, ISB; Arm ARM D8.16 on changing translation table base).
fn switch_to_crash_map(root: u64) {
    write_sysreg!("ttbr0_el2", root);
    // The new map covers all code and data the crash path uses (image, stack, console).
    crate::arch::aarch64::tlb::invalidate_el2_locally();
}

/// Writes the record (the caller claimed the crash); logs where it went or why not.
pub fn write(message: &str, registers: &CrashRegisters) {
    let Some(region) = REGION.get() else { return };
    let range = record_range(region);
    let mmu_on = read_sysreg!("sctlr_el2") & 1 != 0;
    if mmu_on {
        let root = CRASH_MAP_ROOT.load(Ordering::Acquire);
        if root == 0 {
            log::error!("crash record: no crash map; not written");
            return;
        }
        switch_to_crash_map(root);
    }
    // With the MMU still off the region is reachable as is.
    let micros = console::micros_since_boot();
    let written = {
        // SAFETY: the range is RAM reserved for the crash region (nobody else's), mapped
        // read-write in the crash map this CPU now uses (or reached with the MMU off).
        let buffer = unsafe {
            core::slice::from_raw_parts_mut(
                range.start as *mut u8,
                (range.end - range.start) as usize,
            )
        };
        let ring = console::lock_ring_for_crash();
        record::write_record(buffer, micros, registers, message, ring.whole_lines())
    };
    if let Ok(bytes) = written {
        crate::arch::cache::clean_to_poc(range.start..range.start + bytes as u64);
    }
    match written {
        Ok(bytes) => log::error!(
            "crash record: {bytes} bytes at {:#x} (read back with pmemsave {:#x} {bytes} FILE, then scripts/crash-decode.py FILE)",
            region.base,
            region.base
        ),
        Err(error) => log::error!(
            "crash record: region too small ({} < {})",
            error.available,
            error.needed
        ),
    }
}
