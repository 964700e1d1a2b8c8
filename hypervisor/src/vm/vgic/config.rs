//! What a guest's vGIC is built from, and the checks [`super::Vgic::new`] makes on it.

use super::alloc::vec::Vec;

/// The most vCPUs one vGIC serves. Not an architectural limit (GICR_TYPER.Processor_Number
/// has 16 bits); it bounds [`super::VcpuSet`] and the per-vCPU state.
pub const MAX_VCPUS: usize = 256;

/// The most list registers a GICv3 CPU interface has (ICH_VTR_EL2.ListRegs is 4 bits).
pub const MAX_LIST_REGISTERS: usize = 16;

/// The first and last SPI INTIDs (IHI 0069 §2.2, "INTIDs": 32..=1019; 1020..=1023 are
/// special).
pub const FIRST_SPI: u32 = 32;
pub const LAST_SPI: u32 = 1019;

/// The PPI range (16..=31).
pub const FIRST_PPI: u32 = 16;
pub const LAST_PPI: u32 = 31;

/// The affinity fields of MPIDR_EL1 (and of `GICD_IROUTER<n>`): Aff3 in bits 39:32, Aff2
/// in 23:16, Aff1 in 15:8, Aff0 in 7:0.
pub const AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// How a guest's vGIC is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VgicConfig {
    /// Each vCPU's MPIDR affinity (Aff3..Aff0 bits as in MPIDR_EL1, other bits 0), index =
    /// vCPU number.
    pub vcpu_mpidrs: Vec<u64>,
    /// The SPIs (INTID 32..=1019) this guest owns.
    pub spis: Vec<SpiAssignment>,
    /// PPIs (INTID 16..=31) that are the physical ones, hardware-linked with the same
    /// INTID (the guest's timers 27 and 30, the PMU 23).
    pub hardware_ppis: Vec<u32>,
    /// ICH_VTR_EL2.ListRegs + 1 (1..=16).
    pub list_registers: usize,
    /// ICH_VTR_EL2.PRIbits + 1 (5..=8): how many priority bits the LRs keep.
    pub priority_bits: u8,
}

/// One SPI of the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpiAssignment {
    pub intid: u32,
    pub source: SpiSource,
}

/// Where an SPI's pending state comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpiSource {
    /// An emulated device's line (e.g. the vPL011's), driven by
    /// [`super::Vgic::set_line_level`].
    Emulated,
    /// An assigned device's SPI, hardware-linked: it becomes pending through
    /// [`super::Vgic::hardware_fired`] and the guest's deactivation deactivates it.
    Hardware { physical_intid: u32 },
}

/// Why [`super::Vgic::new`] refused a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VgicConfigError {
    NoVcpus,
    TooManyVcpus {
        count: usize,
    },
    /// Bits set outside Aff3..Aff0.
    MpidrNotAnAffinity {
        vcpu: usize,
        mpidr: u64,
    },
    DuplicateMpidr {
        vcpu: usize,
        mpidr: u64,
    },
    SpiOutOfRange {
        intid: u32,
    },
    DuplicateSpi {
        intid: u32,
    },
    PhysicalSpiOutOfRange {
        intid: u32,
        physical_intid: u32,
    },
    /// Two SPIs linked to the same physical SPI.
    DuplicatePhysicalSpi {
        physical_intid: u32,
    },
    PpiOutOfRange {
        intid: u32,
    },
    DuplicatePpi {
        intid: u32,
    },
    ListRegisters {
        count: usize,
    },
    PriorityBits {
        bits: u8,
    },
}

impl core::fmt::Display for VgicConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::NoVcpus => f.write_str("a vGIC needs at least one vCPU"),
            Self::TooManyVcpus { count } => {
                write!(f, "{count} vCPUs, more than the {MAX_VCPUS} a vGIC serves")
            }
            Self::MpidrNotAnAffinity { vcpu, mpidr } => write!(
                f,
                "vCPU {vcpu}'s MPIDR {mpidr:#x} has bits outside Aff3..Aff0"
            ),
            Self::DuplicateMpidr { vcpu, mpidr } => {
                write!(f, "vCPU {vcpu} repeats MPIDR {mpidr:#x}")
            }
            Self::SpiOutOfRange { intid } => write!(f, "SPI {intid} is not in 32..=1019"),
            Self::DuplicateSpi { intid } => write!(f, "SPI {intid} is assigned twice"),
            Self::PhysicalSpiOutOfRange {
                intid,
                physical_intid,
            } => write!(
                f,
                "SPI {intid} is linked to physical INTID {physical_intid}, not an SPI"
            ),
            Self::DuplicatePhysicalSpi { physical_intid } => {
                write!(f, "physical SPI {physical_intid} is linked twice")
            }
            Self::PpiOutOfRange { intid } => write!(f, "PPI {intid} is not in 16..=31"),
            Self::DuplicatePpi { intid } => write!(f, "PPI {intid} is listed twice"),
            Self::ListRegisters { count } => {
                write!(f, "{count} list registers, not 1..={MAX_LIST_REGISTERS}")
            }
            Self::PriorityBits { bits } => write!(f, "{bits} priority bits, not 5..=8"),
        }
    }
}

impl VgicConfig {
    /// Checks everything [`super::Vgic::new`] relies on.
    pub(crate) fn validate(&self) -> Result<(), VgicConfigError> {
        self.validate_vcpus()?;
        self.validate_spis()?;
        self.validate_ppis()?;
        if !(1..=MAX_LIST_REGISTERS).contains(&self.list_registers) {
            return Err(VgicConfigError::ListRegisters {
                count: self.list_registers,
            });
        }
        if !(5..=8).contains(&self.priority_bits) {
            return Err(VgicConfigError::PriorityBits {
                bits: self.priority_bits,
            });
        }
        Ok(())
    }

    fn validate_vcpus(&self) -> Result<(), VgicConfigError> {
        let count = self.vcpu_mpidrs.len();
        if count == 0 {
            return Err(VgicConfigError::NoVcpus);
        }
        if count > MAX_VCPUS {
            return Err(VgicConfigError::TooManyVcpus { count });
        }
        for (vcpu, &mpidr) in self.vcpu_mpidrs.iter().enumerate() {
            if mpidr & !AFFINITY_MASK != 0 {
                return Err(VgicConfigError::MpidrNotAnAffinity { vcpu, mpidr });
            }
            if self.vcpu_mpidrs.iter().take(vcpu).any(|&m| m == mpidr) {
                return Err(VgicConfigError::DuplicateMpidr { vcpu, mpidr });
            }
        }
        Ok(())
    }

    fn validate_spis(&self) -> Result<(), VgicConfigError> {
        let mut virtual_seen = IntidSet::default();
        let mut physical_seen = IntidSet::default();
        for spi in &self.spis {
            let intid = spi.intid;
            if !(FIRST_SPI..=LAST_SPI).contains(&intid) {
                return Err(VgicConfigError::SpiOutOfRange { intid });
            }
            if !virtual_seen.insert(intid) {
                return Err(VgicConfigError::DuplicateSpi { intid });
            }
            let SpiSource::Hardware { physical_intid } = spi.source else {
                continue;
            };
            if !(FIRST_SPI..=LAST_SPI).contains(&physical_intid) {
                return Err(VgicConfigError::PhysicalSpiOutOfRange {
                    intid,
                    physical_intid,
                });
            }
            if !physical_seen.insert(physical_intid) {
                return Err(VgicConfigError::DuplicatePhysicalSpi { physical_intid });
            }
        }
        Ok(())
    }

    fn validate_ppis(&self) -> Result<(), VgicConfigError> {
        for (index, &intid) in self.hardware_ppis.iter().enumerate() {
            if !(FIRST_PPI..=LAST_PPI).contains(&intid) {
                return Err(VgicConfigError::PpiOutOfRange { intid });
            }
            if self.hardware_ppis.iter().take(index).any(|&p| p == intid) {
                return Err(VgicConfigError::DuplicatePpi { intid });
            }
        }
        Ok(())
    }
}

/// A set of INTIDs 0..1024, for the duplicate checks.
#[derive(Default)]
struct IntidSet([u64; 16]);

impl IntidSet {
    /// Adds `intid` (< 1024); false if it was already there.
    fn insert(&mut self, intid: u32) -> bool {
        let Some(word) = self.0.get_mut((intid / 64) as usize) else {
            return false;
        };
        let bit = 1u64 << (intid % 64);
        let fresh = *word & bit == 0;
        *word |= bit;
        fresh
    }
}
