//! The table tree of one regime: its root, its hardware, and the entry-level plumbing
//! every operation shares.

use core::ops::Range;
use core::ptr::NonNull;

use crate::counters::Counters;
use crate::descriptor::Descriptor;
use crate::error::Error;
use crate::hw::{Barrier, Capabilities, DescriptorWrite, Hardware, PhysAddr};
use crate::maintenance::Maintenance;
use crate::regime::{ENTRIES, OA_BITS, PAGE_SIZE, Regime};

/// What an operation did that the caller must know about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpReport {
    /// The smallest range containing every entry that break-before-make made invalid for
    /// a moment. A stage-2 user must treat a translation fault in this range, taken
    /// while the operation ran, as spurious and retry. `None` when nothing was broken.
    pub transiently_unmapped: Option<Range<u64>>,
}

/// One translation table tree (EL2 stage 1 or a stage 2), with the hardware that backs
/// it. Operations take `&mut self`: the caller serialises writers (a lock), while other
/// CPUs may walk the tables concurrently once the tree is live.
pub struct PageTable<H: Hardware> {
    pub(crate) hw: H,
    regime: Regime,
    caps: Capabilities,
    root: PhysAddr,
    live: bool,
    pub(crate) counters: Counters,
    pub(crate) maintenance: Maintenance,
    /// Tests: maps that took the fast path, and a switch to force the general path.
    #[cfg(test)]
    pub(crate) fast_maps: u64,
    #[cfg(test)]
    pub(crate) general_map_only: bool,
}

// SAFETY: besides `H`, a tree holds only plain values and, between the steps of one
// `&mut self` operation, pointers to its own table pages (pending publications). Those
// pages belong to the tree wherever it goes; moving it to another CPU moves their
// ownership with it.
unsafe impl<H: Hardware + Send> Send for PageTable<H> {}

impl<H: Hardware> PageTable<H> {
    /// An empty tree for `regime`; not live.
    ///
    /// # Errors
    /// [`Error::OutOfTables`] if the root cannot be allocated.
    pub fn new(mut hw: H, regime: Regime, caps: Capabilities) -> Result<Self, Error> {
        let pages = regime.root_tables();
        let root = hw.alloc_root(pages).ok_or(Error::OutOfTables)?;
        let ptr = hw.table_ptr(root).as_ptr();
        // SAFETY: the root's `pages` pages were just allocated for us (Hardware contract).
        unsafe { ptr.write_bytes(0, ENTRIES * pages) };
        let counters = Counters {
            tables_allocated: pages as u64,
            ..Counters::default()
        };
        Ok(PageTable {
            hw,
            regime,
            caps,
            root,
            live: false,
            counters,
            maintenance: Maintenance::new(),
            #[cfg(test)]
            fast_maps: 0,
            #[cfg(test)]
            general_map_only: false,
        })
    }

    /// The regime.
    pub fn regime(&self) -> Regime {
        self.regime
    }

    /// The root table's physical address, for TTBR0_EL2 or VTTBR_EL2.BADDR.
    pub fn root(&self) -> PhysAddr {
        self.root
    }

    /// How live changes are made.
    pub fn capabilities(&self) -> Capabilities {
        self.caps
    }

    /// Overrides the capabilities (tests, benchmarks, or a CPU brought online later
    /// that lacks a feature).
    pub fn set_capabilities(&mut self, caps: Capabilities) {
        self.caps = caps;
    }

    /// What the engine has done so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The hardware.
    pub fn hardware(&self) -> &H {
        &self.hw
    }

    /// The hardware, mutably (e.g. to read or clear a host trace).
    pub fn hardware_mut(&mut self) -> &mut H {
        &mut self.hw
    }

    /// Whether hardware may be walking the tree.
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// Declares the tree live: from now on every change follows the architectural
    /// sequences (single-copy atomic stores, barriers, TLB invalidation). Issues one
    /// `DSB ISHST` so every entry written so far is visible to walkers before the caller
    /// writes TTBR0_EL2 or VTTBR_EL2.
    pub fn mark_live(&mut self) {
        self.dsb(Barrier::StoresIsh);
        self.live = true;
    }

    /// Declares the tree not live. The caller must already have switched the regime
    /// away from it and invalidated its TLB entries (e.g. `TLBI VMALLS12E1IS` for a
    /// stage 2); after this the engine issues no barrier or TLBI for it.
    pub fn mark_not_live(&mut self) {
        self.live = false;
    }

    /// Checks an input range and returns its bounds.
    pub(crate) fn check_range(&self, range: &Range<u64>) -> Result<(u64, u64), Error> {
        let (start, end) = (range.start, range.end);
        if start % PAGE_SIZE != 0 {
            return Err(Error::Misaligned { value: start });
        }
        if end % PAGE_SIZE != 0 {
            return Err(Error::Misaligned { value: end });
        }
        if start >= end {
            return Err(Error::EmptyRange);
        }
        if end > self.regime.ia_limit() {
            return Err(Error::OutOfRange {
                addr: start.max(self.regime.ia_limit()),
            });
        }
        Ok((start, end))
    }

    /// Checks an output range of `size` bytes at `pa`.
    pub(crate) fn check_output(&self, pa: PhysAddr, size: u64) -> Result<(), Error> {
        if !pa.0.is_multiple_of(PAGE_SIZE) {
            return Err(Error::Misaligned { value: pa.0 });
        }
        match pa.0.checked_add(size) {
            Some(end) if end <= 1 << OA_BITS => Ok(()),
            _ => Err(Error::OutOfRange { addr: pa.0 }),
        }
    }

    /// The slot of entry `index` of the table at `table`.
    #[inline]
    pub(crate) fn slot(&self, table: PhysAddr, index: usize) -> NonNull<u64> {
        // SAFETY: `index` is below the table's entry count (512, or the concatenated
        // root's), so the pointer stays inside the page(s) table_ptr makes valid.
        unsafe { self.hw.table_ptr(table).add(index) }
    }

    /// Reads an entry. Only this engine writes tables (no hardware Access-flag or dirty
    /// updates are enabled) and writers are serialised, so a plain read is exact.
    #[inline]
    pub(crate) fn read(&self, slot: NonNull<u64>) -> Descriptor {
        // SAFETY: `slot` came from `self.slot` for a table of this tree.
        Descriptor(unsafe { slot.as_ptr().read() })
    }

    /// Stores an entry of the tree: a single 64-bit store through the hardware when the
    /// tree is live (other CPUs may be walking it), a plain store otherwise.
    #[inline]
    pub(crate) fn store(
        &mut self,
        slot: NonNull<u64>,
        addr: u64,
        level: u8,
        old: Descriptor,
        new: Descriptor,
    ) {
        self.counters.descriptors_written += 1;
        if self.live {
            self.maintenance.unsynced_stores = true;
            self.maintenance.changed = true;
            let write = DescriptorWrite {
                addr,
                level,
                old: old.0,
                new: new.0,
            };
            // SAFETY: `slot` is an entry of a table of this tree.
            unsafe { self.hw.write_descriptor(slot, write) };
        } else {
            // SAFETY: as above; nothing walks a tree that is not live.
            unsafe { slot.as_ptr().write(new.0) };
        }
    }

    #[inline]
    pub(crate) fn dsb(&mut self, barrier: Barrier) {
        self.counters.dsb += 1;
        self.hw.dsb(barrier);
    }

    #[inline]
    pub(crate) fn isb(&mut self) {
        self.counters.isb += 1;
        self.hw.isb();
    }

    /// Frees the table at `table` (entries at `level`) and every table below it.
    pub(crate) fn free_subtree(&mut self, table: PhysAddr, level: u8) {
        if level < 3 {
            let entries = self.hw.table_ptr(table);
            for index in 0..ENTRIES {
                // SAFETY: index < 512 entries of a table of this tree, which stays
                // allocated until the free below.
                let entry = self.read(unsafe { entries.add(index) });
                if entry.is_table(level) {
                    self.free_subtree(PhysAddr(entry.output_address()), level + 1);
                }
            }
        }
        self.hw.free_table(table);
        self.counters.tables_freed += 1;
    }
}

impl<H: Hardware> PageTable<H> {
    /// Frees every table (when not live) and returns the hardware. A live tree's tables
    /// are leaked, as on drop.
    pub fn into_hardware(self) -> H {
        let mut this = core::mem::ManuallyDrop::new(self);
        this.release_all();
        // SAFETY: `this` is never used or dropped again; `hw` is moved out exactly once.
        unsafe { core::ptr::read(&this.hw) }
    }

    fn release_all(&mut self) {
        if self.live {
            return;
        }
        let regime = self.regime;
        let entries = self.hw.table_ptr(self.root);
        for index in 0..regime.root_entries() {
            // SAFETY: index < the root's entry count, inside the root's pages.
            let entry = self.read(unsafe { entries.add(index) });
            if entry.is_table(regime.start_level()) {
                self.free_subtree(PhysAddr(entry.output_address()), regime.start_level() + 1);
            }
        }
        self.hw.free_root(self.root, regime.root_tables());
        self.counters.tables_freed += regime.root_tables() as u64;
    }
}

impl<H: Hardware> Drop for PageTable<H> {
    /// Frees every table of a tree that is not live. A live tree is leaked: hardware may
    /// still walk it.
    fn drop(&mut self) {
        self.release_all();
    }
}
