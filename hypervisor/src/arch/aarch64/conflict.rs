//! TLB conflict aborts taken at EL2 itself: invalidated locally and retried, a bounded
//! number of times, and counted.

use core::sync::atomic::{AtomicU64, Ordering};

use platform::info::MAX_CPUS;

use crate::arch::trap_frame::TrapFrame;

/// TLB conflict aborts taken at EL2 and retried.
static EL2_TLB_CONFLICTS: AtomicU64 = AtomicU64::new(0);
/// Per CPU: the ELR of its last conflict abort and how many came in a row there.
static CONFLICT_STREAK: [spin::Mutex<(u64, u32)>; MAX_CPUS] =
    [const { spin::Mutex::new((0, 0)) }; MAX_CPUS];
/// More conflict aborts than this in a row at one instruction, each after a local
/// invalidation, means the conflict is not in this PE's TLB: a bug, reported as such.
const CONFLICT_RETRIES: u32 = 8;

pub fn el2_tlb_conflicts() -> u64 {
    EL2_TLB_CONFLICTS.load(Ordering::Relaxed)
}

/// A TLB conflict abort at EL2 (Arm ARM: possible under FEAT_BBM level 1/2 until the old
/// entry of a size change is invalidated, IHYQMB): drop this PE's EL2 entries and retry
/// the access, a bounded number of times. Only the EL2 map's heap and crash-region
/// entries change while live, never the image or the stacks, so saving the trap frame
/// could not itself have conflicted. Returns `false` once the bound is reached.
pub fn retry_el2_tlb_conflict(frame: &TrapFrame) -> bool {
    super::tlb::invalidate_el2_locally();
    EL2_TLB_CONFLICTS.fetch_add(1, Ordering::Relaxed);
    let cpu = crate::cpu::this_cpu().unwrap_or(0);
    let mut streak = CONFLICT_STREAK[cpu].lock();
    *streak = match *streak {
        (elr, count) if elr == frame.elr => (elr, count + 1),
        _ => (frame.elr, 1),
    };
    streak.1 <= CONFLICT_RETRIES
}
