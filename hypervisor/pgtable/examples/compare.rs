//! Prints this engine's and aarch64-paging's numbers side by side as a plain-text table:
//! `cargo run --release -p pgtable --features host --example compare [repetitions]`.

use std::time::{Duration, Instant};

use pgtable::check::minimal_cover_of_map;
use pgtable::host::HostHardware;

#[path = "../benches/support/workloads.rs"]
mod workloads;
use workloads::*;

fn median_and_spread(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let median = us(times[times.len() / 2]);
    let spread = us(times[times.len() - 1]) - us(times[0]);
    (median, spread)
}

/// What every per-operation time above contains besides the engine's own work, measured
/// in this run: zeroing one 4 KiB table page (both engines zero each new table; hot, like
/// the pools' reused pages) and one `Instant::now()` + `elapsed()` pair, each in ns,
/// averaged over a batch so the timer's own cost divides out.
fn shared_floor() -> (f64, f64) {
    const BATCH: u32 = 100_000;
    let layout = std::alloc::Layout::from_size_align(4096, 4096).expect("page layout");
    // SAFETY: non-zero size.
    let page = unsafe { std::alloc::alloc_zeroed(layout) };
    assert!(!page.is_null(), "page allocation");
    let start = Instant::now();
    for _ in 0..BATCH {
        // SAFETY: one page we own.
        unsafe { std::hint::black_box(page).write_bytes(0, 4096) };
    }
    let zero = start.elapsed().as_secs_f64() * 1e9 / f64::from(BATCH);
    // SAFETY: allocated above with this layout.
    unsafe { std::alloc::dealloc(page, layout) };
    let start = Instant::now();
    for _ in 0..BATCH {
        std::hint::black_box(Instant::now().elapsed());
    }
    let timer = start.elapsed().as_secs_f64() * 1e9 / f64::from(BATCH);
    (zero, timer)
}

fn main() {
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(7);
    println!(
        "{reps} repetitions each; time = median µs (max - min); pools pre-touched; trees not live"
    );
    println!(
        "{:<28} {:>18} {:>18} {:>7} {:>9} {:>9} {:>10} {:>10} {:>6}",
        "workload",
        "ours µs",
        "aarch64-paging µs",
        "ratio",
        "our pages",
        "its pages",
        "written",
        "minimal",
        "w/min"
    );
    let rows: &[(u64, bool)] = &[
        (1, false),
        (16, false),
        (64, false),
        (256, false),
        (1, true),
        (16, true),
        (64, true),
    ];
    for &(gib, pages) in rows {
        let mut hw = Some(HostHardware::new(pool_pages(gib, pages)));
        let pool = ApPool::new(pool_pages(gib, pages));
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let (mut our_pages, mut their_pages, mut written) = (0, 0, 0);
        for _ in 0..reps {
            let (back, s) = ours_map(hw.take().unwrap(), gib, pages);
            hw = Some(back);
            ours.push(s.time);
            (our_pages, written) = (s.table_pages, s.written);
            let s = theirs_map(&pool, gib, pages);
            theirs.push(s.time);
            their_pages = s.table_pages;
        }
        let minimal = minimal_cover_of_map(0, 0, gib * GIB, 0, flags(pages)).descriptors();
        let (o, os) = median_and_spread(ours);
        let (t, ts) = median_and_spread(theirs);
        println!(
            "{:<28} {:>9.3} ({:>7.3}) {:>9.3} ({:>7.3}) {:>6.2} {:>9} {:>9} {:>10} {:>10} {:>6.2}",
            format!(
                "map {gib} GiB {}",
                if pages { "4K pages" } else { "blocks" }
            ),
            o,
            os,
            t,
            ts,
            o / t,
            our_pages,
            their_pages,
            written,
            minimal,
            written as f64 / minimal as f64
        );
    }
    let changes = change_pages(10_000, 64);
    let mut hw = Some(HostHardware::new(40_000));
    let pool = ApPool::new(40_000);
    let (mut ours, mut live, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
    let (mut our_pages, mut their_pages, mut written) = (0, 0, 0);
    for _ in 0..reps {
        let (back, s) = ours_changes(hw.take().unwrap(), 64, &changes, false);
        ours.push(s.time);
        (our_pages, written) = (s.table_pages, s.written);
        let (back, s) = ours_changes(back, 64, &changes, true);
        hw = Some(back);
        live.push(s.time);
        let s = theirs_changes(&pool, 64, &changes);
        theirs.push(s.time);
        their_pages = s.table_pages;
    }
    let (o, os) = median_and_spread(ours);
    let (l, ls) = median_and_spread(live);
    let (t, ts) = median_and_spread(theirs);
    println!(
        "{:<28} {:>9.3} ({:>7.3}) {:>9.3} ({:>7.3}) {:>6.2} {:>9} {:>9} {:>10} {:>10} {:>6}",
        "10k page RO on 64 GiB",
        o,
        os,
        t,
        ts,
        o / t,
        our_pages,
        their_pages,
        written,
        "-",
        "-"
    );
    println!(
        "{:<28} {:>9.3} ({:>7.3}) {:>19} {:>6} (live tree, FEAT_BBM level 2, host barriers are no-ops)",
        "  same, ours live", l, ls, "-", "-"
    );
    let (zero, timer) = shared_floor();
    println!(
        "floor: zeroing one 4 KiB table page {zero:.1} ns, one Instant pair {timer:.1} ns; every map row \
         holds at least one of each on both sides (the 1 GiB block row is one new table and two \
         descriptors)"
    );
}
