//! Workloads shared by the criterion bench (`benches/engine.rs`) and the side-by-side table
//! (`examples/compare.rs`): the same mappings and permission changes, run on this engine and
//! on Google's aarch64-paging, each with a pre-touched pool of table pages.

#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use aarch64_paging::Mapping;
use aarch64_paging::descriptor::El23Attributes;
use aarch64_paging::descriptor::PhysicalAddress;
use aarch64_paging::paging::{Constraints, El2, MemoryRegion, PageTable as ApTable, Translation};
use pgtable::host::HostHardware;
use pgtable::{Attributes, Capabilities, MapFlags, PageTable, PhysAddr, Regime, SplitStrategy};

pub const GIB: u64 = 1 << 30;

/// Pool base for aarch64-paging's tables (a made-up physical address, like ours).
const AP_BASE: usize = 0x8000_0000;

/// A pre-touched pool for aarch64-paging. Its `Translation` contract wants zeroed pages,
/// so `allocate_table` zeroes one page, the same work our engine does in its fill.
pub struct ApPool {
    base: *mut u8,
    pages: usize,
    next: Cell<usize>,
    free: RefCell<Vec<usize>>,
    in_use: Cell<usize>,
}

impl ApPool {
    pub fn new(pages: usize) -> Self {
        let layout = std::alloc::Layout::from_size_align(pages * 4096, 2 << 20).unwrap();
        // SAFETY: non-zero size.
        let base = unsafe { std::alloc::alloc(layout) };
        assert!(!base.is_null());
        // The same host backing as our pool (HostHardware::new), advised before the
        // first touch.
        pgtable::host::back_with_huge_pages(base, pages * 4096);
        // SAFETY: the whole allocation; touches every page once.
        unsafe { base.write_bytes(0, pages * 4096) };
        ApPool {
            base,
            pages,
            next: Cell::new(0),
            free: RefCell::new(Vec::new()),
            in_use: Cell::new(0),
        }
    }

    pub fn in_use(&self) -> usize {
        self.in_use.get()
    }
}

impl Drop for ApPool {
    fn drop(&mut self) {
        let layout = std::alloc::Layout::from_size_align(self.pages * 4096, 2 << 20).unwrap();
        // SAFETY: allocated in new with this layout.
        unsafe { std::alloc::dealloc(self.base, layout) };
    }
}

pub struct ApTranslation<'a>(pub &'a ApPool);

impl Translation<El23Attributes> for ApTranslation<'_> {
    fn allocate_table(&mut self) -> (NonNull<ApTable<El23Attributes>>, PhysicalAddress) {
        let pool = self.0;
        let index = pool.free.borrow_mut().pop().unwrap_or_else(|| {
            let i = pool.next.get();
            assert!(i < pool.pages, "aarch64-paging pool exhausted");
            pool.next.set(i + 1);
            i
        });
        pool.in_use.set(pool.in_use.get() + 1);
        // SAFETY: inside the pool.
        let ptr = unsafe { pool.base.add(index * 4096) };
        // SAFETY: one page we own.
        unsafe { ptr.write_bytes(0, 4096) };
        (
            NonNull::new(ptr.cast()).unwrap(),
            PhysicalAddress(AP_BASE + index * 4096),
        )
    }

    unsafe fn deallocate_table(&mut self, page_table: NonNull<ApTable<El23Attributes>>) {
        let pool = self.0;
        let index = (page_table.as_ptr() as usize - pool.base as usize) / 4096;
        pool.free.borrow_mut().push(index);
        pool.in_use.set(pool.in_use.get() - 1);
    }

    fn physical_to_virtual(&self, pa: PhysicalAddress) -> NonNull<ApTable<El23Attributes>> {
        // SAFETY: PAs come from allocate_table.
        NonNull::new(unsafe { self.0.base.add(pa.0 - AP_BASE) }.cast()).unwrap()
    }
}

pub fn ap_rw() -> El23Attributes {
    El23Attributes::VALID
        | El23Attributes::ATTRIBUTE_INDEX_0
        | El23Attributes::INNER_SHAREABLE
        | El23Attributes::USER_RES1
        | El23Attributes::ACCESSED
        | El23Attributes::XN
}

/// Pages needed for `gib` GiB of 4 KiB pages, plus slack.
pub fn pool_pages(gib: u64, pages: bool) -> usize {
    if pages {
        (gib as usize) * 513 + 64
    } else {
        1024
    }
}

pub fn caps() -> Capabilities {
    Capabilities {
        split: SplitStrategy::Bbml2,
        tlbi_range: true,
    }
}

pub fn flags(pages: bool) -> MapFlags {
    if pages {
        MapFlags::NO_BLOCK_MAPPINGS
    } else {
        MapFlags::NONE
    }
}

/// What one run measured.
pub struct Sample {
    pub time: Duration,
    pub table_pages: usize,
    pub written: u64,
}

/// Our engine: map `gib` GiB at 0 -> 0 on a tree that is not live.
pub fn ours_map(hw: HostHardware, gib: u64, pages: bool) -> (HostHardware, Sample) {
    let mut pt = PageTable::new(hw, Regime::el2(), caps()).unwrap();
    let t = Instant::now();
    pt.map(0..gib * GIB, PhysAddr(0), Attributes::RW, flags(pages))
        .unwrap();
    let time = t.elapsed();
    let sample = Sample {
        time,
        table_pages: pt.hardware().pages_in_use(),
        written: pt.counters().descriptors_written,
    };
    (pt.into_hardware(), sample)
}

/// aarch64-paging: the same map on an inactive table.
pub fn theirs_map(pool: &ApPool, gib: u64, pages: bool) -> Sample {
    let mut m = Mapping::new(ApTranslation(pool), 0, El2);
    let constraints = if pages {
        Constraints::NO_BLOCK_MAPPINGS
    } else {
        Constraints::empty()
    };
    let t = Instant::now();
    m.map_range(
        &MemoryRegion::new(0, (gib * GIB) as usize),
        PhysicalAddress(0),
        ap_rw(),
        constraints,
    )
    .unwrap();
    let time = t.elapsed();
    let sample = Sample {
        time,
        table_pages: pool.in_use(),
        written: 0,
    };
    drop(m);
    sample
}

/// The pages whose permission the change workload flips to read-only.
pub fn change_pages(count: usize, gib: u64) -> Vec<u64> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % (gib * GIB / 4096)) * 4096
        })
        .collect()
}

/// Our engine: `pages.len()` one-page permission changes on a block-mapped `gib` GiB
/// (not live, like aarch64-paging; `live` runs it live with FEAT_BBM level 2 instead).
pub fn ours_changes(
    hw: HostHardware,
    gib: u64,
    pages: &[u64],
    live: bool,
) -> (HostHardware, Sample) {
    let mut pt = PageTable::new(hw, Regime::el2(), caps()).unwrap();
    pt.map(0..gib * GIB, PhysAddr(0), Attributes::RW, MapFlags::NONE)
        .unwrap();
    if live {
        pt.mark_live();
    }
    let before = pt.counters().descriptors_written;
    let t = Instant::now();
    for &p in pages {
        pt.change_attrs(p..p + 4096, Attributes::RO).unwrap();
    }
    let time = t.elapsed();
    let sample = Sample {
        time,
        table_pages: pt.hardware().pages_in_use(),
        written: pt.counters().descriptors_written - before,
    };
    pt.mark_not_live();
    (pt.into_hardware(), sample)
}

/// aarch64-paging: the same changes with `modify_range` (it splits blocks as needed).
pub fn theirs_changes(pool: &ApPool, gib: u64, pages: &[u64]) -> Sample {
    let mut m = Mapping::new(ApTranslation(pool), 0, El2);
    m.map_range(
        &MemoryRegion::new(0, (gib * GIB) as usize),
        PhysicalAddress(0),
        ap_rw(),
        Constraints::empty(),
    )
    .unwrap();
    let t = Instant::now();
    for &p in pages {
        let p = p as usize;
        m.modify_range(&MemoryRegion::new(p, p + 4096), &|_, d| {
            if d.is_table() || !d.flags().contains(El23Attributes::VALID) {
                return Ok(());
            }
            d.modify_flags(El23Attributes::READ_ONLY, El23Attributes::empty())
        })
        .unwrap();
    }
    let time = t.elapsed();
    let sample = Sample {
        time,
        table_pages: pool.in_use(),
        written: 0,
    };
    drop(m);
    sample
}
