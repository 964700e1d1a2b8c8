//! Splitting an invalidation of `[start, start + size)` into FEAT_TLBIRANGE operations
//! (`TLBI RVAE2IS`, `TLBI RIPAS2E1IS`), as the Arm ARM encodes them: with a 4K granule,
//! one operation covers `(NUM + 1) << (5 * SCALE + 1)` pages from BaseADDR, so a page
//! count is consumed in 5-bit digits; an odd page goes by address (Linux's
//! `__flush_tlb_range_op` does the same).

/// The largest range one decomposition covers: NUM = 31 at SCALE = 3.
pub const MAX_RANGE_PAGES: u64 = 32 << 16;

/// One TLB invalidation operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlbiOperand {
    /// A single page by address: the operand holds address bits [55:12].
    Page(u64),
    /// A range operand: TG[47:46] = 0b01 (4K), SCALE[45:44], NUM[43:39], TTL[38:37] = 0
    /// (no level hint), BaseADDR[36:0] = start page number.
    Range(u64),
}

const TG_4K: u64 = 0b01 << 46;
const BASE_ADDR_MASK: u64 = (1 << 37) - 1;

/// Calls `issue` for each operation covering exactly the pages of `[start, start + size)`.
/// Returns `false`, issuing nothing, when the range is too large for range operations
/// (more than [`MAX_RANGE_PAGES`] pages; the caller invalidates everything instead).
pub fn decompose(start: u64, size: u64, mut issue: impl FnMut(TlbiOperand)) -> bool {
    let mut pages = size.div_ceil(4096);
    if pages > MAX_RANGE_PAGES {
        return false;
    }
    let mut page = start >> 12;
    let mut scale = 0u64;
    while pages > 0 {
        if pages % 2 == 1 {
            issue(TlbiOperand::Page(page));
            page += 1;
            pages -= 1;
            continue;
        }
        let num = (pages >> (5 * scale + 1)) & 0x1f;
        if num > 0 {
            let covered = num << (5 * scale + 1);
            issue(TlbiOperand::Range(
                TG_4K | (scale << 44) | ((num - 1) << 39) | (page & BASE_ADDR_MASK),
            ));
            page += covered;
            pages -= covered;
        }
        scale += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pages one operand invalidates, decoded back.
    fn covered(op: TlbiOperand) -> (u64, u64) {
        match op {
            TlbiOperand::Page(page) => (page, 1),
            TlbiOperand::Range(operand) => {
                assert_eq!(operand >> 46 & 3, 1, "TG must be 4K");
                let scale = operand >> 44 & 3;
                let num = operand >> 39 & 0x1f;
                (operand & BASE_ADDR_MASK, (num + 1) << (5 * scale + 1))
            }
        }
    }

    #[test]
    fn two_megabytes_is_one_range_operation() {
        let mut ops = vec![];
        assert!(decompose(0x4020_0000, 2 << 20, |op| ops.push(op)));
        assert_eq!(ops.len(), 1);
        assert_eq!(covered(ops[0]), (0x4020_0000 >> 12, 512));
    }

    #[test]
    fn too_large_a_range_asks_for_a_full_invalidation() {
        assert!(!decompose(0, (MAX_RANGE_PAGES + 1) * 4096, |_| panic!(
            "nothing may be issued"
        )));
    }

    proptest::proptest! {
        #[test]
        fn operations_cover_exactly_the_range_in_order(start_page in 0u64..(1 << 30), pages in 1u64..MAX_RANGE_PAGES) {
            let mut next = start_page;
            let mut count = 0;
            assert!(decompose(start_page << 12, pages << 12, |op| {
                let (first, n) = covered(op);
                assert_eq!(first, next);
                next += n;
                count += 1;
            }));
            proptest::prop_assert_eq!(next, start_page + pages);
            proptest::prop_assert!(count <= 8, "{} operations", count);
        }
    }
}
