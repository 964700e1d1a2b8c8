//! The guests that exist, by number (1 for the first), for what reaches a guest from
//! outside its own vCPUs: console input, reports.

use core::sync::atomic::{AtomicPtr, Ordering};

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
