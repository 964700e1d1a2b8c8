//! The calls the guest makes: the hypervisor's vendor hypercalls and PSCI.
//!
//! The vendor ABI (function IDs, UID, status codes, permission bits, STATS groups,
//! FEATURES bits) comes from the `hyp-abi` crate, which the hypervisor uses too, so the
//! guest checks the numbers the hypervisor decodes with. PSCI is the Arm standard the
//! hypervisor emulates; its numbers are copied from the hypervisor's `psci.rs` (keep
//! in step).

use core::fmt;

pub use hyp_abi::hypercall::{
    CALL_UID, DENIED, FEATURE_MEM_PROTECT, FEATURE_MEM_QUERY, FEATURE_STATS, FEATURES,
    INVALID_PARAMETER, MEM_PROTECT, MEM_QUERY, NO_MEMORY, NOT_SUPPORTED, PAGE_SIZE, PERM_ALL,
    PERM_EXECUTE, PERM_READ, PERM_WRITE, STATS, STATS_COUNTER_NAMES, STATS_GROUPS, STATS_SPLITS,
    STATS_TABLES, STATS_TLBI, SUCCESS, UID, UidDisplay, leaf_size,
};

/// The guest's block sizes: the leaves of stage-2 levels 2 and 1 (MEM_QUERY's sizes).
pub const BLOCK_2M: u64 = 2 << 20;
pub const BLOCK_1G: u64 = 1 << 30;

// ---- PSCI over the DT's conduit (the hypervisor's psci.rs) ----

pub const PSCI_VERSION: u32 = 0x8400_0000;
pub const PSCI_CPU_OFF: u32 = 0x8400_0002;
pub const PSCI_CPU_ON_64: u32 = 0xc400_0003;
pub const PSCI_AFFINITY_INFO_64: u32 = 0xc400_0004;
pub const PSCI_SYSTEM_OFF: u32 = 0x8400_0008;

/// AFFINITY_INFO results.
pub const AFFINITY_ON: i64 = 0;
pub const AFFINITY_OFF: i64 = 1;

/// The name of a vendor-call status, for messages. NOT_REQUIRED is SMCCC's, not the
/// vendor ABI's, but a broken hypervisor could return it.
pub fn status_name(code: i64) -> &'static str {
    match hyp_abi::hypercall::Status::from_raw(code) {
        Some(status) => status.name(),
        None if code == -2 => "NOT_REQUIRED",
        None => "unknown status",
    }
}

/// The name of a PSCI return code, for messages.
pub fn psci_status_name(code: i64) -> &'static str {
    match code {
        0 => "SUCCESS",
        -1 => "NOT_SUPPORTED",
        -2 => "INVALID_PARAMETERS",
        -3 => "DENIED",
        -4 => "ALREADY_ON",
        -5 => "ON_PENDING",
        -6 => "INTERNAL_FAILURE",
        -7 => "NOT_PRESENT",
        -8 => "DISABLED",
        -9 => "INVALID_ADDRESS",
        _ => "unknown status",
    }
}

/// A status code with its name: `-3 (INVALID_PARAMETER)`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Status(pub i64);

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, status_name(self.0))
    }
}

/// Permission bits as `rwx` letters; unknown bits as `+0x..`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Perms(pub u64);

impl fmt::Display for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known = hyp_abi::hypercall::Permissions::from_bits(self.0 & PERM_ALL)
            .unwrap_or(hyp_abi::hypercall::Permissions::NONE);
        write!(f, "{known}")?;
        if self.0 & !PERM_ALL != 0 {
            write!(f, "+{:#x}", self.0 & !PERM_ALL)?;
        }
        Ok(())
    }
}

/// The result of MEM_QUERY: x0 status, x1 permissions, x2 leaf level, x3 leaf size
/// (`hyp_abi::hypercall::MemQueryResult` under the guest's shorter names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query {
    pub status: i64,
    pub perms: u64,
    pub level: u64,
    pub size: u64,
}

impl Query {
    pub fn from_regs(registers: [u64; 4]) -> Self {
        let result = hyp_abi::hypercall::MemQueryResult::from_registers(registers);
        Self {
            status: result.status,
            perms: result.permissions,
            level: result.level,
            size: result.leaf_size,
        }
    }

    /// Checks a successful answer with these permissions and this leaf level (and the
    /// size that goes with it).
    pub fn check(&self, ipa: u64, perms: u64, level: u64) -> Result<(), crate::fixed::Text> {
        if self.status != SUCCESS {
            return Err(crate::text!(
                "MEM_QUERY({ipa:#x}) returned {}",
                Status(self.status)
            ));
        }
        let size = leaf_size(level).unwrap_or(0);
        if self.perms != perms || self.level != level || self.size != size {
            return Err(crate::text!(
                "MEM_QUERY({ipa:#x}) = {}, level {}, size {:#x}; want {}, level {level}, size {size:#x}",
                Perms(self.perms),
                self.level,
                self.size,
                Perms(perms)
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.status == SUCCESS {
            write!(
                f,
                "{} level {} size {:#x}",
                Perms(self.perms),
                self.level,
                self.size
            )
        } else {
            write!(f, "{}", Status(self.status))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_spells_the_projects_uuid() {
        assert_eq!(
            UidDisplay(UID).to_string(),
            "775b0161-be6e-4328-bcb7-6833092ba21d"
        );
    }

    #[test]
    fn block_sizes_are_the_stage2_leaf_sizes() {
        assert_eq!(leaf_size(1), Some(BLOCK_1G));
        assert_eq!(leaf_size(2), Some(BLOCK_2M));
        assert_eq!(leaf_size(3), Some(PAGE_SIZE));
    }

    #[test]
    fn feature_bits_are_function_numbers() {
        assert_eq!(
            FEATURE_MEM_PROTECT | FEATURE_MEM_QUERY | FEATURE_STATS,
            0b1110
        );
    }

    #[test]
    fn perms_and_status_print() {
        assert_eq!(Perms(PERM_READ).to_string(), "r--");
        assert_eq!(Perms(PERM_ALL).to_string(), "rwx");
        assert_eq!(Perms(0b1010).to_string(), "-w-+0x8");
        assert_eq!(
            Status(INVALID_PARAMETER).to_string(),
            "-3 (INVALID_PARAMETER)"
        );
        assert_eq!(Status(-77).to_string(), "-77 (unknown status)");
        assert_eq!(Status(-2).to_string(), "-2 (NOT_REQUIRED)");
        assert_eq!(Status(NO_MEMORY).to_string(), "-5 (NO_MEMORY)");
    }

    #[test]
    fn query_check() {
        let q = Query::from_regs([0, PERM_READ, 3, 4096]);
        assert!(q.check(0x1000, PERM_READ, 3).is_ok());
        let e = q.check(0x1000, PERM_ALL, 1).unwrap_err();
        assert_eq!(
            e.as_str(),
            "MEM_QUERY(0x1000) = r--, level 3, size 0x1000; want rwx, level 1, size 0x40000000"
        );
        let q = Query::from_regs([(-1i64) as u64, 0, 0, 0]);
        assert_eq!(
            q.check(0x1000, PERM_ALL, 1).unwrap_err().as_str(),
            "MEM_QUERY(0x1000) returned -1 (NOT_SUPPORTED)"
        );
    }
}
