//! The physical CPUs. The hypervisor owns every CPU the device tree lists: right after
//! the boot CPU's EL2 MMU is on, it starts each of the others once through firmware
//! (PSCI CPU_ON into head.S `secondary_entry`); each turns its MMU on with the same
//! tables and controls before it touches shared memory, reports itself (`hyp-cpu:`), and
//! goes back to firmware (PSCI CPU_OFF) until there is work for it: a probe the selftests
//! run on every CPU, or a guest vCPU. [`post`] starts it again with that work, through the
//! same MMU-on entry. A CPU with nothing to run is off, not spinning: on silicon it saves
//! power, and under QEMU's TCG, where WFE does not sleep, a spinning idle CPU would steal
//! the host's cores from the busy ones. (Once the hypervisor owns the GIC, idle CPUs can
//! wait in WFI for an SGI instead.)
//!
//! The system's features are the intersection of every CPU's (see
//! [`CpuFeatures::common_with`]); a CPU that came up with less than the tables were built
//! for lowers them for everyone before anything changes a table again.

use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};

use crate::boot::facts::{self, CpuOnline};
use crate::cpu::features::{self, CpuFeatures};
use platform::info::{MAX_CPUS, PlatformInfo};
use spin::Mutex;

use crate::arch::sysreg::{self, read_sysreg};
use crate::arch::{self, cache};

/// Where a CPU is: ABSENT (never arrived), OFF (in firmware, can be started), STARTING
/// (firmware CPU_ON issued with work in its mailbox), RUNNING (running work or a vCPU).
const ABSENT: u8 = 0;
const OFF: u8 = 1;
const STARTING: u8 = 2;
const RUNNING: u8 = 3;

/// Work for a CPU: `run(cpu index, args)`. A function that never returns (a guest vCPU)
/// keeps the CPU running until it calls [`power_off_this_cpu`].
#[derive(Clone, Copy)]
pub struct Work {
    pub run: fn(usize, [u64; 2]) -> u64,
    pub args: [u64; 2],
}

struct CpuSlot {
    state: AtomicU8,
    mpidr: AtomicU64,
    /// SCTLR_EL2, ID registers: what it reported when it first came up.
    online: Mutex<Option<CpuOnline>>,
    /// Its EL2 stack's top: a vCPU's traps save their frame just below it.
    stack_top: AtomicUsize,
    /// What it runs when it next starts.
    work: Mutex<Option<Work>>,
    result: AtomicU64,
    done: AtomicBool,
}

impl CpuSlot {
    const fn new() -> Self {
        Self {
            state: AtomicU8::new(ABSENT),
            mpidr: AtomicU64::new(0),
            online: Mutex::new(None),
            stack_top: AtomicUsize::new(0),
            work: Mutex::new(None),
            result: AtomicU64::new(0),
            done: AtomicBool::new(false),
        }
    }
}

static CPUS: [CpuSlot; MAX_CPUS] = [const { CpuSlot::new() }; MAX_CPUS];
/// How many slots the device tree filled.
static CPU_COUNT: AtomicUsize = AtomicUsize::new(0);

/// The boot CPU's EL2 translation controls, for the others to load before their MMU goes
/// on: MAIR_EL2, TCR_EL2, TTBR0_EL2, SCTLR_EL2 (head.S reads them with the MMU off, as
/// Device memory, so the boot CPU cleans them to the PoC before any CPU_ON).
#[unsafe(export_name = "secondary_mmu")]
static SECONDARY_MMU: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// How long a CPU may take from CPU_ON to reporting (TCG with several CPUs on a loaded
/// host is the slow case): 2 s.
const ARRIVAL_TIMEOUT_US: u64 = 2_000_000;
/// How long a CPU that just set itself OFF may take to reach firmware's CPU_OFF, during
/// which firmware still answers CPU_ON with ALREADY_ON: 100 ms.
const OFF_SETTLE_TIMEOUT_US: u64 = 100_000;

/// MPIDR_EL1's affinity fields (Aff3, Aff2..Aff0).
const MPIDR_AFFINITY: u64 = 0xff_00ff_ffff;

/// PSCI CPU_ON answers that mean "still on its way off" (DEN0022 ALREADY_ON, ON_PENDING).
const PSCI_ALREADY_ON: i64 = -4;
const PSCI_ON_PENDING: i64 = -5;

unsafe extern "C" {
    fn secondary_entry();
}

/// This CPU's affinity, as the device tree writes it.
pub fn this_mpidr() -> u64 {
    read_sysreg!("mpidr_el1") & MPIDR_AFFINITY
}

/// This CPU's index in the device tree's order, once [`bring_up`] registered it.
pub fn this_cpu() -> Option<usize> {
    let mpidr = this_mpidr();
    (0..CPU_COUNT.load(Ordering::Acquire)).find(|&i| {
        CPUS[i].state.load(Ordering::Acquire) != ABSENT
            && CPUS[i].mpidr.load(Ordering::Relaxed) == mpidr
    })
}

/// The stack top recorded for CPU `index`.
pub fn stack_top(index: usize) -> usize {
    CPUS[index].stack_top.load(Ordering::Acquire)
}

/// What this CPU reads back of itself.
fn read_self(index: usize) -> CpuOnline {
    CpuOnline {
        index,
        mpidr: this_mpidr(),
        sctlr_el2: read_sysreg!("sctlr_el2"),
        features: CpuFeatures::decode(&sysreg::id_registers()),
    }
}

/// Records and prints this CPU's `hyp-cpu:` line, the first time it comes up.
fn announce(index: usize) {
    let mut online = CPUS[index].online.lock();
    if online.is_some() {
        return;
    }
    let me = read_self(index);
    *online = Some(me);
    drop(online);
    let mut line = arrayvec::ArrayString::<160>::new();
    let _ = facts::write_cpu_line(&mut line, &me);
    crate::console::write_raw(format_args!("{line}"));
}

/// Publishes the boot CPU's live EL2 translation controls for the secondaries and cleans
/// them to the PoC: a CPU with its MMU off reads memory as Device-nGnRnE, around the
/// caches (Arm ARM D8.2.10), so it would otherwise see zeros.
fn publish_mmu_controls() {
    let values = [
        read_sysreg!("mair_el2"),
        read_sysreg!("tcr_el2"),
        read_sysreg!("ttbr0_el2"),
        read_sysreg!("sctlr_el2"),
    ];
    for (slot, value) in SECONDARY_MMU.iter().zip(values) {
        slot.store(value, Ordering::Relaxed);
    }
    let start = SECONDARY_MMU.as_ptr() as u64;
    cache::clean_to_poc(start..start + core::mem::size_of_val(&SECONDARY_MMU) as u64);
}

/// Starts every CPU of the device tree once with the EL2 MMU on (each reports itself and
/// goes back to firmware); the boot CPU announces itself first. Returns the features
/// every CPU that came up has. A CPU that does not arrive is reported and left out (a
/// guest's CPU_ON for it fails).
pub fn bring_up(info: &PlatformInfo<'_>) -> CpuFeatures {
    let count = info.cpus.len().min(MAX_CPUS);
    let boot_mpidr = this_mpidr();
    for (slot, cpu) in CPUS.iter().zip(&info.cpus) {
        slot.mpidr
            .store(cpu.mpidr & MPIDR_AFFINITY, Ordering::Relaxed);
    }
    CPU_COUNT.store(count, Ordering::Release);
    let Some(boot) = (0..count).find(|&i| CPUS[i].mpidr.load(Ordering::Relaxed) == boot_mpidr)
    else {
        log::error!("cpus: the boot CPU's MPIDR {boot_mpidr:#x} is not in the device tree");
        crate::boot::stop_failure("the boot CPU is not in the device tree");
    };
    CPUS[boot]
        .stack_top
        .store(crate::mm::image::boot_stack_top(), Ordering::Release);
    CPUS[boot].state.store(RUNNING, Ordering::Release);
    announce(boot);

    publish_mmu_controls();
    for index in (0..count).filter(|&i| i != boot) {
        let slot = &CPUS[index];
        let mpidr = slot.mpidr.load(Ordering::Relaxed);
        slot.state.store(STARTING, Ordering::Release);
        if let Err(code) = firmware_cpu_on(index) {
            log::warn!("cpu{index} (MPIDR {mpidr:#x}): firmware CPU_ON failed ({code}); left out");
            slot.state.store(ABSENT, Ordering::Release);
            continue;
        }
        let arrived = sysreg::wait_until(
            || slot.state.load(Ordering::Acquire) == OFF,
            ARRIVAL_TIMEOUT_US,
        );
        if !arrived {
            log::warn!("cpu{index} (MPIDR {mpidr:#x}): did not come up; left out");
            slot.state.store(ABSENT, Ordering::Release);
        }
    }
    let online: arrayvec::ArrayVec<CpuFeatures, MAX_CPUS> = (0..count)
        .filter_map(|i| CPUS[i].online.lock().map(|cpu| cpu.features))
        .collect();
    let common = features::common_features(online.iter())
        .unwrap_or(CpuFeatures::decode(&sysreg::id_registers()));
    crate::console::write_raw(format_args!(
        "hyp-facts: cpus_online={} common_bbm_level={} common_tlbi_range={}\n",
        online.len(),
        common.bbm_level,
        u8::from(common.tlbi_range)
    ));
    common
}

/// PSCI CPU_ON of CPU `index` into `secondary_entry`. A CPU that marked itself OFF may
/// not have reached firmware's CPU_OFF yet (firmware then says ALREADY_ON or ON_PENDING):
/// retried until it has, within [`OFF_SETTLE_TIMEOUT_US`].
fn firmware_cpu_on(index: usize) -> Result<(), i64> {
    let mpidr = CPUS[index].mpidr.load(Ordering::Relaxed);
    let entry = secondary_entry as *const () as usize as u64;
    let mut answer = Ok(());
    let settled = sysreg::wait_until(
        || {
            answer = arch::firmware::cpu_on(mpidr, entry, index as u64);
            !matches!(answer, Err(PSCI_ALREADY_ON | PSCI_ON_PENDING))
        },
        OFF_SETTLE_TIMEOUT_US,
    );
    if settled {
        answer
    } else {
        Err(PSCI_ALREADY_ON)
    }
}

/// The indexes of the CPUs that came up.
pub fn online() -> impl Iterator<Item = usize> {
    (0..CPU_COUNT.load(Ordering::Acquire))
        .filter(|&i| CPUS[i].state.load(Ordering::Acquire) != ABSENT)
}

/// What CPU `index` reported when it came up.
pub fn reported(index: usize) -> Option<CpuOnline> {
    *CPUS.get(index)?.online.lock()
}

/// Why [`post`] could not start a CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotStarted {
    /// No such CPU, it never came up, or it is running something.
    NotOff,
    /// Firmware's CPU_ON failed with this PSCI code.
    Firmware(i64),
}

/// Starts the off CPU `index` with `work`. Fails if it is not off (absent, or running
/// something) or firmware refuses.
pub fn post(index: usize, work: Work) -> Result<(), NotStarted> {
    let slot = CPUS.get(index).ok_or(NotStarted::NotOff)?;
    // Only one poster wins OFF -> STARTING, so the mailbox is this poster's.
    if slot
        .state
        .compare_exchange(OFF, STARTING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Err(NotStarted::NotOff);
    }
    slot.done.store(false, Ordering::Relaxed);
    *slot.work.lock() = Some(work);
    if let Err(code) = firmware_cpu_on(index) {
        log::warn!("cpu{index}: firmware CPU_ON failed ({code})");
        *slot.work.lock() = None;
        slot.state.store(OFF, Ordering::Release);
        return Err(NotStarted::Firmware(code));
    }
    Ok(())
}

/// Runs `work` on CPU `index` and waits for its result (the calling CPU's own index runs
/// it directly). `None` if the CPU is not off or does not answer within `timeout_us`.
pub fn run_on(index: usize, work: Work, timeout_us: u64) -> Option<u64> {
    if this_cpu() == Some(index) {
        return Some((work.run)(index, work.args));
    }
    post(index, work).ok()?;
    let slot = &CPUS[index];
    sysreg::wait_until(|| slot.done.load(Ordering::Acquire), timeout_us)
        .then(|| slot.result.load(Ordering::Acquire))
}

/// A secondary CPU arrives here from head.S with its MMU on and its stack set: it reports
/// itself the first time, runs the work it was started for (none at bring-up), and goes
/// back to firmware.
#[unsafe(no_mangle)]
extern "C" fn secondary_main(index: usize, stack_top: usize) -> ! {
    let Some(slot) = CPUS.get(index) else {
        arch::halt()
    };
    if slot.state.load(Ordering::Acquire) != STARTING {
        arch::halt();
    }
    slot.stack_top.store(stack_top, Ordering::Release);
    announce(index);
    slot.state.store(RUNNING, Ordering::Release);
    // Its own statement: the mailbox lock must be released before `run`, which for a
    // vCPU never returns.
    let work = slot.work.lock().take();
    if let Some(work) = work {
        let result = (work.run)(index, work.args);
        slot.result.store(result, Ordering::Relaxed);
        slot.done.store(true, Ordering::Release);
    }
    power_off_this_cpu(|_| {})
}

/// Ends what this CPU runs (its work, or a vCPU that called CPU_OFF) and returns it to
/// firmware. `then` runs once the CPU is marked OFF, so that whatever `then` announces
/// (for a vCPU: "off", to AFFINITY_INFO and CPU_ON) finds the CPU startable.
pub fn power_off_this_cpu(then: fn(usize)) -> ! {
    let Some(index) = this_cpu() else {
        arch::halt()
    };
    CPUS[index].state.store(OFF, Ordering::Release);
    then(index);
    arch::firmware::cpu_off();
    // CPU_OFF does not return on success.
    log::error!("cpu{index}: firmware CPU_OFF failed; parking");
    arch::halt()
}
