//! RAM banks (`device_type = "memory"` nodes) and reserved ranges (/memreserve/ and
//! `/reserved-memory` children with a `reg`).

use arrayvec::ArrayVec;

use super::DtError;
use super::error::{DtText, ReservationOrigin, ReservationSite};
use super::node::Node;
use crate::info::{MAX_MEMORY_BANKS, MAX_RESERVED, PhysRange, ReservationSource, ReservedRange};

/// A range from `node`'s `reg`, or `None` for an empty one.
///
/// # Errors
/// [`DtError::RangeOverflow`] when the end overflows.
pub(super) fn range_or_empty(
    node: DtText,
    base: u64,
    size: u64,
) -> Result<Option<PhysRange>, DtError> {
    if size == 0 {
        return Ok(None);
    }
    PhysRange::new(base, size)
        .map(Some)
        .ok_or(DtError::RangeOverflow { node, base, size })
}

/// A non-empty range from `node`'s `reg`.
///
/// # Errors
/// [`DtError::EmptyRange`] and [`DtError::RangeOverflow`].
pub(super) fn range(node: DtText, base: u64, size: u64) -> Result<PhysRange, DtError> {
    range_or_empty(node, base, size)?.ok_or(DtError::EmptyRange { node, base })
}

/// Collects the RAM banks of one memory node. Entries of size zero are skipped, as
/// Linux does.
pub(super) fn add_memory_node(
    node: &Node<'_, '_, '_>,
    banks: &mut ArrayVec<PhysRange, MAX_MEMORY_BANKS>,
) -> Result<(), DtError> {
    if !node.is_available() {
        return Ok(());
    }
    let Some(reg) = node.cpu_reg()? else {
        return Err(node.missing("reg"));
    };
    for (base, size) in reg {
        if let Some(bank) = range_or_empty(node.path(), base, size)? {
            banks.try_push(bank).map_err(|_| DtError::TooMany {
                what: "memory banks",
                limit: MAX_MEMORY_BANKS,
            })?;
        }
    }
    Ok(())
}

/// Sorts the banks and refuses overlaps; an empty list is [`DtError::NoMemory`].
pub(super) fn finish_memory(
    banks: &mut ArrayVec<PhysRange, MAX_MEMORY_BANKS>,
) -> Result<(), DtError> {
    if banks.is_empty() {
        return Err(DtError::NoMemory);
    }
    banks.sort_unstable();
    for pair in banks.windows(2) {
        if let [first, second] = pair
            && first.overlaps(second)
        {
            return Err(DtError::OverlappingMemory {
                first: *first,
                second: *second,
            });
        }
    }
    Ok(())
}

fn push_reserved<'dtb>(
    reserved: &mut ArrayVec<ReservedRange<'dtb>, MAX_RESERVED>,
    entry: ReservedRange<'dtb>,
) -> Result<(), DtError> {
    reserved.try_push(entry).map_err(|_| DtError::TooMany {
        what: "reserved ranges (/memreserve/ plus /reserved-memory)",
        limit: MAX_RESERVED,
    })
}

/// Adds the header's /memreserve/ entries (size-zero entries are skipped).
pub(super) fn add_memreserve<'dtb>(
    entries: impl Iterator<Item = Result<(u64, u64), DtError>>,
    reserved: &mut ArrayVec<ReservedRange<'dtb>, MAX_RESERVED>,
) -> Result<(), DtError> {
    for entry in entries {
        let (base, size) = entry?;
        if let Some(range) = range_or_empty(DtText::new("/memreserve/"), base, size)? {
            push_reserved(
                reserved,
                ReservedRange {
                    range,
                    source: ReservationSource::MemReserve,
                    no_map: false,
                },
            )?;
        }
    }
    Ok(())
}

/// Adds the children of `/reserved-memory` that have a `reg`. Children with only a
/// `size` (dynamic allocations the OS makes) reserve nothing yet and are skipped.
pub(super) fn add_reserved_memory<'dtb>(
    reserved_memory: &Node<'_, '_, 'dtb>,
    reserved: &mut ArrayVec<ReservedRange<'dtb>, MAX_RESERVED>,
) -> Result<(), DtError> {
    for child in reserved_memory.children() {
        let child = child?;
        if !child.is_available() {
            continue;
        }
        let Some(reg) = child.cpu_reg()? else {
            continue;
        };
        let no_map = child.property("no-map").is_some();
        for (base, size) in reg {
            if let Some(range) = range_or_empty(child.path(), base, size)? {
                push_reserved(
                    reserved,
                    ReservedRange {
                        range,
                        source: ReservationSource::ReservedMemoryNode(child.name()),
                        no_map,
                    },
                )?;
            }
        }
    }
    Ok(())
}

/// Sorts the reservations and refuses overlaps, naming both.
pub(super) fn finish_reserved(
    reserved: &mut ArrayVec<ReservedRange<'_>, MAX_RESERVED>,
) -> Result<(), DtError> {
    reserved.sort_unstable_by_key(|entry| entry.range);
    for pair in reserved.windows(2) {
        if let [first, second] = pair
            && first.range.overlaps(&second.range)
        {
            return Err(DtError::OverlappingReservations {
                first: site(first),
                second: site(second),
            });
        }
    }
    Ok(())
}

fn site(entry: &ReservedRange<'_>) -> ReservationSite {
    ReservationSite {
        range: entry.range,
        origin: match entry.source {
            ReservationSource::MemReserve => ReservationOrigin::MemReserve,
            ReservationSource::ReservedMemoryNode(name) => {
                ReservationOrigin::Node(DtText::from_fmt(format_args!("/reserved-memory/{name}")))
            }
        },
    }
}
