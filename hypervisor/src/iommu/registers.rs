//! SMMUv3 register offsets and field values (Arm IHI 0070, chapter 6 "Memory map and
//! registers"), and what the ID registers say about one SMMU: can it walk the CPU's
//! stage-2 tables for a guest, and if not, why not.
//!
//! Offsets are from the SMMU's base (page 0). The event queue's PROD/CONS live in page 1
//! (base + 64 KiB): [`EVTQ_PROD`] and [`EVTQ_CONS`] already include it. Registers are
//! 32 bits wide except the `*_BASE` and `*_IRQ_CFG0` ones, which are 64 bits.

use arrayvec::ArrayVec;
use core::fmt;

// ---- Page 0 -------------------------------------------------------------------------

/// SMMU_IDR0: stages, table formats, coherency, VMID width, stream-table levels.
pub const IDR0: usize = 0x00;
/// SMMU_IDR1: StreamID size, queue sizes, preset tables/queues.
pub const IDR1: usize = 0x04;
/// SMMU_IDR2: VATOS (not used).
pub const IDR2: usize = 0x08;
/// SMMU_IDR3: range invalidation (RIL), break-before-make level (BBML), HAD.
pub const IDR3: usize = 0x0C;
/// SMMU_IDR4: IMPLEMENTATION DEFINED.
pub const IDR4: usize = 0x10;
/// SMMU_IDR5: output address size (OAS), granules, STALL_MAX.
pub const IDR5: usize = 0x14;
/// SMMU_IIDR: implementer, product, variant and revision (errata).
pub const IIDR: usize = 0x18;
/// SMMU_AIDR: architecture version (ArchMajorRev \[7:4\], ArchMinorRev \[3:0\]).
pub const AIDR: usize = 0x1C;
/// SMMU_CR0: the enables ([`cr0`]); every write is acknowledged in [`CR0ACK`].
pub const CR0: usize = 0x20;
/// SMMU_CR0ACK: reads back the CR0 value once it took effect.
pub const CR0ACK: usize = 0x24;
/// SMMU_CR1: cacheability and shareability of table and queue accesses ([`cr1`]).
pub const CR1: usize = 0x28;
/// SMMU_CR2: PTM, RECINVSID, E2H ([`cr2`]).
pub const CR2: usize = 0x2C;
/// SMMU_STATUSR: DORMANT, bit 0.
pub const STATUSR: usize = 0x40;
/// SMMU_GBPA: what incoming transactions do while SMMUEN = 0 ([`gbpa`]).
pub const GBPA: usize = 0x44;
/// SMMU_AGBPA: IMPLEMENTATION DEFINED attribute override (not used).
pub const AGBPA: usize = 0x48;
/// SMMU_IRQ_CTRL: wired/MSI interrupt enables ([`irq_ctrl`]).
pub const IRQ_CTRL: usize = 0x50;
/// SMMU_IRQ_CTRLACK: reads back IRQ_CTRL once it took effect.
pub const IRQ_CTRLACK: usize = 0x54;
/// SMMU_GERROR: global errors, each active while it differs from GERRORN
/// (see `global_error`).
pub const GERROR: usize = 0x60;
/// SMMU_GERRORN: software toggles a bit to acknowledge the error of the same bit.
pub const GERRORN: usize = 0x64;
/// SMMU_GERROR_IRQ_CFG0 (64 bits): MSI address for GERROR; 0 for wired interrupts.
pub const GERROR_IRQ_CFG0: usize = 0x68;
/// SMMU_GERROR_IRQ_CFG1: MSI data.
pub const GERROR_IRQ_CFG1: usize = 0x70;
/// SMMU_GERROR_IRQ_CFG2: MSI attributes.
pub const GERROR_IRQ_CFG2: usize = 0x74;
/// SMMU_STRTAB_BASE (64 bits): RA \[62\], ADDR \[51:6\] (`stream_table`).
pub const STRTAB_BASE: usize = 0x80;
/// SMMU_STRTAB_BASE_CFG: FMT \[17:16\], SPLIT \[10:6\], LOG2SIZE \[5:0\] (`stream_table`).
pub const STRTAB_BASE_CFG: usize = 0x88;
/// SMMU_CMDQ_BASE (64 bits): RA \[62\], ADDR \[51:5\], LOG2SIZE \[4:0\] (`queue`).
pub const CMDQ_BASE: usize = 0x90;
/// SMMU_CMDQ_PROD: WR (wrap + index), written by software.
pub const CMDQ_PROD: usize = 0x98;
/// SMMU_CMDQ_CONS: RD (wrap + index) and ERR \[30:24\], written by the SMMU.
pub const CMDQ_CONS: usize = 0x9C;
/// SMMU_EVENTQ_BASE (64 bits): WA \[62\], ADDR \[51:5\], LOG2SIZE \[4:0\] (`queue`).
pub const EVTQ_BASE: usize = 0xA0;
/// SMMU_EVENTQ_IRQ_CFG0 (64 bits): MSI address for the event queue; 0 for wired.
pub const EVTQ_IRQ_CFG0: usize = 0xB0;
/// SMMU_EVENTQ_IRQ_CFG1: MSI data.
pub const EVTQ_IRQ_CFG1: usize = 0xB8;
/// SMMU_EVENTQ_IRQ_CFG2: MSI attributes.
pub const EVTQ_IRQ_CFG2: usize = 0xBC;

// ---- Page 1 -------------------------------------------------------------------------

/// Page 1 starts 64 KiB above the base; the SMMU's register frame is 128 KiB.
pub const PAGE1: usize = 0x1_0000;
/// SMMU_EVENTQ_PROD (page 1): WR (wrap + index) and OVFLG \[31\], written by the SMMU.
/// The page-0 offset 0xA8 is not it (Linux's PAGE0_REGS_ONLY quirk is for one broken
/// part; QEMU happens to alias both pages).
pub const EVTQ_PROD: usize = PAGE1 + 0xA8;
/// SMMU_EVENTQ_CONS (page 1): RD (wrap + index) and OVACKFLG \[31\], written by software.
pub const EVTQ_CONS: usize = PAGE1 + 0xAC;
/// The size of the register frame the EL2 layer maps (pages 0 and 1).
pub const FRAME_BYTES: usize = 2 * PAGE1;

/// SMMU_CR0 bits.
pub mod cr0 {
    /// Translation on; while 0, SMMU_GBPA decides (abort, with [`super::gbpa::ABORT`]).
    pub const SMMUEN: u32 = 1 << 0;
    /// PRI queue enable (never set: no PRI).
    pub const PRIQEN: u32 = 1 << 1;
    /// Event queue enable.
    pub const EVTQEN: u32 = 1 << 2;
    /// Command queue enable.
    pub const CMDQEN: u32 = 1 << 3;
    /// ATS check (never set: no ATS).
    pub const ATSCHK: u32 = 1 << 4;
}

/// SMMU_CR1 fields: how the SMMU accesses the stream table and the queues.
pub mod cr1 {
    /// Shareability Inner, for the SH fields.
    pub const SH_INNER: u32 = 0b11;
    /// Write-back cacheable, for the OC/IC fields (CR1's own encoding: 0 NC, 1 WB, 2 WT).
    pub const CACHE_WB: u32 = 0b01;
    /// TABLE_SH \[11:10\].
    pub const TABLE_SH_SHIFT: u32 = 10;
    /// TABLE_OC \[9:8\].
    pub const TABLE_OC_SHIFT: u32 = 8;
    /// TABLE_IC \[7:6\].
    pub const TABLE_IC_SHIFT: u32 = 6;
    /// QUEUE_SH \[5:4\].
    pub const QUEUE_SH_SHIFT: u32 = 4;
    /// QUEUE_OC \[3:2\].
    pub const QUEUE_OC_SHIFT: u32 = 2;
    /// QUEUE_IC \[1:0\].
    pub const QUEUE_IC_SHIFT: u32 = 0;
    /// Tables and queues inner-shareable write-back, as the CPU writes them (Linux's
    /// `arm_smmu_device_reset` uses the same). Only coherent (IDR0.COHACC) SMMUs are
    /// used, so no cache maintenance is needed for STEs, commands or events.
    pub const COHERENT_WB: u32 = (SH_INNER << TABLE_SH_SHIFT)
        | (CACHE_WB << TABLE_OC_SHIFT)
        | (CACHE_WB << TABLE_IC_SHIFT)
        | (SH_INNER << QUEUE_SH_SHIFT)
        | (CACHE_WB << QUEUE_OC_SHIFT)
        | (CACHE_WB << QUEUE_IC_SHIFT);
}

/// SMMU_CR2 bits.
pub mod cr2 {
    /// EL2-E2H translation regime (never: the hypervisor does not use stage 1 at all).
    pub const E2H: u32 = 1 << 0;
    /// Record C_BAD_STREAMID events for StreamIDs beyond the stream table, so a device
    /// that nobody assigned shows up in the log.
    pub const RECINVSID: u32 = 1 << 1;
    /// Private TLB maintenance: the SMMU ignores the CPUs' broadcast TLBIs. Every
    /// stage-2 change is mirrored by explicit commands instead, so broadcast maintenance
    /// (IDR0.BTM) would only double the work; Linux sets it too.
    pub const PTM: u32 = 1 << 2;
    /// The value the hypervisor writes.
    pub const VALUE: u32 = PTM | RECINVSID;
}

/// SMMU_GBPA bits (the other fields override attributes in bypass, never used).
pub mod gbpa {
    /// Abort incoming transactions while SMMUEN = 0 (instead of letting them bypass).
    pub const ABORT: u32 = 1 << 20;
    /// Set with a write; the SMMU clears it when the write took effect. A write without
    /// it is ignored (SMMUv3.2 and later make that the only behaviour).
    pub const UPDATE: u32 = 1 << 31;
}

/// SMMU_IRQ_CTRL bits.
pub mod irq_ctrl {
    /// Global error interrupt.
    pub const GERROR_IRQEN: u32 = 1 << 0;
    /// PRI queue interrupt (never: no PRI).
    pub const PRIQ_IRQEN: u32 = 1 << 1;
    /// Event queue interrupt.
    pub const EVTQ_IRQEN: u32 = 1 << 2;
}

// ---- ID register fields (IHI 0070 "SMMU_IDR0" .. "SMMU_IDR5") ------------------------

const IDR0_S2P: u32 = 1 << 0;
const IDR0_S1P: u32 = 1 << 1;
const IDR0_TTF_SHIFT: u32 = 2;
const IDR0_COHACC: u32 = 1 << 4;
const IDR0_BTM: u32 = 1 << 5;
const IDR0_HTTU_SHIFT: u32 = 6;
const IDR0_HYP: u32 = 1 << 9;
const IDR0_ATS: u32 = 1 << 10;
const IDR0_MSI: u32 = 1 << 13;
const IDR0_SEV: u32 = 1 << 14;
const IDR0_PRI: u32 = 1 << 16;
const IDR0_VMID16: u32 = 1 << 18;
const IDR0_TTENDIAN_SHIFT: u32 = 21;
const IDR0_STALL_MODEL_SHIFT: u32 = 24;
const IDR0_ST_LEVEL_SHIFT: u32 = 27;

const IDR1_SIDSIZE_MASK: u32 = 0x3f;
const IDR1_SSIDSIZE_SHIFT: u32 = 6;
const IDR1_EVENTQS_SHIFT: u32 = 16;
const IDR1_CMDQS_SHIFT: u32 = 21;
const IDR1_REL: u32 = 1 << 28;
const IDR1_QUEUES_PRESET: u32 = 1 << 29;
const IDR1_TABLES_PRESET: u32 = 1 << 30;

const IDR3_RIL: u32 = 1 << 10;
const IDR3_BBML_SHIFT: u32 = 11;

const IDR5_OAS_MASK: u32 = 0b111;
const IDR5_GRAN4K: u32 = 1 << 4;
const IDR5_GRAN16K: u32 = 1 << 5;
const IDR5_GRAN64K: u32 = 1 << 6;

/// Output address sizes by IDR5.OAS (and STE.S2PS) encoding: the same table as the
/// CPU's PARange. 0b111 is reserved.
const OAS_BITS: [u8; 7] = [32, 36, 40, 42, 44, 48, 52];

/// The largest queue the architecture allows: IDR1.CMDQS/EVENTQS are at most 19.
pub const MAX_QUEUE_LOG2: u8 = 19;

/// IDR0.TTENDIAN: the endianness of translation-table walks the SMMU supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableEndianness {
    /// 0b00: both, chosen per STE (S2ENDI).
    Mixed,
    /// 0b01: reserved.
    Reserved,
    /// 0b10: little-endian only.
    Little,
    /// 0b11: big-endian only.
    Big,
}

/// IDR0.STALL_MODEL: what a faulting transaction does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StallModel {
    /// 0b00: stall and terminate both supported (STE.S2S chooses; we choose terminate).
    StallAndTerminate,
    /// 0b01: terminate only (QEMU).
    TerminateOnly,
    /// 0b10: stall forced: faulting transactions wait for CMD_RESUME.
    StallForced,
    /// 0b11: reserved.
    Reserved,
}

/// What one SMMU implements, decoded from SMMU_IDR0, IDR1, IDR5 (and IDR3 with
/// [`SmmuFeatures::with_idr3`]). Decoding never fails: reserved encodings are kept as
/// such and [`SmmuFeatures::check`] refuses them where they matter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmmuFeatures {
    /// IDR0.S2P: stage-2 translation. Required.
    pub stage2: bool,
    /// IDR0.S1P: stage-1 translation (not used).
    pub stage1: bool,
    /// IDR0.TTF\[1\]: AArch64 translation tables. Required.
    pub aarch64_tables: bool,
    /// IDR0.TTF\[0\]: AArch32 LPAE tables (only widens IAS to at least 40 bits).
    pub aarch32_tables: bool,
    /// IDR0.COHACC: table walks, STE fetches and queue accesses are coherent with the
    /// CPUs' caches. Required: the page-table engine writes descriptors with plain
    /// cacheable stores and never cleans them to memory.
    pub coherent: bool,
    /// IDR0.BTM: the SMMU can take part in broadcast TLB maintenance (CR2.PTM turns
    /// that off; see [`cr2::PTM`]).
    pub broadcast_tlb_maintenance: bool,
    /// IDR0.HTTU: hardware Access flag (1) and dirty state (2) updates; never enabled
    /// (the CPU's VTCR_EL2.HA/HD stay 0).
    pub httu: u8,
    /// IDR0.HYP: EL2 stream worlds exist (then `CMD_TLBI_EL2_ALL` is valid at init).
    pub hyp: bool,
    /// IDR0.ATS.
    pub ats: bool,
    /// IDR0.MSI: MSIs for GERROR, event queue and CMD_SYNC.
    pub msi: bool,
    /// IDR0.SEV: the SMMU sends an event (wakes WFE) on CMD_SYNC with CS = SIG_SEV and
    /// when queues become non-full.
    pub sev: bool,
    /// IDR0.PRI.
    pub pri: bool,
    /// IDR0.VMID16: 16-bit VMIDs; otherwise STE.S2VMID\[15:8\] is RES0 and VMIDs are 8 bits.
    pub vmid16: bool,
    /// IDR0.TTENDIAN.
    pub endianness: TableEndianness,
    /// IDR0.STALL_MODEL.
    pub stall_model: StallModel,
    /// IDR0.ST_LEVEL == 0b01: two-level stream tables are supported.
    pub two_level_stream_table: bool,
    /// IDR1.SIDSIZE: StreamIDs have this many bits.
    pub sid_bits: u8,
    /// IDR1.SSIDSIZE: SubstreamIDs have this many bits (not used).
    pub ssid_bits: u8,
    /// IDR1.CMDQS: the command queue holds at most 2^this entries.
    pub cmdq_max_log2: u8,
    /// IDR1.EVENTQS: the event queue holds at most 2^this entries.
    pub evtq_max_log2: u8,
    /// IDR1.TABLES_PRESET / QUEUES_PRESET / REL: an embedded SMMU whose stream table or
    /// queues sit at fixed addresses. Not supported (Linux refuses them too).
    pub preset: bool,
    /// IDR5.OAS, the raw encoding (see [`SmmuFeatures::oas_bits`]).
    pub oas_encoding: u8,
    /// IDR5.GRAN4K. Required: the stage-2 tables use the 4 KiB granule.
    pub granule_4k: bool,
    /// IDR5.GRAN16K.
    pub granule_16k: bool,
    /// IDR5.GRAN64K.
    pub granule_64k: bool,
    /// IDR3.RIL: CMD_TLBI_S2_IPA takes a range (TG/NUM/SCALE). False until
    /// [`SmmuFeatures::with_idr3`].
    pub range_invalidation: bool,
    /// IDR3.BBML: 0, 1 or 2, the SMMU's break-before-make level (FEAT_BBM's). 0 until
    /// [`SmmuFeatures::with_idr3`].
    pub bbml: u8,
}

const fn bit(value: u32, mask: u32) -> bool {
    value & mask != 0
}

const fn field(value: u32, shift: u32, width: u32) -> u8 {
    ((value >> shift) & ((1 << width) - 1)) as u8
}

impl SmmuFeatures {
    /// Decodes SMMU_IDR0, SMMU_IDR1 and SMMU_IDR5.
    pub const fn decode(idr0: u32, idr1: u32, idr5: u32) -> Self {
        let ttf = field(idr0, IDR0_TTF_SHIFT, 2);
        SmmuFeatures {
            stage2: bit(idr0, IDR0_S2P),
            stage1: bit(idr0, IDR0_S1P),
            aarch64_tables: ttf & 0b10 != 0,
            aarch32_tables: ttf & 0b01 != 0,
            coherent: bit(idr0, IDR0_COHACC),
            broadcast_tlb_maintenance: bit(idr0, IDR0_BTM),
            httu: field(idr0, IDR0_HTTU_SHIFT, 2),
            hyp: bit(idr0, IDR0_HYP),
            ats: bit(idr0, IDR0_ATS),
            msi: bit(idr0, IDR0_MSI),
            sev: bit(idr0, IDR0_SEV),
            pri: bit(idr0, IDR0_PRI),
            vmid16: bit(idr0, IDR0_VMID16),
            endianness: match field(idr0, IDR0_TTENDIAN_SHIFT, 2) {
                0b00 => TableEndianness::Mixed,
                0b01 => TableEndianness::Reserved,
                0b10 => TableEndianness::Little,
                _ => TableEndianness::Big,
            },
            stall_model: match field(idr0, IDR0_STALL_MODEL_SHIFT, 2) {
                0b00 => StallModel::StallAndTerminate,
                0b01 => StallModel::TerminateOnly,
                0b10 => StallModel::StallForced,
                _ => StallModel::Reserved,
            },
            two_level_stream_table: field(idr0, IDR0_ST_LEVEL_SHIFT, 2) == 0b01,
            sid_bits: (idr1 & IDR1_SIDSIZE_MASK) as u8,
            ssid_bits: field(idr1, IDR1_SSIDSIZE_SHIFT, 5),
            cmdq_max_log2: field(idr1, IDR1_CMDQS_SHIFT, 5),
            evtq_max_log2: field(idr1, IDR1_EVENTQS_SHIFT, 5),
            preset: bit(idr1, IDR1_TABLES_PRESET | IDR1_QUEUES_PRESET | IDR1_REL),
            oas_encoding: (idr5 & IDR5_OAS_MASK) as u8,
            granule_4k: bit(idr5, IDR5_GRAN4K),
            granule_16k: bit(idr5, IDR5_GRAN16K),
            granule_64k: bit(idr5, IDR5_GRAN64K),
            range_invalidation: false,
            bbml: 0,
        }
    }

    /// Adds what SMMU_IDR3 says: RIL \[10\] and BBML \[12:11\].
    pub const fn with_idr3(mut self, idr3: u32) -> Self {
        self.range_invalidation = bit(idr3, IDR3_RIL);
        self.bbml = field(idr3, IDR3_BBML_SHIFT, 2);
        self
    }

    /// The output address size in bits, `None` for the reserved encoding 0b111.
    pub const fn oas_bits(&self) -> Option<u8> {
        if (self.oas_encoding as usize) < OAS_BITS.len() {
            Some(OAS_BITS[self.oas_encoding as usize])
        } else {
            None
        }
    }

    /// The largest stage-2 input (IPA) size, IHI 0070 "Address sizes":
    /// IAS = MAX(TTF\[0\] ? 40 : 0, TTF\[1\] ? OAS : 0).
    pub const fn ias_bits(&self) -> Option<u8> {
        let Some(oas) = self.oas_bits() else {
            return None;
        };
        let aarch64 = if self.aarch64_tables { oas } else { 0 };
        let aarch32 = if self.aarch32_tables { 40 } else { 0 };
        Some(if aarch64 > aarch32 { aarch64 } else { aarch32 })
    }

    /// VMID width: 16 with IDR0.VMID16, else 8.
    pub const fn vmid_bits(&self) -> u8 {
        if self.vmid16 { 16 } else { 8 }
    }

    /// Whether a block may change size in place on live tables, as the CPU does under
    /// FEAT_BBM level 2 (`pgtable::SplitStrategy::Bbml2`). The SMMU walks the same
    /// tables, so unless IDR3.BBML says level 2 the engine must use break-before-make,
    /// or the SMMU may see conflicting TLB entries (F_TLB_CONFLICT) or a mix of the old
    /// and new entry.
    pub const fn supports_bbml2(&self) -> bool {
        self.bbml >= 2
    }

    /// Every reason this SMMU cannot give a guest with `needs` the guest's own stage 2
    /// (empty if it can), in the order [`check`](Self::check) reports them.
    pub fn incompatibilities(&self, needs: &Stage2Needs) -> ArrayVec<Incompatibility, 16> {
        let mut found = ArrayVec::new();
        let mut note = |reason| {
            // 16 places and at most 12 reasons at once: never full.
            let _ = found.try_push(reason);
        };
        if self.preset {
            note(Incompatibility::PresetTablesOrQueues);
        }
        if !self.stage2 {
            note(Incompatibility::NoStage2);
        }
        if !self.aarch64_tables {
            note(Incompatibility::NoAarch64Tables);
        }
        if !self.granule_4k {
            note(Incompatibility::No4kGranule);
        }
        match self.endianness {
            TableEndianness::Mixed | TableEndianness::Little => {}
            TableEndianness::Big => note(Incompatibility::BigEndianWalksOnly),
            TableEndianness::Reserved => note(Incompatibility::ReservedEndianness),
        }
        if !self.coherent {
            note(Incompatibility::NotCoherent);
        }
        if matches!(self.stall_model, StallModel::StallForced) {
            note(Incompatibility::ForcedStall);
        }
        if self.cmdq_max_log2 < 1 {
            note(Incompatibility::CommandQueueTooSmall);
        }
        match (self.oas_bits(), self.ias_bits()) {
            (Some(oas), Some(ias)) => {
                if needs.output_bits > oas {
                    note(Incompatibility::OutputAddressTooSmall {
                        oas_bits: oas,
                        needed_bits: needs.output_bits,
                    });
                }
                if needs.ipa_bits > ias {
                    note(Incompatibility::InputAddressTooSmall {
                        ias_bits: ias,
                        ipa_bits: needs.ipa_bits,
                    });
                }
            }
            _ => note(Incompatibility::ReservedOas {
                encoding: self.oas_encoding,
            }),
        }
        if u32::from(needs.vmid) >> self.vmid_bits() != 0 {
            note(Incompatibility::VmidTooWide {
                vmid: needs.vmid,
                vmid_bits: self.vmid_bits(),
            });
        }
        if let Some(sid) = needs.highest_stream_id {
            // SIDSIZE is 6 bits wide: 32 and more means every u32 StreamID fits.
            if self.sid_bits < 32 && sid >> self.sid_bits != 0 {
                note(Incompatibility::StreamIdTooLarge {
                    stream_id: sid,
                    sid_bits: self.sid_bits,
                });
            }
        }
        found
    }

    /// Whether this SMMU can translate a guest's devices through the guest's own stage-2
    /// tables; the first reason it cannot otherwise.
    ///
    /// # Errors
    /// The first of [`incompatibilities`](Self::incompatibilities).
    pub fn check(&self, needs: &Stage2Needs) -> Result<(), Incompatibility> {
        match self.incompatibilities(needs).first() {
            Some(&reason) => Err(reason),
            None => Ok(()),
        }
    }
}

/// The number of address bits every address below `end` needs (0 for `end` 0 or 1).
pub const fn address_bits(end: u64) -> u8 {
    match end {
        0 | 1 => 0,
        end => (64 - (end - 1).leading_zeros()) as u8,
    }
}

/// What a guest's stage 2 asks of an SMMU that is to walk it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage2Needs {
    /// IPA bits (64 - VTCR_EL2.T0SZ).
    pub ipa_bits: u8,
    /// Bits of the highest physical address the walk reads or outputs: the root and
    /// every table page, the guest's RAM and passthrough MMIO ([`address_bits`] of the
    /// end).
    pub output_bits: u8,
    /// The guest's VMID (VTTBR_EL2.VMID).
    pub vmid: u16,
    /// The highest StreamID assigned to the guest, if any.
    pub highest_stream_id: Option<u32>,
}

/// Why an SMMU cannot serve the hypervisor's guests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incompatibility {
    /// IDR1.TABLES_PRESET, QUEUES_PRESET or REL: fixed-address tables or queues.
    PresetTablesOrQueues,
    /// IDR0.S2P = 0: no stage 2 at all (QEMU's default `arm-smmuv3.stage=1`).
    NoStage2,
    /// IDR0.TTF has no AArch64 format.
    NoAarch64Tables,
    /// IDR5.GRAN4K = 0: the CPU's tables use the 4 KiB granule.
    No4kGranule,
    /// IDR0.TTENDIAN = big-endian only: the tables are little-endian.
    BigEndianWalksOnly,
    /// IDR0.TTENDIAN = 0b01, reserved.
    ReservedEndianness,
    /// IDR0.COHACC = 0: the SMMU would read stale tables, STEs and commands from memory
    /// that the CPU wrote only into its caches.
    NotCoherent,
    /// IDR0.STALL_MODEL = forced stall: faulting DMA would wait for a CMD_RESUME the
    /// hypervisor never sends.
    ForcedStall,
    /// IDR1.CMDQS = 0: a one-entry queue cannot hold a command and its CMD_SYNC.
    CommandQueueTooSmall,
    /// IDR5.OAS = 0b111, reserved: no known output size.
    ReservedOas {
        /// The raw field.
        encoding: u8,
    },
    /// The SMMU cannot output (or fetch tables from) every address the stage 2 uses.
    OutputAddressTooSmall {
        /// IDR5.OAS in bits.
        oas_bits: u8,
        /// What the guest's tables, RAM and MMIO need.
        needed_bits: u8,
    },
    /// The guest's IPA space is larger than the SMMU's stage-2 input (IAS).
    InputAddressTooSmall {
        /// The SMMU's IAS.
        ias_bits: u8,
        /// The guest's IPA bits.
        ipa_bits: u8,
    },
    /// The guest's VMID does not fit the SMMU's VMID width (IDR0.VMID16 = 0).
    VmidTooWide {
        /// The VMID.
        vmid: u16,
        /// The SMMU's VMID bits.
        vmid_bits: u8,
    },
    /// An assigned StreamID is beyond IDR1.SIDSIZE.
    StreamIdTooLarge {
        /// The StreamID.
        stream_id: u32,
        /// IDR1.SIDSIZE.
        sid_bits: u8,
    },
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::PresetTablesOrQueues => {
                f.write_str("SMMU has preset (fixed-address) tables or queues")
            }
            Self::NoStage2 => f.write_str("SMMU has no stage-2 translation (IDR0.S2P = 0)"),
            Self::NoAarch64Tables => f.write_str("SMMU cannot walk AArch64 tables (IDR0.TTF)"),
            Self::No4kGranule => f.write_str("SMMU has no 4 KiB granule (IDR5.GRAN4K = 0)"),
            Self::BigEndianWalksOnly => {
                f.write_str("SMMU walks big-endian tables only (IDR0.TTENDIAN)")
            }
            Self::ReservedEndianness => f.write_str("SMMU reports a reserved IDR0.TTENDIAN"),
            Self::NotCoherent => f.write_str(
                "SMMU table walks are not coherent with the CPU caches (IDR0.COHACC = 0)",
            ),
            Self::ForcedStall => {
                f.write_str("SMMU forces the stall fault model (IDR0.STALL_MODEL = 0b10)")
            }
            Self::CommandQueueTooSmall => f.write_str("SMMU command queue has one entry"),
            Self::ReservedOas { encoding } => {
                write!(f, "SMMU reports a reserved IDR5.OAS ({encoding:#b})")
            }
            Self::OutputAddressTooSmall {
                oas_bits,
                needed_bits,
            } => write!(
                f,
                "SMMU outputs {oas_bits}-bit addresses, the guest's stage 2 needs {needed_bits}"
            ),
            Self::InputAddressTooSmall { ias_bits, ipa_bits } => write!(
                f,
                "SMMU takes {ias_bits}-bit IPAs, the guest has {ipa_bits}"
            ),
            Self::VmidTooWide { vmid, vmid_bits } => {
                write!(f, "VMID {vmid} does not fit the SMMU's {vmid_bits} bits")
            }
            Self::StreamIdTooLarge {
                stream_id,
                sid_bits,
            } => write!(
                f,
                "StreamID {stream_id:#x} is beyond the SMMU's {sid_bits} bits"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU 10's SMMUv3 with `-global arm-smmuv3.stage=2` (`smmuv3_init_regs`): S2P,
    /// TTF AArch64, COHACC, ASID16, VMID16, TTENDIAN LE, STALL_MODEL terminate-only,
    /// TERM_MODEL, ST_LEVEL 2-level; SIDSIZE 16, EVENTQS 19, CMDQS 19; RIL, HAD, BBML 2;
    /// GRAN4K/16K/64K, OAS 44 bits.
    const QEMU_IDR0: u32 = 1
        | (0b10 << 2)
        | (1 << 4)
        | (1 << 12)
        | (1 << 18)
        | (0b10 << 21)
        | (0b01 << 24)
        | (1 << 26)
        | (0b01 << 27);
    const QEMU_IDR1: u32 = 16 | (19 << 16) | (19 << 21);
    const QEMU_IDR3: u32 = (1 << 10) | (1 << 2) | (2 << 11);
    const QEMU_IDR5: u32 = (1 << 4) | (1 << 5) | (1 << 6) | 4;

    fn qemu() -> SmmuFeatures {
        SmmuFeatures::decode(QEMU_IDR0, QEMU_IDR1, QEMU_IDR5).with_idr3(QEMU_IDR3)
    }

    fn needs() -> Stage2Needs {
        Stage2Needs {
            ipa_bits: 40,
            output_bits: 40,
            vmid: 1,
            highest_stream_id: Some(0x10),
        }
    }

    #[test]
    fn offsets_match_the_register_map() {
        assert_eq!(
            (IDR0, IDR1, IDR3, IDR5, IIDR, AIDR),
            (0, 4, 0xc, 0x14, 0x18, 0x1c)
        );
        assert_eq!((CR0, CR0ACK, CR1, CR2), (0x20, 0x24, 0x28, 0x2c));
        assert_eq!(
            (STATUSR, GBPA, IRQ_CTRL, IRQ_CTRLACK),
            (0x40, 0x44, 0x50, 0x54)
        );
        assert_eq!(
            (GERROR, GERRORN, STRTAB_BASE, STRTAB_BASE_CFG),
            (0x60, 0x64, 0x80, 0x88)
        );
        assert_eq!(
            (CMDQ_BASE, CMDQ_PROD, CMDQ_CONS, EVTQ_BASE),
            (0x90, 0x98, 0x9c, 0xa0)
        );
        assert_eq!((EVTQ_PROD, EVTQ_CONS), (0x100A8, 0x100AC));
    }

    #[test]
    fn control_values() {
        // Linux: CR1 = ISH/WB/WB for tables and queues; CR2 = PTM | RECINVSID.
        assert_eq!(cr1::COHERENT_WB, 0b11_01_01_11_01_01);
        assert_eq!(cr2::VALUE, 0b110);
        assert_eq!(cr0::CMDQEN | cr0::EVTQEN | cr0::SMMUEN, 0b1101);
        assert_eq!(gbpa::ABORT | gbpa::UPDATE, 0x8010_0000);
    }

    #[test]
    fn decodes_qemu_stage2() {
        let f = qemu();
        assert!(f.stage2 && !f.stage1 && f.aarch64_tables && !f.aarch32_tables);
        assert!(f.coherent && f.vmid16 && f.two_level_stream_table);
        assert_eq!(f.endianness, TableEndianness::Little);
        assert_eq!(f.stall_model, StallModel::TerminateOnly);
        assert_eq!((f.sid_bits, f.cmdq_max_log2, f.evtq_max_log2), (16, 19, 19));
        assert_eq!(
            (f.oas_bits(), f.ias_bits(), f.vmid_bits()),
            (Some(44), Some(44), 16)
        );
        assert!(f.granule_4k && f.granule_16k && f.granule_64k);
        assert!(f.range_invalidation && f.supports_bbml2());
        assert!(!f.preset && !f.broadcast_tlb_maintenance && f.httu == 0);
        assert_eq!(f.check(&needs()), Ok(()));
    }

    #[test]
    fn qemu_default_stage1_is_refused() {
        // `arm-smmuv3.stage=1` (the default) advertises S1P instead of S2P.
        let f = SmmuFeatures::decode((QEMU_IDR0 & !1) | 2, QEMU_IDR1, QEMU_IDR5);
        assert_eq!(f.check(&needs()), Err(Incompatibility::NoStage2));
    }

    #[test]
    fn each_field_is_read_from_its_bit() {
        let f = SmmuFeatures::decode(
            1 << 5 | 1 << 9 | 1 << 10 | 1 << 13 | 1 << 14 | 1 << 16,
            0,
            0,
        );
        assert!(f.broadcast_tlb_maintenance && f.hyp && f.ats && f.msi && f.sev && f.pri);
        assert!(!f.stage2 && !f.coherent && !f.vmid16);
        assert_eq!(SmmuFeatures::decode(0b11 << 6, 0, 0).httu, 3);
        assert!(SmmuFeatures::decode(0b01 << 2, 0, 0).aarch32_tables);
        assert_eq!(
            SmmuFeatures::decode(0b11 << 21, 0, 0).endianness,
            TableEndianness::Big
        );
        assert_eq!(
            SmmuFeatures::decode(0b00 << 21, 0, 0).endianness,
            TableEndianness::Mixed
        );
        assert_eq!(
            SmmuFeatures::decode(0b10 << 24, 0, 0).stall_model,
            StallModel::StallForced
        );
        assert!(!SmmuFeatures::decode(0b10 << 27, 0, 0).two_level_stream_table);
        let f = SmmuFeatures::decode(0, 0x3f | 0x1f << 6 | 7 << 16 | 9 << 21, 0);
        assert_eq!(
            (f.sid_bits, f.ssid_bits, f.evtq_max_log2, f.cmdq_max_log2),
            (63, 31, 7, 9)
        );
        for preset in [1 << 28, 1 << 29, 1 << 30] {
            assert!(SmmuFeatures::decode(0, preset, 0).preset);
        }
        for (encoding, bits) in OAS_BITS.iter().enumerate() {
            assert_eq!(
                SmmuFeatures::decode(0, 0, encoding as u32).oas_bits(),
                Some(*bits)
            );
        }
        assert_eq!(SmmuFeatures::decode(0, 0, 7).oas_bits(), None);
        let f = SmmuFeatures::decode(0, 0, 0).with_idr3(1 << 11);
        assert_eq!(
            (f.bbml, f.supports_bbml2(), f.range_invalidation),
            (1, false, false)
        );
    }

    #[test]
    fn aarch32_tables_give_at_least_40_bit_ias() {
        let f = SmmuFeatures::decode(0b11 << 2, 0, 0); // OAS 32 bits
        assert_eq!(f.ias_bits(), Some(40));
    }

    #[test]
    fn every_reason_is_reported() {
        let f = SmmuFeatures::decode(0b01 << 21 | 0b10 << 24, 1 << 30 | 2, 7);
        let reasons = f.incompatibilities(&needs());
        assert_eq!(
            reasons.as_slice(),
            &[
                Incompatibility::PresetTablesOrQueues,
                Incompatibility::NoStage2,
                Incompatibility::NoAarch64Tables,
                Incompatibility::No4kGranule,
                Incompatibility::ReservedEndianness,
                Incompatibility::NotCoherent,
                Incompatibility::ForcedStall,
                Incompatibility::CommandQueueTooSmall,
                Incompatibility::ReservedOas { encoding: 7 },
                Incompatibility::StreamIdTooLarge {
                    stream_id: 0x10,
                    sid_bits: 2
                },
            ]
        );
        for reason in reasons {
            assert!(!alloc::format!("{reason}").is_empty());
        }
    }

    #[test]
    fn sizes_and_vmid_are_checked_against_the_guest() {
        let f = qemu();
        let big = Stage2Needs {
            ipa_bits: 48,
            output_bits: 45,
            vmid: 1,
            highest_stream_id: None,
        };
        assert_eq!(
            f.incompatibilities(&big).as_slice(),
            &[
                Incompatibility::OutputAddressTooSmall {
                    oas_bits: 44,
                    needed_bits: 45
                },
                Incompatibility::InputAddressTooSmall {
                    ias_bits: 44,
                    ipa_bits: 48
                },
            ]
        );
        let narrow = SmmuFeatures::decode(QEMU_IDR0 & !(1 << 18), QEMU_IDR1, QEMU_IDR5);
        let vmid = Stage2Needs {
            vmid: 256,
            ..needs()
        };
        assert_eq!(
            narrow.check(&vmid),
            Err(Incompatibility::VmidTooWide {
                vmid: 256,
                vmid_bits: 8
            })
        );
        assert_eq!(narrow.check(&needs()), Ok(()));
        let sid = Stage2Needs {
            highest_stream_id: Some(1 << 16),
            ..needs()
        };
        assert_eq!(
            f.check(&sid),
            Err(Incompatibility::StreamIdTooLarge {
                stream_id: 1 << 16,
                sid_bits: 16
            })
        );
    }

    #[test]
    fn address_bits_of_ends() {
        assert_eq!(address_bits(0), 0);
        assert_eq!(address_bits(1 << 40), 40);
        assert_eq!(address_bits((1 << 40) + 1), 41);
        assert_eq!(address_bits(u64::MAX), 64);
    }

    proptest::proptest! {
        #[test]
        fn decoding_any_id_registers_never_panics(idr0: u32, idr1: u32, idr3: u32, idr5: u32, vmid: u16, sid: u32, ipa in 0u8..=64, out in 0u8..=64) {
            let f = SmmuFeatures::decode(idr0, idr1, idr5).with_idr3(idr3);
            let needs = Stage2Needs { ipa_bits: ipa, output_bits: out, vmid, highest_stream_id: Some(sid) };
            let reasons = f.incompatibilities(&needs);
            proptest::prop_assert_eq!(f.check(&needs).is_ok(), reasons.is_empty());
        }
    }
}
