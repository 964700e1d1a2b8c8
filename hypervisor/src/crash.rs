//! Writing the crash record (format in `hypervisor::crash_record`) when the hypervisor
//! panics or takes an unexpected exception. The crash region is invalid in the EL2 map
//! except while this writes to it: the pages needed are mapped at 4K, written, cleaned to
//! the Point of Coherency for an outside reader, and unmapped again.

use hypervisor::crash_record::{self, CrashRegisters};
use pgtable::{Attributes, MapFlags, PhysAddr};
use platform::info::PhysRange;
use spin::Once;

use crate::console;
use crate::mm::el2_map::EL2_TABLE;

static REGION: Once<PhysRange> = Once::new();

/// Bytes of the region a record may use: header, message and the whole log ring.
const RECORD_BYTES: u64 =
    (crash_record::HEADER_SIZE + crash_record::MAX_MESSAGE + console::LOG_RING_BYTES) as u64;

pub fn set_region(region: PhysRange) {
    REGION.call_once(|| region);
}

/// Writes the record; logs where it went or why it could not be written.
pub fn write(message: &str, registers: &CrashRegisters) {
    let Some(region) = REGION.get() else { return };
    let len = RECORD_BYTES.min(region.size).next_multiple_of(4096);
    let range = region.base..region.base + len;
    if EL2_TABLE.is_locked() {
        // SAFETY: the panic path; this CPU never returns to the interrupted table update,
        // and the record's pages are outside anything that update could touch.
        unsafe { EL2_TABLE.force_unlock() };
    }
    let mut table = EL2_TABLE.lock();
    // With the MMU still off there is no table, and the region is reachable as is.
    if let Some(table) = table.as_mut()
        && let Err(error) = table.map(
            range.clone(),
            PhysAddr(range.start),
            Attributes::RW,
            MapFlags::NO_BLOCK_MAPPINGS | MapFlags::NO_CONT_MAPPINGS,
        )
    {
        log::error!("crash record: cannot map the crash region: {error}");
        return;
    }
    let micros = console::micros_since_boot();
    let written = {
        // SAFETY: the range is RAM reserved for the crash region (nobody else's) and is
        // mapped read-write for the duration of this block.
        let buffer =
            unsafe { core::slice::from_raw_parts_mut(range.start as *mut u8, len as usize) };
        if console::LOG_RING.is_locked() {
            // SAFETY: as for the table above.
            unsafe { console::LOG_RING.force_unlock() };
        }
        let ring = console::LOG_RING.lock();
        crash_record::write_record(buffer, micros, registers, message, ring.whole_lines())
    };
    if let Ok(bytes) = written {
        crate::arch::cache::clean_to_poc(range.start..range.start + bytes as u64);
    }
    if let Some(table) = table.as_mut() {
        let _ = table.unmap(range.clone());
    }
    drop(table);
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
