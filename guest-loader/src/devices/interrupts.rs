//! A device's interrupts as GIC INTIDs, the way the hypervisor routes them to a guest:
//! only SPIs of the one GIC it emulates.
//!
//! The interrupt parent is found as Linux's `of_irq_find_parent` does: the node's own
//! `interrupt-parent`, else its parent's, up the tree, stopping at the first node with
//! `#interrupt-cells`. `interrupts-extended` names a parent per entry. The GIC binding
//! (arm,gic-v3.yaml) gives each specifier as `<type number flags [partition]>`: type 0
//! is an SPI (INTID 32 + number), type 1 a PPI (16 + number), type 2 and 3 the extended
//! SPI and PPI ranges.

use alloc::string::ToString;
use alloc::vec::Vec;

use dtoolkit::{Node, Property};

use super::problems::InterruptProblem;
use super::tree::{HostTree, PhandleTarget};

/// The last SPI number: INTID 1019 (1020..1023 are special).
const MAX_SPI_NUMBER: u32 = 987;
const FIRST_SPI_INTID: u32 = 32;
const FIRST_PPI_INTID: u32 = 16;
const GIC_SPI: u32 = 0;
const GIC_PPI: u32 = 1;
const GIC_EPPI: u32 = 3;
const FIRST_EPPI_INTID: u32 = 1056;

/// The INTIDs of the node's interrupts in order (empty when it has none), when every
/// one is an SPI of the GIC at index `gic`.
pub(crate) fn spi_intids(
    tree: &HostTree<'_>,
    gic: Option<usize>,
    index: usize,
) -> Result<Vec<u32>, InterruptProblem> {
    let Some(node) = tree.node(index) else {
        return Ok(Vec::new());
    };
    if let Some(extended) = node.property("interrupts-extended") {
        return extended_intids(tree, gic, extended.value());
    }
    let Some(interrupts) = node.property("interrupts") else {
        return Ok(Vec::new());
    };
    let parent = interrupt_parent(tree, index)?;
    let cells = gic_cells(tree, gic, parent)?;
    let value = interrupts.value();
    let words = cells_of(value, "interrupts")?;
    if words.is_empty() || words.len() % cells != 0 {
        return Err(InterruptProblem::Malformed {
            property: "interrupts",
            len: value.len(),
        });
    }
    words.chunks_exact(cells).map(decode).collect()
}

/// `interrupts-extended`: `<phandle specifier...>` entries, each specifier as long as
/// its parent's `#interrupt-cells`.
fn extended_intids(
    tree: &HostTree<'_>,
    gic: Option<usize>,
    value: &[u8],
) -> Result<Vec<u32>, InterruptProblem> {
    let malformed = || InterruptProblem::Malformed {
        property: "interrupts-extended",
        len: value.len(),
    };
    let words = cells_of(value, "interrupts-extended")?;
    let mut rest = words.as_slice();
    let mut intids = Vec::new();
    while let Some((&phandle, after)) = rest.split_first() {
        let parent = resolve(tree, phandle)?;
        let cells = gic_cells(tree, gic, parent)?;
        let (specifier, after) = after.split_at_checked(cells).ok_or_else(malformed)?;
        intids.push(decode(specifier)?);
        rest = after;
    }
    if intids.is_empty() {
        return Err(malformed());
    }
    Ok(intids)
}

/// The node's interrupt controller (see the module docs).
fn interrupt_parent(tree: &HostTree<'_>, index: usize) -> Result<usize, InterruptProblem> {
    let mut current = index;
    // Each step moves to another node; more steps than nodes means a loop of
    // `interrupt-parent`s that never reaches a controller.
    for _ in 0..=tree.len() {
        let node = tree
            .node(current)
            .ok_or(InterruptProblem::NoInterruptParent)?;
        let next = match node.property("interrupt-parent") {
            Some(property) => {
                let value = property.value();
                let phandle = <[u8; 4]>::try_from(value)
                    .map(u32::from_be_bytes)
                    .map_err(|_| InterruptProblem::Malformed {
                        property: "interrupt-parent",
                        len: value.len(),
                    })?;
                resolve(tree, phandle)?
            }
            None => tree
                .get(current)
                .and_then(|n| n.parent)
                .ok_or(InterruptProblem::NoInterruptParent)?,
        };
        if tree
            .node(next)
            .is_some_and(|n| n.property("#interrupt-cells").is_some())
        {
            return Ok(next);
        }
        current = next;
    }
    Err(InterruptProblem::NoInterruptParent)
}

fn resolve(tree: &HostTree<'_>, phandle: u32) -> Result<usize, InterruptProblem> {
    match tree.by_phandle(phandle) {
        Some(PhandleTarget::Node(index)) => Ok(index),
        Some(PhandleTarget::Ambiguous) | None => Err(InterruptProblem::UnknownParent { phandle }),
    }
}

/// The GIC's `#interrupt-cells`, when `parent` is the GIC; at least the type and number.
fn gic_cells(
    tree: &HostTree<'_>,
    gic: Option<usize>,
    parent: usize,
) -> Result<usize, InterruptProblem> {
    if gic != Some(parent) {
        return Err(InterruptProblem::NotTheGic {
            parent: tree.path(parent).to_string(),
        });
    }
    let property = tree
        .node(parent)
        .and_then(|n| n.property("#interrupt-cells"));
    let value = property.as_ref().map_or(&[][..], |p| p.value());
    match <[u8; 4]>::try_from(value).map(u32::from_be_bytes) {
        Ok(cells @ 2..=16) => Ok(cells as usize),
        _ => Err(InterruptProblem::Malformed {
            property: "#interrupt-cells",
            len: value.len(),
        }),
    }
}

/// One GIC specifier (`type number ...`) as an SPI's INTID.
fn decode(specifier: &[u32]) -> Result<u32, InterruptProblem> {
    let (kind, number) = match specifier {
        [kind, number, ..] => (*kind, *number),
        _ => {
            return Err(InterruptProblem::Malformed {
                property: "interrupts",
                len: specifier.len() * 4,
            });
        }
    };
    match kind {
        GIC_SPI if number <= MAX_SPI_NUMBER => Ok(FIRST_SPI_INTID + number),
        GIC_PPI if number < 16 => Err(InterruptProblem::Private {
            intid: FIRST_PPI_INTID + number,
        }),
        GIC_EPPI if number < 64 => Err(InterruptProblem::Private {
            intid: FIRST_EPPI_INTID + number,
        }),
        _ => Err(InterruptProblem::Unsupported { kind, number }),
    }
}

/// A property as big-endian cells.
fn cells_of(value: &[u8], property: &'static str) -> Result<Vec<u32>, InterruptProblem> {
    let chunks = value.chunks_exact(4);
    if !chunks.remainder().is_empty() {
        return Err(InterruptProblem::Malformed {
            property,
            len: value.len(),
        });
    }
    Ok(chunks
        .filter_map(|c| <[u8; 4]>::try_from(c).ok())
        .map(u32::from_be_bytes)
        .collect())
}
