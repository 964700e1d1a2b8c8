//! What can be wrong with a device tree, said precisely enough to fix it.
//!
//! Errors own their data (short copies of node paths and values) instead of borrowing the
//! blob, so that they can cross the boot code's `Result`s without a lifetime.

use core::fmt;

use arrayvec::ArrayString;

use super::maps::PciProblem;
use crate::info::PhysRange;

/// Bytes kept of a node path or property value quoted in an error.
pub const DT_TEXT_CAPACITY: usize = 64;

/// A short owned copy of text from the device tree (a node path, a property value).
/// Longer text keeps its end, since the end of a path names the node, after a `...`.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct DtText(ArrayString<DT_TEXT_CAPACITY>);

impl DtText {
    const ELISION: &'static str = "...";

    /// Copies `text`, keeping its last bytes (on a character boundary) if it is too long.
    pub fn new(text: &str) -> Self {
        let mut out = ArrayString::new();
        if text.len() <= DT_TEXT_CAPACITY {
            // Cannot fail: the length was just checked.
            let _ = out.try_push_str(text);
            return Self(out);
        }
        let keep = DT_TEXT_CAPACITY - Self::ELISION.len();
        let mut start = text.len() - keep;
        while !text.is_char_boundary(start) {
            start += 1;
        }
        let _ = out.try_push_str(Self::ELISION);
        let _ = out.try_push_str(text.get(start..).unwrap_or(""));
        Self(out)
    }

    /// Builds text from formatting arguments, truncating (at the end) what does not fit.
    pub(crate) fn from_fmt(args: fmt::Arguments<'_>) -> Self {
        struct Truncating(ArrayString<DT_TEXT_CAPACITY>);
        impl fmt::Write for Truncating {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                for c in s.chars() {
                    if self.0.try_push(c).is_err() {
                        break;
                    }
                }
                Ok(())
            }
        }
        let mut out = Truncating(ArrayString::new());
        let _ = fmt::write(&mut out, args);
        Self(out.0)
    }

    /// Text that is not UTF-8, shown as a lossy copy (invalid bytes become `?`).
    pub(crate) fn lossy(bytes: &[u8]) -> Self {
        let text = bytes.split(|&b| b == 0).next().unwrap_or_default();
        match core::str::from_utf8(text) {
            Ok(text) => Self::new(text),
            Err(_) => {
                let mut out = ArrayString::new();
                for &b in text.iter().take(DT_TEXT_CAPACITY) {
                    let c = if b.is_ascii_graphic() || b == b' ' {
                        b as char
                    } else {
                        '?'
                    };
                    let _ = out.try_push(c);
                }
                Self(out)
            }
        }
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for DtText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for DtText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Where a reserved range in an error came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReservationOrigin {
    /// The header's memory reservation block.
    MemReserve,
    /// A `/reserved-memory` child (its path).
    Node(DtText),
}

/// One side of an overlap between reservations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReservationSite {
    pub range: PhysRange,
    pub origin: ReservationOrigin,
}

/// A defect in the structure block, found by the validating walk that runs before the
/// `fdt` crate sees the blob (that crate panics or mis-walks on these).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StructureProblem {
    /// A token that is not BEGIN_NODE, END_NODE, PROP, NOP or END.
    UnknownToken(u32),
    /// FDT_NOP: legal, but `fdt` 0.1.5 loses nodes or panics on it; [`super::remove_nops`]
    /// compacts them out of a blob the caller owns, and the parser refuses any left.
    NopToken,
    /// A token (or its name or value) running past the end of the block.
    TokenOutOfBounds,
    /// The block does not start with the root node.
    NoRootNode,
    /// The root node has a name (it must be empty).
    RootHasName,
    /// A node or token after the root node's END_NODE other than FDT_END.
    AfterRoot,
    /// A node name without a terminating NUL inside the block.
    UnterminatedName,
    /// A node or property name that is not UTF-8.
    NameNotUtf8,
    /// A property outside any node.
    PropertyOutsideNode,
    /// A property after a child node (all properties come first).
    PropertyAfterChild,
    /// A property value running past the end of the block.
    ValueOutOfBounds { len: u32 },
    /// A property name offset outside the strings block, or its name not terminated there.
    NameOffsetOutOfBounds { name_offset: u32 },
    /// Nodes nested deeper than the limit.
    TooDeep { limit: usize },
    /// END_NODE without an open node.
    UnbalancedEndNode,
    /// The block ends (or FDT_END comes) while nodes are still open.
    UnexpectedEnd,
}

impl fmt::Display for StructureProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownToken(token) => write!(f, "unknown token {token:#x}"),
            Self::NopToken => f.write_str(
                "FDT_NOP token (compact the blob with dt::remove_nops or `dtc -I dtb -O dtb` first)",
            ),
            Self::TokenOutOfBounds => f.write_str("a token runs past the end of the block"),
            Self::NoRootNode => f.write_str("the structure block does not start with a node"),
            Self::RootHasName => f.write_str("the root node has a name"),
            Self::AfterRoot => f.write_str("data after the root node other than FDT_END"),
            Self::UnterminatedName => f.write_str("node name without a terminating NUL"),
            Self::NameNotUtf8 => f.write_str("name is not UTF-8"),
            Self::PropertyOutsideNode => f.write_str("property outside any node"),
            Self::PropertyAfterChild => f.write_str("property after a child node"),
            Self::ValueOutOfBounds { len } => {
                write!(f, "property value of {len:#x} bytes runs past the block")
            }
            Self::NameOffsetOutOfBounds { name_offset } => write!(
                f,
                "property name offset {name_offset:#x} is outside the strings block \
                 (or the name is not NUL-terminated there)"
            ),
            Self::TooDeep { limit } => write!(f, "nodes nested deeper than {limit}"),
            Self::UnbalancedEndNode => f.write_str("END_NODE without an open node"),
            Self::UnexpectedEnd => f.write_str("the block ends inside a node"),
        }
    }
}

/// What is wrong with an `interrupts` property.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptProblem {
    /// The length is not a multiple of one 3-cell GIC specifier (12 bytes), or is zero.
    Length { len: usize },
    /// Fewer specifiers than the binding needs.
    TooFew { found: usize, needed: usize },
    /// A specifier type other than 0 (SPI) or 1 (PPI).
    UnknownType { kind: u32 },
    /// A PPI number above 15.
    PpiOutOfRange { number: u32 },
    /// An SPI number above 987.
    SpiOutOfRange { number: u32 },
}

impl fmt::Display for InterruptProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Length { len } => write!(
                f,
                "length {len} is not a non-zero multiple of 12 (3-cell GIC specifiers)"
            ),
            Self::TooFew { found, needed } => {
                write!(f, "{found} specifiers, the binding needs {needed}")
            }
            Self::UnknownType { kind } => write!(
                f,
                "specifier type {kind} is neither SPI (0) nor PPI (1) (extended ranges are not supported)"
            ),
            Self::PpiOutOfRange { number } => write!(f, "PPI {number} is above 15"),
            Self::SpiOutOfRange { number } => write!(f, "SPI {number} is above 987"),
        }
    }
}

/// Why a device tree cannot be used. Every variant says where (node path, offset) and
/// the values involved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtError {
    /// The header's magic is not 0xd00dfeed.
    BadMagic { found: u32 },
    /// Something (`what`, at `offset`, of `size` bytes) ends past the `available` bytes.
    Truncated {
        what: &'static str,
        offset: u64,
        size: u64,
        available: u64,
    },
    /// Not a version 16/17 blob, or (version 16) without the struct block size.
    UnsupportedVersion { version: u32, last_compatible: u32 },
    /// A header field that cannot be right.
    BadHeader {
        field: &'static str,
        value: u32,
        problem: &'static str,
    },
    /// `totalsize` above the boot protocol's limit.
    TooLarge { totalsize: u32, limit: u32 },
    /// The structure block is malformed at `offset` (from the block's start).
    Structure {
        offset: usize,
        problem: StructureProblem,
    },
    /// No `device_type = "memory"` node with a non-empty range.
    NoMemory,
    /// `/chosen/stdout-path` is missing (or `/chosen` is).
    NoConsole,
    /// `stdout-path` names no node (neither a path nor an alias).
    StdoutPathUnresolvable { stdout_path: DtText },
    /// The console node is not a usable `arm,pl011`.
    ConsoleUnsupported { node: DtText, reason: &'static str },
    /// Two reserved ranges overlap.
    OverlappingReservations {
        first: ReservationSite,
        second: ReservationSite,
    },
    /// Two memory banks overlap.
    OverlappingMemory { first: PhysRange, second: PhysRange },
    /// The `#address-cells`/`#size-cells` that apply to `node`'s `reg` are out of range
    /// (address 1..=2, size 0..=2).
    CellsOutOfRange {
        node: DtText,
        address_cells: u32,
        size_cells: u32,
    },
    /// `node`'s `reg` length is not a multiple of one entry.
    MalformedReg {
        node: DtText,
        len: usize,
        address_cells: u32,
        size_cells: u32,
    },
    /// `node`'s `interrupts` cannot be decoded.
    MalformedInterrupts {
        node: DtText,
        problem: InterruptProblem,
    },
    /// Another property of `node` is malformed.
    MalformedProperty {
        node: DtText,
        property: &'static str,
        problem: &'static str,
    },
    /// A PCI host bridge's map, bus or window properties cannot be used.
    MalformedPciHostBridge { node: DtText, problem: PciProblem },
    /// A property the binding requires is missing.
    MissingProperty {
        node: DtText,
        property: &'static str,
    },
    /// More entries of a kind than the fixed-size tables hold.
    TooMany { what: &'static str, limit: usize },
    /// No `arm,gic-v3` node.
    MissingGicV3,
    /// No `/cpus/cpu@*` node with `device_type = "cpu"`.
    NoCpus,
    /// Two CPU nodes with the same MPIDR.
    DuplicateMpidr { node: DtText, mpidr: u64 },
    /// PSCI `method` is neither "smc" nor "hvc".
    BadPsciMethod { node: DtText, method: DtText },
    /// A range whose end overflows 64 bits.
    RangeOverflow { node: DtText, base: u64, size: u64 },
    /// A range of size zero where a device or module needs bytes.
    EmptyRange { node: DtText, base: u64 },
    /// `node`'s `reg` is not a CPU physical address: an ancestor below the root has no
    /// `ranges` or a non-empty one (address translation is not supported).
    UntranslatableAddress { node: DtText },
}

impl fmt::Display for ReservationOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MemReserve => f.write_str("/memreserve/ entry"),
            Self::Node(path) => write!(f, "{path}"),
        }
    }
}

impl fmt::Display for ReservationSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.origin, Range(self.range))
    }
}

/// Formats a range as `[base, end)` in hex.
struct Range(PhysRange);

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x})", self.0.base, self.0.end())
    }
}

impl fmt::Display for DtError {
    /// Sends each variant to the helper for its family, so that adding a variant fails to
    /// compile until it is given a family (and so a message).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic { .. }
            | Self::Truncated { .. }
            | Self::UnsupportedVersion { .. }
            | Self::BadHeader { .. }
            | Self::TooLarge { .. }
            | Self::Structure { .. } => self.write_blob_defect(f),
            Self::NoMemory
            | Self::OverlappingMemory { .. }
            | Self::OverlappingReservations { .. }
            | Self::RangeOverflow { .. }
            | Self::EmptyRange { .. } => self.write_memory_defect(f),
            Self::CellsOutOfRange { .. }
            | Self::MalformedReg { .. }
            | Self::UntranslatableAddress { .. }
            | Self::MalformedInterrupts { .. }
            | Self::MalformedProperty { .. }
            | Self::MalformedPciHostBridge { .. }
            | Self::MissingProperty { .. }
            | Self::TooMany { .. } => self.write_property_defect(f),
            Self::NoConsole
            | Self::StdoutPathUnresolvable { .. }
            | Self::ConsoleUnsupported { .. }
            | Self::MissingGicV3
            | Self::NoCpus
            | Self::DuplicateMpidr { .. }
            | Self::BadPsciMethod { .. } => self.write_device_defect(f),
        }
    }
}

impl DtError {
    /// Words a defect of the blob's layout: its header (magic, sizes, version) or its
    /// structure block. These come before any node is read, so they name offsets and
    /// header fields rather than node paths.
    fn write_blob_defect(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic { found } => {
                write!(f, "bad FDT magic {found:#010x} (expected 0xd00dfeed)")
            }
            Self::Truncated {
                what,
                offset,
                size,
                available,
            } => write!(
                f,
                "truncated: {what} at offset {offset:#x} of {size:#x} bytes ends past the \
                 {available:#x} bytes available"
            ),
            Self::UnsupportedVersion {
                version,
                last_compatible,
            } => write!(
                f,
                "unsupported FDT version {version} (last compatible {last_compatible}); \
                 need version >= 16 with last compatible <= 17, and the struct block size \
                 (version 17)"
            ),
            Self::BadHeader {
                field,
                value,
                problem,
            } => write!(f, "bad FDT header: {field} = {value:#x} {problem}"),
            Self::TooLarge { totalsize, limit } => write!(
                f,
                "FDT totalsize {totalsize:#x} is above the boot protocol limit {limit:#x}"
            ),
            Self::Structure { offset, problem } => {
                write!(
                    f,
                    "malformed structure block at offset {offset:#x}: {problem}"
                )
            }
            other => other.write_misrouted(f),
        }
    }

    /// Words a defect of the memory map: no RAM, overlapping banks or reservations, or
    /// a range that is empty or runs off the address space. Each names the ranges (and
    /// where a reservation came from) so the clash can be found in the source DT.
    fn write_memory_defect(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoMemory => {
                f.write_str("no memory: no device_type = \"memory\" node with a non-empty reg")
            }
            Self::OverlappingReservations { first, second } => {
                write!(f, "reserved ranges overlap: {first} and {second}")
            }
            Self::OverlappingMemory { first, second } => write!(
                f,
                "memory banks overlap: {} and {}",
                Range(*first),
                Range(*second)
            ),
            Self::RangeOverflow { node, base, size } => write!(
                f,
                "{node}: range at {base:#x} of {size:#x} bytes overflows the address space"
            ),
            Self::EmptyRange { node, base } => write!(f, "{node}: empty range at {base:#x}"),
            other => other.write_misrouted(f),
        }
    }

    /// Words a property that cannot be decoded (cells, `reg`, `interrupts`, others), is
    /// missing, or lists more entries than the fixed tables hold. Each starts with the
    /// node's path, since the same property name appears on many nodes.
    fn write_property_defect(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CellsOutOfRange {
                node,
                address_cells,
                size_cells,
            } => write!(
                f,
                "{node}: #address-cells = {address_cells}, #size-cells = {size_cells} are out \
                 of range for reg (address 1..=2, size 0..=2)"
            ),
            Self::MalformedReg {
                node,
                len,
                address_cells,
                size_cells,
            } => write!(
                f,
                "{node}: reg of {len} bytes is not a multiple of one entry \
                 (#address-cells = {address_cells}, #size-cells = {size_cells})"
            ),
            Self::UntranslatableAddress { node } => write!(
                f,
                "{node}: reg is not a CPU physical address (a parent bus has no empty \
                 `ranges`; address translation is not supported)"
            ),
            Self::MalformedInterrupts { node, problem } => {
                write!(f, "{node}: bad interrupts: {problem}")
            }
            Self::MalformedProperty {
                node,
                property,
                problem,
            } => write!(f, "{node}: bad {property}: {problem}"),
            Self::MalformedPciHostBridge { node, problem } => {
                write!(f, "{node}: PCI host bridge: {problem}")
            }
            Self::MissingProperty { node, property } => {
                write!(f, "{node}: missing {property}")
            }
            Self::TooMany { what, limit } => write!(f, "too many {what} (at most {limit})"),
            other => other.write_misrouted(f),
        }
    }

    /// Words a device the hypervisor needs that is missing or unusable: the console,
    /// the GICv3, the CPUs and their PSCI method.
    fn write_device_defect(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoConsole => f.write_str("no console: /chosen/stdout-path is missing"),
            Self::StdoutPathUnresolvable { stdout_path } => write!(
                f,
                "stdout-path \"{stdout_path}\" names no node (neither a path nor an alias)"
            ),
            Self::ConsoleUnsupported { node, reason } => {
                write!(f, "console {node} is unsupported: {reason}")
            }
            Self::MissingGicV3 => f.write_str("no GICv3: no node compatible with arm,gic-v3"),
            Self::NoCpus => f.write_str("no CPUs: no /cpus/cpu@* node with device_type = \"cpu\""),
            Self::DuplicateMpidr { node, mpidr } => {
                write!(f, "{node}: MPIDR {mpidr:#x} is used by an earlier CPU node")
            }
            Self::BadPsciMethod { node, method } => write!(
                f,
                "{node}: PSCI method \"{method}\" is neither \"smc\" nor \"hvc\""
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

impl core::error::Error for DtError {}
