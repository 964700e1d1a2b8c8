//! A guest's virtual GICv3 (Arm IHI 0069, "GIC architecture specification, GICv3 and
//! GICv4"): the emulated distributor and redistributors, the interrupt state machine
//! behind them, and the list registers (`ICH_LR<n>_EL2`) through which the guest's CPU
//! interface receives its interrupts. Portable and without `unsafe`: the EL2 layer
//! decodes stage-2 data aborts on the frames ([`crate::vm::mmio`]), reads and writes the
//! real list registers and the physical GIC, and calls in here under the guest's lock.
//!
//! | file | job |
//! |---|---|
//! | [`config`] | [`VgicConfig`] and its checks |
//! | `state`, `irq` | where each interrupt's state lives; what pending and active mean |
//! | `access` | register widths, alignment, 64-bit halves |
//! | `per_irq` | the registers with a field per INTID, shared by GICD and GICR |
//! | `update` | guest-visible changes: enables, pending, active, routing; kicks and hardware mirroring |
//! | `distributor`, `redistributor` | the GICD_* and GICR_* register maps |
//! | `sgi` | ICC_SGI1R_EL1 / ICC_ASGI1R_EL1 / ICC_SGI0R_EL1 |
//! | `sources` | emulated lines and hardware-linked interrupts firing |
//! | `flush` | fold and flush of the list registers |
//! | [`list_register`] | the `ICH_LR<n>_EL2` encoding |
//! | `stats` | counters |
//!
//! **What the guest sees.** A GICv3 with a single Security state (GICD_CTLR.DS = 1),
//! affinity routing always on (ARE RAO/WI), no LPIs, no ITS, no message-based SPIs, no
//! extended INTID ranges, 16 INTID bits, 1-of-N routing (vCPU 0 takes such SPIs), and
//! the SPIs this guest owns; every other SPI reads as zero and ignores writes (writes
//! are counted in [`VgicStats`]). Every interrupt resets disabled, inactive, priority 0
//! and in Group 1.
//!
//! **The protocol with the EL2 layer**, per vCPU:
//! 1. On every exit of the vCPU, [`Vgic::fold_list_registers`] with the values read from
//!    its list registers (what the guest acknowledged and deactivated comes back).
//! 2. Before every entry, [`Vgic::flush_list_registers`] rewrites those values; write
//!    them all back and set ICH_HCR_EL2.UIE as it says. Flush without a fold in between
//!    only if the vCPU did not run.
//! 3. After every call taking [`Effects`], apply them: mirror hardware-linked interrupts
//!    onto the physical GIC and kick the vCPUs named (their CPUs exit, fold and flush).
//!    A flush can also name vCPUs to kick ([`FlushOutcome::kick`]) and hardware effects
//!    to apply ([`FlushOutcome::hardware`]).
//!
//! [`Effect::Kick`] naming the vCPU that made the call means "flush before resuming it".
//! [`Vgic::has_queued`] says whether a vCPU's list registers are out of date.
//!
//! **Facts the EL2 layer must respect.**
//! - ICH_HCR_EL2.UIE raises the maintenance interrupt while at most one list register
//!   is valid: with a single list register it fires at once, every time. A list register
//!   in state 0b00 with HW = 0 and EOI = 1 is not free until its EOI maintenance
//!   interrupt is handled (ICH_ELRSR_EL2, ICH_EISR_EL2): write back every register the
//!   flush returns, free ones as zero.
//! - A HW = 1 entry's pINTID is a physical SPI or PPI (never an SGI); the physical
//!   interrupt must be active (acknowledged with EOImode = 1 and not deactivated, or made
//!   active by [`Effect::HardwareActive`]) for the guest's deactivation to mean anything.
//! - Hardware-linked interrupts start disabled, inactive and routed to vCPU 0's CPU, as
//!   their virtual ones reset; [`Vgic::vcpu_came_online`] restores a vCPU's on the CPU
//!   that starts running it.
//!
//! **Hardware-linked interrupts** (assigned SPIs, the timer and PMU PPIs) run with
//! ICC_CTLR_EL1.EOImode = 1 at EL2: EL2 acknowledges the physical interrupt and drops its
//! priority but leaves it active, then calls [`Vgic::hardware_fired`]; the list register
//! carries HW = 1 and the pINTID, so the guest's deactivation deactivates the physical
//! interrupt and the physical GIC can signal it again. While the virtual interrupt is
//! pending or active, the physical one stays active: a second pending state waits in the
//! physical distributor (IHI 0069 §12.4: with HW = 1 a list register never holds pending
//! and active together).

extern crate alloc;

mod access;
pub mod config;
mod distributor;
pub mod effects;
mod flush;
mod irq;
pub mod list_register;
mod per_irq;
mod redistributor;
mod sgi;
mod sources;
mod state;
mod stats;
mod update;

#[cfg(test)]
mod tests;

use alloc::vec::Vec;

use crate::vm::mmio::AccessSize;

pub use access::RegisterError;
pub use config::{SpiAssignment, SpiSource, VgicConfig, VgicConfigError};
pub use distributor::DISTRIBUTOR_FRAME_SIZE;
pub use effects::{Effect, Effects, VcpuSet};
pub use flush::FlushOutcome;
pub use redistributor::REDISTRIBUTOR_FRAME_SIZE;
pub use sgi::{SgiDelivery, SgiRegister};
pub use sources::NotLinked;
pub use stats::VgicStats;

use config::FIRST_SPI;
use state::{NOT_OWNED, SpiState, VcpuState};

/// One guest's whole vGIC. The caller keeps it under a lock; every method is a short,
/// bounded computation that never allocates and never panics, whatever the guest wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vgic {
    vcpus: Vec<VcpuState>,
    /// The owned SPIs, sorted by INTID.
    spis: Vec<SpiState>,
    /// Index into `spis` by INTID - 32, up to the highest owned SPI; [`NOT_OWNED`] marks
    /// the others.
    spi_lookup: Vec<u16>,
    /// (physical INTID, index into `spis`) of the hardware-linked SPIs, sorted.
    hardware_spis: Vec<(u16, u16)>,
    /// (MPIDR affinity, vCPU), sorted.
    affinities: Vec<(u64, u16)>,
    list_registers: usize,
    priority_bits: u8,
    /// GICD_CTLR.EnableGrp0 and EnableGrp1.
    enable_group0: bool,
    enable_group1: bool,
    stats: VgicStats,
}

impl Vgic {
    /// A vGIC in its reset state.
    ///
    /// # Errors
    /// [`VgicConfigError`] names the first thing wrong with `config`.
    pub fn new(config: VgicConfig) -> Result<Self, VgicConfigError> {
        config.validate()?;
        let vcpus = config
            .vcpu_mpidrs
            .iter()
            .map(|&mpidr| VcpuState::new(mpidr, &config.hardware_ppis))
            .collect();
        let vcpu0_mpidr = config.vcpu_mpidrs.first().copied().unwrap_or(0);
        let mut spis: Vec<SpiState> = config
            .spis
            .iter()
            .map(|assignment| SpiState::new(assignment, vcpu0_mpidr))
            .collect();
        spis.sort_unstable_by_key(|spi| spi.intid);
        let (spi_lookup, hardware_spis) = Self::spi_tables(&spis);
        let mut affinities: Vec<(u64, u16)> = (0u16..)
            .zip(&config.vcpu_mpidrs)
            .map(|(vcpu, &mpidr)| (mpidr, vcpu))
            .collect();
        affinities.sort_unstable();
        Ok(Self {
            vcpus,
            spis,
            spi_lookup,
            hardware_spis,
            affinities,
            list_registers: config.list_registers,
            priority_bits: config.priority_bits,
            enable_group0: false,
            enable_group1: false,
            stats: VgicStats::default(),
        })
    }

    /// The INTID → SPI index table and the sorted physical → SPI index table.
    fn spi_tables(spis: &[SpiState]) -> (Vec<u16>, Vec<(u16, u16)>) {
        let highest = spis.last().map_or(FIRST_SPI, |spi| spi.intid + 1);
        let span = highest.saturating_sub(FIRST_SPI) as usize;
        let mut lookup: Vec<u16> = core::iter::repeat_n(NOT_OWNED, span).collect();
        let mut hardware = Vec::new();
        for (index, spi) in (0u16..).zip(spis) {
            if let Some(slot) = lookup.get_mut((spi.intid - FIRST_SPI) as usize) {
                *slot = index;
            }
            if let Some(physical) = spi.irq.hardware {
                hardware.push((physical, index));
            }
        }
        hardware.sort_unstable();
        (lookup, hardware)
    }

    /// A load from the distributor frame (64 KiB; `offset` within it).
    ///
    /// # Errors
    /// [`RegisterError`] for an access the GIC does not accept (a width the register
    /// does not support, unaligned, outside the frame): the caller injects an external
    /// abort. Reserved offsets read as zero.
    pub fn distributor_read(
        &mut self,
        offset: u64,
        size: AccessSize,
    ) -> Result<u64, RegisterError> {
        self.read_distributor(offset, size)
    }

    /// A store to the distributor frame.
    ///
    /// # Errors
    /// As [`Vgic::distributor_read`]; a refused store changes nothing.
    pub fn distributor_write(
        &mut self,
        offset: u64,
        size: AccessSize,
        value: u64,
        effects: &mut Effects,
    ) -> Result<(), RegisterError> {
        self.write_distributor(offset, size, value, effects)
    }

    /// A load from vCPU `vcpu`'s redistributor (128 KiB: RD_base at +0, SGI_base at
    /// +0x10000).
    ///
    /// # Errors
    /// As [`Vgic::distributor_read`], and [`RegisterError::NoSuchVcpu`].
    pub fn redistributor_read(
        &mut self,
        vcpu: usize,
        offset: u64,
        size: AccessSize,
    ) -> Result<u64, RegisterError> {
        self.read_redistributor(vcpu, offset, size)
    }

    /// A store to vCPU `vcpu`'s redistributor.
    ///
    /// # Errors
    /// As [`Vgic::redistributor_read`]; a refused store changes nothing.
    pub fn redistributor_write(
        &mut self,
        vcpu: usize,
        offset: u64,
        size: AccessSize,
        value: u64,
        effects: &mut Effects,
    ) -> Result<(), RegisterError> {
        self.write_redistributor(vcpu, offset, size, value, effects)
    }

    /// A trapped write of `value` to ICC_SGI1R_EL1, ICC_ASGI1R_EL1 or ICC_SGI0R_EL1
    /// (`kind`) by vCPU `from`. Targets that are not this guest's vCPUs are dropped and
    /// counted; each vCPU given new work is kicked.
    pub fn generate_sgi(
        &mut self,
        from: usize,
        value: u64,
        kind: SgiRegister,
        effects: &mut Effects,
    ) -> SgiDelivery {
        self.send_sgi(from, value, kind, effects)
    }

    /// The level of emulated SPI `intid`'s line (a level-sensitive device such as the
    /// vPL011; configured edge-triggered, a rising edge makes it pending). Ignored, and
    /// counted, for an SPI the guest does not own or that is hardware-linked.
    pub fn set_line_level(&mut self, intid: u32, high: bool, effects: &mut Effects) {
        self.drive_line(intid, high, effects);
    }

    /// Hardware-linked `physical_intid` fired and EL2 acknowledged it (priority dropped,
    /// still active): its virtual interrupt becomes pending, to be delivered as a HW = 1
    /// list register entry. `cpu_vcpu` is the vCPU running on the CPU that took it (it
    /// names the vCPU of a PPI).
    ///
    /// # Errors
    /// [`NotLinked`] if no interrupt of this guest is linked to `physical_intid` (the
    /// caller must deactivate it itself).
    pub fn hardware_fired(
        &mut self,
        cpu_vcpu: usize,
        physical_intid: u32,
        effects: &mut Effects,
    ) -> Result<(), NotLinked> {
        self.fire_hardware(cpu_vcpu, physical_intid, effects)
    }

    /// vCPU `vcpu` starts, or starts again, on a physical CPU (first run, after CPU_OFF):
    /// the effects give that CPU's GIC the state of the vCPU's hardware-linked interrupts
    /// (PPIs enabled as the guest set them and active while their virtual interrupt is
    /// pending or active; SPIs routed to the vCPU routed there), and kick it if it has
    /// work waiting.
    pub fn vcpu_came_online(&mut self, vcpu: usize, effects: &mut Effects) {
        self.mirror_onto_cpu(vcpu, effects);
    }

    /// Fold: the values of vCPU `vcpu`'s list registers read from hardware, in order.
    pub fn fold_list_registers(&mut self, vcpu: usize, lrs: &[u64]) {
        self.fold(vcpu, lrs);
    }

    /// Flush: rewrites `lrs` (vCPU `vcpu`'s list registers, as the caller will write them
    /// back) with its highest-priority pending and active interrupts.
    pub fn flush_list_registers(&mut self, vcpu: usize, lrs: &mut [u64]) -> FlushOutcome {
        self.flush(vcpu, lrs)
    }

    /// Whether vCPU `vcpu` has work its list registers do not show: a pending or active
    /// interrupt not in them, or one whose list register must change (its CPU needs a
    /// kick, or a flush before it runs again).
    pub fn has_queued(&self, vcpu: usize) -> bool {
        self.queued(vcpu)
    }

    /// The counters.
    pub fn stats(&self) -> VgicStats {
        self.stats
    }
}
