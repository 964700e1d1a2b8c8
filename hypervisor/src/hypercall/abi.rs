//! The hypervisor's own guest ABI: SMCCC fast calls in the vendor-specific hypervisor
//! range (owner 6), identified by this project's UID (not KVM's, so no KVM-specific
//! guest driver binds to it). Decoding and validation only; the effects live elsewhere.
//!
//! | call | function ID | arguments | results |
//! |---|---|---|---|
//! | CALL_UID | `0x8600_ff01` | – | x0..x3: UID `775b0161-be6e-4328-bcb7-6833092ba21d` |
//! | FEATURES | `0xc600_0000` | x1..x3 MBZ | x0: bitmap of function numbers 0..63 |
//! | MEM_PROTECT | `0xc600_0001` | x1 IPA, x2 size, x3 permissions | x0: status |
//! | MEM_QUERY | `0xc600_0002` | x1 IPA, x2..x3 MBZ | x0 status, x1 permissions, x2 leaf level, x3 leaf size |
//! | STATS | `0xc600_0003` | x1 group, x2..x3 MBZ | x0 status, x1..x3: three counters of the group |
//!
//! Permissions: bit 0 read, bit 1 write, bit 2 execute; other bits are invalid.
//! Status: 0 SUCCESS, -1 NOT_SUPPORTED, -3 INVALID_PARAMETER, -4 DENIED (not the
//! caller's memory), -5 NO_MEMORY (a table allocation failed; nothing changed).

use crate::hypercall::smccc::{self, FunctionId};

// The numbers are the ABI crate's, shared with the test guest, the QEMU tests, the fuzz
// targets and (checked by a test) the Linux module `hypmem.c`.
pub use hyp_abi::hypercall::{
    CALL_UID, DENIED, FEATURE_BITMAP, FEATURES, INVALID_PARAMETER, MEM_PROTECT, MEM_QUERY,
    NO_MEMORY, NOT_SUPPORTED, PAGE_SIZE, Permissions, STATS, SUCCESS, StatsGroup, UID,
};

/// A decoded, validated call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hypercall {
    CallUid,
    Features,
    MemProtect {
        ipa: u64,
        size: u64,
        permissions: Permissions,
    },
    MemQuery {
        ipa: u64,
    },
    Stats {
        group: StatsGroup,
    },
}

/// Decodes a vendor-hypervisor call. `Ok(None)`: not one of ours (another owner).
///
/// # Errors
/// The SMCCC status to return: NOT_SUPPORTED for an unknown function in our range,
/// INVALID_PARAMETER for misaligned, empty, overflowing or unknown arguments, or a
/// non-zero must-be-zero register.
pub fn decode(function: FunctionId, x: [u64; 3]) -> Result<Option<Hypercall>, i64> {
    if function.owner() != smccc::Owner::VendorHypervisor {
        return Ok(None);
    }
    let call = match function.without_sve_hint().0 {
        CALL_UID => Hypercall::CallUid,
        FEATURES => {
            must_be_zero(&x)?;
            Hypercall::Features
        }
        MEM_PROTECT => {
            let [ipa, size, bits] = x;
            let permissions = Permissions::from_bits(bits).ok_or(INVALID_PARAMETER)?;
            if ipa % PAGE_SIZE != 0
                || size % PAGE_SIZE != 0
                || size == 0
                || ipa.checked_add(size).is_none()
            {
                return Err(INVALID_PARAMETER);
            }
            Hypercall::MemProtect {
                ipa,
                size,
                permissions,
            }
        }
        MEM_QUERY => {
            must_be_zero(&x[1..])?;
            Hypercall::MemQuery { ipa: x[0] }
        }
        STATS => {
            must_be_zero(&x[1..])?;
            let group = StatsGroup::from_raw(x[0]).ok_or(INVALID_PARAMETER)?;
            Hypercall::Stats { group }
        }
        _ => return Err(NOT_SUPPORTED),
    };
    Ok(Some(call))
}

fn must_be_zero(registers: &[u64]) -> Result<(), i64> {
    if registers.iter().all(|&r| r == 0) {
        Ok(())
    } else {
        Err(INVALID_PARAMETER)
    }
}

/// Checks that `[ipa, ipa + size)` lies wholly in one of the caller's RAM ranges and
/// touches none of the `forbidden` ranges (hypervisor memory, the crash region).
///
/// # Errors
/// DENIED when any byte is not the caller's RAM.
pub fn check_ownership(
    ipa: u64,
    size: u64,
    guest_ram: &[(u64, u64)],
    forbidden: &[(u64, u64)],
) -> Result<(), i64> {
    let end = ipa.checked_add(size).ok_or(INVALID_PARAMETER)?;
    let inside = guest_ram
        .iter()
        .any(|&(base, len)| ipa >= base && base.checked_add(len).is_some_and(|e| end <= e));
    let touches = forbidden
        .iter()
        .any(|&(base, len)| ipa < base.saturating_add(len) && base < end);
    if inside && !touches {
        Ok(())
    } else {
        Err(DENIED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn call(id: u32, x: [u64; 3]) -> Result<Option<Hypercall>, i64> {
        decode(FunctionId(id), x)
    }

    #[test]
    fn known_calls_decode() {
        assert_eq!(call(CALL_UID, [0; 3]), Ok(Some(Hypercall::CallUid)));
        assert_eq!(call(FEATURES, [0; 3]), Ok(Some(Hypercall::Features)));
        assert_eq!(
            call(MEM_PROTECT, [0x4000_1000, 0x1000, 0b001]),
            Ok(Some(Hypercall::MemProtect {
                ipa: 0x4000_1000,
                size: 0x1000,
                permissions: Permissions {
                    read: true,
                    write: false,
                    execute: false
                }
            }))
        );
        assert_eq!(
            call(MEM_QUERY, [0x4000_0123, 0, 0]),
            Ok(Some(Hypercall::MemQuery { ipa: 0x4000_0123 }))
        );
        assert_eq!(
            call(STATS, [2, 0, 0]),
            Ok(Some(Hypercall::Stats {
                group: StatsGroup::Tables
            }))
        );
    }

    #[test]
    fn hostile_arguments_are_rejected() {
        assert_eq!(
            call(MEM_PROTECT, [0x4000_0800, 0x1000, 1]),
            Err(INVALID_PARAMETER)
        );
        assert_eq!(
            call(MEM_PROTECT, [0x4000_0000, 0x800, 1]),
            Err(INVALID_PARAMETER)
        );
        assert_eq!(
            call(MEM_PROTECT, [0x4000_0000, 0, 1]),
            Err(INVALID_PARAMETER)
        );
        assert_eq!(
            call(MEM_PROTECT, [!0xfff, 0x2000, 1]),
            Err(INVALID_PARAMETER)
        );
        assert_eq!(
            call(MEM_PROTECT, [0x4000_0000, 0x1000, 0b1000]),
            Err(INVALID_PARAMETER)
        );
        assert_eq!(call(FEATURES, [1, 0, 0]), Err(INVALID_PARAMETER));
        assert_eq!(call(MEM_QUERY, [0, 0, 7]), Err(INVALID_PARAMETER));
        assert_eq!(call(STATS, [3, 0, 0]), Err(INVALID_PARAMETER));
        assert_eq!(call(0xc600_0042, [0; 3]), Err(NOT_SUPPORTED));
    }

    #[test]
    fn other_owners_are_not_ours() {
        assert_eq!(call(0xc400_0003, [0; 3]), Ok(None));
    }

    #[test]
    fn ownership_requires_the_whole_range_in_guest_ram_and_clear_of_hypervisor_memory() {
        let ram = [(0x4000_0000, 0x8000_0000)];
        let hyp = [(0x4020_0000, 0x20_0000)];
        assert_eq!(check_ownership(0x5000_0000, 0x1000, &ram, &hyp), Ok(()));
        assert_eq!(
            check_ownership(0x3fff_f000, 0x2000, &ram, &hyp),
            Err(DENIED)
        );
        assert_eq!(
            check_ownership(0xbfff_f000, 0x2000, &ram, &hyp),
            Err(DENIED)
        );
        assert_eq!(
            check_ownership(0x401f_f000, 0x2000, &ram, &hyp),
            Err(DENIED)
        );
        assert_eq!(check_ownership(0x9000_0000, 0x1000, &[], &[]), Err(DENIED));
    }

    proptest! {
        #[test]
        fn accepted_mem_protect_arguments_are_well_formed(id in 0xc600_0000u32..0xc600_0010, x0: u64, x1: u64, x2 in 0u64..32) {
            if let Ok(Some(Hypercall::MemProtect { ipa, size, permissions })) = call(id, [x0, x1, x2]) {
                prop_assert_eq!(ipa % PAGE_SIZE, 0);
                prop_assert_eq!(size % PAGE_SIZE, 0);
                prop_assert!(size > 0);
                prop_assert!(ipa.checked_add(size).is_some());
                prop_assert_eq!(permissions.bits(), x2);
            }
        }

        #[test]
        fn decoding_never_panics(id: u32, x: [u64; 3]) {
            let _ = call(id, x);
        }
    }
}
