//! `concurrent_split_restore`: a second vCPU reads and rewrites the test region in
//! short passes (sweep.rs: the changed 2 MiB, the pages next to the protected one, the
//! rest of the GiB) while the boot vCPU makes one page of it read-only and back, so the
//! hypervisor splits and collapses the block under live accesses. The secondary must
//! take no fault (with FEAT_BBM level 2 the split never breaks the mapping; with
//! break-before-make the hypervisor must hide the window) and lose no data.
//!
//! The overlap is measured, not assumed. The boot vCPU starts once the secondary has
//! finished a pass. Before each MEM_PROTECT it waits (up to [`GATE_LIMIT_US`]) until it
//! sees the secondary running right now: under TCG the vCPUs are host threads, and on
//! a busy host they often run in turns rather than together. It counts a call as
//! overlapped when the secondary's access counter moved while the call ran. It does at
//! least [`MIN_PAIRS`] protect/restore pairs and goes on until the secondary has done
//! at least [`MIN_PASSES`] passes wholly inside the loop and [`MIN_ACCESSES`] accesses
//! during the calls, and [`MIN_OVERLAPPED_PAIRS`] pairs had both calls overlapped.
//! Short of that within [`LOOP_LIMIT_MS`], the test fails.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::console::say;
use super::cpu::{self, Deadline};
use super::secondary::{self, Job};
use super::tests::{mem_protect, read, stats, write};
use super::{Env, exceptions};
use crate::abi::*;
use crate::esr::Fault;
use crate::fixed::Text;
use crate::report::{Failure, PREFIX, TestResult};
use crate::sweep::{ROUNDS_PER_PASS, Sweep, word};
use crate::{failed, text};

/// Protect/restore pairs the boot CPU does at least.
pub const MIN_PAIRS: u64 = 1000;
/// Secondary passes that must begin and end inside the boot CPU's loop.
pub const MIN_PASSES: u64 = 100;
/// Secondary word accesses (read, check, rewrite) that must happen during the boot
/// CPU's MEM_PROTECT calls (so inside the loop too).
pub const MIN_ACCESSES: u64 = 100_000;
/// Pairs whose split and restore both ran while the secondary was accessing memory. On
/// an idle host most pairs overlap (5122 of 5131 measured); on a loaded 2-core host the
/// two vCPU threads often run in turns (291 in 30 s seen), so the floor only proves
/// that real overlap happened; the count is reported.
pub const MIN_OVERLAPPED_PAIRS: u64 = 200;
/// The boot CPU's loop stops here even short of the minimums (and the test fails).
pub const LOOP_LIMIT_MS: u64 = 45_000;
/// Until the secondary has finished its first pass.
const START_TIMEOUT_MS: u64 = 5_000;
const STOP_TIMEOUT_MS: u64 = 60_000;
const OFF_TIMEOUT_MS: u64 = 2_000;
/// Between the two CPUs (both with the MMU on: Normal, coherent memory).
struct Shared {
    region_base: AtomicU64,
    region_size: AtomicU64,
    chunk: AtomicU64,
    page: AtomicU64,
    started: AtomicBool,
    stop: AtomicBool,
    done: AtomicBool,
    /// Whole passes done.
    passes: AtomicU64,
    /// Words visited, updated after every word (so the boot CPU can tell whether the
    /// secondary ran during each of its calls).
    progress: AtomicU64,
    mismatches: AtomicU64,
    mismatch_addr: AtomicU64,
    mismatch_got: AtomicU64,
    mismatch_want: AtomicU64,
    faults: AtomicU64,
    fault_esr: AtomicU64,
    fault_far: AtomicU64,
    fault_elr: AtomicU64,
}

static SHARED: Shared = Shared {
    region_base: AtomicU64::new(0),
    region_size: AtomicU64::new(0),
    chunk: AtomicU64::new(0),
    page: AtomicU64::new(0),
    started: AtomicBool::new(false),
    stop: AtomicBool::new(false),
    done: AtomicBool::new(false),
    passes: AtomicU64::new(0),
    progress: AtomicU64::new(0),
    mismatches: AtomicU64::new(0),
    mismatch_addr: AtomicU64::new(0),
    mismatch_got: AtomicU64::new(0),
    mismatch_want: AtomicU64::new(0),
    faults: AtomicU64::new(0),
    fault_esr: AtomicU64::new(0),
    fault_far: AtomicU64::new(0),
    fault_elr: AtomicU64::new(0),
};

/// The secondary's part (secondary.rs starts it and powers it off afterwards): passes
/// until the boot CPU says stop.
pub fn secondary_sweep() {
    let s = &SHARED;
    let sweep = Sweep {
        region_base: s.region_base.load(Ordering::Acquire),
        region_size: s.region_size.load(Ordering::Acquire),
        chunk: s.chunk.load(Ordering::Acquire),
        page: s.page.load(Ordering::Acquire),
    };
    exceptions::count_data_aborts();
    s.started.store(true, Ordering::Release);
    let mut cursor = [0u64; 4];
    let mut visited = 0u64;
    let mut passes = 0u64;
    while !s.stop.load(Ordering::Acquire) {
        let mut bad = 0u64;
        let mut first = None;
        for _ in 0..ROUNDS_PER_PASS {
            sweep.round(&mut cursor, |v| {
                let got = read(v.address);
                if got != v.want {
                    bad += 1;
                    first.get_or_insert((v.address, got, v.want));
                }
                if let Some(next) = v.next {
                    write(v.address, next);
                }
                visited += 1;
                s.progress.store(visited, Ordering::Relaxed);
            });
        }
        passes += 1;
        if let Some((a, got, want)) = first
            && s.mismatches.load(Ordering::Relaxed) == 0
        {
            s.mismatch_addr.store(a, Ordering::Relaxed);
            s.mismatch_got.store(got, Ordering::Relaxed);
            s.mismatch_want.store(want, Ordering::Relaxed);
        }
        s.mismatches.fetch_add(bad, Ordering::Relaxed);
        s.passes.store(passes, Ordering::Release);
    }
    let (faults, first) = exceptions::stop_counting();
    if let Some(f) = first {
        s.fault_esr.store(f.esr, Ordering::Relaxed);
        s.fault_far.store(f.far, Ordering::Relaxed);
        s.fault_elr.store(f.elr, Ordering::Relaxed);
    }
    s.faults.store(faults, Ordering::Relaxed);
    s.done.store(true, Ordering::Release);
}

/// What the secondary did during the boot CPU's MEM_PROTECT calls.
#[derive(Default)]
struct Overlap {
    /// Splits (r--) and restores (rwx) during which the secondary accessed memory.
    splits: u64,
    restores: u64,
    /// Pairs with both.
    pairs: u64,
    /// The secondary's accesses during the calls.
    accesses: u64,
    /// Calls made without having seen the secondary running (the wait timed out).
    unseen: u64,
}

impl Overlap {
    fn add(&mut self, split_accesses: u64, restore_accesses: u64) {
        self.splits += u64::from(split_accesses > 0);
        self.restores += u64::from(restore_accesses > 0);
        self.pairs += u64::from(split_accesses > 0 && restore_accesses > 0);
        self.accesses += split_accesses + restore_accesses;
    }
}

/// Two steps of the secondary this close together show it running right now.
const RUNNING_WINDOW_US: u64 = 50;
/// How long the boot CPU waits for that before a call (then it calls anyway).
const GATE_LIMIT_US: u64 = 1_000;

/// Whether the loop has done its share: `passes` are the secondary's passes wholly
/// inside it.
fn enough(pairs: u64, passes: u64, overlap: &Overlap) -> bool {
    pairs >= MIN_PAIRS
        && passes >= MIN_PASSES
        && overlap.accesses >= MIN_ACCESSES
        && overlap.pairs >= MIN_OVERLAPPED_PAIRS
}

fn wait_for(flag: &AtomicBool, ms: u64) -> bool {
    wait_until(|| flag.load(Ordering::Acquire), ms)
}

fn wait_until(done: impl Fn() -> bool, ms: u64) -> bool {
    let deadline = Deadline::after_ms(ms);
    while !done() {
        if deadline.passed() {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

pub fn concurrent_split_restore(env: &Env) -> TestResult {
    let l = env
        .layout
        .map_err(|error| failed!("no test region: {error}"))?;
    let target = secondary::other_cpu(env)?;
    let mmu = secondary::mmu(env)?;
    let sweep = Sweep::new(&l);
    let s = &SHARED;

    let fill_start = cpu::ticks();
    let words = sweep.for_each(|a, kind| write(a, Sweep::expected(a, kind, 0)));
    let fill_ms = cpu::ms_since(fill_start);
    s.region_base.store(sweep.region_base, Ordering::Relaxed);
    s.region_size.store(sweep.region_size, Ordering::Relaxed);
    s.chunk.store(sweep.chunk, Ordering::Relaxed);
    s.page.store(sweep.page, Ordering::Relaxed);
    s.started.store(false, Ordering::Relaxed);
    s.stop.store(false, Ordering::Relaxed);
    s.done.store(false, Ordering::Relaxed);
    s.passes.store(0, Ordering::Relaxed);
    s.progress.store(0, Ordering::Relaxed);
    s.mismatches.store(0, Ordering::Relaxed);
    s.faults.store(0, Ordering::Relaxed);

    let stats_before = stats(STATS_SPLITS).ok();

    secondary::start(&mmu, target, Job::Sweep)?;
    // The secondary is in its loop once it has finished a pass.
    if !wait_until(|| s.passes.load(Ordering::Acquire) > 0, START_TIMEOUT_MS) {
        // It may still come up later and run: stopping it is all we can do.
        s.stop.store(true, Ordering::Release);
        return Err(failed!(
            "CPU_ON succeeded but the secondary did not {} within {START_TIMEOUT_MS} ms",
            if s.started.load(Ordering::Acquire) {
                "finish a pass"
            } else {
                "start"
            }
        ));
    }

    // The boot CPU's part: read-only and back, checking the page each time, until both
    // it and the secondary have done their share inside the loop. A secondary pass
    // counts as inside when it began after the loop began (the one in flight at the
    // start is left out); an access, when the boot CPU saw it happen after the start.
    // A call "overlaps" the secondary when the secondary's progress moved between the
    // boot CPU's last look before the HVC and its first look after it.
    let p = l.page;
    let words_per_pass = sweep.words_per_pass();
    let running_ticks = cpu::tick_rate() * RUNNING_WINDOW_US / 1_000_000;
    let gate_ticks = cpu::tick_rate() * GATE_LIMIT_US / 1_000_000;
    let call = |perms, overlap: &mut Overlap| {
        if !secondary::running(&SHARED.progress, running_ticks, gate_ticks) {
            overlap.unseen += 1;
        }
        let before = s.progress.load(Ordering::Relaxed);
        let status = mem_protect(p, PAGE_SIZE, perms);
        (status, s.progress.load(Ordering::Relaxed) - before)
    };
    let loop_start = cpu::ticks();
    let deadline = Deadline::after_ms(LOOP_LIMIT_MS);
    let passes_at_start = s.passes.load(Ordering::Acquire);
    let progress_at_start = s.progress.load(Ordering::Relaxed);
    let mut pairs = 0u64;
    let mut overlap = Overlap::default();
    let mut passes_during;
    let mut accesses_during;
    let mut loop_error: Option<Text> = None;
    let mut page_mismatches = 0u64;
    let mut timed_out = false;
    loop {
        passes_during = s
            .passes
            .load(Ordering::Acquire)
            .saturating_sub(passes_at_start + 1);
        accesses_during = s.progress.load(Ordering::Relaxed) - progress_at_start;
        if enough(pairs, passes_during, &overlap) {
            break;
        }
        if deadline.passed() {
            timed_out = true;
            break;
        }
        let (status, split_accesses) = call(PERM_READ, &mut overlap);
        if status != SUCCESS {
            loop_error = Some(text!(
                "pair {pairs}: MEM_PROTECT({p:#x}, {PAGE_SIZE:#x}, r--) returned {}",
                Status(status)
            ));
            break;
        }
        page_mismatches += (p..p + PAGE_SIZE)
            .step_by(8)
            .filter(|&a| read(a) != word(a, 0))
            .count() as u64;
        let (status, restore_accesses) = call(PERM_ALL, &mut overlap);
        if status != SUCCESS {
            loop_error = Some(text!(
                "pair {pairs}: MEM_PROTECT({p:#x}, {PAGE_SIZE:#x}, rwx) returned {}",
                Status(status)
            ));
            break;
        }
        overlap.add(split_accesses, restore_accesses);
        pairs += 1;
    }
    let loop_ms = cpu::ms_since(loop_start);

    s.stop.store(true, Ordering::Release);
    if !wait_for(&s.done, STOP_TIMEOUT_MS) {
        return Err(failed!(
            "the secondary did not stop within {STOP_TIMEOUT_MS} ms ({} passes so far)",
            s.passes.load(Ordering::Acquire)
        ));
    }
    let affinity = secondary::wait_off(target, OFF_TIMEOUT_MS);

    let passes = s.passes.load(Ordering::Acquire);
    let faults = s.faults.load(Ordering::Relaxed);
    let mismatches = s.mismatches.load(Ordering::Relaxed);
    // The whole region, against where the secondary's passes left every word.
    let mut lost = 0u64;
    let mut first_lost = None;
    let checked = sweep.check_after(passes, |a, want| {
        let got = read(a);
        if got != want {
            lost += 1;
            first_lost.get_or_insert((a, got, want));
        }
    });
    let stats_note = match (stats_before, stats(STATS_SPLITS).ok()) {
        (Some(b), Some(a)) => text!(
            "; STATS splits 1G +{}, 2M +{}, collapses +{}",
            a[0].wrapping_sub(b[0]),
            a[1].wrapping_sub(b[1]),
            a[2].wrapping_sub(b[2])
        ),
        _ => Text::new(),
    };
    let per_call = overlap.accesses / (overlap.splits + overlap.restores).max(1);
    say!(
        "{PREFIX}concurrent_split_restore: boot CPU: {pairs} protect+restore pairs in {loop_ms} ms \
         (minimum {MIN_PAIRS}){}; the secondary ran during {} splits and {} restores, during both in \
         {} pairs (minimum {MIN_OVERLAPPED_PAIRS}); {} calls made without seeing it run",
        if timed_out {
            text!(", stopped at the {LOOP_LIMIT_MS} ms limit")
        } else {
            Text::new()
        },
        overlap.splits,
        overlap.restores,
        overlap.pairs,
        overlap.unseen,
    );
    say!(
        "{PREFIX}concurrent_split_restore: secondary {target:#x}: {passes} passes of {words_per_pass} \
         words, {passes_during} wholly inside the loop (minimum {MIN_PASSES}); {accesses_during} \
         accesses inside the loop, {} during the calls (minimum {MIN_ACCESSES}; ~{per_call} per \
         overlapped call); {faults} faults, {mismatches} mismatches",
        overlap.accesses,
    );
    say!(
        "{PREFIX}concurrent_split_restore: {page_mismatches} mismatches on the read-only page \
         (boot CPU); final check: {lost} of {checked} words wrong (fill {fill_ms} ms); \
         AFFINITY_INFO {affinity}{stats_note}"
    );

    if let Some(why) = loop_error {
        return Err(Failure::Failed(why));
    }
    if faults > 0 {
        let first = Fault {
            esr: s.fault_esr.load(Ordering::Relaxed),
            far: s.fault_far.load(Ordering::Relaxed),
            elr: s.fault_elr.load(Ordering::Relaxed),
        };
        return Err(failed!(
            "the secondary took {faults} data aborts during {pairs} pairs; first: {first}"
        ));
    }
    if mismatches > 0 {
        return Err(failed!(
            "the secondary read {mismatches} wrong words; first at {:#x}: {:#x}, want {:#x}",
            s.mismatch_addr.load(Ordering::Relaxed),
            s.mismatch_got.load(Ordering::Relaxed),
            s.mismatch_want.load(Ordering::Relaxed)
        ));
    }
    if page_mismatches > 0 {
        return Err(failed!(
            "the boot CPU read {page_mismatches} wrong words on the read-only page"
        ));
    }
    if checked != words {
        return Err(failed!(
            "the final check covered {checked} words, the fill {words}"
        ));
    }
    if let Some((a, got, want)) = first_lost {
        return Err(failed!(
            "data lost: {lost} of {checked} words wrong after {passes} passes; first at {a:#x}: {got:#x}, want {want:#x}"
        ));
    }
    if affinity != AFFINITY_OFF {
        return Err(failed!(
            "the secondary called CPU_OFF but AFFINITY_INFO({target:#x}) says {affinity}, not OFF (1)"
        ));
    }
    if !enough(pairs, passes_during, &overlap) {
        return Err(failed!(
            "too little overlap in {LOOP_LIMIT_MS} ms: {pairs} pairs (min {MIN_PAIRS}), {} overlapped \
             (min {MIN_OVERLAPPED_PAIRS}); secondary: {passes_during} passes in the loop \
             (min {MIN_PASSES}), {} accesses during calls (min {MIN_ACCESSES})",
            overlap.pairs,
            overlap.accesses
        ));
    }
    Ok(text!(
        "{pairs} pairs, {} overlapped; secondary in the loop: {passes_during} passes, \
         {accesses_during} accesses ({} during calls); 0 faults, 0 mismatches, 0 words lost{stats_note}",
        overlap.pairs,
        overlap.accesses
    ))
}
