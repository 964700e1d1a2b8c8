//! A vCPU's interrupts at EL2: the physical GIC made ready for a vCPU, the physical IRQ
//! exit, the vGIC's effects applied to the physical GIC, and the list registers loaded
//! before the vCPU resumes.
//!
//! The model (as KVM's vgic-v3, Xen's and hvisor's): every physical interrupt is taken at
//! EL2 (HCR_EL2.IMO/FMO = 1), acknowledged and priority-dropped at once
//! (ICC_CTLR_EL1.EOImode = 1). A guest's hardware-linked interrupt (its timers, an
//! assigned device's SPI) stays active until the guest deactivates the virtual one: the
//! list register's HW bit makes that deactivate the physical interrupt too, so a level
//! that is still high cannot storm the hypervisor. Everything else is deactivated here.
//! The vCPU's list registers are only ever written by its own physical CPU, between
//! reading them back and resuming; another CPU that makes an interrupt pending for it
//! sends a kick SGI instead.

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use platform::info::PlatformInfo;

use crate::arch::aarch64::gic::{
    GicError, cpu_interface, distributor, list_registers, redistributor,
};
use crate::arch::aarch64::hyp_timer;
use crate::arch::gicv3::KICK_SGI;
use crate::vm::guest::Vm;
use crate::vm::vgic::{Effect, Effects};

/// The maintenance interrupt's INTID (the DT's, PPI 9 = INTID 25 by default).
static MAINTENANCE_INTID: AtomicU32 = AtomicU32::new(25);
/// The EL2 physical timer's PPI (the DT's, INTID 26 by default).
static HYP_TIMER_INTID: AtomicU32 = AtomicU32::new(26);
/// ICH_VTR_EL2.ListRegs + 1 (every CPU the same: the boot CPU's, checked per CPU).
static LIST_REGISTERS: AtomicUsize = AtomicUsize::new(0);

/// Interrupts taken in one exit before it is reported as a storm.
const STORM_LIMIT: u32 = 64;

/// The PPI the GIC bindings number 9: INTID 25.
const DEFAULT_MAINTENANCE_INTID: u32 = 25;

/// Boot CPU, once, before any vCPU runs: the physical distributor in the hypervisor's
/// hands, and the facts every CPU uses.
pub fn init_gic(info: &PlatformInfo<'_>) -> Result<(), GicError> {
    redistributor::set_regions(&info.gic.redistributors);
    distributor::init(info.gic.distributor.base, crate::cpu::this_mpidr())?;
    let maintenance = info
        .gic
        .maintenance_intid
        .unwrap_or(DEFAULT_MAINTENANCE_INTID);
    MAINTENANCE_INTID.store(maintenance, Ordering::Relaxed);
    if let Some(timer) = info.timer {
        HYP_TIMER_INTID.store(timer.hyp_phys_intid, Ordering::Relaxed);
    }
    let (list_registers, priority_bits) = list_registers::implemented();
    LIST_REGISTERS.store(list_registers, Ordering::Relaxed);
    log::info!(
        "gic: distributor at {:#x} is the hypervisor's; {list_registers} list registers, {priority_bits} priority bits; maintenance INTID {maintenance}",
        info.gic.distributor.base
    );
    Ok(())
}

/// ICH_VTR_EL2's facts as the vGIC configuration needs them.
pub fn list_register_facts() -> (usize, u8) {
    list_registers::implemented()
}

/// On the physical CPU `cpu` about to run vCPU `vcpu` for the first time (or again after
/// CPU_OFF): its redistributor and CPU interface, an empty virtual interface, then
/// whatever is already pending for the vCPU.
pub fn prepare_vcpu(vm: &Vm, cpu: usize, vcpu: usize) -> Result<(), GicError> {
    let mpidr = crate::cpu::this_mpidr();
    redistributor::init_this_cpu(
        cpu,
        mpidr,
        &[
            MAINTENANCE_INTID.load(Ordering::Relaxed),
            HYP_TIMER_INTID.load(Ordering::Relaxed),
        ],
    )?;
    cpu_interface::init_this_cpu();
    list_registers::reset_for_new_vcpu(LIST_REGISTERS.load(Ordering::Relaxed));
    let mut effects = Effects::new();
    vm.vgic.lock().vcpu_came_online(vcpu, &mut effects);
    apply(vm, cpu, &effects);
    load_list_registers(vm, vcpu);
    Ok(())
}

/// A physical IRQ (or FIQ) taken from the guest on CPU `cpu`, which runs vCPU `vcpu`.
pub fn handle_physical_interrupt(vm: &Vm, cpu: usize, vcpu: usize) {
    vm.stats.exits.count_interrupt();
    let maintenance = MAINTENANCE_INTID.load(Ordering::Relaxed);
    let mut effects = Effects::default();
    let mut taken = 0;
    while let Some(intid) = cpu_interface::acknowledge() {
        cpu_interface::drop_priority(intid);
        taken += 1;
        if taken == STORM_LIMIT {
            log::warn!("gic: INTID {intid} keeps coming ({STORM_LIMIT} in one exit)");
        }
        if intid == maintenance {
            // Level-sensitive: asserted while its cause holds (an LR with State 0 and
            // EOI 1 in ICH_EISR_EL2, or UIE with at most one valid LR; IHI 0069
            // §12.4.9), so the list registers are rewritten before it is deactivated,
            // or it is taken again at once, forever.
            load_list_registers(vm, vcpu);
            cpu_interface::deactivate(intid);
            continue;
        }
        if intid == HYP_TIMER_INTID.load(Ordering::Relaxed) {
            hyp_timer::disarm();
            crate::vm::registry::flush_partial_lines();
            cpu_interface::deactivate(intid);
            continue;
        }
        if intid == KICK_SGI {
            // Its work is the list-register refill below.
            cpu_interface::deactivate(intid);
            continue;
        }
        if crate::iommu::setup::is_smmu_interrupt(intid) {
            // A DMA fault or a global error: logged and counted; the device got an
            // abort, the guest and the hypervisor go on.
            crate::iommu::setup::drain_events();
            cpu_interface::deactivate(intid);
            continue;
        }
        if crate::console::input::is_input_interrupt(intid) {
            crate::console::input::service_interrupt();
            cpu_interface::deactivate(intid);
            continue;
        }
        if vm
            .vgic
            .lock()
            .hardware_fired(vcpu, intid, &mut effects)
            .is_err()
        {
            // Nobody's: deactivate it so it cannot block lower priorities.
            vm.stats
                .unexpected_interrupts
                .fetch_add(1, Ordering::Relaxed);
            cpu_interface::deactivate(intid);
        }
        // A hardware-linked one stays active until the guest deactivates it.
    }
    apply(vm, cpu, &effects);
    load_list_registers(vm, vcpu);
}

/// Folds vCPU `vcpu`'s list registers back into its vGIC and loads the highest-priority
/// pending interrupts into them (this CPU's vCPU only); asks for the underflow
/// maintenance interrupt while more wait than the registers hold.
pub fn load_list_registers(vm: &Vm, vcpu: usize) {
    let count = LIST_REGISTERS.load(Ordering::Relaxed);
    let mut lrs = [0u64; list_registers::MAX_LIST_REGISTERS];
    let lrs = &mut lrs[..count.min(list_registers::MAX_LIST_REGISTERS)];
    list_registers::read_all(lrs);
    let outcome = {
        let mut vgic = vm.vgic.lock();
        vgic.fold_list_registers(vcpu, lrs);
        vgic.flush_list_registers(vcpu, lrs)
    };
    list_registers::write_changed(lrs, outcome.changed);
    let underflow = if outcome.underflow_interrupt {
        list_registers::HCR_UIE
    } else {
        0
    };
    list_registers::set_control(list_registers::HCR_EN | underflow);
    // What the fold released: a physical activation nobody holds any more, an SPI
    // another vCPU can now take.
    let cpu = vm.vcpus.physical_cpu(vcpu).unwrap_or(0);
    let kicks = outcome.kick.iter().map(|vcpu| Effect::Kick { vcpu });
    apply_each(vm, cpu, outcome.hardware.iter().copied().chain(kicks));
}

/// Applies what a vGIC call asked of the hardware, on CPU `cpu`.
pub fn apply(vm: &Vm, cpu: usize, effects: &Effects) {
    if effects.overflowed() {
        // One call's effects always fit (the vGIC's tests check it); several batched
        // ones might not: say so rather than lose it silently.
        log::warn!("gic: vGIC effects overflowed their list; some hardware state was not mirrored");
    }
    apply_each(vm, cpu, effects.iter());
}

fn apply_each(vm: &Vm, cpu: usize, effects: impl Iterator<Item = Effect>) {
    for effect in effects {
        let done = match effect {
            Effect::Kick { vcpu } => {
                kick(vm, cpu, vcpu);
                Ok(())
            }
            Effect::HardwareEnable {
                physical_intid,
                vcpu,
                enabled,
            } => on_cpu_of(
                vm,
                vcpu,
                physical_intid,
                |target| redistributor::set_ppi_enabled(target, physical_intid, enabled),
                || distributor::set_enabled(physical_intid, enabled),
            ),
            Effect::HardwarePending {
                physical_intid,
                vcpu,
                pending,
            } => on_cpu_of(
                vm,
                vcpu,
                physical_intid,
                |target| redistributor::set_ppi_pending(target, physical_intid, pending),
                || distributor::set_pending(physical_intid, pending),
            ),
            Effect::HardwareActive {
                physical_intid,
                vcpu,
                active,
            } => on_cpu_of(
                vm,
                vcpu,
                physical_intid,
                |target| redistributor::set_ppi_active(target, physical_intid, active),
                || distributor::set_active(physical_intid, active),
            ),
            Effect::HardwareRoute {
                physical_intid,
                vcpu,
            } => match vm.vcpus.physical_mpidr(vcpu) {
                Some(mpidr) => distributor::route(physical_intid, mpidr),
                None => Ok(()),
            },
            Effect::HardwareTrigger {
                physical_intid,
                edge,
            } => distributor::set_edge(physical_intid, edge),
        };
        if let Err(error) = done {
            log::warn!("gic: {effect:?}: {error}");
        }
    }
}

/// A private interrupt acts on the redistributor of the CPU that runs `vcpu`; an SPI on
/// the distributor.
fn on_cpu_of(
    vm: &Vm,
    vcpu: usize,
    intid: u32,
    private: impl FnOnce(usize) -> Result<(), GicError>,
    shared: impl FnOnce() -> Result<(), GicError>,
) -> Result<(), GicError> {
    if intid < 32 {
        vm.vcpus.physical_cpu(vcpu).map_or(Ok(()), private)
    } else {
        shared()
    }
}

/// Sends the kick SGI to every vCPU of `vm` that is not off, except vCPU `own` (this
/// CPU's): each takes an exit to EL2 at once, where it notices its guest ended or is
/// being reset. A vCPU still starting (OnPending) is kicked too: it may be in the guest
/// by the time the SGI arrives.
pub fn kick_others(vm: &Vm, own: usize) {
    for vcpu in (0..vm.vcpus.count()).filter(|&v| v != own) {
        if vm.vcpus.power(vcpu) != crate::vm::psci::CpuPowerState::Off
            && let Some(mpidr) = vm.vcpus.physical_mpidr(vcpu)
        {
            cpu_interface::send_sgi(mpidr, KICK_SGI);
        }
    }
}

/// Makes vCPU `vcpu` look at its pending interrupts: on this CPU that happens before it
/// resumes anyway; a vCPU running elsewhere gets the kick SGI; one that is off loads them
/// when it starts.
fn kick(vm: &Vm, this_cpu: usize, vcpu: usize) {
    let Some(target) = vm.vcpus.physical_cpu(vcpu) else {
        return;
    };
    if target == this_cpu || vm.vcpus.power(vcpu) != crate::vm::psci::CpuPowerState::On {
        return;
    }
    if let Some(mpidr) = vm.vcpus.physical_mpidr(vcpu) {
        vm.stats.kicks.fetch_add(1, Ordering::Relaxed);
        cpu_interface::send_sgi(mpidr, KICK_SGI);
    }
}
