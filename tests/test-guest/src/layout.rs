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
//!   2 MiB for a 2 MiB region (or none);
//! - `stress`, the stress test's [`STRESS_BLOCKS`] 2 MiB blocks: the top of the GiB, or
//!   the highest free run of them in one RAM range (or none).
//!
//! Outside guest RAM, [`isolation_probes`] picks the 2 MiB windows the isolation test
//! reads and writes, all derived from the memory map; [`address_probes`] checks the
//! addresses `isolation_probe=` names ([`parse_probe_args`]), which the guest probes at
//! that exact word through one 4 KiB page each.

use core::fmt;

use crate::abi::{BLOCK_1G, BLOCK_2M, PAGE_SIZE};
use crate::fixed::{List, Text};

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

/// 2 MiB blocks the stress test changes.
pub const STRESS_BLOCKS: u64 = crate::stress_plan::BLOCKS;
const STRESS_SIZE: u64 = STRESS_BLOCKS * BLOCK_2M;
const _: () = assert!(STRESS_SIZE <= BLOCK_1G - 2 * BLOCK_2M);

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
    /// [`STRESS_BLOCKS`] consecutive free 2 MiB blocks for the stress test: the top of
    /// `region` when it is a GiB (so its splits and collapses go through the 1G block),
    /// else the highest such run of free RAM (`None`: there is none).
    pub stress: Option<Range>,
}

impl Layout {
    pub fn is_gigabyte(&self) -> bool {
        self.region.size == BLOCK_1G
    }

    fn in_chunk(chunk: u64, region: Range, outside: Option<u64>, stress: Option<Range>) -> Self {
        let page = chunk + BLOCK_2M / 2;
        Self {
            region,
            chunk,
            page,
            exec_page: page + 8 * PAGE_SIZE,
            outside,
            stress,
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
        let stress = Range::new(region.end_saturating() - STRESS_SIZE, STRESS_SIZE);
        return Ok(Layout::in_chunk(
            chunk,
            region,
            Some(region.base + PAGE_SIZE),
            Some(stress),
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
    let stress = highest_run(ram, STRESS_SIZE, free);
    Ok(Layout::in_chunk(
        region.base,
        region,
        neighbour(region),
        stress,
    ))
}

/// The highest 2 MiB-aligned run of `size` bytes (a multiple of 2 MiB) inside one of
/// `ram` that `accept`s.
fn highest_run(ram: &[Range], size: u64, accept: impl Fn(Range) -> bool) -> Option<Range> {
    for r in ram.iter().rev() {
        let (Some(end), Some(first)) = (r.end(), r.base.checked_next_multiple_of(BLOCK_2M)) else {
            continue;
        };
        // `top`: one past the candidate run.
        let mut top = end & !(BLOCK_2M - 1);
        while top.checked_sub(size).is_some_and(|base| base >= first) {
            let run = Range::new(top - size, size);
            if accept(run) {
                return Some(run);
            }
            top -= BLOCK_2M;
        }
    }
    None
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

/// How far above the end of the highest guest RAM range the isolation test probes every
/// 2 MiB window (the hypervisor's pool and crash region usually sit there).
pub const PROBE_SPAN_ABOVE_RAM: u64 = 512 << 20;
/// The far probe: the end of guest RAM rounded up to 1 GiB, plus this.
pub const FAR_PROBE_DISTANCE: u64 = 4 << 30;
/// Most addresses `isolation_probe=` may give (`scripts/run.sh --probe-devices` passes
/// 86 on QEMU's virt board).
pub const MAX_PROBE_ARGS: usize = 128;
/// Most runs of adjacent windows (one after each RAM range, the span above RAM, the far
/// window). The `isolation_probe=` addresses are single pages, not windows: see
/// [`address_probes`].
pub const MAX_PROBE_SPANS: usize = crate::dtinfo::MAX_RAM_RANGES + 2;

/// Something of the guest's own, which an `isolation_probe=` address must not be in:
/// an access there is no access outside the guest (RAM works, the emulated GIC and UART
/// answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Own {
    #[default]
    Ram,
    Distributor,
    Redistributors,
    Console,
}

impl fmt::Display for Own {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ram => "guest RAM",
            Self::Distributor => "the guest's GIC distributor",
            Self::Redistributors => "the guest's redistributor frames",
            Self::Console => "the guest's console UART",
        })
    }
}

/// A range of the guest's own, and what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OwnRange {
    pub range: Range,
    pub what: Own,
}

/// Why an address given with `isolation_probe=` is not probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Rejection {
    /// Its 4 KiB page overlaps something of the guest's own.
    #[default]
    NotOutside,
    /// Its page ends beyond the guest's address space (the stage-1 map cannot reach it).
    BeyondAddressSpace,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RejectedProbe {
    pub address: u64,
    pub page: Range,
    pub why: Rejection,
    /// What the page overlaps (with [`Rejection::NotOutside`]).
    pub own: Option<OwnRange>,
}

impl fmt::Display for RejectedProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "isolation_probe={:#x}: its page {} ",
            self.address, self.page
        )?;
        match (self.why, self.own) {
            (Rejection::NotOutside, Some(own)) => write!(f, "overlaps {} {}", own.what, own.range),
            (Rejection::NotOutside, None) => f.write_str("is the guest's own"),
            (Rejection::BeyondAddressSpace, _) => {
                f.write_str("is beyond the guest's address space")
            }
        }
    }
}

/// The `isolation_probe=` addresses the guest probes and those it leaves out.
#[derive(Clone, Copy, Debug, Default)]
pub struct AddressProbes {
    /// In the order given (an address given twice is probed twice).
    pub addresses: List<u64, MAX_PROBE_ARGS>,
    pub rejected: List<RejectedProbe, MAX_PROBE_ARGS>,
}

impl AddressProbes {
    /// The distinct 4 KiB pages the addresses are in.
    pub fn pages(&self) -> usize {
        let pages = |i: usize| self.addresses.as_slice()[i] & !(PAGE_SIZE - 1);
        (0..self.addresses.len())
            .filter(|&i| (0..i).all(|j| pages(j) != pages(i)))
            .count()
    }
}

/// Sorts the `isolation_probe=` addresses `args` into those to probe and those not: an
/// address whose 4 KiB page overlaps one of `own` (the guest's RAM, its GIC distributor
/// and redistributor frames, its console), or ends past `limit` (one past the highest
/// address the guest can reach), is left out. Everything else is probed, at that exact
/// word: a device window next to the guest's console or GIC frames too.
pub fn address_probes(own: &[OwnRange], limit: u64, args: &[u64]) -> AddressProbes {
    let mut probes = AddressProbes::default();
    for &address in args {
        let page = Range::new(address & !(PAGE_SIZE - 1), PAGE_SIZE);
        let mine = own.iter().find(|o| o.range.overlaps(&page)).copied();
        let why = if mine.is_some() {
            Some(Rejection::NotOutside)
        } else if page.end().is_none_or(|end| end > limit) {
            Some(Rejection::BeyondAddressSpace)
        } else {
            None
        };
        // Both lists hold MAX_PROBE_ARGS, as many as `args` (parse_probe_args) can.
        let _ = match why {
            Some(why) => probes.rejected.push(RejectedProbe {
                address,
                page,
                why,
                own: mine,
            }),
            None => probes.addresses.push(address),
        };
    }
    probes
}

/// The 2 MiB windows the isolation test reads and writes, none of them touching guest
/// RAM (or the guest's own devices), all below the guest's address-space limit.
#[derive(Clone, Copy, Debug, Default)]
pub struct IsolationProbes {
    /// Runs of adjacent windows, sorted and merged (what the stage-1 map maps).
    pub spans: List<Range, MAX_PROBE_SPANS>,
    /// New windows by where they came from (a window is counted once, under the first).
    pub after_ranges: u64,
    pub above_ram: u64,
    pub far: Option<u64>,
    /// More runs than [`MAX_PROBE_SPANS`]: some windows were left out.
    pub overflow: bool,
}

impl IsolationProbes {
    /// Number of 2 MiB windows.
    pub fn windows(&self) -> u64 {
        self.spans.iter().map(|s| s.size / BLOCK_2M).sum()
    }

    /// Every window, in address order.
    pub fn iter_windows(&self) -> impl Iterator<Item = Range> + '_ {
        self.spans.iter().flat_map(|span| {
            (0..span.size / BLOCK_2M).map(move |i| Range::new(span.base + i * BLOCK_2M, BLOCK_2M))
        })
    }

    /// Adds `window` unless a span already holds it; `true` if it is new.
    fn add(&mut self, window: Range) -> bool {
        if self.spans.iter().any(|s| s.contains_range(&window)) {
            return false;
        }
        let joined = self.spans.iter().enumerate().find_map(|(i, span)| {
            if span.end() == Some(window.base) {
                Some((i, Range::new(span.base, span.size + window.size)))
            } else if window.end() == Some(span.base) {
                Some((i, Range::new(window.base, span.size + window.size)))
            } else {
                None
            }
        });
        if let Some((i, joined)) = joined {
            self.spans.set(i, joined);
            return true;
        }
        if self.spans.push(window) {
            true
        } else {
            self.overflow = true;
            false
        }
    }
}

/// The isolation test's windows, from the guest's RAM ranges (`ram`, sorted and merged,
/// as the device tree gives them), the guest's own device ranges (`devices`: a window
/// touching one is not "outside") and the highest address + 1 the guest can reach
/// (`limit`):
/// - the first whole 2 MiB window after each RAM range;
/// - every 2 MiB-aligned window from the end of the highest RAM range up to that end
///   plus [`PROBE_SPAN_ABOVE_RAM`];
/// - one far window, at that end rounded up to 1 GiB plus [`FAR_PROBE_DISTANCE`].
///
/// Windows that touch guest memory or pass `limit` are left out.
pub fn isolation_probes(ram: &[Range], devices: &[Range], limit: u64) -> IsolationProbes {
    let mut probes = IsolationProbes::default();
    let touches_guest = |w: &Range| ram.iter().chain(devices).any(|r| r.overlaps(w));
    let usable = |base: u64| {
        let window = Range::new(base, BLOCK_2M);
        (window.end().is_some_and(|end| end <= limit) && !touches_guest(&window)).then_some(window)
    };
    for range in ram {
        if let Some(window) = range
            .end()
            .and_then(|end| end.checked_next_multiple_of(BLOCK_2M))
            .and_then(usable)
            && probes.add(window)
        {
            probes.after_ranges += 1;
        }
    }
    if let Some(ram_end) = ram.iter().filter_map(|r| r.end()).max() {
        let span_end = ram_end.saturating_add(PROBE_SPAN_ABOVE_RAM);
        let mut base = ram_end.checked_next_multiple_of(BLOCK_2M);
        while let Some(b) = base.filter(|&b| b < span_end) {
            if let Some(window) = usable(b)
                && probes.add(window)
            {
                probes.above_ram += 1;
            }
            base = b.checked_add(BLOCK_2M);
        }
        let far = ram_end
            .checked_next_multiple_of(BLOCK_1G)
            .and_then(|g| g.checked_add(FAR_PROBE_DISTANCE))
            .and_then(usable);
        if let Some(window) = far
            && probes.add(window)
        {
            probes.far = Some(window.base);
        }
    }
    crate::dtinfo::merge(&mut probes.spans);
    probes
}

/// The bootargs option naming extra isolation probes: `isolation_probe=ADDR[,ADDR...]`.
pub const PROBE_OPTION: &[u8] = b"isolation_probe=";

/// A malformed `isolation_probe=` option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeArgError {
    /// Not a hex number (optionally `0x`-prefixed) that fits in 64 bits; the text given.
    BadAddress(Text<40>),
    /// Not 4-byte aligned: the probes are 32-bit loads and stores, which must be aligned
    /// on the Device page they go through.
    Unaligned(u64),
    TooMany,
}

impl fmt::Display for ProbeArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadAddress(text) => write!(
                f,
                "isolation_probe: '{text}' is not a hex address (ADDR[,ADDR...], e.g. 0x13e000000)"
            ),
            Self::Unaligned(address) => write!(
                f,
                "isolation_probe: {address:#x} is not 4-byte aligned (each address is probed with a 32-bit load and store)"
            ),
            Self::TooMany => write!(f, "isolation_probe: more than {MAX_PROBE_ARGS} addresses"),
        }
    }
}

/// The addresses of every `isolation_probe=` option in a command line (options are
/// separated by whitespace; each may list several comma-separated hex addresses, each
/// 4-byte aligned).
pub fn parse_probe_args(bootargs: &[u8]) -> Result<List<u64, MAX_PROBE_ARGS>, ProbeArgError> {
    let mut addresses = List::new();
    let options = bootargs
        .split(|b| b.is_ascii_whitespace())
        .filter_map(|option| option.strip_prefix(PROBE_OPTION));
    for value in options {
        for item in value.split(|&b| b == b',') {
            let address = parse_hex(item).ok_or_else(|| {
                let mut text = Text::<40>::new();
                let shown = core::str::from_utf8(item).unwrap_or("<not UTF-8>");
                let _ = fmt::Write::write_str(&mut text, shown);
                ProbeArgError::BadAddress(text)
            })?;
            if address % 4 != 0 {
                return Err(ProbeArgError::Unaligned(address));
            }
            if !addresses.push(address) {
                return Err(ProbeArgError::TooMany);
            }
        }
    }
    Ok(addresses)
}

/// A hex number, `0x`/`0X` prefix optional, at most 64 bits.
fn parse_hex(text: &[u8]) -> Option<u64> {
    let digits = text
        .strip_prefix(b"0x")
        .or_else(|| text.strip_prefix(b"0X"))
        .unwrap_or(text);
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &c| {
        let digit = (c as char).to_digit(16)?;
        Some((value << 4) | u64::from(digit))
    })
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

    const M512: u64 = 512 << 20;
    const UART: Range = Range::new(0x0900_0000, 0x1000);

    fn windows(p: &IsolationProbes) -> Vec<u64> {
        p.iter_windows().map(|w| w.base).collect()
    }

    /// What every probe set must satisfy: aligned 2 MiB windows, none twice, none
    /// touching RAM or the devices, all below the limit; spans sorted and merged.
    fn check_invariants(p: &IsolationProbes, ram: &[Range], devices: &[Range], limit: u64) {
        let all = windows(p);
        assert_eq!(all.len() as u64, p.windows());
        let unique: std::collections::BTreeSet<_> = all.iter().copied().collect();
        assert_eq!(unique.len(), all.len(), "a window twice: {all:x?}");
        for w in p.iter_windows() {
            assert_eq!(w.base % M2, 0);
            assert_eq!(w.size, M2);
            assert!(w.end().is_some_and(|e| e <= limit), "{w} beyond {limit:#x}");
            assert!(
                !ram.iter().chain(devices).any(|r| r.overlaps(&w)),
                "{w} touches guest memory"
            );
        }
        for pair in p.spans.as_slice().windows(2) {
            assert!(pair[0].end_saturating() < pair[1].base, "{:?}", p.spans);
        }
        let counted = p.after_ranges + p.above_ram + u64::from(p.far.is_some());
        assert_eq!(counted, p.windows());
    }

    #[test]
    fn probes_one_bank() {
        let ram = [Range::new(0x4000_0000, 2 * G)];
        let limit = 1 << 40;
        let p = isolation_probes(&ram, &[UART], limit);
        check_invariants(&p, &ram, &[UART], limit);
        assert_eq!(p.after_ranges, 1);
        assert_eq!(p.above_ram, M512 / M2 - 1);
        assert_eq!(p.far, Some(0xc000_0000 + (4 << 30)));
        assert_eq!(p.windows(), M512 / M2 + 1);
        assert_eq!(
            p.spans.as_slice(),
            [Range::new(0xc000_0000, M512), Range::new(0x1_c000_0000, M2)]
        );
        assert!(!p.overflow);
    }

    #[test]
    fn probes_what_the_hypervisor_gives_a_4g_guest() {
        // The guest RAM of a `-m 4G` run: the hypervisor's image at 0x40200000, the DTB
        // at 0x48000000, the crash region below 4 GiB and the pool at the top.
        let ram = [
            Range::new(0x4000_0000, 0x20_0000),
            Range::new(0x4040_0000, 0x7c0_0000),
            Range::new(0x4810_0000, 0xb5f0_0000),
            Range::new(0x1_0000_0000, 0x3800_0000),
        ];
        let limit = 1 << 44;
        let p = isolation_probes(&ram, &[UART], limit);
        check_invariants(&p, &ram, &[UART], limit);
        // After RAM 0 (the image), not after RAM 1 (RAM 2 starts 1 MiB later), after
        // RAM 2 (the crash region) and after RAM 3 (the pool).
        assert_eq!(p.after_ranges, 3);
        let all = windows(&p);
        assert_eq!(&all[..3], [0x4020_0000, 0xfe00_0000, 0x1_3800_0000]);
        assert_eq!(p.above_ram, M512 / M2 - 1);
        assert_eq!(all.last(), Some(&0x2_4000_0000));
        assert_eq!(p.far, Some(0x2_4000_0000));
        assert_eq!(p.windows(), 2 + M512 / M2 + 1);
    }

    #[test]
    fn probes_two_banks_with_a_hole() {
        let ram = [Range::new(0x4000_0000, G), Range::new(0x1_0000_0000, G)];
        let limit = 1 << 40;
        let p = isolation_probes(&ram, &[], limit);
        check_invariants(&p, &ram, &[], limit);
        assert_eq!(p.after_ranges, 2);
        assert_eq!(windows(&p)[0], 0x8000_0000);
        assert_eq!(p.far, Some(0x2_4000_0000));
        assert_eq!(p.windows(), 1 + M512 / M2 + 1);

        // A hole too small for a window that does not touch the next bank.
        let ram = [
            Range::new(0x4000_0000, 0x3ff0_0000),
            Range::new(0x8000_0000, G),
        ];
        let p = isolation_probes(&ram, &[], limit);
        check_invariants(&p, &ram, &[], limit);
        assert_eq!(p.after_ranges, 1);
        assert_eq!(windows(&p)[0], 0xc000_0000);
    }

    #[test]
    fn probes_an_unaligned_end() {
        let ram = [Range::new(0x4000_0000, 0xff10_0000)];
        let end = 0x1_3f10_0000;
        let p = isolation_probes(&ram, &[], 1 << 40);
        check_invariants(&p, &ram, &[], 1 << 40);
        let all = windows(&p);
        // The window holding the end is RAM; the next ones start below end + 512 MiB.
        assert_eq!(all[0], 0x1_3f20_0000);
        assert!(all.iter().all(|&w| w < end + M512 || Some(w) == p.far));
        assert_eq!(p.windows(), M512 / M2 + 1);
    }

    #[test]
    fn probes_ram_near_the_top_of_the_address_space() {
        let limit: u64 = 1 << 40;
        // 256 MiB below the limit: 128 windows, no far one.
        let ram = [Range::new(limit - G, 0x3000_0000)];
        let p = isolation_probes(&ram, &[], limit);
        check_invariants(&p, &ram, &[], limit);
        assert_eq!(p.windows(), (256 << 20) / M2);
        assert_eq!(p.far, None);
        // RAM up to the limit: nothing above it to probe.
        let ram = [Range::new(limit - G, G)];
        let p = isolation_probes(&ram, &[], limit);
        assert_eq!(p.windows(), 0);
        // RAM at the very top of the 64-bit space, and a range whose end wraps.
        for ram in [
            [Range::new(u64::MAX - 4 * M2 + 1, 2 * M2)],
            [Range::new(u64::MAX - M2 + 1, M2)],
        ] {
            let p = isolation_probes(&ram, &[], u64::MAX);
            check_invariants(&p, &ram, &[], u64::MAX);
            assert_eq!(p.far, None);
        }
    }

    #[test]
    fn addresses_from_bootargs() {
        let ram = Range::new(0x4000_0000, 2 * G);
        let own = [
            OwnRange {
                range: ram,
                what: Own::Ram,
            },
            OwnRange {
                range: Range::new(0x0800_0000, 0x1_0000),
                what: Own::Distributor,
            },
            OwnRange {
                range: Range::new(0x080a_0000, 0x8_0000),
                what: Own::Redistributors,
            },
            OwnRange {
                range: UART,
                what: Own::Console,
            },
        ];
        let limit = 1 << 40;
        let args = [
            0x0902_0000, // fw-cfg, in the UART's 2 MiB: probed
            0x0812_0000, // the next redistributor frame, past the guest's vCPUs: probed
            0x0808_0000, // the ITS, between GICD and GICR: probed
            0x0801_0000, // just past the distributor frame: probed
            0x0900_0ffc, // the console's last word: not probed
            0x0811_fffc, // the last vCPU's last word: not probed
            0x0800_0000, // the distributor: not probed
            0x5000_0000, // guest RAM: not probed
            0x3fff_fffc, // the page below RAM: probed
            limit - 4,   // the last word below the limit: probed
            limit,       // beyond: not probed
            0x0902_0000, // again: probed again
        ];
        let p = address_probes(&own, limit, &args);
        assert_eq!(
            p.addresses.as_slice(),
            [
                0x0902_0000,
                0x0812_0000,
                0x0808_0000,
                0x0801_0000,
                0x3fff_fffc,
                limit - 4,
                0x0902_0000
            ]
        );
        assert_eq!(p.pages(), 6);
        let rejected: Vec<_> = p
            .rejected
            .iter()
            .map(|r| (r.address, r.why, r.own.map(|o| o.what)))
            .collect();
        assert_eq!(
            rejected,
            [
                (0x0900_0ffc, Rejection::NotOutside, Some(Own::Console)),
                (
                    0x0811_fffc,
                    Rejection::NotOutside,
                    Some(Own::Redistributors)
                ),
                (0x0800_0000, Rejection::NotOutside, Some(Own::Distributor)),
                (0x5000_0000, Rejection::NotOutside, Some(Own::Ram)),
                (limit, Rejection::BeyondAddressSpace, None),
            ]
        );
        assert_eq!(
            p.rejected.get(0).unwrap().to_string(),
            "isolation_probe=0x9000ffc: its page 0x9000000-0x9001000 overlaps the guest's console UART 0x9000000-0x9001000"
        );
        assert_eq!(
            p.rejected.get(4).unwrap().to_string(),
            "isolation_probe=0x10000000000: its page 0x10000000000-0x10000001000 is beyond the guest's address space"
        );
        // As many as the option may give, all taken or all left out.
        let many: Vec<u64> = (0..MAX_PROBE_ARGS as u64)
            .map(|i| 0x1000_0000 + i * 0x40)
            .collect();
        assert_eq!(
            address_probes(&own, limit, &many).addresses.len(),
            MAX_PROBE_ARGS
        );
        let mine: Vec<u64> = (0..MAX_PROBE_ARGS as u64)
            .map(|i| 0x4000_0000 + i * 0x40)
            .collect();
        assert_eq!(
            address_probes(&own, limit, &mine).rejected.len(),
            MAX_PROBE_ARGS
        );
        assert_eq!(
            address_probes(&own, u64::MAX, &[u64::MAX - 3])
                .rejected
                .len(),
            1
        );
    }

    #[test]
    fn probe_spans_overflow_is_reported() {
        let ram: Vec<Range> = (0..40u64)
            .map(|i| Range::new(0x4000_0000 + i * 8 * M2, M2))
            .collect();
        let p = isolation_probes(&ram, &[], 1 << 40);
        assert!(p.overflow);
        assert_eq!(p.spans.len(), MAX_PROBE_SPANS);
    }

    #[test]
    fn probe_args_parse() {
        let got = parse_probe_args(
            b"console=ttyAMA0 isolation_probe=0x13e000000,140000000 quiet\tisolation_probe=0X1C",
        )
        .unwrap();
        assert_eq!(got.as_slice(), [0x1_3e00_0000, 0x1_4000_0000, 0x1c]);
        assert!(parse_probe_args(b"").unwrap().is_empty());
        assert!(
            parse_probe_args(b"xisolation_probe=zz isolation_probes=1")
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            parse_probe_args(b"isolation_probe=fffffffffffffffc")
                .unwrap()
                .as_slice(),
            [u64::MAX - 3]
        );
        let bad = |args: &[u8]| match parse_probe_args(args) {
            Err(ProbeArgError::BadAddress(text)) => text.as_str().to_owned(),
            other => panic!("{other:?}"),
        };
        assert_eq!(bad(b"isolation_probe="), "");
        assert_eq!(bad(b"isolation_probe=0x4,,0x8"), "");
        assert_eq!(bad(b"isolation_probe=0xzz"), "0xzz");
        assert_eq!(bad(b"isolation_probe=0x"), "0x");
        assert_eq!(bad(b"isolation_probe=-1"), "-1");
        assert_eq!(
            bad(b"isolation_probe=10000000000000000"),
            "10000000000000000"
        );
        let list = |n: u64| {
            (1..=n)
                .map(|i| format!("{:#x}", i * 4))
                .collect::<Vec<_>>()
                .join(",")
        };
        let most = format!("isolation_probe={} isolation_probe={}", list(100), list(28));
        assert_eq!(
            parse_probe_args(most.as_bytes()).unwrap().len(),
            MAX_PROBE_ARGS
        );
        let too_many = format!("{most},0x1000");
        assert!(matches!(
            parse_probe_args(too_many.as_bytes()),
            Err(ProbeArgError::TooMany)
        ));
        assert_eq!(
            ProbeArgError::TooMany.to_string(),
            "isolation_probe: more than 128 addresses"
        );
        assert_eq!(
            parse_probe_args(b"isolation_probe=0x9020000,0x9020016").unwrap_err(),
            ProbeArgError::Unaligned(0x902_0016)
        );
        assert_eq!(
            ProbeArgError::Unaligned(0x2).to_string(),
            "isolation_probe: 0x2 is not 4-byte aligned (each address is probed with a 32-bit load and store)"
        );
        assert_eq!(
            parse_probe_args(b"isolation_probe=0xq")
                .unwrap_err()
                .to_string(),
            "isolation_probe: '0xq' is not a hex address (ADDR[,ADDR...], e.g. 0x13e000000)"
        );
    }

    #[test]
    fn stress_region_is_the_top_of_the_gigabyte_or_the_highest_free_run() {
        let l = choose(&[Range::new(0x4000_0000, 2 * G)], &[]).unwrap();
        assert_eq!(
            l.stress,
            Some(Range::new(0xc000_0000 - STRESS_SIZE, STRESS_SIZE))
        );
        assert!(!l.stress.unwrap().overlaps(&Range::new(l.chunk, M2)));
        // No free GiB: the highest free run, around a busy block.
        let ram = [Range::new(0x4000_0000, G)];
        let busy = [Range::new(0x7fe0_0000, 0x1000)];
        let l = choose(&ram, &busy).unwrap();
        let stress = l.stress.unwrap();
        assert_eq!(stress.size, STRESS_SIZE);
        assert_eq!(stress.end(), Some(0x7fe0_0000));
        // Too little RAM for it.
        let l = choose(&[Range::new(0x4000_0000, 4 * M2)], &[]).unwrap();
        assert_eq!(l.stress, None);
    }
}
