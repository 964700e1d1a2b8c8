//! The only part of the engine that touches hardware: table memory, descriptor stores,
//! barriers and TLB maintenance.

use core::ptr::NonNull;

/// A physical address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhysAddr(pub u64);

/// Data synchronization barriers the engine issues, always inner shareable (the tables
/// are shared by all CPUs of the inner shareable domain).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Barrier {
    /// `DSB ISHST`: earlier stores (descriptor writes, table fills) are observed by the
    /// table walkers of all CPUs before anything after the barrier.
    StoresIsh,
    /// `DSB ISH`: additionally waits for earlier TLB invalidations to complete on all
    /// CPUs.
    FullIsh,
}

/// One TLB invalidation, broadcast to the inner shareable domain.
///
/// The engine states *what* must be invalidated; the implementation picks the
/// instruction for its regime (EL2 stage 1 or the stage 2 of its VMID, which it must have
/// current in VTTBR_EL2). Addresses are input addresses (VA or IPA).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlbInvalidation {
    /// The leaf (block, page, or one entry of a contiguous group) at `level` that
    /// translated `addr`. Walk caches need not be touched. A last-level TLBI by address
    /// removes every leaf entry that translates `addr`, whatever its size, so one such
    /// TLBI may stand for entries of several levels (the old block of a split and the
    /// page of it changed afterwards): then `level` is `None`.
    /// EL2: `TLBI VALE2IS`; stage 2: `TLBI IPAS2LE1IS`; with the TTL hint = `level` if
    /// FEAT_TTL is used, and no hint (TTL 0) for `None` (a wrong hint would let the TLBI
    /// miss entries of the other levels).
    Leaf {
        /// An input address within the entry.
        addr: u64,
        /// The level of the entry (TTL hint); `None` if entries of several levels.
        level: Option<u8>,
    },
    /// Every translation and walk-cache entry for input addresses in
    /// `[start, start + size)`. Only issued when [`Capabilities::tlbi_range`] is set.
    /// EL2: `TLBI RVAE2IS`; stage 2: `TLBI RIPAS2E1IS`, each as many instructions as the
    /// range encoding needs.
    Range {
        /// Start of the range (page aligned).
        start: u64,
        /// Size of the range (a multiple of 4 KiB).
        size: u64,
    },
    /// Everything of the regime. EL2: `TLBI ALLE2IS`; stage 2: `TLBI VMALLS12E1IS`.
    All,
    /// Stage 2 only: the combined stage-1+2 entries of the VMID, which IPA-based
    /// invalidation does not reach (the Arm ARM description of `TLBI IPAS2E1IS`; KVM's
    /// `__kvm_tlb_flush_vmid_ipa` does the same): `TLBI VMALLE1IS`. Issued after the
    /// IPA-based invalidations have completed.
    Stage1OfVmid,
}

/// Where a descriptor store goes, for implementations that record traces. The aarch64
/// implementation ignores everything but the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DescriptorWrite {
    /// Start of the input range the entry covers.
    pub addr: u64,
    /// Level of the entry.
    pub level: u8,
    /// The value being replaced.
    pub old: u64,
    /// The value being stored.
    pub new: u64,
}

/// How a live block is split and a live table collapsed (Arm ARM RKFLJB).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SplitStrategy {
    /// Level-0 rules: every change of block size goes through break-before-make
    /// (RDDMVT): invalid entry, DSB, TLBI, DSB, new entry, DSB. The range of the broken
    /// entry is transiently unmapped.
    BreakBeforeMake,
    /// FEAT_BBM level 2: the size changes directly and alone (the new subtable, built
    /// off-line, repeats the block's output addresses and attributes and is written over
    /// the live block: RKFLJB, RPVTFW); a permission change follows in place, then one
    /// invalidation pass and one DSB before the operation returns (IHYQMB: stale entries
    /// may raise TLB conflict aborts until invalidated, so Linux trusts only "no-abort"
    /// CPUs for this, and the hypervisor handles the aborts).
    Bbml2,
}

/// What every CPU offers (decided by the caller from the ID registers), overridable for
/// tests and benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Capabilities {
    /// How size changes of live entries are done.
    pub split: SplitStrategy,
    /// FEAT_TLBIRANGE: range TLBIs exist.
    pub tlbi_range: bool,
}

/// The caller decides these from what every CPU implements (the hypervisor: from its one
/// decoder of the ID registers, `hypervisor::cpu::features`), or forces them.
impl Capabilities {
    /// The most conservative choice: break-before-make, no range TLBIs.
    pub const BASELINE: Capabilities = Capabilities {
        split: SplitStrategy::BreakBeforeMake,
        tlbi_range: false,
    };
}

/// Table memory, descriptor stores, barriers and TLB maintenance for one table tree.
///
/// # Safety
///
/// Implementations promise that:
/// - [`alloc_table`](Self::alloc_table) returns 4 KiB-aligned pages that nothing else
///   uses until they are given back with [`free_table`](Self::free_table), and
///   [`alloc_root`](Self::alloc_root) returns `pages` physically contiguous pages aligned
///   to their total size;
/// - [`table_ptr`](Self::table_ptr) returns, for such a page, a pointer valid for reads
///   and writes of 4096 bytes (or the whole root) for as long as the page is allocated,
///   aliased by no Rust reference;
/// - the barrier and TLB methods do what their documentation says on the CPU.
pub unsafe trait Hardware {
    /// One page for a translation table, with any content (the engine fills every
    /// entry). `None` if there is no memory: the engine then returns
    /// [`Error::OutOfTables`](crate::Error::OutOfTables) with the tables unchanged.
    fn alloc_table(&mut self) -> Option<PhysAddr>;

    /// `pages` contiguous pages aligned to `pages * 4096`, for a concatenated root.
    fn alloc_root(&mut self, pages: usize) -> Option<PhysAddr>;

    /// Gives back a page from [`alloc_table`](Self::alloc_table). The engine calls it only
    /// once the table is unreachable and, if it was ever reachable by a live walk, only
    /// after its range was invalidated, walk caches included.
    fn free_table(&mut self, table: PhysAddr);

    /// Gives back a root from [`alloc_root`](Self::alloc_root).
    fn free_root(&mut self, root: PhysAddr, pages: usize);

    /// Where the engine can access the table page at `table` (PA -> VA).
    fn table_ptr(&self, table: PhysAddr) -> NonNull<u64>;

    /// Stores one descriptor of a table that hardware may be walking. The store must be a
    /// single 64-bit store, so other CPUs' walkers see either the old or the new value
    /// (single-copy atomicity of aligned 64-bit stores); `write.addr`, `write.level` and
    /// `write.old` are information for recorders.
    ///
    /// # Safety
    /// `slot` points into a table page owned by this tree (the engine's own
    /// obligation).
    #[inline]
    unsafe fn write_descriptor(&mut self, slot: NonNull<u64>, write: DescriptorWrite) {
        // SAFETY: the caller guarantees `slot` is a valid, aligned descriptor slot; a
        // volatile u64 store compiles to one `str`.
        unsafe { slot.as_ptr().write_volatile(write.new) }
    }

    /// The engine has zeroed and filled the unreachable table at `table`; it will be
    /// linked after the next barrier. Only recorders care (default: nothing).
    #[inline]
    fn table_filled(&mut self, _table: PhysAddr) {}

    /// A data synchronization barrier.
    fn dsb(&mut self, barrier: Barrier);

    /// `ISB`: the local CPU's later instructions use the new translations.
    fn isb(&mut self);

    /// One TLB invalidation (the engine orders it with [`dsb`](Self::dsb) calls).
    fn tlbi(&mut self, op: TlbInvalidation);
}
