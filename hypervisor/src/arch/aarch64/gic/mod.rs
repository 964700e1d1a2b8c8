//! The physical GICv3, which the hypervisor owns: physical interrupts are taken at EL2
//! (HCR_EL2.IMO/FMO = 1) and the guests see only their virtual GIC (`vm::vgic`).
//!
//! - [`distributor`]: initialised once by the boot CPU; SPIs of assigned devices are
//!   enabled, routed and configured as their guest asks (mirrored from its vGIC).
//! - [`redistributor`]: each CPU finds and wakes its own, and configures its SGIs/PPIs.
//! - [`cpu_interface`]: the EL2 side of the CPU interface (acknowledge, priority drop,
//!   deactivate, SGIs to other CPUs).
//! - [`list_registers`]: the virtualization interface (ICH_*_EL2) of this CPU.
//!
//! Register layout and the values computed for it are portable: `arch::gicv3`.

pub mod cpu_interface;
pub mod distributor;
pub mod list_registers;
pub mod redistributor;

/// A 32-bit GIC register at `base + offset` (the EL2 map has the GIC frames as Device
/// memory at VA = PA).
fn read32(base: usize, offset: usize) -> u32 {
    // SAFETY: `base` is a GIC frame the EL2 map holds as Device-nGnRE (mm::el2_map maps
    // the DT's distributor and redistributor regions), and every offset used is a register
    // inside its frame; MMIO needs a volatile access.
    unsafe { ((base + offset) as *const u32).read_volatile() }
}

fn write32(base: usize, offset: usize, value: u32) {
    // SAFETY: as in `read32`.
    unsafe { ((base + offset) as *mut u32).write_volatile(value) }
}

fn read64(base: usize, offset: usize) -> u64 {
    // SAFETY: as in `read32`; the 64-bit registers used (GICR_TYPER, GICD_IROUTER) allow
    // 64-bit accesses (IHI 0069 §12.1.3).
    unsafe { ((base + offset) as *const u64).read_volatile() }
}

fn write64(base: usize, offset: usize, value: u64) {
    // SAFETY: as in `read64`.
    unsafe { ((base + offset) as *mut u64).write_volatile(value) }
}

/// Why this CPU cannot use the GIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicError {
    /// No redistributor in the DT's regions has this CPU's affinity.
    NoRedistributor { mpidr: u64 },
    /// A redistributor or distributor write did not complete (RWP or ChildrenAsleep
    /// stayed set).
    Timeout { what: &'static str },
    /// The distributor was not initialised (no GIC in the DT).
    NotInitialised,
}

impl core::fmt::Display for GicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoRedistributor { mpidr } => {
                write!(
                    f,
                    "no GICv3 redistributor has the affinity of MPIDR {mpidr:#x}"
                )
            }
            Self::Timeout { what } => write!(f, "the GIC did not complete {what}"),
            Self::NotInitialised => f.write_str("the GIC distributor is not initialised"),
        }
    }
}

/// How long a register write may take to complete before the GIC is declared broken.
const COMPLETION_TIMEOUT_US: u64 = 100_000;
