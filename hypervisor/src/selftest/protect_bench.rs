//! The cost of a guest permission change on the live stage 2, measured at EL2 before the
//! guest runs (selftest mode): a 4K page inside a 1G and inside a 2M block made read-only
//! (the split) and restored (the collapse), for each split strategy the CPU allows.
//! Prints one `protect-bench:` line per case; scripts/bench.sh tabulates them.

use pgtable::{Access, Attributes, Capabilities, MemoryType, PageTable, SplitStrategy};
use platform::info::PhysRange;

use crate::arch::sysreg;
use crate::mm::table_hw::TableHw;
use crate::vm::guest::Vm;

const ITERATIONS: u64 = 200;

fn rwx() -> Attributes {
    Attributes::new(
        Access::from_bits_truncate(0b111),
        MemoryType::NormalWriteBack,
    )
}

/// A guest RAM address whose stage-2 leaf is at `level`.
fn find_leaf(table: &PageTable<TableHw>, ram: &[PhysRange], level: u8) -> Option<u64> {
    let step = if level == 1 { 1 << 30 } else { 2 << 20 };
    ram.iter().find_map(|range| {
        let mut addr = range.base.next_multiple_of(step);
        while addr + step <= range.end() {
            if table.query(addr).is_some_and(|leaf| leaf.level == level) {
                return Some(addr);
            }
            addr += step;
        }
        None
    })
}

fn nanos(ticks: u64) -> u64 {
    ticks * 1_000_000_000 / sysreg::counter_frequency().max(1)
}

/// Measures on `vm`'s stage 2 (whose VMID it makes current in VTTBR_EL2, as its stage-2
/// TLBIs act on that VMID), before the guest runs.
pub fn run(vm: &Vm) {
    crate::arch::sysreg::write_sysreg!("vttbr_el2", vm.setup.vttbr);
    crate::arch::barrier_isb();
    let mut table = vm.stage2.lock();
    measure(&mut table, &vm.ram);
}

fn measure(table: &mut PageTable<TableHw>, ram: &[PhysRange]) {
    let original = table.capabilities();
    let mut strategies = arrayvec::ArrayVec::<SplitStrategy, 2>::new();
    if original.split == SplitStrategy::Bbml2 {
        strategies.push(SplitStrategy::Bbml2);
    }
    strategies.push(SplitStrategy::BreakBeforeMake);
    for strategy in strategies {
        table.set_capabilities(Capabilities {
            split: strategy,
            ..original
        });
        for (name, level) in [("1g", 1u8), ("2m", 2u8)] {
            let Some(block) = find_leaf(table, ram, level) else {
                crate::console::write_raw(format_args!(
                    "protect-bench: strategy={strategy:?} block={name} skipped=no-such-block\n"
                ));
                continue;
            };
            let page = block + (1 << 20) + 0x5000;
            let before = table.counters();
            let (mut split_ticks, mut collapse_ticks) = (0u64, 0u64);
            let mut ok = true;
            for _ in 0..ITERATIONS {
                let t0 = sysreg::counter();
                ok &= table
                    .change_attrs(page..page + 4096, Attributes::RO)
                    .is_ok();
                let t1 = sysreg::counter();
                ok &= table.change_attrs(page..page + 4096, rwx()).is_ok();
                let t2 = sysreg::counter();
                split_ticks += t1 - t0;
                collapse_ticks += t2 - t1;
            }
            let d = table.counters().since(&before);
            let restored = table.query(page).is_some_and(|leaf| leaf.level == level);
            crate::console::write_raw(format_args!(
                "protect-bench: strategy={strategy:?} block={name} iterations={ITERATIONS} split_ns={} collapse_ns={} \
                 splits_1g={} splits_2m={} collapses={} tlbi_by_va={} tlbi_range={} tlbi_all={} dsb={} transient_unmaps={} tables_per_split={} ok={}\n",
                nanos(split_ticks) / ITERATIONS,
                nanos(collapse_ticks) / ITERATIONS,
                d.splits_1g,
                d.splits_2m,
                d.collapses_1g + d.collapses_2m,
                d.tlbi_by_va,
                d.tlbi_range,
                d.tlbi_all,
                d.dsb,
                d.transient_unmaps,
                d.tables_allocated / ITERATIONS,
                u8::from(ok && restored),
            ));
        }
    }
    table.set_capabilities(original);
}
