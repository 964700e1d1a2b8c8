//! The map properties of a PCI host bridge, decoded from their bytes: `iommu-map`
//! (bindings/pci/pci-iommu.txt), `interrupt-map` and `interrupt-map-mask` (DT spec
//! 2.4.3, PCI bus binding), and `bus-range`.
//!
//! Public because the guest loader, which reads the host DT with another crate, must
//! decode them exactly as the hypervisor does: the StreamIDs it installs and the SPIs it
//! links come from here either way. Every length, cell count and ID range is checked;
//! nothing indexes or unwraps on the bytes.

use core::fmt;

use arrayvec::ArrayVec;

use super::bytes::be_u32;
use crate::info::{
    IntxMask, IntxRoute, IommuMapEntry, MAX_INTX_ROUTES, MAX_IOMMU_MAP_ENTRIES, RID_LIMIT,
};

/// Cells of one `iommu-map` entry naming an SMMUv3: requester ID base, phandle, StreamID
/// base (`#iommu-cells` = 1) and length.
pub const IOMMU_MAP_ENTRY_CELLS: usize = 4;
/// A PCI child unit address: `phys.hi phys.mid phys.lo`.
pub const PCI_ADDRESS_CELLS: u32 = 3;
/// A PCI child interrupt specifier: the pin.
pub const PCI_INTERRUPT_CELLS: u32 = 1;
/// The most a GIC's `#address-cells` may be for its unit address in a map entry.
const MAX_PARENT_ADDRESS_CELLS: u32 = 3;
/// A GIC specifier needs at least its type and number; no binding has more than 16.
const PARENT_INTERRUPT_CELLS: core::ops::RangeInclusive<u32> = 2..=16;
const LAST_SPI: u32 = 987;
const SPI_BASE: u32 = 32;

/// What is wrong with a PCI host bridge's map or bus properties.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciProblem {
    /// `property` is empty or not a whole number of `entry_cells`-cell entries.
    Length {
        property: &'static str,
        len: usize,
        entry_cells: usize,
    },
    /// A cell count the decoding needs (`which`) is not what it can be.
    Cells {
        which: &'static str,
        value: u32,
        expected: &'static str,
    },
    /// More entries than the fixed tables hold.
    TooMany {
        property: &'static str,
        limit: usize,
    },
    /// An `iommu-map` entry of length 0.
    EmptyIommuMapEntry { entry: usize },
    /// An `iommu-map` entry whose requester IDs pass 0xffff.
    RidsOverflow {
        entry: usize,
        rid_base: u32,
        length: u32,
    },
    /// An `iommu-map` entry whose StreamIDs (with one past the last) pass 32 bits.
    SidsOverflow {
        entry: usize,
        sid_base: u32,
        length: u32,
    },
    /// An `iommu-map` entry names a phandle no available `arm,smmu-v3` node has.
    UnknownIommu { entry: usize, phandle: u32 },
    /// An `interrupt-map` entry's parent is not the GICv3 (its entries' length is then
    /// unknown, and only GIC SPIs can be routed).
    ParentNotGic { entry: usize, phandle: u32 },
    /// An `interrupt-map` entry maps to a GIC interrupt that is not an SPI.
    NotSpi {
        entry: usize,
        kind: u32,
        number: u32,
    },
    /// `bus-range` is not `<first last>` with first <= last <= 255.
    BusRange { first: u32, last: u32 },
}

impl fmt::Display for PciProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Length {
                property,
                len,
                entry_cells,
            } => write!(
                f,
                "{property} of {len} bytes is not a non-zero multiple of {entry_cells}-cell \
                 entries"
            ),
            Self::Cells {
                which,
                value,
                expected,
            } => write!(f, "{which} is {value}, expected {expected}"),
            Self::TooMany { property, limit } => {
                write!(f, "{property} has more than {limit} entries")
            }
            Self::EmptyIommuMapEntry { entry } => {
                write!(f, "iommu-map entry {entry} has length 0")
            }
            Self::RidsOverflow {
                entry,
                rid_base,
                length,
            } => write!(
                f,
                "iommu-map entry {entry}: requester IDs {rid_base:#x} + {length:#x} pass 0xffff"
            ),
            Self::SidsOverflow {
                entry,
                sid_base,
                length,
            } => write!(
                f,
                "iommu-map entry {entry}: StreamIDs {sid_base:#x} + {length:#x} pass 32 bits"
            ),
            Self::UnknownIommu { entry, phandle } => write!(
                f,
                "iommu-map entry {entry} names phandle {phandle:#x}, which no available \
                 arm,smmu-v3 node has"
            ),
            Self::ParentNotGic { entry, phandle } => write!(
                f,
                "interrupt-map entry {entry}: parent phandle {phandle:#x} is not the GICv3 \
                 (only GIC SPIs can be routed)"
            ),
            Self::NotSpi {
                entry,
                kind,
                number,
            } => write!(
                f,
                "interrupt-map entry {entry}: GIC interrupt type {kind} number {number} is \
                 not an SPI"
            ),
            Self::BusRange { first, last } => {
                write!(f, "bus-range <{first} {last}> is not first <= last <= 255")
            }
        }
    }
}

/// The value's entries of `entry_cells` cells each, or `Length` when it is empty or not
/// a whole number of them.
fn entries<'v>(
    value: &'v [u8],
    property: &'static str,
    entry_cells: usize,
) -> Result<impl Iterator<Item = Entry<'v>> + 'v, PciProblem> {
    let entry_bytes = entry_cells.saturating_mul(4);
    if value.is_empty() || entry_bytes == 0 || !value.len().is_multiple_of(entry_bytes) {
        return Err(PciProblem::Length {
            property,
            len: value.len(),
            entry_cells,
        });
    }
    Ok(value.chunks_exact(entry_bytes).map(Entry))
}

/// One entry of a map property.
#[derive(Clone, Copy)]
struct Entry<'v>(&'v [u8]);

impl Entry<'_> {
    /// Cell `index` (0 past the end, which the callers' length checks rule out).
    fn cell(self, index: usize) -> u32 {
        be_u32(self.0, index.saturating_mul(4)).unwrap_or(0)
    }
}

/// Decodes `iommu-map` for an SMMUv3 (one-cell StreamIDs); which SMMU each phandle
/// names is the caller's to check.
pub fn iommu_map(
    value: &[u8],
) -> Result<ArrayVec<IommuMapEntry, MAX_IOMMU_MAP_ENTRIES>, PciProblem> {
    let mut map = ArrayVec::new();
    for (entry, cells) in entries(value, "iommu-map", IOMMU_MAP_ENTRY_CELLS)?.enumerate() {
        let [rid_base, smmu_phandle, sid_base, length] = [0, 1, 2, 3].map(|i| cells.cell(i));
        if length == 0 {
            return Err(PciProblem::EmptyIommuMapEntry { entry });
        }
        if u64::from(rid_base) + u64::from(length) > u64::from(RID_LIMIT) {
            return Err(PciProblem::RidsOverflow {
                entry,
                rid_base,
                length,
            });
        }
        // The end, one past the last StreamID, must fit too (so `IommuMapEntry::sids`
        // is exact).
        if sid_base.checked_add(length).is_none() {
            return Err(PciProblem::SidsOverflow {
                entry,
                sid_base,
                length,
            });
        }
        map.try_push(IommuMapEntry {
            rid_base,
            smmu_phandle,
            sid_base,
            length,
        })
        .map_err(|_| PciProblem::TooMany {
            property: "iommu-map",
            limit: MAX_IOMMU_MAP_ENTRIES,
        })?;
    }
    Ok(map)
}

/// Decodes `iommu-map-mask` (one cell).
pub fn iommu_map_mask(value: &[u8]) -> Result<u32, PciProblem> {
    one_cell(value, "iommu-map-mask")
}

fn one_cell(value: &[u8], property: &'static str) -> Result<u32, PciProblem> {
    match value.len() {
        4 => Ok(be_u32(value, 0).unwrap_or(0)),
        len => Err(PciProblem::Length {
            property,
            len,
            entry_cells: 1,
        }),
    }
}

/// The cell counts an `interrupt-map` entry is read with: the bridge's own
/// `#address-cells` and `#interrupt-cells`, and the GIC's (its `#address-cells` is 0
/// when absent, as in Linux's `of_irq_parse_imap_parent`; its `#interrupt-cells` 0 when
/// absent, which is refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterruptMapCells {
    pub child_address: u32,
    pub child_interrupt: u32,
    pub parent_address: u32,
    pub parent_interrupt: u32,
}

impl InterruptMapCells {
    fn check(&self) -> Result<usize, PciProblem> {
        let cells = |which, value, ok: bool, expected| {
            if ok {
                Ok(value as usize)
            } else {
                Err(PciProblem::Cells {
                    which,
                    value,
                    expected,
                })
            }
        };
        let child = cells(
            "#address-cells",
            self.child_address,
            self.child_address == PCI_ADDRESS_CELLS,
            "3 (a PCI address)",
        )? + cells(
            "#interrupt-cells",
            self.child_interrupt,
            self.child_interrupt == PCI_INTERRUPT_CELLS,
            "1 (the INTx pin)",
        )?;
        let parent = cells(
            "the GIC's #address-cells",
            self.parent_address,
            self.parent_address <= MAX_PARENT_ADDRESS_CELLS,
            "at most 3",
        )? + cells(
            "the GIC's #interrupt-cells",
            self.parent_interrupt,
            PARENT_INTERRUPT_CELLS.contains(&self.parent_interrupt),
            "2 to 16 (type, number, ...)",
        )?;
        // Child address and pin, the phandle, the parent's address and specifier.
        Ok(child + 1 + parent)
    }
}

/// Decodes `interrupt-map` for a PCI host bridge whose every entry must lead to the GIC
/// (`is_gic` says whether a phandle names it): the routes in order, each to an SPI.
pub fn interrupt_map(
    value: &[u8],
    cells: InterruptMapCells,
    is_gic: impl Fn(u32) -> bool,
) -> Result<ArrayVec<IntxRoute, MAX_INTX_ROUTES>, PciProblem> {
    let entry_cells = cells.check()?;
    // The parent's specifier starts after the child address, the pin, the phandle and
    // the parent's unit address.
    let specifier = 5 + cells.parent_address as usize;
    let mut routes = ArrayVec::new();
    for (entry, cells) in entries(value, "interrupt-map", entry_cells)?.enumerate() {
        let phandle = cells.cell(4);
        if !is_gic(phandle) {
            return Err(PciProblem::ParentNotGic { entry, phandle });
        }
        let intid = match (cells.cell(specifier), cells.cell(specifier + 1)) {
            (0, number) if number <= LAST_SPI => SPI_BASE + number,
            (kind, number) => {
                return Err(PciProblem::NotSpi {
                    entry,
                    kind,
                    number,
                });
            }
        };
        routes
            .try_push(IntxRoute {
                child_address: [cells.cell(0), cells.cell(1), cells.cell(2)],
                pin: cells.cell(3),
                intid,
            })
            .map_err(|_| PciProblem::TooMany {
                property: "interrupt-map",
                limit: MAX_INTX_ROUTES,
            })?;
    }
    Ok(routes)
}

/// Decodes `interrupt-map-mask` of a PCI host bridge (a PCI address and a pin).
pub fn interrupt_map_mask(value: &[u8]) -> Result<IntxMask, PciProblem> {
    match value.len() {
        16 => {
            let mask = Entry(value);
            Ok(IntxMask {
                child_address: [mask.cell(0), mask.cell(1), mask.cell(2)],
                pin: mask.cell(3),
            })
        }
        len => Err(PciProblem::Length {
            property: "interrupt-map-mask",
            len,
            entry_cells: 4,
        }),
    }
}

/// Decodes `bus-range` as (first, last).
pub fn bus_range(value: &[u8]) -> Result<(u8, u8), PciProblem> {
    if value.len() != 8 {
        return Err(PciProblem::Length {
            property: "bus-range",
            len: value.len(),
            entry_cells: 2,
        });
    }
    let (first, last) = (Entry(value).cell(0), Entry(value).cell(1));
    match (u8::try_from(first), u8::try_from(last)) {
        (Ok(a), Ok(b)) if a <= b => Ok((a, b)),
        _ => Err(PciProblem::BusRange { first, last }),
    }
}
