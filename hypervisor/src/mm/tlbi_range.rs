//! Splitting an invalidation of `[start, start + size)` into FEAT_TLBIRANGE operations
//! (`TLBI RVAE2IS`, `TLBI RIPAS2E1IS`).
//!
//! The Arm ARM (the operand descriptions of `TLBI RVAE2IS` and `TLBI RIPAS2E1IS`) lays
//! the 64-bit operand out as:
//!
//! | bits    | field     | here                                                     |
//! |---------|-----------|----------------------------------------------------------|
//! | [63:48] | ASID / NS | 0 (no ASID at EL2 without E2H; NS is RES0 in Non-secure) |
//! | [47:46] | TG        | 0b01, the 4K granule                                     |
//! | [45:44] | SCALE     | 0..=3                                                    |
//! | [43:39] | NUM       | 0..=31                                                   |
//! | [38:37] | TTL       | 0b00, no level hint: every level, walk caches too        |
//! | [36:0]  | BaseADDR  | VA[48:12] (IPA[48:12]): the first page                   |
//!
//! and one operation invalidates `BaseADDR <= page < BaseADDR + (NUM + 1) * 2^(5 * SCALE + 1)`
//! (4K pages; without FEAT_LPA2, which this hypervisor does not use, so BaseADDR is in 4K
//! units). A page count is therefore consumed from the largest SCALE down: at each SCALE
//! as many whole `2^(5 * SCALE + 1)`-page chunks as fit (at most 32, NUM = 31), and a
//! last odd page goes by address. Going downwards, SCALE 3 takes up to 32 chunks of 2^16
//! pages, so [`MAX_RANGE_PAGES`] itself is one operation.
//!
//! Linux's `__flush_tlb_range_op` decomposes the same way (it caps NUM at 31 per SCALE in
//! `__TLBI_RANGE_NUM` since 2024). The earlier, ascending loop consumed 5-bit digits of
//! the page count and, for exactly 2^21 pages, reached SCALE 4, whose bit spilled into TG
//! and left an operation covering 2 pages.

/// The largest range one decomposition covers: NUM = 31 at SCALE = 3, `32 << 16` pages
/// (8 GiB).
pub const MAX_RANGE_PAGES: u64 = 32 << 16;

/// The pages BaseADDR[36:0] can name: a range must end at or below this page. A range
/// reaching beyond it would need a wrapped (or truncated) BaseADDR, so it is refused and
/// the caller invalidates everything instead. 2^37 pages is 512 TiB of address space,
/// beyond every 48-bit VA and IPA this hypervisor uses.
pub const BASE_ADDR_PAGES: u64 = 1 << 37;

/// The most operations one decomposition issues: one per SCALE (3, 2, 1, 0) and one
/// single page.
pub const MAX_OPERATIONS: usize = 5;

/// One TLB invalidation operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlbiOperand {
    /// A single page by address: the operand holds address bits [55:12] in its bits
    /// [43:0] (`TLBI VALE2IS`, `TLBI IPAS2LE1IS`); TTL and ASID are left 0. Always below
    /// [`BASE_ADDR_PAGES`] when it comes from [`decompose`]. Those instructions reach the
    /// last level only, so [`decompose`] issues at most one, for the range's last page:
    /// every table entry whose region (2 MiB or more) lies in the range also meets a
    /// range operation, which reaches walk caches.
    Page(u64),
    /// A range operand: TG[47:46] = 0b01 (4K), SCALE[45:44], NUM[43:39], TTL[38:37] = 0
    /// (no level hint), BaseADDR[36:0] = start page number; nothing else set.
    Range(u64),
}

const TG_4K: u64 = 0b01 << 46;
const SCALE_SHIFT: u32 = 44;
const NUM_SHIFT: u32 = 39;
#[cfg(test)]
const BASE_ADDR_MASK: u64 = BASE_ADDR_PAGES - 1;
/// The most chunks one operation covers: NUM is 5 bits, encoding 1..=32 chunks.
const MAX_CHUNKS: u64 = 32;

/// The range operand for `chunks` chunks of `2^(5 * scale + 1)` pages from `base_page`.
/// The caller guarantees `scale <= 3`, `1 <= chunks <= 32` and `base_page < 2^37`.
const fn range_operand(base_page: u64, scale: u32, chunks: u64) -> u64 {
    TG_4K | (scale as u64) << SCALE_SHIFT | (chunks - 1) << NUM_SHIFT | base_page
}

/// Calls `issue` for each operation, in address order, covering exactly the pages that
/// `[start, start + size)` touches (an unaligned start or end widens the range to whole
/// pages, never narrows it): at most [`MAX_OPERATIONS`].
///
/// Returns `false`, issuing nothing, when range operations cannot encode the range: more
/// than [`MAX_RANGE_PAGES`] pages, an end beyond [`BASE_ADDR_PAGES`], or `start + size`
/// overflowing. The caller then invalidates the whole regime.
pub fn decompose(start: u64, size: u64, mut issue: impl FnMut(TlbiOperand)) -> bool {
    if size == 0 {
        return true;
    }
    let Some(end) = start.checked_add(size) else {
        return false;
    };
    let mut page = start >> 12;
    let end_page = end.div_ceil(4096);
    let mut pages = end_page - page;
    if pages > MAX_RANGE_PAGES || end_page > BASE_ADDR_PAGES {
        return false;
    }
    for scale in (0..=3u32).rev() {
        let shift = 5 * scale + 1;
        // With at most MAX_RANGE_PAGES pages at SCALE 3, and fewer than 32 chunks left
        // for every lower SCALE, the cap never binds; it keeps NUM within its 5 bits.
        let chunks = (pages >> shift).min(MAX_CHUNKS);
        if chunks > 0 {
            issue(TlbiOperand::Range(range_operand(page, scale, chunks)));
            page += chunks << shift;
            pages -= chunks << shift;
        }
    }
    // Fewer than 2 pages are left after SCALE 0.
    if pages > 0 {
        issue(TlbiOperand::Page(page));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pages one operand invalidates, decoded back from its bits as the Arm ARM lays
    /// them out, after checking that nothing outside the architectural fields is set.
    fn covered(op: TlbiOperand) -> (u64, u64) {
        match op {
            TlbiOperand::Page(page) => {
                // TLBI VALE2IS / IPAS2LE1IS: ASID/NS [63:48] and TTL [47:44] left 0,
                // the address in [43:0].
                assert_eq!(
                    page >> 44,
                    0,
                    "page operand {page:#x} sets bits above [43:0]"
                );
                (page, 1)
            }
            TlbiOperand::Range(operand) => {
                assert_eq!(operand >> 48, 0, "range operand {operand:#x}: ASID/NS set");
                assert_eq!(
                    operand >> 46 & 3,
                    1,
                    "range operand {operand:#x}: TG must be 4K"
                );
                assert_eq!(operand >> 37 & 3, 0, "range operand {operand:#x}: TTL set");
                let scale = operand >> 44 & 3;
                let num = operand >> 39 & 0x1f;
                (operand & BASE_ADDR_MASK, (num + 1) << (5 * scale + 1))
            }
        }
    }

    /// The model of a decomposition of `pages` pages: the page count's base-32 digits
    /// after the single odd page, the top one (SCALE 3) allowed to reach 32.
    fn expected_operations(pages: u64) -> usize {
        let pairs = pages >> 1;
        let digits = [pairs & 31, pairs >> 5 & 31, pairs >> 10 & 31, pairs >> 15];
        (pages & 1) as usize + digits.iter().filter(|&&d| d != 0).count()
    }

    /// Decomposes `pages` pages from `start_page` and checks every operand against the
    /// model: in order, contiguous, exactly the range, at most [`MAX_OPERATIONS`], or
    /// nothing at all (and `false`) when the range cannot be encoded.
    fn check(start_page: u64, pages: u64) {
        let mut next = start_page;
        let mut count = 0usize;
        let issued = decompose(start_page << 12, pages << 12, |op| {
            let (first, n) = covered(op);
            assert_eq!(
                first, next,
                "start page {start_page:#x}, {pages:#x} pages: operand {op:x?} not contiguous"
            );
            next += n;
            count += 1;
        });
        if pages > MAX_RANGE_PAGES || start_page + pages > BASE_ADDR_PAGES {
            assert!(
                !issued && count == 0,
                "start page {start_page:#x}, {pages:#x} pages: cannot be encoded, yet {count} operation(s) issued"
            );
            return;
        }
        assert!(
            issued,
            "start page {start_page:#x}, {pages:#x} pages refused"
        );
        assert_eq!(
            next,
            start_page + pages,
            "start page {start_page:#x}, {pages:#x} pages: operations end at {next:#x}"
        );
        assert!(
            count <= MAX_OPERATIONS,
            "{pages:#x} pages: {count} operations"
        );
        assert_eq!(count, expected_operations(pages), "{pages:#x} pages");
    }

    fn check_every_count(start_page: u64) {
        for pages in 1..=MAX_RANGE_PAGES {
            check(start_page, pages);
        }
    }

    #[test]
    fn every_page_count_from_page_zero() {
        check_every_count(0);
    }

    #[test]
    fn every_page_count_from_an_odd_page() {
        check_every_count(0x4_0123);
    }

    #[test]
    fn every_page_count_ending_at_most_at_the_top_of_base_addr() {
        check_every_count(BASE_ADDR_PAGES - MAX_RANGE_PAGES);
    }

    #[test]
    fn every_page_count_near_the_top_of_base_addr() {
        // Counts above 2^20 cross 2^37 pages: refused, nothing issued.
        check_every_count(BASE_ADDR_PAGES - MAX_RANGE_PAGES / 2);
        check_every_count(BASE_ADDR_PAGES - 1);
    }

    #[test]
    fn powers_of_two_and_their_neighbours() {
        for k in 0..=22 {
            for pages in [(1u64 << k) - 1, 1 << k, (1 << k) + 1] {
                for start_page in [0, 1, 0x8_0000, BASE_ADDR_PAGES - (1 << 22)] {
                    check(start_page, pages);
                }
            }
        }
    }

    #[test]
    fn the_largest_range_is_one_operation() {
        let mut ops = vec![];
        assert!(decompose(0x4000_0000, MAX_RANGE_PAGES << 12, |op| ops.push(op)));
        assert_eq!(
            ops,
            [TlbiOperand::Range(TG_4K | 3 << 44 | 31 << 39 | 0x4_0000)]
        );
    }

    #[test]
    fn one_page_more_than_the_largest_range_issues_nothing() {
        assert!(!decompose(0, (MAX_RANGE_PAGES + 1) << 12, |_| panic!(
            "nothing may be issued"
        )));
    }

    #[test]
    fn a_range_crossing_the_top_of_base_addr_issues_nothing() {
        let start = (BASE_ADDR_PAGES - 1) << 12;
        assert!(!decompose(start, 2 << 12, |_| panic!(
            "nothing may be issued"
        )));
    }

    #[test]
    fn a_range_wrapping_the_address_space_issues_nothing() {
        assert!(!decompose(u64::MAX - 0xfff, 0x2000, |_| panic!(
            "nothing may be issued"
        )));
    }

    #[test]
    fn an_unaligned_range_covers_every_page_it_touches() {
        let mut ops = vec![];
        assert!(decompose(0x1fff, 2, |op| ops.push(op)));
        let pages: Vec<_> = ops.iter().map(|&op| covered(op)).collect();
        assert_eq!(pages, [(1, 2)]);
    }

    #[test]
    fn an_empty_range_issues_nothing() {
        assert!(decompose(0x4000_0000, 0, |_| panic!(
            "nothing may be issued"
        )));
    }

    #[test]
    fn two_megabytes_is_one_range_operation() {
        let mut ops = vec![];
        assert!(decompose(0x4020_0000, 2 << 20, |op| ops.push(op)));
        assert_eq!(ops.len(), 1);
        assert_eq!(covered(ops[0]), (0x4020_0000 >> 12, 512));
    }

    proptest::proptest! {
        #[test]
        fn operations_cover_exactly_the_range_in_order(start_page in 0u64..BASE_ADDR_PAGES, pages in 1u64..=MAX_RANGE_PAGES + 1) {
            check(start_page, pages);
        }

        #[test]
        fn byte_ranges_widen_to_the_pages_they_touch(start in 0u64..(1 << 40), size in 1u64..(1 << 34)) {
            let first = start >> 12;
            let end = (start + size).div_ceil(4096);
            let mut next = first;
            let issued = decompose(start, size, |op| {
                let (page, n) = covered(op);
                assert_eq!(page, next);
                next += n;
            });
            proptest::prop_assert_eq!(issued, end - first <= MAX_RANGE_PAGES);
            if issued {
                proptest::prop_assert_eq!(next, end);
            } else {
                proptest::prop_assert_eq!(next, first);
            }
        }
    }
}
