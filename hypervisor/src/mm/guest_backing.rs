//! Which physical memory backs each dom0less guest's RAM. A guest sees its RAM at the IPA
//! its device tree names (QEMU virt: 0x4000_0000); the backing is one contiguous
//! physical range chosen so that IPA and PA agree modulo 1 GiB when the guest has a
//! gigabyte or more, and modulo 2 MiB otherwise: every 1 GiB (or 2 MiB) aligned piece of
//! the IPA range then lands on an equally aligned piece of PA, so the stage 2 maps it
//! with 1G/2M blocks, as it does the single identity-mapped guest.
//!
//! Larger guests are placed first (they need the rarer alignment and the longer run);
//! each takes the lowest fitting address, so the hypervisor's pool at the top of RAM
//! and the free memory stay in as few pieces as possible. Portable: tested on the host.

use alloc::vec::Vec;
use core::fmt;

use platform::info::PhysRange;

const MIB_2: u64 = 2 << 20;
const GIB: u64 = 1 << 30;

/// One guest's RAM as asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RamRequest {
    /// Where the guest sees its RAM start (2 MiB aligned).
    pub ipa_base: u64,
    /// How much (whole 4 KiB pages).
    pub bytes: u64,
}

/// One guest's RAM as given: `ipa` backed by `[pa, pa + ipa.size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RamBacking {
    pub ipa: PhysRange,
    pub pa: u64,
}

impl RamBacking {
    /// The physical range behind the guest's RAM.
    pub fn physical(&self) -> PhysRange {
        PhysRange {
            base: self.pa,
            size: self.ipa.size,
        }
    }

    /// The physical address behind `ipa`, if it is this RAM's.
    pub fn pa_of(&self, ipa: u64) -> Option<u64> {
        self.ipa
            .contains(ipa)
            .then(|| self.pa + (ipa - self.ipa.base))
    }

    /// The alignment IPA and PA share (1 GiB, 2 MiB or, for a misaligned request, a page).
    pub fn congruence(&self) -> u64 {
        [GIB, MIB_2, 4096]
            .into_iter()
            .find(|&align| self.pa % align == self.ipa.base % align)
            .unwrap_or(4096)
    }
}

/// Why the guests' RAM cannot be backed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackingError {
    /// The request is malformed: no bytes, not whole pages, an IPA base not 2 MiB
    /// aligned, or an IPA range that overflows.
    BadRequest { guest: usize },
    /// No free physical run of `bytes` is left for guest `guest` (0-based, in the
    /// order asked) at a 2 MiB congruence with its IPA; `largest_free` is the longest
    /// free run then.
    DoesNotFit {
        guest: usize,
        bytes: u64,
        largest_free: u64,
    },
}

impl fmt::Display for BackingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadRequest { guest } => write!(
                f,
                "guest {}: its RAM must be whole pages at a 2 MiB-aligned IPA",
                guest + 1
            ),
            Self::DoesNotFit {
                guest,
                bytes,
                largest_free,
            } => write!(
                f,
                "guest {}: no free physical run of {bytes:#x} bytes at a 2 MiB congruence with its IPA (the longest free run left is {largest_free:#x} bytes)",
                guest + 1
            ),
        }
    }
}

/// Backs every request with memory from `free` (ranges the guests may have: RAM less
/// the hypervisor's, the modules and firmware reservations). The result is in request
/// order; the backings never overlap one another and lie inside `free`.
///
/// A 1 GiB congruence is a preference, not a need: where taking it for one guest would
/// leave another no room (a 1 GiB-aligned run splits the free memory around it), that
/// guest gets a 2 MiB congruence instead. The search tries 1 GiB first for every guest
/// that can have it, largest guest first, and backs off one choice at a time (at most
/// 2^guests tries; guests are few).
///
/// # Errors
/// [`BackingError`] for a malformed request, or the first guest (in the order placed)
/// that fits under no choice; nothing is half given.
pub fn back_guest_ram(
    free: &[PhysRange],
    requests: &[RamRequest],
) -> Result<Vec<RamBacking>, BackingError> {
    let mut order: Vec<usize> = (0..requests.len()).collect();
    // Largest first; equal sizes keep the order asked (a stable sort).
    order.sort_by_key(|&guest| core::cmp::Reverse(requests[guest].bytes));
    let mut ipas = Vec::with_capacity(requests.len());
    for (guest, request) in requests.iter().enumerate() {
        let ipa = PhysRange::new(request.ipa_base, request.bytes)
            .filter(|ipa| ipa.size > 0 && ipa.size % 4096 == 0 && ipa.base % MIB_2 == 0)
            .ok_or(BackingError::BadRequest { guest })?;
        ipas.push(ipa);
    }
    let mut free: Vec<PhysRange> = free.iter().copied().filter(|r| r.size > 0).collect();
    free.sort_unstable();
    let mut given: Vec<Option<RamBacking>> = alloc::vec![None; requests.len()];
    place(&free, &order, &ipas, &mut given)?;
    Ok(given.into_iter().flatten().collect())
}

/// Places `order[0]` and, recursively, the rest; on failure the error of the deepest
/// guest that could not be placed under the last choice tried.
fn place(
    free: &[PhysRange],
    order: &[usize],
    ipas: &[PhysRange],
    given: &mut [Option<RamBacking>],
) -> Result<(), BackingError> {
    let Some((&guest, rest)) = order.split_first() else {
        return Ok(());
    };
    let ipa = ipas[guest];
    let alignments: &[u64] = if ipa.size >= GIB {
        &[GIB, MIB_2]
    } else {
        &[MIB_2]
    };
    let mut failure = BackingError::DoesNotFit {
        guest,
        bytes: ipa.size,
        largest_free: free.iter().map(|r| r.size).max().unwrap_or(0),
    };
    for &align in alignments {
        // A gigabyte-congruent run may sit at any of a few places, and which one decides
        // what is left for the others: try each (up to a bound). A 2 MiB one takes the
        // lowest fit: what it leaves is as good as it gets.
        let tries = if align == GIB { GIB_CANDIDATES } else { 1 };
        for pa in fits(free, ipa.size, align, ipa.base % align).take(tries) {
            let taken = PhysRange {
                base: pa,
                size: ipa.size,
            };
            match place(&carve(free, taken), rest, ipas, given) {
                Ok(()) => {
                    given[guest] = Some(RamBacking { ipa, pa });
                    return Ok(());
                }
                Err(deeper) => failure = deeper,
            }
        }
    }
    Err(failure)
}

/// How many gigabyte-congruent places are tried for one guest.
const GIB_CANDIDATES: usize = 16;

/// Every `pa` with `pa % align == residue` such that `[pa, pa + bytes)` lies in one free
/// range, lowest first.
fn fits(
    free: &[PhysRange],
    bytes: u64,
    align: u64,
    residue: u64,
) -> impl Iterator<Item = u64> + '_ {
    free.iter().flat_map(move |range| {
        let first = range
            .base
            .checked_add((residue + align - range.base % align) % align);
        let last = range.end().checked_sub(bytes);
        let count = match (first, last) {
            (Some(first), Some(last)) if first <= last => (last - first) / align + 1,
            _ => 0,
        };
        (0..count).filter_map(move |i| first?.checked_add(i * align))
    })
}

/// `free` less `taken` (no empty pieces).
pub fn carve(free: &[PhysRange], taken: PhysRange) -> Vec<PhysRange> {
    free.iter()
        .flat_map(|range| {
            if !range.overlaps(&taken) {
                return [Some(*range), None];
            }
            let below = PhysRange::new(range.base, taken.base.saturating_sub(range.base))
                .filter(|r| r.size > 0);
            let above_base = taken.end().max(range.base);
            let above = PhysRange::new(above_base, range.end().saturating_sub(above_base))
                .filter(|r| r.size > 0);
            [below, above]
        })
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn range(base: u64, size: u64) -> PhysRange {
        PhysRange::new(base, size).unwrap()
    }

    #[test]
    fn two_qemu_guests_keep_their_ipa_congruent() {
        // QEMU virt -m 4G: RAM at 1 GiB; the hypervisor's image and DTB at the bottom,
        // its pool at the top, the modules at 1.25 GiB.
        let free = [
            range(0x4200_0000, 0x0e00_0000),
            range(0x5800_0000, 0xe000_0000),
        ];
        let requests = [
            RamRequest {
                ipa_base: 0x4000_0000,
                bytes: GIB,
            },
            RamRequest {
                ipa_base: 0x4000_0000,
                bytes: 512 << 20,
            },
        ];
        let given = back_guest_ram(&free, &requests).unwrap();
        assert_eq!(
            given[0].pa, 0x8000_0000,
            "the 1 GiB guest on a 1 GiB boundary"
        );
        assert_eq!(given[0].congruence(), GIB);
        assert_eq!(
            given[1].pa, 0x5800_0000,
            "the small one in the lowest 2 MiB fit"
        );
        assert_eq!(given[1].congruence(), MIB_2);
        assert_eq!(given[1].pa_of(0x4000_1000), Some(0x5800_1000));
        assert_eq!(given[1].pa_of(0x6000_0000), None);
    }

    #[test]
    fn a_gigabyte_congruence_gives_way_when_it_would_leave_another_guest_no_room() {
        // 3G of RAM at 1 GiB, the pool at the top, modules below 0x5480_0000: guest 1 on
        // the 1 GiB boundary at 0x8000_0000 would leave 696 MiB and 768 MiB, no room for
        // guest 2's gigabyte; at 0xc000_0000 it does not fit. Both get 2 MiB congruence.
        let free = [range(0x5480_0000, 0xf000_0000 - 0x5480_0000)];
        let requests = [
            RamRequest {
                ipa_base: 0x4000_0000,
                bytes: GIB,
            },
            RamRequest {
                ipa_base: 0x4000_0000,
                bytes: GIB,
            },
        ];
        let given = back_guest_ram(&free, &requests).unwrap();
        assert_eq!((given[0].pa, given[1].pa), (0x5480_0000, 0x9480_0000));
        assert!(given.iter().all(|b| b.congruence() >= MIB_2));
        // With room for both on gigabyte boundaries, both get them.
        let free = [range(0x4000_0000, 4 * GIB)];
        let given = back_guest_ram(&free, &requests).unwrap();
        assert!(given.iter().all(|b| b.congruence() == GIB), "{given:x?}");
    }

    #[test]
    fn a_later_gigabyte_boundary_is_tried_when_the_first_leaves_no_room() {
        // Guest 2 (1.5 GiB, placed first) on 0x8000_0000 leaves guest 1 no room at all;
        // at 2 MiB congruence from the bottom it leaves guest 1 the gigabyte boundary
        // 0xc000_0000.
        let free = [range(0x5480_0000, 0x1_0000_0000 - 0x5480_0000)];
        let requests = [
            RamRequest {
                ipa_base: 0x4000_0000,
                bytes: GIB,
            },
            RamRequest {
                ipa_base: 0x4000_0000,
                bytes: 1536 << 20,
            },
        ];
        let given = back_guest_ram(&free, &requests).unwrap();
        assert_eq!(given[0].pa, 0xc000_0000, "{given:x?}");
        assert_eq!(given[0].congruence(), GIB);
        assert_eq!(given[1].pa, 0x5480_0000);
        // The 3G machine with the pool under 0x1_0000_0000 and two 1 GiB guests: the
        // first gigabyte boundary (0x8000_0000) leaves the second guest 0xc000_0000.
        let free = [range(0x5480_0000, 0x1_0000_0000 - 0x5480_0000)];
        let two = [requests[0], requests[0]];
        let given = back_guest_ram(&free, &two).unwrap();
        assert_eq!((given[0].pa, given[1].pa), (0x8000_0000, 0xc000_0000));
    }

    #[test]
    fn a_guest_that_does_not_fit_is_named() {
        let free = [range(0x4000_0000, 0x4000_0000)];
        let requests = [
            RamRequest {
                ipa_base: 0x4000_0000,
                bytes: 768 << 20,
            },
            RamRequest {
                ipa_base: 0x4000_0000,
                bytes: 512 << 20,
            },
        ];
        assert_eq!(
            back_guest_ram(&free, &requests),
            Err(BackingError::DoesNotFit {
                guest: 1,
                bytes: 512 << 20,
                largest_free: 256 << 20
            })
        );
        let bad = [RamRequest {
            ipa_base: 0x4000_1000,
            bytes: 4096,
        }];
        assert_eq!(
            back_guest_ram(&free, &bad),
            Err(BackingError::BadRequest { guest: 0 })
        );
    }

    proptest! {
        /// Against the rules: inside free memory, disjoint, congruent mod 2 MiB (1 GiB
        /// when that was possible), and every failure true of the state it reports.
        #[test]
        fn backings_are_disjoint_inside_free_memory_and_congruent(
            free in proptest::collection::vec((0u64..64, 1u64..16), 1..6),
            sizes in proptest::collection::vec((1u64..2048, 0u64..4), 1..5),
        ) {
            let free: Vec<PhysRange> = free
                .iter()
                .map(|&(slot, len)| range(slot << 29, len << 27))
                .collect();
            let requests: Vec<RamRequest> = sizes
                .iter()
                .map(|&(mib, ipa)| RamRequest { ipa_base: (1 + ipa) << 30, bytes: mib << 20 })
                .collect();
            let merged = crate::mm::guest_backing::tests::merge(&free);
            match back_guest_ram(&free, &requests) {
                Ok(given) => {
                    prop_assert_eq!(given.len(), requests.len());
                    for (index, backing) in given.iter().enumerate() {
                        let pa = backing.physical();
                        prop_assert_eq!(backing.ipa.base, requests[index].ipa_base);
                        prop_assert_eq!(pa.size, requests[index].bytes);
                        prop_assert!(merged.iter().any(|r| r.contains_range(&pa)));
                        prop_assert_eq!(backing.pa % MIB_2, backing.ipa.base % MIB_2);
                        for other in &given[index + 1..] {
                            prop_assert!(!pa.overlaps(&other.physical()));
                        }
                    }
                }
                Err(BackingError::DoesNotFit { bytes, largest_free, .. }) => {
                    prop_assert!(largest_free < bytes + MIB_2, "a run of {largest_free:#x} holds {bytes:#x} at some 2 MiB congruence");
                }
                Err(BackingError::BadRequest { .. }) => prop_assert!(false, "requests are well formed"),
            }
        }

        /// One free run as long as the guests plus a gigabyte of slack per guest for
        /// alignment always fits them all, each at a 1 GiB congruence when it is that big.
        #[test]
        fn ample_memory_always_fits(
            base_slot in 0u64..64,
            sizes in proptest::collection::vec((1u64..3072, 0u64..4), 1..5),
        ) {
            let requests: Vec<RamRequest> = sizes
                .iter()
                .map(|&(mib, ipa)| RamRequest { ipa_base: (1 + ipa) << 30, bytes: mib << 20 })
                .collect();
            let total: u64 = requests.iter().map(|r| r.bytes + GIB).sum();
            let free = [range(base_slot << 21, total)];
            let given = back_guest_ram(&free, &requests);
            prop_assert!(given.is_ok(), "{given:?}");
            for backing in given.unwrap_or_default() {
                if backing.ipa.size >= GIB {
                    prop_assert_eq!(backing.congruence(), GIB);
                }
            }
        }
    }

    /// Overlapping or adjacent free ranges as one (the generator may overlap them).
    pub(super) fn merge(free: &[PhysRange]) -> Vec<PhysRange> {
        let mut sorted = free.to_vec();
        sorted.sort_unstable();
        let mut merged: Vec<PhysRange> = Vec::new();
        for range in sorted {
            match merged.last_mut() {
                Some(last) if range.base <= last.end() => {
                    last.size = last.end().max(range.end()) - last.base;
                }
                _ => merged.push(range),
            }
        }
        merged
    }
}
