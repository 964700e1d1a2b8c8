//! The guest's device tree, written node by node from the host's.
//!
//! The host DTB is read with `dtoolkit` (which checks the whole blob before handing out
//! nodes) and the guest DTB written with `vm-fdt`. Rules:
//!
//! - **Memory**: every host memory node is dropped; one `memory@<base>` node per guest
//!   RAM range takes the place of the first. Host memory never shows: nodes deeper in
//!   the tree with `device_type = "memory"` are dropped too.
//! - **/chosen**: `bootargs` is the guest's, `linux,initrd-start`/`-end` (64-bit) name
//!   the placed initrd, `kaslr-seed`/`rng-seed` come from the spec (the host's seeds are
//!   the hypervisor's randomness and are never passed on), `stdout-path`,
//!   `linux,stdout-path` and the cells/`ranges` that kept children need are copied.
//!   Every other host property goes: the host's
//!   `bootargs` and initrd are the hypervisor's, `xen,*` are for a hypervisor,
//!   `linux,elfcorehdr`/`linux,usable-memory-range` describe the host's kdump. Child
//!   nodes with a `multiboot,*` or `xen,*` compatible (boot modules, dom0less domains)
//!   are dropped; others (e.g. a simple-framebuffer) are copied.
//! - **/cpus**: the first `vcpus` cpu nodes in DT order (named `cpu@...` with
//!   `device_type = "cpu"`, as `platform::dt` counts them) are kept, with
//!   `enable-method = "psci"` (a spin-table `cpu-release-addr` is dropped: the guest
//!   starts its CPUs through the hypervisor's PSCI). `cpu-map` keeps only the entries
//!   of kept CPUs; emptied sockets, clusters and cores disappear, and kept
//!   `socketN`/`clusterN`/`coreN`/`threadN` are renumbered from 0, because Linux stops
//!   at the first missing number. The header's `boot_cpuid_phys` is the host's when
//!   that CPU is kept, else the first kept CPU's. Nodes Linux would still take for a CPU
//!   (the name or the `device_type` alone) are dropped.
//! - **PSCI**: the node compatible with `arm,psci`, `arm,psci-0.2` or `arm,psci-1.0`
//!   (added at the root if there is none) gets
//!   `compatible = "arm,psci-1.0", "arm,psci-0.2"` and the spec's `method`; the PSCI 0.1
//!   function IDs (`cpu_on`, ...) are dropped so the guest uses the standard ones.
//! - **Reserved memory**: /memreserve/ entries are clipped to guest RAM;
//!   `/reserved-memory` children are kept only when every `reg` range lies inside guest
//!   RAM (children without `reg`, allocated by the guest from its own RAM, are kept).
//! - **Devices**: only what [`crate::devices`] decided the guest gets, as its
//!   [`DeviceAssignment`] lays out. Kept devices (the emulated PL011, passthrough
//!   devices, the timer, PMU and PSCI, and the nodes they refer to) are copied with
//!   their properties and phandles intact (`xen,passthrough` included, so that building
//!   again from the guest's DT gives the same DT); the emulated GIC is the host's node with the assignment's `reg`
//!   (distributor + one redistributor region sized for the vCPUs) and without
//!   `#redistributor-regions`, `redistributor-stride`, `interrupts` (the maintenance
//!   interrupt), the MBI properties and its ITS. A passthrough PCI host bridge (given
//!   only when the hypervisor drives its SMMUs) is copied without `iommu-map`,
//!   `iommu-map-mask`, `msi-map`, `msi-map-mask` and `msi-parent`: the guest has neither
//!   the SMMU nor the ITS, and its `interrupt-map` names the emulated GIC's phandle,
//!   which stays. An ancestor of kept nodes that is not kept itself (a
//!   `simple-bus`, `/firmware`) is a container: it keeps only `compatible`,
//!   `#address-cells`, `#size-cells`, `ranges`, `dma-ranges`, `device_type`, `phandle`,
//!   `linux,phandle`, `status`, and `interrupt-parent` when that names a kept node.
//!   Everything else (fw-cfg, flash, PCIe, virtio-mmio, the ITS, unassigned UARTs, RTCs,
//!   GPIO blocks, `__symbols__`...) is dropped.
//! - **/aliases** keeps only the aliases that name a kept device.
//! - A kept top-level device whose `reg` overlaps a hidden range is an error: the
//!   hypervisor's memory would show.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use dtoolkit::fdt::{Fdt, FdtNode, FdtProperty};
use dtoolkit::{Node, Property};
use platform::info::{Conduit, PhysRange};
use vm_fdt::{FdtReserveEntry, FdtWriter, FdtWriterNode};

use crate::devices::{
    self, DeviceAssignment, DeviceError, DeviceRequest, GuestTreeLayout, NodeRole,
};
use crate::modules::RangeDisplay;

/// booting.rst: the DTB must not exceed 2 MiB.
pub const MAX_GUEST_DTB_SIZE: usize = 2 << 20;

/// `cpu-map` nesting allowed (socket/cluster/cluster/core/thread is five).
const MAX_CPU_MAP_DEPTH: usize = 8;
use crate::dtb::{self, FDT_HEADER_SIZE, FDT_MAGIC};

/// What the guest's device tree must say.
#[derive(Clone, Copy, Debug)]
pub struct GuestDtSpec<'s> {
    /// Guest RAM (IPA = PA), in any order, not overlapping.
    pub memory: &'s [PhysRange],
    /// The guest's command line (`None`: no `bootargs` property).
    pub bootargs: Option<&'s str>,
    /// The initrd's final place ([`crate::placement::Placement::initrd`]).
    pub initrd: Option<PhysRange>,
    /// How many CPUs the guest gets: the first `vcpus` cpu nodes of the host.
    pub vcpus: usize,
    /// How the guest calls PSCI (the hypervisor traps it): `Conduit::Hvc`.
    pub psci_conduit: Conduit,
    /// Ranges that must appear nowhere in the guest's view (hypervisor memory, crash
    /// region, the host DTB).
    pub hidden: &'s [PhysRange],
    /// `/chosen/kaslr-seed` for the guest, e.g. from RNDR.
    pub kaslr_seed: Option<u64>,
    /// `/chosen/rng-seed` for the guest.
    pub rng_seed: Option<&'s [u8]>,
}

/// Why the guest DTB could not be built.
#[derive(Debug, PartialEq, Eq)]
pub enum GuestDtError {
    /// Fewer bytes than an FDT header.
    HostDtbTooShort { len: usize },
    /// The first word is not the FDT magic 0xd00dfeed.
    HostDtbBadMagic { found: u32 },
    /// The header's `totalsize` runs past the bytes given.
    HostDtbTruncated { totalsize: u32, len: usize },
    /// The blob failed validation (bad offsets, tokens, names, strings...).
    HostDtbMalformed { detail: String },
    /// The spec lists no guest RAM.
    NoGuestMemory,
    /// Two guest RAM ranges overlap.
    GuestMemoryOverlap { first: PhysRange, second: PhysRange },
    /// A guest RAM range covers a hidden range.
    GuestMemoryIncludesHidden {
        memory: PhysRange,
        hidden: PhysRange,
    },
    /// The initrd is not inside guest RAM.
    InitrdOutsideGuestMemory { initrd: PhysRange },
    /// The spec's bootargs contain a NUL byte, which a DT string cannot hold.
    BootargsContainNul,
    /// `vcpus` is 0.
    NoVcpus,
    /// More vCPUs asked for than the host DT describes.
    TooManyVcpus { requested: usize, available: usize },
    /// The host DT has no `/cpus` node.
    NoCpusNode,
    /// `#address-cells`/`#size-cells` we cannot decode (only 1 or 2 are).
    UnsupportedCells {
        path: String,
        address_cells: u32,
        size_cells: u32,
    },
    /// A property we must read has the wrong length.
    MalformedProperty {
        path: String,
        property: &'static str,
        len: usize,
    },
    /// A guest RAM address or size does not fit the root's cells.
    AddressTooWide { value: u64, cells: u32 },
    /// A copied device's `reg` overlaps a hidden range.
    HiddenRangeInDevice {
        path: String,
        reg: PhysRange,
        hidden: PhysRange,
    },
    /// `cpu-map` nests deeper than any binding allows.
    CpuMapTooDeep { path: String },
    /// The writer refused a node or property (e.g. a name the DT spec does not allow).
    Write { path: String, error: vm_fdt::Error },
    /// The result is over 2 MiB.
    TooLarge { size: usize },
    /// The devices could not be assigned ([`build_guest_dtb`] assigns them itself).
    Devices(DeviceError),
    /// The [`DeviceAssignment`] given to [`build_guest_dtb_for`] was made for another
    /// host DTB or another vCPU count.
    AssignmentMismatch { what: &'static str },
}

impl fmt::Display for GuestDtError {
    /// Sends each variant to the helper for its family (the groups of
    /// [`build_guest_dtb`]'s error list), so that adding a variant fails to compile until
    /// it is given a family (and so a message).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HostDtbTooShort { .. }
            | Self::HostDtbBadMagic { .. }
            | Self::HostDtbTruncated { .. }
            | Self::HostDtbMalformed { .. } => self.write_host_blob_error(f),
            Self::NoCpusNode
            | Self::UnsupportedCells { .. }
            | Self::MalformedProperty { .. }
            | Self::CpuMapTooDeep { .. } => self.write_host_tree_error(f),
            Self::NoGuestMemory
            | Self::GuestMemoryOverlap { .. }
            | Self::GuestMemoryIncludesHidden { .. }
            | Self::InitrdOutsideGuestMemory { .. }
            | Self::AddressTooWide { .. }
            | Self::BootargsContainNul
            | Self::NoVcpus
            | Self::TooManyVcpus { .. } => self.write_spec_error(f),
            Self::HiddenRangeInDevice { .. } | Self::Write { .. } | Self::TooLarge { .. } => {
                self.write_output_error(f)
            }
            Self::Devices(_) | Self::AssignmentMismatch { .. } => self.write_device_error(f),
        }
    }
}

impl GuestDtError {
    /// Words a host DTB that cannot be opened at all (too short, bad magic, truncated,
    /// failing validation): the blob's bytes are at fault, not any node.
    fn write_host_blob_error(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HostDtbTooShort { len } => write!(
                f,
                "host DTB is {len} bytes, shorter than the {FDT_HEADER_SIZE}-byte FDT header"
            ),
            Self::HostDtbBadMagic { found } => write!(
                f,
                "host DTB magic is {found:#010x}, expected {FDT_MAGIC:#010x}"
            ),
            Self::HostDtbTruncated { totalsize, len } => write!(
                f,
                "host DTB header says {totalsize} bytes but only {len} are there"
            ),
            Self::HostDtbMalformed { detail } => write!(f, "host DTB is malformed: {detail}"),
            other => other.write_misrouted(f),
        }
    }

    /// Words a well-formed host DTB whose content the guest DT cannot be derived from:
    /// no `/cpus`, cells or property lengths we cannot decode, a `cpu-map` too deep.
    /// Each names the host node at fault.
    fn write_host_tree_error(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCpusNode => f.write_str("host DT has no /cpus node"),
            Self::UnsupportedCells {
                path,
                address_cells,
                size_cells,
            } => write!(
                f,
                "{path}: #address-cells = {address_cells}, #size-cells = {size_cells} is not \
                 supported (1 or 2 each)"
            ),
            Self::MalformedProperty {
                path,
                property,
                len,
            } => write!(
                f,
                "{path}: property {property} has a malformed length of {len} bytes"
            ),
            Self::CpuMapTooDeep { path } => write!(
                f,
                "{path}: cpu-map nests deeper than {MAX_CPU_MAP_DEPTH} levels"
            ),
            other => other.write_misrouted(f),
        }
    }

    /// Words a [`GuestDtSpec`] that cannot describe a bootable guest: its RAM, initrd,
    /// bootargs or vCPU count. These are the caller's values, so they are quoted as given.
    fn write_spec_error(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoGuestMemory => f.write_str("guest DT spec lists no guest RAM"),
            Self::GuestMemoryOverlap { first, second } => write!(
                f,
                "guest RAM ranges {} and {} overlap",
                RangeDisplay(*first),
                RangeDisplay(*second)
            ),
            Self::GuestMemoryIncludesHidden { memory, hidden } => write!(
                f,
                "guest RAM range {} covers hidden range {}",
                RangeDisplay(*memory),
                RangeDisplay(*hidden)
            ),
            Self::InitrdOutsideGuestMemory { initrd } => write!(
                f,
                "initrd {} is not inside guest RAM",
                RangeDisplay(*initrd)
            ),
            Self::AddressTooWide { value, cells } => write!(
                f,
                "guest RAM value {value:#x} does not fit the root's {cells} cell(s)"
            ),
            Self::BootargsContainNul => {
                f.write_str("guest bootargs contain a NUL byte, which a DT string cannot hold")
            }
            Self::NoVcpus => f.write_str("the guest needs at least one vCPU"),
            Self::TooManyVcpus {
                requested,
                available,
            } => write!(
                f,
                "{requested} vCPUs requested but the host DT describes only {available} CPUs"
            ),
            other => other.write_misrouted(f),
        }
    }

    /// Words a guest DT that cannot be written as derived: a copied device would show
    /// hidden memory, the writer refused a node, or the result is over booting.rst's
    /// 2 MiB.
    fn write_output_error(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HiddenRangeInDevice { path, reg, hidden } => write!(
                f,
                "{path}: reg {} overlaps hidden range {}, which the guest must not see",
                RangeDisplay(*reg),
                RangeDisplay(*hidden)
            ),
            Self::Write { path, error } => write!(f, "cannot write guest DT node {path}: {error}"),
            Self::TooLarge { size } => write!(
                f,
                "guest DTB is {size} bytes, over the {MAX_GUEST_DTB_SIZE}-byte limit of booting.rst"
            ),
            other => other.write_misrouted(f),
        }
    }

    /// Words a guest DT whose devices cannot be decided, or were decided for another DT.
    fn write_device_error(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Devices(error) => write!(f, "guest devices: {error}"),
            Self::AssignmentMismatch { what } => write!(
                f,
                "the device assignment was made for another {what} than this guest DT's"
            ),
            other => other.write_misrouted(f),
        }
    }

    /// The fallback arm of the family helpers above. `fmt` never sends a variant to a
    /// helper of another family; should that change, the variant's `Debug` form still
    /// says what went wrong, where a panic or an empty message would not.
    fn write_misrouted(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Builds the guest's DTB from the host's (see the module docs for the rules), with the
/// devices [`devices::assign_devices`] gives a guest that asks for nothing on the
/// command line (`xen,passthrough` nodes are still assigned). The hypervisor uses
/// [`crate::plan::plan_guest_with_passthrough`], which also returns the assignment.
///
/// # Errors
///
/// - a bad host DTB: [`GuestDtError::HostDtbTooShort`], [`GuestDtError::HostDtbBadMagic`],
///   [`GuestDtError::HostDtbTruncated`], [`GuestDtError::HostDtbMalformed`],
///   [`GuestDtError::NoCpusNode`], [`GuestDtError::UnsupportedCells`],
///   [`GuestDtError::MalformedProperty`], [`GuestDtError::CpuMapTooDeep`];
/// - a bad spec: [`GuestDtError::NoGuestMemory`], [`GuestDtError::GuestMemoryOverlap`],
///   [`GuestDtError::GuestMemoryIncludesHidden`],
///   [`GuestDtError::InitrdOutsideGuestMemory`], [`GuestDtError::BootargsContainNul`],
///   [`GuestDtError::NoVcpus`], [`GuestDtError::TooManyVcpus`],
///   [`GuestDtError::AddressTooWide`];
/// - the devices: [`GuestDtError::Devices`];
/// - the two disagreeing: [`GuestDtError::HiddenRangeInDevice`];
/// - output problems: [`GuestDtError::Write`], [`GuestDtError::TooLarge`].
pub fn build_guest_dtb(host_dtb: &[u8], spec: &GuestDtSpec<'_>) -> Result<Vec<u8>, GuestDtError> {
    check_spec(spec)?;
    let host = open_host_dtb(host_dtb)?;
    // The DT's own errors (blob, cells, CPU count) come before any device error.
    Cells::of(&host.root(), "/")?;
    CpuSelection::choose(&host.root(), spec.vcpus)?;
    let request = DeviceRequest {
        vcpus: spec.vcpus,
        guest_ram: spec.memory,
        hidden: spec.hidden,
        passthrough_paths: &[],
        smmus_driven: &[],
        marked_passthrough: true,
    };
    let assignment = devices::assign_opened(&host, &request).map_err(GuestDtError::Devices)?;
    build_guest_dtb_for(host_dtb, spec, &assignment)
}

/// Builds the guest's DTB from the host's with the devices `assignment` gives it (made
/// by [`devices::assign_devices`] from the same host DTB and vCPU count), so that the
/// DT names exactly the devices the hypervisor emulates and maps.
///
/// # Errors
///
/// As [`build_guest_dtb`], and [`GuestDtError::AssignmentMismatch`] when `assignment`
/// was made for another host DTB or vCPU count.
pub fn build_guest_dtb_for(
    host_dtb: &[u8],
    spec: &GuestDtSpec<'_>,
    assignment: &DeviceAssignment,
) -> Result<Vec<u8>, GuestDtError> {
    let memory = check_spec(spec)?;
    let host = open_host_dtb(host_dtb)?;
    let layout = &assignment.layout;
    if layout.host_fingerprint != devices::host_fingerprint(&host) {
        return Err(GuestDtError::AssignmentMismatch { what: "host DTB" });
    }
    if layout.vcpus != spec.vcpus {
        return Err(GuestDtError::AssignmentMismatch { what: "vCPU count" });
    }
    let root = host.root();
    let root_cells = Cells::of(&root, "/")?;
    let cpus = CpuSelection::choose(&root, spec.vcpus)?;

    let reservations = guest_reservations(&host, &memory)?;
    let mut writer =
        FdtWriter::new_with_mem_reserv(&reservations).map_err(|error| GuestDtError::Write {
            path: "/memreserve/".to_string(),
            error,
        })?;
    writer.set_boot_cpuid_phys(cpus.boot_cpuid(host.boot_cpuid_phys()));

    let mut builder = Builder {
        writer,
        spec,
        layout,
        memory,
        root_cells,
        cpus,
        cpus_seen: 0,
        path: String::new(),
        memory_written: false,
        chosen_written: false,
        psci_written: false,
    };
    builder.copy_tree(root)?;
    let dtb = builder
        .writer
        .finish()
        .map_err(|error| GuestDtError::Write {
            path: "/".to_string(),
            error,
        })?;
    if dtb.len() > MAX_GUEST_DTB_SIZE {
        return Err(GuestDtError::TooLarge { size: dtb.len() });
    }
    Ok(dtb)
}

/// Checks the spec (RAM against itself and the hidden ranges, the initrd, bootargs,
/// vCPUs) and returns guest RAM sorted by base.
pub(crate) fn check_spec(spec: &GuestDtSpec<'_>) -> Result<Vec<PhysRange>, GuestDtError> {
    let mut memory = spec.memory.to_vec();
    memory.sort_unstable();
    if memory.is_empty() {
        return Err(GuestDtError::NoGuestMemory);
    }
    for pair in memory.windows(2) {
        if let [first, second] = pair
            && first.overlaps(second)
        {
            return Err(GuestDtError::GuestMemoryOverlap {
                first: *first,
                second: *second,
            });
        }
    }
    for range in &memory {
        if let Some(hidden) = spec.hidden.iter().find(|hidden| hidden.overlaps(range)) {
            return Err(GuestDtError::GuestMemoryIncludesHidden {
                memory: *range,
                hidden: *hidden,
            });
        }
    }
    if let Some(initrd) = spec.initrd
        && !covered_by(&initrd, &memory)
    {
        return Err(GuestDtError::InitrdOutsideGuestMemory { initrd });
    }
    if spec.bootargs.is_some_and(|args| args.contains('\0')) {
        return Err(GuestDtError::BootargsContainNul);
    }
    if spec.vcpus == 0 {
        return Err(GuestDtError::NoVcpus);
    }
    Ok(memory)
}

/// Whether `range` lies inside the union of `sorted` (adjacent ranges join up).
fn covered_by(range: &PhysRange, sorted: &[PhysRange]) -> bool {
    let mut next = range.base;
    for region in sorted {
        if region.contains(next) {
            next = region.end();
            if next >= range.end() {
                return true;
            }
        }
    }
    false
}

/// Validates the host DTB (sliced to its `totalsize`).
fn open_host_dtb(bytes: &[u8]) -> Result<Fdt<'_>, GuestDtError> {
    dtb::open(bytes).map_err(|error| match error {
        dtb::OpenError::TooShort { len } => GuestDtError::HostDtbTooShort { len },
        dtb::OpenError::BadMagic { found } => GuestDtError::HostDtbBadMagic { found },
        dtb::OpenError::Truncated { totalsize, len } => {
            GuestDtError::HostDtbTruncated { totalsize, len }
        }
        dtb::OpenError::Malformed { detail } => GuestDtError::HostDtbMalformed { detail },
    })
}

/// Host /memreserve/ entries clipped to guest RAM, sorted and merged.
fn guest_reservations(
    host: &Fdt<'_>,
    memory: &[PhysRange],
) -> Result<Vec<FdtReserveEntry>, GuestDtError> {
    let mut clipped: Vec<PhysRange> = Vec::new();
    for entry in host.memory_reservations() {
        let Some(reserved) = saturating_range(entry.address(), entry.size()) else {
            continue;
        };
        clipped.extend(memory.iter().filter_map(|ram| intersection(ram, &reserved)));
    }
    clipped.sort_unstable();
    let mut merged: Vec<PhysRange> = Vec::with_capacity(clipped.len());
    for range in clipped {
        match merged.last_mut() {
            Some(last) if range.base <= last.end() => {
                last.size = last.size.max(range.end() - last.base);
            }
            _ => merged.push(range),
        }
    }
    merged
        .iter()
        .map(|range| {
            FdtReserveEntry::new(range.base, range.size).map_err(|error| GuestDtError::Write {
                path: "/memreserve/".to_string(),
                error,
            })
        })
        .collect()
}

fn intersection(a: &PhysRange, b: &PhysRange) -> Option<PhysRange> {
    let base = a.base.max(b.base);
    let end = a.end().min(b.end());
    PhysRange::new(base, end.checked_sub(base)?)
}

/// `[base, base + size)` with the end clamped to the top of the address space; `None`
/// when empty.
fn saturating_range(base: u64, size: u64) -> Option<PhysRange> {
    PhysRange::new(base, size.min(u64::MAX - base))
}

/// A node's `#address-cells`/`#size-cells` (what its children's `reg` uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cells {
    address: u32,
    size: u32,
}

impl Cells {
    /// Reads the cells a node gives its children (DT spec defaults 2 and 1).
    fn of(node: &FdtNode<'_>, path: &str) -> Result<Self, GuestDtError> {
        Ok(Self {
            address: u32_property(node, "#address-cells", path)?.unwrap_or(2),
            size: u32_property(node, "#size-cells", path)?.unwrap_or(1),
        })
    }

    /// Fails unless both are 1 or 2 (what a `u64` holds and a `reg` range needs).
    fn check_range_cells(self, path: &str) -> Result<Self, GuestDtError> {
        if (1..=2).contains(&self.address) && (1..=2).contains(&self.size) {
            Ok(self)
        } else {
            Err(GuestDtError::UnsupportedCells {
                path: path.to_string(),
                address_cells: self.address,
                size_cells: self.size,
            })
        }
    }

    /// Decodes a `reg` value into (address, size) pairs.
    fn decode_reg(self, value: &[u8], path: &str) -> Result<Vec<(u64, u64)>, GuestDtError> {
        let cells = self.check_range_cells(path)?;
        let address_bytes = cells.address as usize * 4;
        let entry_bytes = address_bytes + cells.size as usize * 4;
        let chunks = value.chunks_exact(entry_bytes);
        if !chunks.remainder().is_empty() {
            return Err(GuestDtError::MalformedProperty {
                path: path.to_string(),
                property: "reg",
                len: value.len(),
            });
        }
        Ok(chunks
            .map(|entry| {
                let (address, size) = entry.split_at(address_bytes);
                (be_uint(address), be_uint(size))
            })
            .collect())
    }

    /// Encodes one (address, size) pair for a `reg` property.
    fn encode_reg(self, range: &PhysRange) -> Result<Vec<u8>, GuestDtError> {
        let mut bytes = Vec::with_capacity(16);
        for (value, cells) in [(range.base, self.address), (range.size, self.size)] {
            if cells == 1 {
                let narrow = u32::try_from(value)
                    .map_err(|_| GuestDtError::AddressTooWide { value, cells })?;
                bytes.extend_from_slice(&narrow.to_be_bytes());
            } else {
                bytes.extend_from_slice(&value.to_be_bytes());
            }
        }
        Ok(bytes)
    }
}

/// A big-endian number of at most 8 bytes (callers pass 4 or 8).
fn be_uint(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0u64, |acc, &byte| (acc << 8) | u64::from(byte))
}

/// A one-cell property, `None` when absent.
fn u32_property(
    node: &FdtNode<'_>,
    name: &'static str,
    path: &str,
) -> Result<Option<u32>, GuestDtError> {
    let Some(property) = node.property(name) else {
        return Ok(None);
    };
    let value = property.value();
    value
        .try_into()
        .map(|word: [u8; 4]| Some(u32::from_be_bytes(word)))
        .map_err(|_| GuestDtError::MalformedProperty {
            path: path.to_string(),
            property: name,
            len: value.len(),
        })
}

/// A property's bytes, borrowed from the DTB rather than from the property handle.
fn bytes_of<'a>(property: &FdtProperty<'a>) -> &'a [u8] {
    // Converting to `&[u8]` cannot fail.
    property.value_as::<&'a [u8]>().unwrap_or(&[])
}

/// The strings of a string-list property (empty when absent).
fn strings<'a>(node: &FdtNode<'a>, name: &str) -> impl Iterator<Item = &'a [u8]> {
    node.property(name)
        .map(|property| bytes_of(&property))
        .unwrap_or(&[])
        .split(|&byte| byte == 0)
        .filter(|s| !s.is_empty())
}

fn is_memory_node(node: &FdtNode<'_>) -> bool {
    node.name_without_address() == "memory" || strings(node, "device_type").any(|s| s == b"memory")
}

/// A node below the root with `device_type = "memory"`: host RAM all the same.
fn is_ram_below_root(node: &FdtNode<'_>) -> bool {
    strings(node, "device_type").any(|s| s == b"memory")
}

/// A CPU the guest may get: named `cpu` or `cpu@...` with `device_type = "cpu"` (its
/// first string), the rule `platform::dt` counts the host's CPUs, and so the vCPUs, by.
pub(crate) fn is_cpu_node(node: &FdtNode<'_>) -> bool {
    let device_type = node.property("device_type").map(|p| bytes_of(&p));
    node.name_without_address() == "cpu"
        && device_type.and_then(|value| value.split(|&b| b == 0).next()) == Some(b"cpu")
}

/// What Linux would also take for a CPU (the name or the `device_type` alone). Such a
/// node that is not an [`is_cpu_node`] CPU is dropped: the guest must see no CPU that
/// the hypervisor does not give it.
pub(crate) fn looks_like_cpu_node(node: &FdtNode<'_>) -> bool {
    node.name_without_address() == "cpu" || strings(node, "device_type").any(|s| s == b"cpu")
}

/// A PSCI node: one of Linux's `psci_of_match` compatibles, as in `platform::dt` (a
/// device whose compatible merely starts with `arm,psci` keeps its identity).
fn is_psci_node(node: &FdtNode<'_>) -> bool {
    strings(node, "compatible")
        .any(|s| matches!(s, b"arm,psci" | b"arm,psci-0.2" | b"arm,psci-1.0"))
}

/// Boot modules and hypervisor-only nodes under /chosen.
fn is_hypervisor_only(node: &FdtNode<'_>) -> bool {
    strings(node, "compatible").any(|s| s.starts_with(b"multiboot,") || s.starts_with(b"xen,"))
}

/// Which host CPUs the guest keeps.
struct CpuSelection {
    keep: usize,
    /// Phandles of kept cpu nodes (what `cpu-map` entries point at).
    kept_phandles: Vec<u32>,
    /// MPIDRs (low 32 bits) of kept cpu nodes, in DT order.
    kept_ids: Vec<u32>,
}

impl CpuSelection {
    fn choose(root: &FdtNode<'_>, vcpus: usize) -> Result<Self, GuestDtError> {
        let cpus = root.child("cpus").ok_or(GuestDtError::NoCpusNode)?;
        let cells = Cells::of(&cpus, "/cpus")?;
        let cpu_nodes: Vec<FdtNode<'_>> = cpus.children().filter(is_cpu_node).collect();
        if vcpus > cpu_nodes.len() {
            return Err(GuestDtError::TooManyVcpus {
                requested: vcpus,
                available: cpu_nodes.len(),
            });
        }
        let mut kept_phandles = Vec::new();
        let mut kept_ids = Vec::new();
        for cpu in cpu_nodes.iter().take(vcpus) {
            let path = format!("/cpus/{}", cpu.name());
            for name in ["phandle", "linux,phandle"] {
                kept_phandles.extend(u32_property(cpu, name, &path)?);
            }
            if let Some(reg) = cpu.property("reg") {
                let value = reg.value();
                // A cpu `reg` is the MPIDR in one or two cells.
                let id = match cells.address {
                    1 => value.get(..4),
                    2 => value.get(..8),
                    _ => None,
                }
                .ok_or(GuestDtError::MalformedProperty {
                    path,
                    property: "reg",
                    len: value.len(),
                })?;
                // boot_cpuid_phys holds the low 32 bits of the MPIDR.
                kept_ids.push(be_uint(id) as u32);
            }
        }
        Ok(Self {
            keep: vcpus,
            kept_phandles,
            kept_ids,
        })
    }

    fn boot_cpuid(&self, host_boot_cpuid: u32) -> u32 {
        if self.kept_ids.contains(&host_boot_cpuid) {
            host_boot_cpuid
        } else {
            self.kept_ids.first().copied().unwrap_or(0)
        }
    }
}

/// What a node's children are, which decides how each child is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    Root,
    Chosen,
    Cpus,
    CpuMap,
    /// `/reserved-memory`; `None` when its children's addresses cannot be checked
    /// (unsupported cells or a non-identity `ranges`): they are all dropped.
    ReservedMemory(Option<Cells>),
    /// Copied as they are (below `/chosen`, `/cpus` outside `cpu-map`, `/aliases`, and
    /// kept `/reserved-memory` children).
    Plain,
    /// Below the root outside the nodes above: kept as the device layout says.
    Devices,
}

/// How a kept node's own properties are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Properties {
    Copy,
    /// Copied without the maps that name the SMMU and the ITS.
    PciHostBridge,
    Chosen,
    Psci,
    Cpu,
    EmulatedGic,
    Container,
    Aliases,
}

/// What becomes of a host node.
enum Decision {
    Drop,
    /// Drop it and write the guest's memory nodes in its place (first memory node only).
    ReplaceWithGuestMemory,
    Keep {
        name: String,
        properties: Properties,
        scope: Scope,
    },
}

impl Decision {
    /// Keeps a node under `name`, its properties written as `properties` says and its
    /// children treated as `scope` says.
    fn keep(name: String, properties: Properties, scope: Scope) -> Self {
        Self::Keep {
            name,
            properties,
            scope,
        }
    }

    /// Keeps a node with no role of its own in the guest DT: its properties copied (a
    /// PSCI node's rewritten to the guest's conduit) and its children plain nodes.
    fn keep_plain(node: &FdtNode<'_>, name: String) -> Self {
        let properties = if is_psci_node(node) {
            Properties::Psci
        } else {
            Properties::Copy
        };
        Self::keep(name, properties, Scope::Plain)
    }

    /// A node below the root that only the device layout keeps.
    fn from_layout(node: &FdtNode<'_>, name: String, role: Option<NodeRole>) -> Self {
        let properties = match role {
            None => return Self::Drop,
            Some(NodeRole::Device) if is_psci_node(node) => Properties::Psci,
            Some(NodeRole::Device) => Properties::Copy,
            Some(NodeRole::EmulatedGic) => Properties::EmulatedGic,
            Some(NodeRole::PciHostBridge) => Properties::PciHostBridge,
            Some(NodeRole::Container) => Properties::Container,
        };
        Self::keep(name, properties, Scope::Devices)
    }

    /// `decision` when `condition` holds; otherwise the node is dropped.
    fn keep_if(condition: bool, decision: Self) -> Self {
        if condition { decision } else { Self::Drop }
    }
}

/// A node being written, with the children still to visit.
struct Frame<'a> {
    children: alloc::vec::IntoIter<FdtNode<'a>>,
    handle: FdtWriterNode,
    /// `Builder::path` length before this node's name was added.
    parent_path_len: usize,
    scope: Scope,
    /// Next number for renamed `cpu-map` children: socket, cluster, core, thread.
    cpu_map_numbers: [u32; 4],
}

const CPU_MAP_LEVELS: [&str; 4] = ["socket", "cluster", "core", "thread"];

struct Builder<'s> {
    writer: FdtWriter,
    spec: &'s GuestDtSpec<'s>,
    layout: &'s GuestTreeLayout,
    memory: Vec<PhysRange>,
    root_cells: Cells,
    cpus: CpuSelection,
    /// Cpu nodes visited so far under /cpus.
    cpus_seen: usize,
    /// The current node's path ("" for the root).
    path: String,
    memory_written: bool,
    chosen_written: bool,
    psci_written: bool,
}

impl Builder<'_> {
    /// Walks the host tree depth first with an explicit stack (the host DT is input:
    /// its depth must not decide how much of the hypervisor's stack we use).
    fn copy_tree<'a>(&mut self, root: FdtNode<'a>) -> Result<(), GuestDtError> {
        let handle = self.begin_node("")?;
        self.write_properties(&root, Properties::Copy)?;
        let mut stack = Vec::from([Frame {
            children: root.children().collect::<Vec<_>>().into_iter(),
            handle,
            parent_path_len: 0,
            scope: Scope::Root,
            cpu_map_numbers: [0; 4],
        }]);

        while let Some(frame) = stack.last_mut() {
            let Some(child) = frame.children.next() else {
                if let Some(done) = stack.pop() {
                    if done.scope == Scope::Root {
                        self.write_missing_root_nodes()?;
                    }
                    self.end_node(done.handle)?;
                    self.path.truncate(done.parent_path_len);
                }
                continue;
            };
            let parent_path_len = self.path.len();
            self.path.push('/');
            self.path.push_str(child.name());
            let (name, properties, scope) = match self.decide(frame, &child)? {
                Decision::Keep {
                    name,
                    properties,
                    scope,
                } => (name, properties, scope),
                Decision::Drop => {
                    self.path.truncate(parent_path_len);
                    continue;
                }
                Decision::ReplaceWithGuestMemory => {
                    self.path.truncate(parent_path_len);
                    self.write_memory_nodes()?;
                    continue;
                }
            };
            let handle = self.begin_node(&name)?;
            self.write_properties(&child, properties)?;
            stack.push(Frame {
                children: child.children().collect::<Vec<_>>().into_iter(),
                handle,
                parent_path_len,
                scope,
                cpu_map_numbers: [0; 4],
            });
        }
        Ok(())
    }

    /// What to do with `child` of the node `frame` is writing: drop it, or keep it under
    /// which name, writing its properties how, with what kind of children.
    fn decide(
        &mut self,
        frame: &mut Frame<'_>,
        child: &FdtNode<'_>,
    ) -> Result<Decision, GuestDtError> {
        let name = child.name().to_string();
        Ok(match frame.scope {
            Scope::Root if is_memory_node(child) => Decision::ReplaceWithGuestMemory,
            // Host RAM described deeper (`platform::dt` takes it for RAM too) never shows.
            _ if is_ram_below_root(child) => Decision::Drop,
            Scope::Root if name == "chosen" => {
                Decision::keep(name, Properties::Chosen, Scope::Chosen)
            }
            Scope::Root if name == "cpus" => Decision::keep(name, Properties::Copy, Scope::Cpus),
            Scope::Root if child.name_without_address() == "reserved-memory" => {
                let scope = Scope::ReservedMemory(self.reserved_memory_cells(child)?);
                Decision::keep(name, Properties::Copy, scope)
            }
            Scope::Root if name == "aliases" => {
                Decision::keep(name, Properties::Aliases, Scope::Plain)
            }
            Scope::Root => {
                let role = self.layout.role(&self.path);
                // The emulated GIC's own frames were checked by the assignment (its
                // host `reg` is not what the guest sees).
                if matches!(role, Some(NodeRole::Device | NodeRole::PciHostBridge)) {
                    self.check_not_hidden(child)?;
                }
                Decision::from_layout(child, name, role)
            }
            Scope::Devices => Decision::from_layout(child, name, self.layout.role(&self.path)),
            Scope::Chosen if is_hypervisor_only(child) => Decision::Drop,
            Scope::Cpus if is_cpu_node(child) => {
                self.cpus_seen += 1;
                Decision::keep_if(
                    self.cpus_seen <= self.cpus.keep,
                    Decision::keep(name, Properties::Cpu, Scope::Plain),
                )
            }
            Scope::Cpus if looks_like_cpu_node(child) => Decision::Drop,
            Scope::Cpus if name == "cpu-map" => Decision::keep_if(
                self.has_kept_cpu(child, 0)?,
                Decision::keep(name, Properties::Copy, Scope::CpuMap),
            ),
            Scope::CpuMap => {
                if self.has_kept_cpu(child, 0)? {
                    let name = renumbered_cpu_map_name(&name, &mut frame.cpu_map_numbers);
                    Decision::keep(name, Properties::Copy, Scope::CpuMap)
                } else {
                    Decision::Drop
                }
            }
            Scope::ReservedMemory(cells) => Decision::keep_if(
                self.reserved_child_inside_guest_ram(child, cells)?,
                Decision::keep_plain(child, name),
            ),
            Scope::Chosen | Scope::Cpus | Scope::Plain => Decision::keep_plain(child, name),
        })
    }

    /// The cells of `/reserved-memory`, or `None` when its children cannot be checked.
    fn reserved_memory_cells(&self, node: &FdtNode<'_>) -> Result<Option<Cells>, GuestDtError> {
        let cells = Cells::of(node, &self.path)?;
        let identity = node
            .property("ranges")
            .is_some_and(|ranges| bytes_of(&ranges).is_empty());
        Ok((identity && cells.check_range_cells(&self.path).is_ok()).then_some(cells))
    }

    /// A `/reserved-memory` child stays when all its `reg` ranges lie in guest RAM (or
    /// it has no `reg`: the guest allocates it from its own RAM).
    fn reserved_child_inside_guest_ram(
        &self,
        child: &FdtNode<'_>,
        cells: Option<Cells>,
    ) -> Result<bool, GuestDtError> {
        let Some(reg) = child.property("reg") else {
            return Ok(true);
        };
        let Some(cells) = cells else {
            return Ok(false);
        };
        Ok(cells
            .decode_reg(reg.value(), &self.path)?
            .into_iter()
            .all(|(base, size)| {
                PhysRange::new(base, size).is_some_and(|range| covered_by(&range, &self.memory))
            }))
    }

    /// Top-level devices must not expose a hidden range through their `reg`.
    fn check_not_hidden(&self, child: &FdtNode<'_>) -> Result<(), GuestDtError> {
        let Some(reg) = child.property("reg") else {
            return Ok(());
        };
        for (base, size) in self.root_cells.decode_reg(reg.value(), &self.path)? {
            let Some(reg) = saturating_range(base, size) else {
                continue;
            };
            if let Some(hidden) = self.spec.hidden.iter().find(|h| h.overlaps(&reg)) {
                return Err(GuestDtError::HiddenRangeInDevice {
                    path: self.path.clone(),
                    reg,
                    hidden: *hidden,
                });
            }
        }
        Ok(())
    }

    /// Whether `node` or a descendant is a `cpu-map` entry for a kept CPU.
    fn has_kept_cpu(&self, node: &FdtNode<'_>, depth: usize) -> Result<bool, GuestDtError> {
        if depth > MAX_CPU_MAP_DEPTH {
            return Err(GuestDtError::CpuMapTooDeep {
                path: self.path.clone(),
            });
        }
        if let Some(phandle) = u32_property(node, "cpu", &self.path)?
            && self.cpus.kept_phandles.contains(&phandle)
        {
            return Ok(true);
        }
        for child in node.children() {
            if self.has_kept_cpu(&child, depth + 1)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn write_properties(
        &mut self,
        node: &FdtNode<'_>,
        properties: Properties,
    ) -> Result<(), GuestDtError> {
        match properties {
            Properties::Copy => self.copy_properties(node, |_| true),
            Properties::PciHostBridge => self.copy_properties(node, |name| {
                !devices::BRIDGE_PROPERTIES_DROPPED.contains(&name)
            }),
            Properties::EmulatedGic => self.write_emulated_gic_properties(node),
            Properties::Container => {
                let layout = self.layout;
                // A container's `interrupt-parent` is inherited by its kept children:
                // it stays when it names a node the guest has.
                let kept_parent = node
                    .property("interrupt-parent")
                    .and_then(|p| <[u8; 4]>::try_from(p.value()).ok())
                    .is_some_and(|phandle| layout.keeps_phandle(u32::from_be_bytes(phandle)));
                self.copy_properties(node, |name| {
                    matches!(
                        name,
                        "compatible"
                            | "#address-cells"
                            | "#size-cells"
                            | "ranges"
                            | "dma-ranges"
                            | "device_type"
                            | "phandle"
                            | "linux,phandle"
                            | "status"
                    ) || (name == "interrupt-parent" && kept_parent)
                })
            }
            Properties::Aliases => {
                let layout = self.layout;
                self.copy_properties_by_value(node, |name, value| {
                    matches!(name, "phandle" | "linux,phandle")
                        || value
                            .strip_suffix(b"\0")
                            .and_then(|path| core::str::from_utf8(path).ok())
                            .is_some_and(|path| layout.is_device(path))
                })
            }
            Properties::Chosen => self.write_chosen_properties(Some(node)),
            Properties::Psci => {
                self.write_psci_properties()?;
                self.copy_properties(node, |name| {
                    !matches!(
                        name,
                        "compatible" | "method" | "cpu_suspend" | "cpu_off" | "cpu_on" | "migrate"
                    )
                })
            }
            Properties::Cpu => {
                // `enable-method` is rewritten where it stands (added when missing).
                let mut enable_method_written = false;
                for property in node.properties() {
                    match property.name() {
                        "cpu-release-addr" => {}
                        "enable-method" => {
                            self.write(|w| w.property_string("enable-method", "psci"))?;
                            enable_method_written = true;
                        }
                        name => self.write(|w| w.property(name, property.value()))?,
                    }
                }
                if !enable_method_written {
                    self.write(|w| w.property_string("enable-method", "psci"))?;
                }
                Ok(())
            }
        }
    }

    /// The host GIC's properties with the emulated GIC's `reg` in place of its own (at
    /// the same position) and without what belongs to the physical GIC (see the module
    /// docs).
    fn write_emulated_gic_properties(&mut self, node: &FdtNode<'_>) -> Result<(), GuestDtError> {
        let layout = self.layout;
        for property in node.properties() {
            match property.name() {
                "reg" => self.write(|w| w.property("reg", &layout.gic_reg))?,
                "#redistributor-regions"
                | "redistributor-stride"
                | "interrupts"
                | "interrupts-extended"
                | "interrupt-names"
                | "msi-controller"
                | "mbi-ranges"
                | "mbi-alias"
                | devices::XEN_PASSTHROUGH => {}
                name => self.write(|w| w.property(name, property.value()))?,
            }
        }
        Ok(())
    }

    /// Copies the properties `keep` accepts, by name and value.
    fn copy_properties_by_value(
        &mut self,
        node: &FdtNode<'_>,
        keep: impl Fn(&str, &[u8]) -> bool,
    ) -> Result<(), GuestDtError> {
        for property in node.properties() {
            if keep(property.name(), property.value()) {
                self.write(|w| w.property(property.name(), property.value()))?;
            }
        }
        Ok(())
    }

    fn copy_properties(
        &mut self,
        node: &FdtNode<'_>,
        keep: impl Fn(&str) -> bool,
    ) -> Result<(), GuestDtError> {
        self.copy_properties_by_value(node, |name, _| keep(name))
    }

    fn write_chosen_properties(&mut self, host: Option<&FdtNode<'_>>) -> Result<(), GuestDtError> {
        self.chosen_written = true;
        if let Some(host) = host {
            self.copy_properties(host, |name| {
                matches!(
                    name,
                    "stdout-path"
                        | "linux,stdout-path"
                        | "#address-cells"
                        | "#size-cells"
                        | "ranges"
                )
            })?;
        }
        let spec = self.spec;
        if let Some(bootargs) = spec.bootargs {
            self.write(|w| w.property_string("bootargs", bootargs))?;
        }
        if let Some(initrd) = spec.initrd {
            self.write(|w| w.property_u64("linux,initrd-start", initrd.base))?;
            self.write(|w| w.property_u64("linux,initrd-end", initrd.end()))?;
        }
        if let Some(seed) = spec.kaslr_seed {
            self.write(|w| w.property_u64("kaslr-seed", seed))?;
        }
        if let Some(seed) = spec.rng_seed {
            self.write(|w| w.property("rng-seed", seed))?;
        }
        Ok(())
    }

    fn write_psci_properties(&mut self) -> Result<(), GuestDtError> {
        self.psci_written = true;
        let method = match self.spec.psci_conduit {
            Conduit::Hvc => "hvc",
            Conduit::Smc => "smc",
        };
        self.write(|w| w.property("compatible", b"arm,psci-1.0\0arm,psci-0.2\0"))?;
        self.write(|w| w.property_string("method", method))
    }

    fn write_memory_nodes(&mut self) -> Result<(), GuestDtError> {
        if self.memory_written {
            return Ok(());
        }
        self.memory_written = true;
        let cells = self.root_cells.check_range_cells("/")?;
        for range in self.memory.clone() {
            let reg = cells.encode_reg(&range)?;
            self.write_child(&format!("memory@{:x}", range.base), |builder| {
                builder.write(|w| w.property_string("device_type", "memory"))?;
                builder.write(|w| w.property("reg", &reg))
            })?;
        }
        Ok(())
    }

    /// Nodes the guest needs that the host DT lacked, appended to the root.
    fn write_missing_root_nodes(&mut self) -> Result<(), GuestDtError> {
        self.write_memory_nodes()?;
        if !self.chosen_written {
            self.write_child("chosen", |builder| builder.write_chosen_properties(None))?;
        }
        if !self.psci_written {
            self.write_child("psci", Self::write_psci_properties)?;
        }
        Ok(())
    }

    /// Writes a whole new child of the current node.
    fn write_child(
        &mut self,
        name: &str,
        properties: impl FnOnce(&mut Self) -> Result<(), GuestDtError>,
    ) -> Result<(), GuestDtError> {
        let parent_path_len = self.path.len();
        self.path.push('/');
        self.path.push_str(name);
        let handle = self.begin_node(name)?;
        properties(self)?;
        self.end_node(handle)?;
        self.path.truncate(parent_path_len);
        Ok(())
    }

    fn begin_node(&mut self, name: &str) -> Result<FdtWriterNode, GuestDtError> {
        let result = self.writer.begin_node(name);
        result.map_err(|error| self.write_error(error))
    }

    fn end_node(&mut self, handle: FdtWriterNode) -> Result<(), GuestDtError> {
        self.write(|w| w.end_node(handle))
    }

    fn write(
        &mut self,
        operation: impl FnOnce(&mut FdtWriter) -> vm_fdt::FdtWriterResult<()>,
    ) -> Result<(), GuestDtError> {
        let result = operation(&mut self.writer);
        result.map_err(|error| self.write_error(error))
    }

    fn write_error(&self, error: vm_fdt::Error) -> GuestDtError {
        GuestDtError::Write {
            path: if self.path.is_empty() {
                "/".to_string()
            } else {
                self.path.clone()
            },
            error,
        }
    }
}

/// `cluster3` becomes `cluster<next>` so kept siblings are numbered from 0 with no gap
/// (Linux's cpu-map parser stops at the first missing number). Other names stay.
fn renumbered_cpu_map_name(name: &str, next: &mut [u32; 4]) -> String {
    for (level, counter) in CPU_MAP_LEVELS.iter().zip(next.iter_mut()) {
        if let Some(digits) = name.strip_prefix(level)
            && !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
        {
            let renamed = format!("{level}{counter}");
            *counter += 1;
            return renamed;
        }
    }
    name.to_string()
}

#[cfg(test)]
mod tests;
