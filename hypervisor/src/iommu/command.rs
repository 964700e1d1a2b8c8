//! Command queue entries (IHI 0070 chapter 4 "Commands"): the 16-byte commands the
//! hypervisor issues, as two little-endian 64-bit words.
//!
//! | command | opcode | word 0 | word 1 |
//! |---|---|---|---|
//! | CMD_CFGI_STE | 0x03 | SID \[63:32\] | Leaf \[0\] |
//! | CMD_CFGI_ALL (CFGI_STE_RANGE, Range 31) | 0x04 | | Range \[4:0\] = 31 |
//! | CMD_TLBI_EL2_ALL | 0x20 | | |
//! | CMD_TLBI_S12_VMALL | 0x28 | VMID \[47:32\] | |
//! | CMD_TLBI_S2_IPA | 0x2A | NUM \[16:12\], SCALE \[24:20\], VMID \[47:32\] | Leaf \[0\], TTL \[9:8\], TG \[11:10\], IPA\[51:12\] |
//! | CMD_TLBI_NSNH_ALL | 0x30 | | |
//! | CMD_SYNC | 0x46 | CS \[13:12\], MSH \[23:22\], MSIAttr \[27:24\], MSIData \[63:32\] | MSIAddress \[51:2\] |
//!
//! Word 0 \[7:0\] is the opcode. Everything not listed is 0 (SSec = 0: Non-secure only).
//! CMD_PREFETCH_CONFIG is not built: a prefetch is only a hint.

use core::fmt;

/// Opcodes, word 0 \[7:0\].
pub mod opcode {
    /// CMD_CFGI_STE.
    pub const CFGI_STE: u8 = 0x03;
    /// CMD_CFGI_STE_RANGE; with Range = 31 it is CMD_CFGI_ALL.
    pub const CFGI_STE_RANGE: u8 = 0x04;
    /// CMD_TLBI_EL2_ALL.
    pub const TLBI_EL2_ALL: u8 = 0x20;
    /// CMD_TLBI_S12_VMALL.
    pub const TLBI_S12_VMALL: u8 = 0x28;
    /// CMD_TLBI_S2_IPA.
    pub const TLBI_S2_IPA: u8 = 0x2A;
    /// CMD_TLBI_NSNH_ALL.
    pub const TLBI_NSNH_ALL: u8 = 0x30;
    /// CMD_SYNC.
    pub const SYNC: u8 = 0x46;
}

const SID_SHIFT: u32 = 32;
const VMID_SHIFT: u32 = 32;
const NUM_SHIFT: u32 = 12;
const SCALE_SHIFT: u32 = 20;
/// Leaf, word 1 \[0\]. TTL \[9:8\] stays 0: no level hint.
const LEAF: u64 = 1 << 0;
const TG_SHIFT: u32 = 10;
/// TG = 0b01: the range is in 4 KiB pages.
const TG_4K: u64 = 0b01;
/// CMD_TLBI_S2_IPA word 1: IPA \[51:12\].
const IPA_MASK: u64 = ((1 << 52) - 1) & !0xfff;
const CS_SHIFT: u32 = 12;
/// CMD_CFGI_STE_RANGE word 1: Range \[4:0\]; 31 means every StreamID.
const RANGE_ALL: u64 = 31;

const fn leaf_bit(leaf: bool) -> u64 {
    if leaf { LEAF } else { 0 }
}

/// One past the highest IPA a CMD_TLBI_S2_IPA can name (IPA \[51:12\]).
pub const IPA_LIMIT: u64 = 1 << 52;

/// CMD_SYNC.CS: how completion is signalled besides CMDQ_CONS moving past it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncSignal {
    /// 0b00: nothing; software polls CMDQ_CONS.
    None,
    /// 0b01: an interrupt (an MSI to MSIAddress when the SMMU has MSIs; the MSI fields
    /// are left 0 here, so use this only with a wired interrupt, as QEMU has).
    Irq,
    /// 0b10: a send-event, waking a CPU in WFE (IDR0.SEV).
    Sev,
}

/// The range fields of a CMD_TLBI_S2_IPA with IDR3.RIL: `(NUM + 1) * 2^SCALE` pages of
/// 4 KiB from the command's IPA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpaRange {
    num: u8,
    scale: u8,
}

impl IpaRange {
    /// `chunks` (1 to 32) chunks of `2^scale` pages (`scale` 0 to 31); `None` outside.
    pub const fn new(chunks: u64, scale: u8) -> Option<Self> {
        if chunks == 0 || chunks > 32 || scale > 31 {
            return None;
        }
        Some(IpaRange {
            num: (chunks - 1) as u8,
            scale,
        })
    }

    /// Pages covered.
    pub const fn pages(&self) -> u64 {
        (self.num as u64 + 1) << self.scale
    }
}

/// One 16-byte command.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Command([u64; 2]);

impl Command {
    /// CMD_CFGI_STE: the SMMU drops what it cached of the STE of `stream_id` (and, with
    /// `leaf` = false, of the L1 descriptor leading to it).
    pub const fn cfgi_ste(stream_id: u32, leaf: bool) -> Self {
        Command([
            opcode::CFGI_STE as u64 | (stream_id as u64) << SID_SHIFT,
            leaf_bit(leaf),
        ])
    }

    /// CMD_CFGI_ALL: every cached STE and L1 descriptor (CMD_CFGI_STE_RANGE, Range 31,
    /// as Linux builds it).
    pub const fn cfgi_all() -> Self {
        Command([opcode::CFGI_STE_RANGE as u64, RANGE_ALL])
    }

    /// CMD_TLBI_S2_IPA without a range (TG = 0): the stage-2 entries of `vmid` that
    /// translate the 4 KiB page at `ipa` (low bits ignored), last level only with
    /// `leaf`, walk caches too without. TTL is 0 (no level hint), like the CPU's TLBIs.
    pub const fn tlbi_s2_ipa(vmid: u16, ipa: u64, leaf: bool) -> Self {
        Command([
            opcode::TLBI_S2_IPA as u64 | (vmid as u64) << VMID_SHIFT,
            leaf_bit(leaf) | (ipa & IPA_MASK),
        ])
    }

    /// CMD_TLBI_S2_IPA with a range (IDR3.RIL = 1): `range` pages of 4 KiB from `ipa`
    /// (TG = 0b01), TTL 0.
    pub const fn tlbi_s2_ipa_range(vmid: u16, ipa: u64, leaf: bool, range: IpaRange) -> Self {
        Command([
            opcode::TLBI_S2_IPA as u64
                | (range.num as u64) << NUM_SHIFT
                | (range.scale as u64) << SCALE_SHIFT
                | (vmid as u64) << VMID_SHIFT,
            leaf_bit(leaf) | TG_4K << TG_SHIFT | (ipa & IPA_MASK),
        ])
    }

    /// CMD_TLBI_S12_VMALL: every stage-1 and stage-2 entry of `vmid`.
    pub const fn tlbi_s12_vmall(vmid: u16) -> Self {
        Command([
            opcode::TLBI_S12_VMALL as u64 | (vmid as u64) << VMID_SHIFT,
            0,
        ])
    }

    /// CMD_TLBI_NSNH_ALL: every Non-secure, non-EL2 entry of every VMID (at init).
    pub const fn tlbi_nsnh_all() -> Self {
        Command([opcode::TLBI_NSNH_ALL as u64, 0])
    }

    /// CMD_TLBI_EL2_ALL: every EL2 entry (at init, only if IDR0.HYP).
    pub const fn tlbi_el2_all() -> Self {
        Command([opcode::TLBI_EL2_ALL as u64, 0])
    }

    /// CMD_SYNC: completes once every earlier command has taken effect (invalidations
    /// included); then CMDQ_CONS moves past it. MSH, MSIAttr, MSIData and MSIAddress
    /// are 0.
    pub const fn sync(signal: SyncSignal) -> Self {
        let cs: u64 = match signal {
            SyncSignal::None => 0b00,
            SyncSignal::Irq => 0b01,
            SyncSignal::Sev => 0b10,
        };
        Command([opcode::SYNC as u64 | cs << CS_SHIFT, 0])
    }

    /// The two words, word 0 first, as they go into the queue.
    pub const fn words(&self) -> [u64; 2] {
        self.0
    }

    /// Word 0 \[7:0\].
    pub const fn opcode(&self) -> u8 {
        self.0[0] as u8
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Command({:#018x}, {:#018x})", self.0[0], self.0[1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(word: u64, high: u32, low: u32) -> u64 {
        (word >> low) & ((1 << (high - low + 1)) - 1)
    }

    #[test]
    fn cfgi_ste() {
        let [w0, w1] = Command::cfgi_ste(0xdead_beef, true).words();
        assert_eq!(bits(w0, 7, 0), 0x03);
        assert_eq!(bits(w0, 63, 32), 0xdead_beef, "SID");
        assert_eq!(bits(w0, 31, 8), 0, "SSec, SSV, SSID");
        assert_eq!(w1, 1, "Leaf");
        assert_eq!(Command::cfgi_ste(5, false).words()[1], 0);
    }

    #[test]
    fn cfgi_all_is_a_range_of_31() {
        assert_eq!(Command::cfgi_all().words(), [0x04, 31]);
    }

    #[test]
    fn tlbi_s2_ipa_without_range() {
        let [w0, w1] = Command::tlbi_s2_ipa(0xabcd, 0x8_1234_5fff, true).words();
        assert_eq!(bits(w0, 7, 0), 0x2a);
        assert_eq!(bits(w0, 16, 12), 0, "NUM");
        assert_eq!(bits(w0, 24, 20), 0, "SCALE");
        assert_eq!(bits(w0, 47, 32), 0xabcd, "VMID");
        assert_eq!(bits(w0, 63, 48), 0, "ASID");
        assert_eq!(bits(w1, 0, 0), 1, "Leaf");
        assert_eq!(bits(w1, 9, 8), 0, "TTL");
        assert_eq!(bits(w1, 11, 10), 0, "TG: no range");
        assert_eq!(w1 & !0xfff, 0x8_1234_5000, "IPA [51:12]");
        let [_, w1] = Command::tlbi_s2_ipa(1, u64::MAX, false).words();
        assert_eq!(w1, IPA_MASK, "nothing above bit 51, Leaf 0");
    }

    #[test]
    fn tlbi_s2_ipa_with_range() {
        let range = IpaRange::new(32, 31).unwrap();
        assert_eq!(range.pages(), 32 << 31);
        let [w0, w1] = Command::tlbi_s2_ipa_range(7, 0x4000_0000, false, range).words();
        assert_eq!(bits(w0, 16, 12), 31, "NUM = chunks - 1");
        assert_eq!(bits(w0, 24, 20), 31, "SCALE");
        assert_eq!(bits(w0, 47, 32), 7, "VMID");
        assert_eq!(bits(w1, 11, 10), 0b01, "TG 4K");
        assert_eq!(bits(w1, 9, 8), 0, "TTL");
        assert_eq!(bits(w1, 0, 0), 0, "Leaf");
        assert_eq!(w1 & IPA_MASK, 0x4000_0000);
        assert_eq!(IpaRange::new(0, 0), None);
        assert_eq!(IpaRange::new(33, 0), None);
        assert_eq!(IpaRange::new(1, 32), None);
        assert_eq!(IpaRange::new(1, 0).unwrap().pages(), 1);
    }

    #[test]
    fn vmall_nsnh_el2() {
        assert_eq!(
            Command::tlbi_s12_vmall(0x1234).words(),
            [0x28 | 0x1234 << 32, 0]
        );
        assert_eq!(Command::tlbi_nsnh_all().words(), [0x30, 0]);
        assert_eq!(Command::tlbi_el2_all().words(), [0x20, 0]);
    }

    #[test]
    fn sync_signals() {
        for (signal, cs) in [
            (SyncSignal::None, 0),
            (SyncSignal::Irq, 1),
            (SyncSignal::Sev, 2),
        ] {
            let [w0, w1] = Command::sync(signal).words();
            assert_eq!(bits(w0, 7, 0), 0x46);
            assert_eq!(bits(w0, 13, 12), cs, "CS");
            assert_eq!(w0 >> 14, 0, "MSH, MSIAttr, MSIData");
            assert_eq!(w1, 0, "MSIAddress");
            assert_eq!(Command::sync(signal).opcode(), opcode::SYNC);
        }
        assert!(
            alloc::format!("{:?}", Command::sync(SyncSignal::None)).contains("0x0000000000000046")
        );
    }
}
