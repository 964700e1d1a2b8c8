//! Device tree to platform description: `platform::dt::{blob_size, remove_nops, parse,
//! find_console}` on arbitrary blobs (seeded with the real QEMU and hand-made DTBs).
//!
//! Checked beyond "no panic":
//! - a successful parse keeps every promise of `PlatformInfo` (sorted, disjoint,
//!   non-empty ranges; CPUs, GIC, console present), and of its SMMUv3s and PCI host
//!   bridges (every `iommu-map` entry names a listed SMMU, maps at least one requester
//!   ID and stays inside the 16-bit RID space; every INTx route is an SPI);
//! - the result does not depend on the load address (but for `dtb.base`) nor on bytes
//!   after `totalsize`;
//! - `blob_size` agrees with the parse, and `find_console` finds the parse's console;
//! - `remove_nops` (the boot path runs it first) changes nothing when it fails or finds
//!   no NOP, keeps the blob's length, is idempotent, and its output parses as well.

#![no_main]

use hypervisor_fuzz::assert_platform_info;
use libfuzzer_sys::fuzz_target;
use platform::dt::{self, DtError};
use platform::info::{PlatformInfo, RID_LIMIT};

const BASE: u64 = 0x4800_0000;
const OTHER_BASE: u64 = 0x1_0000_0000;

// DtError is large by design (it owns short copies of node paths).
#[allow(clippy::result_large_err)]
fn check(blob: &[u8]) -> Result<PlatformInfo<'_>, DtError> {
    let parsed = dt::parse(blob, BASE);
    match &parsed {
        Ok(info) => {
            let size = dt::blob_size(blob).expect("parse accepted a header blob_size refuses");
            assert_platform_info(info, BASE, size as u64);
            assert_smmus_and_bridges(info);
            assert_eq!(
                dt::find_console(blob),
                Some(info.console),
                "find_console disagrees with parse"
            );
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }

    // The load address only shows in `dtb.base`.
    match (&parsed, dt::parse(blob, OTHER_BASE)) {
        (Ok(info), Ok(mut other)) => {
            assert_eq!(other.dtb.base, OTHER_BASE);
            other.dtb.base = BASE;
            assert_eq!(info, &other);
        }
        (Err(a), Err(b)) => assert_eq!(a, &b),
        (a, b) => panic!("load address changed the outcome: {a:?} / {b:?}"),
    }

    // Bytes past `totalsize` are not part of the blob.
    let mut longer = blob.to_vec();
    longer.extend_from_slice(&[0xff, 0, 0, 0x03, 0xd0, 0x0d, 0xfe, 0xed]);
    let extended = dt::parse(&longer, BASE);
    match (&parsed, &extended) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        // A blob that was too short may now reach its totalsize; otherwise the same.
        (Err(DtError::Truncated { .. }), _) => {}
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("trailing bytes changed the outcome: {a:?} / {b:?}"),
    }
    parsed
}

/// The promises of `PlatformInfo::smmus` and `pci_host_bridges`.
fn assert_smmus_and_bridges(info: &PlatformInfo<'_>) {
    for smmu in &info.smmus {
        assert!(smmu.regs.size > 0 && smmu.regs.base.checked_add(smmu.regs.size).is_some());
        for intid in [
            smmu.event_intid,
            smmu.gerror_intid,
            smmu.priq_intid,
            smmu.cmdq_sync_intid,
        ]
        .into_iter()
        .flatten()
        {
            assert!((16..1020).contains(&intid), "SMMU INTID {intid}");
        }
    }
    for bridge in &info.pci_host_bridges {
        assert!(bridge.ecam.size > 0 && bridge.ecam.base.checked_add(bridge.ecam.size).is_some());
        assert!(bridge.first_bus <= bridge.last_bus);
        assert!(bridge.rids().end <= RID_LIMIT);
        for window in &bridge.windows {
            assert!(window.cpu.size > 0 && window.cpu.base.checked_add(window.cpu.size).is_some());
        }
        for entry in &bridge.iommu_map {
            assert!(entry.length > 0, "empty iommu-map entry kept");
            assert!(entry.rids().end <= RID_LIMIT, "RIDs past 0xffff: {entry:?}");
            assert_eq!(entry.sids().len(), entry.rids().len(), "{entry:?}");
            // An entry may name an IOMMU that is no SMMUv3 of the DT (an SMMUv2, a
            // disabled SMMU): the bridge is kept and the guest loader refuses it.
            // Without a mask the entry's first RID finds a stream (maybe an earlier
            // entry's: the first match wins, as in Linux's `of_map_id`).
            if bridge.iommu_map_mask.is_none() {
                assert!(bridge.stream_of(entry.rid_base).is_some(), "{entry:?}");
            }
        }
        for route in &bridge.intx {
            assert!(
                (32..1020).contains(&route.intid),
                "INTx to INTID {}",
                route.intid
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = check(data);

    // The boot path: compact NOPs in place, then parse.
    let mut blob = data.to_vec();
    match dt::remove_nops(&mut blob) {
        Ok(0) => assert_eq!(blob, data, "no NOPs, but the blob changed"),
        Ok(_) => {
            assert_eq!(blob.len(), data.len());
            let mut again = blob.clone();
            assert_eq!(dt::remove_nops(&mut again), Ok(0), "NOPs left behind");
            assert_eq!(again, blob);
            let _ = check(&blob);
        }
        Err(error) => {
            assert_eq!(
                blob, data,
                "remove_nops failed ({error}) but changed the blob"
            );
            // Whatever remove_nops cannot walk, parse refuses too.
            assert!(
                dt::parse(data, BASE).is_err(),
                "parse accepts what remove_nops refuses: {error}"
            );
        }
    }
});
