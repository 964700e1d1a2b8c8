//! How large the guest's stage-2 input (IPA) space is.
//!
//! The smallest size that holds the guest's RAM and passthrough devices, with KVM's default
//! of 40 bits as the floor, and never more than the CPU's PA range (48 bits without
//! FEAT_LPA2). Up to 43 bits the stage-2 walk starts at level 1 with concatenated root
//! tables (Arm ARM D8.2.6, "Concatenated translation tables"), where 1 GiB blocks sit: an
//! IPA in a 1 GiB block is then translated with one table read instead of two, on every
//! TLB miss of the guest, for each of its own stage-1 table reads too.

/// KVM's default IPA size (`KVM_PHYS_SHIFT`), also large enough for QEMU virt's high
/// PCIe windows (they end at 1 TiB for guests under 256 GiB).
pub const FLOOR_BITS: u8 = 40;

/// The largest IPA size the engine builds (no FEAT_LPA2).
pub const CEILING_BITS: u8 = 48;

/// The IPA size for a guest whose highest address (RAM or device) ends at `highest_end`
/// (exclusive), on a CPU with `pa_bits` of physical address. Anything beyond the result
/// cannot be mapped: the caller leaves such regions out, with a warning.
pub fn stage2_ipa_bits(pa_bits: u8, highest_end: u64) -> u8 {
    let needed = match highest_end {
        0 | 1 => 0,
        end => 64 - (end - 1).leading_zeros() as u8,
    };
    needed.max(FLOOR_BITS).min(pa_bits).min(CEILING_BITS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn qemu_virt_with_high_pcie_windows_needs_exactly_40_bits() {
        // RAM at 1 GiB, high ECAM at 256 GiB + 256 MiB, high MMIO [512 GiB, 1 TiB).
        assert_eq!(stage2_ipa_bits(48, 1 << 40), 40);
        assert_eq!(stage2_ipa_bits(44, 1 << 40), 40);
    }

    #[test]
    fn small_guests_get_the_floor() {
        assert_eq!(stage2_ipa_bits(48, 3 * GIB), FLOOR_BITS);
        assert_eq!(stage2_ipa_bits(48, 0), FLOOR_BITS);
        assert_eq!(stage2_ipa_bits(48, 1), FLOOR_BITS);
    }

    #[test]
    fn one_byte_past_a_power_of_two_takes_the_next_bit() {
        assert_eq!(stage2_ipa_bits(48, (1 << 41) + 1), 42);
        assert_eq!(stage2_ipa_bits(48, 1 << 41), 41);
    }

    #[test]
    fn the_cpu_and_the_engine_cap_it() {
        assert_eq!(stage2_ipa_bits(36, 1 << 40), 36);
        assert_eq!(stage2_ipa_bits(32, 3 * GIB), 32);
        assert_eq!(stage2_ipa_bits(52, 1 << 50), CEILING_BITS);
        assert_eq!(stage2_ipa_bits(52, u64::MAX), CEILING_BITS);
    }

    #[test]
    fn sizes_up_to_43_bits_start_at_level_1_and_keep_1g_blocks() {
        for bits in 35..=43 {
            let regime = pgtable::Regime::stage2(bits).expect("valid size");
            assert_eq!(regime.start_level(), 1, "{bits} bits");
        }
        assert_eq!(pgtable::Regime::stage2(44).expect("valid").start_level(), 0);
    }
}
