//! SMC Calling Convention (Arm DEN0028) function identifiers and return codes, as the
//! guest's HVC/SMC calls present them in w0.

/// A decoded function identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionId(pub u32);

/// Owning entities, bits [29:24].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    Arm,
    Cpu,
    SiP,
    Oem,
    StandardSecure,
    StandardHypervisor,
    VendorHypervisor,
    Other(u8),
}

impl FunctionId {
    /// Bit 31: fast call (atomic, not preemptible).
    pub fn is_fast(self) -> bool {
        self.0 & (1 << 31) != 0
    }

    /// Bit 30: the SMC64/HVC64 convention (arguments in x registers).
    pub fn is_64bit(self) -> bool {
        self.0 & (1 << 30) != 0
    }

    pub fn owner(self) -> Owner {
        match (self.0 >> 24) & 0x3f {
            0 => Owner::Arm,
            1 => Owner::Cpu,
            2 => Owner::SiP,
            3 => Owner::Oem,
            4 => Owner::StandardSecure,
            5 => Owner::StandardHypervisor,
            6 => Owner::VendorHypervisor,
            other => Owner::Other(other as u8),
        }
    }

    /// Bits [15:0].
    pub fn number(self) -> u16 {
        (self.0 & 0xffff) as u16
    }

    /// Bits [23:17] must be zero for fast calls (bit 16 is the SVE live-state hint of
    /// SMCCC 1.3, which callers may set).
    pub fn reserved_bits_clear(self) -> bool {
        self.0 & 0x00fe_0000 == 0
    }

    /// The identifier with the SVE hint cleared, for matching.
    pub fn without_sve_hint(self) -> Self {
        Self(self.0 & !(1 << 16))
    }
}

/// SMCCC return values (sign-extended into x0).
pub const SUCCESS: i64 = 0;
pub const NOT_SUPPORTED: i64 = -1;
pub const NOT_REQUIRED: i64 = -2;
pub const INVALID_PARAMETER: i64 = -3;

pub const SMCCC_VERSION: u32 = 0x8000_0000;
pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
pub const SMCCC_ARCH_SOC_ID: u32 = 0x8000_0002;
pub const SMCCC_ARCH_WORKAROUND_1: u32 = 0x8000_8000;
pub const SMCCC_ARCH_WORKAROUND_2: u32 = 0x8000_7fff;
pub const SMCCC_ARCH_WORKAROUND_3: u32 = 0x8000_3fff;

/// SMCCC v1.1 as (major << 16) | minor: x4..x17 are preserved across calls.
pub const SMCCC_VERSION_1_1: u32 = 0x0001_0001;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psci_cpu_on_64_decodes() {
        let id = FunctionId(0xc400_0003);
        assert!(id.is_fast());
        assert!(id.is_64bit());
        assert_eq!(id.owner(), Owner::StandardSecure);
        assert_eq!(id.number(), 3);
        assert!(id.reserved_bits_clear());
    }

    #[test]
    fn vendor_hypervisor_uid_call_decodes() {
        let id = FunctionId(0x8600_ff01);
        assert_eq!(id.owner(), Owner::VendorHypervisor);
        assert!(!id.is_64bit());
        assert_eq!(id.number(), 0xff01);
    }

    #[test]
    fn sve_hint_is_not_a_reserved_bit() {
        let id = FunctionId(0xc401_0003);
        assert!(id.reserved_bits_clear());
        assert_eq!(id.without_sve_hint(), FunctionId(0xc400_0003));
        assert!(!FunctionId(0xc402_0003).reserved_bits_clear());
    }
}
