//! Typed memory attributes and their encoding in each regime.

use core::ops::BitOr;

use crate::descriptor::{AF, SW_NO_BLOCK, SW_NO_CONT};
use crate::error::Error;
use crate::regime::RegimeKind;

/// Access permissions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Access(u8);

impl Access {
    /// No access.
    pub const NONE: Access = Access(0);
    /// Data reads.
    pub const READ: Access = Access(1);
    /// Data writes.
    pub const WRITE: Access = Access(2);
    /// Instruction fetches.
    pub const EXECUTE: Access = Access(4);
    /// Read and write.
    pub const READ_WRITE: Access = Access(3);
    /// Read and execute.
    pub const READ_EXECUTE: Access = Access(5);

    /// Whether every permission in `other` is in `self`.
    pub const fn contains(self, other: Access) -> bool {
        self.0 & other.0 == other.0
    }

    /// The raw bits (READ = 1, WRITE = 2, EXECUTE = 4).
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// From raw bits; unknown bits are dropped.
    pub const fn from_bits_truncate(bits: u8) -> Access {
        Access(bits & 7)
    }
}

impl BitOr for Access {
    type Output = Access;
    fn bitor(self, rhs: Access) -> Access {
        Access(self.0 | rhs.0)
    }
}

/// Memory type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemoryType {
    /// Normal, inner and outer write-back, read/write-allocate, inner shareable.
    NormalWriteBack,
    /// Device-nGnRE.
    Device,
    /// Normal, inner and outer non-cacheable.
    NormalNonCacheable,
}

/// What a mapping allows and how memory behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Attributes {
    /// Permissions.
    pub access: Access,
    /// Memory type.
    pub memory: MemoryType,
}

impl Attributes {
    /// `access` on `memory`.
    pub const fn new(access: Access, memory: MemoryType) -> Self {
        Attributes { access, memory }
    }
    /// Normal write-back read/write memory.
    pub const RW: Attributes = Attributes::new(Access::READ_WRITE, MemoryType::NormalWriteBack);
    /// Normal write-back read-only memory.
    pub const RO: Attributes = Attributes::new(Access::READ, MemoryType::NormalWriteBack);
    /// Normal write-back read/execute memory.
    pub const RX: Attributes = Attributes::new(Access::READ_EXECUTE, MemoryType::NormalWriteBack);
    /// Device-nGnRE read/write memory.
    pub const DEVICE: Attributes = Attributes::new(Access::READ_WRITE, MemoryType::Device);
}

/// How a range may be mapped (the same flags as Linux's `__create_pgd_mapping`).
///
/// The flags are remembered in software bits of every leaf they produce, so a later
/// collapse never undoes them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MapFlags(u8);

impl MapFlags {
    /// No flags: largest blocks and the contiguous hint where alignment allows.
    pub const NONE: MapFlags = MapFlags(0);
    /// Only 4 KiB pages.
    pub const NO_BLOCK_MAPPINGS: MapFlags = MapFlags(1);
    /// Never set the contiguous hint.
    pub const NO_CONT_MAPPINGS: MapFlags = MapFlags(2);

    /// Whether every flag in `other` is set.
    pub const fn contains(self, other: MapFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for MapFlags {
    type Output = MapFlags;
    fn bitor(self, rhs: MapFlags) -> MapFlags {
        MapFlags(self.0 | rhs.0)
    }
}

// EL2 stage 1 (non-VHE): lower attributes.
const EL2_ATTR_INDEX_SHIFT: u32 = 2;
const EL2_IDX_NORMAL_WB: u64 = 0;
const EL2_IDX_DEVICE: u64 = 1;
const EL2_IDX_NORMAL_NC: u64 = 2;
/// AP[2:1] = 0b01: read/write (AP[1] is RES1 in a single-privilege regime).
const EL2_AP_RW: u64 = 0b01 << 6;
/// AP[2:1] = 0b11: read-only.
const EL2_AP_RO: u64 = 0b11 << 6;
const EL2_AP_MASK: u64 = 0b11 << 6;
// Stage 2: MemAttr[5:2] with FEAT_S2FWB disabled.
const S2_MEMATTR_SHIFT: u32 = 2;
const S2_MEMATTR_NORMAL_WB: u64 = 0b1111;
const S2_MEMATTR_DEVICE_NGNRE: u64 = 0b0001;
const S2_MEMATTR_NORMAL_NC: u64 = 0b0101;
/// S2AP[0], bit 6: read.
const S2_READ: u64 = 1 << 6;
/// S2AP[1], bit 7: write.
const S2_WRITE: u64 = 1 << 7;
// Both regimes.
const SH_INNER: u64 = 0b11 << 8;
const SH_MASK: u64 = 0b11 << 8;
/// XN (stage 1 at EL2: bit 54; stage 2: XN[1], with XN[0] = bit 53 kept 0 since FEAT_XNX
/// is out of scope).
const XN: u64 = 1 << 54;
/// Bits that carry the memory type and shareability: changing them on a live leaf needs
/// break-before-make in any case (Arm ARM RWHZWS).
pub(crate) const MEMORY_TYPE_MASK: u64 = (0b1111 << 2) | SH_MASK;

/// Encodes `attrs` and `flags` as the attribute bits of a leaf in `regime`.
///
/// # Errors
/// [`Error::WriteAndExecute`] for W+X at EL2; [`Error::AccessNotExpressible`] for an
/// EL2 mapping without read access (write-only, execute-only, none);
/// [`Error::ExecutableDevice`] for executable Device memory.
pub(crate) fn encode(regime: RegimeKind, attrs: Attributes, flags: MapFlags) -> Result<u64, Error> {
    let a = attrs.access;
    if a.contains(Access::EXECUTE) && attrs.memory == MemoryType::Device {
        return Err(Error::ExecutableDevice);
    }
    let shareability = match attrs.memory {
        MemoryType::Device => 0,
        MemoryType::NormalWriteBack | MemoryType::NormalNonCacheable => SH_INNER,
    };
    let mut bits = AF | shareability;
    if !a.contains(Access::EXECUTE) {
        bits |= XN;
    }
    match regime {
        RegimeKind::El2 => {
            if a.contains(Access::WRITE) && a.contains(Access::EXECUTE) {
                return Err(Error::WriteAndExecute);
            }
            if !a.contains(Access::READ) {
                return Err(Error::AccessNotExpressible);
            }
            bits |= if a.contains(Access::WRITE) {
                EL2_AP_RW
            } else {
                EL2_AP_RO
            };
            let index = match attrs.memory {
                MemoryType::NormalWriteBack => EL2_IDX_NORMAL_WB,
                MemoryType::Device => EL2_IDX_DEVICE,
                MemoryType::NormalNonCacheable => EL2_IDX_NORMAL_NC,
            };
            bits |= index << EL2_ATTR_INDEX_SHIFT;
        }
        RegimeKind::Stage2 => {
            if a.contains(Access::READ) {
                bits |= S2_READ;
            }
            if a.contains(Access::WRITE) {
                bits |= S2_WRITE;
            }
            let memattr = match attrs.memory {
                MemoryType::NormalWriteBack => S2_MEMATTR_NORMAL_WB,
                MemoryType::Device => S2_MEMATTR_DEVICE_NGNRE,
                MemoryType::NormalNonCacheable => S2_MEMATTR_NORMAL_NC,
            };
            bits |= memattr << S2_MEMATTR_SHIFT;
        }
    }
    if flags.contains(MapFlags::NO_BLOCK_MAPPINGS) {
        bits |= SW_NO_BLOCK;
    }
    if flags.contains(MapFlags::NO_CONT_MAPPINGS) {
        bits |= SW_NO_CONT;
    }
    Ok(bits)
}

/// The mapping flags remembered in leaf attribute bits.
pub(crate) const fn flags_of(bits: u64) -> MapFlags {
    let mut f = 0;
    if bits & SW_NO_BLOCK != 0 {
        f |= MapFlags::NO_BLOCK_MAPPINGS.0;
    }
    if bits & SW_NO_CONT != 0 {
        f |= MapFlags::NO_CONT_MAPPINGS.0;
    }
    MapFlags(f)
}

/// Decodes leaf attribute bits written by [`encode`].
pub(crate) fn decode(regime: RegimeKind, bits: u64) -> Attributes {
    let mut access = Access::NONE;
    if bits & XN == 0 {
        access = access | Access::EXECUTE;
    }
    let memory;
    match regime {
        RegimeKind::El2 => {
            access = access | Access::READ;
            if bits & EL2_AP_MASK == EL2_AP_RW {
                access = access | Access::WRITE;
            }
            memory = match (bits >> EL2_ATTR_INDEX_SHIFT) & 0b111 {
                EL2_IDX_DEVICE => MemoryType::Device,
                EL2_IDX_NORMAL_NC => MemoryType::NormalNonCacheable,
                _ => MemoryType::NormalWriteBack,
            };
        }
        RegimeKind::Stage2 => {
            if bits & S2_READ != 0 {
                access = access | Access::READ;
            }
            if bits & S2_WRITE != 0 {
                access = access | Access::WRITE;
            }
            memory = match (bits >> S2_MEMATTR_SHIFT) & 0b1111 {
                S2_MEMATTR_DEVICE_NGNRE => MemoryType::Device,
                S2_MEMATTR_NORMAL_NC => MemoryType::NormalNonCacheable,
                _ => MemoryType::NormalWriteBack,
            };
        }
    }
    Attributes { access, memory }
}

/// Whether two leaf attribute encodings differ only in permissions (AP/S2AP, XN), the
/// change Arm ARM RGPPYH allows on a live leaf without break-before-make.
pub(crate) const fn permission_only(old: u64, new: u64) -> bool {
    (old ^ new) & MEMORY_TYPE_MASK == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn el2_encoding() {
        let rw = encode(RegimeKind::El2, Attributes::RW, MapFlags::NONE).unwrap();
        // AttrIndx 0, AP 0b01, SH inner, AF, XN.
        assert_eq!(rw, (0b01 << 6) | (0b11 << 8) | (1 << 10) | (1 << 54));
        let rx = encode(RegimeKind::El2, Attributes::RX, MapFlags::NONE).unwrap();
        assert_eq!(rx, (0b11 << 6) | (0b11 << 8) | (1 << 10));
        let dev = encode(RegimeKind::El2, Attributes::DEVICE, MapFlags::NONE).unwrap();
        assert_eq!(dev, (1 << 2) | (0b01 << 6) | (1 << 10) | (1 << 54));
        let nc = Attributes::new(Access::READ, MemoryType::NormalNonCacheable);
        assert_eq!(
            encode(RegimeKind::El2, nc, MapFlags::NONE).unwrap() >> 2 & 7,
            2
        );
        assert_eq!(
            encode(RegimeKind::El2, nc, MapFlags::NONE).unwrap() & (1 << 53),
            0
        );
    }

    #[test]
    fn el2_refuses_wx_and_unreadable() {
        let wx = Attributes::new(
            Access::READ | Access::WRITE | Access::EXECUTE,
            MemoryType::NormalWriteBack,
        );
        assert_eq!(
            encode(RegimeKind::El2, wx, MapFlags::NONE),
            Err(Error::WriteAndExecute)
        );
        let wo = Attributes::new(Access::WRITE, MemoryType::NormalWriteBack);
        assert_eq!(
            encode(RegimeKind::El2, wo, MapFlags::NONE),
            Err(Error::AccessNotExpressible)
        );
        let xo = Attributes::new(Access::EXECUTE, MemoryType::NormalWriteBack);
        assert_eq!(
            encode(RegimeKind::El2, xo, MapFlags::NONE),
            Err(Error::AccessNotExpressible)
        );
        let dx = Attributes::new(Access::READ_EXECUTE, MemoryType::Device);
        assert_eq!(
            encode(RegimeKind::Stage2, dx, MapFlags::NONE),
            Err(Error::ExecutableDevice)
        );
    }

    #[test]
    fn stage2_encoding() {
        let rw = encode(RegimeKind::Stage2, Attributes::RW, MapFlags::NONE).unwrap();
        assert_eq!(
            rw,
            (0b1111 << 2) | (0b11 << 6) | (0b11 << 8) | (1 << 10) | (1 << 54)
        );
        let dev = encode(RegimeKind::Stage2, Attributes::DEVICE, MapFlags::NONE).unwrap();
        assert_eq!(dev, (0b0001 << 2) | (0b11 << 6) | (1 << 10) | (1 << 54));
        let nc = Attributes::new(Access::WRITE, MemoryType::NormalNonCacheable);
        let bits = encode(RegimeKind::Stage2, nc, MapFlags::NONE).unwrap();
        assert_eq!(bits >> 2 & 0xf, 0b0101);
        assert_eq!(bits >> 6 & 3, 0b10, "write-only is expressible at stage 2");
        let rwx = Attributes::new(
            Access::READ | Access::WRITE | Access::EXECUTE,
            MemoryType::NormalWriteBack,
        );
        assert!(encode(RegimeKind::Stage2, rwx, MapFlags::NONE).is_ok());
    }

    #[test]
    fn decode_inverts_encode() {
        for regime in [RegimeKind::El2, RegimeKind::Stage2] {
            for access in 0..8 {
                for memory in [
                    MemoryType::NormalWriteBack,
                    MemoryType::Device,
                    MemoryType::NormalNonCacheable,
                ] {
                    let a = Attributes::new(Access::from_bits_truncate(access), memory);
                    for flags in [
                        MapFlags::NONE,
                        MapFlags::NO_BLOCK_MAPPINGS | MapFlags::NO_CONT_MAPPINGS,
                    ] {
                        if let Ok(bits) = encode(regime, a, flags) {
                            assert_eq!(decode(regime, bits), a);
                            assert_eq!(flags_of(bits), flags);
                        }
                    }
                }
            }
        }
    }
}
