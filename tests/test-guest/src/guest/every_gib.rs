//! Permission changes across the whole guest, checked page by page, on a large machine:
//! splits far from RAM's start, collapses of many GiBs in one call, and windows of
//! exactly 8 GiB (2^21 pages: one TLBI range operation with SCALE 3 and NUM 31, the size
//! that was once encoded as 2 pages) made read-only and restored in one call each.
//!
//! 1. A page in every free GiB of the largest RAM range is made read-only (each split
//!    goes 1G -> 2M table -> 4K table); each must fault on a write while a page next to
//!    it does not. Then ONE MEM_PROTECT gives the whole span back rwx: every page is
//!    writable and every GiB is a 1G block again.
//! 2. For every 8 GiB-aligned window of eight free GiBs: a page per GiB is protected (so
//!    the window holds thousands of leaves, more than the hypervisor invalidates one by
//!    one), a sample page per GiB is written (its writable translation is now in this
//!    vCPU's TLB), then ONE MEM_PROTECT makes the whole window read-only: every sample
//!    write must fault. Then ONE MEM_PROTECT restores the window.
//!
//! What this cannot show under QEMU's TCG: a stage-2 range invalidation that covers too
//! little. The hypervisor follows every invalidation by IPA with one of the VMID's whole
//! stage 1 (TLBI VMALLE1IS: combined stage 1+2 entries are not tagged by IPA), and TCG
//! keeps only combined entries, so that second invalidation removes what a short range
//! left. The encoding itself is checked exhaustively on the host
//! (`hypervisor::mm::tlbi_range`), and at EL2, where no such second invalidation
//! follows, by the selftest `el2_8g_range_invalidation_covers_it_all`.

use super::Env;
use super::exceptions::{Recovery, expect_fault};
use super::tests::{mem_protect, protect, query, read, write};
use crate::abi::*;
use crate::fixed::List;
use crate::layout::Range;
use crate::report::{Failure, TestResult};
use crate::{ensure, failed, text};

/// The most GiBs the test looks at (a 1 TiB guest has fewer free ones than this).
const MAX_GIBS: usize = 1024;
const WINDOW_GIBS: u64 = 8;

/// The largest RAM range and the free, whole GiBs inside it (not a byte of them busy).
fn free_gibs(env: &Env) -> (Range, List<u64, MAX_GIBS>) {
    let largest = env
        .info
        .ram
        .iter()
        .max_by_key(|r| r.size)
        .unwrap_or_default();
    let mut gibs = List::new();
    let mut gib = largest.base.next_multiple_of(BLOCK_1G);
    while gib + BLOCK_1G <= largest.end_saturating() {
        let block = Range::new(gib, BLOCK_1G);
        if !env.busy.iter().any(|b| b.overlaps(&block)) && !gibs.push(gib) {
            break;
        }
        gib += BLOCK_1G;
    }
    (largest, gibs)
}

/// The page protected in GiB number `i`: a different 2 MiB block and page each time.
fn protected_page(gib: u64, i: usize) -> u64 {
    let i = i as u64;
    gib + (i * 7 % 512) * BLOCK_2M + (i * 13 % 512) * PAGE_SIZE
}

/// A page of the same GiB in another 2 MiB block, never the protected one.
fn sample_page(gib: u64, i: usize) -> u64 {
    let i = i as u64;
    gib + ((i * 7 + 255) % 512) * BLOCK_2M + (i * 11 % 512) * PAGE_SIZE
}

/// Whether a store to `addr` faults (and then the store did nothing).
fn write_faults(addr: u64, value: u64) -> bool {
    expect_fault(Recovery::SkipInstruction, || write(addr, value))
        .1
        .is_some()
}

fn protected_pages_fault_and_neighbours_do_not(gibs: &[u64]) -> Result<(), Failure> {
    for (i, &gib) in gibs.iter().enumerate() {
        let page = protected_page(gib, i);
        let before = read(page);
        ensure!(
            write_faults(page, !before),
            "a write to the read-only page {page:#x} did not fault"
        );
        ensure!(read(page) == before, "the read-only page {page:#x} changed");
        let neighbour = page ^ PAGE_SIZE;
        ensure!(
            !write_faults(neighbour, neighbour),
            "a write to {neighbour:#x}, next to the read-only page, faulted"
        );
        ensure!(
            read(neighbour) == neighbour,
            "{neighbour:#x} lost its write"
        );
    }
    Ok(())
}

/// Phase 1: a page in every free GiB, then one restore over the whole span.
fn every_gib_then_one_restore(gibs: &[u64]) -> Result<u64, Failure> {
    for (i, &gib) in gibs.iter().enumerate() {
        protect(protected_page(gib, i), PAGE_SIZE, PERM_READ)?;
    }
    protected_pages_fault_and_neighbours_do_not(gibs)?;
    let (first, last) = (gibs[0], gibs[gibs.len() - 1]);
    let span = last + BLOCK_1G - first;
    protect(first, span, PERM_ALL)?;
    for (i, &gib) in gibs.iter().enumerate() {
        let page = protected_page(gib, i);
        ensure!(
            !write_faults(page, page),
            "{page:#x} still faults after MEM_PROTECT({first:#x}, {span:#x}, rwx)"
        );
        let q = query(gib);
        ensure!(
            q.status == SUCCESS && q.level == 1 && q.perms == PERM_ALL,
            "GiB {gib:#x} after the restore: {q}; want rwx at level 1"
        );
    }
    Ok(span)
}

/// Phase 2 for one window of eight free GiBs starting at `base`.
fn window_goes_read_only_at_once(base: u64) -> Result<(), Failure> {
    let gibs: [u64; WINDOW_GIBS as usize] = core::array::from_fn(|i| base + i as u64 * BLOCK_1G);
    for (i, &gib) in gibs.iter().enumerate() {
        protect(protected_page(gib, i), PAGE_SIZE, PERM_READ)?;
    }
    // Writable translations of the samples into this vCPU's TLB.
    for (i, &gib) in gibs.iter().enumerate() {
        let sample = sample_page(gib, i);
        ensure!(
            !write_faults(sample, sample),
            "a write to {sample:#x} faulted before the window went read-only"
        );
    }
    let size = WINDOW_GIBS * BLOCK_1G;
    let status = mem_protect(base, size, PERM_READ);
    let mut stale = None;
    for (i, &gib) in gibs.iter().enumerate() {
        let sample = sample_page(gib, i);
        if !write_faults(sample, !sample) {
            stale = Some(sample);
        }
    }
    let restored = mem_protect(base, size, PERM_ALL);
    ensure!(
        status == SUCCESS,
        "MEM_PROTECT({base:#x}, {size:#x}, r--) returned {}",
        Status(status)
    );
    if let Some(sample) = stale {
        return Err(failed!(
            "a write to {sample:#x} went through after MEM_PROTECT({base:#x}, 8 GiB, r--): \
             the invalidation missed its translation"
        ));
    }
    ensure!(
        restored == SUCCESS,
        "MEM_PROTECT({base:#x}, {size:#x}, rwx) returned {}",
        Status(restored)
    );
    for (i, &gib) in gibs.iter().enumerate() {
        let sample = sample_page(gib, i);
        ensure!(
            read(sample) == sample,
            "{sample:#x} changed while read-only"
        );
        ensure!(
            !write_faults(sample, sample),
            "{sample:#x} still faults after the window's restore"
        );
    }
    Ok(())
}

pub fn protect_every_gib_then_restore_at_once(env: &Env) -> TestResult {
    let (largest, gibs) = free_gibs(env);
    if gibs.len() < 2 {
        return Err(Failure::Skipped(text!(
            "the largest RAM range {largest} holds {} free GiB(s); the test needs 2",
            gibs.len()
        )));
    }
    let gibs = gibs.as_slice();
    let span = every_gib_then_one_restore(gibs)?;
    let mut windows = 0;
    let mut i = 0;
    while i + WINDOW_GIBS as usize <= gibs.len() {
        let base = gibs[i];
        let consecutive = gibs[i + WINDOW_GIBS as usize - 1] == base + (WINDOW_GIBS - 1) * BLOCK_1G;
        if base % (WINDOW_GIBS * BLOCK_1G) == 0 && consecutive {
            window_goes_read_only_at_once(base)?;
            windows += 1;
            i += WINDOW_GIBS as usize;
        } else {
            i += 1;
        }
    }
    Ok(text!(
        "{} GiBs each split and checked, restored by one MEM_PROTECT of {} GiB; {windows} \
         aligned 8 GiB window(s) made read-only and restored at once, every sample write \
         faulting",
        gibs.len(),
        span >> 30
    ))
}
