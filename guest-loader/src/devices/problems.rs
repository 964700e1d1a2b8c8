//! What can go wrong while assigning devices, in three weights: a [`DeviceError`] stops
//! the guest (the hypervisor cannot build it as asked), a [`Refusal`] keeps one
//! requested device from the guest, and a [`DeviceNote`] says what the guest's DT lacks
//! that a kept node refers to.

use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;

use platform::dt::PciProblem;
use platform::info::PhysRange;

use super::assignment::EmulatedKind;
use crate::dtb::{FDT_HEADER_SIZE, FDT_MAGIC};
use crate::modules::RangeDisplay;
use crate::passthrough::PassthroughError;

/// Why the devices of a guest could not be decided at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceError {
    /// Fewer bytes than an FDT header.
    DtbTooShort { len: usize },
    /// The first word is not the FDT magic 0xd00dfeed.
    DtbBadMagic { found: u32 },
    /// The header's `totalsize` runs past the bytes given.
    DtbTruncated { totalsize: u32, len: usize },
    /// The blob failed validation.
    DtbMalformed { detail: String },
    /// The request asks for no vCPU (the emulated GIC is sized for them).
    NoVcpus,
    /// The root's `#address-cells`/`#size-cells` cannot be read.
    RootCells(PassthroughError),
    /// A path given on the command line (`passthrough=`) names no node.
    PassthroughPathNotFound { path: String },
    /// A path given on the command line names two sibling nodes of the same name.
    PassthroughPathAmbiguous { path: String },
    /// The GIC or console node's path is shared by two sibling nodes.
    EmulatedPathAmbiguous { kind: EmulatedKind, path: String },
    /// The device to emulate is disabled, has no `reg`, or its parent bus is not
    /// memory-mapped.
    EmulatedNotMemoryMapped { kind: EmulatedKind, path: String },
    /// The device to emulate has a `reg` that cannot be translated.
    EmulatedMmio {
        kind: EmulatedKind,
        error: PassthroughError,
    },
    /// The GIC's `reg` lacks the distributor or the first redistributor region, or
    /// `#redistributor-regions` is malformed.
    GicReg { path: String, detail: &'static str },
    /// `vcpus` redistributor frames do not fit a `reg` entry (or the address space).
    RedistributorsTooLarge { vcpus: usize },
    /// An emulated device's frames overlap guest RAM or a hidden range: its accesses
    /// would not trap, or the hypervisor's memory would show.
    EmulatedOverlaps {
        kind: EmulatedKind,
        region: PhysRange,
        /// `"guest RAM"` or `"a hidden range"`.
        what: &'static str,
        other: PhysRange,
    },
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DtbTooShort { len } => write!(
                f,
                "host DTB is {len} bytes, shorter than the {FDT_HEADER_SIZE}-byte FDT header"
            ),
            Self::DtbBadMagic { found } => write!(
                f,
                "host DTB magic is {found:#010x}, expected {FDT_MAGIC:#010x}"
            ),
            Self::DtbTruncated { totalsize, len } => write!(
                f,
                "host DTB header says {totalsize} bytes but only {len} are there"
            ),
            Self::DtbMalformed { detail } => write!(f, "host DTB is malformed: {detail}"),
            Self::NoVcpus => f.write_str("the guest needs at least one vCPU"),
            Self::RootCells(error) => write!(f, "{error}"),
            Self::PassthroughPathNotFound { path } => write!(
                f,
                "passthrough={path}: the host DT has no such node (give the full path, unit \
                 addresses included, e.g. /pl031@9010000)"
            ),
            Self::PassthroughPathAmbiguous { path } => write!(
                f,
                "passthrough={path}: two nodes of the host DT have this path"
            ),
            Self::EmulatedPathAmbiguous { kind, path } => write!(
                f,
                "{path}: two nodes of the host DT have the path of the {kind} to emulate"
            ),
            Self::EmulatedNotMemoryMapped { kind, path } => write!(
                f,
                "{path}: the {kind} to emulate is disabled, has no reg or is not memory-mapped"
            ),
            Self::EmulatedMmio { kind, error } => {
                write!(f, "the {kind} to emulate: {error}")
            }
            Self::GicReg { path, detail } => write!(f, "{path}: {detail}"),
            Self::RedistributorsTooLarge { vcpus } => write!(
                f,
                "{vcpus} redistributor frames of 128 KiB do not fit the GIC's reg"
            ),
            Self::EmulatedOverlaps {
                kind,
                region,
                what,
                other,
            } => write!(
                f,
                "the emulated {kind} at {} overlaps {what} {}",
                RangeDisplay(*region),
                RangeDisplay(*other)
            ),
        }
    }
}

impl core::error::Error for DeviceError {}

/// Why a device's interrupts cannot be given to a guest as its emulated GIC's SPIs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InterruptProblem {
    /// No interrupt controller above the node (no `interrupt-parent` anywhere).
    NoInterruptParent,
    /// The interrupt parent is another controller (a GPIO block, a nexus, a second GIC).
    NotTheGic { parent: String },
    /// `interrupt-parent` or an `interrupts-extended` entry names a phandle no node has
    /// (or two nodes claim).
    UnknownParent { phandle: u32 },
    /// A PPI (or extended PPI): it belongs to a CPU, not to a device one guest owns.
    Private { intid: u32 },
    /// A specifier type or number the emulated GIC does not implement (extended SPIs,
    /// SPI numbers past 987).
    Unsupported { kind: u32, number: u32 },
    /// A property of the wrong length.
    Malformed { property: &'static str, len: usize },
}

impl fmt::Display for InterruptProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoInterruptParent => f.write_str("no interrupt controller above the node"),
            Self::NotTheGic { parent } => write!(
                f,
                "its interrupt parent is {parent}, not the GIC (only GIC SPIs can be routed to \
                 a guest)"
            ),
            Self::UnknownParent { phandle } => write!(
                f,
                "its interrupt parent, phandle {phandle:#x}, names no single node"
            ),
            Self::Private { intid } => write!(
                f,
                "it uses INTID {intid}, a PPI: per-CPU interrupts are not a device's to give"
            ),
            Self::Unsupported { kind, number } => write!(
                f,
                "GIC interrupt type {kind} number {number} is not an SPI the emulated GIC has"
            ),
            Self::Malformed { property, len } => {
                write!(f, "{property} has a malformed length of {len} bytes")
            }
        }
    }
}

/// A phandle reference that cannot be followed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReferenceProblem {
    /// No node has the phandle, or two nodes do.
    Dangling { property: String, phandle: u32 },
    /// The property is not a whole number of entries, or a provider lacks the
    /// `#...-cells` that says how long its entries are.
    Malformed { property: String },
}

impl fmt::Display for ReferenceProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dangling { property, phandle } => write!(
                f,
                "{property} refers to phandle {phandle:#x}, which names no single node"
            ),
            Self::Malformed { property } => {
                write!(f, "{property} cannot be read as phandles and specifiers")
            }
        }
    }
}

/// Why a requested device is not given to the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Another node has the same path, so the guest's DT could not tell them apart.
    AmbiguousPath,
    /// Not a device: the root, memory, `/cpus`, `/chosen`, `/aliases`, reserved memory,
    /// or part of what every guest gets already (timer, PMU, PSCI).
    NotAssignable { what: &'static str },
    /// The hypervisor's own: the GIC and its ITS, the console UART, an SMMU.
    HypervisorOwned { what: &'static str },
    /// `status` says the node is not in use.
    Disabled { status: String },
    /// An ancestor's `status` says it is not in use.
    InsideDisabled { ancestor: String },
    /// QEMU's fw-cfg.
    FirmwareConfig,
    /// A flash bank.
    Flash,
    /// It can master DMA, and no IOMMU confines it.
    DmaWithoutIommu { evidence: &'static str },
    /// It has an `interrupt-map` (an interrupt nexus), which is not translated (but for
    /// an assigned PCI host bridge's, whose SPIs are passed through).
    InterruptNexus,
    /// A PCI host bridge's requester ID `rid` masters DMA through no SMMU the hypervisor
    /// drives: `smmu` is the phandle of the SMMU its `iommu-map` names, `None` when no
    /// entry maps it.
    IommuNotDriven { rid: u32, smmu: Option<u32> },
    /// A PCI host bridge's `iommu-map`, `bus-range` or `interrupt-map` cannot be decoded.
    PciMap(PciProblem),
    /// A node below the requested one is refused for `reason`; the whole subtree would
    /// go with it.
    Contains { path: String, reason: Box<Refusal> },
    /// It has a `reg` but its parent bus is not memory-mapped (an I2C or SPI device
    /// goes with its controller).
    NotMemoryMapped,
    /// Its `reg` cannot be translated.
    Mmio(PassthroughError),
    /// Its MMIO (rounded to pages) overlaps guest RAM.
    OverlapsGuestRam { region: PhysRange, ram: PhysRange },
    /// Its MMIO (rounded to pages) overlaps a hidden range.
    OverlapsHidden {
        region: PhysRange,
        hidden: PhysRange,
    },
    /// Its MMIO (rounded to pages) overlaps an emulated device's frames, which must
    /// trap.
    OverlapsEmulated {
        region: PhysRange,
        kind: EmulatedKind,
    },
    /// One of its pages also holds registers of `other`, which the guest is not given.
    SharesPage { region: PhysRange, other: String },
    /// Its interrupts cannot be given.
    Interrupts(InterruptProblem),
    /// It raises the SPI `intid`, which `other` (the hypervisor's) raises too.
    SharesInterrupt { intid: u32, other: String },
    /// A phandle it refers to cannot be followed.
    Reference(ReferenceProblem),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AmbiguousPath => f.write_str("another node has the same path"),
            Self::NotAssignable { what } => write!(f, "not a device to assign: {what}"),
            Self::HypervisorOwned { what } => write!(f, "the hypervisor's own device: {what}"),
            Self::Disabled { status } => write!(f, "disabled (status = \"{status}\")"),
            Self::InsideDisabled { ancestor } => write!(f, "inside {ancestor}, which is disabled"),
            Self::FirmwareConfig => f.write_str(
                "QEMU fw-cfg: it exposes the host's boot configuration and has a DMA interface",
            ),
            Self::Flash => f.write_str("flash: it holds the host's firmware and its variables"),
            Self::DmaWithoutIommu { evidence } => write!(
                f,
                "DMA-capable ({evidence}) and the hypervisor has no IOMMU (SMMU) support yet: \
                 it could read and write any memory, the hypervisor's included"
            ),
            Self::InterruptNexus => {
                f.write_str("it has an interrupt-map, which is not translated for guests")
            }
            Self::IommuNotDriven { rid, smmu } => {
                let (bus, device, function) = (rid >> 8, (rid >> 3) & 0x1f, rid & 7);
                write!(
                    f,
                    "DMA-capable: no IOMMU the hypervisor controls: requester ID {rid:#06x} \
                     ({bus:02x}:{device:02x}.{function}) "
                )?;
                match smmu {
                    Some(smmu) => write!(
                        f,
                        "masters DMA through the SMMU with phandle {smmu:#x}, which the \
                         hypervisor does not drive"
                    ),
                    None => f.write_str("has no iommu-map entry, so its StreamID is unknown"),
                }
            }
            Self::PciMap(problem) => write!(f, "PCI host bridge: {problem}"),
            Self::Contains { path, reason } => write!(f, "it contains {path}: {reason}"),
            Self::NotMemoryMapped => f.write_str(
                "it has a reg but its bus is not memory-mapped (assign its controller instead)",
            ),
            Self::Mmio(error) => write!(f, "its MMIO cannot be translated: {error}"),
            Self::OverlapsGuestRam { region, ram } => write!(
                f,
                "its MMIO {} overlaps guest RAM {}",
                RangeDisplay(*region),
                RangeDisplay(*ram)
            ),
            Self::OverlapsHidden { region, hidden } => write!(
                f,
                "its MMIO {} overlaps the hidden range {}",
                RangeDisplay(*region),
                RangeDisplay(*hidden)
            ),
            Self::OverlapsEmulated { region, kind } => write!(
                f,
                "its MMIO {} overlaps the emulated {kind}",
                RangeDisplay(*region)
            ),
            Self::SharesPage { region, other } => write!(
                f,
                "its MMIO page {} also holds registers of {other}, which the guest is not given",
                RangeDisplay(*region)
            ),
            Self::Interrupts(problem) => write!(f, "interrupts: {problem}"),
            Self::SharesInterrupt { intid, other } => write!(
                f,
                "its interrupt INTID {intid} is also {other}'s, which the hypervisor uses"
            ),
            Self::Reference(problem) => write!(f, "{problem}"),
        }
    }
}

impl Refusal {
    /// The reason itself, below any [`Refusal::Contains`] wrapping.
    pub fn innermost(&self) -> &Refusal {
        match self {
            Self::Contains { reason, .. } => reason.innermost(),
            other => other,
        }
    }
}

/// Something the guest's DT lacks or ignores, worth a warning but not an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceNote {
    /// A kept node refers to a node that is not kept, so that reference dangles in the
    /// guest's DT (its driver may not probe).
    ReferenceNotKept {
        from: String,
        property: String,
        target: String,
        why: NotKeptReason,
    },
    /// A kept node's reference cannot be followed at all.
    BadReference {
        from: String,
        problem: ReferenceProblem,
    },
    /// The host DT has no `arm,gic-v3`: the guest gets no interrupt controller.
    NoGicV3,
    /// `stdout-path` is missing or names no `arm,pl011`: the guest gets no emulated
    /// console.
    NoPl011Console { stdout_path: Option<String> },
    /// Two sibling nodes share this path; neither is given to the guest.
    DuplicatePath { path: String },
    /// The console's interrupt is not a GIC SPI: the emulated PL011 has none
    /// ([`super::EmulatedDevice::intid`] is `None`); output works without it.
    ConsoleInterrupt {
        path: String,
        problem: InterruptProblem,
    },
}

/// Why a referenced node is not in the guest's DT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotKeptReason {
    /// It (or a node below it) has a `reg` and was not assigned.
    HasMmio,
    /// It lies inside this device, which has MMIO and was not assigned.
    InsideDevice { device: String },
    /// It is the hypervisor's (the ITS, an SMMU).
    HypervisorOwned,
}

impl fmt::Display for DeviceNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReferenceNotKept {
                from,
                property,
                target,
                why,
            } => {
                write!(
                    f,
                    "{from}: {property} refers to {target}, which the guest does not get: "
                )?;
                match why {
                    NotKeptReason::HasMmio => f.write_str("it has MMIO and is not assigned"),
                    NotKeptReason::InsideDevice { device } => {
                        write!(
                            f,
                            "it lies inside {device}, which has MMIO and is not assigned"
                        )
                    }
                    NotKeptReason::HypervisorOwned => f.write_str("it is the hypervisor's"),
                }
            }
            Self::BadReference { from, problem } => write!(f, "{from}: {problem}"),
            Self::NoGicV3 => f.write_str(
                "the host DT has no arm,gic-v3 node: the guest gets no interrupt controller",
            ),
            Self::NoPl011Console { stdout_path } => match stdout_path {
                Some(path) => write!(
                    f,
                    "stdout-path \"{path}\" names no arm,pl011: the guest gets no emulated console"
                ),
                None => f.write_str("no stdout-path: the guest gets no emulated console"),
            },
            Self::DuplicatePath { path } => write!(
                f,
                "{path}: two sibling nodes have this path; neither is given to the guest"
            ),
            Self::ConsoleInterrupt { path, problem } => write!(
                f,
                "{path}: the console's interrupt: {problem}; the emulated PL011 has none"
            ),
        }
    }
}
