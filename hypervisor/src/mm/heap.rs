//! The global allocator: a buddy heap over the vmalloc-style window of `heap_window`,
//! growing on demand by 2 MiB blocks (4K pages when no 2 MiB chunk is free). Growth runs
//! under the heap lock and takes only the EL2-table and frame locks, which never
//! allocate: no recursion, no deadlock.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{NonNull, null_mut};
use core::sync::atomic::{AtomicBool, Ordering};

use crate::mm::heap_window::{GrowError, HeapBacking, HeapCounters, HeapWindow, NotMapped};
use buddy_system_allocator::Heap;
use pgtable::{Attributes, MapFlags, PhysAddr};
use spin::Mutex;

use super::FRAMES;
use super::el2_map::EL2_TABLE;

/// The window: 512 GiB of EL2 virtual addresses far above any RAM the identity map covers.
pub const WINDOW_BASE: u64 = 0xff00_0000_0000;
pub const WINDOW_SIZE: u64 = 512 << 30;

struct State {
    heap: Heap<32>,
    window: HeapWindow,
}

pub struct GrowingHeap {
    state: Mutex<State>,
}

#[global_allocator]
static HEAP: GrowingHeap = GrowingHeap {
    state: Mutex::new(State {
        heap: Heap::empty(),
        window: HeapWindow::new(WINDOW_BASE, WINDOW_BASE + WINDOW_SIZE),
    }),
};

/// Growth takes no 2 MiB chunk and maps 4K pages, as in a fragmented pool: the
/// baseline of `mapping=pages`, and the selftests' way to reach the fallback.
static NO_2M_CHUNKS: AtomicBool = AtomicBool::new(false);

/// Sets whether growth uses 4K pages only; returns the previous setting.
pub fn grow_with_4k_pages_only(on: bool) -> bool {
    NO_2M_CHUNKS.swap(on, Ordering::Relaxed)
}

/// Frames from the pool, mapped into the window through the EL2 table.
struct El2Backing;

impl HeapBacking for El2Backing {
    fn alloc_2m(&mut self) -> Option<u64> {
        if NO_2M_CHUNKS.load(Ordering::Relaxed) {
            return None;
        }
        FRAMES.lock().alloc_2m()
    }

    fn alloc_page(&mut self) -> Option<u64> {
        FRAMES.lock().alloc_page()
    }

    fn free_page(&mut self, pa: u64) {
        // SAFETY: `pa` came from alloc_page above and was never mapped.
        unsafe { FRAMES.lock().free_page(pa) };
    }

    fn free_2m(&mut self, pa: u64) {
        // SAFETY: `pa` came from alloc_2m above and was never mapped.
        unsafe { FRAMES.lock().free_contiguous(pa, 512) };
    }

    fn map_2m(&mut self, va: u64, pa: u64) -> Result<(), NotMapped> {
        map(va, pa, 2 << 20, MapFlags::NO_CONT_MAPPINGS)
    }

    fn map_page(&mut self, va: u64, pa: u64) -> Result<(), NotMapped> {
        map(
            va,
            pa,
            4096,
            MapFlags::NO_BLOCK_MAPPINGS | MapFlags::NO_CONT_MAPPINGS,
        )
    }
}

fn map(va: u64, pa: u64, size: u64, flags: MapFlags) -> Result<(), NotMapped> {
    let mut table = EL2_TABLE.lock();
    let table = table.as_mut().ok_or(NotMapped)?;
    table
        .map(va..va + size, PhysAddr(pa), Attributes::RW, flags)
        .map(|_| ())
        .map_err(|error| {
            log::warn!("heap: cannot map {va:#x}: {error}");
            NotMapped
        })
}

// SAFETY: allocations come from the buddy heap over mapped window memory; growth maps new
// memory before handing it to the heap; dealloc returns blocks with their layout.
unsafe impl GlobalAlloc for GrowingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut state = self.state.lock();
        if let Ok(block) = state.heap.alloc(layout) {
            return block.as_ptr();
        }
        // The buddy heap hands out naturally aligned power-of-two blocks: grow far enough
        // that the new memory contains one of the request's order (the part before it is
        // not wasted; it joins the heap too).
        let want = (layout.size().max(layout.align()) as u64).next_power_of_two();
        let State { heap, window } = &mut *state;
        let (_, end) = window.mapped();
        let grow_by = end.next_multiple_of(want) + want - end;
        let result = window.grow(grow_by, &mut El2Backing);
        // A growth step that failed part-way keeps what it mapped (the window's end moved):
        // the heap takes that too, or it would be mapped and lost.
        let (_, now) = window.mapped();
        if now > end {
            // SAFETY: `[end, now)` was just mapped read-write and is unused.
            unsafe { heap.add_to_heap(end as usize, now as usize) };
        }
        if let Err(error) = result {
            log::error!(
                "heap: cannot grow by {grow_by:#x} bytes ({error:?}); grew by {:#x}",
                now - end
            );
        }
        state.heap.alloc(layout).map_or(null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(block) = NonNull::new(ptr) {
            // SAFETY: the caller returns a block this allocator handed out, with its layout.
            unsafe { self.state.lock().heap.dealloc(block, layout) };
        }
    }
}

/// Grows the heap by `bytes` (rounded up to 2 MiB) now, ahead of need, by the same steps
/// an allocation takes; what a failed step mapped still joins the heap.
///
/// # Errors
/// The [`GrowError`] of the step that failed.
pub fn try_grow(bytes: u64) -> Result<(u64, u64), GrowError> {
    let mut state = HEAP.state.lock();
    let State { heap, window } = &mut *state;
    let (_, end) = window.mapped();
    let result = window.grow(bytes, &mut El2Backing);
    let (_, now) = window.mapped();
    if now > end {
        // SAFETY: `[end, now)` was just mapped read-write and is unused.
        unsafe { heap.add_to_heap(end as usize, now as usize) };
    }
    result
}

/// Growth counters and the mapped window, for the boot report.
pub fn stats() -> (HeapCounters, (u64, u64)) {
    let state = HEAP.state.lock();
    (state.window.counters(), state.window.mapped())
}

/// The physical address behind a heap address (block or page leaf alike).
pub fn virt_to_phys(va: u64) -> Option<u64> {
    let table = EL2_TABLE.lock();
    table
        .as_ref()?
        .query(va)
        .map(|translation| translation.pa.0)
}

/// Bytes allocated from the heap now (as the allocator rounds requests: its actual use),
/// for reports of what an object costs (`hyp-facts: guest=N heap_bytes=`).
pub fn bytes_in_use() -> u64 {
    HEAP.state.lock().heap.stats_alloc_actual() as u64
}
