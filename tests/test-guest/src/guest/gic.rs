//! The guest's GICv3 driver (Arm IHI 0069H): the distributor and this CPU's
//! redistributor through the frames the DT names, the CPU interface through the ICC_*
//! system registers. Under the hypervisor the frames are emulated (every access traps),
//! the ICC_* registers are the virtual CPU interface (ICV_*), and ICC_SGI1R_EL1 writes
//! trap.
//!
//! Interrupts are never taken: PSTATE.I stays set and the tests poll ICC_IAR1_EL1, which
//! reports the highest-priority pending interrupt whether or not the PE would take it.
//! Register offsets and fields come from `crate::gicv3`.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use super::cpu::{self, Deadline, read_sysreg, write_sysreg};
use crate::failed;
use crate::gic_dt::{GicInfo, MAX_REDISTRIBUTOR_REGIONS};
use crate::gicv3::*;
use crate::layout::Range;
use crate::report::Failure;

/// How long a GIC write may take effect (GICD_CTLR.RWP, GICR_WAKER.ChildrenAsleep).
const SETTLE_MS: u64 = 100;

/// A 32-bit load from a GIC register. Always a plain `LDR Wt, [Xn]`: the hypervisor can
/// emulate only an access whose syndrome describes it (ISV = 1: no pair, no writeback),
/// which `read_volatile` does not promise.
pub fn read32(addr: u64) -> u32 {
    let value: u32;
    // SAFETY: `addr` is a register in the GIC frames the DT names, mapped Device-nGnRE
    // (mmu.rs); the load touches no memory Rust knows about.
    unsafe { asm!("ldr {v:w}, [{a}]", a = in(reg) addr, v = out(reg) value, options(nostack)) };
    value
}

pub fn write32(addr: u64, value: u32) {
    // SAFETY: as in `read32`; the callers say what the store does to the GIC.
    unsafe { asm!("str {v:w}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack)) };
}

pub fn read64(addr: u64) -> u64 {
    let value: u64;
    // SAFETY: as in `read32`.
    unsafe { asm!("ldr {v}, [{a}]", a = in(reg) addr, v = out(reg) value, options(nostack)) };
    value
}

pub fn write64(addr: u64, value: u64) {
    // SAFETY: as in `write32`.
    unsafe { asm!("str {v}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack)) };
}

fn write8(addr: u64, value: u8) {
    // SAFETY: as in `write32` (GICR_IPRIORITYR takes byte stores).
    unsafe {
        asm!("strb {v:w}, [{a}]", a = in(reg) addr, v = in(reg) u32::from(value), options(nostack))
    };
}

/// Acknowledges the highest-priority pending Group 1 interrupt: its INTID, or
/// [`SPURIOUS`] when none can be (nothing pending above the running priority and the
/// priority mask).
pub fn acknowledge() -> u32 {
    let iar: u64;
    // SAFETY: reading ICC_IAR1_EL1 changes only the CPU interface's state. Without
    // `nomem`, so the compiler keeps memory accesses on their side of it: what a handler
    // reads after the acknowledgement was written before the interrupt was sent.
    unsafe { asm!("mrs {}, icc_iar1_el1", out(reg) iar, options(nostack, preserves_flags)) };
    iar_intid(iar)
}

/// Ends interrupt `intid` (priority drop and, with EOImode 0, deactivation).
pub fn end_of_interrupt(intid: u32) {
    write_sysreg!("icc_eoir1_el1", u64::from(intid));
    // A system register write is guaranteed seen by later instructions only after a
    // context synchronization event (IHI 0069H, "Observability of the effects of
    // accesses to the GIC registers"): the next ICC_IAR1_EL1 read must see the running
    // priority dropped. Linux's gic_write_eoir does the same.
    cpu::isb();
}

/// Sends SGI `intid` to the PE with MPIDR affinity `affinity`. A caller that signals
/// memory with it issues a DSB first (see `send_sgi_after_stores`).
pub fn send_sgi(affinity: u64, intid: u32) -> Result<(), Failure> {
    let value = sgi1r(affinity, intid).ok_or_else(|| failed!("INTID {intid} is not an SGI"))?;
    write_sysreg!("icc_sgi1r_el1", value);
    // The SGI is generated once the write executes; the ISB makes sure it has before the
    // caller goes on to wait for it (as Linux's gic_ipi_send_mask).
    cpu::isb();
    Ok(())
}

/// [`send_sgi`] after the stores the receiver will read.
pub fn send_sgi_after_stores(affinity: u64, intid: u32) -> Result<(), Failure> {
    // An MSR to ICC_SGI1R_EL1 is not a memory access, so a DMB does not order it after
    // the stores; a DSB lets no later instruction (the MSR) take effect until they are
    // complete (as Linux's gic_ipi_send_mask and Xen's send_SGI do).
    cpu::dsb_ish();
    send_sgi(affinity, intid)
}

/// Polls ICC_IAR1_EL1 until it acknowledges something or `deadline` passes: the INTID,
/// or [`SPURIOUS`].
pub fn wait_for_interrupt(deadline: &Deadline) -> u32 {
    loop {
        let intid = acknowledge();
        if intid != SPURIOUS || deadline.passed() {
            return intid;
        }
        core::hint::spin_loop();
    }
}

/// Masks IRQs at EL1: the vectors treat any exception as fatal, and nothing here needs
/// one taken.
pub fn mask_irqs() {
    // SAFETY: sets PSTATE.I only.
    unsafe { asm!("msr daifset, #2", options(nostack, preserves_flags)) };
}

/// The GIC layout the boot CPU published for the secondary: distributor base, then
/// (base, size) of each redistributor region; size 0 ends the list.
static PUBLISHED: [AtomicU64; 1 + 2 * MAX_REDISTRIBUTOR_REGIONS] =
    [const { AtomicU64::new(0) }; 1 + 2 * MAX_REDISTRIBUTOR_REGIONS];

/// Makes `info`'s frames known to a secondary started after this.
pub fn publish(info: &GicInfo) {
    PUBLISHED[0].store(info.distributor.map_or(0, |d| d.base), Ordering::Relaxed);
    for i in 0..MAX_REDISTRIBUTOR_REGIONS {
        let region = info.redistributors.get(i).unwrap_or_default();
        PUBLISHED[1 + 2 * i].store(region.base, Ordering::Relaxed);
        PUBLISHED[2 + 2 * i].store(region.size, Ordering::Release);
    }
}

/// What [`publish`] stored (the console and timer INTIDs are not carried).
pub fn published() -> GicInfo {
    let mut info = GicInfo::default();
    let distributor = PUBLISHED[0].load(Ordering::Acquire);
    info.distributor = (distributor != 0).then(|| Range::new(distributor, 0x1_0000));
    for i in 0..MAX_REDISTRIBUTOR_REGIONS {
        let size = PUBLISHED[2 + 2 * i].load(Ordering::Acquire);
        if size == 0 {
            break;
        }
        let _ = info.redistributors.push(Range::new(
            PUBLISHED[1 + 2 * i].load(Ordering::Relaxed),
            size,
        ));
    }
    info
}

/// Every redistributor the regions hold, in order: (RD_base, GICR_TYPER). A region ends
/// at the frame with GICR_TYPER.Last or at its end, whichever comes first.
pub fn redistributors(info: &GicInfo) -> impl Iterator<Item = (u64, u64)> + '_ {
    info.redistributors.iter().flat_map(|region| {
        let end = region.end_saturating();
        let mut frame = Some(region.base);
        core::iter::from_fn(move || {
            let base = frame.filter(|&f| f.saturating_add(GICR_FRAME) <= end)?;
            let typer = read64(base + GICR_TYPER);
            let stride = if typer & TYPER_VLPIS != 0 {
                GICR_FRAME_WITH_VLPIS
            } else {
                GICR_FRAME
            };
            frame = (typer & TYPER_LAST == 0).then(|| base + stride);
            Some((base, typer))
        })
    })
}

/// This CPU's view of the GIC.
#[derive(Clone, Copy)]
pub struct Gic {
    pub distributor: u64,
    /// This CPU's redistributor (RD_base; SGI_base is 64 KiB above).
    pub redistributor: u64,
}

impl Gic {
    /// Readies the GIC for this CPU: the distributor with affinity routing and Group 1
    /// on, this CPU's redistributor (found by GICR_TYPER affinity) awake, and the CPU
    /// interface on with every priority let through. Repeatable.
    pub fn init(info: &GicInfo) -> Result<Self, Failure> {
        mask_irqs();
        let distributor = info
            .distributor
            .ok_or_else(|| failed!("the device tree has no arm,gic-v3 node with a distributor"))?
            .base;
        let affinity = cpu::mpidr();
        let redistributor = redistributors(info)
            .find(|&(_, typer)| redistributor_affinity(typer) == affinity)
            .map(|(base, _)| base)
            .ok_or_else(|| {
                failed!(
                    "no redistributor's GICR_TYPER has affinity {affinity:#x} ({} frame(s) in {} region(s))",
                    redistributors(info).count(),
                    info.redistributors.len()
                )
            })?;
        let gic = Self {
            distributor,
            redistributor,
        };
        gic.enable_distributor()?;
        gic.wake()?;
        init_cpu_interface()?;
        Ok(gic)
    }

    fn enable_distributor(&self) -> Result<(), Failure> {
        let ctlr = read32(self.distributor + GICD_CTLR);
        write32(
            self.distributor + GICD_CTLR,
            ctlr | CTLR_ARE | CTLR_ENABLE_GRP1,
        );
        let deadline = Deadline::after_ms(SETTLE_MS);
        while read32(self.distributor + GICD_CTLR) & CTLR_RWP != 0 {
            if deadline.passed() {
                return Err(failed!(
                    "GICD_CTLR.RWP still set {SETTLE_MS} ms after enabling Group 1"
                ));
            }
        }
        Ok(())
    }

    /// GICR_WAKER: clear ProcessorSleep, then wait for ChildrenAsleep to clear (IHI 0069H
    /// §12.11, GICR_WAKER).
    fn wake(&self) -> Result<(), Failure> {
        let waker = self.redistributor + GICR_WAKER;
        write32(waker, read32(waker) & !WAKER_PROCESSOR_SLEEP);
        let deadline = Deadline::after_ms(SETTLE_MS);
        while read32(waker) & WAKER_CHILDREN_ASLEEP != 0 {
            if deadline.passed() {
                return Err(failed!(
                    "GICR_WAKER {:#x} at {:#x}: ChildrenAsleep still set {SETTLE_MS} ms after clearing ProcessorSleep",
                    read32(waker),
                    self.redistributor
                ));
            }
        }
        Ok(())
    }

    /// Sets up the SGIs and PPIs in `mask` (bit = INTID) of this CPU: disabled, not
    /// pending, not active, Group 1, at `priority(intid)`; then enabled.
    pub fn ready_private(&self, mask: u32, priority: impl Fn(u32) -> u8) {
        let rd = self.redistributor;
        write32(rd + GICR_ICENABLER0, mask);
        write32(rd + GICR_ICPENDR0, mask);
        write32(rd + GICR_ICACTIVER0, mask);
        write32(rd + GICR_IGROUPR0, read32(rd + GICR_IGROUPR0) | mask);
        for intid in (0..32).filter(|i| mask & (1 << i) != 0) {
            write8(rd + GICR_IPRIORITYR + u64::from(intid), priority(intid));
        }
        write32(rd + GICR_ISENABLER0, mask);
    }

    /// Disables the SGIs and PPIs in `mask` of this CPU.
    pub fn disable_private(&self, mask: u32) {
        write32(self.redistributor + GICR_ICENABLER0, mask);
    }
}

/// Turns on this CPU's interface: system registers, EOImode 0, every priority through the
/// mask, Group 1 on.
fn init_cpu_interface() -> Result<(), Failure> {
    write_sysreg!("icc_sre_el1", read_sysreg!("icc_sre_el1") | SRE_ENABLE);
    // ICC_SRE_EL1 (IHI 0069H §12.2): the new value governs later ICC_* accesses only
    // after a context synchronization event.
    cpu::isb();
    let sre = read_sysreg!("icc_sre_el1");
    if sre & 1 == 0 {
        return Err(failed!(
            "ICC_SRE_EL1 reads {sre:#x} after setting SRE: no system-register interface"
        ));
    }
    // EOImode 0: ICC_EOIR1_EL1 drops the running priority and deactivates, so the tests
    // need no ICC_DIR_EL1.
    write_sysreg!(
        "icc_ctlr_el1",
        read_sysreg!("icc_ctlr_el1") & !ICC_CTLR_EOIMODE
    );
    write_sysreg!("icc_pmr_el1", PMR_ALLOW_ALL);
    write_sysreg!("icc_igrpen1_el1", 1);
    // As for SRE: the IAR reads that follow must see EOImode, the mask and the group
    // enabled.
    cpu::isb();
    let (ctlr, pmr, igrpen1) = (
        read_sysreg!("icc_ctlr_el1"),
        read_sysreg!("icc_pmr_el1"),
        read_sysreg!("icc_igrpen1_el1"),
    );
    if ctlr & ICC_CTLR_EOIMODE != 0 || pmr < 0x80 || igrpen1 & 1 == 0 {
        return Err(failed!(
            "CPU interface not as written: ICC_CTLR_EL1 {ctlr:#x} (want EOImode 0), ICC_PMR_EL1 {pmr:#x} (want 0xff or its top bits), ICC_IGRPEN1_EL1 {igrpen1:#x} (want 1)"
        ));
    }
    Ok(())
}

/// Acknowledges and ends whatever is pending now: the INTIDs (at most `N`, then the
/// rest are ended uncounted), to report as strays.
pub fn drain<const N: usize>() -> crate::fixed::List<u32, N> {
    let mut strays = crate::fixed::List::new();
    // Bounded: a stuck level interrupt would come back for ever.
    for _ in 0..64 {
        let intid = acknowledge();
        if intid == SPURIOUS {
            break;
        }
        end_of_interrupt(intid);
        let _ = strays.push(intid);
    }
    strays
}
