//! The guests that exist, by number (1 for the first), for what reaches a guest from
//! outside its own vCPUs: console input, reports.

use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};

use crate::vm::guest::Vm;

/// Guests the hypervisor can hold at once.
pub const MAX_GUESTS: usize = 8;

static GUESTS: [AtomicPtr<Vm>; MAX_GUESTS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_GUESTS];

/// Records `vm` under its number; `false` if the number is out of range or taken.
pub fn register(vm: &'static Vm) -> bool {
    let Some(slot) = usize::from(vm.number)
        .checked_sub(1)
        .and_then(|i| GUESTS.get(i))
    else {
        return false;
    };
    slot.compare_exchange(
        core::ptr::null_mut(),
        core::ptr::from_ref(vm).cast_mut(),
        Ordering::AcqRel,
        Ordering::Acquire,
    )
    .is_ok()
}

/// Guest number `number`, if it exists.
pub fn by_number(number: u16) -> Option<&'static Vm> {
    let slot = usize::from(number)
        .checked_sub(1)
        .and_then(|i| GUESTS.get(i))?;
    let vm = slot.load(Ordering::Acquire);
    // SAFETY: only `register` stores here, from a `&'static Vm`.
    unsafe { vm.as_ref() }
}

/// How many guests are registered.
pub fn count() -> u16 {
    GUESTS
        .iter()
        .filter(|slot| !slot.load(Ordering::Acquire).is_null())
        .count() as u16
}

/// Writes out every guest's unfinished console line (the EL2 timer's work).
pub fn flush_partial_lines() {
    for number in 1..=count() {
        if let Some(vm) = by_number(number) {
            vm.console.lock().flush(&mut |piece: &[u8], complete| {
                crate::console::write_guest_piece(number, piece, complete)
            });
        }
    }
}

/// How a guest's life ended, as the final outcome counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestEnd {
    /// PSCI SYSTEM_OFF: a clean stop.
    PoweredOff,
    /// PSCI SYSTEM_RESET while other guests run: restarting one guest alone is not done
    /// yet, so it is stopped instead, and the run cannot end as a success.
    ResetRefused,
}

const RUNNING: u8 = 0;
const POWERED_OFF: u8 = 1;
const RESET_REFUSED: u8 = 2;
/// Between its SYSTEM_RESET and its vCPU 0's restart: its vCPUs leave their CPUs.
const RESETTING: u8 = 3;

static ENDS: [AtomicU8; MAX_GUESTS] = [const { AtomicU8::new(RUNNING) }; MAX_GUESTS];
/// How many guests have ended.
static ENDED: AtomicUsize = AtomicUsize::new(0);

/// Whether guest `number` still runs (has not ended).
pub fn is_running(number: u16) -> bool {
    slot_of(number).is_some_and(|i| ENDS[i].load(Ordering::Acquire) == RUNNING)
}

fn slot_of(number: u16) -> Option<usize> {
    usize::from(number)
        .checked_sub(1)
        .filter(|&i| i < MAX_GUESTS)
}

/// Records that guest `number` ended; `true` for exactly one caller: the one whose
/// guest was the last still running (it then ends the run). A guest ends once.
pub fn end(number: u16, how: GuestEnd) -> bool {
    let Some(slot) = slot_of(number) else {
        return false;
    };
    let value = match how {
        GuestEnd::PoweredOff => POWERED_OFF,
        GuestEnd::ResetRefused => RESET_REFUSED,
    };
    // A guest ends from running, or from a reset that could not be finished.
    let ended = [RUNNING, RESETTING].into_iter().any(|from| {
        ENDS[slot]
            .compare_exchange(from, value, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    });
    if !ended {
        return false;
    }
    // One count for all ends: exactly one caller reaches the total.
    ENDED.fetch_add(1, Ordering::AcqRel) + 1 == usize::from(count())
}

/// Guest `number` starts a reset (`true`), unless it is not running.
pub fn begin_reset(number: u16) -> bool {
    slot_of(number).is_some_and(|i| {
        ENDS[i]
            .compare_exchange(RUNNING, RESETTING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    })
}

/// Guest `number` runs again after its reset.
pub fn end_reset(number: u16) {
    if let Some(i) = slot_of(number) {
        let _ = ENDS[i].compare_exchange(RESETTING, RUNNING, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// The first guest that did not end cleanly, if any.
pub fn first_unclean_end() -> Option<u16> {
    (1..=count()).find(|&number| {
        slot_of(number).is_some_and(|i| ENDS[i].load(Ordering::Acquire) == RESET_REFUSED)
    })
}

/// The MPIDR of a physical CPU that runs a vCPU of a still-running guest, other than
/// `except` (where the hypervisor's own interrupts can go when `except` powers off).
pub fn running_cpu_mpidr(except: usize) -> Option<u64> {
    (1..=count())
        .filter(|&number| is_running(number))
        .filter_map(by_number)
        .find_map(|vm| {
            (0..vm.vcpus.count()).find_map(|vcpu| {
                let on = vm.vcpus.power(vcpu) == crate::vm::psci::CpuPowerState::On;
                let cpu = vm.vcpus.physical_cpu(vcpu)?;
                (on && cpu != except).then(|| vm.vcpus.physical_mpidr(vcpu))?
            })
        })
}
