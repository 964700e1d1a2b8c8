//! The physical GICv3's register layout and the values the hypervisor computes for it
//! (Arm IHI 0069, "GIC architecture specification", chapter 12), portable and tested on
//! the host; `arch::aarch64::gic` only does the accesses.
//!
//! INTIDs the hypervisor keeps for itself: [`KICK_SGI`] (one CPU asks another to leave its
//! guest and refill its list registers) and the maintenance interrupt the DT names
//! (PPI 9, INTID 25, on QEMU virt and most boards).

/// The SGI one CPU sends another when that CPU's vCPU has new virtual interrupts to load
/// (KVM calls it a kick). SGIs 0-7 are Linux's IPIs on a host; the hypervisor has no
/// host, so any SGI would do: 8 keeps dumps readable.
pub const KICK_SGI: u32 = 8;

/// INTIDs 1020-1023 are special (IHI 0069 §2.2.1): 1023 means no pending interrupt.
pub const FIRST_SPECIAL_INTID: u32 = 1020;

/// The priority every physical interrupt gets (lower is more urgent; Linux uses 0xa0
/// too). One priority means no preemption at EL2, which the hypervisor does not use: it
/// runs with interrupts masked.
pub const DEFAULT_PRIORITY: u8 = 0xa0;

/// Distributor (GICD_*) offsets, IHI 0069 §12.9.
pub mod gicd {
    pub const CTLR: usize = 0x0000;
    pub const TYPER: usize = 0x0004;
    pub const IGROUPR: usize = 0x0080;
    pub const ISENABLER: usize = 0x0100;
    pub const ICENABLER: usize = 0x0180;
    pub const ISPENDR: usize = 0x0200;
    pub const ICPENDR: usize = 0x0280;
    pub const ISACTIVER: usize = 0x0300;
    pub const ICACTIVER: usize = 0x0380;
    pub const IPRIORITYR: usize = 0x0400;
    pub const ICFGR: usize = 0x0c00;
    pub const IROUTER: usize = 0x6000;
    /// GICD_CTLR.RWP: a write to CTLR or ICENABLER is still taking effect (§12.9.4).
    pub const CTLR_RWP: u32 = 1 << 31;
    /// ARE (single security state) or ARE_NS (Non-secure view): affinity routing.
    pub const CTLR_ARE: u32 = 1 << 4;
    /// EnableGrp1 (DS = 1) or EnableGrp1A (Non-secure view).
    pub const CTLR_ENABLE_GRP1A: u32 = 1 << 1;
    /// EnableGrp0 (DS = 1) or EnableGrp1 (Non-secure view): Linux sets it too.
    pub const CTLR_ENABLE_GRP1: u32 = 1 << 0;
}

/// Redistributor (GICR_*) offsets, IHI 0069 §12.10/§12.11: RD_base, then SGI_base 64 KiB
/// above it.
pub mod gicr {
    pub const CTLR: usize = 0x0000;
    pub const TYPER: usize = 0x0008;
    pub const WAKER: usize = 0x0014;
    pub const SGI_BASE: usize = 0x1_0000;
    pub const IGROUPR0: usize = SGI_BASE + 0x0080;
    pub const ISENABLER0: usize = SGI_BASE + 0x0100;
    pub const ICENABLER0: usize = SGI_BASE + 0x0180;
    pub const ISPENDR0: usize = SGI_BASE + 0x0200;
    pub const ICPENDR0: usize = SGI_BASE + 0x0280;
    pub const ISACTIVER0: usize = SGI_BASE + 0x0300;
    pub const ICACTIVER0: usize = SGI_BASE + 0x0380;
    pub const IPRIORITYR: usize = SGI_BASE + 0x0400;
    pub const ICFGR1: usize = SGI_BASE + 0x0c04;
    /// GICR_CTLR.RWP: a write to ICENABLER0 is still taking effect (§12.11.2).
    pub const CTLR_RWP: u32 = 1 << 3;
    pub const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
    pub const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
    pub const TYPER_LAST: u64 = 1 << 4;
    pub const TYPER_VLPIS: u64 = 1 << 1;
    /// RD_base + SGI_base.
    pub const FRAME_PAIR: u64 = 0x2_0000;
    /// With GICv4 virtual LPIs, VLPI_base and a reserved frame follow (§12.10).
    pub const FRAME_PAIR_WITH_VLPI: u64 = 0x4_0000;
}

/// GICR_TYPER.Affinity_Value (bits [63:32]) as MPIDR_EL1 holds the same levels: Aff3 in
/// [39:32], Aff2..Aff0 in [23:0] (§12.11.34).
pub const fn mpidr_of_redistributor(typer: u64) -> u64 {
    let affinity = typer >> 32;
    ((affinity >> 24) & 0xff) << 32 | (affinity & 0x00ff_ffff)
}

/// How far the next redistributor's frames are (§12.10: two 64 KiB frames, four with
/// virtual LPIs), or `None` if this was the region's last one.
pub const fn next_redistributor_stride(typer: u64) -> Option<u64> {
    if typer & gicr::TYPER_LAST != 0 {
        None
    } else if typer & gicr::TYPER_VLPIS != 0 {
        Some(gicr::FRAME_PAIR_WITH_VLPI)
    } else {
        Some(gicr::FRAME_PAIR)
    }
}

/// GICD_IROUTER<n> for a specific PE (Interrupt_Routing_Mode = 0): its affinity levels in
/// MPIDR layout (§12.9.22).
pub const fn irouter_for(mpidr: u64) -> u64 {
    mpidr & 0xff_00ff_ffff
}

/// The ICC_SGI1R_EL1 value that sends SGI `intid` to the one PE `mpidr` (§12.2.22):
/// Aff3 [55:48], Aff2 [39:32], Aff1 [23:16], RS [47:44] (Aff0 / 16), TargetList [15:0]
/// (bit Aff0 % 16), INTID [27:24]. `None` for an INTID that is not an SGI.
pub const fn sgi1r_to(mpidr: u64, intid: u32) -> Option<u64> {
    if intid >= 16 {
        return None;
    }
    let aff0 = mpidr & 0xff;
    let aff1 = (mpidr >> 8) & 0xff;
    let aff2 = (mpidr >> 16) & 0xff;
    let aff3 = (mpidr >> 32) & 0xff;
    Some(
        aff3 << 48
            | (aff0 >> 4) << 44
            | aff2 << 32
            | (intid as u64) << 24
            | aff1 << 16
            | 1 << (aff0 & 0xf),
    )
}

/// Where bit `intid` lives in a one-bit-per-INTID register bank (ISENABLER, ISPENDR...):
/// the byte offset of its 32-bit register and the bit.
pub const fn bit_register(intid: u32) -> (usize, u32) {
    ((intid as usize / 32) * 4, 1 << (intid % 32))
}

/// The two-bit ICFGR field of `intid`: byte offset of its register and the "edge" bit
/// (Int_config[1], §12.9.9).
pub const fn config_register(intid: u32) -> (usize, u32) {
    ((intid as usize / 16) * 4, 2 << ((intid % 16) * 2))
}

/// GICD_TYPER.ITLinesNumber → how many INTIDs the distributor implements, SPIs included
/// (32 × (N + 1), at most 1020).
pub const fn implemented_intids(gicd_typer: u32) -> u32 {
    let lines = (gicd_typer & 0x1f) + 1;
    let intids = lines * 32;
    if intids > FIRST_SPECIAL_INTID {
        FIRST_SPECIAL_INTID
    } else {
        intids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgi_target_fields_follow_the_register_layout() {
        // MPIDR Aff3=1 Aff2=2 Aff1=3 Aff0=0x13: RS = 1, TargetList bit 3.
        let value = sgi1r_to(0x01_0002_0313, KICK_SGI).unwrap();
        assert_eq!((value >> 48) & 0xff, 1);
        assert_eq!((value >> 32) & 0xff, 2);
        assert_eq!((value >> 16) & 0xff, 3);
        assert_eq!((value >> 44) & 0xf, 1);
        assert_eq!(value & 0xffff, 1 << 3);
        assert_eq!((value >> 24) & 0xf, u64::from(KICK_SGI));
        assert_eq!(value & (1 << 40), 0, "IRM must be 0: one target");
        assert_eq!(sgi1r_to(0, 16), None);
    }

    #[test]
    fn redistributor_affinity_matches_mpidr_layout() {
        let typer = (0x01_02_03_04u64 << 32) | gicr::TYPER_LAST;
        assert_eq!(mpidr_of_redistributor(typer), 0x01_0002_0304);
        assert_eq!(next_redistributor_stride(typer), None);
        assert_eq!(next_redistributor_stride(0), Some(0x2_0000));
        assert_eq!(next_redistributor_stride(gicr::TYPER_VLPIS), Some(0x4_0000));
    }

    #[test]
    fn irouter_keeps_only_affinity() {
        assert_eq!(irouter_for(0x8000_0000 | 0x01_0002_0304), 0x01_0002_0304);
    }

    #[test]
    fn register_banks() {
        assert_eq!(bit_register(33), (4, 1 << 1));
        assert_eq!(config_register(33), (8, 2 << 2));
        assert_eq!(config_register(31), (4, 2 << 30));
        assert_eq!(implemented_intids(0x1f), 1020);
        assert_eq!(implemented_intids(0x2), 96);
    }
}
