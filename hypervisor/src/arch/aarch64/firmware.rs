//! Calls into firmware (PSCI, and the SMCCC architecture calls), over SMC: at EL2, an
//! HVC would trap to the hypervisor itself. (What the guest is offered is `vm::psci`.)

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

/// SMCCC_VERSION of firmware: at least 1.1 for SMCCC_ARCH_FEATURES to exist.
fn firmware_has_arch_features() -> bool {
    let version = smccc::smc32(crate::hypercall::smccc::SMCCC_VERSION, [0; 7])[0] as i32;
    // (major << 16) | minor; negative is NOT_SUPPORTED (SMCCC 1.0).
    version >= 0x1_0001
}

/// Firmware's SMCCC_ARCH_FEATURES(`function`) on this CPU, passed on as is;
/// NOT_SUPPORTED when firmware is older than SMCCC 1.1.
pub fn arch_features(function: u32) -> i64 {
    if !firmware_has_arch_features() {
        return crate::hypercall::smccc::NOT_SUPPORTED;
    }
    i64::from(
        smccc::smc32(
            crate::hypercall::smccc::SMCCC_ARCH_FEATURES,
            [function, 0, 0, 0, 0, 0, 0],
        )[0] as i32,
    )
}

/// An SMCCC_ARCH_WORKAROUND call to firmware on this CPU (SMC32; `arg` is WORKAROUND_2's
/// enable flag, 0 otherwise); firmware's w0.
pub fn arch_workaround(function: u32, arg: u32) -> i64 {
    i64::from(smccc::smc32(function, [arg, 0, 0, 0, 0, 0, 0])[0] as i32)
}
