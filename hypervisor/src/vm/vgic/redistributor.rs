//! Each vCPU's emulated redistributor: 128 KiB, RD_base at +0 and SGI_base at +0x10000
//! (IHI 0069 §12.10 "The GIC Redistributor register map" and §12.11, the GICR_* register
//! descriptions).
//!
//! | offset | register | here |
//! |---|---|---|
//! | 0x0000 | GICR_CTLR | RAZ/WI: EnableLPIs cannot be set (no LPIs), RWP is 0, no DPG bits |
//! | 0x0004 | GICR_IIDR | as GICD_IIDR |
//! | 0x0008 | GICR_TYPER | 64-bit (or halves): Affinity_Value from the vCPU's MPIDR, Processor_Number = vCPU index, Last on the last vCPU; PLPIS, VLPIS, DirectLPI 0 |
//! | 0x0010 | GICR_STATUSR | RAZ/WI |
//! | 0x0014 | GICR_WAKER | ProcessorSleep [1] writable (resets 1); ChildrenAsleep [2] follows it |
//! | 0x0040..0x00c0 | GICR_SETLPIR, CLRLPIR, PROPBASER, PENDBASER, INVLPIR, INVALLR, SYNCR | RAZ/WI and counted: no LPIs, and nothing that takes a physical address is accepted |
//! | 0xffd0..0xfffc | ID registers | as the distributor's (PIDR2.ArchRev = 3) |
//! | 0x10080 | GICR_IGROUPR0 | SGIs and PPIs of this vCPU |
//! | 0x10100..0x10380 | GICR_IS/ICENABLER0, IS/ICPENDR0, IS/ICACTIVER0 | |
//! | 0x10400..0x1041c | GICR_IPRIORITYR0-7 | byte or word |
//! | 0x10c00 | GICR_ICFGR0 | SGIs: edge, read-only |
//! | 0x10c04 | GICR_ICFGR1 | PPIs: writable except hardware-linked ones |
//! | 0x10d00 | GICR_IGRPMODR0 | RAZ/WI (DS = 1) |
//! | 0x10e00 | GICR_NSACR | RAZ/WI (DS = 1) |
//!
//! Everything else in the 128 KiB is reserved: it reads as zero and ignores writes.

use super::Vgic;
use super::access::{Located, Region, RegisterError, Widths, locate, read_part, truncate};
use super::distributor::{ID_REGISTERS_START, IIDR, id_register};
use super::effects::Effects;
use super::per_irq::{Bank, BitRegister};
use crate::vm::mmio::AccessSize;

/// One vCPU's redistributor: RD_base and SGI_base, 64 KiB each.
pub const REDISTRIBUTOR_FRAME_SIZE: u64 = 0x2_0000;

/// Where SGI_base starts.
const SGI_BASE: u64 = 0x1_0000;

/// GICR_TYPER.Last [4]: the last redistributor of the region.
const TYPER_LAST: u64 = 1 << 4;

/// GICR_WAKER.ProcessorSleep [1] and ChildrenAsleep [2].
const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Register {
    Iidr,
    Typer,
    Waker,
    /// The LPI registers: refused and counted.
    Lpi,
    Id,
    Bits(BitRegister),
    Priority,
    Config,
    RazWi,
    Reserved,
}

const fn bits(offset: u64, register: BitRegister) -> Region<Register> {
    Region::new(
        SGI_BASE + offset,
        SGI_BASE + offset + 4,
        Register::Bits(register),
        Widths::Word,
    )
}

const REGIONS: [Region<Register>; 22] = [
    // GICR_CTLR.
    Region::new(0x0000, 0x0004, Register::RazWi, Widths::Word),
    Region::new(0x0004, 0x0008, Register::Iidr, Widths::Word),
    Region::new(0x0008, 0x0010, Register::Typer, Widths::DoubleOrWord),
    // GICR_STATUSR.
    Region::new(0x0010, 0x0014, Register::RazWi, Widths::Word),
    Region::new(0x0014, 0x0018, Register::Waker, Widths::Word),
    // GICR_SETLPIR, CLRLPIR.
    Region::new(0x0040, 0x0050, Register::Lpi, Widths::DoubleOrWord),
    // GICR_PROPBASER, PENDBASER.
    Region::new(0x0070, 0x0080, Register::Lpi, Widths::DoubleOrWord),
    // GICR_INVLPIR, INVALLR.
    Region::new(0x00a0, 0x00a8, Register::Lpi, Widths::DoubleOrWord),
    Region::new(0x00b0, 0x00b8, Register::Lpi, Widths::DoubleOrWord),
    // GICR_SYNCR.
    Region::new(0x00c0, 0x00c4, Register::Lpi, Widths::Word),
    Region::new(ID_REGISTERS_START, SGI_BASE, Register::Id, Widths::Word),
    bits(0x0080, BitRegister::Group),
    bits(0x0100, BitRegister::SetEnable),
    bits(0x0180, BitRegister::ClearEnable),
    bits(0x0200, BitRegister::SetPending),
    bits(0x0280, BitRegister::ClearPending),
    bits(0x0300, BitRegister::SetActive),
    bits(0x0380, BitRegister::ClearActive),
    Region::new(
        SGI_BASE + 0x0400,
        SGI_BASE + 0x0420,
        Register::Priority,
        Widths::ByteOrWord,
    ),
    Region::new(
        SGI_BASE + 0x0c00,
        SGI_BASE + 0x0c08,
        Register::Config,
        Widths::Word,
    ),
    // GICR_IGRPMODR0.
    Region::new(
        SGI_BASE + 0x0d00,
        SGI_BASE + 0x0d04,
        Register::RazWi,
        Widths::Word,
    ),
    // GICR_NSACR.
    Region::new(
        SGI_BASE + 0x0e00,
        SGI_BASE + 0x0e04,
        Register::RazWi,
        Widths::Word,
    ),
];

impl Vgic {
    fn locate_redistributor(
        &self,
        vcpu: usize,
        offset: u64,
        size: AccessSize,
    ) -> Result<Located<Register>, RegisterError> {
        let located = locate(
            &REGIONS,
            Register::Reserved,
            REDISTRIBUTOR_FRAME_SIZE,
            offset,
            size,
        )?;
        if vcpu >= self.vcpus.len() {
            return Err(RegisterError::NoSuchVcpu);
        }
        Ok(located)
    }

    pub(crate) fn read_redistributor(
        &mut self,
        vcpu: usize,
        offset: u64,
        size: AccessSize,
    ) -> Result<u64, RegisterError> {
        let Located { register, within } = self.locate_redistributor(vcpu, offset, size)?;
        let bank = Bank::Redistributor(vcpu);
        let value = match register {
            Register::Iidr => u64::from(IIDR),
            Register::Typer => read_part(self.redistributor_typer(vcpu), within, size),
            Register::Waker => u64::from(self.waker(vcpu)),
            Register::Lpi => {
                self.stats.refused_lpi_accesses += 1;
                0
            }
            Register::Id => id_register(within),
            Register::Bits(bits) => u64::from(self.read_bits(bank, bits, 0)),
            Register::Priority => self.read_priorities(bank, within as u32, size.bytes() as u32),
            Register::Config => u64::from(self.read_config(bank, 16 * (within / 4) as u32)),
            Register::RazWi | Register::Reserved => 0,
        };
        Ok(truncate(value, size))
    }

    pub(crate) fn write_redistributor(
        &mut self,
        vcpu: usize,
        offset: u64,
        size: AccessSize,
        value: u64,
        effects: &mut Effects,
    ) -> Result<(), RegisterError> {
        let Located { register, within } = self.locate_redistributor(vcpu, offset, size)?;
        let bank = Bank::Redistributor(vcpu);
        let value = truncate(value, size);
        match register {
            Register::Waker => {
                if let Some(state) = self.vcpus.get_mut(vcpu) {
                    state.asleep = value as u32 & WAKER_PROCESSOR_SLEEP != 0;
                }
            }
            Register::Lpi => self.stats.refused_lpi_accesses += 1,
            Register::Bits(bits) => self.write_bits(bank, bits, 0, value as u32, effects),
            Register::Priority => {
                self.write_priorities(bank, within as u32, size.bytes() as u32, value, effects);
            }
            Register::Config => {
                self.write_config(bank, 16 * (within / 4) as u32, value as u32, effects);
            }
            Register::Iidr
            | Register::Typer
            | Register::Id
            | Register::RazWi
            | Register::Reserved => {}
        }
        Ok(())
    }

    /// GICR_TYPER (IHI 0069 §12.11): Affinity_Value [63:32] is Aff3.Aff2.Aff1.Aff0,
    /// Processor_Number [23:8] the vCPU index, Last [4] on the last vCPU. PLPIS, VLPIS,
    /// DirectLPI, DPGS are 0; PPInum 0 (16 PPIs).
    fn redistributor_typer(&self, vcpu: usize) -> u64 {
        let mpidr = self.vcpus.get(vcpu).map_or(0, |state| state.mpidr);
        // MPIDR_EL1 has Aff2..Aff0 in [23:0] and Aff3 in [39:32].
        let affinity = (mpidr & 0xff_ffff) | (((mpidr >> 32) & 0xff) << 24);
        let mut typer = (affinity << 32) | (((vcpu as u64) & 0xffff) << 8);
        if vcpu + 1 == self.vcpus.len() {
            typer |= TYPER_LAST;
        }
        typer
    }

    /// GICR_WAKER: ChildrenAsleep follows ProcessorSleep at once (IHI 0069 §12.11,
    /// GICR_WAKER: software sets or clears ProcessorSleep, then polls ChildrenAsleep).
    fn waker(&self, vcpu: usize) -> u32 {
        if self.vcpus.get(vcpu).is_some_and(|state| state.asleep) {
            WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP
        } else {
            0
        }
    }
}
