//! The second vCPU the two-CPU tests start: PSCI CPU_ON of the DT's first CPU other than
//! the boot CPU at head.S `secondary_entry`, which loads the boot CPU's translation
//! controls from [`SECONDARY_BOOT`], turns its MMU on and calls [`secondary_main`]; that
//! runs the test's [`Job`] and powers the CPU off again (CPU_OFF), so the next test can
//! start it anew.

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use super::cpu::{self, Deadline};
use super::mmu::MmuConfig;
use super::{Env, concurrent, runner, stress, vgic_smp};
use crate::abi::*;
use crate::report::Failure;
use crate::{failed, text};

/// The context id CPU_ON passes: the secondary's slot (TPIDR_EL1, exceptions.rs).
const SECONDARY_SLOT: u64 = 1;

/// What head.S `secondary_entry` loads with its MMU off (so cleaned to the point of
/// coherency before CPU_ON): stack top, MAIR, TCR, TTBR0, SCTLR, VBAR.
#[repr(C)]
pub struct SecondaryBoot {
    words: [AtomicU64; 6],
}

#[unsafe(no_mangle)]
pub static SECONDARY_BOOT: SecondaryBoot = SecondaryBoot {
    words: [const { AtomicU64::new(0) }; 6],
};

unsafe extern "C" {
    static __secondary_stack_top: u8;
    static el1_vectors: u8;
    fn secondary_entry();
}

/// What the secondary runs once its MMU is on.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Job {
    /// `concurrent_split_restore`'s sweeps.
    Sweep = 1,
    /// `stress_protect_restore`'s random operations.
    Stress = 2,
    /// Nothing: power off at once (`cpu_off_then_on_at_once`).
    PowerOff = 3,
    /// Ready its GIC and take one SGI (`vgic_sgi_between_vcpus_arrives`).
    ReceiveSgi = 4,
}

static JOB: AtomicU8 = AtomicU8::new(0);

/// The MPIDR of the CPU to start: the DT's first CPU that is not this one. Without one
/// the test is skipped.
pub fn other_cpu(env: &Env) -> Result<u64, Failure> {
    env.info
        .cpus
        .iter()
        .find(|&m| m != env.own_mpidr)
        .ok_or_else(|| {
            Failure::Skipped(text!(
                "the device tree has {} cpu node(s), no second CPU",
                env.info.cpus.len()
            ))
        })
}

/// The boot CPU's translation controls, which the secondary must share.
pub fn mmu(env: &Env) -> Result<MmuConfig, Failure> {
    env.mmu.ok_or_else(|| {
        failed!("the EL1 MMU is off: the secondary could not share the boot CPU's map")
    })
}

/// Starts CPU `target` running `job` (which must be set up already).
pub fn start(mmu: &MmuConfig, target: u64, job: Job) -> Result<(), Failure> {
    JOB.store(job as u8, Ordering::Release);
    let stack_top = core::ptr::addr_of!(__secondary_stack_top) as u64;
    let vbar = core::ptr::addr_of!(el1_vectors) as u64;
    for (slot, value) in SECONDARY_BOOT
        .words
        .iter()
        .zip([stack_top, mmu.mair, mmu.tcr, mmu.ttbr0, mmu.sctlr, vbar])
    {
        slot.store(value, Ordering::Relaxed);
    }
    cpu::clean_to_poc(
        core::ptr::addr_of!(SECONDARY_BOOT) as u64,
        core::mem::size_of::<SecondaryBoot>() as u64,
    );
    let entry = secondary_entry as *const () as u64;
    let status = runner::psci(PSCI_CPU_ON_64, target, entry, SECONDARY_SLOT);
    if status != 0 {
        return Err(failed!(
            "PSCI CPU_ON({target:#x}, {entry:#x}, {SECONDARY_SLOT}) returned {status} ({})",
            psci_status_name(status)
        ));
    }
    Ok(())
}

/// Waits up to `ms` for AFFINITY_INFO to report `target` off; returns the last answer
/// ([`AFFINITY_OFF`] on success).
pub fn wait_off(target: u64, ms: u64) -> i64 {
    let deadline = Deadline::after_ms(ms);
    let mut affinity = runner::psci(PSCI_AFFINITY_INFO_64, target, 0, 0);
    while affinity != AFFINITY_OFF && !deadline.passed() {
        core::hint::spin_loop();
        affinity = runner::psci(PSCI_AFFINITY_INFO_64, target, 0, 0);
    }
    affinity
}

/// The secondary CPU, from head.S `secondary_entry` with its MMU on.
#[unsafe(no_mangle)]
extern "C" fn secondary_main(_slot: u64) -> ! {
    let job = JOB.load(Ordering::Acquire);
    if job == Job::Sweep as u8 {
        concurrent::secondary_sweep();
    } else if job == Job::Stress as u8 {
        stress::secondary_stress();
    } else if job == Job::ReceiveSgi as u8 {
        vgic_smp::secondary_receive_sgi();
    } else if job == Job::PowerOff as u8 {
        // Straight to CPU_OFF below.
    } else {
        runner::fatal(
            "the secondary has no job",
            format_args!("the secondary started with job {job}, which is none of the known ones"),
        );
    }
    let status = runner::psci(PSCI_CPU_OFF, 0, 0, 0);
    runner::fatal(
        "the secondary could not power off",
        format_args!(
            "PSCI CPU_OFF returned {status} ({}) on the secondary",
            psci_status_name(status)
        ),
    )
}

/// Waits until `progress` (a counter the secondary bumps as it works) moves twice within
/// `window` ticks — its vCPU is running now,
/// not merely at some point since the last look (under TCG the vCPUs are host threads,
/// and a busy host runs them in turns) — or until `limit` ticks have passed.
pub(super) fn running(progress: &AtomicU64, window: u64, limit: u64) -> bool {
    let start = cpu::ticks();
    let mut last = progress.load(Ordering::Relaxed);
    let mut moved_at = None;
    loop {
        let now = cpu::ticks();
        let seen = progress.load(Ordering::Relaxed);
        if seen != last {
            if moved_at.is_some_and(|t| now - t <= window) {
                return true;
            }
            moved_at = Some(now);
            last = seen;
        }
        if now - start > limit {
            return false;
        }
        core::hint::spin_loop();
    }
}

/// How many off-then-on cycles `cpu_off_then_on_at_once` runs.
const OFF_ON_CYCLES: u32 = 200;

/// PSCI says a vCPU is OFF (AFFINITY_INFO) only once a CPU_ON for it will succeed: the
/// secondary powers off at once, the boot CPU polls AFFINITY_INFO and issues CPU_ON the
/// moment it says OFF, [`OFF_ON_CYCLES`] times. A hypervisor that marks the vCPU off
/// before its physical CPU can be started again answers some of those CPU_ONs with
/// ALREADY_ON.
pub fn cpu_off_then_on_at_once(env: &Env) -> crate::report::TestResult {
    let target = other_cpu(env)?;
    let mmu = mmu(env)?;
    for cycle in 0..OFF_ON_CYCLES {
        start(&mmu, target, Job::PowerOff).map_err(|failure| match failure {
            Failure::Failed(why) => failed!("cycle {cycle}: {why}"),
            other => other,
        })?;
        let affinity = wait_off(target, 2_000);
        if affinity != AFFINITY_OFF {
            return Err(failed!(
                "cycle {cycle}: AFFINITY_INFO({target:#x}) still {affinity} 2 s after CPU_OFF"
            ));
        }
    }
    Ok(text!(
        "{OFF_ON_CYCLES} cycles: CPU_ON accepted the moment AFFINITY_INFO said OFF"
    ))
}
