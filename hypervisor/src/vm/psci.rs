//! PSCI 1.1 (Arm DEN0022) as the hypervisor offers it to its guest. The decisions live
//! here; the effects (starting a physical CPU through firmware, powering off) go through
//! [`PsciPlatform`], which the aarch64 layer implements and the tests fake.

use crate::hypercall::smccc::{self, FunctionId};

pub const PSCI_VERSION: u32 = 0x8400_0000;
pub const CPU_SUSPEND_32: u32 = 0x8400_0001;
pub const CPU_SUSPEND_64: u32 = 0xc400_0001;
pub const CPU_OFF: u32 = 0x8400_0002;
pub const CPU_ON_32: u32 = 0x8400_0003;
pub const CPU_ON_64: u32 = 0xc400_0003;
pub const AFFINITY_INFO_32: u32 = 0x8400_0004;
pub const AFFINITY_INFO_64: u32 = 0xc400_0004;
pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
pub const SYSTEM_OFF: u32 = 0x8400_0008;
pub const SYSTEM_RESET: u32 = 0x8400_0009;
pub const PSCI_FEATURES: u32 = 0x8400_000a;

/// PSCI 1.1.
pub const VERSION_1_1: u32 = 0x0001_0001;

/// PSCI return codes.
pub const SUCCESS: i64 = 0;
pub const NOT_SUPPORTED: i64 = -1;
pub const INVALID_PARAMETERS: i64 = -2;
pub const DENIED: i64 = -3;
pub const ALREADY_ON: i64 = -4;
pub const ON_PENDING: i64 = -5;
pub const INTERNAL_FAILURE: i64 = -6;
pub const INVALID_ADDRESS: i64 = -9;

/// AFFINITY_INFO results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuPowerState {
    On = 0,
    Off = 1,
    OnPending = 2,
}

/// MIGRATE_INFO_TYPE: no Trusted OS, migration not required.
pub const MIGRATE_NOT_REQUIRED: i64 = 2;

/// What the hypervisor must do after answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Followup {
    /// Return to the guest with the value in x0.
    Return(i64),
    /// The calling vCPU is off: do not return to it.
    CpuOff,
    /// The guest asked for the system to stop.
    SystemOff,
    SystemReset,
}

/// The effects behind the guest's PSCI calls.
pub trait PsciPlatform {
    /// The power state of the vCPU with this MPIDR (affinity bits), or `None` if the
    /// guest has no such vCPU.
    fn power_state(&self, mpidr: u64) -> Option<CpuPowerState>;
    /// Whether `entry` is an address in the guest's RAM.
    fn is_guest_ram(&self, entry: u64) -> bool;
    /// Starts the vCPU `mpidr` at `entry` with `context` in x0. Only called for a vCPU
    /// that is off. Returns a PSCI code (SUCCESS, or the firmware's error).
    fn cpu_on(&mut self, mpidr: u64, entry: u64, context: u64) -> i64;
    /// The calling vCPU is stopping (the caller stops it). An implementation may mark it
    /// off only once a CPU_ON for it can succeed, or AFFINITY_INFO would lie.
    fn cpu_off(&mut self);
    /// Firmware's SMCCC_ARCH_FEATURES answer for `function` (one of the
    /// SMCCC_ARCH_WORKAROUND calls) on the physical CPU the calling vCPU runs on: whether
    /// that core needs the mitigation and firmware implements it is a fact of the core
    /// and of firmware, which the hypervisor passes on rather than guesses.
    fn firmware_arch_features(&mut self, function: u32) -> i64;
    /// Makes the SMCCC_ARCH_WORKAROUND call `function` (with `arg` for WORKAROUND_2)
    /// to firmware on the calling vCPU's physical CPU; returns firmware's x0.
    fn firmware_workaround(&mut self, function: u32, arg: u64) -> i64;
}

/// MPIDR affinity fields Aff3 [39:32] and Aff2..Aff0 [23:0]; other bits must be zero in
/// a CPU_ON/AFFINITY_INFO target.
const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// Handles a PSCI or SMCCC architecture call; `None` if `function` is neither (the caller
/// then tries its other services, or answers NOT_SUPPORTED).
pub fn handle(
    function: FunctionId,
    args: [u64; 3],
    platform: &mut impl PsciPlatform,
) -> Option<Followup> {
    let id = function.without_sve_hint().0;
    let followup = match id {
        PSCI_VERSION => Followup::Return(i64::from(VERSION_1_1)),
        CPU_ON_32 | CPU_ON_64 => {
            let (target, entry, context) = if id == CPU_ON_32 {
                (
                    args[0] & 0xffff_ffff,
                    args[1] & 0xffff_ffff,
                    args[2] & 0xffff_ffff,
                )
            } else {
                (args[0], args[1], args[2])
            };
            Followup::Return(cpu_on(platform, target, entry, context))
        }
        CPU_OFF => {
            platform.cpu_off();
            Followup::CpuOff
        }
        AFFINITY_INFO_32 | AFFINITY_INFO_64 => {
            let target = if id == AFFINITY_INFO_32 {
                args[0] & 0xffff_ffff
            } else {
                args[0]
            };
            let lowest_level = args[1];
            Followup::Return(affinity_info(platform, target, lowest_level))
        }
        MIGRATE_INFO_TYPE => Followup::Return(MIGRATE_NOT_REQUIRED),
        SYSTEM_OFF => Followup::SystemOff,
        SYSTEM_RESET => Followup::SystemReset,
        PSCI_FEATURES => Followup::Return(features(args[0])),
        smccc::SMCCC_VERSION => Followup::Return(i64::from(smccc::SMCCC_VERSION_1_1)),
        smccc::SMCCC_ARCH_FEATURES => Followup::Return(arch_features(platform, args[0])),
        smccc::SMCCC_ARCH_WORKAROUND_1 | smccc::SMCCC_ARCH_WORKAROUND_3 => {
            Followup::Return(platform.firmware_workaround(id, 0))
        }
        smccc::SMCCC_ARCH_WORKAROUND_2 => {
            Followup::Return(platform.firmware_workaround(id, args[0] & 0xffff_ffff))
        }
        _ if matches!(function.owner(), smccc::Owner::StandardSecure) => {
            Followup::Return(NOT_SUPPORTED)
        }
        _ => return None,
    };
    Some(followup)
}

fn cpu_on(platform: &mut impl PsciPlatform, target: u64, entry: u64, context: u64) -> i64 {
    if target & !MPIDR_AFFINITY_MASK != 0 {
        return INVALID_PARAMETERS;
    }
    match platform.power_state(target) {
        None => INVALID_PARAMETERS,
        Some(CpuPowerState::On) => ALREADY_ON,
        Some(CpuPowerState::OnPending) => ON_PENDING,
        Some(CpuPowerState::Off) if !platform.is_guest_ram(entry) || !entry.is_multiple_of(4) => {
            INVALID_ADDRESS
        }
        Some(CpuPowerState::Off) => platform.cpu_on(target, entry, context),
    }
}

fn affinity_info(platform: &impl PsciPlatform, target: u64, lowest_level: u64) -> i64 {
    // Only level 0 (a single core) is supported, as PSCI 1.0+ recommends.
    if lowest_level != 0 || target & !MPIDR_AFFINITY_MASK != 0 {
        return INVALID_PARAMETERS;
    }
    match platform.power_state(target) {
        Some(state) => state as i64,
        None => INVALID_PARAMETERS,
    }
}

fn features(queried: u64) -> i64 {
    let Ok(queried) = u32::try_from(queried) else {
        return NOT_SUPPORTED;
    };
    match queried {
        PSCI_VERSION
        | CPU_OFF
        | CPU_ON_32
        | CPU_ON_64
        | AFFINITY_INFO_32
        | AFFINITY_INFO_64
        | MIGRATE_INFO_TYPE
        | SYSTEM_OFF
        | SYSTEM_RESET
        | PSCI_FEATURES
        | smccc::SMCCC_VERSION => SUCCESS,
        _ => NOT_SUPPORTED,
    }
}

fn arch_features(platform: &mut impl PsciPlatform, queried: u64) -> i64 {
    match u32::try_from(queried) {
        Ok(smccc::SMCCC_VERSION | smccc::SMCCC_ARCH_FEATURES) => smccc::SUCCESS,
        // The Spectre-BHB/v2/v4 workarounds are firmware services on the core the vCPU
        // runs on (one vCPU per physical CPU): firmware's answer is the truth, whether it
        // says "call me" (0), "not needed on this core" (1 for WORKAROUND_1/3, per
        // SMCCC 1.4), "always on" (NOT_REQUIRED) or "unknown" (NOT_SUPPORTED).
        Ok(
            id @ (smccc::SMCCC_ARCH_WORKAROUND_1
            | smccc::SMCCC_ARCH_WORKAROUND_2
            | smccc::SMCCC_ARCH_WORKAROUND_3),
        ) => platform.firmware_arch_features(id),
        _ => smccc::NOT_SUPPORTED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeBoard {
        states: Vec<(u64, CpuPowerState)>,
        started: Vec<(u64, u64, u64)>,
        offs: usize,
        workarounds: Vec<(u32, u64)>,
    }

    impl FakeBoard {
        fn two_cpus() -> Self {
            Self {
                states: vec![(0, CpuPowerState::On), (1, CpuPowerState::Off)],
                started: vec![],
                offs: 0,
                workarounds: vec![],
            }
        }
    }

    impl PsciPlatform for FakeBoard {
        fn power_state(&self, mpidr: u64) -> Option<CpuPowerState> {
            self.states
                .iter()
                .find(|(m, _)| *m == mpidr)
                .map(|(_, s)| *s)
        }
        fn is_guest_ram(&self, entry: u64) -> bool {
            (0x4000_0000..0xc000_0000).contains(&entry)
        }
        fn cpu_on(&mut self, mpidr: u64, entry: u64, context: u64) -> i64 {
            self.started.push((mpidr, entry, context));
            for (m, s) in &mut self.states {
                if *m == mpidr {
                    *s = CpuPowerState::OnPending;
                }
            }
            SUCCESS
        }
        fn cpu_off(&mut self) {
            self.offs += 1;
        }
        fn firmware_arch_features(&mut self, function: u32) -> i64 {
            match function {
                smccc::SMCCC_ARCH_WORKAROUND_1 => 0,
                smccc::SMCCC_ARCH_WORKAROUND_2 => smccc::NOT_REQUIRED,
                _ => 1,
            }
        }
        fn firmware_workaround(&mut self, function: u32, arg: u64) -> i64 {
            self.workarounds.push((function, arg));
            0
        }
    }

    fn call(board: &mut FakeBoard, id: u32, args: [u64; 3]) -> Option<Followup> {
        handle(FunctionId(id), args, board)
    }

    #[test]
    fn version_is_1_1_and_smccc_is_1_1() {
        let mut board = FakeBoard::two_cpus();
        assert_eq!(
            call(&mut board, PSCI_VERSION, [0; 3]),
            Some(Followup::Return(0x10001))
        );
        assert_eq!(
            call(&mut board, smccc::SMCCC_VERSION, [0; 3]),
            Some(Followup::Return(0x10001))
        );
    }

    /// The Spectre workarounds: ARCH_FEATURES passes firmware's answer on unchanged
    /// (including the positive "not affected"), the calls go to firmware with their
    /// argument, and other functions stay unsupported.
    #[test]
    fn arch_workarounds_are_firmwares_answers_and_calls() {
        let mut board = FakeBoard::two_cpus();
        let features = |board: &mut FakeBoard, id: u32| {
            call(board, smccc::SMCCC_ARCH_FEATURES, [u64::from(id), 0, 0])
        };
        assert_eq!(
            features(&mut board, smccc::SMCCC_ARCH_WORKAROUND_1),
            Some(Followup::Return(0))
        );
        assert_eq!(
            features(&mut board, smccc::SMCCC_ARCH_WORKAROUND_2),
            Some(Followup::Return(smccc::NOT_REQUIRED))
        );
        assert_eq!(
            features(&mut board, smccc::SMCCC_ARCH_WORKAROUND_3),
            Some(Followup::Return(1))
        );
        assert_eq!(
            features(&mut board, smccc::SMCCC_ARCH_SOC_ID),
            Some(Followup::Return(smccc::NOT_SUPPORTED))
        );
        assert_eq!(
            call(&mut board, smccc::SMCCC_ARCH_WORKAROUND_1, [0; 3]),
            Some(Followup::Return(0))
        );
        assert_eq!(
            call(&mut board, smccc::SMCCC_ARCH_WORKAROUND_2, [1, 0, 0]),
            Some(Followup::Return(0))
        );
        assert_eq!(
            board.workarounds,
            vec![
                (smccc::SMCCC_ARCH_WORKAROUND_1, 0),
                (smccc::SMCCC_ARCH_WORKAROUND_2, 1)
            ]
        );
    }

    #[test]
    fn cpu_on_starts_an_off_cpu_once() {
        let mut board = FakeBoard::two_cpus();
        assert_eq!(
            call(&mut board, CPU_ON_64, [1, 0x4008_0000, 7]),
            Some(Followup::Return(SUCCESS))
        );
        assert_eq!(board.started, vec![(1, 0x4008_0000, 7)]);
        assert_eq!(
            call(&mut board, CPU_ON_64, [1, 0x4008_0000, 7]),
            Some(Followup::Return(ON_PENDING))
        );
        assert_eq!(
            call(&mut board, CPU_ON_64, [0, 0x4008_0000, 7]),
            Some(Followup::Return(ALREADY_ON))
        );
    }

    #[test]
    fn cpu_on_rejects_unknown_cpus_and_entries_outside_guest_ram() {
        let mut board = FakeBoard::two_cpus();
        assert_eq!(
            call(&mut board, CPU_ON_64, [5, 0x4008_0000, 0]),
            Some(Followup::Return(INVALID_PARAMETERS))
        );
        assert_eq!(
            call(&mut board, CPU_ON_64, [1 << 24, 0x4008_0000, 0]),
            Some(Followup::Return(INVALID_PARAMETERS))
        );
        assert_eq!(
            call(&mut board, CPU_ON_64, [1, 0x1000, 0]),
            Some(Followup::Return(INVALID_ADDRESS))
        );
        assert_eq!(
            call(&mut board, CPU_ON_64, [1, 0x4008_0002, 0]),
            Some(Followup::Return(INVALID_ADDRESS))
        );
        assert!(board.started.is_empty());
    }

    #[test]
    fn cpu_on_32_truncates_its_arguments() {
        let mut board = FakeBoard::two_cpus();
        assert_eq!(
            call(
                &mut board,
                CPU_ON_32,
                [1 | (1 << 40), 0xdead_0000_4008_0000, 0xffff_ffff_0000_0003]
            ),
            Some(Followup::Return(SUCCESS))
        );
        assert_eq!(board.started, vec![(1, 0x4008_0000, 3)]);
    }

    #[test]
    fn affinity_info_reports_states_and_rejects_higher_levels() {
        let mut board = FakeBoard::two_cpus();
        assert_eq!(
            call(&mut board, AFFINITY_INFO_64, [0, 0, 0]),
            Some(Followup::Return(0))
        );
        assert_eq!(
            call(&mut board, AFFINITY_INFO_64, [1, 0, 0]),
            Some(Followup::Return(1))
        );
        assert_eq!(
            call(&mut board, AFFINITY_INFO_64, [1, 1, 0]),
            Some(Followup::Return(INVALID_PARAMETERS))
        );
        assert_eq!(
            call(&mut board, AFFINITY_INFO_64, [9, 0, 0]),
            Some(Followup::Return(INVALID_PARAMETERS))
        );
    }

    #[test]
    fn features_lists_what_is_implemented_and_nothing_else() {
        let mut board = FakeBoard::two_cpus();
        for id in [
            PSCI_VERSION,
            CPU_ON_64,
            CPU_OFF,
            AFFINITY_INFO_64,
            SYSTEM_OFF,
            SYSTEM_RESET,
            MIGRATE_INFO_TYPE,
        ] {
            assert_eq!(
                call(&mut board, PSCI_FEATURES, [u64::from(id), 0, 0]),
                Some(Followup::Return(SUCCESS)),
                "{id:#x}"
            );
        }
        assert_eq!(
            call(&mut board, PSCI_FEATURES, [u64::from(CPU_SUSPEND_64), 0, 0]),
            Some(Followup::Return(NOT_SUPPORTED))
        );
        assert_eq!(
            call(&mut board, PSCI_FEATURES, [1 << 40, 0, 0]),
            Some(Followup::Return(NOT_SUPPORTED))
        );
    }

    #[test]
    fn unimplemented_psci_calls_are_not_supported_and_other_owners_are_passed_on() {
        let mut board = FakeBoard::two_cpus();
        assert_eq!(
            call(&mut board, CPU_SUSPEND_64, [0; 3]),
            Some(Followup::Return(NOT_SUPPORTED))
        );
        assert_eq!(
            call(&mut board, 0xc400_0012, [0; 3]),
            Some(Followup::Return(NOT_SUPPORTED))
        );
        assert_eq!(call(&mut board, 0x8600_ff01, [0; 3]), None);
    }

    #[test]
    fn power_calls_ask_the_caller_to_act() {
        let mut board = FakeBoard::two_cpus();
        assert_eq!(call(&mut board, CPU_OFF, [0; 3]), Some(Followup::CpuOff));
        assert_eq!(board.offs, 1);
        assert_eq!(
            call(&mut board, SYSTEM_OFF, [0; 3]),
            Some(Followup::SystemOff)
        );
        assert_eq!(
            call(&mut board, SYSTEM_RESET, [0; 3]),
            Some(Followup::SystemReset)
        );
    }
}
