//! `pgtable::Hardware` on aarch64: table pages from the frame pool (identity-mapped),
//! DSB/ISB, and the TLB maintenance instructions of each regime.

use core::arch::asm;
use core::num::NonZeroU32;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::mm::tlbi_range::{self, TlbiOperand};
use pgtable::{Barrier, Hardware, PhysAddr, TlbInvalidation};

use super::FRAMES;
use crate::iommu::command::Command;
use crate::iommu::driver::Smmu;
use crate::iommu::invalidation::commands_for;
use arrayvec::ArrayVec;

/// An SMMU that fails its commands is reported; the CPU's tables are right either way,
/// and the guest's devices then fault rather than reach stale translations (their STEs
/// point at tables the engine keeps consistent).
fn report_smmu(result: Result<(), crate::iommu::driver::SmmuError>) {
    if let Err(error) = result {
        log::error!("SMMU: stage-2 invalidation: {error}");
    }
}

/// Which translation regime a tree belongs to: it picks the TLBI instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlbRegime {
    /// EL2 stage 1 (TTBR0_EL2).
    El2,
    /// The stage 2 of the VMID currently in VTTBR_EL2.
    Stage2,
}

/// Fault injection: the table allocation numbered `FAIL_AT` (counting every table
/// allocation of the hypervisor from 1) fails, once. `fail_table_alloc=N` arms it at boot;
/// the selftests arm it relative to now with [`fail_allocation_after`].
static FAIL_AT: AtomicU32 = AtomicU32::new(0);
static ALLOCATIONS: AtomicU32 = AtomicU32::new(0);
static INJECTED: AtomicU32 = AtomicU32::new(0);

pub fn inject_table_allocation_failure(at: Option<NonZeroU32>) {
    FAIL_AT.store(at.map_or(0, NonZeroU32::get), Ordering::Relaxed);
}

/// Makes the `n`-th table allocation from now fail (1: the next one).
pub fn fail_allocation_after(n: NonZeroU32) {
    let now = ALLOCATIONS.load(Ordering::Relaxed);
    FAIL_AT.store(now.saturating_add(n.get()), Ordering::Relaxed);
}

/// Whether an injected failure is still to come.
pub fn fault_injection_armed() -> bool {
    FAIL_AT.load(Ordering::Relaxed) > ALLOCATIONS.load(Ordering::Relaxed)
}

/// Disarms fault injection.
pub fn disarm_fault_injection() {
    FAIL_AT.store(0, Ordering::Relaxed);
}

/// Table allocations so far (tried, including the injected failures).
pub fn table_allocations() -> u32 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Allocations that failed by injection.
pub fn injected_failures() -> u32 {
    INJECTED.load(Ordering::Relaxed)
}

fn injected_failure() -> bool {
    let count = ALLOCATIONS.fetch_add(1, Ordering::Relaxed) + 1;
    let fail_at = FAIL_AT.load(Ordering::Relaxed);
    if fail_at != 0 && count == fail_at {
        INJECTED.fetch_add(1, Ordering::Relaxed);
        log::warn!("fault injection: table allocation #{count} fails");
        return true;
    }
    false
}

/// Whether every CPU implements FEAT_TLBIRANGE: false until all CPUs reported theirs
/// (`cpus::bring_up`), so a range instruction can never reach a CPU without it.
static RANGE_TLBI_ALLOWED: AtomicBool = AtomicBool::new(false);
/// Stage-2 TLBIs issued from a CPU that held another VMID (see `TableHw::with_own_vmid`).
static STAGE2_VMID_SWITCHES: AtomicU32 = AtomicU32::new(0);

/// How many stage-2 TLBIs needed their guest's VMID switched in first.
pub fn stage2_vmid_switches() -> u32 {
    STAGE2_VMID_SWITCHES.load(Ordering::Relaxed)
}

/// Allows range TLBIs once every CPU is known to implement FEAT_TLBIRANGE.
pub fn allow_range_tlbi(every_cpu_has_it: bool) {
    RANGE_TLBI_ALLOWED.store(every_cpu_has_it, Ordering::Relaxed);
}

pub struct TableHw {
    regime: TlbRegime,
    /// For a guest's stage 2 that an SMMU also walks: where its invalidations go too.
    smmu: Option<SmmuMirror>,
    /// Table pages this tree holds now (roots included).
    live_pages: u32,
    /// At most this many (one of several guests: it cannot starve the others).
    page_cap: Option<u32>,
    /// Allocations the cap refused.
    capped: u32,
    /// A guest's stage 2: the VTTBR_EL2 value naming its VMID. Stage-2 TLBIs act on the
    /// VMID in VTTBR_EL2 when they execute (Arm ARM D8.16.2, "TLB maintenance
    /// instructions": IPAS2LE1IS, VMALLS12E1IS apply to the current VMID), so one issued
    /// on a CPU that runs another guest (or none) would miss this guest's entries.
    vttbr: Option<u64>,
}

/// The SMMU side of a stage 2's TLB maintenance (issue 17): every CPU invalidation is
/// mirrored by SMMU commands in the same order (`iommu::invalidation`), and the engine's
/// completing DSB (after which it frees unlinked tables and remakes broken entries) also
/// waits for a CMD_SYNC, so the SMMU never walks a freed table or keeps a stale entry
/// the CPU already dropped.
struct SmmuMirror {
    smmu: &'static Smmu,
    vmid: u16,
    pending: ArrayVec<Command, SMMU_BATCH>,
}

/// Commands batched before they are handed to the SMMU's queue.
const SMMU_BATCH: usize = 64;

impl TableHw {
    pub const fn new(regime: TlbRegime) -> Self {
        Self {
            regime,
            smmu: None,
            live_pages: 0,
            page_cap: None,
            capped: 0,
            vttbr: None,
        }
    }

    /// This tree is the stage 2 `vttbr` (VMID and root) names: its TLBIs are issued with
    /// that VMID current.
    pub fn set_vttbr(&mut self, vttbr: u64) {
        self.vttbr = Some(vttbr);
    }

    /// Runs `tlbi` with this guest's VMID current in VTTBR_EL2, switching to it (and
    /// back) when this CPU holds another; the ISBs make each write of VTTBR_EL2 visible
    /// to the instructions after it (Arm ARM D8.16.2: a TLBI uses the VMID current when
    /// it executes, a context-synchronized value). EL2's own translation does not use
    /// VTTBR_EL2, so the switch affects nothing else; the guest that owns this CPU gets
    /// its value back before EL2 returns to it.
    fn with_own_vmid(&self, tlbi: impl FnOnce()) {
        const VMID_SHIFT: u32 = 48;
        let Some(own) = self.vttbr.filter(|_| self.regime == TlbRegime::Stage2) else {
            tlbi();
            return;
        };
        let current: u64;
        // SAFETY: reading VTTBR_EL2 at EL2 has no side effect.
        unsafe { asm!("mrs {}, vttbr_el2", out(reg) current, options(nostack, preserves_flags)) };
        if current >> VMID_SHIFT == own >> VMID_SHIFT {
            tlbi();
            return;
        }
        STAGE2_VMID_SWITCHES.fetch_add(1, Ordering::Relaxed);
        // SAFETY: VTTBR_EL2 only steers stage-2 translation of EL1/EL0, which does not run
        // on this CPU while EL2 does; it is restored before anything else reads it.
        unsafe {
            asm!("msr vttbr_el2, {}", "isb", in(reg) own, options(nostack, preserves_flags));
        }
        tlbi();
        // SAFETY: as above.
        unsafe {
            asm!("msr vttbr_el2, {}", "isb", in(reg) current, options(nostack, preserves_flags));
        }
    }

    /// From now on this tree may hold at most `pages` table pages: an edit that needs
    /// more fails with `OutOfTables` (a guest's MEM_PROTECT then gets NO_MEMORY) and
    /// leaves the tree as it was, as any allocation failure does.
    pub fn set_page_cap(&mut self, pages: u32) {
        self.page_cap = Some(pages);
    }

    /// Table pages held now, the cap, and allocations the cap refused.
    pub fn page_use(&self) -> (u32, Option<u32>, u32) {
        (self.live_pages, self.page_cap, self.capped)
    }

    /// Whether `pages` more fit under the cap (counted as refused when not).
    fn within_cap(&mut self, pages: usize) -> bool {
        let wanted = self.live_pages.saturating_add(pages as u32);
        match self.page_cap {
            Some(cap) if wanted > cap => {
                self.capped = self.capped.saturating_add(1);
                false
            }
            _ => true,
        }
    }

    /// From now on, mirror this stage 2's invalidations of VMID `vmid` to `smmu`.
    pub fn mirror_to_smmu(&mut self, smmu: &'static Smmu, vmid: u16) {
        self.smmu = Some(SmmuMirror {
            smmu,
            vmid,
            pending: ArrayVec::new(),
        });
    }

    fn mirror_invalidation(&mut self, op: TlbInvalidation) {
        let Some(mirror) = self.smmu.as_mut() else {
            return;
        };
        let range = mirror.smmu.features.range_invalidation;
        let (smmu, vmid) = (mirror.smmu, mirror.vmid);
        commands_for(op, vmid, range, |command| {
            if mirror.pending.is_full() {
                report_smmu(smmu.submit(&mirror.pending, false));
                mirror.pending.clear();
            }
            mirror.pending.push(command);
        });
    }

    /// After the CPU's completing DSB: the SMMU's commands, and a CMD_SYNC waited for.
    fn complete_smmu_invalidations(&mut self) {
        if let Some(mirror) = self.smmu.as_mut()
            && !mirror.pending.is_empty()
        {
            report_smmu(mirror.smmu.submit(&mirror.pending, true));
            mirror.pending.clear();
        }
    }

    fn tlbi_operand(&self, operand: TlbiOperand) {
        self.with_own_vmid(|| self.tlbi_operand_as_is(operand));
    }

    fn tlbi_operand_as_is(&self, operand: TlbiOperand) {
        // SAFETY: TLB maintenance only drops cached translations; the engine orders it
        // with DSBs (Arm ARM RDDMVT / RGPPYH). Range operands reach here only when every
        // CPU has FEAT_TLBIRANGE (`tlbi` checks RANGE_TLBI_ALLOWED).
        unsafe {
            match (self.regime, operand) {
                (TlbRegime::El2, TlbiOperand::Page(page)) => {
                    asm!("tlbi vale2is, {}", in(reg) page, options(nostack, preserves_flags))
                }
                (TlbRegime::El2, TlbiOperand::Range(op)) => asm!(
                    ".arch_extension tlb-rmi",
                    "tlbi rvae2is, {}",
                    in(reg) op,
                    options(nostack, preserves_flags)
                ),
                (TlbRegime::Stage2, TlbiOperand::Page(page)) => {
                    asm!("tlbi ipas2le1is, {}", in(reg) page, options(nostack, preserves_flags))
                }
                (TlbRegime::Stage2, TlbiOperand::Range(op)) => asm!(
                    ".arch_extension tlb-rmi",
                    "tlbi ripas2e1is, {}",
                    in(reg) op,
                    options(nostack, preserves_flags)
                ),
            }
        }
    }

    fn tlbi_all(&self) {
        self.with_own_vmid(|| self.tlbi_all_as_is());
    }

    fn tlbi_all_as_is(&self) {
        // SAFETY: as in `tlbi_operand_as_is`.
        unsafe {
            match self.regime {
                TlbRegime::El2 => asm!("tlbi alle2is", options(nostack, preserves_flags)),
                TlbRegime::Stage2 => asm!("tlbi vmalls12e1is", options(nostack, preserves_flags)),
            }
        }
    }
}

// SAFETY: tables come from the frame pool, which is identity-mapped RAM owned by the
// hypervisor; each frame is handed out once until freed; the barrier and TLBI methods
// issue the instructions their documentation names.
unsafe impl Hardware for TableHw {
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        if injected_failure() || !self.within_cap(1) {
            return None;
        }
        let table = FRAMES.lock().alloc_page().map(PhysAddr)?;
        self.live_pages += 1;
        Some(table)
    }

    fn alloc_root(&mut self, pages: usize) -> Option<PhysAddr> {
        if injected_failure() || !self.within_cap(pages) {
            return None;
        }
        let root = FRAMES.lock().alloc_contiguous(pages).map(PhysAddr)?;
        self.live_pages = self.live_pages.saturating_add(pages as u32);
        Some(root)
    }

    fn free_table(&mut self, table: PhysAddr) {
        // SAFETY: the engine frees only tables it allocated and no longer links.
        unsafe { FRAMES.lock().free_page(table.0) };
        self.live_pages = self.live_pages.saturating_sub(1);
    }

    fn free_root(&mut self, root: PhysAddr, pages: usize) {
        // SAFETY: as in `free_table`.
        unsafe { FRAMES.lock().free_contiguous(root.0, pages) };
        self.live_pages = self.live_pages.saturating_sub(pages as u32);
    }

    fn table_ptr(&self, table: PhysAddr) -> NonNull<u64> {
        // Frames are identity-mapped (MMU off, or the EL2 direct map); the engine only
        // asks for frames it was given, which are never at address 0.
        NonNull::new(table.0 as *mut u64).unwrap_or(NonNull::dangling())
    }

    fn dsb(&mut self, barrier: Barrier) {
        // SAFETY: barriers have no effect on memory safety.
        unsafe {
            match barrier {
                Barrier::StoresIsh => asm!("dsb ishst", options(nostack, preserves_flags)),
                Barrier::FullIsh => asm!("dsb ish", options(nostack, preserves_flags)),
            }
        }
        if barrier == Barrier::FullIsh {
            self.complete_smmu_invalidations();
        }
    }

    fn isb(&mut self) {
        // SAFETY: as above.
        unsafe { asm!("isb", options(nostack, preserves_flags)) };
    }

    fn tlbi(&mut self, op: TlbInvalidation) {
        self.mirror_invalidation(op);
        match op {
            // TTL hints are left 0 ("no information"), valid on every CPU.
            TlbInvalidation::Leaf { addr, .. } => self.tlbi_operand(TlbiOperand::Page(addr >> 12)),
            TlbInvalidation::Range { start, size } => {
                // A TLBI range instruction is UNDEFINED without FEAT_TLBIRANGE: never issue
                // one unless every CPU has it, whatever capabilities a tree was given.
                let allowed = RANGE_TLBI_ALLOWED.load(Ordering::Relaxed);
                if !allowed
                    || !tlbi_range::decompose(start, size, |operand| self.tlbi_operand(operand))
                {
                    self.tlbi_all();
                }
            }
            TlbInvalidation::All => self.tlbi_all(),
            TlbInvalidation::Stage1OfVmid => self.with_own_vmid(|| {
                // SAFETY: as in `tlbi_operand_as_is` (VMALLE1IS acts on the current VMID).
                unsafe { asm!("tlbi vmalle1is", options(nostack, preserves_flags)) }
            }),
        }
    }
}
