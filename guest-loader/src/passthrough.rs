//! The MMIO regions a device tree gives its devices, translated to CPU physical
//! addresses, and from them the MMIO a guest reaches directly: the hypervisor maps those
//! in stage 2 as device memory, and every other address outside guest RAM stays
//! unmapped and faults (which is how the emulated GIC and PL011 see the guest's
//! accesses).
//!
//! Which devices a guest gets is decided by [`crate::devices`]; its
//! [`crate::devices::DeviceAssignment::passthrough_regions`] is what stage 2 maps. This
//! module is the translation that decision uses (`MmioMap`, one entry per
//! memory-mapped node), plus three whole-tree views: [`device_regions`] (every device of a
//! tree), [`named_device_regions`] (the same, each region with its node's path, for
//! naming what an address hits) and [`passthrough_regions`] (a guest DTB's devices minus
//! the emulated ones).
//!
//! The tree is walked from the root with each node's `reg` translated to CPU physical
//! addresses through every ancestor's `ranges`, as Linux's `of_translate_address` does.
//! Rules:
//!
//! - **Devices**: every `reg` entry of a memory-mapped node is a region. A node is
//!   memory-mapped when it is a child of the root, or a child of a memory-mapped node that
//!   has `ranges`. A node whose parent has no `ranges` (an I2C or SPI device, a cpu, an
//!   MDIO PHY) is not, and neither is anything below it.
//! - **Translation**: a `reg` entry is read with its parent's `#address-cells` and
//!   `#size-cells` (2 and 1 when absent, per the DT spec). An empty `ranges` is the
//!   identity; a non-empty one maps child windows to parent windows. A `reg` entry must
//!   lie wholly inside one window of its parent, and a `ranges` window wholly inside one
//!   window of the grandparent: anything else is an error rather than a guess, since
//!   mapping past the end of a window could expose whatever the CPU sees there (RAM
//!   included). Only 1 or 2 address and size cells are decoded (3 for a PCI child
//!   address); other values are an error when a `reg` or `ranges` that needs them is
//!   read, and harmless otherwise.
//! - **PCI host bridges** (`device_type = "pci"` or `"pciex"`, which must have
//!   `#address-cells = <3>`): the `reg` (ECAM) is a region, and so is the CPU side of
//!   every `ranges` window in I/O (space code 0b01, an MMIO window on Arm), 32-bit memory
//!   (0b10) or 64-bit memory (0b11) space; configuration-space windows (0b00) are not.
//!   Children are not visited: their `reg` is configuration-space addressing.
//! - **The GIC** needs no special case in the translation: its `reg` entries
//!   (distributor, redistributors, and GICv2-compatible CPU/hyp/vcpu frames when listed)
//!   are regions, and its ITS child is translated through the GIC's (usually empty)
//!   `ranges`.
//! - **Skipped** with everything below them: nodes whose `status` is present and not
//!   `"okay"`/`"ok"` (`"disabled"`, `"reserved"`, `"fail"`...; Linux's
//!   `of_device_is_available` does not use them either); at the root, `memory` nodes,
//!   `/reserved-memory`, `/cpus`, `/chosen`, `/aliases` and the unit-address-less
//!   `/psci`, `/timer` and `/pmu`; anywhere, nodes with `device_type = "memory"` or
//!   `"cpu"`, PSCI (`arm,psci`, `arm,psci-0.2`, `arm,psci-1.0`: Linux's compatibles, so
//!   that a device whose compatible merely starts with `arm,psci` stays a device) and
//!   the architected system-register timer
//!   (`arm,armv8-timer`, `arm,armv7-timer`). The memory-mapped timer
//!   (`arm,armv7-timer-mem`) is an ordinary device.
//! - **Size 0**: a `reg` entry or `ranges` window of size 0 describes no bytes, and the
//!   DT spec does not forbid it, so it is skipped without error: mapping nothing exposes
//!   nothing.
//! - **Errors stay with their node**: `MmioMap` records a node whose `reg` or `ranges`
//!   cannot be read with its error and does not visit its children, so one bad device
//!   cannot stop another from being assigned. [`device_regions`] and
//!   [`passthrough_regions`] report the first such error (in DT order).
//! - **Result**: each region is rounded out to 4 KiB pages; the regions are then sorted
//!   by base and overlapping or adjacent ones merged. A range whose end, or whose end
//!   rounded up to a page, reaches 2^64 is an error (a [`PhysRange`] cannot end there,
//!   so the top page of the address space cannot be passed through).
//!
//! The caller still has to check the result against guest RAM and the hypervisor's own
//! ranges: this module reads only what the DT says about devices.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use dtoolkit::fdt::{Fdt, FdtNode};
use dtoolkit::{Node, Property};
use platform::info::PhysRange;

/// The granule regions are rounded out to.
pub const PASSTHROUGH_PAGE_SIZE: u64 = 4096;

use crate::dtb::{self, FDT_HEADER_SIZE, FDT_MAGIC};
/// Bits 24..=25 of a PCI address's first cell: the space code.
const PCI_SPACE_SHIFT: u32 = 24;
const PCI_SPACE_IO: u32 = 0b01;
const PCI_SPACE_MEM32: u32 = 0b10;
const PCI_SPACE_MEM64: u32 = 0b11;

/// Why the passthrough regions could not be worked out. Every variant about a node
/// carries its path (`/soc@0/serial@1000`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PassthroughError {
    /// Fewer bytes than an FDT header.
    DtbTooShort { len: usize },
    /// The first word is not the FDT magic 0xd00dfeed.
    DtbBadMagic { found: u32 },
    /// The header's `totalsize` runs past the bytes given.
    DtbTruncated { totalsize: u32, len: usize },
    /// The blob failed validation (bad offsets, tokens, names, strings...).
    DtbMalformed { detail: String },
    /// A property is not a whole number of the entries it holds (`reg`, `ranges`) or
    /// not one cell (`#address-cells`, `#size-cells`).
    MalformedProperty {
        path: String,
        property: &'static str,
        len: usize,
    },
    /// A cell count this module cannot decode (`which` says which, e.g.
    /// `"parent #address-cells"`), met while reading `property` of `path`.
    UnsupportedCells {
        path: String,
        property: &'static str,
        which: &'static str,
        value: u32,
    },
    /// A PCI host bridge whose `#address-cells` is not 3.
    PciAddressCells { path: String, address_cells: u32 },
    /// An entry of `property` whose end (or end rounded up to a page) reaches 2^64,
    /// either in its own bus's addresses or once translated (`base` and `size` are then
    /// the CPU physical ones).
    Overflow {
        path: String,
        property: &'static str,
        base: u64,
        size: u64,
    },
    /// An entry of `property` (in the parent bus's addresses) that no `ranges` window of
    /// the parent holds whole.
    OutsideParentRanges {
        path: String,
        property: &'static str,
        base: u64,
        size: u64,
    },
}

impl fmt::Display for PassthroughError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DtbTooShort { len } => write!(
                f,
                "DTB is {len} bytes, shorter than the {FDT_HEADER_SIZE}-byte FDT header"
            ),
            Self::DtbBadMagic { found } => {
                write!(f, "DTB magic is {found:#010x}, expected {FDT_MAGIC:#010x}")
            }
            Self::DtbTruncated { totalsize, len } => write!(
                f,
                "DTB header says {totalsize} bytes but only {len} are there"
            ),
            Self::DtbMalformed { detail } => write!(f, "DTB is malformed: {detail}"),
            Self::MalformedProperty {
                path,
                property,
                len,
            } => write!(
                f,
                "{path}: property {property} has a malformed length of {len} bytes"
            ),
            Self::UnsupportedCells {
                path,
                property,
                which,
                value,
            } => write!(
                f,
                "{path}: cannot decode {property}: {which} is {value}, only 1 or 2 are supported"
            ),
            Self::PciAddressCells {
                path,
                address_cells,
            } => write!(
                f,
                "{path}: PCI host bridge has #address-cells = {address_cells}, expected 3"
            ),
            Self::Overflow {
                path,
                property,
                base,
                size,
            } => write!(
                f,
                "{path}: {property} entry at {base:#x} of size {size:#x} runs past the end of \
                 the 64-bit address space"
            ),
            Self::OutsideParentRanges {
                path,
                property,
                base,
                size,
            } => write!(
                f,
                "{path}: {property} entry [{base:#x}, +{size:#x}) is not inside any ranges \
                 window of the parent bus"
            ),
        }
    }
}

impl core::error::Error for PassthroughError {}

/// The physical MMIO ranges of every device the device tree `dtb` describes (see the
/// module docs for the rules): page-aligned, sorted by base, with no two overlapping or
/// touching. This is the whole tree's view, whatever the guest is given; what a guest
/// may reach is [`crate::devices::DeviceAssignment::passthrough_regions`].
///
/// # Errors
///
/// - a bad blob: [`PassthroughError::DtbTooShort`], [`PassthroughError::DtbBadMagic`],
///   [`PassthroughError::DtbTruncated`], [`PassthroughError::DtbMalformed`];
/// - a `reg`, `ranges`, `#address-cells` or `#size-cells` of the wrong length:
///   [`PassthroughError::MalformedProperty`];
/// - cell counts that cannot be decoded where they are needed:
///   [`PassthroughError::UnsupportedCells`], [`PassthroughError::PciAddressCells`];
/// - an entry whose end (rounded up to a page) reaches 2^64: [`PassthroughError::Overflow`];
/// - an entry its parent bus does not route: [`PassthroughError::OutsideParentRanges`].
pub fn device_regions(dtb: &[u8]) -> Result<Vec<PhysRange>, PassthroughError> {
    let fdt = open_dtb(dtb)?;
    let map = MmioMap::of(&fdt)?;
    map.check()?;
    Ok(merge(
        map.in_use().flat_map(NodeMmio::page_ranges).collect(),
    ))
}

/// Every device region of the tree `dtb` with the path of the node it belongs to, for
/// naming what an address hits (the hypervisor's log of refused guest accesses). The
/// devices are [`device_regions`]' (same rules), but each `reg` entry and PCI window is
/// given as the DT states it, translated to CPU physical addresses and nothing more: not
/// rounded to pages and not merged, so that neighbours sharing a page (QEMU's 0x200-byte
/// virtio-mmio slots) keep their own names. In DT order, each node's `reg` entries before
/// its PCI windows; a node with several entries appears once per entry.
///
/// A node whose `reg` or `ranges` cannot be read is left out (its children were never
/// visited), where [`device_regions`] fails: the names are diagnostics, and one
/// unreadable node must not leave every other device unnamed.
///
/// # Errors
///
/// Only for the blob ([`PassthroughError::DtbTooShort`], [`PassthroughError::DtbBadMagic`],
/// [`PassthroughError::DtbTruncated`], [`PassthroughError::DtbMalformed`]) and for the
/// root's own `#address-cells`/`#size-cells` ([`PassthroughError::MalformedProperty`]).
pub fn named_device_regions(dtb: &[u8]) -> Result<Vec<(String, PhysRange)>, PassthroughError> {
    let fdt = open_dtb(dtb)?;
    let map = MmioMap::of(&fdt)?;
    Ok(map
        .in_use()
        .filter(|node| node.error.is_none())
        .flat_map(|node| node.cpu_ranges().map(|range| (node.path.clone(), range)))
        .collect())
}

/// The MMIO a guest reaches directly, read back from the guest DTB that
/// [`crate::guest_dt::build_guest_dtb`] wrote: [`device_regions`] without the devices
/// the hypervisor emulates (the first `arm,gic-v3` node with everything below it, and
/// the `arm,pl011` that `/chosen/stdout-path` names), whose frames must stay unmapped so
/// that every access traps. Such a DTB holds no other MMIO device than its passthrough
/// ones, so this equals the assignment's
/// [`crate::devices::DeviceAssignment::passthrough_regions`] (a test checks it); prefer
/// that one, which does not parse the DTB again.
///
/// # Errors
///
/// As [`device_regions`].
pub fn passthrough_regions(guest_dtb: &[u8]) -> Result<Vec<PhysRange>, PassthroughError> {
    let fdt = open_dtb(guest_dtb)?;
    let map = MmioMap::of(&fdt)?;
    map.check()?;
    let emulated = crate::devices::emulated_device_paths(&fdt);
    Ok(merge(
        map.in_use()
            .filter(|node| {
                !emulated
                    .iter()
                    .any(|root| crate::devices::is_same_or_below(&node.path, root))
            })
            .flat_map(NodeMmio::page_ranges)
            .collect(),
    ))
}

/// Validates the blob (sliced to its `totalsize`).
fn open_dtb(bytes: &[u8]) -> Result<Fdt<'_>, PassthroughError> {
    dtb::open(bytes).map_err(|error| match error {
        dtb::OpenError::TooShort { len } => PassthroughError::DtbTooShort { len },
        dtb::OpenError::BadMagic { found } => PassthroughError::DtbBadMagic { found },
        dtb::OpenError::Truncated { totalsize, len } => {
            PassthroughError::DtbTruncated { totalsize, len }
        }
        dtb::OpenError::Malformed { detail } => PassthroughError::DtbMalformed { detail },
    })
}

/// One `reg` entry or PCI window of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MappedRange {
    /// The address on the node's parent bus, as the DT writes it.
    pub bus: u64,
    /// Where the CPU sees it.
    pub cpu: PhysRange,
    /// `cpu` rounded out to [`PASSTHROUGH_PAGE_SIZE`] pages: what stage 2 would map.
    pub page: PhysRange,
}

/// What the walk found for one memory-mapped node (see the module docs).
#[derive(Clone, Debug)]
pub(crate) struct NodeMmio {
    /// `/soc/serial@1000`.
    pub path: String,
    /// The `reg` entries in order; `None` for an entry of size 0.
    pub reg: Vec<Option<MappedRange>>,
    /// A PCI host bridge's I/O and memory windows.
    pub windows: Vec<MappedRange>,
    /// Why the node's `reg` or `ranges` could not be read; its children were then not
    /// visited.
    pub error: Option<PassthroughError>,
    /// `status` is absent, `"okay"` or `"ok"`. A node that is not in use is recorded
    /// (its registers still share pages with its neighbours') but never a region, and
    /// its children are not visited.
    pub available: bool,
    parent: Parent,
}

impl NodeMmio {
    /// Every CPU physical range of the node (`reg` entries, then PCI windows).
    pub(crate) fn cpu_ranges(&self) -> impl Iterator<Item = PhysRange> + '_ {
        self.mapped().map(|range| range.cpu)
    }

    /// The same, rounded out to pages.
    pub(crate) fn page_ranges(&self) -> impl Iterator<Item = PhysRange> + '_ {
        self.mapped().map(|range| range.page)
    }

    fn mapped(&self) -> impl Iterator<Item = &MappedRange> + '_ {
        self.reg.iter().flatten().chain(&self.windows)
    }

    /// The parent bus's `#address-cells` and `#size-cells`: how a `reg` for this node is
    /// encoded.
    pub(crate) fn parent_cells(&self) -> (u32, u32) {
        (self.parent.cells.address, self.parent.cells.size)
    }
}

/// Every memory-mapped node of a tree with its translated `reg` (see the module docs),
/// in DT order.
pub(crate) struct MmioMap {
    nodes: Vec<NodeMmio>,
    spaces: Vec<Space>,
}

impl MmioMap {
    /// Walks the tree.
    ///
    /// # Errors
    ///
    /// Only for the root's own `#address-cells`/`#size-cells`; every other problem stays
    /// with its node ([`NodeMmio::error`]).
    pub(crate) fn of(fdt: &Fdt<'_>) -> Result<Self, PassthroughError> {
        let root = fdt.root();
        let mut walker = Walker {
            // Index 0: the root's children see CPU physical addresses unchanged.
            spaces: vec![Space::Identity],
            nodes: Vec::new(),
            path: String::new(),
        };
        let root_cells = walker.cells_of(&root)?;
        // An explicit stack: the DT is input, and its depth must not decide how much of
        // the hypervisor's stack is used.
        let mut stack = vec![Frame {
            children: root.children(),
            cells: root_cells,
            space: 0,
            parent_path_len: 0,
            is_root: true,
        }];
        while let Some(frame) = stack.last_mut() {
            let Some(node) = frame.children.next() else {
                if let Some(done) = stack.pop() {
                    walker.path.truncate(done.parent_path_len);
                }
                continue;
            };
            let parent_path_len = walker.path.len();
            walker.path.push('/');
            walker.path.push_str(node.name());
            let parent = Parent {
                cells: frame.cells,
                space: frame.space,
                is_root: frame.is_root,
            };
            match walker.visit(&node, parent) {
                Some((cells, space)) => stack.push(Frame {
                    children: node.children(),
                    cells,
                    space,
                    parent_path_len,
                    is_root: false,
                }),
                None => walker.path.truncate(parent_path_len),
            }
        }
        Ok(Self {
            nodes: walker.nodes,
            spaces: walker.spaces,
        })
    }

    /// Every memory-mapped node, in use or not.
    pub(crate) fn nodes(&self) -> &[NodeMmio] {
        &self.nodes
    }

    /// The memory-mapped nodes in use (the devices).
    pub(crate) fn in_use(&self) -> impl Iterator<Item = &NodeMmio> + '_ {
        self.nodes.iter().filter(|node| node.available)
    }

    /// The node at `path`, when it is memory-mapped (in use or not).
    pub(crate) fn node(&self, path: &str) -> Option<&NodeMmio> {
        self.nodes.iter().find(|node| node.path == path)
    }

    /// The first error of a node in use, in DT order.
    pub(crate) fn check(&self) -> Result<(), PassthroughError> {
        match self.in_use().find_map(|node| node.error.as_ref()) {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    /// Translates one more range written on `node`'s parent bus (e.g. a `reg` entry the
    /// caller resizes), with the rules of the module docs; `None` for size 0.
    pub(crate) fn map_for(
        &self,
        node: &NodeMmio,
        bus: u64,
        size: u64,
    ) -> Result<Option<MappedRange>, PassthroughError> {
        map_range(
            &self.spaces,
            node.parent.space,
            bus,
            size,
            "reg",
            &node.path,
        )
    }
}

/// A node being visited, with the children still to visit.
struct Frame<'a> {
    children: <FdtNode<'a> as Node>::Children<'a>,
    /// The node's `#address-cells`/`#size-cells` (what its children's `reg` uses).
    cells: Cells,
    /// Index in [`Walker::spaces`] of the address space the node's children live in.
    space: usize,
    /// [`Walker::path`] length before this node's name was added.
    parent_path_len: usize,
    is_root: bool,
}

/// What a node needs from its parent.
#[derive(Clone, Copy, Debug)]
struct Parent {
    cells: Cells,
    space: usize,
    is_root: bool,
}

/// How a bus's addresses become CPU physical addresses.
enum Space {
    /// They are CPU physical addresses (the root, and below empty `ranges`).
    Identity,
    /// Only these windows are routed (a non-empty `ranges`, already composed with every
    /// ancestor's).
    Windows(Vec<Window>),
}

/// `[child, child + size)` on the bus is `[cpu, cpu + size)` for the CPU; neither end
/// overflows and `size` is not zero.
#[derive(Clone, Copy)]
struct Window {
    child: u64,
    cpu: u64,
    size: u64,
}

struct Walker {
    /// Bus address spaces met so far; frames refer to them by index so that a bus with
    /// empty `ranges` shares its parent's.
    spaces: Vec<Space>,
    /// Memory-mapped nodes found so far.
    nodes: Vec<NodeMmio>,
    /// The current node's path ("" for the root).
    path: String,
}

impl Walker {
    /// Records `node` (when it is a device) and returns the cells and address space of
    /// its children when they are to be visited (`None`: skip them).
    fn visit(&mut self, node: &FdtNode<'_>, parent: Parent) -> Option<(Cells, usize)> {
        if is_skipped(node, parent.is_root) {
            return None;
        }
        let available = is_available(node);
        let mut record = NodeMmio {
            path: self.display_path(),
            reg: Vec::new(),
            windows: Vec::new(),
            error: None,
            available,
            parent,
        };
        let children = match self.read(node, parent, &mut record) {
            Ok(children) => children,
            Err(error) => {
                record.error = Some(error);
                None
            }
        };
        self.nodes.push(record);
        children.filter(|_| available)
    }

    /// Fills `record` with the node's regions; returns what [`Self::visit`] does.
    fn read(
        &mut self,
        node: &FdtNode<'_>,
        parent: Parent,
        record: &mut NodeMmio,
    ) -> Result<Option<(Cells, usize)>, PassthroughError> {
        if let Some(reg) = node.property("reg") {
            record.reg = self.reg_entries(reg.value(), parent)?;
        }
        if is_pci_host_bridge(node) {
            let cells = self.cells_of(node)?;
            if cells.address != 3 {
                return Err(PassthroughError::PciAddressCells {
                    path: self.path.clone(),
                    address_cells: cells.address,
                });
            }
            if let Some(ranges) = node.property("ranges") {
                record.windows = self.pci_windows(ranges.value(), cells, parent)?;
            }
            return Ok(None);
        }
        let Some(ranges) = node.property("ranges") else {
            // The children are not memory-mapped (I2C, SPI, MDIO...).
            return Ok(None);
        };
        let cells = self.cells_of(node)?;
        let space = if ranges.value().is_empty() {
            parent.space
        } else {
            let windows = self.windows(ranges.value(), cells, parent)?;
            self.spaces.push(Space::Windows(windows));
            self.spaces.len() - 1
        };
        Ok(Some((cells, space)))
    }

    /// The node's `reg` entries, translated to CPU physical addresses.
    fn reg_entries(
        &self,
        reg: &[u8],
        parent: Parent,
    ) -> Result<Vec<Option<MappedRange>>, PassthroughError> {
        const PROPERTY: &str = "reg";
        let address = self.decodable(PROPERTY, "parent #address-cells", parent.cells.address)?;
        let size = self.decodable(PROPERTY, "parent #size-cells", parent.cells.size)?;
        let mut entries = Vec::new();
        for entry in self.entries(reg, PROPERTY, address + size)? {
            let (base, rest) = entry.split_at(address * 4);
            let (base, size) = (be_uint(base), be_uint(rest));
            entries.push(map_range(
                &self.spaces,
                parent.space,
                base,
                size,
                PROPERTY,
                &self.path,
            )?);
        }
        Ok(entries)
    }

    /// The CPU side of a PCI host bridge's I/O and memory windows.
    fn pci_windows(
        &self,
        ranges: &[u8],
        cells: Cells,
        parent: Parent,
    ) -> Result<Vec<MappedRange>, PassthroughError> {
        const PROPERTY: &str = "ranges";
        let parent_address =
            self.decodable(PROPERTY, "parent #address-cells", parent.cells.address)?;
        let size = self.decodable(PROPERTY, "#size-cells", cells.size)?;
        let mut windows = Vec::new();
        for entry in self.entries(ranges, PROPERTY, 3 + parent_address + size)? {
            let (child, rest) = entry.split_at(3 * 4);
            let (base, size) = rest.split_at(parent_address * 4);
            let (base, size) = (be_uint(base), be_uint(size));
            let phys_hi = child
                .first_chunk::<4>()
                .map_or(0, |hi| u32::from_be_bytes(*hi));
            let space_code = (phys_hi >> PCI_SPACE_SHIFT) & 0b11;
            if !matches!(space_code, PCI_SPACE_IO | PCI_SPACE_MEM32 | PCI_SPACE_MEM64) {
                continue;
            }
            windows.extend(map_range(
                &self.spaces,
                parent.space,
                base,
                size,
                PROPERTY,
                &self.path,
            )?);
        }
        Ok(windows)
    }

    /// A bus's non-empty `ranges`, composed with its parent's address space.
    fn windows(
        &self,
        ranges: &[u8],
        cells: Cells,
        parent: Parent,
    ) -> Result<Vec<Window>, PassthroughError> {
        const PROPERTY: &str = "ranges";
        let child_address = self.decodable(PROPERTY, "#address-cells", cells.address)?;
        let parent_address =
            self.decodable(PROPERTY, "parent #address-cells", parent.cells.address)?;
        let size = self.decodable(PROPERTY, "#size-cells", cells.size)?;
        let mut windows = Vec::new();
        for entry in self.entries(ranges, PROPERTY, child_address + parent_address + size)? {
            let (child, rest) = entry.split_at(child_address * 4);
            let (base, size) = rest.split_at(parent_address * 4);
            let (child, base, size) = (be_uint(child), be_uint(base), be_uint(size));
            if size == 0 {
                continue;
            }
            if child.checked_add(size).is_none() {
                return Err(overflow(&self.path, PROPERTY, child, size));
            }
            if let Some(cpu) =
                translate(&self.spaces, parent.space, base, size, PROPERTY, &self.path)?
            {
                windows.push(Window { child, cpu, size });
            }
        }
        Ok(windows)
    }

    /// Splits a `reg`/`ranges` value into entries of `cells` cells.
    fn entries<'v>(
        &self,
        value: &'v [u8],
        property: &'static str,
        cells: usize,
    ) -> Result<core::slice::ChunksExact<'v, u8>, PassthroughError> {
        let chunks = value.chunks_exact(cells * 4);
        if chunks.remainder().is_empty() {
            Ok(chunks)
        } else {
            Err(PassthroughError::MalformedProperty {
                path: self.path.clone(),
                property,
                len: value.len(),
            })
        }
    }

    /// `value` cells as a count, when it is 1 or 2 (what a `u64` holds).
    fn decodable(
        &self,
        property: &'static str,
        which: &'static str,
        value: u32,
    ) -> Result<usize, PassthroughError> {
        match value {
            1 => Ok(1),
            2 => Ok(2),
            _ => Err(PassthroughError::UnsupportedCells {
                path: self.path.clone(),
                property,
                which,
                value,
            }),
        }
    }

    /// Reads the cells a node gives its children (DT spec defaults 2 and 1).
    fn cells_of(&self, node: &FdtNode<'_>) -> Result<Cells, PassthroughError> {
        Ok(Cells {
            address: self.u32_property(node, "#address-cells")?.unwrap_or(2),
            size: self.u32_property(node, "#size-cells")?.unwrap_or(1),
        })
    }

    fn u32_property(
        &self,
        node: &FdtNode<'_>,
        name: &'static str,
    ) -> Result<Option<u32>, PassthroughError> {
        let Some(property) = node.property(name) else {
            return Ok(None);
        };
        let value = property.value();
        value
            .try_into()
            .map(|word: [u8; 4]| Some(u32::from_be_bytes(word)))
            .map_err(|_| PassthroughError::MalformedProperty {
                path: self.display_path(),
                property: name,
                len: value.len(),
            })
    }

    fn display_path(&self) -> String {
        if self.path.is_empty() {
            "/".to_string()
        } else {
            self.path.clone()
        }
    }
}

/// `[bus, bus + size)` of the bus `space`, translated and rounded out to pages (`None`
/// for size 0). `path` and `property` name the entry in errors.
fn map_range(
    spaces: &[Space],
    space: usize,
    bus: u64,
    size: u64,
    property: &'static str,
    path: &str,
) -> Result<Option<MappedRange>, PassthroughError> {
    let Some(cpu) = translate(spaces, space, bus, size, property, path)? else {
        return Ok(None);
    };
    let page_start = cpu & !(PASSTHROUGH_PAGE_SIZE - 1);
    let cpu_range = PhysRange::new(cpu, size);
    let page = cpu
        .checked_add(size)
        .and_then(|end| end.checked_next_multiple_of(PASSTHROUGH_PAGE_SIZE))
        .and_then(|end| PhysRange::new(page_start, end - page_start));
    match (cpu_range, page) {
        (Some(cpu), Some(page)) => Ok(Some(MappedRange { bus, cpu, page })),
        _ => Err(overflow(path, property, cpu, size)),
    }
}

/// Where `[base, base + size)` of the bus `space` is for the CPU (`None` for size 0).
fn translate(
    spaces: &[Space],
    space: usize,
    base: u64,
    size: u64,
    property: &'static str,
    path: &str,
) -> Result<Option<u64>, PassthroughError> {
    if size == 0 {
        return Ok(None);
    }
    let Some(end) = base.checked_add(size) else {
        return Err(overflow(path, property, base, size));
    };
    match spaces.get(space) {
        Some(Space::Windows(windows)) => windows
            .iter()
            .find(|window| {
                // Window ends never overflow (checked when they were made).
                base >= window.child && end <= window.child + window.size
            })
            .map(|window| Some(window.cpu + (base - window.child)))
            .ok_or_else(|| PassthroughError::OutsideParentRanges {
                path: path.to_string(),
                property,
                base,
                size,
            }),
        Some(Space::Identity) | None => Ok(Some(base)),
    }
}

fn overflow(path: &str, property: &'static str, base: u64, size: u64) -> PassthroughError {
    PassthroughError::Overflow {
        path: if path.is_empty() {
            "/".to_string()
        } else {
            path.to_string()
        },
        property,
        base,
        size,
    }
}

/// A node's `#address-cells`/`#size-cells`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cells {
    address: u32,
    size: u32,
}

/// Sorts page-aligned regions and merges overlapping or adjacent ones.
pub(crate) fn merge(mut regions: Vec<PhysRange>) -> Vec<PhysRange> {
    regions.sort_unstable();
    let mut merged: Vec<PhysRange> = Vec::with_capacity(regions.len());
    for region in regions {
        match merged.last_mut() {
            Some(last) if region.base <= last.end() => {
                last.size = last.size.max(region.end() - last.base);
            }
            _ => merged.push(region),
        }
    }
    merged
}

/// A big-endian number of at most 8 bytes (callers pass 4 or 8).
fn be_uint(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0u64, |acc, &byte| (acc << 8) | u64::from(byte))
}

/// The strings of a string-list property (empty when absent).
fn strings<'a>(node: &FdtNode<'a>, name: &str) -> impl Iterator<Item = &'a [u8]> {
    node.property(name)
        .and_then(|property| property.value_as::<&'a [u8]>().ok())
        .unwrap_or(&[])
        .split(|&byte| byte == 0)
        .filter(|s| !s.is_empty())
}

/// Nodes that are not devices, whatever their `reg` says (see the module docs).
fn is_skipped(node: &FdtNode<'_>, at_root: bool) -> bool {
    let root_skip = at_root
        && (matches!(
            node.name_without_address(),
            "memory" | "reserved-memory" | "cpus" | "chosen" | "aliases"
        ) || matches!(node.name(), "psci" | "timer" | "pmu"));
    root_skip
        || strings(node, "device_type").any(|s| s == b"memory" || s == b"cpu")
        || strings(node, "compatible").any(|s| {
            matches!(
                s,
                b"arm,psci"
                    | b"arm,psci-0.2"
                    | b"arm,psci-1.0"
                    | b"arm,armv8-timer"
                    | b"arm,armv7-timer"
            )
        })
}

/// `status` absent, `"okay"` or `"ok"`.
fn is_available(node: &FdtNode<'_>) -> bool {
    node.property("status").is_none_or(|status| {
        let value = status.value();
        let value = value.strip_suffix(b"\0").unwrap_or(value);
        value == b"okay" || value == b"ok"
    })
}

fn is_pci_host_bridge(node: &FdtNode<'_>) -> bool {
    strings(node, "device_type").any(|s| s == b"pci" || s == b"pciex")
}
