//! A [`Hardware`] for host tests and benchmarks: a pre-touched pool of table pages with
//! made-up physical addresses, barrier and TLBI counters, allocation-failure injection,
//! and an optional trace of every live descriptor store, barrier and TLBI for the
//! [`TraceChecker`](crate::check::TraceChecker).

extern crate std;

use core::ptr::NonNull;
use std::alloc::{Layout, alloc, dealloc};
use std::vec::Vec;

use crate::check::{Event, footprint};
use crate::hw::{Barrier, DescriptorWrite, Hardware, PhysAddr, TlbInvalidation};
use crate::regime::{ENTRIES, PAGE_SIZE};

/// Physical address of the first page of a pool (QEMU virt's RAM base, so PAs look real
/// and differ from host pointers).
pub const POOL_BASE: u64 = 0x4000_0000;

/// Host huge-page size the pool is aligned to (x86-64 and arm64 Linux with 4 KiB pages).
const HUGE_PAGE: usize = 2 << 20;

/// Asks the host kernel to back `[addr, addr + len)` with transparent huge pages, as the
/// hypervisor maps its own table pool with 2 MiB blocks: without it a large pool is 4 KiB
/// host pages and every engine's time includes host TLB misses that say nothing about it.
/// Advice only: where the host does not follow it, nothing changes.
pub fn back_with_huge_pages(addr: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    {
        const MADV_HUGEPAGE: i32 = 14;
        unsafe extern "C" {
            fn madvise(addr: *mut core::ffi::c_void, len: usize, advice: i32) -> i32;
        }
        // SAFETY: advice on memory this process allocated; it changes no contents. The
        // result is ignored on purpose (advice).
        let _ = unsafe { madvise(addr.cast(), len, MADV_HUGEPAGE) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (addr, len);
}

/// The host pool and recorder.
pub struct HostHardware {
    memory: NonNull<u64>,
    pages: usize,
    bump: usize,
    free: Vec<u32>,
    in_use: usize,
    allocations: u64,
    fail_after: Option<u64>,
    trace: Option<Vec<Event>>,
}

// SAFETY: the pool is owned memory, like a Vec.
unsafe impl Send for HostHardware {}

impl HostHardware {
    /// A pool of `pages` table pages, every page touched once so no run pays for page
    /// faults.
    ///
    /// # Panics
    /// If the host cannot allocate the pool.
    pub fn new(pages: usize) -> Self {
        let layout = Self::layout(pages);
        // SAFETY: the layout has a non-zero size.
        let memory = unsafe { alloc(layout) }.cast::<u64>();
        let memory = NonNull::new(memory).expect("host table pool allocation");
        // Advice before the first touch: a zeroing allocation would fault it all in as
        // small pages first.
        back_with_huge_pages(memory.as_ptr().cast(), layout.size());
        // SAFETY: the whole allocation; zeroing also touches every page once, so no run
        // pays for page faults.
        unsafe { memory.as_ptr().write_bytes(0, pages.max(1) * ENTRIES) };
        HostHardware {
            memory,
            pages,
            bump: 0,
            free: Vec::new(),
            in_use: 0,
            allocations: 0,
            fail_after: None,
            trace: None,
        }
    }

    fn layout(pages: usize) -> Layout {
        Layout::from_size_align(pages.max(1) * PAGE_SIZE as usize, HUGE_PAGE).expect("pool layout")
    }

    /// Starts recording a trace (clearing any earlier one).
    pub fn record(&mut self) {
        self.trace = Some(Vec::new());
    }

    /// Stops recording.
    pub fn stop_recording(&mut self) {
        self.trace = None;
    }

    /// Takes the events recorded so far, leaving recording on.
    pub fn take_trace(&mut self) -> Vec<Event> {
        self.trace.as_mut().map(core::mem::take).unwrap_or_default()
    }

    /// Lets the next `count` allocations succeed and every later one fail (`None`: never
    /// fail).
    pub fn fail_after(&mut self, count: Option<u64>) {
        self.fail_after = count;
    }

    /// Pages currently handed out.
    pub fn pages_in_use(&self) -> usize {
        self.in_use
    }

    /// Successful allocations so far.
    pub fn allocations(&self) -> u64 {
        self.allocations
    }

    #[inline]
    fn index(&self, pa: PhysAddr) -> usize {
        // Below the pool the subtraction wraps to an index far beyond it.
        let index = (pa.0.wrapping_sub(POOL_BASE) / PAGE_SIZE) as usize;
        assert!(index < self.pages, "{pa:x?} is not a pool page");
        index
    }

    /// Reads entry `index` of the table at `table`.
    pub fn read_entry(&self, table: u64, index: usize) -> u64 {
        let ptr = self.table_ptr(PhysAddr(table));
        // SAFETY: table_ptr checked the page is in the pool.
        unsafe { ptr.as_ptr().add(index).read() }
    }

    fn may_allocate(&mut self) -> bool {
        match self.fail_after {
            Some(0) => false,
            Some(ref mut n) => {
                *n -= 1;
                true
            }
            None => true,
        }
    }

    fn log(&mut self, event: Event) {
        if let Some(trace) = &mut self.trace {
            trace.push(event);
        }
    }
}

impl Drop for HostHardware {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with the same layout.
        unsafe { dealloc(self.memory.as_ptr().cast(), Self::layout(self.pages)) };
    }
}

// SAFETY: pages come from one owned allocation, are handed out once until freed, and
// table_ptr stays inside it; barriers and TLBIs are recorded only (nothing walks host
// tables).
unsafe impl Hardware for HostHardware {
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        if !self.may_allocate() {
            return None;
        }
        let index = match self.free.pop() {
            Some(index) => index as usize,
            None if self.bump < self.pages => {
                self.bump += 1;
                self.bump - 1
            }
            None => return None,
        };
        self.in_use += 1;
        self.allocations += 1;
        let pa = PhysAddr(POOL_BASE + index as u64 * PAGE_SIZE);
        self.log(Event::Alloc { table: pa.0 });
        Some(pa)
    }

    fn alloc_root(&mut self, pages: usize) -> Option<PhysAddr> {
        if pages == 1 {
            return self.alloc_table();
        }
        if !self.may_allocate() {
            return None;
        }
        let start = self.bump.next_multiple_of(pages);
        if start + pages > self.pages {
            return None;
        }
        // Pages skipped for alignment stay usable.
        self.free.extend((self.bump..start).map(|i| i as u32));
        self.bump = start + pages;
        self.in_use += pages;
        self.allocations += 1;
        Some(PhysAddr(POOL_BASE + start as u64 * PAGE_SIZE))
    }

    fn free_table(&mut self, table: PhysAddr) {
        let index = self.index(table);
        self.free.push(index as u32);
        self.in_use -= 1;
        self.log(Event::Free { table: table.0 });
    }

    fn free_root(&mut self, root: PhysAddr, pages: usize) {
        let index = self.index(root);
        self.free.extend((index..index + pages).map(|i| i as u32));
        self.in_use -= pages;
    }

    #[inline]
    fn table_ptr(&self, table: PhysAddr) -> NonNull<u64> {
        let index = self.index(table);
        // SAFETY: index < pages, inside the allocation.
        unsafe { self.memory.add(index * ENTRIES) }
    }

    unsafe fn write_descriptor(&mut self, slot: NonNull<u64>, write: DescriptorWrite) {
        if self.trace.is_some() {
            let read = |table: u64, index: usize| self.read_entry(table, index);
            let old = footprint(&read, write.addr, write.level, write.old);
            let new = footprint(&read, write.addr, write.level, write.new);
            self.log(Event::Write { write, old, new });
        }
        // SAFETY: the engine passes a slot of one of our pages.
        unsafe { slot.as_ptr().write_volatile(write.new) };
    }

    fn table_filled(&mut self, table: PhysAddr) {
        self.log(Event::Filled { table: table.0 });
    }

    fn dsb(&mut self, barrier: Barrier) {
        self.log(Event::Dsb(barrier));
    }

    fn isb(&mut self) {
        self.log(Event::Isb);
    }

    fn tlbi(&mut self, op: TlbInvalidation) {
        self.log(Event::Tlbi(op));
    }
}
