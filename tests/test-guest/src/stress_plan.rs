//! The plan of `stress_protect_restore` (`guest/stress.rs`): which pages each vCPU
//! owns, the operations a seeded PRNG draws, and the model of every page's permissions
//! and data that the guest checks the hypervisor against.
//!
//! The stress region is [`BLOCKS`] consecutive 2 MiB blocks of free guest RAM
//! (`layout.rs`). Block 0 belongs wholly to vCPU 0 and the last block wholly to vCPU 1.
//! In the blocks between, ownership alternates every [`STRIPE_PAGES`] pages, so both
//! vCPUs' pages share those blocks: one vCPU's change splits or collapses a block the
//! other is reading and writing. The stripes are laid out so that at every boundary
//! between two blocks the pages on both sides have the same owner (three boundaries each),
//! for ranges that cross a 2 MiB boundary.
//!
//! A vCPU only changes, reads and writes its own pages, so its model of them is exact
//! whatever the other one does. Each step is one MEM_PROTECT drawn by [`Model::next_op`]:
//! - a *restore* to rwx of one of the (at most [`MAX_OUTSTANDING`]) ranges it protected
//!   earlier and has not restored yet, or
//! - a *protect* of a new range (one page, a few pages, a range crossing a 2 MiB
//!   boundary, or the vCPU's whole exclusive block) to a random permission set
//!   ([`PERM_CHOICES`]: no access, read-only, read-write, read-execute, write-only, rwx).
//!
//! Every page holds [`pattern`]`(address, generation)`; the model keeps each page's
//! generation, bumped when the guest rewrites the page.

use crate::abi::{BLOCK_2M, PAGE_SIZE, PERM_ALL, PERM_EXECUTE, PERM_READ, PERM_WRITE};
use crate::sweep::word;

/// 2 MiB blocks in the stress region.
pub const BLOCKS: u64 = 7;
pub const PAGES_PER_BLOCK: u64 = BLOCK_2M / PAGE_SIZE;
/// Pages in the stress region.
pub const PAGES: u64 = BLOCKS * PAGES_PER_BLOCK;
/// Words per page.
pub const PAGE_WORDS: u64 = PAGE_SIZE / 8;
/// Ownership alternates every this many pages in the shared blocks.
pub const STRIPE_PAGES: u64 = 8;
/// The vCPUs taking part: 0 the boot vCPU, 1 the secondary.
pub const CPUS: usize = 2;
/// MEM_PROTECT calls each vCPU makes.
pub const OPS_PER_CPU: u64 = 5000;
/// Ranges a vCPU may hold protected (not yet restored) at once.
pub const MAX_OUTSTANDING: usize = 4;
/// The PRNG seeds of vCPU 0 and vCPU 1.
pub const SEEDS: [u64; CPUS] = [0x5eed_0000_c0ff_ee01, 0x5eed_0001_dead_be02];
/// The permission sets a protect draws from.
pub const PERM_CHOICES: [u64; 6] = [
    0,
    PERM_READ,
    PERM_READ | PERM_WRITE,
    PERM_READ | PERM_EXECUTE,
    PERM_WRITE,
    PERM_ALL,
];
/// Generations of [`word`] the stress test writes start here (other tests use small
/// ones), so a page still holding an earlier test's data never passes for its own.
const GENERATION_BASE: u64 = 0x57_0000_0000;

/// The value of the word at `address` in page generation `generation`.
pub fn pattern(address: u64, generation: u32) -> u64 {
    word(address, GENERATION_BASE + u64::from(generation))
}

/// xorshift64* (Vigna): a small, fast, deterministic generator.
#[derive(Clone, Copy, Debug)]
pub struct Rng(u64);

impl Rng {
    pub const fn new(seed: u64) -> Self {
        Self(if seed == 0 { 1 } else { seed })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` at most 2^32; 0 for `n` = 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() >> 32) * n.min(1 << 32)) >> 32
    }
}

/// The vCPU that owns page `page` of the region.
pub fn owner(page: u64) -> usize {
    let block = page / PAGES_PER_BLOCK;
    if block == 0 {
        0
    } else if block >= BLOCKS - 1 {
        1
    } else {
        let stripe = (page % PAGES_PER_BLOCK) / STRIPE_PAGES;
        ((stripe + block + 1) % 2) as usize
    }
}

/// The block `cpu` owns wholly.
pub fn exclusive_block(cpu: usize) -> u64 {
    if cpu == 0 { 0 } else { BLOCKS - 1 }
}

pub fn is_exclusive(block: u64) -> bool {
    block == 0 || block == BLOCKS - 1
}

/// The owner of both sides of the boundary at the start of block `block` (1..BLOCKS),
/// if it is one vCPU.
pub fn boundary_owner(block: u64) -> Option<usize> {
    if block == 0 || block >= BLOCKS {
        return None;
    }
    let first = block * PAGES_PER_BLOCK;
    let (below, above) = (owner(first - 1), owner(first));
    (below == above).then_some(below)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    OnePage,
    FewPages,
    CrossesBoundary,
    WholeBlock,
    /// Back to rwx: the range protected earlier in outstanding slot `slot`.
    Restore {
        slot: usize,
    },
}

impl Shape {
    pub fn name(self) -> &'static str {
        match self {
            Self::OnePage => "one page",
            Self::FewPages => "a few pages",
            Self::CrossesBoundary => "across a 2 MiB boundary",
            Self::WholeBlock => "a whole 2 MiB block",
            Self::Restore { .. } => "restore",
        }
    }
}

/// One MEM_PROTECT: pages `first..first + pages` of the region to `perms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    pub first: u64,
    pub pages: u64,
    pub perms: u64,
    pub shape: Shape,
}

impl Op {
    pub fn end(&self) -> u64 {
        self.first + self.pages
    }

    pub fn contains(&self, page: u64) -> bool {
        page >= self.first && page < self.end()
    }
}

/// What one vCPU knows about its own pages.
pub struct Model {
    cpu: usize,
    /// Permission bits of each page (only the owner's entries are used).
    perms: [u8; PAGES as usize],
    generation: [u32; PAGES as usize],
    /// Protected ranges not restored yet: (first page, pages).
    outstanding: [(u64, u64); MAX_OUTSTANDING],
    outstanding_len: usize,
}

impl Model {
    /// Every page rwx at generation 0, nothing outstanding.
    pub const fn new(cpu: usize) -> Self {
        Self {
            cpu,
            perms: [PERM_ALL as u8; PAGES as usize],
            generation: [0; PAGES as usize],
            outstanding: [(0, 0); MAX_OUTSTANDING],
            outstanding_len: 0,
        }
    }

    /// Back to [`Model::new`], in place.
    pub fn reset(&mut self, cpu: usize) {
        self.cpu = cpu;
        self.perms.fill(PERM_ALL as u8);
        self.generation.fill(0);
        self.outstanding_len = 0;
    }

    pub fn cpu(&self) -> usize {
        self.cpu
    }

    pub fn perms(&self, page: u64) -> u64 {
        self.perms.get(page as usize).map_or(0, |&p| u64::from(p))
    }

    pub fn generation(&self, page: u64) -> u32 {
        self.generation.get(page as usize).copied().unwrap_or(0)
    }

    /// Moves `page` to its next generation and returns it.
    pub fn bump_generation(&mut self, page: u64) -> u32 {
        match self.generation.get_mut(page as usize) {
            Some(g) => {
                *g = g.wrapping_add(1);
                *g
            }
            None => 0,
        }
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding_len
    }

    /// A page of this vCPU, uniformly: a random page, or the page its owner's
    /// counterpart sits at (the other stripe of its pair, the other exclusive block).
    pub fn own_page(&self, rng: &mut Rng) -> u64 {
        self.mirror_to_own(rng.below(PAGES))
    }

    /// A page of this vCPU in block `block`.
    pub fn own_page_in_block(&self, block: u64, rng: &mut Rng) -> u64 {
        if is_exclusive(block) && exclusive_block(self.cpu) != block {
            return self.own_page(rng);
        }
        self.mirror_to_own(block * PAGES_PER_BLOCK + rng.below(PAGES_PER_BLOCK))
    }

    fn mirror_to_own(&self, page: u64) -> u64 {
        if owner(page) == self.cpu {
            return page;
        }
        let block = page / PAGES_PER_BLOCK;
        if is_exclusive(block) {
            exclusive_block(self.cpu) * PAGES_PER_BLOCK + page % PAGES_PER_BLOCK
        } else {
            page ^ STRIPE_PAGES
        }
    }

    /// One past the last page of the run of this vCPU's pages from `page` on (looking
    /// at most `limit` pages ahead).
    fn own_run_end(&self, page: u64, limit: u64) -> u64 {
        let mut end = page;
        while end < PAGES && end < page + limit && owner(end) == self.cpu {
            end += 1;
        }
        end
    }

    /// The next operation, drawn from `rng`.
    pub fn next_op(&self, rng: &mut Rng) -> Op {
        let held = self.outstanding_len;
        if held > 0 && (held == MAX_OUTSTANDING || rng.below(2) == 0) {
            let slot = rng.below(held as u64) as usize;
            let (first, pages) = self.outstanding[slot];
            return Op {
                first,
                pages,
                perms: PERM_ALL,
                shape: Shape::Restore { slot },
            };
        }
        let perms = PERM_CHOICES[rng.below(PERM_CHOICES.len() as u64) as usize];
        let roll = rng.below(100);
        let (shape, first, pages) = if roll < 35 {
            (Shape::OnePage, self.own_page(rng), 1)
        } else if roll < 65 {
            let pages = 2 + rng.below(STRIPE_PAGES - 1);
            let page = self.own_page(rng);
            // Runs of own pages are at least a stripe long, so the range fits.
            let run_end = self.own_run_end(page, STRIPE_PAGES);
            (Shape::FewPages, page.min(run_end - pages), pages)
        } else if roll < 90 {
            let boundaries = (1..BLOCKS).filter(|&b| boundary_owner(b) == Some(self.cpu));
            let count = boundaries.clone().count() as u64;
            let pick = rng.below(count);
            let block = boundaries.clone().nth(pick as usize).unwrap_or(1);
            let below = 1 + rng.below(STRIPE_PAGES);
            let above = 1 + rng.below(STRIPE_PAGES);
            (
                Shape::CrossesBoundary,
                block * PAGES_PER_BLOCK - below,
                below + above,
            )
        } else {
            (
                Shape::WholeBlock,
                exclusive_block(self.cpu) * PAGES_PER_BLOCK,
                PAGES_PER_BLOCK,
            )
        };
        Op {
            first,
            pages,
            perms,
            shape,
        }
    }

    /// Records that `op` succeeded.
    pub fn apply(&mut self, op: &Op) {
        let range = op.first as usize..op.end() as usize;
        if let Some(perms) = self.perms.get_mut(range) {
            perms.fill(op.perms as u8);
        }
        match op.shape {
            Shape::Restore { slot } if slot < self.outstanding_len => {
                self.outstanding
                    .copy_within(slot + 1..self.outstanding_len, slot);
                self.outstanding_len -= 1;
            }
            Shape::Restore { .. } => {}
            _ => {
                if let Some(entry) = self.outstanding.get_mut(self.outstanding_len) {
                    *entry = (op.first, op.pages);
                    self.outstanding_len += 1;
                }
            }
        }
    }

    /// Whether all of this vCPU's pages in `block` have the same permissions.
    pub fn own_uniform(&self, block: u64) -> bool {
        let first = block * PAGES_PER_BLOCK;
        let mut own = (first..first + PAGES_PER_BLOCK).filter(|&p| owner(p) == self.cpu);
        let Some(reference) = own.next().map(|p| self.perms(p)) else {
            return true;
        };
        own.all(|p| self.perms(p) == reference)
    }

    /// The stage-2 leaf levels `page` may be mapped at (inclusive), given that every
    /// page of the region was at `baseline` with rwx before the test: level 3 while
    /// this vCPU's pages in its block differ; at least 2 while it is not rwx (the rest
    /// of a GiB around it is rwx); at most 2 in an exclusive block whose pages agree
    /// (the change that made them agree collapsed the table). The other vCPU's pages
    /// decide the rest.
    pub fn level_bounds(&self, page: u64, baseline: u64) -> (u64, u64) {
        let block = page / PAGES_PER_BLOCK;
        let (low, high) = if !self.own_uniform(block) {
            (3, 3)
        } else if is_exclusive(block) {
            let low = if self.perms(page) == PERM_ALL { 1 } else { 2 };
            (low, 2)
        } else {
            let low = if self.perms(page) == PERM_ALL { 1 } else { 2 };
            (low, 3)
        };
        let low = low.max(baseline);
        (low, high.max(low))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    #[test]
    fn ownership_is_half_and_half_with_exclusive_ends() {
        let mine = |cpu| (0..PAGES).filter(|&p| owner(p) == cpu).count() as u64;
        assert_eq!(mine(0), PAGES / 2);
        assert_eq!(mine(1), PAGES / 2);
        assert!((0..PAGES_PER_BLOCK).all(|p| owner(p) == 0));
        assert!((PAGES - PAGES_PER_BLOCK..PAGES).all(|p| owner(p) == 1));
        // Every shared block has pages of both.
        for block in 1..BLOCKS - 1 {
            let first = block * PAGES_PER_BLOCK;
            let owners: HashSet<_> = (first..first + PAGES_PER_BLOCK).map(owner).collect();
            assert_eq!(owners.len(), 2, "block {block}");
        }
    }

    #[test]
    fn runs_of_own_pages_are_at_least_a_stripe() {
        let mut run = 1;
        for p in 1..=PAGES {
            if p < PAGES && owner(p) == owner(p - 1) {
                run += 1;
            } else {
                assert!(run >= STRIPE_PAGES, "run of {run} ending at page {p}");
                run = 1;
            }
        }
    }

    #[test]
    fn every_boundary_belongs_to_one_vcpu_three_each() {
        let owners: Vec<_> = (1..BLOCKS).map(boundary_owner).collect();
        assert!(owners.iter().all(Option::is_some), "{owners:?}");
        for cpu in 0..CPUS {
            assert_eq!(owners.iter().filter(|&&o| o == Some(cpu)).count(), 3);
        }
        for block in 1..BLOCKS {
            let cpu = boundary_owner(block).unwrap();
            let first = block * PAGES_PER_BLOCK;
            for p in first - STRIPE_PAGES..first + STRIPE_PAGES {
                assert_eq!(owner(p), cpu, "page {p} at boundary {block}");
            }
        }
    }

    #[test]
    fn own_page_is_own_and_reaches_every_own_page() {
        for (cpu, seed) in SEEDS.into_iter().enumerate() {
            let model = Model::new(cpu);
            let mut rng = Rng::new(seed);
            let mut seen = HashSet::new();
            for _ in 0..200_000 {
                let p = model.own_page(&mut rng);
                assert_eq!(owner(p), cpu);
                seen.insert(p);
            }
            assert_eq!(seen.len() as u64, PAGES / 2);
            for block in 0..BLOCKS {
                let p = model.own_page_in_block(block, &mut rng);
                assert_eq!(owner(p), cpu);
                if !is_exclusive(block) || exclusive_block(cpu) == block {
                    assert_eq!(p / PAGES_PER_BLOCK, block);
                }
            }
        }
    }

    #[test]
    fn rng_is_deterministic_and_bounded() {
        let (mut a, mut b, mut c) = (Rng::new(SEEDS[0]), Rng::new(SEEDS[0]), Rng::new(SEEDS[1]));
        let xs: Vec<_> = (0..100).map(|_| a.next_u64()).collect();
        let ys: Vec<_> = (0..100).map(|_| b.next_u64()).collect();
        let zs: Vec<_> = (0..100).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        let mut r = Rng::new(0);
        let mut hits = [0u32; 7];
        for _ in 0..70_000 {
            let x = r.below(7);
            hits[x as usize] += 1;
        }
        assert!(
            hits.iter().all(|&h| (9_000..11_000).contains(&h)),
            "{hits:?}"
        );
        assert_eq!(r.below(0), 0);
    }

    /// Drives a model through a run the way the guest does and checks every operation.
    fn run(cpu: usize, ops: u64) -> HashMap<&'static str, u64> {
        let mut model = Model::new(cpu);
        let mut rng = Rng::new(SEEDS[cpu]);
        let mut shapes = HashMap::new();
        // The ranges protected and not restored, as the test expects them.
        let mut held: Vec<(u64, u64)> = Vec::new();
        for _ in 0..ops {
            let op = model.next_op(&mut rng);
            assert!(op.pages > 0 && op.end() <= PAGES, "{op:?}");
            assert!((op.first..op.end()).all(|p| owner(p) == cpu), "{op:?}");
            match op.shape {
                Shape::OnePage => assert_eq!(op.pages, 1),
                Shape::FewPages => assert!((2..=STRIPE_PAGES).contains(&op.pages)),
                Shape::CrossesBoundary => {
                    assert_ne!(
                        op.first / PAGES_PER_BLOCK,
                        (op.end() - 1) / PAGES_PER_BLOCK,
                        "{op:?}"
                    );
                }
                Shape::WholeBlock => {
                    assert_eq!(op.first % PAGES_PER_BLOCK, 0);
                    assert_eq!(op.pages, PAGES_PER_BLOCK);
                }
                Shape::Restore { slot } => {
                    assert_eq!(op.perms, PERM_ALL);
                    assert_eq!(held.remove(slot), (op.first, op.pages));
                }
            }
            if !matches!(op.shape, Shape::Restore { .. }) {
                assert!(PERM_CHOICES.contains(&op.perms));
                held.push((op.first, op.pages));
            }
            model.apply(&op);
            assert_eq!(model.outstanding(), held.len());
            assert!(held.len() <= MAX_OUTSTANDING);
            for p in op.first..op.end() {
                assert_eq!(model.perms(p), op.perms);
            }
            *shapes.entry(op.shape.name()).or_insert(0) += 1;
        }
        shapes
    }

    #[test]
    fn operations_stay_on_own_pages_and_cover_every_shape() {
        for cpu in 0..CPUS {
            let shapes = run(cpu, OPS_PER_CPU);
            for name in [
                "one page",
                "a few pages",
                "across a 2 MiB boundary",
                "a whole 2 MiB block",
                "restore",
            ] {
                assert!(
                    shapes.get(name).copied().unwrap_or(0) > 100,
                    "{name}: {shapes:?}"
                );
            }
            assert_eq!(shapes.values().sum::<u64>(), OPS_PER_CPU);
        }
    }

    #[test]
    fn level_bounds_follow_the_model() {
        let mut m = Model::new(0);
        // All rwx, a GiB baseline: a shared page anywhere from 1 to 3 (the other vCPU),
        // an exclusive one at 1 or 2.
        assert_eq!(m.level_bounds(PAGES_PER_BLOCK + 3, 1), (1, 3));
        assert_eq!(m.level_bounds(5, 1), (1, 2));
        assert_eq!(m.level_bounds(5, 2), (2, 2));
        // One page of the exclusive block read-only: the block is a table.
        let op = Op {
            first: 5,
            pages: 1,
            perms: PERM_READ,
            shape: Shape::OnePage,
        };
        m.apply(&op);
        assert_eq!(m.level_bounds(5, 1), (3, 3));
        assert_eq!(m.level_bounds(6, 1), (3, 3));
        // The whole block read-only: a 2M block again.
        m.apply(&Op {
            first: 0,
            pages: PAGES_PER_BLOCK,
            perms: PERM_READ,
            shape: Shape::WholeBlock,
        });
        assert_eq!(m.level_bounds(5, 1), (2, 2));
        // A shared block where all of vCPU 0's pages are r--: 2 or 3.
        let first = 2 * PAGES_PER_BLOCK;
        for p in (first..first + PAGES_PER_BLOCK).filter(|&p| owner(p) == 0) {
            m.apply(&Op {
                first: p,
                pages: 1,
                perms: PERM_READ,
                shape: Shape::OnePage,
            });
        }
        let p = (first..).find(|&p| owner(p) == 0).unwrap();
        assert_eq!(m.level_bounds(p, 1), (2, 3));
        // Stage 2 in pages: always 3.
        assert_eq!(Model::new(1).level_bounds(p, 3), (3, 3));
    }

    #[test]
    fn generations_and_patterns() {
        let mut m = Model::new(1);
        assert_eq!(m.generation(9), 0);
        assert_eq!(m.bump_generation(9), 1);
        assert_eq!(m.generation(9), 1);
        assert_ne!(pattern(0x1000, 0), pattern(0x1000, 1));
        assert_ne!(pattern(0x1000, 0), pattern(0x1008, 0));
        assert_ne!(pattern(0x1000, 0), word(0x1000, 0));
        m.reset(0);
        assert_eq!((m.cpu(), m.generation(9), m.outstanding()), (0, 0, 0));
    }
}
