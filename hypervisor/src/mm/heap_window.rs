//! The hypervisor heap's virtual window, vmalloc-style (seed 004): a range of EL2 virtual
//! addresses apart from the direct map that grows on demand. Each growth step maps a
//! 2 MiB-aligned, physically contiguous 2 MiB chunk as one 2M block when the frame
//! allocator has one, and 512 separate 4K pages otherwise (counted as a fallback).
//!
//! The policy lives here; [`HeapBacking`] supplies frames and maps them (the EL2
//! translation tables on the board, a fake in the tests). Growth never allocates from the
//! heap itself, so it can run while the heap's lock is held: no recursion, no deadlock.

use crate::mm::frames::{BLOCK_2M, PAGE_SIZE};

/// Frames and mappings for the window.
pub trait HeapBacking {
    fn alloc_2m(&mut self) -> Option<u64>;
    fn alloc_page(&mut self) -> Option<u64>;
    /// Returns a page from `alloc_page` that could not be mapped.
    fn free_page(&mut self, pa: u64);
    /// Returns a chunk from `alloc_2m` that could not be mapped.
    fn free_2m(&mut self, pa: u64);
    /// Maps `va` to the 2 MiB chunk at `pa` with one 2M block.
    ///
    /// # Errors
    /// When a translation table cannot be allocated; nothing is mapped then.
    fn map_2m(&mut self, va: u64, pa: u64) -> Result<(), NotMapped>;
    /// Maps one 4 KiB page.
    ///
    /// # Errors
    /// As for `map_2m`.
    fn map_page(&mut self, va: u64, pa: u64) -> Result<(), NotMapped>;
}

/// A [`HeapBacking`] could not map a chunk or page (no memory for a translation table); it
/// said why in its log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotMapped;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapCounters {
    pub chunks_2m: u64,
    pub pages_4k: u64,
    /// Growth steps that could not get a 2 MiB chunk and used 4K pages.
    pub fallbacks: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrowError {
    /// The window's virtual range is used up.
    WindowFull,
    /// No frames (or no table pages) left; the window grew by what could be mapped.
    OutOfMemory,
}

pub struct HeapWindow {
    base: u64,
    end: u64,
    limit: u64,
    counters: HeapCounters,
}

impl HeapWindow {
    /// A window `[base, limit)`; both 2 MiB aligned.
    pub const fn new(base: u64, limit: u64) -> Self {
        Self {
            base,
            end: base,
            limit,
            counters: HeapCounters {
                chunks_2m: 0,
                pages_4k: 0,
                fallbacks: 0,
            },
        }
    }

    /// The mapped part, `[base, end)`.
    pub fn mapped(&self) -> (u64, u64) {
        (self.base, self.end)
    }

    pub fn counters(&self) -> HeapCounters {
        self.counters
    }

    /// Maps at least `bytes` more (rounded up to 2 MiB steps) at the window's end and
    /// returns the newly mapped `[start, end)` for the heap to take.
    ///
    /// # Errors
    /// [`GrowError`]; on `OutOfMemory` the window may have grown by less than asked, and
    /// `mapped()` tells by how much.
    pub fn grow(
        &mut self,
        bytes: u64,
        backing: &mut impl HeapBacking,
    ) -> Result<(u64, u64), GrowError> {
        let want = bytes.max(1).div_ceil(BLOCK_2M) * BLOCK_2M;
        let start = self.end;
        let target = start
            .checked_add(want)
            .filter(|&t| t <= self.limit)
            .ok_or(GrowError::WindowFull)?;
        while self.end < target {
            if let Some(chunk) = backing.alloc_2m() {
                if backing.map_2m(self.end, chunk).is_ok() {
                    self.end += BLOCK_2M;
                    self.counters.chunks_2m += 1;
                    continue;
                }
                // No table page for the mapping: pages would need one too, so give up.
                backing.free_2m(chunk);
                return Err(GrowError::OutOfMemory);
            }
            self.counters.fallbacks += 1;
            let step_end = self.end + BLOCK_2M;
            while self.end < step_end {
                let Some(page) = backing.alloc_page() else {
                    return Err(GrowError::OutOfMemory);
                };
                if backing.map_page(self.end, page).is_err() {
                    backing.free_page(page);
                    return Err(GrowError::OutOfMemory);
                }
                self.end += PAGE_SIZE;
                self.counters.pages_4k += 1;
            }
        }
        Ok((start, self.end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeBacking {
        chunks: Vec<u64>,
        pages: Vec<u64>,
        freed: Vec<u64>,
        mapped: Vec<(u64, u64, u64)>,
        table_pages_left: usize,
    }

    impl HeapBacking for FakeBacking {
        fn alloc_2m(&mut self) -> Option<u64> {
            self.chunks.pop()
        }
        fn alloc_page(&mut self) -> Option<u64> {
            self.pages.pop()
        }
        fn free_page(&mut self, pa: u64) {
            self.freed.push(pa);
        }
        fn free_2m(&mut self, pa: u64) {
            self.freed.push(pa);
        }
        fn map_2m(&mut self, va: u64, pa: u64) -> Result<(), NotMapped> {
            if self.table_pages_left == 0 {
                return Err(NotMapped);
            }
            self.mapped.push((va, pa, BLOCK_2M));
            Ok(())
        }
        fn map_page(&mut self, va: u64, pa: u64) -> Result<(), NotMapped> {
            if self.table_pages_left == 0 {
                return Err(NotMapped);
            }
            self.table_pages_left -= 1;
            self.mapped.push((va, pa, PAGE_SIZE));
            Ok(())
        }
    }

    const WINDOW: u64 = 0xff00_0000_0000;

    #[test]
    fn growth_uses_2m_blocks_while_chunks_last_then_pages() {
        let mut backing = FakeBacking {
            chunks: vec![0x8020_0000],
            pages: (0..600).map(|i| 0x9000_0000 + i * PAGE_SIZE).collect(),
            freed: vec![],
            mapped: vec![],
            table_pages_left: usize::MAX,
        };
        let mut window = HeapWindow::new(WINDOW, WINDOW + (1 << 30));
        assert_eq!(
            window.grow(3 << 20, &mut backing),
            Ok((WINDOW, WINDOW + (4 << 20)))
        );
        assert_eq!(
            window.counters(),
            HeapCounters {
                chunks_2m: 1,
                pages_4k: 512,
                fallbacks: 1
            }
        );
        assert_eq!(backing.mapped[0], (WINDOW, 0x8020_0000, BLOCK_2M));
        assert!(
            backing.mapped[1..]
                .iter()
                .all(|&(_, _, size)| size == PAGE_SIZE)
        );
    }

    #[test]
    fn the_window_never_passes_its_limit() {
        let mut backing = FakeBacking {
            chunks: vec![0; 4],
            pages: vec![],
            freed: vec![],
            mapped: vec![],
            table_pages_left: usize::MAX,
        };
        let mut window = HeapWindow::new(WINDOW, WINDOW + BLOCK_2M);
        assert!(window.grow(1, &mut backing).is_ok());
        assert_eq!(window.grow(1, &mut backing), Err(GrowError::WindowFull));
        assert_eq!(window.mapped(), (WINDOW, WINDOW + BLOCK_2M));
    }

    #[test]
    fn running_out_keeps_what_was_mapped_and_returns_the_unmapped_page() {
        let mut backing = FakeBacking {
            chunks: vec![],
            pages: vec![0x1000, 0x2000, 0x3000],
            freed: vec![],
            mapped: vec![],
            table_pages_left: 2,
        };
        let mut window = HeapWindow::new(WINDOW, WINDOW + (1 << 30));
        assert_eq!(window.grow(1, &mut backing), Err(GrowError::OutOfMemory));
        assert_eq!(window.mapped(), (WINDOW, WINDOW + 2 * PAGE_SIZE));
        assert_eq!(backing.freed, vec![0x1000]);
    }

    #[test]
    fn a_chunk_that_cannot_be_mapped_goes_back() {
        let mut backing = FakeBacking {
            chunks: vec![0x8020_0000],
            pages: vec![],
            freed: vec![],
            mapped: vec![],
            table_pages_left: 0,
        };
        let mut window = HeapWindow::new(WINDOW, WINDOW + (1 << 30));
        assert_eq!(window.grow(1, &mut backing), Err(GrowError::OutOfMemory));
        assert_eq!(backing.freed, vec![0x8020_0000]);
        assert_eq!(window.mapped(), (WINDOW, WINDOW));
    }
}
