//! The physical redistributors (GICR_*): each CPU finds its own by affinity, wakes it and
//! configures its SGIs and PPIs. Also the mirror of a guest's hardware-linked PPIs, which
//! live in the redistributor of the CPU that runs the vCPU.

use core::sync::atomic::{AtomicUsize, Ordering};

use arrayvec::ArrayVec;
use platform::info::{MAX_CPUS, MAX_REDIST_REGIONS, PhysRange};

use super::{GicError, read32, read64, write32};
use crate::arch::aarch64::sysreg;
use crate::arch::gicv3::{self, DEFAULT_PRIORITY, KICK_SGI, gicr};

/// The DT's redistributor regions, set once by the boot CPU.
static REGIONS: spin::Once<ArrayVec<PhysRange, MAX_REDIST_REGIONS>> = spin::Once::new();
/// Each CPU's RD_base, once found (0: not yet).
static FRAMES: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];

/// Records where the redistributors are (boot CPU, before any CPU's [`init_this_cpu`]).
pub fn set_regions(regions: &[PhysRange]) {
    REGIONS.call_once(|| regions.iter().copied().take(MAX_REDIST_REGIONS).collect());
}

/// Walks every region's frames until one carries `mpidr`'s affinity (IHI 0069 §12.10:
/// frames follow each other until GICR_TYPER.Last).
fn find(mpidr: u64) -> Result<usize, GicError> {
    let regions = REGIONS.get().ok_or(GicError::NotInitialised)?;
    let wanted = mpidr & 0xff_00ff_ffff;
    for region in regions {
        let mut frame = region.base;
        while frame + gicr::FRAME_PAIR <= region.end() {
            let typer = read64(frame as usize, gicr::TYPER);
            if gicv3::mpidr_of_redistributor(typer) == wanted {
                return Ok(frame as usize);
            }
            match gicv3::next_redistributor_stride(typer) {
                Some(stride) => frame += stride,
                None => break,
            }
        }
    }
    Err(GicError::NoRedistributor { mpidr })
}

/// GICR_CTLR.RWP clears once an ICENABLER0 write took effect (IHI 0069 §12.11.2).
fn wait_for_writes(frame: usize) -> Result<(), GicError> {
    let done = sysreg::wait_until(
        || read32(frame, gicr::CTLR) & gicr::CTLR_RWP == 0,
        super::COMPLETION_TIMEOUT_US,
    );
    if done {
        Ok(())
    } else {
        Err(GicError::Timeout {
            what: "a redistributor write (GICR_CTLR.RWP)",
        })
    }
}

/// Finds, wakes and configures the redistributor of CPU `index` (this CPU, `mpidr`):
/// every SGI/PPI Group 1, disabled, inactive, not pending, at [`DEFAULT_PRIORITY`]; then
/// the hypervisor's own ([`KICK_SGI`] and the PPIs `own_ppis`: the maintenance
/// interrupt, the EL2 timer) enabled. A guest's hardware PPIs are enabled when its vGIC
/// says so ([`set_ppi_enabled`]).
pub fn init_this_cpu(index: usize, mpidr: u64, own_ppis: &[u32]) -> Result<(), GicError> {
    let frame = find(mpidr)?;
    // GICR_WAKER: clearing ProcessorSleep tells the redistributor this PE takes
    // interrupts; ChildrenAsleep clears once it has (IHI 0069 §12.11.38).
    let waker = read32(frame, gicr::WAKER);
    write32(frame, gicr::WAKER, waker & !gicr::WAKER_PROCESSOR_SLEEP);
    let awake = sysreg::wait_until(
        || read32(frame, gicr::WAKER) & gicr::WAKER_CHILDREN_ASLEEP == 0,
        super::COMPLETION_TIMEOUT_US,
    );
    if !awake {
        return Err(GicError::Timeout {
            what: "waking the redistributor (GICR_WAKER.ChildrenAsleep)",
        });
    }
    write32(frame, gicr::IGROUPR0, !0);
    write32(frame, gicr::ICENABLER0, !0);
    write32(frame, gicr::ICACTIVER0, !0);
    write32(frame, gicr::ICPENDR0, !0);
    let priorities = u32::from_ne_bytes([DEFAULT_PRIORITY; 4]);
    for first in (0..32).step_by(4) {
        write32(frame, gicr::IPRIORITYR + first, priorities);
    }
    wait_for_writes(frame)?;
    let own = own_ppis
        .iter()
        .filter(|&&intid| intid < 32)
        .fold(1u32 << KICK_SGI, |bits, &intid| bits | (1 << intid));
    write32(frame, gicr::ISENABLER0, own);
    if let Some(slot) = FRAMES.get(index) {
        slot.store(frame, Ordering::Release);
    }
    Ok(())
}

fn frame_of(cpu: usize) -> Result<usize, GicError> {
    match FRAMES.get(cpu).map(|slot| slot.load(Ordering::Acquire)) {
        Some(0) | None => Err(GicError::NotInitialised),
        Some(frame) => Ok(frame),
    }
}

/// Enables or disables private interrupt `intid` (< 32) on CPU `cpu`'s redistributor.
pub fn set_ppi_enabled(cpu: usize, intid: u32, enabled: bool) -> Result<(), GicError> {
    let frame = frame_of(cpu)?;
    let bit = 1 << (intid % 32);
    if enabled {
        write32(frame, gicr::ISENABLER0, bit);
        Ok(())
    } else {
        write32(frame, gicr::ICENABLER0, bit);
        wait_for_writes(frame)
    }
}

/// Sets or clears private interrupt `intid`'s pending state on CPU `cpu`.
pub fn set_ppi_pending(cpu: usize, intid: u32, pending: bool) -> Result<(), GicError> {
    let frame = frame_of(cpu)?;
    let register = if pending {
        gicr::ISPENDR0
    } else {
        gicr::ICPENDR0
    };
    write32(frame, register, 1 << (intid % 32));
    Ok(())
}

/// Sets or clears private interrupt `intid`'s active state on CPU `cpu`.
pub fn set_ppi_active(cpu: usize, intid: u32, active: bool) -> Result<(), GicError> {
    let frame = frame_of(cpu)?;
    let register = if active {
        gicr::ISACTIVER0
    } else {
        gicr::ICACTIVER0
    };
    write32(frame, register, 1 << (intid % 32));
    Ok(())
}
