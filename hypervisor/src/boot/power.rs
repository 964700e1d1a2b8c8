//! Every stop of the hypervisor: print the outcome marker line, then PSCI SYSTEM_OFF
//! through the conduit the device tree names.

use core::sync::atomic::{AtomicU8, Ordering};

use platform::info::Conduit;

use crate::arch;
use crate::boot::outcome::Outcome;
use crate::console;

/// The PSCI conduit for stopping; SMC until the DT says otherwise (at EL2, HVC would
/// only trap to ourselves, so SMC is the only conduit to firmware).
static FIRMWARE_CONDUIT: AtomicU8 = AtomicU8::new(CONDUIT_SMC);
const CONDUIT_SMC: u8 = 0;
const CONDUIT_HVC: u8 = 1;

/// The conduit the device tree's `/psci` names.
pub fn set_firmware_conduit(conduit: Conduit) {
    let value = match conduit {
        Conduit::Smc => CONDUIT_SMC,
        Conduit::Hvc => CONDUIT_HVC,
    };
    FIRMWARE_CONDUIT.store(value, Ordering::Relaxed);
}

/// Prints the outcome marker and powers the machine off.
pub fn stop(outcome: Outcome<'_>) -> ! {
    console::write_raw(format_args!("{outcome}\n"));
    console::flush();
    let conduit = match FIRMWARE_CONDUIT.load(Ordering::Relaxed) {
        CONDUIT_HVC => Conduit::Hvc,
        _ => Conduit::Smc,
    };
    arch::firmware::system_off(conduit);
    // SYSTEM_OFF returned: nothing else to do but stop this CPU.
    arch::halt()
}

pub fn stop_failure(reason: &str) -> ! {
    stop(Outcome::Failure(reason))
}
