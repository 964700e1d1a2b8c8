//! Criterion benchmarks: this engine against aarch64-paging on the same workloads (see
//! `workloads.rs`). `cargo run --release --example compare` prints the same rows side by
//! side as a plain table.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use pgtable::host::HostHardware;

#[path = "support/workloads.rs"]
mod workloads;
use workloads::*;

fn map(c: &mut Criterion) {
    let mut group = c.benchmark_group("map");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200));
    for (gib, pages) in [
        (1, false),
        (16, false),
        (64, false),
        (256, false),
        (1, true),
        (16, true),
    ] {
        let name = if pages { "4k" } else { "blocks" };
        let mut hw = Some(HostHardware::new(pool_pages(gib, pages)));
        group.bench_with_input(
            BenchmarkId::new(format!("ours/{name}"), gib),
            &gib,
            |b, &gib| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let (back, s) = ours_map(hw.take().unwrap(), gib, pages);
                        hw = Some(back);
                        total += s.time;
                    }
                    total
                })
            },
        );
        let pool = ApPool::new(pool_pages(gib, pages));
        group.bench_with_input(
            BenchmarkId::new(format!("aarch64-paging/{name}"), gib),
            &gib,
            |b, &gib| {
                b.iter_custom(|iters| (0..iters).map(|_| theirs_map(&pool, gib, pages).time).sum())
            },
        );
    }
    group.finish();
}

fn changes(c: &mut Criterion) {
    let mut group = c.benchmark_group("permission_changes_64g");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200));
    let pages = change_pages(10_000, 64);
    let mut hw = Some(HostHardware::new(20_000 * 2 + 1024));
    group.bench_function("ours", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (back, s) = ours_changes(hw.take().unwrap(), 64, &pages, false);
                hw = Some(back);
                total += s.time;
            }
            total
        })
    });
    let pool = ApPool::new(20_000 * 2 + 1024);
    group.bench_function("aarch64-paging", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| theirs_changes(&pool, 64, &pages).time)
                .sum()
        })
    });
    group.finish();
}

criterion_group!(benches, map, changes);
criterion_main!(benches);
