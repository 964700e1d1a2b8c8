//! The GICv3 (`arm,gic-v3`) and the generic timer (`arm,armv8-timer`), whose interrupts
//! are 3-cell GIC specifiers `<type number flags>` (bindings/interrupt-controller/
//! arm,gic-v3.yaml): type 0 is an SPI (INTID 32 + number), type 1 a PPI (16 + number).

use arrayvec::ArrayVec;

use super::DtError;
use super::bytes::be_u32;
use super::error::InterruptProblem;
use super::memory::range;
use super::node::Node;
use crate::info::{GicV3, MAX_REDIST_REGIONS, PhysRange, Timer};

const SPECIFIER_BYTES: usize = 12;
const SPI_BASE: u32 = 32;
const PPI_BASE: u32 = 16;
const LAST_SPI: u32 = 987;
const LAST_PPI: u32 = 15;

/// The INTIDs of `node`'s `interrupts`, in order.
pub(super) fn interrupt_ids<'dtb>(
    node: &Node<'_, '_, 'dtb>,
    value: &'dtb [u8],
) -> Result<impl Iterator<Item = Result<u32, DtError>> + 'dtb, DtError> {
    if value.is_empty() || !value.len().is_multiple_of(SPECIFIER_BYTES) {
        return Err(malformed(
            node,
            InterruptProblem::Length { len: value.len() },
        ));
    }
    let path = node.path();
    Ok(value.chunks_exact(SPECIFIER_BYTES).map(move |specifier| {
        let fail = |problem| DtError::MalformedInterrupts {
            node: path,
            problem,
        };
        let kind = be_u32(specifier, 0).unwrap_or(u32::MAX);
        let number = be_u32(specifier, 4).unwrap_or(u32::MAX);
        match kind {
            0 if number <= LAST_SPI => Ok(SPI_BASE + number),
            0 => Err(fail(InterruptProblem::SpiOutOfRange { number })),
            1 if number <= LAST_PPI => Ok(PPI_BASE + number),
            1 => Err(fail(InterruptProblem::PpiOutOfRange { number })),
            kind => Err(fail(InterruptProblem::UnknownType { kind })),
        }
    }))
}

/// The first INTID of `node`'s `interrupts`, if it has a well-formed one (for a device
/// the hypervisor can live without interrupts from, such as the console).
pub(super) fn first_interrupt(node: &Node<'_, '_, '_>) -> Option<u32> {
    let value = node.property("interrupts")?;
    interrupt_ids(node, value).ok()?.next()?.ok()
}

fn malformed(node: &Node<'_, '_, '_>, problem: InterruptProblem) -> DtError {
    DtError::MalformedInterrupts {
        node: node.path(),
        problem,
    }
}

/// Reads a GICv3 node: `reg[0]` the distributor, the next `#redistributor-regions`
/// (default 1) entries the redistributor regions; later entries (GICC/GICH/GICV) are
/// ignored. The first `interrupts` specifier is the maintenance interrupt; the first
/// `arm,gic-v3-its` child is the ITS.
pub(super) fn read_gic(node: &Node<'_, '_, '_>) -> Result<GicV3, DtError> {
    let mut reg = node.cpu_reg()?.ok_or_else(|| node.missing("reg"))?;
    let regions = node.u32_property("#redistributor-regions")?.unwrap_or(1) as usize;
    if regions == 0 {
        return Err(node.malformed("#redistributor-regions", "is zero"));
    }
    if regions > MAX_REDIST_REGIONS {
        return Err(DtError::TooMany {
            what: "GICv3 redistributor regions",
            limit: MAX_REDIST_REGIONS,
        });
    }
    if reg.len() < 1 + regions {
        return Err(node.malformed(
            "reg",
            "fewer entries than the distributor plus #redistributor-regions",
        ));
    }
    let mut next_range = || -> Result<PhysRange, DtError> {
        let (base, size) = reg.next().ok_or_else(|| node.missing("reg"))?;
        range(node.path(), base, size)
    };
    let distributor = next_range()?;
    let mut redistributors = ArrayVec::new();
    for _ in 0..regions {
        // Cannot overflow: `regions` was checked against the capacity.
        let _ = redistributors.try_push(next_range()?);
    }
    let maintenance_intid = match node.property("interrupts") {
        Some(value) => interrupt_ids(node, value)?.next().transpose()?,
        None => None,
    };
    Ok(GicV3 {
        distributor,
        redistributors,
        maintenance_intid,
        its: read_its(node)?,
    })
}

fn read_its(gic: &Node<'_, '_, '_>) -> Result<Option<PhysRange>, DtError> {
    for child in gic.children() {
        let child = child?;
        if child.is_compatible("arm,gic-v3-its") {
            let (base, size) = child
                .cpu_reg()?
                .and_then(|mut reg| reg.next())
                .ok_or_else(|| child.missing("reg"))?;
            return range(child.path(), base, size).map(Some);
        }
    }
    Ok(None)
}

/// Reads an `arm,armv8-timer` node: its first four interrupts are, in binding order,
/// the secure physical, non-secure physical, virtual and hypervisor physical timers (a
/// fifth, the hypervisor virtual timer, is ignored).
pub(super) fn read_timer(node: &Node<'_, '_, '_>) -> Result<Timer, DtError> {
    let value = node
        .property("interrupts")
        .ok_or_else(|| node.missing("interrupts"))?;
    let mut ids: ArrayVec<u32, 4> = ArrayVec::new();
    for id in interrupt_ids(node, value)?.take(4) {
        let _ = ids.try_push(id?);
    }
    let [
        secure_phys_intid,
        nonsecure_phys_intid,
        virt_intid,
        hyp_phys_intid,
    ] = ids[..]
    else {
        return Err(malformed(
            node,
            InterruptProblem::TooFew {
                found: ids.len(),
                needed: 4,
            },
        ));
    };
    Ok(Timer {
        secure_phys_intid,
        nonsecure_phys_intid,
        virt_intid,
        hyp_phys_intid,
        frequency_hz: node.u32_property("clock-frequency")?,
    })
}
