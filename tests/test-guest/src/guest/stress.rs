//! `stress_protect_restore`: 10,000 random MEM_PROTECT calls from two vCPUs at once,
//! 5,000 each, over [`BLOCKS`] 2 MiB blocks whose middle blocks both vCPUs' pages
//! share (`stress_plan.rs` has the ownership, the operations and the model). With
//! break-before-make (`cortex-a72`) one vCPU's split or collapse transiently unmaps
//! the pages the other is reading and writing; the hypervisor must hold and retry those
//! accesses, so the guest never sees a fault it did not ask for, and no data may be lost.
//!
//! The boot vCPU fills every page of the region with its pattern (generation 0), starts
//! the secondary and both run their own seeded sequence. After each MEM_PROTECT of a
//! range, the vCPU that made it checks:
//! - MEM_QUERY of the range's first and last page: the model's permissions, a leaf level
//!   the model allows ([`Model::level_bounds`]) and the size of that level;
//! - when the range is no longer writable, a store to a random word of it faults with a
//!   write permission fault (FAR the word, level as above); when no longer readable, a
//!   load does too (the data is checked below, or after the range is restored);
//! - with the accesses the permissions allow counted as faults instead of being fatal
//!   (there must be none): every word of every page of the range holds its pattern when
//!   readable; when writable, the first, last and a random page are rewritten with their
//!   next generation (and read back when readable); and one more of its own pages in the
//!   2 MiB block of the range is checked whole.
//!
//! At the end the boot vCPU restores the whole region to rwx, checks every word of it
//! against both models, checks that each block is back at the start's leaf level, and
//! reads STATS: splits and collapses must have happened. The first wrong word, missing
//! or wrong fault ends the test with the address, what was expected and what was found.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::Env;
use super::console::say;
use super::cpu;
use super::exceptions::{self, Recovery, expect_fault};
use super::secondary::{self, Job};
use super::tests::{mem_protect, query, read, stats, write};
use crate::abi::*;
use crate::esr::{self, FaultKind, Syndrome};
use crate::fixed::Text;
use crate::report::{Failure, PREFIX, TestResult};
use crate::stress_plan::{
    BLOCKS, CPUS, Model, OPS_PER_CPU, Op, PAGE_WORDS, PAGES, PAGES_PER_BLOCK, Rng, SEEDS, Shape,
    owner, pattern,
};
use crate::{ensure, failed, text};

/// Both vCPUs' loops must end within this (each stops at it), or the test fails.
const RUN_LIMIT_MS: u64 = 150_000;
/// Until the secondary is ready to go.
const START_TIMEOUT_MS: u64 = 5_000;
/// How long the boot vCPU waits for the secondary after its own loop (beyond the run
/// limit, one step of the secondary is all it can still be doing).
const STOP_TIMEOUT_MS: u64 = RUN_LIMIT_MS + 30_000;
const OFF_TIMEOUT_MS: u64 = 2_000;
/// Two pages of the other vCPU this close together show it running right now.
const RUNNING_WINDOW_US: u64 = 50;
/// How long a vCPU waits for that before each MEM_PROTECT (then it calls anyway: the
/// other may be waiting too, or making its own call).
const GATE_LIMIT_US: u64 = 500;

/// What one vCPU did.
#[derive(Clone, Copy, Default)]
struct Counts {
    ops: u64,
    restores: u64,
    queries: u64,
    pages_checked: u64,
    words_checked: u64,
    pages_written: u64,
    faults_expected: u64,
    faults_seen: u64,
    /// MEM_PROTECT calls during which the other vCPU checked or wrote pages.
    overlapped: u64,
    /// MEM_PROTECT calls made without having seen the other vCPU run (the gate timed out).
    unseen: u64,
    ms: u64,
}

#[derive(Clone, Copy, Default)]
struct Outcome {
    counts: Counts,
    failure: Option<Text>,
}

/// Between the two vCPUs (both with the MMU on: Normal, coherent memory).
struct Shared {
    base: AtomicU64,
    baseline_level: AtomicU64,
    /// CNTVCT value at which both loops stop.
    deadline: AtomicU64,
    ready: AtomicBool,
    go: AtomicBool,
    /// A vCPU failed: the other stops too.
    abort: AtomicBool,
    done: AtomicBool,
    /// Pages each vCPU has checked or written so far.
    progress: [AtomicU64; CPUS],
}

static SHARED: Shared = Shared {
    base: AtomicU64::new(0),
    baseline_level: AtomicU64::new(0),
    deadline: AtomicU64::new(0),
    ready: AtomicBool::new(false),
    go: AtomicBool::new(false),
    abort: AtomicBool::new(false),
    done: AtomicBool::new(false),
    progress: [const { AtomicU64::new(0) }; CPUS],
};

/// Each vCPU's model of its pages.
struct Models([UnsafeCell<Model>; CPUS]);

// SAFETY: while the loops run, slot `i` is used only by the vCPU working as stress vCPU
// `i` (the boot CPU 0, the secondary 1), each taking it once; the boot CPU reads slot 1
// only after the secondary published `done` (Release/Acquire) and stopped using it, and
// resets it only while the secondary is off.
unsafe impl Sync for Models {}

static MODELS: Models = Models([const { UnsafeCell::new(Model::new(0)) }; CPUS]);

/// The secondary's outcome, for the boot CPU.
struct Handoff(UnsafeCell<Option<Outcome>>);

// SAFETY: the secondary writes it only before publishing `done` (Release); the boot CPU
// reads it only after seeing `done` (Acquire), and clears it only while the secondary
// is off.
unsafe impl Sync for Handoff {}

static SECONDARY_OUTCOME: Handoff = Handoff(UnsafeCell::new(None));

fn wait_until(done: impl Fn() -> bool, ms: u64) -> bool {
    let deadline = cpu::Deadline::after_ms(ms);
    while !done() {
        if deadline.passed() {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// One operation, for messages: `vCPU 1 op 17 (0x13a010000+0x2000 r--, a few pages)`.
struct Step {
    cpu: usize,
    index: u64,
    ipa: u64,
    size: u64,
    perms: u64,
    shape: Shape,
}

impl core::fmt::Display for Step {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "vCPU {} op {} ({:#x}+{:#x} {}, {})",
            self.cpu,
            self.index,
            self.ipa,
            self.size,
            Perms(self.perms),
            self.shape.name()
        )
    }
}

struct Worker<'m> {
    cpu: usize,
    base: u64,
    baseline_level: u64,
    model: &'m mut Model,
    rng: Rng,
    counts: Counts,
}

impl Worker<'_> {
    fn page_address(&self, page: u64) -> u64 {
        self.base + page * PAGE_SIZE
    }

    fn progressed(&self) {
        SHARED.progress[self.cpu].store(
            self.counts.pages_checked + self.counts.pages_written,
            Ordering::Relaxed,
        );
    }

    /// All of this vCPU's operations, or up to the first failure.
    fn run(&mut self) -> Option<Text> {
        let start = cpu::ticks();
        let deadline = SHARED.deadline.load(Ordering::Relaxed);
        let mut failure = None;
        for index in 0..OPS_PER_CPU {
            if SHARED.abort.load(Ordering::Relaxed) {
                break;
            }
            if cpu::ticks() >= deadline {
                failure = Some(text!(
                    "vCPU {}: only {index} of {OPS_PER_CPU} operations within {RUN_LIMIT_MS} ms",
                    self.cpu
                ));
                break;
            }
            let op = self.model.next_op(&mut self.rng);
            if let Err(why) = self.step(index, &op) {
                failure = Some(why);
                break;
            }
            self.counts.ops += 1;
        }
        if failure.is_some() {
            SHARED.abort.store(true, Ordering::Relaxed);
        }
        self.counts.ms = cpu::ms_since(start);
        failure
    }

    fn step(&mut self, index: u64, op: &Op) -> Result<(), Text> {
        let step = Step {
            cpu: self.cpu,
            index,
            ipa: self.page_address(op.first),
            size: op.pages * PAGE_SIZE,
            perms: op.perms,
            shape: op.shape,
        };
        let other = &SHARED.progress[1 - self.cpu];
        let rate = cpu::tick_rate();
        if !secondary::running(
            other,
            rate * RUNNING_WINDOW_US / 1_000_000,
            rate * GATE_LIMIT_US / 1_000_000,
        ) {
            self.counts.unseen += 1;
        }
        let other_before = other.load(Ordering::Relaxed);
        let status = mem_protect(step.ipa, step.size, op.perms);
        if other.load(Ordering::Relaxed) != other_before {
            self.counts.overlapped += 1;
        }
        if status != SUCCESS {
            return Err(text!("{step}: MEM_PROTECT returned {}", Status(status)));
        }
        self.model.apply(op);
        if matches!(op.shape, Shape::Restore { .. }) {
            self.counts.restores += 1;
        }

        for page in [op.first, op.end() - 1] {
            self.check_query(page, &step)?;
        }

        // Accesses the new permissions forbid: each must fault.
        let readable = op.perms & PERM_READ != 0;
        let writable = op.perms & PERM_WRITE != 0;
        if !writable {
            let page = op.first + self.rng.below(op.pages);
            self.expect_permission_fault(page, true, &step)?;
        }
        if !readable {
            let page = op.first + self.rng.below(op.pages);
            self.expect_permission_fault(page, false, &step)?;
        }

        // Accesses they allow: none may fault, every word must hold its pattern.
        exceptions::count_data_aborts();
        let checked = self.check_data(op, &step);
        let (faults, first) = exceptions::stop_counting();
        if let Some(fault) = first {
            return Err(text!(
                "{step}: {faults} abort(s) on accesses the model allows; first {} at {:#x} \
                 (ESR {:#x}, ELR {:#x})",
                Syndrome(fault.esr),
                fault.far,
                fault.esr,
                fault.elr
            ));
        }
        checked
    }

    fn check_query(&mut self, page: u64, step: &Step) -> Result<(), Text> {
        let address = self.page_address(page);
        let q = query(address);
        self.counts.queries += 1;
        let want = self.model.perms(page);
        let (low, high) = self.model.level_bounds(page, self.baseline_level);
        let level_ok = (low..=high).contains(&q.level) && leaf_size(q.level) == Some(q.size);
        if q.status != SUCCESS || q.perms != want || !level_ok {
            return Err(text!(
                "{step}: MEM_QUERY({address:#x}) = {q}; want {}, level {low}..={high}",
                Perms(want)
            ));
        }
        Ok(())
    }

    /// A store to (`is_write`) or a load from a random word of `page`, which must come
    /// back as a permission fault at a level the model allows.
    fn expect_permission_fault(
        &mut self,
        page: u64,
        is_write: bool,
        step: &Step,
    ) -> Result<(), Text> {
        let target = self.page_address(page) + self.rng.below(PAGE_WORDS) * 8;
        let want = pattern(target, self.model.generation(page));
        self.counts.faults_expected += 1;
        let (_, fault) = expect_fault(Recovery::SkipInstruction, || {
            if is_write {
                write(target, !want);
            } else {
                let _ = read(target);
            }
        });
        let access = if is_write { "store to" } else { "load from" };
        let Some(fault) = fault else {
            return Err(text!("{step}: a {access} {target:#x} did not fault"));
        };
        let (low, high) = self.model.level_bounds(page, self.baseline_level);
        let permission_level = match FaultKind::decode(fault.esr) {
            FaultKind::Permission(level) => Some(u64::from(level)),
            _ => None,
        };
        let right = esr::is_data_abort(fault.esr)
            && esr::is_write(fault.esr) == is_write
            && permission_level.is_some_and(|level| (low..=high).contains(&level))
            && fault.far == target;
        if !right {
            return Err(text!(
                "{step}: a {access} {target:#x} took {} (ESR {:#x}, FAR {:#x}); want a permission \
                 fault at level {low}..={high}",
                Syndrome(fault.esr),
                fault.esr,
                fault.far
            ));
        }
        self.counts.faults_seen += 1;
        Ok(())
    }

    /// The data part of a step (with data aborts counted, not fatal).
    fn check_data(&mut self, op: &Op, step: &Step) -> Result<(), Text> {
        let readable = op.perms & PERM_READ != 0;
        if readable {
            for page in op.first..op.end() {
                self.check_page(page, step)?;
            }
        }
        if op.perms & PERM_WRITE != 0 {
            let picks = [op.first, op.end() - 1, op.first + self.rng.below(op.pages)];
            for (i, &page) in picks.iter().enumerate() {
                if picks[..i].contains(&page) {
                    continue;
                }
                let generation = self.model.bump_generation(page);
                let start = self.page_address(page);
                for address in (start..start + PAGE_SIZE).step_by(8) {
                    write(address, pattern(address, generation));
                }
                self.counts.pages_written += 1;
                self.progressed();
                if readable {
                    self.check_page(page, step)?;
                }
            }
        }
        // One more of this vCPU's pages in the same 2 MiB block, outside the range.
        let neighbour = self
            .model
            .own_page_in_block(op.first / PAGES_PER_BLOCK, &mut self.rng);
        if !op.contains(neighbour) && self.model.perms(neighbour) & PERM_READ != 0 {
            self.check_page(neighbour, step)?;
        }
        Ok(())
    }

    fn check_page(&mut self, page: u64, step: &Step) -> Result<(), Text> {
        let generation = self.model.generation(page);
        let start = self.page_address(page);
        for address in (start..start + PAGE_SIZE).step_by(8) {
            let found = read(address);
            let want = pattern(address, generation);
            if found != want {
                return Err(text!(
                    "{step}: word {address:#x} holds {found:#x}, want {want:#x} (page generation \
                     {generation}, now {})",
                    Perms(self.model.perms(page))
                ));
            }
        }
        self.counts.pages_checked += 1;
        self.counts.words_checked += PAGE_WORDS;
        self.progressed();
        Ok(())
    }
}

/// The secondary's part (secondary.rs starts it and powers it off afterwards).
pub fn secondary_stress() {
    // SAFETY: slot 1 is the secondary's while it runs (see `Models`).
    let model = unsafe { &mut *MODELS.0[1].get() };
    model.reset(1);
    let base = SHARED.base.load(Ordering::Acquire);
    let baseline_level = SHARED.baseline_level.load(Ordering::Acquire);
    SHARED.ready.store(true, Ordering::Release);
    let told = wait_until(
        || SHARED.go.load(Ordering::Acquire) || SHARED.abort.load(Ordering::Acquire),
        START_TIMEOUT_MS,
    );
    let outcome = if told && SHARED.go.load(Ordering::Acquire) {
        let mut worker = Worker {
            cpu: 1,
            base,
            baseline_level,
            model,
            rng: Rng::new(SEEDS[1]),
            counts: Counts::default(),
        };
        let failure = worker.run();
        Outcome {
            counts: worker.counts,
            failure,
        }
    } else {
        Outcome {
            counts: Counts::default(),
            failure: Some(text!("vCPU 1 was never told to start")),
        }
    };
    // SAFETY: written before `done` is published (see `Handoff`).
    unsafe { *SECONDARY_OUTCOME.0.get() = Some(outcome) };
    SHARED.done.store(true, Ordering::Release);
}

pub fn stress_protect_restore(env: &Env) -> TestResult {
    let l = env
        .layout
        .map_err(|error| failed!("no test region: {error}"))?;
    let Some(region) = l.stress else {
        return Err(Failure::Skipped(text!(
            "no {} MiB run of free guest RAM for the stress region",
            BLOCKS * 2
        )));
    };
    let target = secondary::other_cpu(env)?;
    let mmu = secondary::mmu(env)?;
    let block_address = |block: u64| region.base + block * BLOCK_2M;

    // Every block rwx at the same leaf level to start with.
    let baseline = query(region.base);
    ensure!(
        baseline.status == SUCCESS && baseline.perms == PERM_ALL,
        "MEM_QUERY({:#x}) at the start: {baseline}; want rwx",
        region.base
    );
    for block in 1..BLOCKS {
        let q = query(block_address(block));
        ensure!(
            q == baseline,
            "MEM_QUERY({:#x}) at the start: {q}; want {baseline} like the first block",
            block_address(block)
        );
    }
    let splits_before = stats(STATS_SPLITS)?;
    let unmaps_before = stats(STATS_TABLES)?[2];

    let fill_start = cpu::ticks();
    for page in 0..PAGES {
        let start = region.base + page * PAGE_SIZE;
        for address in (start..start + PAGE_SIZE).step_by(8) {
            write(address, pattern(address, 0));
        }
    }
    let fill_ms = cpu::ms_since(fill_start);

    let s = &SHARED;
    s.base.store(region.base, Ordering::Relaxed);
    s.baseline_level.store(baseline.level, Ordering::Relaxed);
    s.deadline.store(
        cpu::ticks() + cpu::tick_rate() / 1000 * RUN_LIMIT_MS,
        Ordering::Relaxed,
    );
    for flag in [&s.ready, &s.go, &s.abort, &s.done] {
        flag.store(false, Ordering::Relaxed);
    }
    for progress in &s.progress {
        progress.store(0, Ordering::Relaxed);
    }
    // SAFETY: the secondary is off (see `Handoff`).
    unsafe { *SECONDARY_OUTCOME.0.get() = None };
    // SAFETY: slot 0 is the boot CPU's (see `Models`).
    let model0 = unsafe { &mut *MODELS.0[0].get() };
    model0.reset(0);

    secondary::start(&mmu, target, Job::Stress)?;
    if !wait_until(|| s.ready.load(Ordering::Acquire), START_TIMEOUT_MS) {
        s.abort.store(true, Ordering::Release);
        return Err(failed!(
            "CPU_ON succeeded but the secondary was not ready within {START_TIMEOUT_MS} ms"
        ));
    }
    say!(
        "{PREFIX}stress_protect_restore: region {region} ({BLOCKS} 2 MiB blocks, leaf level {} \
         at the start), filled in {fill_ms} ms; seeds {:#x} (vCPU 0), {:#x} (vCPU 1)",
        baseline.level,
        SEEDS[0],
        SEEDS[1]
    );
    s.go.store(true, Ordering::Release);
    let own = {
        let mut worker = Worker {
            cpu: 0,
            base: region.base,
            baseline_level: baseline.level,
            model: model0,
            rng: Rng::new(SEEDS[0]),
            counts: Counts::default(),
        };
        let failure = worker.run();
        Outcome {
            counts: worker.counts,
            failure,
        }
    };
    if !wait_until(|| s.done.load(Ordering::Acquire), STOP_TIMEOUT_MS) {
        return Err(failed!(
            "the secondary did not finish within {STOP_TIMEOUT_MS} ms of the boot vCPU{}",
            match own.failure {
                Some(why) => text!(" (which failed: {why})"),
                None => Text::new(),
            }
        ));
    }
    let affinity = secondary::wait_off(target, OFF_TIMEOUT_MS);
    // SAFETY: `done` was seen (see `Handoff`).
    let other = unsafe { *SECONDARY_OUTCOME.0.get() }.unwrap_or_default();
    // SAFETY: the secondary has finished with its model (see `Models`).
    let model1 = unsafe { &*MODELS.0[1].get() };
    // SAFETY: as for `model0` above; the worker that borrowed it is gone.
    let model0 = unsafe { &*MODELS.0[0].get() };
    let outcomes = [own, other];
    for (cpu, o) in outcomes.iter().enumerate() {
        let c = &o.counts;
        say!(
            "{PREFIX}stress_protect_restore: vCPU {cpu}: {} ops ({} restores) in {} ms; {} queries; \
             {} pages ({} words) checked, {} pages rewritten; faults expected {}, seen {}; {} calls \
             overlapped by the other vCPU's accesses, {} made without seeing it run",
            c.ops,
            c.restores,
            c.ms,
            c.queries,
            c.pages_checked,
            c.words_checked,
            c.pages_written,
            c.faults_expected,
            c.faults_seen,
            c.overlapped,
            c.unseen
        );
    }
    for o in &outcomes {
        if let Some(why) = o.failure {
            return Err(Failure::Failed(why));
        }
    }
    ensure!(
        affinity == AFFINITY_OFF,
        "the secondary called CPU_OFF but AFFINITY_INFO({target:#x}) says {affinity}, not OFF (1)"
    );

    // Everything back to rwx, then every word of the region against the models.
    let status = mem_protect(region.base, region.size, PERM_ALL);
    ensure!(
        status == SUCCESS,
        "MEM_PROTECT({:#x}, {:#x}, rwx) at the end returned {}",
        region.base,
        region.size,
        Status(status)
    );
    let models = [model0, model1];
    let mut final_words = 0u64;
    let mut wrong = None;
    exceptions::count_data_aborts();
    'pages: for page in 0..PAGES {
        let generation = models[owner(page)].generation(page);
        let start = region.base + page * PAGE_SIZE;
        for address in (start..start + PAGE_SIZE).step_by(8) {
            let found = read(address);
            let want = pattern(address, generation);
            if found != want {
                wrong = Some((address, found, want, owner(page), generation));
                break 'pages;
            }
            final_words += 1;
        }
    }
    let (faults, first) = exceptions::stop_counting();
    if let Some(fault) = first {
        return Err(failed!(
            "final check: {faults} abort(s) reading the restored region; first: {fault}"
        ));
    }
    if let Some((address, found, want, cpu, generation)) = wrong {
        return Err(failed!(
            "final check: word {address:#x} holds {found:#x}, want {want:#x} (vCPU {cpu}'s page, \
             generation {generation})"
        ));
    }
    for block in 0..BLOCKS {
        let q = query(block_address(block));
        ensure!(
            q == baseline,
            "MEM_QUERY({:#x}) after the final restore: {q}; want {baseline} as at the start",
            block_address(block)
        );
    }
    let splits_after = stats(STATS_SPLITS)?;
    let unmaps = stats(STATS_TABLES)?[2].wrapping_sub(unmaps_before);
    let split_1g = splits_after[0].wrapping_sub(splits_before[0]);
    let split_2m = splits_after[1].wrapping_sub(splits_before[1]);
    let collapses = splits_after[2].wrapping_sub(splits_before[2]);
    let total = |f: fn(&Counts) -> u64| outcomes.iter().map(|o| f(&o.counts)).sum::<u64>();
    let ops = total(|c| c.ops);
    let words = total(|c| c.words_checked) + final_words;
    let expected = total(|c| c.faults_expected);
    let seen = total(|c| c.faults_seen);
    let ms = outcomes.iter().map(|o| o.counts.ms).max().unwrap_or(0);
    say!(
        "{PREFIX}stress_protect_restore: final check: {final_words} words of {PAGES} pages right, \
         every block back to {baseline}; STATS splits 1G +{split_1g}, 2M +{split_2m}, collapses \
         +{collapses}, break-before-make unmaps +{unmaps}"
    );
    ensure!(
        ops == OPS_PER_CPU * CPUS as u64,
        "{ops} operations done, want {}",
        OPS_PER_CPU * CPUS as u64
    );
    ensure!(
        split_1g + split_2m > 0 && collapses > 0,
        "STATS splits 1G +{split_1g}, 2M +{split_2m}, collapses +{collapses}: want splits and collapses"
    );
    Ok(text!(
        "ops {ops} ({} + {}), words checked {words}, faults expected {expected} seen {seen}, \
         splits 1G +{split_1g} 2M +{split_2m}, collapses +{collapses}, {ms} ms",
        outcomes[0].counts.ops,
        outcomes[1].counts.ops
    ))
}
