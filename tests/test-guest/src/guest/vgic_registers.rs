//! What the emulated GIC refuses: SPIs the guest does not own (its DT shows only its
//! PL011's), the LPI machinery; and what it must say: affinity routing on, one
//! redistributor per vCPU with GICR_TYPER.Last on the last.

use super::Env;
use super::gic::{read32, read64, redistributors, write32, write64};
use super::vgic_sgi::quiet_gic;
use crate::fixed::List;
use crate::gicv3::*;
use crate::report::TestResult;
use crate::{ensure, text};

/// The SPI the brief names as "in range but not the guest's".
const UNOWNED_SPI: u32 = 34;

pub fn vgic_unowned_spis_and_lpi_registers_are_refused(env: &Env) -> TestResult {
    let gic = quiet_gic(env)?;
    let d = gic.distributor;
    let ctlr = read32(d + GICD_CTLR);
    ensure!(
        ctlr & CTLR_ARE != 0,
        "GICD_CTLR {ctlr:#x}: ARE reads 0, want 1 (affinity routing is always on)"
    );

    let limit = intid_limit(read32(d + GICD_TYPER));
    let console = env.info.gic.console_intid;
    let in_range = core::iter::once(UNOWNED_SPI)
        .chain(FIRST_SPI..limit)
        .find(|&intid| intid < limit && Some(intid) != console);
    let above = (limit <= LAST_SPI).then_some(limit);
    for intid in [in_range, above].into_iter().flatten() {
        let (set, bit) = bit_register(d + GICD_ISENABLER, intid);
        write32(set, bit);
        let got = read32(set);
        // Undo it, should it have taken.
        write32(bit_register(d + GICD_ICENABLER, intid).0, bit);
        ensure!(
            got & bit == 0,
            "GICD_ISENABLER{} reads {got:#x} after setting bit {} for SPI {intid}, which is not the guest's (GICD_TYPER: INTIDs below {limit}): want it RAZ/WI",
            intid / 32,
            intid % 32
        );
    }
    // Control: the console's SPI, which the guest owns, does enable; so the zeros above
    // are refusals, not a dead register.
    let control = match console.filter(|&intid| intid >= FIRST_SPI) {
        Some(own) => {
            let (set, bit) = bit_register(d + GICD_ISENABLER, own);
            let was = read32(set) & bit;
            write32(set, bit);
            let got = read32(set) & bit;
            if was == 0 {
                write32(bit_register(d + GICD_ICENABLER, own).0, bit);
            }
            ensure!(
                got != 0,
                "control: GICD_ISENABLER bit of the console's own SPI {own} reads 0 after being set"
            );
            text!("console SPI {own} enables")
        }
        None => text!("no console SPI to enable as a control"),
    };

    let rd = gic.redistributor;
    let typer = read64(rd + GICR_TYPER);
    ensure!(
        typer & TYPER_PLPIS == 0,
        "GICR_TYPER {typer:#x}: PLPIS set, but the guest gets no LPIs"
    );
    // A plausible table (IDbits 16, inner-shareable write-back) at the start of guest
    // RAM: nothing that takes a physical address may be accepted.
    let ram = env.info.ram.get(0).map_or(0x4000_0000, |r| r.base) & !0xfff;
    let probe = ram | (1 << 10) | (7 << 7) | 15;
    write64(rd + GICR_PROPBASER, probe);
    let propbaser = read64(rd + GICR_PROPBASER);
    ensure!(
        propbaser == 0,
        "GICR_PROPBASER reads {propbaser:#x} after writing {probe:#x}: want RAZ/WI (no LPIs)"
    );

    let frames = last_only_on_the_last_frame(env)?;
    let spi = |intid: Option<u32>| match intid {
        Some(intid) => text!("{intid}"),
        None => text!("none"),
    };
    Ok(text!(
        "ARE 1; SPIs {} (unowned) and {} (past GICD_TYPER) stay disabled, {control}; PLPIS 0; PROPBASER RAZ/WI; Last on frame {} of {frames} only",
        spi(in_range),
        spi(above),
        frames - 1
    ))
}

/// Walks the redistributor frames: one per DT CPU, each CPU's affinity exactly once,
/// GICR_TYPER.Last on the last frame and no other. The number of frames.
fn last_only_on_the_last_frame(env: &Env) -> Result<usize, crate::report::Failure> {
    const MAX: usize = crate::dtinfo::MAX_CPUS + 1;
    let mut frames: List<(u64, u64), MAX> = List::new();
    for frame in redistributors(&env.info.gic).take(MAX) {
        frames.push(frame);
    }
    let count = frames.len();
    ensure!(
        count > 0 && count == env.info.cpus.len(),
        "{count} redistributor frame(s) up to GICR_TYPER.Last or the region's end; the device tree has {} CPUs",
        env.info.cpus.len()
    );
    for (index, (base, typer)) in frames.iter().enumerate() {
        let last = typer & TYPER_LAST != 0;
        ensure!(
            last == (index + 1 == count),
            "frame {index} of {count} at {base:#x}: GICR_TYPER {typer:#x} has Last {}; want it on frame {} only",
            u8::from(last),
            count - 1
        );
    }
    for mpidr in env.info.cpus.iter() {
        let owners = frames
            .iter()
            .filter(|&(_, typer)| redistributor_affinity(typer) == mpidr)
            .count();
        ensure!(
            owners == 1,
            "{owners} redistributor frames have CPU {mpidr:#x}'s affinity in GICR_TYPER, want 1"
        );
    }
    Ok(count)
}
