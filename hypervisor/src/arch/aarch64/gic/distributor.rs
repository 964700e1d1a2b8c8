//! The physical distributor (GICD_*): initialised once by the boot CPU with every SPI
//! disabled, Group 1, level-triggered, at one priority and routed to the boot CPU; the SPIs
//! of assigned devices and of the hypervisor's own console are then enabled one by one.

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use super::{GicError, read32, write32, write64};
use crate::arch::aarch64::sysreg;
use crate::arch::gicv3::{self, DEFAULT_PRIORITY, gicd};

/// GICD base (0: not initialised).
static BASE: AtomicUsize = AtomicUsize::new(0);
/// INTIDs the distributor implements (SPIs end below this).
static INTIDS: AtomicU32 = AtomicU32::new(0);

fn base() -> Result<usize, GicError> {
    match BASE.load(Ordering::Acquire) {
        0 => Err(GicError::NotInitialised),
        base => Ok(base),
    }
}

/// Waits for GICD_CTLR.RWP to clear: IHI 0069 §12.9.4 requires it after writes to
/// GICD_CTLR (group enables, ARE) and GICD_ICENABLER before relying on their effect.
fn wait_for_writes(base: usize) -> Result<(), GicError> {
    let done = sysreg::wait_until(
        || read32(base, gicd::CTLR) & gicd::CTLR_RWP == 0,
        super::COMPLETION_TIMEOUT_US,
    );
    if done {
        Ok(())
    } else {
        Err(GicError::Timeout {
            what: "a distributor write (GICD_CTLR.RWP)",
        })
    }
}

/// Resets the distributor to the hypervisor's configuration (as Linux's `gic_dist_init`):
/// disabled while it is rewritten, every SPI Group 1 / disabled / inactive / not pending /
/// level / [`DEFAULT_PRIORITY`] / routed to `boot_mpidr`, then affinity routing and Group
/// 1 on.
pub fn init(distributor_base: u64, boot_mpidr: u64) -> Result<(), GicError> {
    let base = distributor_base as usize;
    write32(base, gicd::CTLR, 0);
    wait_for_writes(base)?;
    let intids = gicv3::implemented_intids(read32(base, gicd::TYPER));
    for first in (32..intids).step_by(32) {
        let (offset, _) = gicv3::bit_register(first);
        write32(base, gicd::IGROUPR + offset, !0);
        write32(base, gicd::ICENABLER + offset, !0);
        write32(base, gicd::ICACTIVER + offset, !0);
        write32(base, gicd::ICPENDR + offset, !0);
    }
    for first in (32..intids).step_by(16) {
        let (offset, _) = gicv3::config_register(first);
        write32(base, gicd::ICFGR + offset, 0);
    }
    let priorities = u32::from_ne_bytes([DEFAULT_PRIORITY; 4]);
    for first in (32..intids).step_by(4) {
        write32(base, gicd::IPRIORITYR + first as usize, priorities);
    }
    for intid in 32..intids {
        write64(
            base,
            gicd::IROUTER + 8 * intid as usize,
            gicv3::irouter_for(boot_mpidr),
        );
    }
    wait_for_writes(base)?;
    write32(
        base,
        gicd::CTLR,
        gicd::CTLR_ARE | gicd::CTLR_ENABLE_GRP1A | gicd::CTLR_ENABLE_GRP1,
    );
    wait_for_writes(base)?;
    INTIDS.store(intids, Ordering::Relaxed);
    BASE.store(base, Ordering::Release);
    Ok(())
}

/// Whether `intid` is an SPI this distributor implements.
pub fn is_spi(intid: u32) -> bool {
    (32..INTIDS.load(Ordering::Relaxed)).contains(&intid)
}

/// Enables or disables SPI `intid`.
pub fn set_enabled(intid: u32, enabled: bool) -> Result<(), GicError> {
    let base = base()?;
    let (offset, bit) = gicv3::bit_register(intid);
    if enabled {
        write32(base, gicd::ISENABLER + offset, bit);
        Ok(())
    } else {
        write32(base, gicd::ICENABLER + offset, bit);
        wait_for_writes(base)
    }
}

/// Sets or clears SPI `intid`'s pending state.
pub fn set_pending(intid: u32, pending: bool) -> Result<(), GicError> {
    let base = base()?;
    let (offset, bit) = gicv3::bit_register(intid);
    let register = if pending {
        gicd::ISPENDR
    } else {
        gicd::ICPENDR
    };
    write32(base, register + offset, bit);
    Ok(())
}

/// Sets or clears SPI `intid`'s active state.
pub fn set_active(intid: u32, active: bool) -> Result<(), GicError> {
    let base = base()?;
    let (offset, bit) = gicv3::bit_register(intid);
    let register = if active {
        gicd::ISACTIVER
    } else {
        gicd::ICACTIVER
    };
    write32(base, register + offset, bit);
    Ok(())
}

/// Makes SPI `intid` edge- (`true`) or level-triggered. IHI 0069 §12.9.9: changing the
/// configuration of an enabled interrupt is UNPREDICTABLE, so it is disabled around it.
pub fn set_edge(intid: u32, edge: bool) -> Result<(), GicError> {
    let base = base()?;
    let (bit_offset, bit) = gicv3::bit_register(intid);
    let was_enabled = read32(base, gicd::ISENABLER + bit_offset) & bit != 0;
    if was_enabled {
        set_enabled(intid, false)?;
    }
    let (offset, edge_bit) = gicv3::config_register(intid);
    let config = read32(base, gicd::ICFGR + offset);
    let config = if edge {
        config | edge_bit
    } else {
        config & !edge_bit
    };
    write32(base, gicd::ICFGR + offset, config);
    if was_enabled {
        set_enabled(intid, true)?;
    }
    Ok(())
}

/// Routes SPI `intid` to the PE `mpidr`.
pub fn route(intid: u32, mpidr: u64) -> Result<(), GicError> {
    let base = base()?;
    write64(
        base,
        gicd::IROUTER + 8 * intid as usize,
        gicv3::irouter_for(mpidr),
    );
    Ok(())
}
