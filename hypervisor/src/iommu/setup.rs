//! (EL2) Which SMMUs the hypervisor drives, bringing them up for the guest whose devices
//! sit behind them, and their interrupts.
//!
//! Every SMMUv3 of the DT that can walk a stage 2 (`registers::SmmuFeatures::check`) is
//! driven: a PCI host bridge behind it may be given to a guest, and its StreamIDs then
//! translate through that guest's own stage-2 tables; every other StreamID aborts,
//! whether or not a guest got anything, so no DMA bypasses translation once the
//! hypervisor runs. An SMMU that cannot walk a stage 2 is left alone and nothing behind
//! it is given to a guest (the guest loader refuses it).

use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};

use alloc::boxed::Box;
use arrayvec::ArrayVec;
use platform::info::{MAX_SMMUS, PlatformInfo, SmmuV3};

use super::driver::Smmu;
use super::registers::Stage2Needs;
use super::ste::{Stage2Config, Ste};
use super::stream_table::coverable_streams;
use crate::arch::aarch64::gic::distributor;

/// An SMMU the hypervisor drives.
pub struct DrivenSmmu {
    pub info: SmmuV3,
    pub smmu: &'static Smmu,
}

static DRIVEN: spin::Once<ArrayVec<DrivenSmmu, MAX_SMMUS>> = spin::Once::new();
/// DMA faults (event records) logged so far.
static EVENTS_LOGGED: AtomicU64 = AtomicU64::new(0);
/// Event records logged in full before the rest are only counted.
const EVENTS_LOGGED_IN_FULL: u64 = 32;

/// The phandles of the DT's SMMUs that can walk a stage 2 (the others are reported):
/// what the guest loader may put devices behind.
pub fn drivable(info: &PlatformInfo<'_>) -> ArrayVec<u32, MAX_SMMUS> {
    let minimal = Stage2Needs {
        ipa_bits: 32,
        output_bits: 32,
        vmid: 1,
        highest_stream_id: None,
    };
    let mut phandles = ArrayVec::new();
    for smmu in &info.smmus {
        match Smmu::features_at(smmu.regs).check(&minimal) {
            Ok(()) => {
                if let Some(phandle) = smmu.phandle {
                    phandles.push(phandle);
                }
            }
            Err(why) => log::warn!("SMMU {}: not used: {why}", smmu.path),
        }
    }
    phandles
}

/// Brings up every drivable SMMU: the guest's `streams` (per SMMU phandle) translate
/// through its stage 2 described by `config`, whose addresses end below `output_end`;
/// everything else aborts. Returns the SMMUs that serve the guest.
pub fn bring_up(
    info: &PlatformInfo<'_>,
    streams: &[(u32, Range<u32>)],
    config: &Stage2Config,
    output_end: u64,
) -> Result<ArrayVec<&'static Smmu, MAX_SMMUS>, alloc::string::String> {
    let drivable = drivable(info);
    let mut driven = ArrayVec::new();
    let mut serving = ArrayVec::new();
    for smmu in info
        .smmus
        .iter()
        .filter(|s| s.phandle.is_some_and(|p| drivable.contains(&p)))
    {
        let features = Smmu::features_at(smmu.regs);
        let asked: alloc::vec::Vec<Range<u32>> = streams
            .iter()
            .filter(|(phandle, _)| Some(*phandle) == smmu.phandle)
            .map(|(_, sids)| sids.clone())
            .collect();
        let (coverable, dropped) =
            coverable_streams(&asked, features.two_level_stream_table, features.sid_bits);
        if dropped > 0 {
            log::warn!(
                "SMMU {}: {dropped} StreamID(s) of the guest's stay aborting: beyond what its stream table covers ({})",
                smmu.path,
                if features.two_level_stream_table {
                    "two-level, at most 16 L2 tables of 256 StreamIDs"
                } else {
                    "linear, the first 4096"
                }
            );
        }
        let mine: ArrayVec<Range<u32>, 8> = coverable.into_iter().take(8).collect();
        let highest = mine.iter().filter_map(|sids| sids.clone().last()).max();
        let ste = config
            .for_smmu(&features, output_end, highest)
            .map(|config| Ste::stage2(&config))
            .map_err(|why| {
                alloc::format!("SMMU {}: cannot walk the guest's stage 2: {why}", smmu.path)
            })?;
        let with_ste: ArrayVec<(Range<u32>, Ste), 8> =
            mine.iter().map(|sids| (sids.clone(), ste)).collect();
        let up = Smmu::bring_up(smmu.regs, &with_ste)
            .map_err(|why| alloc::format!("SMMU {}: {why}", smmu.path))?;
        let up: &'static Smmu = Box::leak(Box::new(up));
        log::info!(
            "SMMU {}: driven; {} stream range(s) of the guest translate through its stage 2, every other stream aborts",
            smmu.path,
            mine.len()
        );
        enable_interrupts(smmu);
        if !mine.is_empty() {
            serving.push(up);
        }
        driven.push(DrivenSmmu {
            info: *smmu,
            smmu: up,
        });
    }
    DRIVEN.call_once(|| driven);
    Ok(serving)
}

/// Routes the SMMU's event and global-error interrupts to this CPU, edge-triggered: the
/// SMMUv3's wired interrupts are pulses (IHI 0070 §3.18; the DT binding's examples and
/// QEMU's DT give IRQ_TYPE_EDGE_RISING), which a level-sensitive SPI would miss.
fn enable_interrupts(smmu: &SmmuV3) {
    for intid in [smmu.event_intid, smmu.gerror_intid].into_iter().flatten() {
        if !distributor::is_spi(intid) {
            continue;
        }
        let routed = distributor::set_edge(intid, true)
            .and_then(|()| distributor::route(intid, crate::cpu::this_mpidr()))
            .and_then(|()| distributor::set_enabled(intid, true));
        if let Err(error) = routed {
            log::warn!("SMMU {}: interrupt {intid}: {error}", smmu.path);
        }
    }
}

/// Whether `intid` is one of a driven SMMU's interrupts.
pub fn is_smmu_interrupt(intid: u32) -> bool {
    DRIVEN.get().is_some_and(|driven| {
        driven
            .iter()
            .any(|d| d.info.event_intid == Some(intid) || d.info.gerror_intid == Some(intid))
    })
}

/// Logs every pending event of every driven SMMU (a DMA fault never stops the
/// hypervisor: the transaction was terminated, the device sees an error).
pub fn drain_events() -> usize {
    let Some(driven) = DRIVEN.get() else {
        return 0;
    };
    let mut total = 0;
    for d in driven {
        d.smmu.handle_global_errors(|error| {
            log::warn!("SMMU {}: global error {}", d.info.path, error.name())
        });
        total += d.smmu.drain_events(|event| {
            if EVENTS_LOGGED.fetch_add(1, Ordering::Relaxed) < EVENTS_LOGGED_IN_FULL {
                log::warn!("SMMU {}: {event}", d.info.path);
            }
        });
    }
    total
}

/// The `smmu-stats:` line's pairs, summed over the driven SMMUs.
pub fn stats() -> (u64, u64, u64) {
    DRIVEN.get().map_or((0, 0, 0), |driven| {
        driven.iter().fold((0, 0, 0), |(c, s, e), d| {
            let counters = &d.smmu.counters;
            (
                c + counters.commands.load(Ordering::Relaxed),
                s + counters.syncs.load(Ordering::Relaxed),
                e + counters.events.load(Ordering::Relaxed),
            )
        })
    })
}
