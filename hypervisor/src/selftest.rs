//! EL2 selftests, run before the test guest in `selftest` mode: the engine on the live
//! EL2 map. Each prints `selftest: <name> ... ok` or `... FAILED: <why>`; scripts/run.sh
//! adds them to the test guest's summary.

extern crate alloc;

use alloc::boxed::Box;

use pgtable::Attributes;

use crate::mm::el2_map::EL2_TABLE;

fn report(name: &str, result: Result<(), &'static str>) -> bool {
    match result {
        Ok(()) => crate::console::write_raw(format_args!("selftest: {name} ... ok\n")),
        Err(why) => crate::console::write_raw(format_args!("selftest: {name} ... FAILED: {why}\n")),
    }
    result.is_ok()
}

/// A heap page inside a 2M block of the live EL2 map goes read-only (the block splits to a
/// level-3 table) and back (the table collapses to the block), with the contents intact.
fn el2_split_and_collapse() -> Result<(), &'static str> {
    let page = Box::new([0x5au8; 4096]);
    let va = page.as_ptr() as u64 & !0xfff;
    let mut guard = EL2_TABLE.lock();
    let table = guard.as_mut().ok_or("no EL2 table")?;
    let before = table.query(va).ok_or("heap page not mapped")?;
    if before.level != 2 {
        return Err("heap page is not in a 2M block");
    }
    let counters = table.counters();
    table
        .change_attrs(va..va + 4096, Attributes::RO)
        .map_err(|_| "change to read-only failed")?;
    let split = table.query(va).ok_or("page lost after the split")?;
    if split.level != 3 || split.attrs != Attributes::RO {
        return Err("the page is not a read-only level-3 leaf after the split");
    }
    let neighbour = table.query(va ^ 0x1000).ok_or("neighbour lost")?;
    if neighbour.attrs != Attributes::RW {
        return Err("the neighbour page changed");
    }
    table
        .change_attrs(va..va + 4096, Attributes::RW)
        .map_err(|_| "restore failed")?;
    let after = table.query(va).ok_or("page lost after the restore")?;
    let delta = table.counters().since(&counters);
    drop(guard);
    if after.level != 2 || delta.splits_2m != 1 || delta.collapses_2m != 1 {
        return Err("the restore did not collapse back to the 2M block");
    }
    if page.iter().any(|&b| b != 0x5a) {
        return Err("contents changed");
    }
    Ok(())
}

/// Runs the EL2 selftests; returns (passed, failed).
pub fn run() -> (u32, u32) {
    let results = [report("el2_split_and_collapse", el2_split_and_collapse())];
    let passed = results.iter().filter(|&&ok| ok).count() as u32;
    (passed, results.len() as u32 - passed)
}
