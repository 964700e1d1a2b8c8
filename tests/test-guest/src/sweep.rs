//! The data the concurrency test moves, and where.
//!
//! Every word the test touches holds [`word`]`(address, generation)`: a value that
//! differs from address to address and from generation to generation, so a lost write,
//! a stale read or a write that landed at the wrong place all show as a mismatch.
//!
//! The words of a [`Sweep`] over the test region ([`Sweep::for_each`]) are:
//! - every 8-byte word of the changed 2 MiB block (`chunk`), where the page that goes
//!   read-only (`page`) is only ever read, the rest read and rewritten;
//! - one word in each other 4 KiB page of the region (at an offset that moves from page
//!   to page), read and rewritten.
//!
//! The boot CPU fills them all with generation 0 and checks them all at the end. In
//! between, the secondary CPU does not sweep the whole region (half a million words, a
//! few seconds under TCG: far longer than the splits it should race) but runs short
//! *passes* that keep hitting the memory whose mapping changes. The words are split
//! into four [`Stream`]s, each a fixed cycle:
//! - [`Stream::Chunk`]: the changed 2 MiB minus the three pages below;
//! - [`Stream::Neighbours`]: the pages just below and just above `page` (they stay
//!   writable while `page` is read-only, in the same last-level table);
//! - [`Stream::Page`]: `page` itself, only read;
//! - [`Stream::Outside`]: the sampled words of the rest of the region (the other 2 MiB
//!   blocks of the GiB; empty when the region is a single 2 MiB block).
//!
//! A pass is [`ROUNDS_PER_PASS`] rounds; a round visits the next
//! [`Stream::per_round`] words of every stream's cycle (wrapping), so each stream is hit
//! all through a pass. The `t`-th visit of a stream (its position `t`, from 0) goes to
//! element `t mod len`, which then holds generation `t / len` and is rewritten with
//! generation `t / len + 1` (read-only words stay at 0). The state after any number of
//! whole passes follows from the positions alone: [`Sweep::check_after`].

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

/// Rounds in one pass of the secondary CPU.
pub const ROUNDS_PER_PASS: u64 = 64;

/// Words per 4 KiB page.
const PAGE_WORDS: u64 = PAGE_SIZE / 8;
/// Pages per 2 MiB block.
const BLOCK_PAGES: u64 = BLOCK_2M / PAGE_SIZE;
/// The pages around `page` taken out of [`Stream::Chunk`]: below, `page`, above.
const HOT_PAGES: u64 = 3;

/// One of the secondary CPU's cycles over the test words (see the module text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Chunk,
    Neighbours,
    Page,
    Outside,
}

impl Stream {
    pub const ALL: [Stream; 4] = [
        Stream::Chunk,
        Stream::Neighbours,
        Stream::Page,
        Stream::Outside,
    ];

    /// Words visited per round (when the stream is not empty).
    pub const fn per_round(self) -> u64 {
        match self {
            Stream::Chunk => 32,
            Stream::Neighbours => 8,
            Stream::Page => 2,
            Stream::Outside => 8,
        }
    }

    pub const fn kind(self) -> Kind {
        match self {
            Stream::Page => Kind::ReadOnly,
            _ => Kind::ReadWrite,
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// One word to visit: read `address`, expect `want`, then store `next` if there is one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Visit {
    pub address: u64,
    pub want: u64,
    pub next: Option<u64>,
}

/// How many times element `n` of a cycle of `len` has been visited once the cycle has
/// reached position `position`: its generation.
pub fn visits(n: u64, len: u64, position: u64) -> u64 {
    if position <= n {
        0
    } else {
        (position - n - 1) / len + 1
    }
}

impl Sweep {
    /// The changed 2 MiB block's index among the region's 2 MiB blocks.
    fn chunk_block(&self) -> u64 {
        (self.chunk - self.region_base) / BLOCK_2M
    }

    /// The index inside the chunk of the first hot page (the one below `page`).
    fn first_hot_page(&self) -> u64 {
        (self.page - self.chunk) / PAGE_SIZE - 1
    }

    /// The number of words in `stream`'s cycle.
    pub fn len(&self, stream: Stream) -> u64 {
        match stream {
            Stream::Chunk => (BLOCK_PAGES - HOT_PAGES) * PAGE_WORDS,
            Stream::Neighbours => 2 * PAGE_WORDS,
            Stream::Page => PAGE_WORDS,
            Stream::Outside => (self.region_size / BLOCK_2M - 1) * BLOCK_PAGES,
        }
    }

    /// The address of element `n` (< `len(stream)`) of `stream`. Consecutive elements
    /// of `Chunk` lie in consecutive pages (509 of them), and of `Outside` in consecutive
    /// 2 MiB blocks (the other 511 of the GiB), so a round touches many pages and
    /// blocks of the split mapping instead of one.
    pub fn address(&self, stream: Stream, n: u64) -> u64 {
        match stream {
            Stream::Chunk => {
                let pages = BLOCK_PAGES - HOT_PAGES;
                let mut page = n % pages;
                if page >= self.first_hot_page() {
                    page += HOT_PAGES;
                }
                self.chunk + page * PAGE_SIZE + (n / pages) * 8
            }
            Stream::Neighbours => {
                let (side, w) = (n / PAGE_WORDS, n % PAGE_WORDS);
                let page = if side == 0 {
                    self.page - PAGE_SIZE
                } else {
                    self.page + PAGE_SIZE
                };
                page + w * 8
            }
            Stream::Page => self.page + n * 8,
            Stream::Outside => {
                let blocks = self.region_size / BLOCK_2M - 1;
                let mut block = n % blocks;
                if block >= self.chunk_block() {
                    block += 1;
                }
                let index = block * BLOCK_PAGES + n / blocks;
                self.region_base + index * PAGE_SIZE + sample_offset(index)
            }
        }
    }

    /// Words visited per round: the per-round counts of the non-empty streams.
    pub fn words_per_round(&self) -> u64 {
        Stream::ALL
            .iter()
            .filter(|&&s| self.len(s) > 0)
            .map(|s| s.per_round())
            .sum()
    }

    pub fn words_per_pass(&self) -> u64 {
        self.words_per_round() * ROUNDS_PER_PASS
    }

    /// One round of the secondary: the next [`Stream::per_round`] words of every
    /// non-empty stream, from the positions in `cursor` (indexed like [`Stream::ALL`]),
    /// which it advances. Returns the number of words visited.
    #[inline(always)]
    pub fn round(&self, cursor: &mut [u64; 4], mut visit: impl FnMut(Visit)) -> u64 {
        let mut count = 0;
        for stream in Stream::ALL {
            let len = self.len(stream);
            if len == 0 {
                continue;
            }
            let position = &mut cursor[stream.index()];
            for _ in 0..stream.per_round() {
                let (n, generation) = (*position % len, *position / len);
                let address = self.address(stream, n);
                visit(match stream.kind() {
                    Kind::ReadOnly => Visit {
                        address,
                        want: word(address, 0),
                        next: None,
                    },
                    Kind::ReadWrite => Visit {
                        address,
                        want: word(address, generation),
                        next: Some(word(address, generation + 1)),
                    },
                });
                *position += 1;
                count += 1;
            }
        }
        count
    }

    /// Calls `check(address, want)` for every word of the sweep ([`Sweep::for_each`]'s
    /// words, in stream order) with the value it holds after `passes` whole passes of
    /// [`Sweep::round`]s from generation 0. Returns the number of words.
    #[inline(always)]
    pub fn check_after(&self, passes: u64, mut check: impl FnMut(u64, u64)) -> u64 {
        let mut count = 0;
        for stream in Stream::ALL {
            let len = self.len(stream);
            let position = passes * ROUNDS_PER_PASS * stream.per_round();
            for n in 0..len {
                let address = self.address(stream, n);
                let generation = match stream.kind() {
                    Kind::ReadOnly => 0,
                    Kind::ReadWrite => visits(n, len, position),
                };
                check(address, word(address, generation));
                count += 1;
            }
        }
        count
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

    fn gigabyte() -> Layout {
        choose(&[Range::new(0x4000_0000, 2 << 30)], &[]).unwrap()
    }

    fn two_megabytes() -> Layout {
        choose(&[Range::new(0x4000_0000, 4 << 20)], &[]).unwrap()
    }

    #[test]
    fn streams_partition_the_sweep() {
        for l in [gigabyte(), two_megabytes()] {
            let s = Sweep::new(&l);
            let mut all = std::collections::HashMap::new();
            s.for_each(|a, kind| {
                assert!(all.insert(a, kind).is_none());
            });
            let mut seen = HashSet::new();
            for stream in Stream::ALL {
                for n in 0..s.len(stream) {
                    let a = s.address(stream, n);
                    assert!(seen.insert(a), "{stream:?} {n}: {a:#x} twice");
                    assert_eq!(all.get(&a), Some(&stream.kind()), "{stream:?} {n}: {a:#x}");
                }
            }
            assert_eq!(seen.len(), all.len());
        }
    }

    #[test]
    fn streams_go_where_the_mapping_changes() {
        let l = gigabyte();
        let s = Sweep::new(&l);
        let page = |a: u64| a & !(PAGE_SIZE - 1);
        for n in 0..s.len(Stream::Neighbours) {
            let p = page(s.address(Stream::Neighbours, n));
            assert!(p == l.page - PAGE_SIZE || p == l.page + PAGE_SIZE);
        }
        for n in 0..s.len(Stream::Page) {
            assert_eq!(page(s.address(Stream::Page, n)), l.page);
        }
        for n in 0..s.len(Stream::Chunk) {
            let a = s.address(Stream::Chunk, n);
            assert!(a >= l.chunk && a < l.chunk + BLOCK_2M);
        }
        // A round's chunk words are in different pages, its outside words in different
        // 2 MiB blocks of the GiB, none of them the changed one.
        let chunk_pages: HashSet<u64> = (0..Stream::Chunk.per_round())
            .map(|n| page(s.address(Stream::Chunk, n)))
            .collect();
        assert_eq!(chunk_pages.len() as u64, Stream::Chunk.per_round());
        let outside_blocks: HashSet<u64> = (0..s.len(Stream::Outside).min(511))
            .map(|n| s.address(Stream::Outside, n) & !(BLOCK_2M - 1))
            .collect();
        assert_eq!(outside_blocks.len(), 511);
        assert!(!outside_blocks.contains(&l.chunk));
        assert!(outside_blocks.iter().all(|&b| l.region.contains(b)));
        assert_eq!(s.len(Stream::Outside), 511 * 512);
        assert_eq!(Sweep::new(&two_megabytes()).len(Stream::Outside), 0);
    }

    #[test]
    fn visits_counts_the_laps() {
        let len = 5;
        let mut count = [0u64; 5];
        for position in 0..40 {
            for n in 0..len {
                assert_eq!(
                    visits(n, len, position),
                    count[n as usize],
                    "{n} at {position}"
                );
            }
            count[(position % len) as usize] += 1;
        }
    }

    /// Runs the secondary's rounds over a simulated memory and checks the final state.
    fn simulate(l: &Layout, passes: u64) {
        let s = Sweep::new(l);
        let mut memory = std::collections::HashMap::new();
        s.for_each(|a, _| {
            memory.insert(a, word(a, 0));
        });
        let mut cursor = [0u64; 4];
        let mut visited = 0;
        for _ in 0..passes {
            for _ in 0..ROUNDS_PER_PASS {
                let n = s.round(&mut cursor, |v| {
                    let got = memory.get_mut(&v.address).expect("in the sweep");
                    assert_eq!(*got, v.want, "{:#x}", v.address);
                    if let Some(next) = v.next {
                        assert_ne!(v.address & !(PAGE_SIZE - 1), l.page, "a write to P");
                        *got = next;
                    }
                });
                assert_eq!(n, s.words_per_round());
                visited += n;
            }
        }
        assert_eq!(visited, passes * s.words_per_pass());
        let words = s.check_after(passes, |a, want| assert_eq!(memory[&a], want, "{a:#x}"));
        assert_eq!(words, memory.len() as u64);
    }

    #[test]
    fn passes_keep_every_word_predictable() {
        // Past a lap of Neighbours (2 passes) and Page (4), and of Chunk (128) for the
        // 2 MiB layout.
        simulate(&gigabyte(), 9);
        simulate(&two_megabytes(), 130);
        assert_eq!(
            Sweep::new(&gigabyte()).words_per_pass(),
            50 * ROUNDS_PER_PASS
        );
        assert_eq!(
            Sweep::new(&two_megabytes()).words_per_pass(),
            42 * ROUNDS_PER_PASS
        );
    }

    #[test]
    fn expected_values() {
        assert_eq!(Sweep::expected(0x10, Kind::ReadOnly, 5), word(0x10, 0));
        assert_eq!(Sweep::expected(0x10, Kind::ReadWrite, 5), word(0x10, 5));
    }
}
