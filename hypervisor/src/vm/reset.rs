//! PSCI SYSTEM_RESET for one of several guests: that guest alone restarts from its
//! original images with its memory scrubbed; the others run on undisturbed.
//!
//! 1. The guest is marked resetting; its other vCPUs are kicked and power their CPUs off
//!    at their next exit (`vcpu::stop_if_guest_ended`), and this CPU waits until each
//!    reads as off.
//! 2. Its stage 2 gets back one RWX mapping of all its RAM (MEM_PROTECT's splits
//!    collapse into blocks again, with the TLBIs that needs, under the VMID it owns).
//! 3. Its RAM is zeroed and cleaned to the PoC (the new kernel starts with its MMU and
//!    caches off and must not see the old one's data, nor stale lines over its images).
//! 4. It is planned again from its description and the modules (never given to any
//!    guest), as at boot, with `hyp.reset=N` (its Nth reset) added to its command line so
//!    it can tell; its vGIC is the one it was built with.
//! 5. vCPU 0 starts at the entry point: on this CPU when it is vCPU 0's, else on vCPU
//!    0's CPU (started by firmware, fresh) while this one powers off.

use core::sync::atomic::Ordering;

use pgtable::{Access, Attributes, MemoryType};

use crate::arch::cache;
use crate::vm::guest::{GuestBoot, Vm};
use crate::vm::psci::CpuPowerState;
use crate::vm::registry;

/// How long the other vCPUs get to leave their CPUs.
const STOP_TIMEOUT_US: u64 = 1_000_000;

/// Why the reset could not be done (the guest is then stopped instead).
#[derive(Debug)]
pub enum ResetError {
    /// Not a guest that can be reset alone (no boot recipe, or not running).
    NotResettable,
    /// A vCPU did not leave its CPU in time.
    VcpuStuck { vcpu: usize },
    /// Its stage 2 could not be remade.
    Stage2(pgtable::Error),
    /// It could not be planned again (never expected: it was, at boot).
    Reload(alloc::string::String),
}

/// A guest reset and ready to start again: where its vCPU 0 enters, x0 there (its DTB).
pub struct Restart {
    pub entry: u64,
    pub dtb: u64,
}

/// Resets `vm` from its vCPU `vcpu` on this CPU: its other vCPUs have left, its memory
/// and images are as at boot. The caller starts vCPU 0 (`vm::vcpu`). An error leaves the
/// guest stopped, for the caller to report.
///
/// # Errors
/// [`ResetError`]: what could not be done.
pub fn reset_guest(vm: &Vm, vcpu: usize) -> Result<Restart, ResetError> {
    let Some(boot) = vm.boot.as_ref() else {
        return Err(ResetError::NotResettable);
    };
    if !registry::begin_reset(vm.number) {
        return Err(ResetError::NotResettable);
    }
    stop_other_vcpus(vm, vcpu)?;
    restore_stage2(vm, boot).map_err(ResetError::Stage2)?;
    scrub(boot);
    let resets = vm.stats.resets.fetch_add(1, Ordering::Relaxed) + 1;
    let mut domain = boot.domain.clone();
    let marker = alloc::format!("hyp.reset={resets}");
    domain.bootargs = Some(match domain.bootargs.take() {
        Some(args) => alloc::format!("{args} {marker}"),
        None => marker,
    });
    let (entry, dtb) =
        crate::vm::build_domains::load_domain(&domain, boot.host_dtb, &boot.ram, boot.vcpus)
            .map_err(ResetError::Reload)?;
    *vm.vgic.lock() = boot.vgic.clone();
    log::info!(
        "guest {}: reset ({resets} so far): RAM [{:#x}, +{:#x}) scrubbed, images reloaded, restarting at {entry:#x}",
        vm.number,
        boot.ram.pa,
        boot.ram.ipa.size,
    );
    registry::end_reset(vm.number);
    Ok(Restart { entry, dtb })
}

/// Kicks every other vCPU of `vm` that is on, and waits until each reads as off.
fn stop_other_vcpus(vm: &Vm, own: usize) -> Result<(), ResetError> {
    crate::vm::interrupts::kick_others(vm, own);
    for vcpu in (0..vm.vcpus.count()).filter(|&v| v != own) {
        let off = || vm.vcpus.power(vcpu) == CpuPowerState::Off;
        if !crate::arch::sysreg::wait_until(off, STOP_TIMEOUT_US) {
            return Err(ResetError::VcpuStuck { vcpu });
        }
    }
    Ok(())
}

/// One RWX mapping of all the guest's RAM again: permission splits collapse.
fn restore_stage2(vm: &Vm, boot: &GuestBoot) -> Result<(), pgtable::Error> {
    let rwx = Attributes::new(
        Access::from_bits_truncate(0b111),
        MemoryType::NormalWriteBack,
    );
    let ram = boot.ram.ipa;
    vm.stage2
        .lock()
        .change_attrs(ram.base..ram.end(), rwx)
        .map(|_| ())
}

/// Zeroes the guest's RAM and cleans it to the PoC (the images written next are
/// cleaned by `place_modules`): the new kernel starts with caches off and must neither
/// see the old one's data nor have a dirty line of it written back over its own.
fn scrub(boot: &GuestBoot) {
    let ram = boot.ram.physical();
    // SAFETY: the guest's RAM is mapped in the EL2 direct map and no vCPU of the guest
    // runs (all left their CPUs); nothing else uses it.
    unsafe { core::ptr::write_bytes(ram.base as *mut u8, 0, ram.size as usize) };
    cache::clean_to_poc(ram.base..ram.end());
}
