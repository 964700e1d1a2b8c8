//! A guest as a value (as hvisor's zone and KVM's `struct kvm` are): its stage 2 and
//! VMID, its RAM, its vCPUs and their power states, the change window its faults consult,
//! and everything counted about it. Code that acts on a guest is handed its `Vm`; nothing
//! about a guest lives in a global. A physical CPU knows which guest it runs through
//! [`crate::vm::vcpu`]'s per-CPU current guest.

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use arrayvec::ArrayVec;
use pgtable::PageTable;
use platform::info::{MAX_CPUS, PhysRange};
use spin::Mutex;

use crate::arch::esr::ExceptionClass;
use crate::mm::memory_plan::MAX_GUEST_RAM_RANGES;
use crate::mm::table_hw::TableHw;
use crate::vm::change_window::ChangeWindow;
use crate::vm::controls::GuestControls;
use crate::vm::emulated_devices::EmulatedDevices;
use crate::vm::foreign_access::{ForeignAccessTally, HostMemoryMap};
use crate::vm::psci::CpuPowerState;
use crate::vm::vgic::Vgic;
use crate::vm::virtual_console::VirtualConsole;

/// A guest's stage-2 tree.
pub type Stage2 = PageTable<TableHw>;

/// What every vCPU's EL2 controls are set from, fixed before the first one runs.
pub struct VcpuSetup {
    pub controls: GuestControls,
    pub vtcr: u64,
    pub vttbr: u64,
    /// The MIDR the guest sees (the physical one: one vCPU per physical CPU).
    pub midr: u64,
}

/// The guest's vCPUs, each pinned to its own physical CPU (static partitioning, as Bao,
/// Jailhouse and hvisor do): vCPU `i` has the MPIDR the guest's DT gives it and runs
/// only on physical CPU `physical[i]`. The single guest's vCPUs are the physical CPUs
/// themselves, in the DT's order.
pub struct Vcpus {
    mpidrs: ArrayVec<u64, MAX_CPUS>,
    /// Physical CPU index (the DT's order) and its MPIDR, per vCPU.
    physical: ArrayVec<(usize, u64), MAX_CPUS>,
    power: [AtomicU8; MAX_CPUS],
}

impl Vcpus {
    /// vCPU `i` with `mpidrs[i]` on physical CPU `i` (whose MPIDR it is).
    pub fn new(mpidrs: ArrayVec<u64, MAX_CPUS>) -> Self {
        let physical = mpidrs.iter().copied().enumerate().collect();
        Self::pinned(mpidrs, physical)
    }

    /// vCPU `i` with `mpidrs[i]` on physical CPU `physical[i]` (index, MPIDR). The two
    /// lists are as long as each other (the shorter one decides).
    pub fn pinned(
        mut mpidrs: ArrayVec<u64, MAX_CPUS>,
        mut physical: ArrayVec<(usize, u64), MAX_CPUS>,
    ) -> Self {
        let count = mpidrs.len().min(physical.len());
        mpidrs.truncate(count);
        physical.truncate(count);
        Self {
            mpidrs,
            physical,
            power: [const { AtomicU8::new(CpuPowerState::Off as u8) }; MAX_CPUS],
        }
    }

    pub fn count(&self) -> usize {
        self.mpidrs.len()
    }

    /// The vCPU with this MPIDR (affinity bits).
    pub fn index_of(&self, mpidr: u64) -> Option<usize> {
        self.mpidrs.iter().position(|&m| m == mpidr)
    }

    /// vCPU `index`'s MPIDR, as the guest sees it.
    pub fn mpidr(&self, index: usize) -> Option<u64> {
        self.mpidrs.get(index).copied()
    }

    /// The physical CPU vCPU `vcpu` is pinned to.
    pub fn physical_cpu(&self, vcpu: usize) -> Option<usize> {
        self.physical.get(vcpu).map(|&(cpu, _)| cpu)
    }

    /// The vCPU pinned to physical CPU `cpu`, if this guest has one there.
    pub fn vcpu_on(&self, cpu: usize) -> Option<usize> {
        self.physical.iter().position(|&(pinned, _)| pinned == cpu)
    }

    /// The MPIDR of the physical CPU vCPU `vcpu` runs on (where its kicks go).
    pub fn physical_mpidr(&self, vcpu: usize) -> Option<u64> {
        self.physical.get(vcpu).map(|&(_, mpidr)| mpidr)
    }

    /// The physical CPUs this guest's vCPUs are pinned to.
    pub fn physical_cpus(&self) -> impl Iterator<Item = usize> + '_ {
        self.physical.iter().map(|&(cpu, _)| cpu)
    }

    /// As AFFINITY_INFO reports it.
    pub fn power(&self, index: usize) -> CpuPowerState {
        match self.power[index].load(Ordering::Acquire) {
            s if s == CpuPowerState::On as u8 => CpuPowerState::On,
            s if s == CpuPowerState::OnPending as u8 => CpuPowerState::OnPending,
            _ => CpuPowerState::Off,
        }
    }

    pub fn set_power(&self, index: usize, state: CpuPowerState) {
        self.power[index].store(state as u8, Ordering::Release);
    }

    /// Off -> OnPending, for exactly one CPU_ON; `false` if the vCPU was not off.
    pub fn claim_for_cpu_on(&self, index: usize) -> bool {
        self.power[index]
            .compare_exchange(
                CpuPowerState::Off as u8,
                CpuPowerState::OnPending as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }
}

/// Guest exits by reason.
#[derive(Default)]
pub struct ExitCounters {
    hvc: AtomicU64,
    smc: AtomicU64,
    sysreg: AtomicU64,
    data_abort: AtomicU64,
    instruction_abort: AtomicU64,
    /// Loads and stores emulated for the vGIC or the virtual console.
    mmio: AtomicU64,
    /// Physical interrupts (device, timer, kick, maintenance).
    interrupt: AtomicU64,
    other: AtomicU64,
}

impl ExitCounters {
    pub fn count(&self, class: ExceptionClass) {
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

    pub fn count_mmio(&self) {
        self.mmio.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_interrupt(&self) {
        self.interrupt.fetch_add(1, Ordering::Relaxed);
    }
}

/// What is counted about a guest.
#[derive(Default)]
pub struct VmStats {
    /// Stage-2 faults a change in flight explained, retried.
    pub retried_faults: AtomicU64,
    /// TLB conflict aborts, invalidated and retried, never injected.
    pub tlb_conflicts: AtomicU64,
    pub exits: ExitCounters,
    /// Accesses outside its memory, by what they hit.
    pub foreign_accesses: ForeignAccessTally,
    /// Counter ticks spent at EL2 on its exits.
    pub el2_ticks: AtomicU64,
    /// SYSTEM_RESETs done for it alone (one of several guests).
    pub resets: AtomicU64,
    /// Physical interrupts nobody owned (deactivated and dropped).
    pub unexpected_interrupts: AtomicU64,
    /// Kick SGIs sent to its vCPUs on other CPUs.
    pub kicks: AtomicU64,
    /// SGI-generation register writes it made.
    pub sgis: AtomicU64,
    /// Emulated-device accesses refused (bad width or offset, not a single load/store).
    pub refused_mmio: AtomicU64,
}

impl core::fmt::Display for VmStats {
    /// The `hyp-exits:` line's pairs.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let e = &self.exits;
        write!(
            f,
            "hvc={} smc={} sysreg={} data_abort={} instruction_abort={} mmio={} irq={} wfi=0 other={} tlb_conflict={} el2_us={} kicks={} sgis={} unexpected_irqs={} refused_mmio={}",
            get(&e.hvc),
            get(&e.smc),
            get(&e.sysreg),
            get(&e.data_abort),
            get(&e.instruction_abort),
            get(&e.mmio),
            get(&e.interrupt),
            get(&e.other),
            get(&self.tlb_conflicts),
            crate::arch::sysreg::ticks_to_micros(get(&self.el2_ticks)),
            get(&self.kicks),
            get(&self.sgis),
            get(&self.unexpected_interrupts),
            get(&self.refused_mmio),
        )
    }
}

/// One guest.
pub struct Vm {
    /// In VTTBR_EL2 and every stage-2 TLBI made for it.
    pub vmid: u16,
    /// Its stage-2 tree; the lock serialises every edit.
    pub stage2: Mutex<Stage2>,
    /// The stage-2 input size, for walks over all of it.
    pub ipa_limit: u64,
    pub setup: VcpuSetup,
    /// Its RAM (identity mapped: IPA = PA).
    pub ram: ArrayVec<PhysRange, MAX_GUEST_RAM_RANGES>,
    pub vcpus: Vcpus,
    /// The host's memory, to name what a guest access outside its memory was after.
    pub host: HostMemoryMap,
    /// The IPA range a MEM_PROTECT is changing, for the fault handler.
    pub change_window: ChangeWindow,
    pub stats: VmStats,
    /// Its virtual GIC.
    pub vgic: Mutex<Vgic>,
    /// Its virtual console (a PL011).
    pub console: Mutex<VirtualConsole>,
    /// Where its emulated devices sit (stage-2 holes).
    pub devices: EmulatedDevices,
    /// Its number: the `(gN) ` tag of its console lines and `guest=N` in reports.
    pub number: u16,
    /// How to boot it again from its original images (a dom0less guest: the single
    /// guest's SYSTEM_RESET resets the machine instead).
    pub boot: Option<GuestBoot>,
}

/// What a guest's (re)boot needs: its RAM and the physical memory behind it, the module
/// copies and DTB that put its images in place, where it starts, and its vGIC as built.
pub struct GuestBoot {
    pub ram: crate::mm::guest_backing::RamBacking,
    /// Its dom0less description and the host DT it was planned from (which stays
    /// mapped and untouched), to plan it again.
    pub domain: guest_loader::DomainSpec,
    pub host_dtb: &'static [u8],
    pub vcpus: usize,
    pub vgic: Vgic,
}

impl Vm {
    /// Whether `ipa` is in the guest's RAM.
    pub fn owns_ram(&self, ipa: u64) -> bool {
        self.ram.iter().any(|r| r.contains(ipa))
    }
}
