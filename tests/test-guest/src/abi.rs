//! The calls the guest makes: the hypervisor's vendor hypercalls and PSCI.
//!
//! Copied from the hypervisor, not imported, so that the guest builds on its own for
//! bare metal (the `hypervisor` library pulls in its allocator, page-table engine and DT
//! crates). Keep in step with:
//! - `hypervisor/src/hypercall.rs`: function IDs, UID, permission bits, status codes,
//!   STATS groups;
//! - `hypervisor/src/psci.rs`: PSCI function IDs and return codes.

use core::fmt;

// ---- vendor hypervisor service (SMCCC owner 6), hypervisor/src/hypercall.rs ----

pub const CALL_UID: u32 = 0x8600_ff01;
pub const FEATURES: u32 = 0xc600_0000;
pub const MEM_PROTECT: u32 = 0xc600_0001;
pub const MEM_QUERY: u32 = 0xc600_0002;
pub const STATS: u32 = 0xc600_0003;

/// `775b0161-be6e-4328-bcb7-6833092ba21d` as SMCCC returns a UID: each of w0..w3 holds
/// four bytes of the UUID in little-endian order.
pub const UID: [u32; 4] = [0x6101_5b77, 0x2843_6ebe, 0x3368_b7bc, 0x1da2_2b09];

pub const SUCCESS: i64 = 0;
pub const NOT_SUPPORTED: i64 = -1;
pub const INVALID_PARAMETER: i64 = -3;
pub const DENIED: i64 = -4;
pub const NO_MEMORY: i64 = -5;

pub const PERM_READ: u64 = 1 << 0;
pub const PERM_WRITE: u64 = 1 << 1;
pub const PERM_EXECUTE: u64 = 1 << 2;
pub const PERM_ALL: u64 = PERM_READ | PERM_WRITE | PERM_EXECUTE;

/// STATS groups, three counters each.
pub const STATS_SPLITS: u64 = 0; // splits of 1G blocks, splits of 2M blocks, collapses
pub const STATS_TLBI: u64 = 1; // TLBIs by address, by range, of the whole VMID
pub const STATS_TABLES: u64 = 2; // table pages in use, descriptors written, BBM unmaps
pub const STATS_GROUPS: u64 = 3;

pub const STATS_NAMES: [[&str; 3]; 3] = [
    ["1G splits", "2M splits", "collapses"],
    ["TLBIs by address", "TLBIs by range", "TLBIs of the VMID"],
    [
        "table pages in use",
        "descriptors written",
        "break-before-make unmaps",
    ],
];

/// FEATURES bits for the function numbers (low 16 bits of the IDs) the guest needs.
pub const FEATURE_MEM_PROTECT: u64 = 1 << (MEM_PROTECT & 0xffff);
pub const FEATURE_MEM_QUERY: u64 = 1 << (MEM_QUERY & 0xffff);
pub const FEATURE_STATS: u64 = 1 << (STATS & 0xffff);

pub const PAGE_SIZE: u64 = 4096;
pub const BLOCK_2M: u64 = 2 << 20;
pub const BLOCK_1G: u64 = 1 << 30;

// ---- PSCI over the DT's conduit, hypervisor/src/psci.rs ----

pub const PSCI_VERSION: u32 = 0x8400_0000;
pub const PSCI_CPU_OFF: u32 = 0x8400_0002;
pub const PSCI_CPU_ON_64: u32 = 0xc400_0003;
pub const PSCI_AFFINITY_INFO_64: u32 = 0xc400_0004;
pub const PSCI_SYSTEM_OFF: u32 = 0x8400_0008;

/// AFFINITY_INFO results.
pub const AFFINITY_ON: i64 = 0;
pub const AFFINITY_OFF: i64 = 1;

/// The name of a vendor-call status, for messages.
pub fn status_name(code: i64) -> &'static str {
    match code {
        SUCCESS => "SUCCESS",
        NOT_SUPPORTED => "NOT_SUPPORTED",
        -2 => "NOT_REQUIRED",
        INVALID_PARAMETER => "INVALID_PARAMETER",
        DENIED => "DENIED",
        NO_MEMORY => "NO_MEMORY",
        _ => "unknown status",
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
        let p = self.0;
        let c = |bit: u64, ch: char| if p & bit != 0 { ch } else { '-' };
        write!(
            f,
            "{}{}{}",
            c(PERM_READ, 'r'),
            c(PERM_WRITE, 'w'),
            c(PERM_EXECUTE, 'x')
        )?;
        if p & !PERM_ALL != 0 {
            write!(f, "+{:#x}", p & !PERM_ALL)?;
        }
        Ok(())
    }
}

/// The result of MEM_QUERY: x0 status, x1 permissions, x2 leaf level, x3 leaf size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query {
    pub status: i64,
    pub perms: u64,
    pub level: u64,
    pub size: u64,
}

impl Query {
    pub fn from_regs(r: [u64; 4]) -> Self {
        Self {
            status: r[0] as i64,
            perms: r[1],
            level: r[2],
            size: r[3],
        }
    }

    /// The leaf size a stage-2 level maps with 4K granules.
    pub fn size_of_level(level: u64) -> Option<u64> {
        match level {
            1 => Some(BLOCK_1G),
            2 => Some(BLOCK_2M),
            3 => Some(PAGE_SIZE),
            _ => None,
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
        let size = Query::size_of_level(level).unwrap_or(0);
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

/// A UID in the usual UUID spelling, from the four SMCCC result words.
pub struct Uuid(pub [u32; 4]);

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = [0u8; 16];
        for (chunk, word) in bytes.chunks_exact_mut(4).zip(self.0) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        for (i, b) in bytes.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_spells_the_projects_uuid() {
        assert_eq!(
            Uuid(UID).to_string(),
            "775b0161-be6e-4328-bcb7-6833092ba21d"
        );
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
