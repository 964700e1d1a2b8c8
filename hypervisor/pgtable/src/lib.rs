//! Translation-table engine for the EL2 stage-1 and stage-2 regimes (4 KiB granule).
//!
//! One engine builds and edits the hypervisor's own tables (EL2 stage 1, TTBR0_EL2,
//! 48-bit VA, start level 0) and every guest's stage-2 tables (VTTBR_EL2, any IPA size
//! the PA range allows, with up to 16 concatenated root tables where that saves a level: 40 bits
//! start at level 1 with 2 tables, 42 bits with 8, 44 bits and more at level 0; see
//! [`Regime`]). It is portable `no_std` Rust with no allocation of its own; only the
//! [`Hardware`] trait touches the machine: table pages, PA to VA, single-copy-atomic
//! descriptor stores, DSB/ISB and TLBI.
//!
//! # Operations
//!
//! - [`PageTable::map`] maps with the largest leaves alignment allows (1 GiB, 2 MiB,
//!   4 KiB) and the contiguous hint on every whole aligned group of 16 (64 KiB of pages,
//!   32 MiB of 2 MiB blocks; never at level 1, see `regime::cont_allowed`), unless
//!   [`MapFlags`] say `NO_BLOCK_MAPPINGS` / `NO_CONT_MAPPINGS`. The flags are kept in
//!   software bits of the leaves so no later collapse undoes them. New tables are zeroed
//!   and filled once, off-line, and linked after one barrier (seed 001); a tree that is
//!   not live gets no barrier or TLBI at all (seed 002). Mapping over an identical
//!   mapping is a no-op; over anything else it is [`Error::AlreadyMapped`].
//! - [`PageTable::change_attrs`] splits only the leaves that straddle the range's edges,
//!   only as deep as needed (one page out of a 1 GiB block: one table of 2 MiB blocks and
//!   one table of pages), keeps the contiguous hint on untouched whole groups and clears
//!   it on every group an edge cuts (seed 003).
//! - [`PageTable::unmap`] (holes allowed) splits edges the same way and frees tables that
//!   become empty.
//! - [`PageTable::collapse`] turns a table that maps one aligned run with equal
//!   attributes back into a block and sets the hint on qualifying groups; `map` and
//!   `change_attrs` do this by themselves on the tables they touched (Linux never does,
//!   so its linear map degrades towards pages).
//! - [`PageTable::query`] and [`PageTable::mappings`] (ptdump-style merged runs) read the
//!   tables back; [`PageTable::minimal_cover`] (or [`MinimalCover`] fed those runs) counts
//!   the fewest descriptors any engine could write for the same translations, for
//!   reports that compare the descriptors written with it.
//!
//! # Live changes and split strategies
//!
//! Once [`PageTable::mark_live`] was called, every store to a reachable entry is one
//! 64-bit store through [`Hardware::write_descriptor`] and the ordering rules of the Arm
//! ARM apply (module `maintenance` lists the sequence). A change of block size is done
//! according to [`Capabilities::split`], read from ID_AA64MMFR2_EL1.BBM and overridable:
//!
//! - [`SplitStrategy::Bbml2`] (FEAT_BBM level 2): a live store may change the size of an
//!   entry and nothing else (RKFLJB, RPVTFW; any other change at the same time risks a
//!   TLB conflict abort or a mix of old and new values, RNGLXZ / RJQQTC). So an edit
//!   goes in the order of Linux v6.18's linear map (`split_kernel_leaf_mapping`, then
//!   `update_range_prot`): (1) a block that straddles an edge of the range is replaced,
//!   without an invalid step, by a subtable built off-line that repeats the block's
//!   output addresses and attributes everywhere, and a contiguous group an edge cuts
//!   loses its hint with its attributes unchanged; (2) one `DSB ISHST` for the fills and
//!   the subtables are linked; (3) the leaves now inside the range change in place;
//!   (4) one invalidation for the whole operation and a `DSB ISH` before it returns,
//!   because a conflict abort stays possible until the old block is invalidated
//!   (IHYQMB). A TLBI by address at a changed page also removes the old block that
//!   contained it, so one page out of a block still costs one TLBI.
//! - [`SplitStrategy::BreakBeforeMake`] (RDDMVT): invalid entry, DSB, TLBI (by address,
//!   by range with FEAT_TLBIRANGE, or everything), DSB, new entry, DSB. Since the new
//!   entry goes over an invalid one it may change anything, so a split subtable carries
//!   the edit's new values at once. The broken range is returned in
//!   [`OpReport::transiently_unmapped`]; a stage-2 user must treat a translation fault
//!   there as spurious. The invalid entry carries the value to install in its ignored
//!   bits, so the engine needs no memory to remember pending makes.
//!
//! Permission-only changes of a leaf are made in place and invalidated afterwards
//! (RGPPYH); a change of memory type or shareability always breaks (RWHZWS, RPVTFW), with
//! FEAT_BBM only for the leaves inside the range, after the size-only split. Collapses
//! follow the same strategy and are size-only changes: a table becomes a block only when
//! all its entries have equal attributes and one aligned output run. Tables unlinked by a
//! collapse or an unmap are freed only after their range was invalidated, walk caches
//! included.
//!
//! # Failure atomicity
//!
//! Every operation first walks the tables read-only (checking conflicts and counting the
//! tables it needs), then reserves all of them ([`Hardware::alloc_table`], chained through
//! the reserved pages themselves), and only then writes. An allocation failure returns
//! [`Error::OutOfTables`] with the tables exactly as they were, never a panic (unlike
//! Linux's `BUG_ON` on table allocation). No caller input can make the engine panic.
//!
//! # Counters and checks
//!
//! [`Counters`] (one `Copy` struct per tree) count tables allocated and freed,
//! descriptors written, TLBIs by kind, DSBs, ISBs, splits and collapses per level,
//! contiguous groups set and cleared, and break-before-make breaks. With the `host`
//! feature, `host::HostHardware` records every live store, barrier and TLBI, and
//! `check` replays such traces against a TLB model (`check::TraceChecker`, which also
//! refuses, under FEAT_BBM level 2, a store that changes an entry's size together with
//! anything else) and checks
//! the structure of a tree, including that it is the minimal cover of what it maps
//! (`check::check_invariants`); other crates' tests can use both.
//!
//! # Using it on aarch64
//!
//! Implement [`Hardware`] once per tree (the EL2 tree, and one per VMID):
//! `alloc_table`/`free_table`/`alloc_root`/`free_root` from the frame allocator,
//! `table_ptr` as PA to VA, `dsb` as `dsb ishst` / `dsb ish`, `isb`, and `tlbi` with the
//! instructions named on each [`TlbInvalidation`] variant (for a stage 2, with that VMID
//! in VTTBR_EL2). Build the tree, call [`PageTable::mark_live`], then write TTBR0_EL2 or
//! VTTBR_EL2 with [`PageTable::root`]; [`tcr_el2`], [`vtcr_el2`] and [`MAIR_EL2`] give
//! the control-register values. Serialise calls on one tree with a lock.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod attrs;
mod change;
#[cfg(any(test, feature = "host"))]
pub mod check;
mod collapse;
mod counters;
mod cover;
mod descriptor;
mod dump;
mod error;
mod fill;
#[cfg(any(test, feature = "host"))]
pub mod host;
mod hw;
mod maintenance;
mod map;
mod regime;
mod reserve;
mod split;
mod table;
#[cfg(test)]
mod tests;
mod unmap;
mod walk;

pub use attrs::{Access, Attributes, MapFlags, MemoryType};
pub use counters::Counters;
pub use cover::{CoverShape, MinimalCover};
pub use dump::{MappedRange, Mappings, Translation};
pub use error::Error;
pub use hw::{
    Barrier, Capabilities, DescriptorWrite, Hardware, PhysAddr, SplitStrategy, TlbInvalidation,
};
pub use regime::{
    CONT_ENTRIES, ENTRIES, MAIR_EL2, OA_BITS, PAGE_SIZE, Regime, RegimeKind, pa_size_encoding,
    tcr_el2, vtcr_el2,
};
pub use table::{OpReport, PageTable};
