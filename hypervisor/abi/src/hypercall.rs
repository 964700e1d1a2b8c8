//! The vendor hypercall ABI: SMCCC fast calls in the vendor-specific hypervisor range
//! (owner 6) over HVC, identified by this project's UID (not KVM's, so no KVM-specific
//! guest driver binds to it).
//!
//! | call | function ID | arguments | results |
//! |---|---|---|---|
//! | CALL_UID | `0x8600_ff01` | – | x0..x3: UID `775b0161-be6e-4328-bcb7-6833092ba21d` |
//! | FEATURES | `0xc600_0000` | x1..x3 must be zero | x0: bitmap of function numbers 0..63 |
//! | MEM_PROTECT | `0xc600_0001` | x1 IPA, x2 size, x3 permissions | x0: status |
//! | MEM_QUERY | `0xc600_0002` | x1 IPA, x2..x3 must be zero | x0 status, x1 permissions, x2 leaf level, x3 leaf size |
//! | STATS | `0xc600_0003` | x1 group, x2..x3 must be zero | x0 status, x1..x3: the group's three counters |
//!
//! Numbers come as plain constants (C and assembly need them, and `match` arms read
//! better with them); [`Status`], [`Permissions`] and [`StatsGroup`] are the typed views
//! for code that decides on them. Decoding a trapped call (which needs the SMCCC
//! function-ID layout) stays with the hypervisor.

use core::fmt;

// ---- function IDs -------------------------------------------------------------------

/// The standard "Call UID" query of the vendor hypervisor service (SMCCC function
/// number 0xff01, SMC32 fast call): a guest asks it first to learn whose calls these are.
pub const CALL_UID: u32 = 0x8600_ff01;
/// Which functions of this service exist: x0 is a bitmap of function numbers.
pub const FEATURES: u32 = 0xc600_0000;
/// Changes the stage-2 permissions of part of the caller's RAM.
pub const MEM_PROTECT: u32 = 0xc600_0001;
/// Reports the stage-2 leaf that maps one IPA of the caller's RAM.
pub const MEM_QUERY: u32 = 0xc600_0002;
/// Reports three counters of the caller's stage 2, chosen by a [`StatsGroup`].
pub const STATS: u32 = 0xc600_0003;

/// The function IDs of this ABI with their names, for tables, fuzz seeds and messages.
pub const FUNCTIONS: [(u32, &str); 5] = [
    (CALL_UID, "CALL_UID"),
    (FEATURES, "FEATURES"),
    (MEM_PROTECT, "MEM_PROTECT"),
    (MEM_QUERY, "MEM_QUERY"),
    (STATS, "STATS"),
];

/// The name of one of this ABI's function IDs (`None` for any other ID).
pub fn function_name(function_id: u32) -> Option<&'static str> {
    FUNCTIONS
        .iter()
        .find(|&&(id, _)| id == function_id)
        .map(|&(_, name)| name)
}

// ---- UID ----------------------------------------------------------------------------

/// The service's UUID in its usual spelling (what the guest prints and the tests expect).
pub const UUID: &str = "775b0161-be6e-4328-bcb7-6833092ba21d";

/// [`UUID`] as CALL_UID returns it: each of w0..w3 holds four bytes of the UUID in
/// little-endian order (SMCCC's UID convention).
pub const UID: [u32; 4] = [0x6101_5b77, 0x2843_6ebe, 0x3368_b7bc, 0x1da2_2b09];

/// The UUID bytes in spelling order from the four CALL_UID result words.
pub fn uid_bytes(words: [u32; 4]) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    for (chunk, word) in bytes.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    bytes
}

/// The four CALL_UID result words in the usual UUID spelling
/// (`775b0161-be6e-4328-bcb7-6833092ba21d` for [`UID`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UidDisplay(pub [u32; 4]);

impl fmt::Display for UidDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, byte) in uid_bytes(self.0).iter().enumerate() {
            if matches!(index, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

// ---- status codes -------------------------------------------------------------------

/// The call succeeded.
pub const SUCCESS: i64 = 0;
/// SMCCC's generic code: the function does not exist, or the service is not ready (no
/// stage 2 yet).
pub const NOT_SUPPORTED: i64 = -1;
/// SMCCC's generic code: misaligned, empty or overflowing range, unknown permission bits
/// or STATS group, or a non-zero must-be-zero register.
pub const INVALID_PARAMETER: i64 = -3;
/// Some byte of the range is not the caller's RAM.
pub const DENIED: i64 = -4;
/// A table allocation failed; nothing changed.
pub const NO_MEMORY: i64 = -5;

/// The status a call returns in x0 (sign-extended). A refused call changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i64)]
pub enum Status {
    Success = SUCCESS,
    NotSupported = NOT_SUPPORTED,
    InvalidParameter = INVALID_PARAMETER,
    Denied = DENIED,
    NoMemory = NO_MEMORY,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Self::Success,
        Self::NotSupported,
        Self::InvalidParameter,
        Self::Denied,
        Self::NoMemory,
    ];

    /// The status a code stands for; `None` for a code this ABI never returns.
    pub const fn from_raw(code: i64) -> Option<Self> {
        match code {
            SUCCESS => Some(Self::Success),
            NOT_SUPPORTED => Some(Self::NotSupported),
            INVALID_PARAMETER => Some(Self::InvalidParameter),
            DENIED => Some(Self::Denied),
            NO_MEMORY => Some(Self::NoMemory),
            _ => None,
        }
    }

    /// The status in x0 as the guest reads the register (the code sign-extended to 64
    /// bits).
    pub const fn from_register(x0: u64) -> Option<Self> {
        Self::from_raw(x0 as i64)
    }

    pub const fn as_raw(self) -> i64 {
        self as i64
    }

    /// The value to put in x0.
    pub const fn as_register(self) -> u64 {
        self.as_raw() as u64
    }

    /// The name the README and the C module use (`INVALID_PARAMETER`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::NotSupported => "NOT_SUPPORTED",
            Self::InvalidParameter => "INVALID_PARAMETER",
            Self::Denied => "DENIED",
            Self::NoMemory => "NO_MEMORY",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---- permissions --------------------------------------------------------------------

/// MEM_PROTECT x3 and MEM_QUERY x1: stage-2 read permission.
pub const PERM_READ: u64 = 1 << 0;
/// Stage-2 write permission.
pub const PERM_WRITE: u64 = 1 << 1;
/// Stage-2 execute permission.
pub const PERM_EXECUTE: u64 = 1 << 2;
/// Every permission bit this ABI knows; any other bit makes MEM_PROTECT invalid.
pub const PERM_ALL: u64 = PERM_READ | PERM_WRITE | PERM_EXECUTE;

/// Stage-2 permissions a guest may ask for, as the bits [`PERM_READ`], [`PERM_WRITE`]
/// and [`PERM_EXECUTE`] carry them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Permissions {
    pub read: bool,
    pub write: bool,
    pub execute: bool,
}

impl Permissions {
    pub const NONE: Self = Self {
        read: false,
        write: false,
        execute: false,
    };
    pub const ALL: Self = Self {
        read: true,
        write: true,
        execute: true,
    };

    /// The permissions of a register value; `None` when a bit outside [`PERM_ALL`] is
    /// set (MEM_PROTECT refuses those with INVALID_PARAMETER).
    pub const fn from_bits(bits: u64) -> Option<Self> {
        if bits & !PERM_ALL != 0 {
            return None;
        }
        Some(Self {
            read: bits & PERM_READ != 0,
            write: bits & PERM_WRITE != 0,
            execute: bits & PERM_EXECUTE != 0,
        })
    }

    pub const fn bits(self) -> u64 {
        (if self.read { PERM_READ } else { 0 })
            | (if self.write { PERM_WRITE } else { 0 })
            | (if self.execute { PERM_EXECUTE } else { 0 })
    }
}

/// `rwx`, `r--`: the spelling of logs and of the C module's messages.
impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let letter = |on: bool, letter: &'static str| if on { letter } else { "-" };
        f.write_str(letter(self.read, "r"))?;
        f.write_str(letter(self.write, "w"))?;
        f.write_str(letter(self.execute, "x"))
    }
}

// ---- MEM_PROTECT and MEM_QUERY ------------------------------------------------------

/// The granule of MEM_PROTECT: IPA and size must be multiples of it.
pub const PAGE_SIZE: u64 = 4096;

/// The size of the stage-2 leaf MEM_QUERY reports at a translation level (x2 -> x3):
/// 1 GiB at level 1, 2 MiB at level 2, 4 KiB at level 3 (4K granule).
pub const fn leaf_size(level: u64) -> Option<u64> {
    match level {
        1 => Some(1 << 30),
        2 => Some(2 << 20),
        3 => Some(PAGE_SIZE),
        _ => None,
    }
}

/// MEM_QUERY's results: x0 status, x1 permission bits, x2 leaf level, x3 leaf size.
/// Raw numbers, so that a caller can report a wrong answer as it came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemQueryResult {
    pub status: i64,
    pub permissions: u64,
    pub level: u64,
    pub leaf_size: u64,
}

impl MemQueryResult {
    /// A successful answer for a leaf at `level` (the size follows from the level; 0 for
    /// a level that has no leaves).
    pub const fn leaf(permissions: Permissions, level: u64) -> Self {
        Self {
            status: SUCCESS,
            permissions: permissions.bits(),
            level,
            leaf_size: match leaf_size(level) {
                Some(size) => size,
                None => 0,
            },
        }
    }

    /// A refusal: only x0 carries something.
    pub const fn refused(status: Status) -> Self {
        Self {
            status: status.as_raw(),
            permissions: 0,
            level: 0,
            leaf_size: 0,
        }
    }

    pub const fn from_registers(x: [u64; 4]) -> Self {
        Self {
            status: x[0] as i64,
            permissions: x[1],
            level: x[2],
            leaf_size: x[3],
        }
    }

    pub const fn to_registers(self) -> [u64; 4] {
        [
            self.status as u64,
            self.permissions,
            self.level,
            self.leaf_size,
        ]
    }
}

// ---- STATS --------------------------------------------------------------------------

/// STATS x1 = 0: splits of 1G blocks, splits of 2M blocks, collapses.
pub const STATS_SPLITS: u64 = 0;
/// STATS x1 = 1: TLBIs by address, by range, of the whole VMID.
pub const STATS_TLBI: u64 = 1;
/// STATS x1 = 2: table pages in use, descriptors written, transient (break-before-make)
/// unmaps.
pub const STATS_TABLES: u64 = 2;
/// The number of groups; this value and any above it are INVALID_PARAMETER.
pub const STATS_GROUPS: u64 = 3;

/// What x1..x3 of each STATS group count, indexed by group number.
pub const STATS_COUNTER_NAMES: [[&str; 3]; STATS_GROUPS as usize] = [
    ["1G splits", "2M splits", "collapses"],
    ["TLBIs by address", "TLBIs by range", "TLBIs of the VMID"],
    [
        "table pages in use",
        "descriptors written",
        "break-before-make unmaps",
    ],
];

/// Counter groups STATS reports, three counters each (see [`STATS_COUNTER_NAMES`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatsGroup {
    /// Splits of 1G blocks, splits of 2M blocks, collapses.
    Splits = STATS_SPLITS as isize,
    /// TLBIs by address, by range, of the whole VMID.
    Tlbi = STATS_TLBI as isize,
    /// Table pages in use, descriptors written, transient (break-before-make) unmaps.
    Tables = STATS_TABLES as isize,
}

impl StatsGroup {
    pub const ALL: [StatsGroup; STATS_GROUPS as usize] = [Self::Splits, Self::Tlbi, Self::Tables];

    /// The group STATS x1 names; `None` (INVALID_PARAMETER) for any other value.
    pub const fn from_raw(x1: u64) -> Option<Self> {
        match x1 {
            STATS_SPLITS => Some(Self::Splits),
            STATS_TLBI => Some(Self::Tlbi),
            STATS_TABLES => Some(Self::Tables),
            _ => None,
        }
    }

    pub const fn as_raw(self) -> u64 {
        self as u64
    }

    /// What the group's x1, x2 and x3 count.
    pub const fn counter_names(self) -> [&'static str; 3] {
        STATS_COUNTER_NAMES[self as usize]
    }
}

// ---- FEATURES -----------------------------------------------------------------------

/// The FEATURES bit of a function: bit N for function number N (the low 16 bits of the
/// ID). 0 for numbers the 64-bit bitmap cannot hold (CALL_UID's 0xff01 is one: it is the
/// standard query every vendor service has, not a feature).
pub const fn feature_bit(function_id: u32) -> u64 {
    let number = function_id & 0xffff;
    if number < 64 { 1 << number } else { 0 }
}

pub const FEATURE_FEATURES: u64 = feature_bit(FEATURES);
pub const FEATURE_MEM_PROTECT: u64 = feature_bit(MEM_PROTECT);
pub const FEATURE_MEM_QUERY: u64 = feature_bit(MEM_QUERY);
pub const FEATURE_STATS: u64 = feature_bit(STATS);

/// What FEATURES returns: every function of this ABI but CALL_UID.
pub const FEATURE_BITMAP: u64 =
    FEATURE_FEATURES | FEATURE_MEM_PROTECT | FEATURE_MEM_QUERY | FEATURE_STATS;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn uid_words_spell_the_uuid() {
        assert_eq!(UidDisplay(UID).to_string(), UUID);
        let hex: String = uid_bytes(UID).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, UUID.replace('-', ""));
    }

    #[test]
    fn function_ids_are_fast_calls_of_the_vendor_hypervisor_service() {
        for (id, name) in FUNCTIONS {
            assert_eq!(id >> 31, 1, "{name}: fast call");
            assert_eq!((id >> 24) & 0x3f, 6, "{name}: owner 6 (vendor hypervisor)");
            assert_eq!(function_name(id), Some(name));
        }
        assert_eq!(CALL_UID & (1 << 30), 0, "CALL_UID is an SMC32 call");
        for id in [FEATURES, MEM_PROTECT, MEM_QUERY, STATS] {
            assert_ne!(id & (1 << 30), 0, "{id:#x} is an SMC64 call");
        }
        assert_eq!(function_name(0xc600_0004), None);
    }

    #[test]
    fn the_feature_bitmap_has_the_function_numbers() {
        assert_eq!(FEATURE_BITMAP, 0b1111);
        assert_eq!(
            FEATURE_MEM_PROTECT | FEATURE_MEM_QUERY | FEATURE_STATS,
            0b1110
        );
        assert_eq!(feature_bit(CALL_UID), 0);
    }

    #[test]
    fn statuses_round_trip_and_are_named() {
        for status in Status::ALL {
            assert_eq!(Status::from_raw(status.as_raw()), Some(status));
            assert_eq!(Status::from_register(status.as_register()), Some(status));
        }
        assert_eq!(Status::from_raw(-2), None, "NOT_REQUIRED is not ours");
        assert_eq!(Status::from_register(u64::MAX - 4), Some(Status::NoMemory));
        assert_eq!(Status::InvalidParameter.to_string(), "INVALID_PARAMETER");
        assert_eq!(Status::Denied.as_raw(), -4);
    }

    #[test]
    fn permissions_print_like_ls() {
        assert_eq!(Permissions::ALL.to_string(), "rwx");
        assert_eq!(Permissions::NONE.to_string(), "---");
        assert_eq!(
            Permissions::from_bits(PERM_READ | PERM_EXECUTE).map(|p| p.to_string()),
            Some("r-x".to_string())
        );
        assert_eq!(Permissions::from_bits(0b1000), None);
    }

    #[test]
    fn stats_groups_round_trip() {
        for (index, group) in StatsGroup::ALL.into_iter().enumerate() {
            assert_eq!(group.as_raw(), index as u64);
            assert_eq!(StatsGroup::from_raw(group.as_raw()), Some(group));
            assert_eq!(group.counter_names(), STATS_COUNTER_NAMES[index]);
        }
        assert_eq!(StatsGroup::from_raw(STATS_GROUPS), None);
        assert_eq!(StatsGroup::Splits.counter_names()[2], "collapses");
    }

    #[test]
    fn mem_query_results_fill_the_registers_in_order() {
        let leaf = MemQueryResult::leaf(Permissions::from_bits(PERM_READ).unwrap(), 3);
        assert_eq!(leaf.to_registers(), [0, 1, 3, 4096]);
        assert_eq!(MemQueryResult::from_registers(leaf.to_registers()), leaf);
        assert_eq!(MemQueryResult::leaf(Permissions::ALL, 1).leaf_size, 1 << 30);
        assert_eq!(
            MemQueryResult::refused(Status::Denied).to_registers(),
            [(-4i64) as u64, 0, 0, 0]
        );
        assert_eq!(leaf_size(2), Some(2 << 20));
        assert_eq!(leaf_size(0), None);
    }

    proptest! {
        #[test]
        fn permission_bits_round_trip(bits: u64) {
            match Permissions::from_bits(bits) {
                Some(permissions) => prop_assert_eq!(permissions.bits(), bits),
                None => prop_assert_ne!(bits & !PERM_ALL, 0),
            }
        }

        #[test]
        fn unknown_status_codes_are_none(code: i64) {
            let known = [SUCCESS, NOT_SUPPORTED, INVALID_PARAMETER, DENIED, NO_MEMORY];
            prop_assert_eq!(Status::from_raw(code).is_some(), known.contains(&code));
        }
    }
}
