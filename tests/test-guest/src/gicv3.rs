//! The GICv3 registers the guest's driver uses and their fields (Arm IHI 0069H, chapter
//! 12), as plain numbers and functions so the host tests check the encodings. The driver
//! that touches the hardware is `guest/gic.rs`.

/// The INTID ICC_IAR1_EL1 returns when nothing can be acknowledged.
pub const SPURIOUS: u32 = 1023;
/// SGIs are INTIDs 0..16, PPIs 16..32, SPIs 32..=1019.
pub const SGIS: u32 = 16;
pub const FIRST_SPI: u32 = 32;
pub const LAST_SPI: u32 = 1019;

// Distributor (GICD_*), offsets in its 64 KiB frame (§12.8).
pub const GICD_CTLR: u64 = 0x0000;
pub const GICD_TYPER: u64 = 0x0004;
pub const GICD_ISENABLER: u64 = 0x0100;
pub const GICD_ICENABLER: u64 = 0x0180;

/// GICD_CTLR with a single Security state (DS = 1, §12.9.4): EnableGrp1 [1], ARE [4],
/// RWP [31] (a write is still taking effect).
pub const CTLR_ENABLE_GRP1: u32 = 1 << 1;
pub const CTLR_ARE: u32 = 1 << 4;
pub const CTLR_RWP: u32 = 1 << 31;

// Redistributor: RD_base, then SGI_base 64 KiB above (§12.10).
/// One redistributor without virtual LPI frames (GICR_TYPER.VLPIS = 0): 128 KiB.
pub const GICR_FRAME: u64 = 0x2_0000;
/// With GICR_TYPER.VLPIS = 1 the VLPI_base and reserved frames follow: 256 KiB.
pub const GICR_FRAME_WITH_VLPIS: u64 = 0x4_0000;
pub const GICR_TYPER: u64 = 0x0008;
pub const GICR_WAKER: u64 = 0x0014;
pub const GICR_PROPBASER: u64 = 0x0070;
pub const SGI_BASE: u64 = 0x1_0000;
pub const GICR_IGROUPR0: u64 = SGI_BASE + 0x0080;
pub const GICR_ISENABLER0: u64 = SGI_BASE + 0x0100;
pub const GICR_ICENABLER0: u64 = SGI_BASE + 0x0180;
pub const GICR_ICPENDR0: u64 = SGI_BASE + 0x0280;
pub const GICR_ICACTIVER0: u64 = SGI_BASE + 0x0380;
/// One byte per SGI and PPI.
pub const GICR_IPRIORITYR: u64 = SGI_BASE + 0x0400;

/// GICR_WAKER: ProcessorSleep [1], ChildrenAsleep [2] (§12.11.40).
pub const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
pub const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;

/// GICR_TYPER: PLPIS [0], VLPIS [1], Last [4] (§12.11.36).
pub const TYPER_PLPIS: u64 = 1 << 0;
pub const TYPER_VLPIS: u64 = 1 << 1;
pub const TYPER_LAST: u64 = 1 << 4;

// CPU interface system registers.
/// ICC_SRE_EL1: SRE [0] (system-register interface), DFB [1], DIB [2] (no legacy
/// FIQ/IRQ bypass).
pub const SRE_ENABLE: u64 = 0b111;
/// ICC_CTLR_EL1.EOImode [1]: 1 splits priority drop (EOIR) from deactivation (DIR).
pub const ICC_CTLR_EOIMODE: u64 = 1 << 1;
/// ICC_PMR_EL1 that lets every priority through (an implementation with fewer priority
/// bits keeps the top ones: 0xf8 with 5).
pub const PMR_ALLOW_ALL: u64 = 0xff;

/// CNTV_CTL_EL0: ENABLE [0], IMASK [1], ISTATUS [2].
pub const TIMER_ENABLE: u64 = 1 << 0;
pub const TIMER_IMASK: u64 = 1 << 1;
pub const TIMER_ISTATUS: u64 = 1 << 2;

/// The 32-bit word of a one-bit-per-INTID register bank at `base` (IS/ICENABLER, ...)
/// that holds `intid`, and its bit.
pub fn bit_register(base: u64, intid: u32) -> (u64, u32) {
    (base + 4 * u64::from(intid / 32), 1 << (intid % 32))
}

/// One past the highest INTID the distributor implements, from GICD_TYPER.ITLinesNumber
/// [4:0]: 32 × (N + 1), at most 1020 (§12.9.38).
pub fn intid_limit(gicd_typer: u32) -> u32 {
    (32 * ((gicd_typer & 0x1f) + 1)).min(LAST_SPI + 1)
}

/// The affinity of a redistributor in MPIDR_EL1's layout (Aff3 [39:32], Aff2..Aff0
/// [23:0]), from GICR_TYPER.Affinity_Value [63:32] = Aff3.Aff2.Aff1.Aff0.
pub fn redistributor_affinity(gicr_typer: u64) -> u64 {
    let value = gicr_typer >> 32;
    (((value >> 24) & 0xff) << 32) | (value & 0xff_ffff)
}

/// GICR_TYPER.Processor_Number [23:8].
pub fn processor_number(gicr_typer: u64) -> u64 {
    (gicr_typer >> 8) & 0xffff
}

/// ICC_SGI1R_EL1 for SGI `intid` to the one PE whose affinity (MPIDR_EL1 layout) is
/// `affinity` (§12.2.23): Aff3 [55:48], RS [47:44] = Aff0 / 16, Aff2 [39:32], INTID
/// [27:24], Aff1 [23:16], TargetList [15:0] bit Aff0 % 16, IRM 0. `None` for an INTID
/// that is not an SGI.
pub fn sgi1r(affinity: u64, intid: u32) -> Option<u64> {
    if intid >= SGIS {
        return None;
    }
    let aff0 = affinity & 0xff;
    let aff1 = (affinity >> 8) & 0xff;
    let aff2 = (affinity >> 16) & 0xff;
    let aff3 = (affinity >> 32) & 0xff;
    Some(
        (aff3 << 48)
            | ((aff0 / 16) << 44)
            | (aff2 << 32)
            | (u64::from(intid) << 24)
            | (aff1 << 16)
            | (1 << (aff0 % 16)),
    )
}

/// The INTID in an ICC_IAR1_EL1 value ([23:0]; the rest is RES0).
pub fn iar_intid(iar: u64) -> u32 {
    (iar & 0xff_ffff) as u32
}

/// `ticks` of a counter running at `rate` Hz, in microseconds.
pub fn ticks_to_us(ticks: u64, rate: u64) -> u64 {
    (u128::from(ticks) * 1_000_000 / u128::from(rate.max(1))) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgi1r_fields() {
        // MPIDR Aff3 0x12, Aff2 0x34, Aff1 0x56, Aff0 0x23 (RS 2, bit 3).
        let value = sgi1r(0x12_0034_5623, 9).unwrap();
        assert_eq!(value >> 48, 0x12);
        assert_eq!((value >> 44) & 0xf, 2);
        assert_eq!((value >> 32) & 0xff, 0x34);
        assert_eq!((value >> 24) & 0xf, 9);
        assert_eq!((value >> 16) & 0xff, 0x56);
        assert_eq!(value & 0xffff, 1 << 3);
        assert_eq!(value & (1 << 40), 0, "IRM must stay 0");
        assert_eq!(sgi1r(0, 0), Some(1));
        assert_eq!(sgi1r(1, 15), Some((15 << 24) | 0b10));
        // Aff1 0x7f: a cluster no vCPU is in.
        assert_eq!(sgi1r(0x7f00, 2), Some((2 << 24) | (0x7f << 16) | 1));
        assert_eq!(sgi1r(0, 16), None);
    }

    #[test]
    fn redistributor_typer_fields() {
        // Affinity_Value 0x12345623 (Aff3 0x12), Processor_Number 5, Last.
        let typer = (0x1234_5623u64 << 32) | (5 << 8) | TYPER_LAST;
        assert_eq!(redistributor_affinity(typer), 0x12_0034_5623);
        assert_eq!(processor_number(typer), 5);
        assert_eq!(redistributor_affinity(1 << 32), 1);
    }

    #[test]
    fn distributor_fields() {
        assert_eq!(intid_limit(0), 32);
        assert_eq!(intid_limit(1 | (15 << 19)), 64);
        assert_eq!(intid_limit(31), 1020);
        assert_eq!(bit_register(GICD_ISENABLER, 34), (0x104, 1 << 2));
        assert_eq!(bit_register(GICD_ISENABLER, 64), (0x108, 1));
        assert_eq!(bit_register(GICR_ISENABLER0, 27), (0x1_0100, 1 << 27));
        assert_eq!(iar_intid(0xff00_0000_0000_03ff), SPURIOUS);
        assert_eq!(ticks_to_us(62_500, 62_500_000), 1000);
        assert_eq!(ticks_to_us(5, 0), 5_000_000);
    }
}
