//! Calls into PSCI firmware through the conduit the device tree names.

use platform::info::Conduit;
use smccc::{Hvc, Smc};

/// PSCI SYSTEM_OFF. Returns only if the firmware refused or is absent.
pub fn system_off(conduit: Conduit) {
    let _ = match conduit {
        Conduit::Smc => smccc::psci::system_off::<Smc>(),
        Conduit::Hvc => smccc::psci::system_off::<Hvc>(),
    };
}
