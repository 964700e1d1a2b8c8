//! Running a guest's vCPUs: which guest each physical CPU runs, first entry, and the
//! handling of synchronous traps from EL1 (SMCCC calls, stage-2 aborts, trapped system
//! registers, anything unexpected), each acting on the trapping CPU's [`Vm`].

use core::sync::atomic::{AtomicPtr, Ordering};

use crate::arch::esr::{Esr, ExceptionClass};
use crate::arch::trap_frame::TrapFrame;
use crate::hypercall::smccc::{self, FunctionId};
use crate::vm::fault::{self, FaultIpa, Stage2Fault};
use crate::vm::inject::{self, GuestState, SyncException};
use crate::vm::mmio::{Attempt, MmioAccess};
use crate::vm::psci::{self, CpuPowerState, Followup, PsciPlatform};
use crate::vm::sysreg_trap::{self, ReadValue, SysregAccess, SysregAction};
use hyp_abi::console::{EXITS_PREFIX, FOREIGN_ACCESS_PREFIX, VGIC_STATS_PREFIX};
use platform::info::MAX_CPUS;

use crate::arch::aarch64::el2_setup;
use crate::arch::aarch64::sysreg::{read_sysreg, write_sysreg};
use crate::vm::build::PreparedGuest;
use crate::vm::emulation;
use crate::vm::guest::Vm;
use crate::vm::registry::{self, GuestEnd};
use crate::{boot, cpu};

/// The guest each physical CPU runs a vCPU of (null: none). Per-CPU scheduling state,
/// as KVM's running vCPU is: set by whoever starts a vCPU on the CPU, read by its traps.
static CURRENT: [AtomicPtr<Vm>; MAX_CPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS];

/// Makes `vm` the guest physical CPU `index` runs.
pub fn make_current(index: usize, vm: &'static Vm) {
    CURRENT[index].store(core::ptr::from_ref(vm).cast_mut(), Ordering::Release);
}

/// The guest this CPU runs, if any.
pub fn current() -> Option<&'static Vm> {
    let index = cpu::this_cpu()?;
    let vm = CURRENT[index].load(Ordering::Acquire);
    // SAFETY: only `make_current` stores here, from a `&'static Vm`.
    unsafe { vm.as_ref() }
}

unsafe extern "C" {
    fn guest_first_entry(x0: u64, entry: u64, el2_stack_top: usize) -> !;
}

/// Enters every prepared guest at its entry point with x0 = its DTB, on the physical CPU
/// its vCPU 0 is pinned to: this (boot) CPU's guest last, as it never returns. A guest
/// whose first CPU cannot be started stops the boot: guests start whole or not at all.
pub fn start(guests: &[PreparedGuest]) -> ! {
    let Some(this) = cpu::this_cpu() else {
        boot::stop_failure("the boot CPU's MPIDR is not in the device tree");
    };
    let mut own = None;
    for guest in guests {
        let Some(first) = guest.vm.vcpus.physical_cpu(0) else {
            boot::stop_failure("a guest with no vCPU");
        };
        log::info!(
            "guest {}: entering at EL1 on {} vCPU(s), vCPU 0 on cpu{first}",
            guest.vm.number,
            guest.vm.vcpus.count()
        );
        guest.vm.vcpus.set_power(0, CpuPowerState::OnPending);
        if first == this {
            make_current(first, guest.vm);
            own = Some(guest);
            continue;
        }
        if let Err(why) = start_on(first, guest.vm, guest.entry, guest.dtb) {
            log::error!(
                "guest {}: cpu{first} cannot be started ({why:?})",
                guest.vm.number
            );
            boot::stop_failure("a guest's first CPU cannot be started");
        }
    }
    let Some(guest) = own else {
        boot::stop_failure("no guest runs on the boot CPU");
    };
    run_vcpu(guest.vm, this, guest.entry, guest.dtb)
}

/// Starts physical CPU `physical` (off) on `vm`'s vCPU pinned there, at `entry` with x0
/// = `x0`: what CPU_ON, the first entry and a reset's restart all do for another CPU.
fn start_on(physical: usize, vm: &'static Vm, entry: u64, x0: u64) -> Result<(), cpu::NotStarted> {
    make_current(physical, vm);
    cpu::post(
        physical,
        cpu::Work {
            run: enter_vcpu,
            args: [entry, x0],
        },
    )
}

/// [`run_vcpu`] as [`cpu::Work`], which a guest's CPU_ON sends to an idle CPU:
/// `args` = [entry, x0].
fn enter_vcpu(index: usize, [entry, x0]: [u64; 2]) -> u64 {
    let Some(vm) = current() else {
        boot::stop_failure("a vCPU was started on a CPU with no guest");
    };
    run_vcpu(vm, index, entry, x0)
}

/// Runs the vCPU pinned to this CPU (physical CPU `index`) from `entry` with `x0`.
fn run_vcpu(vm: &Vm, index: usize, entry: u64, x0: u64) -> ! {
    let Some(vcpu) = vm.vcpus.vcpu_on(index) else {
        boot::stop_failure("a vCPU was started on a CPU it is not pinned to");
    };
    let Some(mpidr) = vm.vcpus.mpidr(vcpu) else {
        boot::stop_failure("a vCPU index beyond the guest's vCPUs");
    };
    let setup = &vm.setup;
    // MPIDR_EL1 bit 31 is RES1.
    el2_setup::configure_for_guest(
        &setup.controls,
        setup.vtcr,
        setup.vttbr,
        setup.midr,
        mpidr | (1 << 31),
    );
    if let Err(error) = crate::vm::interrupts::prepare_vcpu(vm, index, vcpu) {
        log::error!("cpu{index}: {error}");
        boot::stop_failure("this CPU cannot take the GIC's interrupts");
    }
    vm.vcpus.set_power(vcpu, CpuPowerState::On);
    log::debug!("cpu{index}: entering guest {} at {entry:#x}", vm.number);
    // SAFETY: the stack top is this CPU's own EL2 stack, unused below this call chain once
    // we leave; `entry` was checked to be in guest RAM; the EL2 controls are set.
    unsafe { guest_first_entry(x0, entry, cpu::stack_top(index)) }
}

/// Runs on a CPU whose vCPU called CPU_OFF, as it goes back to firmware: from now on a
/// CPU_ON for it is accepted ([`cpu::post`] waits out firmware's last moments of
/// ALREADY_ON), so from now on AFFINITY_INFO says OFF.
fn vcpu_is_off(index: usize) {
    if let Some(vm) = current()
        && let Some(vcpu) = vm.vcpus.vcpu_on(index)
    {
        vm.vcpus.set_power(vcpu, CpuPowerState::Off);
    }
}

/// The PSCI effects for the guest, on real firmware.
struct Firmware {
    vm: &'static Vm,
}

impl PsciPlatform for Firmware {
    fn power_state(&self, mpidr: u64) -> Option<CpuPowerState> {
        let index = self.vm.vcpus.index_of(mpidr)?;
        Some(self.vm.vcpus.power(index))
    }

    fn is_guest_ram(&self, entry: u64) -> bool {
        self.vm.owns_ram(entry)
    }

    fn cpu_on(&mut self, mpidr: u64, entry: u64, context: u64) -> i64 {
        let Some(index) = self.vm.vcpus.index_of(mpidr) else {
            return psci::INVALID_PARAMETERS;
        };
        let Some(physical) = self.vm.vcpus.physical_cpu(index) else {
            return psci::INVALID_PARAMETERS;
        };
        if !self.vm.vcpus.claim_for_cpu_on(index) {
            return psci::ALREADY_ON;
        }
        // The physical CPU it is pinned to is off (its vCPU is): it runs this guest from
        // now on.
        match start_on(physical, self.vm, entry, context) {
            Ok(()) => psci::SUCCESS,
            Err(why) => {
                self.vm.vcpus.set_power(index, CpuPowerState::Off);
                log::warn!("CPU_ON({mpidr:#x}): its physical CPU cannot be started ({why:?})");
                psci::INTERNAL_FAILURE
            }
        }
    }

    fn firmware_arch_features(&mut self, function: u32) -> i64 {
        crate::arch::aarch64::firmware::arch_features(function)
    }

    fn firmware_workaround(&mut self, function: u32, arg: u64) -> i64 {
        crate::arch::aarch64::firmware::arch_workaround(function, arg as u32)
    }

    fn cpu_off(&mut self) {
        // Marked off by `vcpu_is_off` as the physical CPU leaves the vCPU: marking it now,
        // while the CPU still runs the vCPU, would let an immediate CPU_ON be refused.
    }
}

/// This CPU's index and the vCPU of `vm` pinned to it.
fn this_vcpu(vm: &Vm) -> Option<(usize, usize)> {
    let cpu = cpu::this_cpu()?;
    Some((cpu, vm.vcpus.vcpu_on(cpu)?))
}

/// A physical IRQ or FIQ taken while the guest ran.
pub fn handle_interrupt() {
    let Some(vm) = current() else {
        boot::stop_failure("a guest interrupt on a CPU that runs no guest");
    };
    if let Some((cpu, vcpu)) = this_vcpu(vm) {
        crate::vm::interrupts::handle_physical_interrupt(vm, cpu, vcpu);
    }
    stop_if_guest_ended(vm);
}

/// Adds the time since `started` (counter ticks) to this CPU's guest's EL2 time.
pub fn account_el2_time(started: u64) {
    if let Some(vm) = current() {
        let spent = crate::arch::sysreg::counter().wrapping_sub(started);
        vm.stats.el2_ticks.fetch_add(spent, Ordering::Relaxed);
    }
}

/// A synchronous trap from the guest (EL1 or EL0, AArch64).
pub fn handle_sync(frame: &mut TrapFrame, esr: Esr, far: u64) {
    let Some(vm) = current() else {
        boot::stop_failure("a guest trap on a CPU that runs no guest");
    };
    // Data aborts are counted once classified: an emulated device access or a fault.
    if esr.class() != ExceptionClass::DATA_ABORT_LOWER {
        vm.stats.exits.count(esr.class());
    }
    stop_if_guest_ended(vm);
    if retry_guest_tlb_conflict(vm, esr) {
        return;
    }
    match esr.class() {
        ExceptionClass::HVC64 => smccc_call(vm, frame),
        ExceptionClass::SYSREG => trapped_sysreg(vm, frame, esr),
        ExceptionClass::SMC64 => {
            // A trapped SMC returns to the SMC itself (Arm ARM D1.10.2): step over it.
            frame.elr = frame.elr.wrapping_add(4);
            smccc_call(vm, frame);
        }
        ExceptionClass::DATA_ABORT_LOWER | ExceptionClass::INSTR_ABORT_LOWER => {
            stage2_abort(vm, frame, esr, far);
        }
        _ => {
            log::warn!(
                "guest trap {esr} at {:#x}: injecting an undefined-instruction exception",
                frame.elr
            );
            inject_into_guest(frame, SyncException::Undefined);
        }
    }
}

/// A system-register access trapped by HCR_EL2.TIDCP/TACR/TERR (decided in
/// `crate::vm::sysreg_trap`).
fn trapped_sysreg(vm: &Vm, frame: &mut TrapFrame, esr: Esr) {
    let Some(access) = SysregAccess::decode(esr) else {
        inject_into_guest(frame, SyncException::Undefined);
        return;
    };
    match sysreg_trap::decide(&access) {
        SysregAction::Read(value) => {
            let value = match value {
                ReadValue::Zero => 0,
                ReadValue::PhysicalActlr => read_sysreg!("actlr_el1"),
            };
            if let Some(rt) = frame.regs.get_mut(usize::from(access.rt)) {
                *rt = value;
            }
            // A trapped MRS/MSR returns to itself (Arm ARM D1.10.2): step over it.
            frame.elr = frame.elr.wrapping_add(4);
        }
        SysregAction::IgnoreWrite => frame.elr = frame.elr.wrapping_add(4),
        SysregAction::GenerateSgi(register) => {
            let value = frame.regs.get(usize::from(access.rt)).copied().unwrap_or(0);
            frame.elr = frame.elr.wrapping_add(4);
            if let Some((cpu, vcpu)) = this_vcpu(vm) {
                emulation::generate_sgi(vm, cpu, vcpu, register, value);
            }
        }
        SysregAction::Undefined => {
            log::debug!("guest {esr} at {:#x}: UNDEFINED for the guest", frame.elr);
            inject_into_guest(frame, SyncException::Undefined);
        }
    }
}

fn smccc_call(vm: &'static Vm, frame: &mut TrapFrame) {
    let function = FunctionId(frame.regs[0] as u32);
    let args = [frame.regs[1], frame.regs[2], frame.regs[3]];
    let mut firmware = Firmware { vm };
    match psci::handle(function, args, &mut firmware) {
        Some(Followup::Return(value)) => frame.regs[0] = value as u64,
        Some(Followup::CpuOff) => cpu::power_off_this_cpu(vcpu_is_off),
        Some(Followup::SystemOff) => guest_ended(vm, GuestEnd::PoweredOff),
        Some(Followup::SystemReset) if registry::count() > 1 => {
            log::info!("guest {}: PSCI SYSTEM_RESET", vm.number);
            let (this, vcpu) = this_vcpu(vm).unwrap_or((0, 0));
            match crate::vm::reset::reset_guest(vm, vcpu) {
                Ok(restart) => restart_vcpu0(vm, this, vcpu, restart.entry, restart.dtb),
                Err(error) => {
                    log::error!(
                        "guest {}: cannot be reset alone ({error:?}); it is stopped",
                        vm.number
                    );
                    guest_ended(vm, GuestEnd::ResetRefused)
                }
            }
        }
        Some(Followup::SystemReset) => {
            log::info!("guest: PSCI SYSTEM_RESET");
            crate::arch::aarch64::firmware::system_reset();
            boot::stop(crate::boot::outcome::Outcome::Success);
        }
        None => match crate::hypercall::decode(function, args) {
            Ok(Some(call)) => {
                let results = crate::hypercall::handler::handle(call, vm);
                frame.regs[..4].copy_from_slice(&results);
            }
            Ok(None) => frame.regs[0] = smccc::NOT_SUPPORTED as u64,
            Err(code) => frame.regs[0] = code as u64,
        },
    }
}

fn stage2_abort(vm: &Vm, frame: &mut TrapFrame, esr: Esr, far: u64) {
    let Some(fault) = fault::classify(esr) else {
        inject_into_guest(frame, SyncException::Undefined);
        return;
    };
    let Some(access) = fault.access() else {
        // Only a TLB conflict has no access, and `handle_sync` retried those already.
        return;
    };
    let ipa = match fault.ipa() {
        FaultIpa::Hpfar => {
            fault::ipa_from_hpfar(read_sysreg!("hpfar_el2"), far, access.stage1_walk)
        }
        FaultIpa::TranslateFar => match translate_guest_va(far) {
            Some(ipa) => ipa,
            // The guest's stage 1 changed since the fault: let it run into it again.
            None => return,
        },
        FaultIpa::Unknown => {
            log::warn!(
                "guest {esr} at {:#x} (VA {far:#x}): injecting it",
                frame.elr
            );
            inject_external_abort(frame, esr, far);
            return;
        }
    };
    let in_guest_ram = vm.owns_ram(ipa);
    if in_guest_ram {
        vm.stats.exits.count(esr.class());
    }
    if in_guest_ram
        && let Stage2Fault::Translation { level, .. } | Stage2Fault::Permission { level, .. } =
            fault
    {
        let fsc = esr.fault_status();
        let instruction = esr.class() == ExceptionClass::INSTR_ABORT_LOWER;
        match crate::hypercall::handler::guest_ram_fault(vm, ipa, far, fsc, level, access.kind) {
            crate::hypercall::handler::FaultAction::Retry => {}
            crate::hypercall::handler::FaultAction::InjectPermissionFault { fsc } => {
                inject_into_guest(
                    frame,
                    if instruction {
                        SyncException::InstructionAbort { far, fsc }
                    } else {
                        SyncException::DataAbort {
                            far,
                            fsc,
                            write: esr.is_write(),
                        }
                    },
                );
            }
        }
        return;
    }
    if let Some(register) = vm.devices.find(ipa) {
        let emulated = this_vcpu(vm).is_some_and(|(cpu, vcpu)| {
            emulation::emulate_mmio(vm, cpu, vcpu, frame, esr, ipa, register)
        });
        if !emulated {
            inject_external_abort(frame, esr, far);
        }
        return;
    }
    vm.stats.exits.count(esr.class());
    // The guest's IPA space is the identity of the host's physical one.
    let target = vm.host.classify(ipa);
    if vm.stats.foreign_accesses.record(target) {
        // What the guest tried, when the syndrome says (a plain load or store).
        let what = Attempt(MmioAccess::decode(esr, ipa));
        log::warn!(
            "guest access outside its memory refused: {target} at IPA {ipa:#x} (VA {far:#x}, PC {:#x}, {}), {esr}; \
             injecting a synchronous external abort (further accesses to {} are counted, not logged)",
            frame.elr,
            what,
            target.key()
        );
    }
    inject_external_abort(frame, esr, far);
}

/// A TLB conflict abort from the guest (Arm ARM: possible under FEAT_BBM level 1/2 until
/// the old entry is invalidated, IHYQMB): nothing is wrong with the guest's access, so it
/// is never injected. HPFAR_EL2 is not valid for it, so this PE's entries of the whole
/// VMID (the current VTTBR_EL2's) go, and the guest retries. `false` for anything else.
pub fn retry_guest_tlb_conflict(vm: &Vm, esr: Esr) -> bool {
    if fault::classify(esr) != Some(Stage2Fault::TlbConflict) {
        return false;
    }
    crate::arch::aarch64::tlb::invalidate_vmid_locally();
    vm.stats.tlb_conflicts.fetch_add(1, Ordering::Relaxed);
    true
}

/// The IPA the guest's stage 1 gives `va` now (`AT S1E1R`: stage 1 of the EL1&0 regime
/// only, so PAR_EL1 holds an IPA), for the faults whose HPFAR_EL2 is not valid. PAR_EL1
/// is the guest's register, so it is put back (KVM's `__translate_far_to_hpfar` does the
/// same). `None` if the translation fails now.
fn translate_guest_va(va: u64) -> Option<u64> {
    let saved = read_sysreg!("par_el1");
    let par: u64;
    // SAFETY: an address translation only reads the guest's tables and writes PAR_EL1,
    // which is restored below; the ISB makes the result visible to the MRS (Arm ARM:
    // PAR_EL1 is only guaranteed updated after a context synchronisation event).
    unsafe {
        core::arch::asm!(
            "at s1e1r, {va}",
            "isb",
            "mrs {par}, par_el1",
            va = in(reg) va,
            par = out(reg) par,
            options(nostack, preserves_flags)
        )
    };
    write_sysreg!("par_el1", saved);
    const PAR_F: u64 = 1;
    const PAR_PA: u64 = 0x000f_ffff_ffff_f000;
    (par & PAR_F == 0).then_some((par & PAR_PA) | (va & 0xfff))
}

/// Injects a synchronous external abort of the kind the guest took.
fn inject_external_abort(frame: &mut TrapFrame, esr: Esr, far: u64) {
    let exception = if esr.class() == ExceptionClass::DATA_ABORT_LOWER {
        SyncException::DataAbort {
            far,
            fsc: inject::FSC_SYNC_EXTERNAL_ABORT,
            write: esr.is_write(),
        }
    } else {
        SyncException::InstructionAbort {
            far,
            fsc: inject::FSC_SYNC_EXTERNAL_ABORT,
        }
    };
    inject_into_guest(frame, exception);
}

/// Makes the guest take `exception` at EL1 when it resumes.
pub fn inject_into_guest(frame: &mut TrapFrame, exception: SyncException) {
    let guest = GuestState {
        pc: frame.elr,
        pstate: frame.spsr,
        vbar_el1: read_sysreg!("vbar_el1"),
        sctlr_el1: read_sysreg!("sctlr_el1"),
        mte: read_sysreg!("hcr_el2") & (1 << 56) != 0,
    };
    let injection = inject::inject(&guest, exception);
    write_sysreg!("elr_el1", injection.elr_el1);
    write_sysreg!("spsr_el1", injection.spsr_el1);
    write_sysreg!("esr_el1", injection.esr_el1);
    if let Some(far) = injection.far_el1 {
        write_sysreg!("far_el1", far);
    }
    frame.elr = injection.resume_pc;
    frame.spsr = injection.resume_pstate;
}

/// The report of a guest that ended: its refused accesses, console tail, exits and vGIC.
/// With several guests each line names the guest (`guest=N` first).
fn report_guest_end(vm: &Vm, how: GuestEnd) {
    let what = match how {
        GuestEnd::PoweredOff => "PSCI SYSTEM_OFF",
        GuestEnd::ResetRefused => "stopped, its reset refused",
    };
    log::info!(
        "guest {}: {what} ({} stage-2 fault(s) retried, {} TLB conflict abort(s) at EL2, {} from the guest)",
        vm.number,
        vm.stats.retried_faults.load(Ordering::Relaxed),
        crate::arch::aarch64::conflict::el2_tlb_conflicts(),
        vm.stats.tlb_conflicts.load(Ordering::Relaxed)
    );
    let (pages, cap, capped) = vm.stage2.lock().hardware().page_use();
    log::info!(
        "guest {}: its stage 2 holds {pages} table page(s) at the end{}",
        vm.number,
        match cap {
            Some(cap) => alloc::format!(" (cap {cap}, {capped} allocation(s) refused by it)"),
            None => alloc::string::String::new(),
        }
    );
    let several = registry::count() > 1;
    let guest = |number: u16| {
        if several {
            alloc::format!("guest={number} ")
        } else {
            alloc::string::String::new()
        }
    };
    crate::console::write_raw(format_args!(
        "{FOREIGN_ACCESS_PREFIX} {}{}\n",
        guest(vm.number),
        vm.stats.foreign_accesses
    ));
    vm.console.lock().flush(&mut |piece: &[u8], complete| {
        crate::console::write_guest_piece(vm.number, piece, complete)
    });
    crate::console::write_raw(format_args!(
        "{EXITS_PREFIX} {}{}\n",
        guest(vm.number),
        vm.stats
    ));
    crate::console::write_raw(format_args!(
        "{VGIC_STATS_PREFIX} guest={} {} console_dropped_bytes={} console_dropped_lines={} console_input_dropped={}\n",
        vm.number,
        vm.vgic.lock().stats(),
        vm.console.lock().dropped_bytes(),
        crate::console::dropped_guest_output().0,
        crate::console::input::dropped_input()
    ));
}

/// Guest `vm` powered off (or asked for a reset that cannot be done alone): report it,
/// stop its other vCPUs and this CPU. The last guest to end ends the run: success when
/// every guest powered off cleanly, else a failure naming the first that did not.
fn guest_ended(vm: &Vm, how: GuestEnd) -> ! {
    report_guest_end(vm, how);
    if registry::end(vm.number, how) {
        log::info!(
            "stage 2: {} TLBI(s) issued with their guest's VMID switched in",
            crate::mm::table_hw::stage2_vmid_switches()
        );
        crate::iommu::setup::drain_events();
        let (commands, syncs, events) = crate::iommu::setup::stats();
        crate::console::write_raw(format_args!(
            "smmu-stats: commands={commands} syncs={syncs} events={events}\n"
        ));
        match registry::first_unclean_end() {
            None => boot::stop(crate::boot::outcome::Outcome::Success),
            Some(number) => {
                log::error!(
                    "guest {number} asked for a reset, which is not done for one of several guests"
                );
                boot::stop_failure("a guest did not power off cleanly");
            }
        }
    }
    let this = cpu::this_cpu().unwrap_or(0);
    // Its other vCPUs leave at their next exit (`stop_if_guest_ended`): kick them.
    let own = vm.vcpus.vcpu_on(this).unwrap_or(usize::MAX);
    crate::vm::interrupts::kick_others(vm, own);
    move_hypervisor_interrupts_off(this);
    cpu::power_off_this_cpu(vcpu_is_off)
}

/// After `vm`'s reset (`crate::vm::reset`), on this CPU (which ran its vCPU `own`):
/// vCPU 0 starts at `entry` with x0 = `dtb`, here when this is vCPU 0's CPU, else on
/// vCPU 0's CPU (fresh from firmware) while this one powers off. The EL1 timers of this
/// CPU are stopped first: a timer the old kernel left armed must not fire into the new.
pub fn restart_vcpu0(vm: &'static Vm, this: usize, own: usize, entry: u64, dtb: u64) -> ! {
    write_sysreg!("cntv_ctl_el0", 0);
    write_sysreg!("cntp_ctl_el0", 0);
    vm.vcpus.set_power(0, CpuPowerState::OnPending);
    if own == 0 {
        run_vcpu(vm, this, entry, dtb)
    }
    let Some(first) = vm.vcpus.physical_cpu(0) else {
        boot::stop_failure("a guest with no vCPU");
    };
    if let Err(why) = start_on(first, vm, entry, dtb) {
        log::error!(
            "guest {}: cpu{first} cannot restart it ({why:?})",
            vm.number
        );
        vm.vcpus.set_power(0, CpuPowerState::Off);
    }
    cpu::power_off_this_cpu(vcpu_is_off)
}

/// The console's interrupt goes to a CPU that keeps running a guest.
fn move_hypervisor_interrupts_off(this: usize) {
    if let Some(mpidr) = registry::running_cpu_mpidr(this) {
        crate::console::input::route_input_to(mpidr);
    }
}

/// A vCPU of a guest that has ended (or is being reset) leaves at its next exit: this
/// CPU powers off.
fn stop_if_guest_ended(vm: &Vm) {
    if registry::is_running(vm.number) {
        return;
    }
    let this = cpu::this_cpu().unwrap_or(0);
    move_hypervisor_interrupts_off(this);
    cpu::power_off_this_cpu(vcpu_is_off)
}
