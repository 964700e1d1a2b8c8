//! The tests, in the order they run. Each returns `Ok(note)` or a failure that says
//! what was wrong; `report.rs` prints the lines.

use super::Env;
use super::concurrent;
use super::console::say;
use super::cpu::{self, hvc};
use super::exceptions::{Recovery, expect_fault};
use super::stress;
use super::vgic_sgi;
use super::virtio_blk;
use crate::abi::*;
use crate::cases::hostile_cases;
use crate::esr::{self, Access, ExpectedFault, Syndrome};
use crate::fixed::Text;
use crate::layout::Layout;
use crate::report::{Failure, PREFIX, TestResult};
use crate::sweep::word;
use crate::{ensure, failed, text};

pub type Test = fn(&Env) -> TestResult;

pub const TESTS: &[(&str, Test)] = &[
    ("guest_vectors", guest_vectors),
    ("uid", uid),
    ("features", features),
    ("protect_readonly_page", protect_readonly_page),
    ("restore_collapses", restore_collapses),
    ("execute_never", execute_never),
    (
        "stage1_walk_faults_reach_the_guest",
        super::walk_faults::stage1_walk_faults_reach_the_guest,
    ),
    ("hostile_arguments", hostile_arguments),
    (
        "trapped_system_registers",
        super::sysregs::trapped_system_registers,
    ),
    (
        "cpu_off_then_on_at_once",
        super::secondary::cpu_off_then_on_at_once,
    ),
    ("isolation_outside_ram", isolation_outside_ram),
    ("isolation_probe_addresses", isolation_probe_addresses),
    (
        "concurrent_split_restore",
        concurrent::concurrent_split_restore,
    ),
    ("stress_protect_restore", stress::stress_protect_restore),
    (
        "protect_every_gib_then_restore_at_once",
        super::every_gib::protect_every_gib_then_restore_at_once,
    ),
    (
        "vgic_sgi_to_self_arrives",
        vgic_sgi::vgic_sgi_to_self_arrives,
    ),
    (
        "vgic_more_pending_than_list_registers_all_arrive_in_priority_order",
        vgic_sgi::vgic_more_pending_than_list_registers_all_arrive_in_priority_order,
    ),
    (
        "vgic_sgi_to_a_cpu_that_is_not_ours_is_dropped",
        vgic_sgi::vgic_sgi_to_a_cpu_that_is_not_ours_is_dropped,
    ),
    (
        "vgic_sgi_between_vcpus_arrives",
        super::vgic_smp::vgic_sgi_between_vcpus_arrives,
    ),
    (
        "vgic_virtual_timer_interrupt_arrives",
        super::vgic_timer::vgic_virtual_timer_interrupt_arrives,
    ),
    (
        "vgic_unowned_spis_and_lpi_registers_are_refused",
        super::vgic_registers::vgic_unowned_spis_and_lpi_registers_are_refused,
    ),
    ("dma_read_into_own_ram", virtio_blk::dma_read_into_own_ram),
    (
        "dma_write_outside_own_ram_is_stopped",
        virtio_blk::dma_write_outside_own_ram_is_stopped,
    ),
    (
        "dma_to_a_protected_page_is_stopped",
        virtio_blk::dma_to_a_protected_page_is_stopped,
    ),
    (
        "dma_from_a_no_access_page_is_stopped",
        virtio_blk::dma_from_a_no_access_page_is_stopped,
    ),
];

/// Generations of [`word`] the single-CPU tests write (the concurrency test uses 0..).
const GEN_PROTECT: u64 = 0xa000;
const GEN_RESTORE: u64 = 0xa001;

pub fn read(addr: u64) -> u64 {
    // SAFETY: `addr` is an aligned word of the test region: guest RAM the guest owns and
    // maps (layout.rs, stage1.rs), which nothing else in the guest uses.
    unsafe { (addr as *const u64).read_volatile() }
}

pub fn write(addr: u64, value: u64) {
    // SAFETY: as in `read`.
    unsafe { (addr as *mut u64).write_volatile(value) }
}

/// Fills the page at `page` with `word(address, generation)`.
pub fn fill_page(page: u64, generation: u64) {
    for a in (page..page + PAGE_SIZE).step_by(8) {
        write(a, word(a, generation));
    }
}

/// Words of the page at `page` that do not hold `word(address, generation)`.
pub fn check_page(page: u64, generation: u64) -> u64 {
    (page..page + PAGE_SIZE)
        .step_by(8)
        .filter(|&a| read(a) != word(a, generation))
        .count() as u64
}

pub fn mem_protect(ipa: u64, size: u64, perms: u64) -> i64 {
    hvc(MEM_PROTECT, ipa, size, perms)[0] as i64
}

pub fn protect(ipa: u64, size: u64, perms: u64) -> Result<(), Failure> {
    let status = mem_protect(ipa, size, perms);
    ensure!(
        status == SUCCESS,
        "MEM_PROTECT({ipa:#x}, {size:#x}, {}) returned {}",
        Perms(perms),
        Status(status)
    );
    Ok(())
}

pub fn query(ipa: u64) -> Query {
    Query::from_regs(hvc(MEM_QUERY, ipa, 0, 0))
}

pub fn stats(group: u64) -> Result<[u64; 3], Failure> {
    let r = hvc(STATS, group, 0, 0);
    ensure!(
        r[0] as i64 == SUCCESS,
        "STATS({group}) returned {}",
        Status(r[0] as i64)
    );
    Ok([r[1], r[2], r[3]])
}

fn layout(env: &Env) -> Result<Layout, Failure> {
    env.layout
        .map_err(|error| failed!("no test region: {error}"))
}

/// The stage-2 leaf level of the test page before any change.
fn baseline_level(env: &Env) -> Result<u64, Failure> {
    let q = env.baseline;
    ensure!(
        q.status == SUCCESS,
        "MEM_QUERY of the test page at the start returned {}",
        Status(q.status)
    );
    ensure!(
        q.perms == PERM_ALL && (1..=3).contains(&q.level),
        "MEM_QUERY of the test page at the start: {q}; want rwx at level 1, 2 or 3"
    );
    Ok(q.level)
}

/// The level the `outside` page should have while the test page is split: level 2 if
/// it shared the page's level-1 block (that block became a table of 2M blocks), else
/// what it had at the start.
fn outside_level_while_split(env: &Env, l: &Layout, base_level: u64) -> Option<(u64, u64)> {
    let outside = l.outside?;
    let start = env.outside_baseline?.level;
    let same_gigabyte = outside / BLOCK_1G == l.page / BLOCK_1G;
    Some((
        outside,
        if base_level == 1 && same_gigabyte {
            2
        } else {
            start
        },
    ))
}

/// The guest's own fault capture, without the hypervisor's help: a load from and a call
/// to a VA the stage-1 map leaves unmapped must arrive at the vectors as translation
/// faults with the right syndrome and addresses, and execution must go on.
fn guest_vectors(env: &Env) -> TestResult {
    ensure!(
        env.mmu.is_some(),
        "the EL1 MMU is off: no stage-1 fault to provoke"
    );
    // Just below the top of the 48-bit VA space: never RAM here (checked), so its
    // level-0 entry is empty.
    let va: u64 = (1 << 48) - 2 * PAGE_SIZE;
    ensure!(
        !env.info.ram.iter().any(|r| r.contains(va)),
        "guest RAM reaches {va:#x}: no unmapped VA to use"
    );
    let (_, load) = expect_fault(Recovery::SkipInstruction, || read(va + 8));
    let load = load.ok_or_else(|| failed!("a load from unmapped {:#x} did not fault", va + 8))?;
    let translation =
        |esr: u64| matches!(esr::FaultKind::decode(esr), esr::FaultKind::Translation(_));
    ensure!(
        esr::ec(load.esr) == esr::EC_DABT_CURRENT
            && !esr::is_write(load.esr)
            && translation(load.esr)
            && load.far == va + 8,
        "load from {:#x}: {load}; want a same-EL data abort, read, translation fault, FAR {:#x}",
        va + 8,
        va + 8
    );
    // SAFETY: nothing is mapped at `va`: the fetch faults and the vectors return to the
    // caller (Recovery::ReturnToCaller).
    let function: extern "C" fn() = unsafe { core::mem::transmute(va as usize) };
    let (_, fetch) = expect_fault(Recovery::ReturnToCaller, || function());
    let fetch = fetch.ok_or_else(|| failed!("a call to unmapped {va:#x} did not fault"))?;
    ensure!(
        esr::ec(fetch.esr) == esr::EC_IABT_CURRENT
            && translation(fetch.esr)
            && fetch.far == va
            && fetch.elr == va,
        "call to {va:#x}: {fetch}; want a same-EL instruction abort, translation fault, FAR and ELR {va:#x}"
    );
    Ok(text!(
        "load: {} (ESR {:#x}); fetch: {} (ESR {:#x})",
        Syndrome(load.esr),
        load.esr,
        Syndrome(fetch.esr),
        fetch.esr
    ))
}

fn uid(_env: &Env) -> TestResult {
    let r = hvc(CALL_UID, 0, 0, 0);
    ensure!(
        r[0] as u32 as i32 != -1,
        "CALL_UID ({CALL_UID:#x}) returned {}: no vendor hypervisor service answers",
        Status(NOT_SUPPORTED)
    );
    let got = [r[0] as u32, r[1] as u32, r[2] as u32, r[3] as u32];
    ensure!(
        got == UID,
        "UID {} is not the project's {}",
        UidDisplay(got),
        UidDisplay(UID)
    );
    Ok(text!("{}", UidDisplay(got)))
}

fn features(_env: &Env) -> TestResult {
    let bitmap = hvc(FEATURES, 0, 0, 0)[0];
    ensure!(
        (bitmap as i64) >= 0,
        "FEATURES returned {}",
        Status(bitmap as i64)
    );
    let mut missing = Text::<240>::new();
    for (bit, name) in [
        (FEATURE_MEM_PROTECT, "MEM_PROTECT"),
        (FEATURE_MEM_QUERY, "MEM_QUERY"),
        (FEATURE_STATS, "STATS"),
    ] {
        if bitmap & bit == 0 {
            use core::fmt::Write;
            let _ = write!(missing, " {name}");
        }
    }
    ensure!(missing.is_empty(), "bitmap {bitmap:#x} lacks{missing}");
    Ok(text!("bitmap {bitmap:#x}"))
}

fn protect_readonly_page(env: &Env) -> TestResult {
    let l = layout(env)?;
    let base_level = baseline_level(env)?;
    let p = l.page;
    let pages = [p - PAGE_SIZE, p, p + PAGE_SIZE];
    for page in pages {
        fill_page(page, GEN_PROTECT);
    }
    let before = stats(STATS_SPLITS)?;

    protect(p, PAGE_SIZE, PERM_READ)?;

    let target = p + 0x18;
    let pattern = word(target, GEN_PROTECT);
    let (_, fault) = expect_fault(Recovery::SkipInstruction, || write(target, !pattern));
    let Some(fault) = fault else {
        return Err(failed!(
            "the write to read-only {target:#x} did not fault (and {})",
            if read(target) == pattern {
                "did not land either"
            } else {
                "landed"
            }
        ));
    };
    esr::check(
        &fault,
        &ExpectedFault {
            access: Access::Write,
            level: 3,
            far: target,
        },
    )
    .map_err(|why| failed!("write fault: {why}"))?;
    ensure!(
        read(target) == pattern,
        "the faulting write landed: {target:#x} holds {:#x}",
        read(target)
    );
    let changed: u64 = pages
        .iter()
        .map(|&page| check_page(page, GEN_PROTECT))
        .sum();
    ensure!(
        changed == 0,
        "{changed} words of the page and its two neighbours do not read back"
    );

    query(p).check(p, PERM_READ, 3)?;
    query(p + PAGE_SIZE).check(p + PAGE_SIZE, PERM_ALL, 3)?;
    let mut outside_note = Text::<80>::new();
    if let Some((o, level)) = outside_level_while_split(env, &l, base_level) {
        query(o).check(o, PERM_ALL, level)?;
        use core::fmt::Write;
        let _ = write!(outside_note, ", other 2M page at level {level}");
    }
    let after = stats(STATS_SPLITS)?;
    let split_1g = after[0].wrapping_sub(before[0]);
    let split_2m = after[1].wrapping_sub(before[1]);
    match base_level {
        1 => ensure!(
            split_1g >= 1 && split_2m >= 1,
            "STATS splits 1G +{split_1g}, 2M +{split_2m}; want both to grow (the page was in a 1G block)"
        ),
        2 => ensure!(
            split_2m >= 1,
            "STATS splits 2M +{split_2m}; want it to grow (the page was in a 2M block)"
        ),
        _ => {}
    }
    Ok(text!(
        "level {base_level} -> 3; {} at ELR {:#x}, FAR {:#x}{outside_note}; splits 1G +{split_1g}, 2M +{split_2m}",
        Syndrome(fault.esr),
        fault.elr,
        fault.far
    ))
}

fn restore_collapses(env: &Env) -> TestResult {
    let l = layout(env)?;
    let base_level = baseline_level(env)?;
    let p = l.page;
    let now = query(p);
    let mut note = "";
    if now.status != SUCCESS || now.perms != PERM_READ {
        // protect_readonly_page failed early: make something to collapse.
        protect(p, PAGE_SIZE, PERM_READ)?;
        note = " (made the page read-only first: it was not)";
    }
    let before = stats(STATS_SPLITS)?;

    protect(p, PAGE_SIZE, PERM_ALL)?;

    query(p).check(p, PERM_ALL, base_level)?;
    if let Some(o) = l.outside
        && let Some(start) = env.outside_baseline
    {
        query(o).check(o, PERM_ALL, start.level)?;
    }
    let after = stats(STATS_SPLITS)?;
    let collapses = after[2].wrapping_sub(before[2]);
    if base_level < 3 {
        ensure!(
            collapses >= 1,
            "STATS collapses {} -> {}: restoring the page collapsed nothing",
            before[2],
            after[2]
        );
    }
    let target = p + 0x18;
    let value = word(target, GEN_RESTORE);
    let (_, fault) = expect_fault(Recovery::SkipInstruction, || write(target, value));
    if let Some(fault) = fault {
        return Err(failed!("the write after the restore faulted: {fault}"));
    }
    ensure!(
        read(target) == value,
        "the write after the restore did not land: {target:#x} holds {:#x}",
        read(target)
    );
    Ok(text!(
        "level 3 -> {base_level}, collapses +{collapses}, write ok{note}"
    ))
}

fn execute_never(env: &Env) -> TestResult {
    const RET: u32 = 0xd65f_03c0;
    let l = layout(env)?;
    let x = l.exec_page;
    // SAFETY: `x` is a page of the test region (see `read`).
    unsafe { (x as *mut u32).write_volatile(RET) };
    cpu::sync_icache(x, 4);
    // SAFETY: the page holds a lone `ret`, made visible to instruction fetches above; a
    // fetch fault on it returns to the caller (Recovery::ReturnToCaller).
    let function: extern "C" fn() = unsafe { core::mem::transmute(x as usize) };
    let call = || expect_fault(Recovery::ReturnToCaller, || function()).1;

    if let Some(fault) = call() {
        return Err(failed!(
            "calling the `ret` at {x:#x} faulted before any change: {fault}"
        ));
    }
    protect(x, PAGE_SIZE, PERM_READ | PERM_WRITE)?;
    let fault = call();
    // Put execute permission back before judging, so a failure leaves the page usable.
    let restored = mem_protect(x, PAGE_SIZE, PERM_ALL);
    let Some(fault) = fault else {
        return Err(failed!(
            "calling {x:#x} after MEM_PROTECT(rw-) did not fault"
        ));
    };
    esr::check(
        &fault,
        &ExpectedFault {
            access: Access::Fetch,
            level: 3,
            far: x,
        },
    )
    .map_err(|why| failed!("fetch fault: {why}"))?;
    ensure!(
        fault.elr == x,
        "fetch fault ELR_EL1 {:#x}, want the function {x:#x}",
        fault.elr
    );
    ensure!(
        restored == SUCCESS,
        "MEM_PROTECT({x:#x}, {PAGE_SIZE:#x}, rwx) returned {}",
        Status(restored)
    );
    if let Some(fault) = call() {
        return Err(failed!(
            "the call faulted again after execute permission came back: {fault}"
        ));
    }
    let after = query(x);
    ensure!(
        after.status == SUCCESS && after.perms == PERM_ALL,
        "MEM_QUERY({x:#x}) after the restore: {after}; want rwx"
    );
    Ok(text!(
        "{} at {x:#x}; restored, call ok, stage 2 now {after}",
        Syndrome(fault.esr)
    ))
}

fn hostile_arguments(env: &Env) -> TestResult {
    let l = layout(env)?;
    let cases = hostile_cases(&l, env.info.ram.as_slice(), env.info.console_base());
    let watched = [
        Some(l.page),
        Some(l.page + PAGE_SIZE),
        Some(l.exec_page),
        l.outside,
    ];
    let queries_before = watched.map(|a| a.map(query));
    let stats_snapshot = || -> Result<[[u64; 3]; STATS_GROUPS as usize], Failure> {
        let mut all = [[0; 3]; STATS_GROUPS as usize];
        for (group, counters) in all.iter_mut().enumerate() {
            *counters = stats(group as u64)?;
        }
        Ok(all)
    };
    // Without STATS the cases still run (and are reported); the test fails at the end.
    let stats_before = stats_snapshot();

    let mut wrong = 0;
    for case in cases.iter() {
        let [a1, a2, a3] = case.args;
        let got = hvc(case.function, a1, a2, a3)[0] as i64;
        if got != case.want {
            wrong += 1;
            say!(
                "{PREFIX}hostile_arguments: {}: {:#x}({a1:#x}, {a2:#x}, {a3:#x}) returned {}, want {}",
                case.name,
                case.function,
                Status(got),
                Status(case.want)
            );
        }
    }

    let queries_after = watched.map(|a| a.map(query));
    let mut changed = 0;
    for ((addr, before), after) in watched.iter().zip(queries_before).zip(queries_after) {
        if let (Some(addr), Some(before), Some(after)) = (addr, before, after)
            && before != after
        {
            changed += 1;
            say!("{PREFIX}hostile_arguments: MEM_QUERY({addr:#x}) changed: {before} -> {after}");
        }
    }
    if let Ok(stats_before) = &stats_before {
        let stats_after = stats_snapshot()?;
        for (group, (before, after)) in stats_before.iter().zip(stats_after).enumerate() {
            for i in 0..3 {
                if after[i] != before[i] {
                    changed += 1;
                    say!(
                        "{PREFIX}hostile_arguments: STATS {}: {} -> {}",
                        STATS_COUNTER_NAMES[group][i],
                        before[i],
                        after[i]
                    );
                }
            }
        }
    }
    ensure!(
        wrong == 0,
        "{wrong} of {} calls not refused as documented (listed above)",
        cases.len()
    );
    ensure!(
        changed == 0,
        "refused calls changed {changed} stage-2 facts or counters (listed above)"
    );
    stats_before?;
    Ok(text!(
        "{} calls refused as documented; MEM_QUERY of {} pages and {} STATS counters unchanged",
        cases.len(),
        watched.iter().flatten().count(),
        STATS_GROUPS * 3
    ))
}

/// Memory that is not the guest's (the hypervisor's image, pool, DTB or crash region, or
/// nothing at all), mapped at stage 1 so only stage 2 can refuse: the first 2 MiB window
/// after each RAM range, every window in the 512 MiB above the highest RAM range and one
/// far window (layout.rs). Every read and write there must come back as a synchronous
/// external abort, and the hypervisor must still answer afterwards.
fn isolation_outside_ram(env: &Env) -> TestResult {
    let probes = super::mmu::isolation_probes(&env.info);
    if let Some(error) = env.mmu.and_then(|m| m.probe_map_error) {
        return Err(failed!(
            "the probe windows could not all be mapped at stage 1: {error}"
        ));
    }
    ensure!(
        !probes.overflow,
        "more runs of probe windows than the guest tracks ({})",
        crate::layout::MAX_PROBE_SPANS
    );
    ensure!(
        probes.windows() > 0,
        "no address outside guest RAM to probe"
    );
    for span in probes.spans.iter() {
        say!(
            "{PREFIX}isolation_outside_ram: probing {span} ({} window(s))",
            span.size / crate::abi::BLOCK_2M
        );
    }
    for window in probes.iter_windows() {
        for (offset, is_write) in [(0x40u64, false), (0x1_0080, true)] {
            let target = window.base + offset;
            let (_, fault) = expect_fault(Recovery::SkipInstruction, || {
                if is_write {
                    store64(target, 0x5a5a)
                } else {
                    let _ = load64(target);
                }
            });
            expect_external_abort(target, is_write, fault, "outside guest RAM")?;
        }
    }
    still_answers()?;
    Ok(text!(
        "{} windows probed: {} after RAM ranges, {} more in the 512 MiB above RAM, far {}; \
         each read and write a synchronous external abort",
        probes.windows(),
        probes.after_ranges,
        probes.above_ram,
        match probes.far {
            Some(far) => text!("{far:#x}"),
            None => text!("none"),
        },
    ))
}

/// `fault`, what an access to `target` (`what` it is) raised, is a synchronous external
/// abort with the right direction and FAR.
fn expect_external_abort(
    target: u64,
    is_write: bool,
    fault: Option<crate::esr::Fault>,
    what: &str,
) -> Result<(), Failure> {
    let Some(fault) = fault else {
        return Err(failed!(
            "{} {target:#x} {what} did not fault",
            if is_write { "a write to" } else { "a read of" }
        ));
    };
    let syndrome = fault.esr;
    ensure!(
        esr::ec(syndrome) == esr::EC_DABT_CURRENT
            && syndrome & 0x3f == 0x10
            && esr::is_write(syndrome) == is_write
            && fault.far == target,
        "{target:#x}: {fault}, want a synchronous external abort ({}) with FAR {target:#x}",
        if is_write { "write" } else { "read" }
    );
    Ok(())
}

/// The hypervisor kept running after the probes: the UID call still answers.
fn still_answers() -> Result<(), Failure> {
    let uid = hvc(CALL_UID, 0, 0, 0);
    ensure!(
        uid[0] == u64::from(UID[0]),
        "the hypervisor stopped answering after the probes"
    );
    Ok(())
}

// The isolation probes' accesses are single plain loads and stores in inline assembly:
// the vectors skip the faulting instruction (`Recovery::SkipInstruction`), and
// `read_volatile` lets the compiler fold the address arithmetic into a load with
// writeback, whose skipped write-back leaves a register the caller still uses stale.

/// A 64-bit load from `address`, one `LDR Xt`.
fn load64(address: u64) -> u64 {
    let value: u64;
    // SAFETY: `address` is an aligned word of an isolation window, mapped Normal at
    // stage 1 but not the guest's (layout.rs): stage 2 refuses the load with a
    // synchronous external abort, which the caller's `expect_fault` skips; it touches no
    // memory Rust knows about.
    unsafe {
        core::arch::asm!("ldr {v}, [{a}]", a = in(reg) address, v = out(reg) value, options(nostack))
    };
    value
}

/// A 64-bit store to `address`, one `STR Xt`.
fn store64(address: u64, value: u64) {
    // SAFETY: as in `load64`: refused at stage 2, nothing is written.
    unsafe {
        core::arch::asm!("str {v}, [{a}]", a = in(reg) address, v = in(reg) value, options(nostack))
    };
}

/// A 32-bit load from `address`, one `LDR Wt` (an aligned word, as `isolation_probe=`
/// addresses are).
fn load32(address: u64) -> u32 {
    let value: u32;
    // SAFETY: `address` is in a 4 KiB Device page of the stage-1 map that is not the
    // guest's (address_probes): stage 2 refuses the load with a synchronous external
    // abort, which the caller's `expect_fault` skips; it touches no memory Rust knows
    // about.
    unsafe {
        core::arch::asm!("ldr {v:w}, [{a}]", a = in(reg) address, v = out(reg) value, options(nostack))
    };
    value
}

/// A 32-bit store to `address`, one `STR Wt`.
fn store32(address: u64, value: u32) {
    // SAFETY: as in `load32`: refused at stage 2, nothing is written.
    unsafe {
        core::arch::asm!("str {v:w}, [{a}]", a = in(reg) address, v = in(reg) value, options(nostack))
    };
}

/// The addresses `isolation_probe=ADDR[,ADDR...]` names in `/chosen/bootargs`
/// (`scripts/run.sh selftest --probe-devices` passes the first and last word of every
/// device window of the board the guest was not given), each mapped at stage 1 as its own
/// 4 KiB Device page: a 32-bit read and a 32-bit write at that exact word must each be a
/// synchronous external abort. An address whose page overlaps the guest's own RAM, GIC
/// distributor, redistributor frames or console UART (or lies past its address space) is
/// not probed, and said so. Skipped without the option.
fn isolation_probe_addresses(env: &Env) -> TestResult {
    if let Some(error) = env.info.probe_args_error {
        return Err(failed!("/chosen/bootargs: {error}"));
    }
    if env.info.probe_args.is_empty() {
        return Err(Failure::Skipped(text!(
            "no isolation_probe= in /chosen/bootargs (scripts/run.sh selftest --probe-devices)"
        )));
    }
    ensure!(
        env.mmu.is_some(),
        "the EL1 MMU is off: the probes would not go through Device pages"
    );
    if let Some(error) = env.mmu.and_then(|m| m.address_map_error) {
        return Err(failed!(
            "the isolation_probe= pages could not all be mapped at stage 1: {error}"
        ));
    }
    let probes = super::mmu::address_probes(&env.info);
    for rejected in probes.rejected.iter() {
        say!("{PREFIX}isolation_probe_addresses: not probed: {rejected}");
    }
    say!(
        "{PREFIX}isolation_probe_addresses: probing {} address(es) in {} page(s)",
        probes.addresses.len(),
        probes.pages()
    );
    for target in probes.addresses.iter() {
        for is_write in [false, true] {
            let (_, fault) = expect_fault(Recovery::SkipInstruction, || {
                if is_write {
                    store32(target, 0x5a5a_5a5a)
                } else {
                    let _ = load32(target);
                }
            });
            expect_external_abort(target, is_write, fault, "named by isolation_probe=")?;
        }
    }
    still_answers()?;
    let not_probed = match probes.rejected.len() {
        0 => text!(""),
        n => text!("; {n} not probed (listed above)"),
    };
    Ok(text!(
        "{} addresses probed ({} pages), each a 32-bit read and write refused with a \
         synchronous external abort{not_probed}",
        probes.addresses.len(),
        probes.pages()
    ))
}
