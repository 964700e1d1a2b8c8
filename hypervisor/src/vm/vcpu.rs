//! Running the guest: per-CPU vCPU state, first entry, and the handling of synchronous
//! traps from EL1 (SMCCC calls, stage-2 aborts, anything unexpected).

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::arch::esr::{Esr, ExceptionClass};
use crate::arch::trap_frame::TrapFrame;
use crate::hypercall::smccc::{self, FunctionId};
use crate::mm::memory_plan::MAX_GUEST_RAM_RANGES;
use crate::vm::fault::{self, FaultIpa, Stage2Fault};
use crate::vm::foreign_access::{ForeignAccessTally, HostMemoryMap};
use crate::vm::inject::{self, GuestState, SyncException};
use crate::vm::psci::{self, CpuPowerState, Followup, PsciPlatform};
use crate::vm::sysreg_trap::{self, ReadValue, SysregAccess, SysregAction};
use arrayvec::ArrayVec;
use platform::info::{MAX_CPUS, PhysRange};
use spin::Once;

use crate::arch::aarch64::el2_setup::{self, GuestFeatures};
use crate::arch::aarch64::sysreg::{read_sysreg, write_sysreg};
use crate::{boot, cpu};

/// What every CPU needs to enter the guest, fixed before the first vCPU runs.
pub struct GuestConfig {
    pub features: GuestFeatures,
    pub vtcr: u64,
    pub vttbr: u64,
    pub midr: u64,
    /// MPIDR affinity of each CPU, by index (the DT's order).
    pub cpus: ArrayVec<u64, MAX_CPUS>,
    /// The guest's RAM (identity mapped).
    pub ram: ArrayVec<PhysRange, MAX_GUEST_RAM_RANGES>,
    /// The host's memory, to name what a guest access outside its memory was after.
    pub host: HostMemoryMap,
}

static CONFIG: Once<GuestConfig> = Once::new();

const OFF: u8 = CpuPowerState::Off as u8;
const ON: u8 = CpuPowerState::On as u8;
const ON_PENDING: u8 = CpuPowerState::OnPending as u8;

/// Per-vCPU power state, as AFFINITY_INFO reports it.
static POWER: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(OFF) }; MAX_CPUS];

unsafe extern "C" {
    fn guest_first_entry(x0: u64, entry: u64, el2_stack_top: usize) -> !;
}

/// Starts the guest on the boot CPU: `entry` with x0 = `dtb`. Never returns.
pub fn start(config: GuestConfig, entry: u64, dtb: u64) -> ! {
    CONFIG.call_once(|| config);
    let Some(index) = cpu::this_cpu() else {
        boot::stop_failure("the boot CPU's MPIDR is not in the device tree");
    };
    POWER[index].store(ON_PENDING, Ordering::Release);
    run_vcpu(index, entry, dtb)
}

/// [`run_vcpu`] as [`cpu::Work`], which a guest's CPU_ON sends to an idle CPU:
/// `args` = [entry, x0].
fn enter_vcpu(index: usize, [entry, x0]: [u64; 2]) -> u64 {
    run_vcpu(index, entry, x0)
}

/// Runs vCPU `index` on this CPU (its physical twin) from `entry` with `x0`.
fn run_vcpu(index: usize, entry: u64, x0: u64) -> ! {
    let Some(config) = CONFIG.get() else {
        boot::stop_failure("a vCPU was started before the guest was configured");
    };
    let mpidr = config.cpus[index] | (1 << 31); // MPIDR_EL1 bit 31 is RES1
    el2_setup::configure_for_guest(
        &config.features,
        config.vtcr,
        config.vttbr,
        config.midr,
        mpidr,
    );
    POWER[index].store(ON, Ordering::Release);
    log::debug!("cpu{index}: entering the guest at {entry:#x}");
    // SAFETY: the stack top is this CPU's own EL2 stack, unused below this call chain once
    // we leave; `entry` was checked to be in guest RAM; the EL2 controls are set.
    unsafe { guest_first_entry(x0, entry, cpu::stack_top(index)) }
}

/// Runs on a CPU whose vCPU called CPU_OFF, as it goes back to firmware: from now on a
/// CPU_ON for it is accepted ([`cpu::post`] waits out firmware's last moments of
/// ALREADY_ON), so from now on AFFINITY_INFO says OFF.
fn vcpu_is_off(index: usize) {
    POWER[index].store(OFF, Ordering::Release);
}

/// The PSCI effects for the guest, on real firmware.
struct Firmware<'a> {
    config: &'a GuestConfig,
}

impl PsciPlatform for Firmware<'_> {
    fn power_state(&self, mpidr: u64) -> Option<CpuPowerState> {
        let index = self.config.cpus.iter().position(|&m| m == mpidr)?;
        Some(match POWER[index].load(Ordering::Acquire) {
            ON => CpuPowerState::On,
            ON_PENDING => CpuPowerState::OnPending,
            _ => CpuPowerState::Off,
        })
    }

    fn is_guest_ram(&self, entry: u64) -> bool {
        self.config.ram.iter().any(|r| r.contains(entry))
    }

    fn cpu_on(&mut self, mpidr: u64, entry: u64, context: u64) -> i64 {
        let Some(index) = self.config.cpus.iter().position(|&m| m == mpidr) else {
            return psci::INVALID_PARAMETERS;
        };
        if POWER[index]
            .compare_exchange(OFF, ON_PENDING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return psci::ALREADY_ON;
        }
        let work = cpu::Work {
            run: enter_vcpu,
            args: [entry, context],
        };
        match cpu::post(index, work) {
            Ok(()) => psci::SUCCESS,
            Err(why) => {
                POWER[index].store(OFF, Ordering::Release);
                log::warn!("CPU_ON({mpidr:#x}): its physical CPU cannot be started ({why:?})");
                psci::INTERNAL_FAILURE
            }
        }
    }

    fn firmware_arch_features(&mut self, function: u32) -> i64 {
        crate::arch::aarch64::psci::arch_features(function)
    }

    fn firmware_workaround(&mut self, function: u32, arg: u64) -> i64 {
        crate::arch::aarch64::psci::arch_workaround(function, arg as u32)
    }

    fn cpu_off(&mut self) {
        // Marked off by `vcpu_is_off` as the physical CPU leaves the vCPU: marking it now,
        // while the CPU still runs the vCPU, would let an immediate CPU_ON be refused.
    }
}

/// A synchronous trap from the guest (EL1 or EL0, AArch64).
pub fn handle_sync(frame: &mut TrapFrame, esr: Esr, far: u64) {
    if retry_guest_tlb_conflict(esr) {
        return;
    }
    let Some(config) = CONFIG.get() else {
        boot::stop_failure("a guest trap arrived before the guest was configured");
    };
    EXITS.count(esr.class());
    match esr.class() {
        ExceptionClass::HVC64 => smccc_call(config, frame),
        ExceptionClass::SYSREG => trapped_sysreg(frame, esr),
        ExceptionClass::SMC64 => {
            // A trapped SMC returns to the SMC itself (Arm ARM D1.10.2): step over it.
            frame.elr = frame.elr.wrapping_add(4);
            smccc_call(config, frame);
        }
        ExceptionClass::DATA_ABORT_LOWER | ExceptionClass::INSTR_ABORT_LOWER => {
            stage2_abort(config, frame, esr, far);
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
fn trapped_sysreg(frame: &mut TrapFrame, esr: Esr) {
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
        SysregAction::Undefined => {
            log::debug!("guest {esr} at {:#x}: UNDEFINED for the guest", frame.elr);
            inject_into_guest(frame, SyncException::Undefined);
        }
    }
}

/// Guest exits by reason, printed when the guest powers off (`hyp-exits:`).
struct ExitCounters {
    hvc: AtomicU64,
    smc: AtomicU64,
    sysreg: AtomicU64,
    data_abort: AtomicU64,
    instruction_abort: AtomicU64,
    other: AtomicU64,
}

impl ExitCounters {
    const fn new() -> Self {
        Self {
            hvc: AtomicU64::new(0),
            smc: AtomicU64::new(0),
            sysreg: AtomicU64::new(0),
            data_abort: AtomicU64::new(0),
            instruction_abort: AtomicU64::new(0),
            other: AtomicU64::new(0),
        }
    }

    fn count(&self, class: ExceptionClass) {
        let counter = match class {
            ExceptionClass::HVC64 => &self.hvc,
            ExceptionClass::SMC64 => &self.smc,
            ExceptionClass::SYSREG => &self.sysreg,
            ExceptionClass::DATA_ABORT_LOWER => &self.data_abort,
            ExceptionClass::INSTR_ABORT_LOWER => &self.instruction_abort,
            _ => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl core::fmt::Display for ExitCounters {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        write!(
            f,
            "hvc={} smc={} sysreg={} data_abort={} instruction_abort={} other={} tlb_conflict={}",
            get(&self.hvc),
            get(&self.smc),
            get(&self.sysreg),
            get(&self.data_abort),
            get(&self.instruction_abort),
            get(&self.other),
            guest_tlb_conflicts()
        )
    }
}

static EXITS: ExitCounters = ExitCounters::new();

fn smccc_call(config: &GuestConfig, frame: &mut TrapFrame) {
    let function = FunctionId(frame.regs[0] as u32);
    let args = [frame.regs[1], frame.regs[2], frame.regs[3]];
    let mut firmware = Firmware { config };
    match psci::handle(function, args, &mut firmware) {
        Some(Followup::Return(value)) => frame.regs[0] = value as u64,
        Some(Followup::CpuOff) => cpu::power_off_this_cpu(vcpu_is_off),
        Some(Followup::SystemOff) => {
            log::info!(
                "guest: PSCI SYSTEM_OFF ({} stage-2 fault(s) retried, {} TLB conflict abort(s) at EL2, {} from the guest)",
                crate::hypercall::handler::retried_faults(),
                crate::arch::aarch64::trap::el2_tlb_conflicts(),
                guest_tlb_conflicts()
            );
            crate::console::write_raw(format_args!("foreign-access: {FOREIGN_ACCESSES}\n"));
            crate::console::write_raw(format_args!("hyp-exits: {EXITS}\n"));
            boot::stop(crate::boot::outcome::Outcome::Success);
        }
        Some(Followup::SystemReset) => {
            log::info!("guest: PSCI SYSTEM_RESET");
            crate::arch::aarch64::psci::system_reset();
            boot::stop(crate::boot::outcome::Outcome::Success);
        }
        None => match crate::hypercall::decode(function, args) {
            Ok(Some(call)) => {
                let results = crate::hypercall::handler::handle(call, &config.ram);
                frame.regs[..4].copy_from_slice(&results);
            }
            Ok(None) => frame.regs[0] = smccc::NOT_SUPPORTED as u64,
            Err(code) => frame.regs[0] = code as u64,
        },
    }
}

/// Guest accesses outside the guest's memory, by what they hit. The first of each kind
/// is logged; the counts are printed when the guest powers off.
static FOREIGN_ACCESSES: ForeignAccessTally = ForeignAccessTally::new();

fn stage2_abort(config: &GuestConfig, frame: &mut TrapFrame, esr: Esr, far: u64) {
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
    let in_guest_ram = config.ram.iter().any(|r| r.contains(ipa));
    if in_guest_ram
        && let Stage2Fault::Translation { level, .. } | Stage2Fault::Permission { level, .. } =
            fault
    {
        let fsc = esr.fault_status();
        let instruction = esr.class() == ExceptionClass::INSTR_ABORT_LOWER;
        match crate::hypercall::handler::guest_ram_fault(ipa, far, fsc, level, access.kind) {
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
    // The guest's IPA space is the identity of the host's physical one.
    let target = config.host.classify(ipa);
    if FOREIGN_ACCESSES.record(target) {
        log::warn!(
            "guest access outside its memory refused: {target} at IPA {ipa:#x} (VA {far:#x}, PC {:#x}), {esr}; \
             injecting a synchronous external abort (further accesses to {} are counted, not logged)",
            frame.elr,
            target.key()
        );
    }
    inject_external_abort(frame, esr, far);
}

/// A TLB conflict abort from the guest (Arm ARM: possible under FEAT_BBM level 1/2 until
/// the old entry is invalidated, IHYQMB): nothing is wrong with the guest's access, so it
/// is never injected. HPFAR_EL2 is not valid for it, so this PE's entries of the whole
/// VMID (the current VTTBR_EL2's) go, and the guest retries. `false` for anything else.
/// Needs no guest configuration, so the selftests can take this path before the guest
/// starts.
pub fn retry_guest_tlb_conflict(esr: Esr) -> bool {
    if fault::classify(esr) != Some(Stage2Fault::TlbConflict) {
        return false;
    }
    invalidate_vmid_locally();
    GUEST_TLB_CONFLICTS.fetch_add(1, Ordering::Relaxed);
    true
}

/// Guest TLB conflict aborts handled (invalidated and retried, never injected).
static GUEST_TLB_CONFLICTS: AtomicU64 = AtomicU64::new(0);

pub fn guest_tlb_conflicts() -> u64 {
    GUEST_TLB_CONFLICTS.load(Ordering::Relaxed)
}

/// Drops this PE's stage-1 and stage-2 TLB entries of the current VMID: enough for a
/// conflict abort, which is about this PE's TLB only.
fn invalidate_vmid_locally() {
    // SAFETY: TLB maintenance and barriers only. DSB NSH completes the invalidation on
    // this PE before the ISB and the ERET that retries the access (Arm ARM: a TLBI is
    // only guaranteed complete after a DSB; non-shareable suffices for a local TLBI).
    unsafe {
        core::arch::asm!(
            "tlbi vmalls12e1",
            "dsb nsh",
            "isb",
            options(nostack, preserves_flags)
        )
    };
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
