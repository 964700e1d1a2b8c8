//! What the engine did, per table tree.

/// Counters of one [`PageTable`](crate::PageTable). Every field only grows; subtract two
/// snapshots to measure one operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Table pages taken from the [`Hardware`](crate::Hardware) (roots included).
    pub tables_allocated: u64,
    /// Table pages given back.
    pub tables_freed: u64,
    /// Descriptor stores, live or into tables being built, not counting the zeroes that
    /// fill the unused entries of a new table.
    pub descriptors_written: u64,
    /// TLB invalidations of one leaf by address.
    pub tlbi_by_va: u64,
    /// Range TLB invalidations (FEAT_TLBIRANGE).
    pub tlbi_range: u64,
    /// Whole-regime invalidations (and, at stage 2, invalidations of the VMID's stage 1).
    pub tlbi_all: u64,
    /// DSBs.
    pub dsb: u64,
    /// ISBs.
    pub isb: u64,
    /// 1 GiB blocks split into a table of 2 MiB blocks.
    pub splits_1g: u64,
    /// 2 MiB blocks split into a table of 4 KiB pages.
    pub splits_2m: u64,
    /// Tables of 2 MiB blocks collapsed into a 1 GiB block.
    pub collapses_1g: u64,
    /// Tables of 4 KiB pages collapsed into a 2 MiB block.
    pub collapses_2m: u64,
    /// Contiguous groups whose hint was set on a live or existing table (groups built
    /// into new tables are not counted).
    pub cont_groups_set: u64,
    /// Contiguous groups whose hint was cleared.
    pub cont_groups_cleared: u64,
    /// Entries broken by break-before-make (made invalid, then valid again).
    pub transient_unmaps: u64,
}

impl Counters {
    /// `self - earlier`, field by field.
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            tables_allocated: self.tables_allocated - earlier.tables_allocated,
            tables_freed: self.tables_freed - earlier.tables_freed,
            descriptors_written: self.descriptors_written - earlier.descriptors_written,
            tlbi_by_va: self.tlbi_by_va - earlier.tlbi_by_va,
            tlbi_range: self.tlbi_range - earlier.tlbi_range,
            tlbi_all: self.tlbi_all - earlier.tlbi_all,
            dsb: self.dsb - earlier.dsb,
            isb: self.isb - earlier.isb,
            splits_1g: self.splits_1g - earlier.splits_1g,
            splits_2m: self.splits_2m - earlier.splits_2m,
            collapses_1g: self.collapses_1g - earlier.collapses_1g,
            collapses_2m: self.collapses_2m - earlier.collapses_2m,
            cont_groups_set: self.cont_groups_set - earlier.cont_groups_set,
            cont_groups_cleared: self.cont_groups_cleared - earlier.cont_groups_cleared,
            transient_unmaps: self.transient_unmaps - earlier.transient_unmaps,
        }
    }

    /// All TLB invalidations.
    pub fn tlbi_total(&self) -> u64 {
        self.tlbi_by_va + self.tlbi_range + self.tlbi_all
    }
}
