//! Stream table entries (IHI 0070 §5.2 "Stream Table Entry"): the 64-byte STE as eight
//! little-endian 64-bit words, for the two configurations the hypervisor uses, abort and
//! stage-2 translation, and the stage-2 configuration derived from the CPU's own
//! VTCR_EL2 and VTTBR_EL2 so that the SMMU walks the guest's stage-2 tables exactly as
//! the CPU does.
//!
//! There is no bypass STE: the hypervisor never lets a device reach memory untranslated
//! (a stream not assigned to a guest aborts), so nothing here builds one.
//!
//! | word | bits | field | abort | stage 2 |
//! |---|---|---|---|---|
//! | 0 | \[0\] | V | 1 | 1 |
//! | 0 | \[3:1\] | Config | 0b000 abort | 0b110 stage 1 bypass, stage 2 translate |
//! | 1 | \[45:44\] | SHCFG | 0 | 0b01, use incoming shareability (as Linux) |
//! | 2 | \[15:0\] | S2VMID | 0 | the guest's VMID (VTTBR_EL2.VMID) |
//! | 2 | \[37:32\] | S2T0SZ | | VTCR_EL2.T0SZ |
//! | 2 | \[39:38\] | S2SL0 | | VTCR_EL2.SL0 |
//! | 2 | \[41:40\] | S2IR0 | | VTCR_EL2.IRGN0 |
//! | 2 | \[43:42\] | S2OR0 | | VTCR_EL2.ORGN0 |
//! | 2 | \[45:44\] | S2SH0 | | VTCR_EL2.SH0 |
//! | 2 | \[47:46\] | S2TG | | VTCR_EL2.TG0 (0b00, 4 KiB) |
//! | 2 | \[50:48\] | S2PS | | VTCR_EL2.PS, capped to IDR5.OAS |
//! | 2 | \[51\] | S2AA64 | | 1, AArch64 tables |
//! | 2 | \[52\] | S2ENDI | | 0, little-endian walks |
//! | 2 | \[53\] | S2AFFD | | 0: AF = 0 faults, as on the CPU (VTCR_EL2.HA = 0) |
//! | 2 | \[54\] | S2PTW | | 1 (as Linux and Xen; only matters with stage 1) |
//! | 2 | \[56:55\] | S2HA/S2HD | | 0, no hardware AF/dirty updates (VTCR_EL2.HA/HD = 0) |
//! | 2 | \[57\] | S2S | | 0, terminate faulting transactions (never stall) |
//! | 2 | \[58\] | S2R | | 1, record faults in the event queue |
//! | 3 | \[51:4\] | S2TTB | | the stage-2 root (VTTBR_EL2.BADDR) |
//!
//! S2AFFD: the page-table engine sets AF in every leaf it writes and the CPU takes an
//! Access flag fault on AF = 0 (VTCR_EL2.HA = 0), so 0 here makes the SMMU agree with
//! the CPU: a leaf without AF would be a bug either side reports. Linux's and Xen's
//! stage-2 STEs leave it 0 too; QEMU implements both values.

use core::fmt;

use super::registers::{Incompatibility, SmmuFeatures, Stage2Needs, address_bits};

const V: u64 = 1 << 0;
const CONFIG_SHIFT: u32 = 1;
const CONFIG_MASK: u64 = 0b111 << CONFIG_SHIFT;
/// STE.Config values (word 0 \[3:1\]).
const CONFIG_ABORT: u64 = 0b000;
const CONFIG_STAGE2: u64 = 0b110;

const SHCFG_SHIFT: u32 = 44;
const SHCFG_INCOMING: u64 = 0b01;

const S2VMID_MASK: u64 = 0xffff;
/// The VTCR-shaped fields start at word 2 bit 32: S2T0SZ \[37:32\] .. S2PS \[50:48\] sit at
/// VTCR_EL2's own positions plus 32.
const S2VTCR_SHIFT: u32 = 32;
const S2AA64: u64 = 1 << 51;
const S2ENDI: u64 = 1 << 52;
const S2AFFD: u64 = 1 << 53;
const S2PTW: u64 = 1 << 54;
const S2HA: u64 = 1 << 55;
const S2HD: u64 = 1 << 56;
const S2S: u64 = 1 << 57;
const S2R: u64 = 1 << 58;
/// S2TTB, word 3 bits \[51:4\].
const S2TTB_MASK: u64 = ((1 << 52) - 1) & !0xf;

// VTCR_EL2 fields (Arm ARM "VTCR_EL2").
const VTCR_T0SZ_MASK: u64 = 0x3f;
const VTCR_SL0_SHIFT: u32 = 6;
const VTCR_IRGN0_SHIFT: u32 = 8;
const VTCR_ORGN0_SHIFT: u32 = 10;
const VTCR_SH0_SHIFT: u32 = 12;
const VTCR_TG0_SHIFT: u32 = 14;
const VTCR_PS_SHIFT: u32 = 16;
const VTCR_VS: u64 = 1 << 19;
const VTCR_RES1: u64 = 1 << 31;
/// T0SZ, SL0, IRGN0, ORGN0, SH0, TG0, PS: the fields STE word 2 \[50:32\] repeats.
const VTCR_STE_FIELDS: u64 = (1 << 19) - 1;
/// Every VTCR_EL2 bit the SMMU can mirror: the fields above, VS (VMID width) and RES1
/// bit 31. Anything else (HA, HD, DS, SL2, NSW/NSA, S2PIE, D128, ...) changes how the
/// CPU walks or updates the tables in a way the STE does not express.
const VTCR_MIRRORED: u64 = VTCR_STE_FIELDS | VTCR_VS | VTCR_RES1;

/// The lowest input-address bit a level resolves (4 KiB granule).
const fn level_shift(level: u8) -> u32 {
    12 + 9 * (3 - level as u32)
}

/// A guest's stage-2 walk as both the CPU and the SMMU see it: VTCR_EL2's fields, the
/// root table and the VMID. Built only by [`Stage2Config::from_vtcr`] (or read back from
/// an STE), so an STE can only say what VTCR_EL2 and VTTBR_EL2 say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage2Config {
    t0sz: u8,
    sl0: u8,
    irgn0: u8,
    orgn0: u8,
    sh0: u8,
    ps: u8,
    vmid16: bool,
    root: u64,
    vmid: u16,
}

/// Why a VTCR_EL2 / root / VMID triple cannot be an SMMU stage-2 configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage2ConfigError {
    /// TG0 is not 4 KiB (0b00).
    UnsupportedGranule {
        /// VTCR_EL2.TG0.
        tg0: u8,
    },
    /// T0SZ outside 16..=39 (48- to 25-bit IPA; no FEAT_LPA2, no FEAT_TTST).
    InputSizeOutOfRange {
        /// VTCR_EL2.T0SZ.
        t0sz: u8,
    },
    /// SL0 = 0b11 (level 3 or FEAT_TTST; reserved here).
    ReservedStartLevel,
    /// The start level does not fit the IPA size: the root would need more than 16
    /// concatenated tables, or resolve no bit at all.
    StartLevelMismatch {
        /// IPA bits.
        ipa_bits: u8,
        /// Start level from SL0.
        level: u8,
    },
    /// SH0 = 0b01 (reserved).
    ReservedShareability,
    /// PS = 0b111 (reserved).
    ReservedPhysicalSize,
    /// VTCR_EL2 bits the STE cannot mirror.
    UnmirroredControls {
        /// The offending bits.
        bits: u64,
    },
    /// The VMID is wider than VTCR_EL2.VS allows (8 bits with VS = 0).
    VmidTooWide {
        /// The VMID.
        vmid: u16,
    },
    /// The root is not aligned to the root table's size (at least 16 bytes, S2TTB\[3:0\]).
    RootMisaligned {
        /// The root's physical address.
        root: u64,
        /// The alignment required.
        align: u64,
    },
    /// The root lies beyond the physical size PS allows (or S2TTB's 52 bits).
    RootBeyondPhysicalSize {
        /// The root's physical address.
        root: u64,
        /// PS in bits.
        ps_bits: u8,
    },
}

impl fmt::Display for Stage2ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::UnsupportedGranule { tg0 } => write!(f, "VTCR_EL2.TG0 {tg0:#b} is not 4 KiB"),
            Self::InputSizeOutOfRange { t0sz } => write!(f, "VTCR_EL2.T0SZ {t0sz} out of range"),
            Self::ReservedStartLevel => f.write_str("VTCR_EL2.SL0 0b11 is reserved"),
            Self::StartLevelMismatch { ipa_bits, level } => {
                write!(f, "a {ipa_bits}-bit IPA cannot start at level {level}")
            }
            Self::ReservedShareability => f.write_str("VTCR_EL2.SH0 0b01 is reserved"),
            Self::ReservedPhysicalSize => f.write_str("VTCR_EL2.PS 0b111 is reserved"),
            Self::UnmirroredControls { bits } => {
                write!(f, "VTCR_EL2 bits {bits:#x} have no STE equivalent")
            }
            Self::VmidTooWide { vmid } => write!(f, "VMID {vmid} needs VTCR_EL2.VS"),
            Self::RootMisaligned { root, align } => {
                write!(f, "stage-2 root {root:#x} not aligned to {align:#x}")
            }
            Self::RootBeyondPhysicalSize { root, ps_bits } => {
                write!(f, "stage-2 root {root:#x} beyond {ps_bits} bits")
            }
        }
    }
}

/// Physical address sizes by PS encoding (VTCR_EL2.PS, STE.S2PS, IDR5.OAS).
const PS_BITS: [u8; 7] = [32, 36, 40, 42, 44, 48, 52];

impl Stage2Config {
    /// The configuration the CPU uses with this VTCR_EL2, the stage-2 root (VTTBR_EL2's
    /// BADDR, the first of the concatenated root tables) and the VMID.
    ///
    /// # Errors
    /// A [`Stage2ConfigError`] when the SMMU could not walk the same tables the same way.
    pub fn from_vtcr(vtcr: u64, root: u64, vmid: u16) -> Result<Self, Stage2ConfigError> {
        let unmirrored = vtcr & !VTCR_MIRRORED;
        if unmirrored != 0 {
            return Err(Stage2ConfigError::UnmirroredControls { bits: unmirrored });
        }
        let field = |shift: u32| ((vtcr >> shift) & 0b11) as u8;
        let tg0 = field(VTCR_TG0_SHIFT);
        if tg0 != 0b00 {
            return Err(Stage2ConfigError::UnsupportedGranule { tg0 });
        }
        let t0sz = (vtcr & VTCR_T0SZ_MASK) as u8;
        if !(16..=39).contains(&t0sz) {
            return Err(Stage2ConfigError::InputSizeOutOfRange { t0sz });
        }
        let sl0 = field(VTCR_SL0_SHIFT);
        if sl0 == 0b11 {
            return Err(Stage2ConfigError::ReservedStartLevel);
        }
        let config = Stage2Config {
            t0sz,
            sl0,
            irgn0: field(VTCR_IRGN0_SHIFT),
            orgn0: field(VTCR_ORGN0_SHIFT),
            sh0: field(VTCR_SH0_SHIFT),
            ps: ((vtcr >> VTCR_PS_SHIFT) & 0b111) as u8,
            vmid16: vtcr & VTCR_VS != 0,
            root,
            vmid,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks what [`from_vtcr`](Self::from_vtcr) and [`Ste::stage2_config`] both need.
    fn validate(&self) -> Result<(), Stage2ConfigError> {
        let ipa_bits = self.ipa_bits();
        let level = self.start_level();
        // Arm ARM "Concatenated translation tables": the root resolves between 1 and
        // 9 + 4 bits (1 to 16 tables of 512 entries), the rule QEMU checks too
        // (`s2_pgtable_config_valid`).
        let root_bits = u32::from(ipa_bits).checked_sub(level_shift(level));
        if !matches!(root_bits, Some(1..=13)) {
            return Err(Stage2ConfigError::StartLevelMismatch { ipa_bits, level });
        }
        if self.sh0 == 0b01 {
            return Err(Stage2ConfigError::ReservedShareability);
        }
        let Some(ps_bits) = PS_BITS.get(usize::from(self.ps)).copied() else {
            return Err(Stage2ConfigError::ReservedPhysicalSize);
        };
        if !self.vmid16 && self.vmid > 0xff {
            return Err(Stage2ConfigError::VmidTooWide { vmid: self.vmid });
        }
        let align = self.root_bytes().max(16);
        if self.root & (align - 1) != 0 {
            return Err(Stage2ConfigError::RootMisaligned {
                root: self.root,
                align,
            });
        }
        if self.root & !S2TTB_MASK != 0 || self.root >> ps_bits != 0 {
            return Err(Stage2ConfigError::RootBeyondPhysicalSize {
                root: self.root,
                ps_bits,
            });
        }
        Ok(())
    }

    /// IPA bits: 64 - T0SZ.
    pub const fn ipa_bits(&self) -> u8 {
        64 - self.t0sz
    }

    /// The root's level: SL0 0b10 = level 0, 0b01 = level 1, 0b00 = level 2 (4 KiB).
    pub const fn start_level(&self) -> u8 {
        2 - self.sl0
    }

    /// Entries in the (possibly concatenated) root.
    pub const fn root_entries(&self) -> u64 {
        1 << (self.ipa_bits() as u32 - level_shift(self.start_level()))
    }

    /// Concatenated root tables (1 to 16).
    pub const fn root_tables(&self) -> u64 {
        let entries = self.root_entries();
        if entries > 512 { entries / 512 } else { 1 }
    }

    /// Bytes of the root: 8 per entry.
    pub const fn root_bytes(&self) -> u64 {
        self.root_entries() * 8
    }

    /// The root's physical address.
    pub const fn root(&self) -> u64 {
        self.root
    }

    /// The VMID.
    pub const fn vmid(&self) -> u16 {
        self.vmid
    }

    /// PS in bits.
    pub fn ps_bits(&self) -> u8 {
        PS_BITS.get(usize::from(self.ps)).copied().unwrap_or(0)
    }

    /// The VTCR_EL2 value this configuration came from (every field it keeps, RES1 bit
    /// 31 included).
    pub const fn vtcr(&self) -> u64 {
        self.vtcr_fields() | if self.vmid16 { VTCR_VS } else { 0 } | VTCR_RES1
    }

    /// T0SZ .. PS at their VTCR_EL2 positions (STE word 2 \[50:32\] >> 32).
    const fn vtcr_fields(&self) -> u64 {
        self.t0sz as u64
            | (self.sl0 as u64) << VTCR_SL0_SHIFT
            | (self.irgn0 as u64) << VTCR_IRGN0_SHIFT
            | (self.orgn0 as u64) << VTCR_ORGN0_SHIFT
            | (self.sh0 as u64) << VTCR_SH0_SHIFT
            | (self.ps as u64) << VTCR_PS_SHIFT
    }

    /// What this stage 2 asks of an SMMU, with `output_end` the end of the highest
    /// physical address the guest's tables map or are stored at.
    pub fn needs(&self, output_end: u64, highest_stream_id: Option<u32>) -> Stage2Needs {
        let root_end = self.root.saturating_add(self.root_bytes());
        Stage2Needs {
            ipa_bits: self.ipa_bits(),
            output_bits: address_bits(output_end.max(root_end)),
            vmid: self.vmid,
            highest_stream_id,
        }
    }

    /// This configuration as `smmu` will use it: checked against the SMMU
    /// ([`SmmuFeatures::check`]) and with S2PS capped to IDR5.OAS. The SMMU caps an
    /// S2PS above OAS itself (IHI 0070 "Address sizes"; QEMU's `decode_ste_s2_cfg`
    /// does), and the check has made sure no address above OAS is used, so the CPU and
    /// the SMMU translate every address alike; capping only keeps the STE within what
    /// the SMMU reports.
    ///
    /// # Errors
    /// The first [`Incompatibility`] [`SmmuFeatures::check`] finds.
    pub fn for_smmu(
        &self,
        smmu: &SmmuFeatures,
        output_end: u64,
        highest_stream_id: Option<u32>,
    ) -> Result<Self, Incompatibility> {
        smmu.check(&self.needs(output_end, highest_stream_id))?;
        Ok(Self {
            ps: self.ps.min(smmu.oas_encoding),
            ..*self
        })
    }
}

/// STE.Config, word 0 \[3:1\], with V.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SteConfig {
    /// V = 0: the SMMU records C_BAD_STE and aborts.
    Invalid,
    /// 0b000: abort, no event.
    Abort,
    /// 0b100: bypass (never written by the hypervisor).
    Bypass,
    /// 0b101: stage 1 only (never written).
    Stage1,
    /// 0b110: stage 2 only.
    Stage2,
    /// 0b111: nested (never written).
    Nested,
    /// 0b001..=0b011: reserved.
    Reserved(u8),
}

/// One 64-byte STE, word 0 first (the SMMU reads it little-endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ste([u64; 8]);

impl Ste {
    /// Valid, Config = abort: every transaction of the stream is terminated with an
    /// abort and no event is recorded. Every other word is 0, so an abort STE is one
    /// 64-bit store in word 0 when a live stage-2 STE is turned off.
    pub const fn abort() -> Self {
        Ste([V | CONFIG_ABORT << CONFIG_SHIFT, 0, 0, 0, 0, 0, 0, 0])
    }

    /// Valid, Config = stage 2 only, walking `config`'s tables with its VMID (see the
    /// module documentation for each field).
    pub const fn stage2(config: &Stage2Config) -> Self {
        let word2 =
            config.vmid as u64 | config.vtcr_fields() << S2VTCR_SHIFT | S2AA64 | S2PTW | S2R;
        Ste([
            V | CONFIG_STAGE2 << CONFIG_SHIFT,
            SHCFG_INCOMING << SHCFG_SHIFT,
            word2,
            config.root & S2TTB_MASK,
            0,
            0,
            0,
            0,
        ])
    }

    /// The eight words, word 0 first.
    pub const fn words(&self) -> [u64; 8] {
        self.0
    }

    /// An STE read from memory.
    pub const fn from_words(words: [u64; 8]) -> Self {
        Ste(words)
    }

    /// V and Config.
    pub const fn config(&self) -> SteConfig {
        if self.0[0] & V == 0 {
            return SteConfig::Invalid;
        }
        match (self.0[0] & CONFIG_MASK) >> CONFIG_SHIFT {
            0b000 => SteConfig::Abort,
            0b100 => SteConfig::Bypass,
            0b101 => SteConfig::Stage1,
            0b110 => SteConfig::Stage2,
            0b111 => SteConfig::Nested,
            other => SteConfig::Reserved(other as u8),
        }
    }

    /// The stage-2 configuration of a stage-2 STE as [`Ste::stage2`] writes it, `None`
    /// for anything else (another Config, or a stage-2 field the hypervisor never sets
    /// differently: AArch32 tables, big-endian, S2AFFD, HTTU, stall, no fault records).
    /// The VMID width comes back as 16 bits when the VMID needs it.
    pub fn stage2_config(&self) -> Option<Stage2Config> {
        if self.config() != SteConfig::Stage2 {
            return None;
        }
        let word2 = self.0[2];
        let fixed = S2AA64 | S2ENDI | S2AFFD | S2PTW | S2HA | S2HD | S2S | S2R;
        if word2 & fixed != S2AA64 | S2PTW | S2R {
            return None;
        }
        let fields = (word2 >> S2VTCR_SHIFT) & VTCR_STE_FIELDS;
        let vmid = (word2 & S2VMID_MASK) as u16;
        let vs = if vmid > 0xff { VTCR_VS } else { 0 };
        Stage2Config::from_vtcr(fields | vs | VTCR_RES1, self.0[3] & S2TTB_MASK, vmid).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgtable::{Regime, vtcr_el2};

    /// The guest's VTCR_EL2 as `vm::build` computes it.
    fn vtcr(ipa_bits: u8, pa_bits: u8) -> u64 {
        vtcr_el2(&Regime::stage2(ipa_bits).unwrap(), pa_bits).unwrap()
    }

    #[test]
    fn decodes_what_vtcr_el2_produces_for_every_regime() {
        for pa_bits in [32, 36, 40, 42, 44, 48] {
            for ipa_bits in 32..=48 {
                let regime = Regime::stage2(ipa_bits).unwrap();
                let v = vtcr_el2(&regime, pa_bits).unwrap();
                let root = 0x4000_0000 + 0x10_0000 * u64::from(ipa_bits);
                let config = Stage2Config::from_vtcr(v, root, 1)
                    .unwrap_or_else(|e| panic!("{ipa_bits}-bit IPA, PA {pa_bits}: {e}"));
                assert_eq!(config.ipa_bits(), regime.ia_bits());
                assert_eq!(config.start_level(), regime.start_level());
                assert_eq!(config.root_tables(), regime.root_tables() as u64);
                assert_eq!(config.ps_bits(), pa_bits);
                assert_eq!(config.vtcr(), v, "VTCR_EL2 round trip");
                let ste = Ste::stage2(&config);
                assert_eq!(ste.stage2_config(), Some(config), "STE round trip");
            }
        }
    }

    #[test]
    fn stage2_fields_sit_where_section_5_2_puts_them() {
        // 40-bit IPA, PA 40: VTCR_EL2 0x8002_3558 (T0SZ 24, SL0 level 1, IRGN0/ORGN0
        // WBWA, SH0 inner, TG0 4K, PS 40 bits).
        let v = vtcr(40, 40);
        assert_eq!(v, 0x8002_3558);
        let config = Stage2Config::from_vtcr(v, 0x8_1234_2000, 0x42).unwrap();
        assert_eq!(config.root_bytes(), 2 * 4096, "two concatenated tables");
        let [w0, w1, w2, w3, w4, w5, w6, w7] = Ste::stage2(&config).words();
        assert_eq!(w0 & 1, 1, "V");
        assert_eq!((w0 >> 1) & 0b111, 0b110, "Config: stage 2 only");
        assert_eq!(w0 >> 4, 0, "no stage-1 fields");
        assert_eq!(w1, 0b01 << 44, "SHCFG: incoming");
        assert_eq!(w2 & 0xffff, 0x42, "S2VMID [15:0]");
        assert_eq!((w2 >> 16) & 0xffff, 0, "RES0 [31:16]");
        assert_eq!((w2 >> 32) & 0x3f, 24, "S2T0SZ [37:32]");
        assert_eq!((w2 >> 38) & 0b11, 0b01, "S2SL0 [39:38]");
        assert_eq!((w2 >> 40) & 0b11, 0b01, "S2IR0 [41:40] WBWA");
        assert_eq!((w2 >> 42) & 0b11, 0b01, "S2OR0 [43:42] WBWA");
        assert_eq!((w2 >> 44) & 0b11, 0b11, "S2SH0 [45:44] inner");
        assert_eq!((w2 >> 46) & 0b11, 0b00, "S2TG [47:46] 4K");
        assert_eq!((w2 >> 48) & 0b111, 0b010, "S2PS [50:48] 40 bits");
        assert_eq!((w2 >> 51) & 1, 1, "S2AA64 [51]");
        assert_eq!((w2 >> 52) & 1, 0, "S2ENDI [52] little-endian");
        assert_eq!((w2 >> 53) & 1, 0, "S2AFFD [53]: AF = 0 faults");
        assert_eq!((w2 >> 54) & 1, 1, "S2PTW [54]");
        assert_eq!((w2 >> 55) & 0b11, 0, "S2HA/S2HD [56:55]");
        assert_eq!((w2 >> 57) & 1, 0, "S2S [57]: terminate");
        assert_eq!((w2 >> 58) & 1, 1, "S2R [58]: record");
        assert_eq!(w2 >> 59, 0);
        assert_eq!(w3, 0x8_1234_2000, "S2TTB [51:4]");
        assert_eq!([w4, w5, w6, w7], [0; 4]);
    }

    #[test]
    fn abort_is_valid_config_zero_and_nothing_else() {
        let ste = Ste::abort();
        assert_eq!(ste.words(), [1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(ste.config(), SteConfig::Abort);
        assert_eq!(ste.stage2_config(), None);
    }

    #[test]
    fn config_decoding() {
        let cases = [
            (0, SteConfig::Invalid),
            (0b100 << 1 | 1, SteConfig::Bypass),
            (0b101 << 1 | 1, SteConfig::Stage1),
            (0b111 << 1 | 1, SteConfig::Nested),
            (0b001 << 1 | 1, SteConfig::Reserved(1)),
            (0b110 << 1, SteConfig::Invalid),
        ];
        for (word0, config) in cases {
            assert_eq!(
                Ste::from_words([word0, 0, 0, 0, 0, 0, 0, 0]).config(),
                config
            );
        }
    }

    #[test]
    fn level_0_and_level_2_roots() {
        let c48 = Stage2Config::from_vtcr(vtcr(48, 48), 0x1000, 1).unwrap();
        assert_eq!(
            (c48.start_level(), c48.root_tables(), c48.root_bytes()),
            (0, 1, 4096)
        );
        let c32 = Stage2Config::from_vtcr(vtcr(32, 40), 0x4000, 1).unwrap();
        assert_eq!((c32.start_level(), c32.root_tables()), (2, 4));
        assert_eq!(
            Stage2Config::from_vtcr(vtcr(32, 40), 0x2000, 1),
            Err(Stage2ConfigError::RootMisaligned {
                root: 0x2000,
                align: 0x4000
            }),
            "four concatenated tables align to 16 KiB"
        );
        // A 36-bit IPA at level 1: a 64-entry root, 512 bytes.
        let c36 = Stage2Config::from_vtcr(vtcr(36, 40), 0x200, 1).unwrap();
        assert_eq!((c36.root_entries(), c36.root_bytes()), (64, 512));
    }

    #[test]
    fn refuses_what_the_smmu_cannot_mirror() {
        let v = vtcr(40, 40);
        let err = |vtcr, root, vmid| Stage2Config::from_vtcr(vtcr, root, vmid).unwrap_err();
        assert_eq!(
            err(v | 1 << 21, 0, 1),
            Stage2ConfigError::UnmirroredControls { bits: 1 << 21 }
        );
        assert_eq!(
            err(v | 1 << 22 | 1 << 32, 0, 1),
            Stage2ConfigError::UnmirroredControls {
                bits: 1 << 22 | 1 << 32
            }
        );
        assert_eq!(
            err(v | 0b10 << 14, 0, 1),
            Stage2ConfigError::UnsupportedGranule { tg0: 0b10 }
        );
        assert_eq!(
            err((v & !0x3f) | 15, 0, 1),
            Stage2ConfigError::InputSizeOutOfRange { t0sz: 15 }
        );
        assert_eq!(
            err((v & !0x3f) | 40, 0, 1),
            Stage2ConfigError::InputSizeOutOfRange { t0sz: 40 }
        );
        assert_eq!(
            err(v | 0b11 << 6, 0, 1),
            Stage2ConfigError::ReservedStartLevel
        );
        // 40 bits at level 2 would need 512 concatenated tables.
        assert_eq!(
            err(v & !(0b11 << 6), 0, 1),
            Stage2ConfigError::StartLevelMismatch {
                ipa_bits: 40,
                level: 2
            }
        );
        // 39 bits at level 0 resolve no bit at level 0.
        let v39 = (vtcr(48, 48) & !0x3f) | 25;
        assert_eq!(
            err(v39, 0, 1),
            Stage2ConfigError::StartLevelMismatch {
                ipa_bits: 39,
                level: 0
            }
        );
        assert_eq!(
            err((v & !(0b11 << 12)) | 0b01 << 12, 0, 1),
            Stage2ConfigError::ReservedShareability
        );
        assert_eq!(
            err(v | 0b111 << 16, 0, 1),
            Stage2ConfigError::ReservedPhysicalSize
        );
        assert_eq!(err(v, 0, 256), Stage2ConfigError::VmidTooWide { vmid: 256 });
        assert!(
            Stage2Config::from_vtcr(v | 1 << 19, 0, 256).is_ok(),
            "VS: 16-bit VMIDs"
        );
        assert_eq!(
            err(v, 1 << 40, 1),
            Stage2ConfigError::RootBeyondPhysicalSize {
                root: 1 << 40,
                ps_bits: 40
            }
        );
        assert_eq!(
            err(v, 0x1000, 1),
            Stage2ConfigError::RootMisaligned {
                root: 0x1000,
                align: 0x2000
            }
        );
        for e in [Stage2ConfigError::ReservedStartLevel, err(v, 0x1000, 1)] {
            assert!(!alloc::format!("{e}").is_empty());
        }
    }

    #[test]
    fn for_smmu_caps_the_physical_size_to_oas() {
        // QEMU: S2P, AArch64, COHACC, VMID16, LE; SIDSIZE 16; 4K; OAS 44 bits.
        let smmu = SmmuFeatures::decode(
            1 | 0b10 << 2 | 1 << 4 | 1 << 18 | 0b10 << 21,
            16 | 19 << 21,
            1 << 4 | 4,
        );
        let config = Stage2Config::from_vtcr(vtcr(40, 48), 0x4000_0000, 1).unwrap();
        assert_eq!(config.ps_bits(), 48);
        let smmu_config = config.for_smmu(&smmu, 0x1_0000_0000, Some(8)).unwrap();
        assert_eq!(smmu_config.ps_bits(), 44);
        assert_eq!((Ste::stage2(&smmu_config).words()[2] >> 48) & 7, 4);
        assert_eq!(
            config.for_smmu(&smmu, 1 << 45, None),
            Err(Incompatibility::OutputAddressTooSmall {
                oas_bits: 44,
                needed_bits: 45
            })
        );
        let wide = Stage2Config::from_vtcr(vtcr(48, 48), 0x4000_0000, 1).unwrap();
        assert_eq!(
            wide.for_smmu(&smmu, 1 << 40, None),
            Err(Incompatibility::InputAddressTooSmall {
                ias_bits: 44,
                ipa_bits: 48
            })
        );
    }

    #[test]
    fn needs_include_the_root() {
        let config = Stage2Config::from_vtcr(vtcr(40, 44), 0xf_ffff_e000, 1).unwrap();
        let needs = config.needs(0x1_0000_0000, None);
        assert_eq!((needs.ipa_bits, needs.output_bits, needs.vmid), (40, 36, 1));
    }

    proptest::proptest! {
        #[test]
        fn vtcr_decode_encode_round_trip(
            t0sz in 0u64..64,
            sl0 in 0u64..4,
            rgn in 0u64..16,
            sh0 in 0u64..4,
            tg0 in 0u64..4,
            ps in 0u64..8,
            vs: bool,
            other in proptest::sample::select(vec![0u64, 1 << 21, 1 << 32, 1 << 63]),
            root_page in 0u64..(1 << 40),
            vmid: u16,
        ) {
            let vtcr = t0sz | sl0 << 6 | rgn << 8 | sh0 << 12 | tg0 << 14 | ps << 16
                | u64::from(vs) << 19 | other;
            let root = root_page << 12;
            if let Ok(config) = Stage2Config::from_vtcr(vtcr, root, vmid) {
                proptest::prop_assert_eq!(other, 0);
                proptest::prop_assert_eq!(config.vtcr(), vtcr | VTCR_RES1);
                let back = Ste::stage2(&config).stage2_config();
                proptest::prop_assert!(back.is_some());
                let back = back.unwrap_or(config);
                proptest::prop_assert_eq!(back.vtcr_fields(), config.vtcr_fields());
                proptest::prop_assert_eq!((back.root(), back.vmid()), (root, vmid));
            }
        }

        #[test]
        fn decoding_any_ste_never_panics(words: [u64; 8]) {
            let ste = Ste::from_words(words);
            let _ = ste.config();
            if let Some(config) = ste.stage2_config() {
                proptest::prop_assert_eq!(Ste::stage2(&config).stage2_config(), Some(config));
            }
        }
    }
}
