//! `unmap`: removal of mappings, freeing the tables that become empty.

use core::ops::Range;

use crate::error::Error;
use crate::hw::Hardware;
use crate::split::Edit;
use crate::table::{OpReport, PageTable};

impl<H: Hardware> PageTable<H> {
    /// Removes every mapping in `range`; holes are allowed. Leaves that straddle an edge
    /// are split (as deep as the edge needs, keeping the contiguous hint on whole groups
    /// outside the range); contiguous groups cut by an edge lose the hint; subtrees
    /// entirely inside the range are unlinked whole, and tables left empty are unlinked
    /// too. Unlinked tables are freed after their range is invalidated, walk caches
    /// included.
    ///
    /// # Errors
    /// [`Error::Misaligned`], [`Error::EmptyRange`], [`Error::OutOfRange`] for a bad
    /// range; [`Error::OutOfTables`] if a split table cannot be allocated. In every case
    /// the tables are unchanged.
    pub fn unmap(&mut self, range: Range<u64>) -> Result<OpReport, Error> {
        let (start, end) = self.check_range(&range)?;
        let edited = self.edit_range(start, end, Edit::Unmap)?;
        Ok(OpReport {
            transiently_unmapped: edited.transiently_unmapped,
        })
    }
}
