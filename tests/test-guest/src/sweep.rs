//! The data the concurrency test moves, and where.
//!
//! Every word the test touches holds [`word`]`(address, generation)`: a value that
//! differs from address to address and from generation to generation, so a lost write,
//! a stale read or a write that landed at the wrong place all show as a mismatch.
//!
//! A [`Sweep`] over the test region visits:
//! - every 8-byte word of the changed 2 MiB block (`chunk`), where the page that goes
//!   read-only (`page`) is only ever read, the rest read and rewritten;
//! - one word in each other 4 KiB page of the region (at an offset that moves from page
//!   to page), read and rewritten.
//!
//! The secondary CPU repeats sweeps (generation g: check `word(a, g)`, write
//! `word(a, g + 1)`), the boot CPU fills generation 0 first and checks the final
//! generation at the end.

use crate::abi::{BLOCK_2M, PAGE_SIZE};
use crate::layout::Layout;

/// The value of the word at `address` in `generation` (a SplitMix64 finaliser over
/// both, so neighbouring addresses and generations look unrelated).
pub fn word(address: u64, generation: u64) -> u64 {
    let mut z = address ^ generation.rotate_left(40) ^ 0x9e37_79b9_7f4a_7c15;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The offset of the sampled word in page number `index` of the region.
pub fn sample_offset(index: u64) -> u64 {
    (index.wrapping_mul(0x48)) & (PAGE_SIZE - 8)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// In the page that goes read-only: read and checked, never written.
    ReadOnly,
    /// Read, checked, rewritten with the next generation.
    ReadWrite,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sweep {
    pub region_base: u64,
    pub region_size: u64,
    pub chunk: u64,
    pub page: u64,
}

impl Sweep {
    pub fn new(layout: &Layout) -> Self {
        Self {
            region_base: layout.region.base,
            region_size: layout.region.size,
            chunk: layout.chunk,
            page: layout.page,
        }
    }

    /// Calls `visit(address, kind)` for every word of one sweep, in order. Returns the
    /// number of words visited.
    #[inline(always)]
    pub fn for_each(&self, mut visit: impl FnMut(u64, Kind)) -> u64 {
        let mut count = 0;
        let mut a = self.chunk;
        while a < self.chunk + BLOCK_2M {
            let kind = if a >= self.page && a < self.page + PAGE_SIZE {
                Kind::ReadOnly
            } else {
                Kind::ReadWrite
            };
            visit(a, kind);
            a += 8;
            count += 1;
        }
        let pages = self.region_size / PAGE_SIZE;
        for index in 0..pages {
            let page = self.region_base + index * PAGE_SIZE;
            if page >= self.chunk && page < self.chunk + BLOCK_2M {
                continue;
            }
            visit(page + sample_offset(index), Kind::ReadWrite);
            count += 1;
        }
        count
    }

    /// The value a word should hold after `generation` sweeps (0: just filled).
    pub fn expected(address: u64, kind: Kind, generation: u64) -> u64 {
        match kind {
            Kind::ReadOnly => word(address, 0),
            Kind::ReadWrite => word(address, generation),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{Range, choose};
    use std::collections::HashSet;

    #[test]
    fn words_differ() {
        let mut seen = HashSet::new();
        for a in (0x8000_0000u64..0x8000_0000 + 4096).step_by(8) {
            for g in 0..8 {
                assert!(seen.insert(word(a, g)), "repeat at {a:#x} gen {g}");
            }
        }
    }

    #[test]
    fn sampled_words_are_aligned_and_move() {
        let offsets: HashSet<u64> = (0..512).map(sample_offset).collect();
        assert!(offsets.len() >= 64);
        assert!(offsets.iter().all(|o| o % 8 == 0 && *o < PAGE_SIZE));
    }

    #[test]
    fn gigabyte_sweep_covers_every_page_and_never_writes_the_protected_one() {
        let l = choose(&[Range::new(0x4000_0000, 2 << 30)], &[]).unwrap();
        let s = Sweep::new(&l);
        let mut pages = HashSet::new();
        let mut read_only = 0;
        let n = s.for_each(|a, kind| {
            assert_eq!(a % 8, 0);
            assert!(l.region.contains(a));
            pages.insert(a & !(PAGE_SIZE - 1));
            let in_page = a & !(PAGE_SIZE - 1) == l.page;
            assert_eq!(kind == Kind::ReadOnly, in_page, "{a:#x}");
            read_only += u64::from(in_page);
        });
        assert_eq!(pages.len() as u64, l.region.size / PAGE_SIZE);
        assert_eq!(read_only, PAGE_SIZE / 8);
        assert_eq!(n, BLOCK_2M / 8 + (l.region.size - BLOCK_2M) / PAGE_SIZE);
    }

    #[test]
    fn two_megabyte_sweep_is_the_chunk() {
        let l = choose(&[Range::new(0x4000_0000, 4 << 20)], &[]).unwrap();
        let s = Sweep::new(&l);
        assert_eq!(s.for_each(|_, _| {}), BLOCK_2M / 8);
    }

    #[test]
    fn expected_values() {
        assert_eq!(Sweep::expected(0x10, Kind::ReadOnly, 5), word(0x10, 0));
        assert_eq!(Sweep::expected(0x10, Kind::ReadWrite, 5), word(0x10, 5));
    }
}
