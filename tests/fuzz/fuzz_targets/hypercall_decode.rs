//! The guest's calls into the hypervisor: the vendor hypercalls
//! (`hypervisor::hypercall::decode`, `check_ownership`) and PSCI/SMCCC
//! (`hypervisor::vm::psci::handle`), with every register guest-controlled.
//!
//! Each call is compared with a reference written here from the ABI tables in the
//! modules' docs (function IDs and status codes from `hyp-abi`, the ABI crate); for PSCI
//! a fake board records what the handler asked it to do, which must only be to start a
//! vCPU that is off, at an aligned entry in guest RAM.

#![no_main]

use arbitrary::Arbitrary;
use hyp_abi::hypercall::{
    CALL_UID, DENIED, FEATURES, INVALID_PARAMETER, MEM_PROTECT, MEM_QUERY, NOT_SUPPORTED, STATS,
};
use hypervisor::hypercall::{self, Hypercall, Permissions, StatsGroup};
use hypervisor::vm::psci::{self, CpuPowerState, Followup, PsciPlatform};
use hypervisor::hypercall::smccc::{self, FunctionId, Owner};
use libfuzzer_sys::fuzz_target;

/// Function IDs worth hitting often (the fuzzer finds the rest by itself).
const KNOWN: [u32; 26] = [
    CALL_UID,
    FEATURES,
    MEM_PROTECT,
    MEM_QUERY,
    STATS,
    0xc600_0004,
    0x8600_0001,
    psci::PSCI_VERSION,
    psci::CPU_SUSPEND_32,
    psci::CPU_SUSPEND_64,
    psci::CPU_OFF,
    psci::CPU_ON_32,
    psci::CPU_ON_64,
    psci::AFFINITY_INFO_32,
    psci::AFFINITY_INFO_64,
    psci::MIGRATE_INFO_TYPE,
    psci::SYSTEM_OFF,
    psci::SYSTEM_RESET,
    psci::PSCI_FEATURES,
    smccc::SMCCC_VERSION,
    smccc::SMCCC_ARCH_FEATURES,
    smccc::SMCCC_ARCH_SOC_ID,
    smccc::SMCCC_ARCH_WORKAROUND_1,
    smccc::SMCCC_ARCH_WORKAROUND_2,
    smccc::SMCCC_ARCH_WORKAROUND_3,
    0xc400_0042,
];

#[derive(Arbitrary, Debug)]
enum Function {
    Known { index: u8, sve_hint: bool },
    Raw(u32),
}

#[derive(Arbitrary, Debug)]
struct Call {
    function: Function,
    x: [u64; 3],
}

#[derive(Arbitrary, Debug)]
struct Input {
    calls: Vec<Call>,
    /// Guest RAM and forbidden ranges for `check_ownership` (base, length) pairs.
    guest_ram: Vec<(u64, u64)>,
    forbidden: Vec<(u64, u64)>,
    /// vCPUs of the fake board: MPIDR and state (0 on, 1 off, 2 pending).
    cpus: Vec<(u64, u8)>,
    ram_base: u64,
    ram_len: u64,
}

impl Function {
    fn id(&self) -> FunctionId {
        FunctionId(match *self {
            Function::Known { index, sve_hint } => {
                KNOWN[usize::from(index) % KNOWN.len()] | (u32::from(sve_hint) << 16)
            }
            Function::Raw(id) => id,
        })
    }
}

/// The vendor-hypercall ABI from the table in `hyp_abi::hypercall`'s docs.
fn reference_decode(id: u32, x: [u64; 3]) -> Result<Option<Hypercall>, i64> {
    if (id >> 24) & 0x3f != 6 {
        return Ok(None);
    }
    let mbz = |regs: &[u64]| {
        if regs.iter().all(|&r| r == 0) {
            Ok(())
        } else {
            Err(INVALID_PARAMETER)
        }
    };
    Ok(Some(match id & !(1 << 16) {
        CALL_UID => Hypercall::CallUid,
        FEATURES => {
            mbz(&x)?;
            Hypercall::Features
        }
        MEM_PROTECT => {
            let [ipa, size, bits] = x;
            if bits > 7
                || ipa % 4096 != 0
                || size % 4096 != 0
                || size == 0
                || u128::from(ipa) + u128::from(size) > u128::from(u64::MAX)
            {
                return Err(INVALID_PARAMETER);
            }
            Hypercall::MemProtect {
                ipa,
                size,
                permissions: Permissions {
                    read: bits & 1 != 0,
                    write: bits & 2 != 0,
                    execute: bits & 4 != 0,
                },
            }
        }
        MEM_QUERY => {
            mbz(&x[1..])?;
            Hypercall::MemQuery { ipa: x[0] }
        }
        STATS => {
            mbz(&x[1..])?;
            Hypercall::Stats {
                group: match x[0] {
                    0 => StatsGroup::Splits,
                    1 => StatsGroup::Tlbi,
                    2 => StatsGroup::Tables,
                    _ => return Err(INVALID_PARAMETER),
                },
            }
        }
        _ => return Err(NOT_SUPPORTED),
    }))
}

/// Whether every byte of `[ipa, ipa + size)` is in one guest RAM range and in no
/// forbidden range, in 128-bit arithmetic (no overflow to get wrong).
fn reference_owned(ipa: u64, size: u64, ram: &[(u64, u64)], forbidden: &[(u64, u64)]) -> bool {
    let (start, end) = (u128::from(ipa), u128::from(ipa) + u128::from(size));
    let inside = ram
        .iter()
        .any(|&(base, len)| u128::from(base) <= start && end <= u128::from(base) + u128::from(len));
    let touches = forbidden.iter().any(|&(base, len)| {
        let (fs, fe) = (u128::from(base), u128::from(base) + u128::from(len));
        start < fe && fs < end
    });
    inside && !touches
}

struct FakeBoard {
    cpus: Vec<(u64, CpuPowerState)>,
    ram: (u64, u64),
    started: Vec<(u64, u64, u64)>,
    offs: usize,
}

impl FakeBoard {
    fn state(&self, mpidr: u64) -> Option<CpuPowerState> {
        self.cpus.iter().find(|(m, _)| *m == mpidr).map(|(_, s)| *s)
    }
}

impl PsciPlatform for FakeBoard {
    fn power_state(&self, mpidr: u64) -> Option<CpuPowerState> {
        self.state(mpidr)
    }
    fn is_guest_ram(&self, entry: u64) -> bool {
        entry >= self.ram.0 && entry - self.ram.0 < self.ram.1
    }
    fn cpu_on(&mut self, mpidr: u64, entry: u64, context: u64) -> i64 {
        // The handler may only ask for a vCPU that is off, at an aligned RAM entry.
        assert_eq!(
            self.state(mpidr),
            Some(CpuPowerState::Off),
            "cpu_on({mpidr:#x})"
        );
        assert!(
            self.is_guest_ram(entry) && entry.is_multiple_of(4),
            "entry {entry:#x}"
        );
        self.started.push((mpidr, entry, context));
        for (m, s) in &mut self.cpus {
            if *m == mpidr {
                *s = CpuPowerState::OnPending;
            }
        }
        psci::SUCCESS
    }
    fn cpu_off(&mut self) {
        self.offs += 1;
    }
    fn firmware_arch_features(&mut self, function: u32) -> i64 {
        // Only the workaround IDs are passed on to firmware.
        assert!(
            matches!(function, 0x8000_8000 | 0x8000_7fff | 0x8000_3fff),
            "firmware asked about {function:#x}"
        );
        0
    }
    fn firmware_workaround(&mut self, function: u32, arg: u64) -> i64 {
        assert!(
            matches!(function, 0x8000_8000 | 0x8000_7fff | 0x8000_3fff),
            "firmware workaround {function:#x}"
        );
        assert!(arg <= u64::from(u32::MAX), "a 32-bit call's argument {arg:#x}");
        0
    }
}

/// PSCI 1.1 as the hypervisor implements it (see `hypervisor::vm::psci`).
fn reference_psci(board: &FakeBoard, id: u32, args: [u64; 3]) -> Option<Followup> {
    const AFFINITY: u64 = 0xff_00ff_ffff;
    let id32 = |v: u64| v & 0xffff_ffff;
    let unmasked = id & !(1 << 16);
    let cpu_on = |target: u64, entry: u64| -> i64 {
        if target & !AFFINITY != 0 {
            return psci::INVALID_PARAMETERS;
        }
        match board.state(target) {
            None => psci::INVALID_PARAMETERS,
            Some(CpuPowerState::On) => psci::ALREADY_ON,
            Some(CpuPowerState::OnPending) => psci::ON_PENDING,
            Some(CpuPowerState::Off) => {
                if board.is_guest_ram(entry) && entry.is_multiple_of(4) {
                    psci::SUCCESS
                } else {
                    psci::INVALID_ADDRESS
                }
            }
        }
    };
    let affinity = |target: u64, level: u64| -> i64 {
        if level != 0 || target & !AFFINITY != 0 {
            return psci::INVALID_PARAMETERS;
        }
        board
            .state(target)
            .map_or(psci::INVALID_PARAMETERS, |s| s as i64)
    };
    let implemented = [
        psci::PSCI_VERSION,
        psci::CPU_OFF,
        psci::CPU_ON_32,
        psci::CPU_ON_64,
        psci::AFFINITY_INFO_32,
        psci::AFFINITY_INFO_64,
        psci::MIGRATE_INFO_TYPE,
        psci::SYSTEM_OFF,
        psci::SYSTEM_RESET,
        psci::PSCI_FEATURES,
        smccc::SMCCC_VERSION,
    ];
    let workarounds = [
        smccc::SMCCC_ARCH_WORKAROUND_1,
        smccc::SMCCC_ARCH_WORKAROUND_2,
        smccc::SMCCC_ARCH_WORKAROUND_3,
    ]
    .map(u64::from);
    Some(match unmasked {
        psci::PSCI_VERSION => Followup::Return(0x1_0001),
        psci::CPU_ON_32 => Followup::Return(cpu_on(id32(args[0]), id32(args[1]))),
        psci::CPU_ON_64 => Followup::Return(cpu_on(args[0], args[1])),
        psci::CPU_OFF => Followup::CpuOff,
        psci::AFFINITY_INFO_32 => Followup::Return(affinity(id32(args[0]), args[1])),
        psci::AFFINITY_INFO_64 => Followup::Return(affinity(args[0], args[1])),
        psci::MIGRATE_INFO_TYPE => Followup::Return(psci::MIGRATE_NOT_REQUIRED),
        psci::SYSTEM_OFF => Followup::SystemOff,
        psci::SYSTEM_RESET => Followup::SystemReset,
        psci::PSCI_FEATURES => Followup::Return(
            if u32::try_from(args[0]).is_ok_and(|q| implemented.contains(&q)) {
                psci::SUCCESS
            } else {
                psci::NOT_SUPPORTED
            },
        ),
        smccc::SMCCC_VERSION => Followup::Return(0x1_0001),
        smccc::SMCCC_ARCH_FEATURES => Followup::Return(
            if args[0] == u64::from(smccc::SMCCC_VERSION)
                || args[0] == u64::from(smccc::SMCCC_ARCH_FEATURES)
            {
                smccc::SUCCESS
            } else if workarounds.contains(&args[0]) {
                // Firmware's answer (the fake firmware says 0, "call me").
                0
            } else {
                smccc::NOT_SUPPORTED
            },
        ),
        smccc::SMCCC_ARCH_WORKAROUND_1
        | smccc::SMCCC_ARCH_WORKAROUND_2
        | smccc::SMCCC_ARCH_WORKAROUND_3 => Followup::Return(0),
        _ if (id >> 24) & 0x3f == 4 => Followup::Return(psci::NOT_SUPPORTED),
        _ => return None,
    })
}

/// Ranges that do not wrap (as the hypervisor's own RAM lists never do).
fn ranges(raw: &[(u64, u64)]) -> Vec<(u64, u64)> {
    raw.iter()
        .take(8)
        .map(|&(base, len)| (base, len.min(u64::MAX - base)))
        .collect()
}

fuzz_target!(|input: Input| {
    let ram = ranges(&input.guest_ram);
    let forbidden = ranges(&input.forbidden);
    let mut board = FakeBoard {
        cpus: Vec::new(),
        ram: (input.ram_base, input.ram_len.min(u64::MAX - input.ram_base)),
        started: Vec::new(),
        offs: 0,
    };
    for &(mpidr, state) in input.cpus.iter().take(8) {
        if board.state(mpidr).is_none() {
            let state = match state % 3 {
                0 => CpuPowerState::On,
                1 => CpuPowerState::Off,
                _ => CpuPowerState::OnPending,
            };
            board.cpus.push((mpidr, state));
        }
    }

    for call in input.calls.iter().take(32) {
        let id = call.function.id();
        let x = call.x;

        // FunctionId accessors agree with the bit layout.
        assert_eq!(id.is_fast(), id.0 >> 31 == 1);
        assert_eq!(id.is_64bit(), (id.0 >> 30) & 1 == 1);
        assert_eq!(id.number(), id.0 as u16);
        assert_eq!(id.without_sve_hint().0, id.0 & !(1 << 16));
        assert_eq!(
            id.owner() == Owner::VendorHypervisor,
            (id.0 >> 24) & 0x3f == 6
        );

        // Vendor hypercalls.
        let decoded = hypercall::decode(id, x);
        assert_eq!(
            decoded,
            reference_decode(id.0, x),
            "decode({:#x}, {x:#x?})",
            id.0
        );
        if let Ok(Some(Hypercall::MemProtect {
            ipa,
            size,
            permissions,
        })) = decoded
        {
            assert_eq!(
                Permissions::from_bits(permissions.bits()),
                Some(permissions)
            );
            let owned = hypercall::check_ownership(ipa, size, &ram, &forbidden);
            assert_eq!(
                owned.is_ok(),
                reference_owned(ipa, size, &ram, &forbidden),
                "check_ownership({ipa:#x}, {size:#x}, {ram:#x?}, {forbidden:#x?})"
            );
            if let Err(code) = owned {
                assert_eq!(code, DENIED);
            }
        }
        // Ownership with raw arguments too: never Ok for a range that is not owned.
        let (ipa, size) = (x[0], x[1]);
        match hypercall::check_ownership(ipa, size, &ram, &forbidden) {
            Ok(()) => assert!(reference_owned(ipa, size, &ram, &forbidden)),
            Err(code) => assert!(
                code == DENIED || (code == INVALID_PARAMETER && ipa.checked_add(size).is_none())
            ),
        }
        if let Some(permissions) = Permissions::from_bits(x[2]) {
            assert_eq!(permissions.bits(), x[2]);
        } else {
            assert!(x[2] > 7);
        }

        // PSCI / SMCCC architecture calls.
        let expected = reference_psci(&board, id.0, x);
        let (started, offs) = (board.started.len(), board.offs);
        let followup = psci::handle(id, x, &mut board);
        assert_eq!(followup, expected, "psci({:#x}, {x:#x?})", id.0);
        let started_now = board.started.len() - started;
        let on = matches!(id.without_sve_hint().0, psci::CPU_ON_32 | psci::CPU_ON_64);
        assert_eq!(
            started_now,
            usize::from(on && followup == Some(Followup::Return(psci::SUCCESS)))
        );
        if started_now == 1 && id.without_sve_hint().0 == psci::CPU_ON_32 {
            let (mpidr, entry, context) = board.started[started];
            assert!(mpidr >> 32 == 0 && entry >> 32 == 0 && context >> 32 == 0);
            assert_eq!((entry, context), (x[1] & 0xffff_ffff, x[2] & 0xffff_ffff));
        }
        assert_eq!(
            board.offs - offs,
            usize::from(followup == Some(Followup::CpuOff))
        );
    }
});
