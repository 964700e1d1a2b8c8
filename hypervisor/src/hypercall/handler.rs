//! The vendor hypercalls on the board (ABI and validation in `crate::hypercall`):
//! permission changes on the live stage 2 through the engine, queries and counters; and
//! the stage-2 fault side: a fault explained by a change in flight is retried, one the
//! new permissions forbid is injected as the abort the architecture would give.

use core::sync::atomic::Ordering;

use crate::hypercall::{self, Hypercall, Permissions, StatsGroup};
use crate::mm::memory_plan::MAX_GUEST_RAM_RANGES;
use crate::vm::fault::AccessKind;
use pgtable::{Access, Attributes, MemoryType};
use platform::info::PhysRange;

use crate::mm::report::fingerprint;
use crate::mm::table_hw::fault_injection_armed;
use crate::vm::guest::Vm;

fn attributes(permissions: Permissions) -> Attributes {
    let bits = u8::from(permissions.read)
        | (u8::from(permissions.write) << 1)
        | (u8::from(permissions.execute) << 2);
    Attributes::new(
        Access::from_bits_truncate(bits),
        MemoryType::NormalWriteBack,
    )
}

fn permissions(access: Access) -> Permissions {
    Permissions {
        read: access.contains(Access::READ),
        write: access.contains(Access::WRITE),
        execute: access.contains(Access::EXECUTE),
    }
}

fn ram_pairs(ram: &[PhysRange]) -> arrayvec::ArrayVec<(u64, u64), MAX_GUEST_RAM_RANGES> {
    ram.iter()
        .map(|r| (r.base, r.size))
        .take(MAX_GUEST_RAM_RANGES)
        .collect()
}

/// Runs a decoded call for `vm`; returns x0..x3.
pub fn handle(call: Hypercall, vm: &Vm) -> [u64; 4] {
    let ram = &vm.ram;
    let status = |code: i64| [code as u64, 0, 0, 0];
    match call {
        Hypercall::CallUid => hypercall::UID.map(u64::from),
        Hypercall::Features => [hypercall::FEATURE_BITMAP, 0, 0, 0],
        Hypercall::MemProtect {
            ipa,
            size,
            permissions,
        } => {
            if let Err(code) = hypercall::check_ownership(ipa, size, &ram_pairs(ram), &[]) {
                return status(code);
            }
            let mut table = vm.stage2.lock();
            // Under fault injection, prove on the spot that a failed change left stage 2
            // as it was (a whole-table walk: too slow for every call otherwise).
            let limit = table.regime().ia_limit();
            let before = fault_injection_armed().then(|| fingerprint(&table, limit));
            vm.change_window.open(ipa, ipa + size);
            let result = table.change_attrs(ipa..ipa + size, attributes(permissions));
            vm.change_window.close();
            match result {
                Ok(_) => status(hypercall::SUCCESS),
                Err(pgtable::Error::OutOfTables) => {
                    match before.map(|before| (before, fingerprint(&table, limit))) {
                        Some((before, after)) if before != after => log::error!(
                            "MEM_PROTECT [{ipa:#x}, +{size:#x}): no table memory, and stage 2 \
                             CHANGED: before {before}, after {after}"
                        ),
                        Some((_, after)) => log::warn!(
                            "MEM_PROTECT [{ipa:#x}, +{size:#x}): no table memory; stage 2 \
                             unchanged ({after})"
                        ),
                        None => log::warn!("MEM_PROTECT [{ipa:#x}, +{size:#x}): no table memory"),
                    }
                    status(hypercall::NO_MEMORY)
                }
                Err(error) => {
                    log::warn!("MEM_PROTECT [{ipa:#x}, +{size:#x}): {error}");
                    status(hypercall::INVALID_PARAMETER)
                }
            }
        }
        Hypercall::MemQuery { ipa } => {
            if let Err(code) = hypercall::check_ownership(ipa & !0xfff, 4096, &ram_pairs(ram), &[])
            {
                return status(code);
            }
            let leaf = vm.stage2.lock().query(ipa);
            // A stage-2 leaf is at level 1, 2 or 3, each with its size.
            match leaf.and_then(|leaf| {
                Some((leaf, hyp_abi::hypercall::leaf_size(u64::from(leaf.level))?))
            }) {
                Some((leaf, size)) => [
                    0,
                    permissions(leaf.attrs.access).bits(),
                    u64::from(leaf.level),
                    size,
                ],
                None => status(hypercall::DENIED),
            }
        }
        Hypercall::Stats { group } => {
            let c = vm.stage2.lock().counters();
            match group {
                StatsGroup::Splits => {
                    [0, c.splits_1g, c.splits_2m, c.collapses_1g + c.collapses_2m]
                }
                StatsGroup::Tlbi => [0, c.tlbi_by_va, c.tlbi_range, c.tlbi_all],
                StatsGroup::Tables => [
                    0,
                    c.tables_allocated - c.tables_freed,
                    c.descriptors_written,
                    c.transient_unmaps,
                ],
            }
        }
    }
}

/// What to do about a stage-2 abort at `ipa` inside the guest's RAM.
pub enum FaultAction {
    /// Return to the guest: it re-executes the access against the finished tables.
    Retry,
    /// The current permissions forbid the access: inject a permission fault with this
    /// fault status code.
    InjectPermissionFault { fsc: u64 },
}

/// Decides about a stage-2 translation or permission fault in guest RAM. `access` is
/// what the faulting access needed (`crate::vm::fault`: a stage-1 walk is never
/// an execute, a cache maintenance instruction's WnR does not make it a write).
pub fn guest_ram_fault(
    vm: &Vm,
    ipa: u64,
    far: u64,
    fsc_reported: u8,
    level_reported: u8,
    access: AccessKind,
) -> FaultAction {
    // A change covering the address may be between break and make: wait for it.
    vm.change_window.wait_while_covering(ipa);
    let current = vm
        .stage2
        .lock()
        .query(ipa)
        .map(|leaf| (access.allowed_by(leaf.attrs.access), leaf.level));
    match current {
        // Guest RAM is always mapped: a fault the current entry does not explain came
        // from a transient state (break-before-make, or a change since): retry.
        Some((true, _)) | None => {
            vm.stats.retried_faults.fetch_add(1, Ordering::Relaxed);
            FaultAction::Retry
        }
        // The current permissions forbid the access. The reported syndrome may describe
        // a transient state (a translation fault inside another vCPU's break-before-make
        // window, or a permission fault at the level of a block split since), so the
        // guest is told what the tables say now: a permission fault at the leaf's level.
        Some((false, level)) => {
            let fsc = permission_fault(level);
            if fsc != u64::from(fsc_reported) {
                log::debug!(
                    "stage-2 fault at {ipa:#x} (VA {far:#x}): reported FSC {fsc_reported:#x} \
                     (level {level_reported}), injecting {fsc:#x}"
                );
            }
            FaultAction::InjectPermissionFault { fsc }
        }
    }
}

/// The fault status code of a permission fault at translation `level` (Arm ARM
/// ESR_ELx.ISS DFSC/IFSC 0b0011LL).
fn permission_fault(level: u8) -> u64 {
    0x0c | u64::from(level & 0b11)
}
