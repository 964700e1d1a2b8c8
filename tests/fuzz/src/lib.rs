//! Checks shared by the fuzz targets in `fuzz_targets/`.

use platform::info::{MAX_MODULES, PhysRange, PlatformInfo};

/// A [`PhysRange`] as the parsers promise it: non-empty, end inside 64 bits.
pub fn assert_valid_range(range: &PhysRange, what: &str) {
    assert!(range.size > 0, "{what}: empty range {range:x?}");
    assert!(
        range.base.checked_add(range.size).is_some(),
        "{what}: range {range:x?} wraps"
    );
}

/// What `PlatformInfo`'s documentation promises after a successful parse of a blob of
/// `totalsize` bytes loaded at `dtb_base`.
pub fn assert_platform_info(info: &PlatformInfo<'_>, dtb_base: u64, totalsize: u64) {
    assert_eq!(info.dtb.base, dtb_base);
    assert_eq!(info.dtb.size, totalsize);
    assert!(!info.memory.is_empty(), "no memory");
    for bank in &info.memory {
        assert_valid_range(bank, "memory");
    }
    assert!(
        info.memory.windows(2).all(|w| w[0].end() <= w[1].base),
        "memory banks unsorted or overlapping: {:x?}",
        info.memory
    );
    for reserved in &info.reserved {
        assert_valid_range(&reserved.range, "reserved");
    }
    assert!(
        info.reserved
            .windows(2)
            .all(|w| w[0].range.end() <= w[1].range.base),
        "reservations unsorted or overlapping: {:x?}",
        info.reserved
    );
    assert!(!info.cpus.is_empty(), "no CPUs");
    for (i, cpu) in info.cpus.iter().enumerate() {
        assert!(
            info.cpus[..i].iter().all(|other| other.mpidr != cpu.mpidr),
            "duplicate MPIDR {:#x}",
            cpu.mpidr
        );
    }
    assert_valid_range(&info.console.regs, "console");
    assert!(!info.console.path.is_empty());
    assert_valid_range(&info.gic.distributor, "GIC distributor");
    assert!(!info.gic.redistributors.is_empty(), "no redistributors");
    for redist in &info.gic.redistributors {
        assert_valid_range(redist, "GIC redistributor");
    }
    if let Some(its) = &info.gic.its {
        assert_valid_range(its, "ITS");
    }
    assert!(info.modules.len() <= MAX_MODULES);
    for module in &info.modules {
        assert_valid_range(&module.range, "module");
    }
    assert_eq!(
        info.ram_bytes(),
        info.memory.iter().map(|b| b.size).sum::<u64>()
    );
}

/// The big-endian `totalsize` field of an FDT header, if there are enough bytes.
pub fn fdt_totalsize(blob: &[u8]) -> Option<usize> {
    let field = blob.get(4..8)?;
    Some(u32::from_be_bytes(field.try_into().ok()?) as usize)
}
