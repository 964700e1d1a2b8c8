//! Data-cache maintenance by address to the Point of Coherency (Arm ARM D7.5.9), for
//! memory shared with an observer that does not look through the caches: the guest while
//! its MMU is off, a reader of the crash record, or EL2 itself before its MMU is on.

use core::arch::asm;
use core::ops::Range;

use super::sysreg::read_sysreg;

/// The smallest data-cache line, from CTR_EL0.DminLine (log2 of words).
fn line_size() -> u64 {
    4 << ((read_sysreg!("ctr_el0") >> 16) & 0xf)
}

fn for_each_line_nosync(range: Range<u64>, mut op: impl FnMut(u64)) {
    let line = line_size();
    let mut addr = range.start & !(line - 1);
    while addr < range.end {
        op(addr);
        addr += line;
    }
}

fn for_each_line(range: Range<u64>, op: impl FnMut(u64)) {
    for_each_line_nosync(range, op);
    // SAFETY: a barrier; the maintenance completes before anything after it (D7.5.10).
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// DC CVAC: writes dirty lines of `range` back to the PoC.
pub fn clean_to_poc(range: Range<u64>) {
    // SAFETY: cleaning a mapped line only writes its data back to memory.
    for_each_line(range, |addr| unsafe {
        asm!("dc cvac, {}", in(reg) addr, options(nostack, preserves_flags))
    });
}

/// DC IVAC: drops the lines of `range` from the caches. Only for memory written with the
/// MMU off (it went straight to memory, so no line of it can be dirty): a stale clean
/// line from before would otherwise shadow it once accesses are cacheable.
pub fn invalidate_to_poc(range: Range<u64>) {
    // SAFETY: per the contract above, no dirty data is lost.
    for_each_line(range, |addr| unsafe {
        asm!("dc ivac, {}", in(reg) addr, options(nostack, preserves_flags))
    });
}

/// DC IVAC of the line holding the first `head` bytes of every 4 KiB page of `range`, under
/// the same contract as [`invalidate_to_poc`] (for the frame allocator's free-list links,
/// which live there).
pub fn invalidate_page_heads(range: Range<u64>, head: u64) {
    let mut page = range.start & !0xfff;
    while page < range.end {
        // SAFETY: as for invalidate_to_poc.
        for_each_line_nosync(page..page + head.max(1), |addr| unsafe {
            asm!("dc ivac, {}", in(reg) addr, options(nostack, preserves_flags))
        });
        page += 0x1000;
    }
    // SAFETY: a barrier; the maintenance completes before anything after it (D7.5.10).
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// Makes new instructions visible to instruction fetch on every CPU (IC IALLUIS).
pub fn sync_instruction_cache() {
    // SAFETY: invalidating the instruction caches and synchronising only discards cached
    // instructions.
    unsafe {
        asm!(
            "ic ialluis",
            "dsb sy",
            "isb",
            options(nostack, preserves_flags)
        )
    };
}
