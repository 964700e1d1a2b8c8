//! `change_attrs`: new attributes for a mapped range of a live (or not yet live) tree.

use core::ops::Range;

use crate::attrs::Attributes;
use crate::error::Error;
use crate::hw::Hardware;
use crate::split::Edit;
use crate::table::{OpReport, PageTable};

/// The smallest range containing both.
pub(crate) fn union(a: Option<Range<u64>>, b: Option<Range<u64>>) -> Option<Range<u64>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.start.min(b.start)..a.end.max(b.end)),
        (a, None) => a,
        (None, b) => b,
    }
}

impl<H: Hardware> PageTable<H> {
    /// Gives every page of `range` the attributes `attrs` (each leaf keeps the mapping
    /// flags it was mapped with).
    ///
    /// Only the leaves that straddle the range's edges are split, and only as deep as
    /// the edge needs: one 4 KiB page out of a 1 GiB block gives one table of 2 MiB
    /// blocks, one of which becomes a table of pages, with the contiguous hint on every
    /// whole group of 16 that keeps equal attributes (Linux's split with `to_cont`). A
    /// contiguous group cut by an edge loses its hint on all 16 entries. Leaves inside
    /// the range change in place: permissions without a break (RGPPYH), memory type with
    /// break-before-make (RWHZWS). Splits follow the table's
    /// [`SplitStrategy`](crate::SplitStrategy): with FEAT_BBM level 2 a split (and the
    /// clearing of a cut group's hint) changes the size of entries alone, and the pieces
    /// inside the range then change in place like any other leaf; under
    /// break-before-make the split carries the new attributes at once. The broken range
    /// is reported in [`OpReport::transiently_unmapped`]. The tables touched are then
    /// collapsed where they map one aligned run again.
    ///
    /// # Errors
    /// [`Error::Misaligned`], [`Error::EmptyRange`], [`Error::OutOfRange`] for a bad
    /// range; [`Error::WriteAndExecute`], [`Error::AccessNotExpressible`],
    /// [`Error::ExecutableDevice`] for attributes the regime refuses;
    /// [`Error::NotMapped`] if a page of the range is not mapped;
    /// [`Error::OutOfTables`] if the split tables cannot be allocated. In every case the
    /// tables are unchanged.
    pub fn change_attrs(
        &mut self,
        range: Range<u64>,
        attrs: Attributes,
    ) -> Result<OpReport, Error> {
        let (start, end) = self.check_range(&range)?;
        let edit = Edit::attrs(self.regime().kind(), attrs)?;
        let edited = self.edit_range(start, end, edit)?;
        // A separate pass, once the changes are complete (collapsing while a break is
        // still pending would mix the old and new translations), over the leaves changed
        // in place: only there can entries now match their neighbours.
        let collapsed = edited
            .changed_in_place
            .and_then(|(s, e)| self.collapse_range(s, e));
        Ok(OpReport {
            transiently_unmapped: union(edited.transiently_unmapped, collapsed),
        })
    }
}
