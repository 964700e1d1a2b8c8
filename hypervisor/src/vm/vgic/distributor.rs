//! The emulated distributor frame (IHI 0069 §12.8 "The GIC Distributor register map" and
//! §12.9, the GICD_* register descriptions), as a guest with a single Security state
//! (GICD_CTLR.DS = 1) and affinity routing (ARE = 1) sees it.
//!
//! | offset | register | here |
//! |---|---|---|
//! | 0x0000 | GICD_CTLR | EnableGrp0 [0], EnableGrp1 [1] writable; ARE [4] and DS [6] RAO/WI; RWP [31] 0 |
//! | 0x0004 | GICD_TYPER | ITLinesNumber from the highest owned SPI, IDbits 15, A3V, RSS; no LPIs, MBIS, ESPI, 1-of-N supported (No1N 0); CPUNumber 0 (ARE = 1), SecurityExtn 0 (DS = 1) |
//! | 0x0008 | GICD_IIDR | [`IIDR`] |
//! | 0x000c | GICD_TYPER2 | 0 (no vSGIs, no vPE IDs) |
//! | 0x0010 | GICD_STATUSR | RAZ/WI |
//! | 0x0040..0x005c | GICD_SETSPI_NSR, CLRSPI_NSR, SETSPI_SR, CLRSPI_SR | RAZ/WI (MBIS = 0) |
//! | 0x0080..0x03fc | IGROUPR, IS/ICENABLER, IS/ICPENDR, IS/ICACTIVER | per SPI; INTIDs 0..32 RAZ/WI |
//! | 0x0400..0x07fc | GICD_IPRIORITYR | byte or word; INTIDs 0..32 RAZ/WI |
//! | 0x0800..0x0bfc | GICD_ITARGETSR | RAZ/WI (ARE = 1), byte or word |
//! | 0x0c00..0x0cfc | GICD_ICFGR | per SPI; INTIDs 0..32 RAZ/WI |
//! | 0x0d00..0x0d7c | GICD_IGRPMODR | RAZ/WI (DS = 1) |
//! | 0x0e00..0x0efc | GICD_NSACR | RAZ/WI (DS = 1) |
//! | 0x0f00 | GICD_SGIR | WI, reads 0 (ARE = 1) |
//! | 0x0f10..0x0f2c | GICD_CPENDSGIR, SPENDSGIR | RAZ/WI (ARE = 1), byte or word |
//! | 0x6100..0x7fdc | GICD_IROUTER<32..=1019> | 64-bit, or 32-bit halves |
//! | 0xffd0..0xfffc | ID registers | GICD_PIDR2.ArchRev = 3 (GICv3) |
//!
//! Everything else is reserved: it reads as zero and ignores writes. The bits of SPIs the
//! guest does not own read as zero and ignore writes, counted in
//! [`super::VgicStats::refused_foreign_writes`].

use super::Vgic;
use super::access::{
    Located, Region, RegisterError, Widths, locate, read_part, truncate, write_part,
};
use super::config::FIRST_SPI;
use super::effects::Effects;
use super::per_irq::{Bank, BitRegister};
use crate::vm::mmio::AccessSize;

/// The distributor frame: 64 KiB.
pub const DISTRIBUTOR_FRAME_SIZE: u64 = 0x1_0000;

/// GICD_IIDR and GICR_IIDR: ProductID 0x48 ('H') [31:24], Variant 0, Revision 0,
/// Implementer 0. No JEP106 code is claimed, so no driver applies a silicon erratum
/// workaround keyed on the IIDR.
pub(crate) const IIDR: u32 = 0x4800_0000;

/// GICD_CTLR bits in the single-Security-state layout (IHI 0069 §12.9, GICD_CTLR).
const CTLR_ENABLE_GRP0: u32 = 1 << 0;
const CTLR_ENABLE_GRP1: u32 = 1 << 1;
const CTLR_ARE: u32 = 1 << 4;
const CTLR_DS: u32 = 1 << 6;

/// GICD_TYPER fields (IHI 0069 §12.9, GICD_TYPER).
const TYPER_IDBITS_16: u32 = 15 << 19;
const TYPER_A3V: u32 = 1 << 24;
const TYPER_RSS: u32 = 1 << 26;

/// The ID registers, 0xffd0..0x10000: PIDR4-7, PIDR0-3, CIDR0-3. Only PIDR2.ArchRev is
/// architected (3: GICv3); the component ID is the usual 0xb105f00d.
const ID_REGISTERS: [u8; 12] = [0, 0, 0, 0, 0, 0, 0x30, 0, 0x0d, 0xf0, 0x05, 0xb1];
pub(crate) const ID_REGISTERS_START: u64 = 0xffd0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Register {
    Ctlr,
    Typer,
    Iidr,
    Bits(BitRegister),
    Priority,
    Config,
    Router,
    Id,
    /// Implemented as zero: the register exists but has nothing to do here.
    RazWi,
    Reserved,
}

const fn bits(start: u64, register: BitRegister) -> Region<Register> {
    Region::new(start, start + 0x80, Register::Bits(register), Widths::Word)
}

const REGIONS: [Region<Register>; 23] = [
    Region::new(0x0000, 0x0004, Register::Ctlr, Widths::Word),
    Region::new(0x0004, 0x0008, Register::Typer, Widths::Word),
    Region::new(0x0008, 0x000c, Register::Iidr, Widths::Word),
    // GICD_TYPER2 and GICD_STATUSR.
    Region::new(0x000c, 0x0014, Register::RazWi, Widths::Word),
    Region::new(0x0040, 0x0044, Register::RazWi, Widths::Word),
    Region::new(0x0048, 0x004c, Register::RazWi, Widths::Word),
    Region::new(0x0050, 0x0054, Register::RazWi, Widths::Word),
    Region::new(0x0058, 0x005c, Register::RazWi, Widths::Word),
    bits(0x0080, BitRegister::Group),
    bits(0x0100, BitRegister::SetEnable),
    bits(0x0180, BitRegister::ClearEnable),
    bits(0x0200, BitRegister::SetPending),
    bits(0x0280, BitRegister::ClearPending),
    bits(0x0300, BitRegister::SetActive),
    bits(0x0380, BitRegister::ClearActive),
    Region::new(0x0400, 0x0800, Register::Priority, Widths::ByteOrWord),
    Region::new(0x0800, 0x0c00, Register::RazWi, Widths::ByteOrWord),
    Region::new(0x0c00, 0x0d00, Register::Config, Widths::Word),
    // GICD_IGRPMODR, GICD_NSACR, GICD_SGIR.
    Region::new(0x0d00, 0x0d80, Register::RazWi, Widths::Word),
    Region::new(0x0e00, 0x0f04, Register::RazWi, Widths::Word),
    Region::new(0x0f10, 0x0f30, Register::RazWi, Widths::ByteOrWord),
    Region::new(0x6100, 0x7fe0, Register::Router, Widths::DoubleOrWord),
    Region::new(ID_REGISTERS_START, 0x1_0000, Register::Id, Widths::Word),
];

/// The ID register word at `within` bytes from 0xffd0.
pub(crate) fn id_register(within: u64) -> u64 {
    ID_REGISTERS
        .get((within / 4) as usize)
        .map_or(0, |&byte| u64::from(byte))
}

impl Vgic {
    fn locate_distributor(
        offset: u64,
        size: AccessSize,
    ) -> Result<Located<Register>, RegisterError> {
        locate(
            &REGIONS,
            Register::Reserved,
            DISTRIBUTOR_FRAME_SIZE,
            offset,
            size,
        )
    }

    pub(crate) fn read_distributor(
        &mut self,
        offset: u64,
        size: AccessSize,
    ) -> Result<u64, RegisterError> {
        let Located { register, within } = Self::locate_distributor(offset, size)?;
        let value = match register {
            Register::Ctlr => u64::from(self.ctlr()),
            Register::Typer => u64::from(self.typer()),
            Register::Iidr => u64::from(IIDR),
            Register::Bits(bits) => {
                let first = 32 * (within / 4) as u32;
                u64::from(self.read_bits(Bank::Distributor, bits, first))
            }
            Register::Priority => {
                self.read_priorities(Bank::Distributor, within as u32, size.bytes() as u32)
            }
            Register::Config => {
                u64::from(self.read_config(Bank::Distributor, 16 * (within / 4) as u32))
            }
            Register::Router => self.read_router(offset, within, size),
            Register::Id => id_register(within),
            Register::RazWi | Register::Reserved => 0,
        };
        Ok(truncate(value, size))
    }

    pub(crate) fn write_distributor(
        &mut self,
        offset: u64,
        size: AccessSize,
        value: u64,
        effects: &mut Effects,
    ) -> Result<(), RegisterError> {
        let Located { register, within } = Self::locate_distributor(offset, size)?;
        let value = truncate(value, size);
        match register {
            Register::Ctlr => self.set_group_enables(
                value as u32 & CTLR_ENABLE_GRP0 != 0,
                value as u32 & CTLR_ENABLE_GRP1 != 0,
                effects,
            ),
            Register::Bits(bits) => {
                let first = 32 * (within / 4) as u32;
                self.write_bits(Bank::Distributor, bits, first, value as u32, effects);
            }
            Register::Priority => self.write_priorities(
                Bank::Distributor,
                within as u32,
                size.bytes() as u32,
                value,
                effects,
            ),
            Register::Config => {
                let first = 16 * (within / 4) as u32;
                self.write_config(Bank::Distributor, first, value as u32, effects);
            }
            Register::Router => self.write_router(offset, within, size, value, effects),
            // Read-only, write-ignored and reserved registers.
            Register::Typer
            | Register::Iidr
            | Register::Id
            | Register::RazWi
            | Register::Reserved => {}
        }
        Ok(())
    }

    /// GICD_CTLR: DS = 1 and ARE = 1 always; RWP is 0 since every write takes effect
    /// before it returns.
    fn ctlr(&self) -> u32 {
        let mut ctlr = CTLR_ARE | CTLR_DS;
        if self.enable_group0 {
            ctlr |= CTLR_ENABLE_GRP0;
        }
        if self.enable_group1 {
            ctlr |= CTLR_ENABLE_GRP1;
        }
        ctlr
    }

    /// GICD_TYPER. ITLinesNumber N: the INTIDs go up to 32 × (N + 1) - 1, which covers
    /// the highest SPI the guest owns. CPUNumber is 0 because ARE cannot be 0 (IHI 0069
    /// §12.9, GICD_TYPER.CPUNumber); A3V and RSS because routing and SGIs take all four
    /// affinity levels and Aff0 up to 255.
    fn typer(&self) -> u32 {
        let highest = self.spis.last().map_or(FIRST_SPI - 1, |spi| spi.intid);
        let it_lines = (highest + 1).div_ceil(32) - 1;
        it_lines | TYPER_IDBITS_16 | TYPER_A3V | TYPER_RSS
    }

    /// The owned SPI whose `GICD_IROUTER<n>` holds `offset`.
    fn router_index(&self, offset: u64) -> Option<usize> {
        let intid = ((offset - 0x6000) / 8) as u32;
        match self.spi_id(intid)? {
            super::state::IrqId::Spi { index } => Some(index),
            super::state::IrqId::Private { .. } => None,
        }
    }

    fn read_router(&self, offset: u64, within: u64, size: AccessSize) -> u64 {
        let router = self
            .router_index(offset)
            .and_then(|index| self.spis.get(index))
            .map_or(0, |spi| spi.router);
        read_part(router, within, size)
    }

    fn write_router(
        &mut self,
        offset: u64,
        within: u64,
        size: AccessSize,
        value: u64,
        effects: &mut Effects,
    ) {
        let Some(index) = self.router_index(offset) else {
            if value != 0 {
                self.stats.refused_foreign_writes += 1;
            }
            return;
        };
        let old = self.spis.get(index).map_or(0, |spi| spi.router);
        self.set_router(index, write_part(old, within, size, value), effects);
    }
}
