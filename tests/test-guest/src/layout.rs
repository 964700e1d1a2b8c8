//! Where the tests change stage-2 permissions.
//!
//! The hypervisor maps guest RAM at stage 2 with the largest blocks that fit (IPA = PA),
//! so a 1 GiB-aligned GiB wholly inside one guest RAM range is a level-1 block and a
//! 2 MiB-aligned 2 MiB a level-2 block. The tests need such a block that the guest itself
//! does not use — not its image (code, data, stacks, page tables), not its DTB, not a
//! reserved range — so that protecting a page in it and sweeping it from a second CPU
//! disturbs nothing. The guest never allocates memory, so every other byte of RAM is
//! free.
//!
//! [`choose`] prefers the highest free 1 GiB block (a split then goes 1G -> 2M table ->
//! 4K table, the full path), and falls back to the highest free 2 MiB block, preferring
//! one with another 2 MiB of RAM next to it (to see that a split stays inside the
//! changed 2 MiB).
//!
//! Inside the chosen region:
//! - `chunk`, the 2 MiB block whose page changes: the region's second 2 MiB when the
//!   region is a GiB (so the region's first 2 MiB serves as "elsewhere in the former
//!   block"), the region itself when it is 2 MiB;
//! - `page`, the page protected read-only: the middle of `chunk` (its 4K neighbours on
//!   both sides are in the same 2 MiB);
//! - `exec_page`, the page made non-executable: 8 pages above `page`;
//! - `outside`, a page in another 2 MiB block: in the same GiB, or the neighbouring RAM
//!   2 MiB for a 2 MiB region (or none).

use core::fmt;

use crate::abi::{BLOCK_1G, BLOCK_2M, PAGE_SIZE};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Range {
    pub base: u64,
    pub size: u64,
}

impl Range {
    pub const fn new(base: u64, size: u64) -> Self {
        Self { base, size }
    }

    /// One past the last byte, or `None` if the range wraps.
    pub fn end(&self) -> Option<u64> {
        self.base.checked_add(self.size)
    }

    pub fn end_saturating(&self) -> u64 {
        self.base.saturating_add(self.size)
    }

    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr < self.end_saturating()
    }

    pub fn contains_range(&self, other: &Range) -> bool {
        other.base >= self.base && other.end().is_some_and(|end| end <= self.end_saturating())
    }

    pub fn overlaps(&self, other: &Range) -> bool {
        self.size > 0
            && other.size > 0
            && self.base < other.end_saturating()
            && other.base < self.end_saturating()
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}-{:#x}", self.base, self.end_saturating())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// A free, naturally aligned 1 GiB or 2 MiB block of guest RAM.
    pub region: Range,
    /// The 2 MiB block inside `region` that holds `page` and `exec_page`.
    pub chunk: u64,
    pub page: u64,
    pub exec_page: u64,
    /// A page of guest RAM in another 2 MiB block (same GiB when `region` is one).
    pub outside: Option<u64>,
}

impl Layout {
    pub fn is_gigabyte(&self) -> bool {
        self.region.size == BLOCK_1G
    }

    fn in_chunk(chunk: u64, region: Range, outside: Option<u64>) -> Self {
        let page = chunk + BLOCK_2M / 2;
        Self {
            region,
            chunk,
            page,
            exec_page: page + 8 * PAGE_SIZE,
            outside,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    NoFreeBlock,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoFreeBlock => f.write_str(
                "no free 2 MiB-aligned 2 MiB block in guest RAM (outside the image, DTB and reservations)",
            ),
        }
    }
}

/// Picks the test region from guest `ram` (sorted, merged) avoiding `busy` ranges.
pub fn choose(ram: &[Range], busy: &[Range]) -> Result<Layout, LayoutError> {
    let free = |block: Range| !busy.iter().any(|b| b.overlaps(&block));
    let in_ram = |block: Range| ram.iter().any(|r| r.contains_range(&block));
    if let Some(region) = highest_block(ram, BLOCK_1G, free) {
        let chunk = region.base + BLOCK_2M;
        return Ok(Layout::in_chunk(
            chunk,
            region,
            Some(region.base + PAGE_SIZE),
        ));
    }
    let neighbour = |b: Range| {
        let above = Range::new(b.end()?, BLOCK_2M);
        let below = Range::new(b.base.checked_sub(BLOCK_2M)?, BLOCK_2M);
        [above, below]
            .into_iter()
            .find(|n| in_ram(*n))
            .map(|n| n.base + PAGE_SIZE)
    };
    let region = highest_block(ram, BLOCK_2M, |b| free(b) && neighbour(b).is_some())
        .or_else(|| highest_block(ram, BLOCK_2M, free))
        .ok_or(LayoutError::NoFreeBlock)?;
    Ok(Layout::in_chunk(region.base, region, neighbour(region)))
}

/// The highest naturally aligned `size` block inside one of `ram` that `accept`s.
fn highest_block(ram: &[Range], size: u64, accept: impl Fn(Range) -> bool) -> Option<Range> {
    for r in ram.iter().rev() {
        let (Some(end), Some(first)) = (r.end(), r.base.checked_next_multiple_of(size)) else {
            continue;
        };
        // `top`: one past the candidate block.
        let mut top = end & !(size - 1);
        while top.checked_sub(size).is_some_and(|base| base >= first) {
            let base = top - size;
            let block = Range::new(base, size);
            if accept(block) {
                return Some(block);
            }
            top = base;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: u64 = BLOCK_1G;
    const M2: u64 = BLOCK_2M;

    #[test]
    fn prefers_the_highest_free_gigabyte() {
        let ram = [Range::new(0x4000_0000, 2 * G)];
        let image = Range::new(0x4020_0000, 0x4_0000);
        let dtb = Range::new(0x4800_0000, 0x10_0000);
        let l = choose(&ram, &[image, dtb]).unwrap();
        assert_eq!(l.region, Range::new(0x8000_0000, G));
        assert!(l.is_gigabyte());
        assert_eq!(l.chunk, 0x8020_0000);
        assert_eq!(l.page, 0x8030_0000);
        assert_eq!(l.exec_page, 0x8030_8000);
        assert_eq!(l.outside, Some(0x8000_1000));
    }

    #[test]
    fn skips_a_gigabyte_with_something_in_it() {
        let ram = [Range::new(0x4000_0000, 3 * G)];
        let dtb = Range::new(0xfff0_0000, 0x1000);
        let l = choose(&ram, &[dtb]).unwrap();
        assert_eq!(l.region, Range::new(0x8000_0000, G));
    }

    #[test]
    fn gigabyte_must_lie_in_one_range() {
        // The hypervisor took the first 32 MiB of the first GiB: that GiB is not a
        // stage-2 block, the second one is.
        let ram = [
            Range::new(0x4200_0000, 0x3e00_0000),
            Range::new(0x8000_0000, G),
        ];
        let image = Range::new(0x5000_0000, 0x4_0000);
        assert_eq!(
            choose(&ram, &[image]).unwrap().region,
            Range::new(0x8000_0000, G)
        );
    }

    #[test]
    fn falls_back_to_two_megabytes_with_a_neighbour() {
        let ram = [Range::new(0x4000_0000, G)];
        let image = Range::new(0x4020_0000, 0x4_0000);
        let l = choose(&ram, &[image]).unwrap();
        assert_eq!(l.region, Range::new(0x7fe0_0000, M2));
        assert!(!l.is_gigabyte());
        assert_eq!(l.chunk, 0x7fe0_0000);
        assert_eq!(l.page, 0x7ff0_0000);
        assert_eq!(l.outside, Some(0x7fc0_1000));
    }

    #[test]
    fn unaligned_ram_and_busy_top() {
        // RAM that starts and ends off 2 MiB boundaries; the top block is busy.
        let ram = [Range::new(0x4010_0000, 0x70_0000)];
        let busy = [Range::new(0x4060_0000, 0x1000)];
        let l = choose(&ram, &busy).unwrap();
        assert_eq!(l.region, Range::new(0x4040_0000, M2));
        // The busy block is still RAM: a fine place to query.
        assert_eq!(l.outside, Some(0x4060_1000));
    }

    #[test]
    fn lone_block_has_no_outside() {
        let ram = [Range::new(0x4010_0000, 0x40_0000)];
        let l = choose(&ram, &[]).unwrap();
        assert_eq!(l.region, Range::new(0x4020_0000, M2));
        assert_eq!(l.outside, None);
    }

    #[test]
    fn nothing_free() {
        let ram = [Range::new(0x4000_0000, M2)];
        let busy = [Range::new(0x4000_0000, 0x1000)];
        assert_eq!(choose(&ram, &busy), Err(LayoutError::NoFreeBlock));
        assert_eq!(choose(&[], &[]), Err(LayoutError::NoFreeBlock));
        let tiny = [Range::new(0x4000_1000, 0x1000)];
        assert_eq!(choose(&tiny, &[]), Err(LayoutError::NoFreeBlock));
    }

    #[test]
    fn ram_at_the_top_of_the_address_space() {
        let ram = [Range::new(u64::MAX - M2 + 1 - 2 * M2, 2 * M2)];
        let l = choose(&ram, &[]).unwrap();
        assert_eq!(l.region.base, u64::MAX - M2 + 1 - M2);
        let wraps = [Range::new(u64::MAX - M2 + 1, M2)];
        assert_eq!(choose(&wraps, &[]), Err(LayoutError::NoFreeBlock));
    }

    #[test]
    fn range_helpers() {
        let r = Range::new(0x1000, 0x1000);
        assert!(r.contains(0x1fff) && !r.contains(0x2000));
        assert!(r.overlaps(&Range::new(0x1fff, 1)));
        assert!(!r.overlaps(&Range::new(0x2000, 1)));
        assert!(!r.overlaps(&Range::new(0x1800, 0)));
        assert!(r.contains_range(&Range::new(0x1000, 0x1000)));
        assert!(!r.contains_range(&Range::new(0x1800, 0x1000)));
        assert_eq!(r.to_string(), "0x1000-0x2000");
    }
}

/// Most isolation probes.
pub const MAX_PROBES: usize = 4;

/// 2 MiB windows that are not guest RAM, for the isolation test: the first whole 2 MiB
/// after each RAM range (the hypervisor's image, pool, DTB or crash region, or nothing),
/// when it does not touch any RAM range (a 2 MiB block there would map guest RAM too).
pub fn isolation_probes(ram: &[Range]) -> crate::fixed::List<Range, MAX_PROBES> {
    let mut probes = crate::fixed::List::new();
    for range in ram {
        let Some(start) = range
            .end()
            .and_then(|end| end.checked_next_multiple_of(BLOCK_2M))
        else {
            continue;
        };
        let probe = Range::new(start, BLOCK_2M);
        if probe.end().is_none() || ram.iter().any(|r| r.overlaps(&probe)) {
            continue;
        }
        let _ = probes.push(probe);
    }
    probes
}
