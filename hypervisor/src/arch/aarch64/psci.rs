//! Calls into PSCI firmware through the conduit the device tree names. At EL2 that is
//! SMC: an HVC would trap to the hypervisor itself.

use platform::info::Conduit;
use smccc::{Hvc, Smc};

/// PSCI SYSTEM_OFF. Returns only if the firmware refused or is absent.
pub fn system_off(conduit: Conduit) {
    let _ = match conduit {
        Conduit::Smc => smccc::psci::system_off::<Smc>(),
        Conduit::Hvc => smccc::psci::system_off::<Hvc>(),
    };
}

/// PSCI SYSTEM_RESET. Returns only if the firmware refused.
pub fn system_reset() {
    let _ = smccc::psci::system_reset::<Smc>();
}

/// PSCI CPU_ON of a physical CPU; on failure, the PSCI error code.
pub fn cpu_on(mpidr: u64, entry: u64, context: u64) -> Result<(), i64> {
    smccc::psci::cpu_on::<Smc>(mpidr, entry, context).map_err(i64::from)
}

/// PSCI CPU_OFF of the calling CPU. Returns only on failure.
pub fn cpu_off() {
    let _ = smccc::psci::cpu_off::<Smc>();
}
