//! The SMMU commands that mirror one CPU TLB invalidation of a guest's stage 2.
//!
//! The page-table engine hands every invalidation it owes to `Hardware::tlbi` as a
//! [`TlbInvalidation`]; the EL2 layer issues the CPU's TLBI and queues, in the same
//! order, the commands [`commands_for`] gives for the guest's VMID. The CMD_SYNC that
//! completes them belongs where the engine issues its `DSB ISH` after the TLBIs (before
//! any entry is made valid again and any table is freed), see the module `iommu`.
//!
//! | CPU | SMMU |
//! |---|---|
//! | `Leaf { addr, .. }`: `TLBI IPAS2LE1IS` | one CMD_TLBI_S2_IPA, Leaf = 1, TG = 0 |
//! | `Range { start, size }`: `TLBI RIPAS2E1IS` | with IDR3.RIL: at most [`MAX_RANGE_COMMANDS`] ranged CMD_TLBI_S2_IPA, Leaf = 0, up to [`MAX_RANGE_PAGES`] pages; without: one per 4 KiB page, Leaf = 0, up to [`MAX_PAGE_COMMANDS`] pages; above that, or a range the IPA field cannot name, CMD_TLBI_S12_VMALL |
//! | `All`: `TLBI VMALLS12E1IS` | CMD_TLBI_S12_VMALL |
//! | `Stage1OfVmid`: `TLBI VMALLE1IS` | nothing: a stage-2-only STE (Config 0b110) caches no stage-1 or combined entries, which is why Linux's and Xen's stage-2 domains use CMD_TLBI_S2_IPA alone |
//!
//! Leaf = 1 matches the CPU's last-level-only TLBI; range invalidations reach walk
//! caches (Leaf = 0), as `TLBI RIPAS2E1IS` with TTL 0 does. TTL is always 0 (no level
//! hint), as on the CPU side.
//!
//! Without RIL a range must be invalidated page by page, since any 4 KiB page of it may
//! hold a leaf. [`MAX_PAGE_COMMANDS`] = 512 pages (2 MiB, one level-2 table: a collapse
//! of one table into a 2 MiB block still goes by page) is Linux's bound for the same
//! choice (`CMDQ_MAX_TLBI_OPS` = 1 << (PAGE_SHIFT - 3) in the SMMUv3 SVA code, and
//! arm64's `MAX_DVM_OPS` for the CPU); a larger range costs the VMID's whole TLB once
//! instead of thousands of commands.

use pgtable::TlbInvalidation;

use super::command::{Command, IPA_LIMIT, IpaRange};

/// The most per-page commands a range becomes without IDR3.RIL.
pub const MAX_PAGE_COMMANDS: u64 = 512;

/// The largest range ranged commands cover with IDR3.RIL: 32 chunks of 2^31 pages
/// (NUM = 31, SCALE = 31), 2^36 pages or 256 TiB, more than any 48-bit IPA space this
/// hypervisor builds. A larger range becomes CMD_TLBI_S12_VMALL.
pub const MAX_RANGE_PAGES: u64 = 32 << 31;

/// The most ranged commands one range becomes with IDR3.RIL: each command takes the
/// top 5 significant bits of the remaining page count, which has at most 36 bits.
pub const MAX_RANGE_COMMANDS: usize = 8;

/// The most commands [`commands_for`] gives for one invalidation (CMD_SYNC not
/// included): what the EL2 layer must be able to queue, in one go or in parts.
pub const MAX_COMMANDS: usize = MAX_PAGE_COMMANDS as usize;

const PAGE_SHIFT: u32 = 12;

/// Calls `emit` with each command that mirrors the CPU invalidation `op` on the stage 2
/// of `vmid`, in order; `range_invalidation` is IDR3.RIL. Returns how many it emitted
/// (at most [`MAX_COMMANDS`]).
pub fn commands_for(
    op: TlbInvalidation,
    vmid: u16,
    range_invalidation: bool,
    mut emit: impl FnMut(Command),
) -> usize {
    match op {
        TlbInvalidation::Leaf { addr, .. } => {
            if addr >= IPA_LIMIT {
                emit(Command::tlbi_s12_vmall(vmid));
            } else {
                emit(Command::tlbi_s2_ipa(vmid, addr, true));
            }
            1
        }
        TlbInvalidation::Range { start, size } => {
            range_commands(vmid, start, size, range_invalidation, emit)
        }
        TlbInvalidation::All => {
            emit(Command::tlbi_s12_vmall(vmid));
            1
        }
        TlbInvalidation::Stage1OfVmid => 0,
    }
}

/// Calls `emit` with the commands that invalidate every stage-2 entry of `vmid`, walk
/// caches included, for the 4 KiB pages `[start, start + size)` touches (an unaligned
/// start or end widens the range to whole pages). Returns how many it emitted.
pub fn range_commands(
    vmid: u16,
    start: u64,
    size: u64,
    range_invalidation: bool,
    mut emit: impl FnMut(Command),
) -> usize {
    if size == 0 {
        return 0;
    }
    let end = match start.checked_add(size) {
        Some(end) if end <= IPA_LIMIT => end,
        _ => {
            emit(Command::tlbi_s12_vmall(vmid));
            return 1;
        }
    };
    let first = start >> PAGE_SHIFT;
    let pages = end.div_ceil(1 << PAGE_SHIFT) - first;
    if range_invalidation && pages <= MAX_RANGE_PAGES {
        ranged(vmid, first, pages, emit)
    } else if !range_invalidation && pages <= MAX_PAGE_COMMANDS {
        for page in first..first + pages {
            emit(Command::tlbi_s2_ipa(vmid, page << PAGE_SHIFT, false));
        }
        pages as usize
    } else {
        emit(Command::tlbi_s12_vmall(vmid));
        1
    }
}

/// `pages` (1 to [`MAX_RANGE_PAGES`]) pages from `first` as ranged commands in address
/// order: each takes as many chunks as the top five significant bits of what is left
/// say, of the power-of-two size below them, so what is left loses at least five bits
/// per command. Only 2^36 itself needs 32 chunks of 2^31.
fn ranged(vmid: u16, first: u64, pages: u64, mut emit: impl FnMut(Command)) -> usize {
    let mut page = first;
    let mut left = pages;
    let mut count = 0;
    while left > 0 {
        let significant = 64 - left.leading_zeros();
        let scale = significant.saturating_sub(5).min(31);
        let chunks = (left >> scale).min(32);
        // 1 <= chunks <= 32 and scale <= 31 by construction; the fallback only keeps
        // this free of panics.
        let Some(range) = IpaRange::new(chunks, scale as u8) else {
            emit(Command::tlbi_s12_vmall(vmid));
            return count + 1;
        };
        emit(Command::tlbi_s2_ipa_range(
            vmid,
            page << PAGE_SHIFT,
            false,
            range,
        ));
        count += 1;
        page += range.pages();
        left -= range.pages();
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iommu::command::opcode;

    /// A command decoded back: which pages of which VMID it invalidates.
    #[derive(Debug, PartialEq, Eq)]
    enum Effect {
        Pages {
            vmid: u16,
            first: u64,
            count: u64,
            leaf: bool,
        },
        Vmid(u16),
    }

    fn effect(command: Command) -> Effect {
        let [w0, w1] = command.words();
        let vmid = (w0 >> 32) as u16;
        match command.opcode() {
            opcode::TLBI_S12_VMALL => Effect::Vmid(vmid),
            opcode::TLBI_S2_IPA => {
                assert_eq!((w1 >> 8) & 3, 0, "TTL");
                let tg = (w1 >> 10) & 3;
                let count = match tg {
                    0 => {
                        assert_eq!(w0 & (0x1f << 12 | 0x1f << 20), 0, "NUM/SCALE without TG");
                        1
                    }
                    1 => (((w0 >> 12) & 0x1f) + 1) << ((w0 >> 20) & 0x1f),
                    _ => panic!("TG {tg}"),
                };
                Effect::Pages {
                    vmid,
                    first: (w1 & ((1 << 52) - 1)) >> 12,
                    count,
                    leaf: w1 & 1 == 1,
                }
            }
            other => panic!("opcode {other:#x}"),
        }
    }

    fn collect(op: TlbInvalidation, ril: bool) -> Vec<Effect> {
        let mut out = vec![];
        let n = commands_for(op, 3, ril, |c| out.push(effect(c)));
        assert_eq!(n, out.len());
        assert!(n <= MAX_COMMANDS);
        out
    }

    /// The pages a list of effects covers, checked contiguous; `None` if it is the
    /// whole VMID.
    fn covered(effects: &[Effect]) -> Option<(u64, u64)> {
        if effects == [Effect::Vmid(3)] {
            return None;
        }
        let mut start = None;
        let mut next = 0;
        for e in effects {
            let Effect::Pages {
                vmid,
                first,
                count,
                leaf,
            } = *e
            else {
                panic!("VMALL among ranges: {effects:?}");
            };
            assert_eq!((vmid, leaf), (3, false));
            if start.is_none() {
                start = Some(first);
                next = first;
            }
            assert_eq!(first, next, "contiguous");
            next += count;
        }
        start.map(|s| (s, next - s))
    }

    #[test]
    fn leaf_is_one_leaf_command() {
        for ril in [false, true] {
            let out = collect(
                TlbInvalidation::Leaf {
                    addr: 0x4020_1234,
                    level: Some(3),
                },
                ril,
            );
            assert_eq!(
                out,
                [Effect::Pages {
                    vmid: 3,
                    first: 0x40201,
                    count: 1,
                    leaf: true
                }]
            );
        }
    }

    #[test]
    fn all_is_vmall_and_stage1_of_vmid_is_nothing() {
        assert_eq!(collect(TlbInvalidation::All, true), [Effect::Vmid(3)]);
        assert!(collect(TlbInvalidation::Stage1OfVmid, true).is_empty());
    }

    #[test]
    fn two_megabytes_without_ril_is_512_pages() {
        let out = collect(
            TlbInvalidation::Range {
                start: 0x4020_0000,
                size: 2 << 20,
            },
            false,
        );
        assert_eq!(out.len(), 512);
        assert_eq!(covered(&out), Some((0x40200, 512)));
    }

    #[test]
    fn more_than_512_pages_without_ril_is_vmall() {
        let out = collect(
            TlbInvalidation::Range {
                start: 0,
                size: 513 << 12,
            },
            false,
        );
        assert_eq!(out, [Effect::Vmid(3)]);
    }

    #[test]
    fn one_gigabyte_with_ril_is_one_command() {
        let out = collect(
            TlbInvalidation::Range {
                start: 1 << 30,
                size: 1 << 30,
            },
            true,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(covered(&out), Some((1 << 18, 1 << 18)));
    }

    #[test]
    fn ranges_the_ipa_field_cannot_name_are_vmall() {
        for ril in [false, true] {
            let beyond = TlbInvalidation::Range {
                start: IPA_LIMIT - 4096,
                size: 8192,
            };
            assert_eq!(collect(beyond, ril), [Effect::Vmid(3)]);
            let wraps = TlbInvalidation::Range {
                start: u64::MAX - 4095,
                size: 8192,
            };
            assert_eq!(collect(wraps, ril), [Effect::Vmid(3)]);
        }
        assert_eq!(
            collect(
                TlbInvalidation::Leaf {
                    addr: IPA_LIMIT,
                    level: None
                },
                true
            ),
            [Effect::Vmid(3)]
        );
    }

    #[test]
    fn empty_and_unaligned_ranges() {
        assert!(
            collect(
                TlbInvalidation::Range {
                    start: 0x1000,
                    size: 0
                },
                true
            )
            .is_empty()
        );
        let out = collect(
            TlbInvalidation::Range {
                start: 0x1fff,
                size: 2,
            },
            false,
        );
        assert_eq!(covered(&out), Some((1, 2)));
    }

    #[test]
    fn the_largest_range_fits_the_bound() {
        let out = collect(
            TlbInvalidation::Range {
                start: 0,
                size: MAX_RANGE_PAGES << 12,
            },
            true,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(covered(&out), Some((0, MAX_RANGE_PAGES)));
        let worst = MAX_RANGE_PAGES - 1;
        let out = collect(
            TlbInvalidation::Range {
                start: 4096,
                size: worst << 12,
            },
            true,
        );
        assert_eq!(out.len(), MAX_RANGE_COMMANDS);
        assert_eq!(covered(&out), Some((1, worst)));
        let over = TlbInvalidation::Range {
            start: 0,
            size: (MAX_RANGE_PAGES + 1) << 12,
        };
        assert_eq!(collect(over, true), [Effect::Vmid(3)]);
    }

    proptest::proptest! {
        #[test]
        fn ranges_cover_exactly_their_pages(start in 0u64..(1 << 50), size_bits in 0u32..50, size_low: u64, ril: bool) {
            let size = (size_low & ((1 << size_bits) - 1)).max(1);
            let out = collect(TlbInvalidation::Range { start, size }, ril);
            let first = start >> 12;
            let pages = (start + size).div_ceil(4096) - first;
            match covered(&out) {
                None => {
                    let limit = if ril { MAX_RANGE_PAGES } else { MAX_PAGE_COMMANDS };
                    proptest::prop_assert!(pages > limit);
                }
                Some(range) => {
                    proptest::prop_assert_eq!(range, (first, pages));
                    if ril {
                        proptest::prop_assert!(out.len() <= MAX_RANGE_COMMANDS);
                    }
                }
            }
        }
    }
}
