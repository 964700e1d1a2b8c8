//! Physical page frames for the hypervisor: page tables, heap chunks, stacks.
//!
//! Backed by `buddy_system_allocator::Heap`, whose free lists live inside the free
//! frames themselves, so it needs no heap of its own and can serve the very first table
//! pages; naturally aligned power-of-two blocks make 2 MiB-aligned 2 MiB chunks (for
//! block-mapped heap growth) a plain allocation. The frames must be accessible at their
//! physical addresses (identity: MMU off, or the EL2 direct map).

use core::alloc::Layout;
use core::ops::Range;
use core::ptr::NonNull;

use arrayvec::ArrayVec;
use buddy_system_allocator::Heap;

pub const PAGE_SIZE: u64 = 4096;
pub const BLOCK_2M: u64 = 2 << 20;

/// Bytes at the start of each free block that hold the allocator's own bookkeeping: its
/// free lists are intrusive, one link (a pointer) in the first word of every free block.
/// Every request is whole pages, so every block starts on a page: outside the frames it
/// handed out, the allocator writes only to the first `LINK_BYTES` of pages.
pub const LINK_BYTES: u64 = core::mem::size_of::<usize>() as u64;

/// How many allocations [`FrameAllocator::handed_out`] remembers.
pub const HANDED_OUT_LOG: usize = 32;

/// Counters that make memory claims checkable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameCounters {
    pub pages_allocated: u64,
    pub pages_freed: u64,
    pub chunks_2m_allocated: u64,
    pub failures: u64,
}

pub struct FrameAllocator {
    heap: Heap<33>,
    counters: FrameCounters,
    /// The first allocations, in order (for cache maintenance after writes with the MMU
    /// off), and whether there were more.
    handed_out: ArrayVec<Range<u64>, HANDED_OUT_LOG>,
    handed_out_overflow: bool,
}

impl FrameAllocator {
    pub const fn new() -> Self {
        Self {
            heap: Heap::empty(),
            counters: FrameCounters {
                pages_allocated: 0,
                pages_freed: 0,
                chunks_2m_allocated: 0,
                failures: 0,
            },
            handed_out: ArrayVec::new_const(),
            handed_out_overflow: false,
        }
    }

    /// Every frame run handed out so far (freed or not), or `None` once more than 32 were.
    /// With [`LINK_BYTES`] this bounds what the allocator and the frames' users can have
    /// written in the pool: before the MMU goes on, only these runs and the first bytes of
    /// each page need their stale cache lines dropped, not the whole pool.
    pub fn handed_out(&self) -> Option<&[Range<u64>]> {
        (!self.handed_out_overflow).then_some(&self.handed_out[..])
    }

    fn note_handed_out(&mut self, start: u64, size: u64) {
        if self.handed_out.try_push(start..start + size).is_err() {
            self.handed_out_overflow = true;
        }
    }

    /// Hands `[start, end)` to the allocator (shrunk inward to whole pages).
    ///
    /// # Safety
    /// The range must be RAM that nothing else uses, readable and writable at these
    /// addresses for as long as the allocator lives.
    pub unsafe fn add_range(&mut self, start: u64, end: u64) {
        let start = start.next_multiple_of(PAGE_SIZE);
        let end = end & !(PAGE_SIZE - 1);
        if end > start {
            // SAFETY: the caller guarantees the range is unused, accessible RAM.
            unsafe { self.heap.add_to_heap(start as usize, end as usize) };
        }
    }

    fn alloc(&mut self, size: u64, align: u64) -> Option<u64> {
        let layout = Layout::from_size_align(size as usize, align as usize).ok()?;
        match self.heap.alloc(layout) {
            Ok(ptr) => {
                let start = ptr.as_ptr() as u64;
                self.note_handed_out(start, size);
                Some(start)
            }
            Err(()) => {
                self.counters.failures += 1;
                None
            }
        }
    }

    /// One 4 KiB frame, contents undefined.
    pub fn alloc_page(&mut self) -> Option<u64> {
        let frame = self.alloc(PAGE_SIZE, PAGE_SIZE)?;
        self.counters.pages_allocated += 1;
        Some(frame)
    }

    /// A 2 MiB-aligned, physically contiguous 2 MiB chunk.
    pub fn alloc_2m(&mut self) -> Option<u64> {
        let chunk = self.alloc(BLOCK_2M, BLOCK_2M)?;
        self.counters.chunks_2m_allocated += 1;
        Some(chunk)
    }

    /// `pages` physically contiguous frames aligned to their total size (`pages` a power
    /// of two), e.g. for a concatenated stage-2 root table.
    pub fn alloc_contiguous(&mut self, pages: usize) -> Option<u64> {
        let size = PAGE_SIZE.checked_mul(pages as u64)?;
        let frame = self.alloc(size, size)?;
        self.counters.pages_allocated += pages as u64;
        Some(frame)
    }

    /// Returns frames from [`Self::alloc_contiguous`].
    ///
    /// # Safety
    /// As for [`Self::free_page`], for the whole run.
    pub unsafe fn free_contiguous(&mut self, frame: u64, pages: usize) {
        let size = PAGE_SIZE as usize * pages;
        let (Some(ptr), Ok(layout)) = (
            NonNull::new(frame as *mut u8),
            Layout::from_size_align(size, size),
        ) else {
            return;
        };
        // SAFETY: per the contract, `frame` is a live allocation of this layout.
        unsafe { self.heap.dealloc(ptr, layout) };
        self.counters.pages_freed += pages as u64;
    }

    /// Returns a frame from [`Self::alloc_page`].
    ///
    /// # Safety
    /// `frame` came from `alloc_page` of this allocator and is no longer used.
    pub unsafe fn free_page(&mut self, frame: u64) {
        let (Some(ptr), Ok(layout)) = (
            NonNull::new(frame as *mut u8),
            Layout::from_size_align(PAGE_SIZE as usize, PAGE_SIZE as usize),
        ) else {
            return;
        };
        // SAFETY: per the contract, `frame` is a live allocation of this layout.
        unsafe { self.heap.dealloc(ptr, layout) };
        self.counters.pages_freed += 1;
    }

    pub fn free_bytes(&self) -> u64 {
        (self.heap.stats_total_bytes() - self.heap.stats_alloc_actual()) as u64
    }

    pub fn total_bytes(&self) -> u64 {
        self.heap.stats_total_bytes() as u64
    }

    pub fn counters(&self) -> FrameCounters {
        self.counters
    }
}

impl Default for FrameAllocator {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Host memory standing in for RAM: `size` bytes aligned to 2 MiB.
    pub(crate) struct FakeRam {
        _buffer: Vec<u8>,
        pub base: u64,
        pub size: u64,
    }

    impl FakeRam {
        pub(crate) fn new(size: u64) -> Self {
            let buffer = vec![0u8; (size + BLOCK_2M) as usize];
            let base = (buffer.as_ptr() as u64).next_multiple_of(BLOCK_2M);
            Self {
                _buffer: buffer,
                base,
                size,
            }
        }
    }

    #[test]
    fn pages_and_aligned_chunks_come_from_the_given_ranges() {
        let ram = FakeRam::new(8 * BLOCK_2M);
        let mut frames = FrameAllocator::new();
        // SAFETY: the fake RAM outlives the allocator and nothing else uses it.
        unsafe { frames.add_range(ram.base, ram.base + ram.size) };
        let chunk = frames.alloc_2m().expect("2 MiB chunk");
        assert_eq!(chunk % BLOCK_2M, 0);
        assert!(chunk >= ram.base && chunk + BLOCK_2M <= ram.base + ram.size);
        let page = frames.alloc_page().expect("page");
        assert_eq!(page % PAGE_SIZE, 0);
        assert!(page + PAGE_SIZE <= chunk || page >= chunk + BLOCK_2M);
        assert_eq!(frames.free_bytes(), ram.size - BLOCK_2M - PAGE_SIZE);
        // SAFETY: `page` came from alloc_page and is unused.
        unsafe { frames.free_page(page) };
        assert_eq!(
            frames.counters(),
            FrameCounters {
                pages_allocated: 1,
                pages_freed: 1,
                chunks_2m_allocated: 1,
                failures: 0
            }
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// What the cache maintenance before the MMU goes on relies on: outside the runs
        /// `handed_out` lists, the allocator writes nothing but the first `LINK_BYTES` of
        /// pages, whatever the sequence of allocations and frees.
        #[test]
        fn outside_handed_out_frames_only_page_heads_are_written(
            ops in proptest::collection::vec((0u8..4, 0usize..64), 1..40),
        ) {
            let ram = FakeRam::new(4 * BLOCK_2M);
            const PATTERN: u8 = 0xa5;
            // SAFETY: the fake RAM is ours; nothing else uses it.
            unsafe { core::ptr::write_bytes(ram.base as *mut u8, PATTERN, ram.size as usize) };
            let mut frames = FrameAllocator::new();
            // SAFETY: as above; a range that does not start on a 2 MiB boundary.
            unsafe { frames.add_range(ram.base + 3 * PAGE_SIZE, ram.base + ram.size) };
            let mut live: Vec<(u64, usize)> = Vec::new();
            for (kind, pick) in ops {
                match kind {
                    0 => if let Some(p) = frames.alloc_page() { live.push((p, 1)) },
                    1 => if let Some(p) = frames.alloc_contiguous(4) { live.push((p, 4)) },
                    2 => if let Some(p) = frames.alloc_2m() { live.push((p, 512)) },
                    _ if !live.is_empty() => {
                        let (frame, pages) = live.swap_remove(pick % live.len());
                        // SAFETY: a live allocation of this size, unused.
                        unsafe { frames.free_contiguous(frame, pages) };
                    }
                    _ => {}
                }
            }
            let Some(handed_out) = frames.handed_out() else {
                return Ok(());
            };
            let word_pattern = u64::from_ne_bytes([PATTERN; 8]);
            for offset in (0..ram.size).step_by(8) {
                let addr = ram.base + offset;
                // SAFETY: an aligned word inside the fake RAM.
                let word = unsafe { *(addr as *const u64) };
                if word == word_pattern {
                    continue;
                }
                let in_head = addr % PAGE_SIZE + 8 <= LINK_BYTES;
                let in_handed_out = handed_out.iter().any(|r| r.contains(&addr));
                proptest::prop_assert!(in_head || in_handed_out, "write at {:#x}", addr - ram.base);
            }
        }
    }

    #[test]
    fn the_log_gives_up_after_32_allocations() {
        let ram = FakeRam::new(BLOCK_2M);
        let mut frames = FrameAllocator::new();
        // SAFETY: as above.
        unsafe { frames.add_range(ram.base, ram.base + ram.size) };
        for _ in 0..32 {
            frames.alloc_page().expect("page");
        }
        assert_eq!(frames.handed_out().map(<[_]>::len), Some(32));
        frames.alloc_page().expect("page");
        assert_eq!(frames.handed_out(), None);
    }

    #[test]
    fn running_dry_fails_and_counts() {
        let ram = FakeRam::new(BLOCK_2M);
        let mut frames = FrameAllocator::new();
        // SAFETY: as above.
        unsafe { frames.add_range(ram.base + PAGE_SIZE, ram.base + BLOCK_2M) };
        assert_eq!(frames.alloc_2m(), None);
        assert_eq!(frames.counters().failures, 1);
        assert!(frames.alloc_page().is_some());
    }
}
