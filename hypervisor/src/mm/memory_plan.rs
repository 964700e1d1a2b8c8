//! Physical memory at boot: which RAM is free once the image, the DTB, the guest modules,
//! the firmware's reservations and the crash region are taken out, and where the crash
//! region goes (`crashkernel=SIZE[@BASE]`, placed as Linux places it on arm64).

use arrayvec::ArrayVec;
use core::fmt;
use platform::info::PhysRange;

/// Most disjoint free ranges tracked (RAM banks split by exclusions).
pub const MAX_FREE_RANGES: usize = 64;
/// Most disjoint ranges of guest RAM: the one limit the layout, the guest's stage 2, its
/// hypercalls and its fault handling all use.
pub const MAX_GUEST_RAM_RANGES: usize = MAX_FREE_RANGES;
/// Most excluded ranges considered.
pub const MAX_EXCLUSIONS: usize = 64;

pub const PAGE_SIZE: u64 = 4096;
/// The crash region's alignment (Linux arm64 CRASH_ALIGN).
pub const CRASH_ALIGN: u64 = 2 << 20;
/// Linux tries below this first (arm64 CRASH_ADDR_LOW_MAX on a DMA32 system).
pub const LOW_MEMORY_LIMIT: u64 = 1 << 32;

/// Why a range is not free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExclusionKind {
    Image,
    DeviceTree,
    Module,
    Reserved,
    CrashRegion,
}

impl fmt::Display for ExclusionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Image => "the hypervisor image",
            Self::DeviceTree => "the device tree",
            Self::Module => "a guest module",
            Self::Reserved => "a firmware reservation",
            Self::CrashRegion => "the crash region",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exclusion {
    pub range: PhysRange,
    pub kind: ExclusionKind,
}

/// A `crashkernel=` request as parsed from the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrashRequest {
    pub size: u64,
    pub base: Option<u64>,
}

/// Why a crash request was refused; boot continues without a crash region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPlacementError {
    ZeroSize,
    LargerThanRam {
        size: u64,
        ram: u64,
    },
    BaseUnaligned {
        base: u64,
    },
    OutsideRam {
        range: PhysRange,
    },
    Overlaps {
        range: PhysRange,
        with: Exclusion,
    },
    NoRoom {
        size: u64,
    },
    Overflow {
        base: u64,
        size: u64,
    },
    /// More exclusions than can be considered: refused rather than placed over one.
    TooManyExclusions {
        count: usize,
        limit: usize,
    },
}

impl fmt::Display for CrashPlacementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroSize => write!(f, "crashkernel: size 0"),
            Self::LargerThanRam { size, ram } => {
                write!(
                    f,
                    "crashkernel: size {size:#x} is larger than RAM ({ram:#x})"
                )
            }
            Self::BaseUnaligned { base } => {
                write!(f, "crashkernel: base {base:#x} is not 2 MiB aligned")
            }
            Self::OutsideRam { range } => write!(
                f,
                "crashkernel: [{:#x}, {:#x}) is not inside one RAM bank",
                range.base,
                range.end()
            ),
            Self::Overlaps { range, with } => write!(
                f,
                "crashkernel: [{:#x}, {:#x}) overlaps {} at [{:#x}, {:#x})",
                range.base,
                range.end(),
                with.kind,
                with.range.base,
                with.range.end()
            ),
            Self::NoRoom { size } => {
                write!(
                    f,
                    "crashkernel: no free 2 MiB-aligned range of {size:#x} bytes"
                )
            }
            Self::Overflow { base, size } => {
                write!(f, "crashkernel: base {base:#x} + size {size:#x} overflows")
            }
            Self::TooManyExclusions { count, limit } => write!(
                f,
                "crashkernel: {count} excluded ranges, more than the {limit} that can be considered"
            ),
        }
    }
}

const fn align_up(value: u64, align: u64) -> Option<u64> {
    match value.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

const fn align_down(value: u64, align: u64) -> u64 {
    value & !(align - 1)
}

/// The crash region for `request`, or why there is none. The size is rounded up to
/// whole pages (the region is mapped at 4K). With a base, that exact place must be free;
/// without, the highest free 2 MiB-aligned place below 4 GiB, else the highest above.
///
/// # Errors
/// Every refusal names the reason; see [`CrashPlacementError`].
pub fn place_crash_region(
    request: CrashRequest,
    ram: &[PhysRange],
    exclusions: &[Exclusion],
) -> Result<PhysRange, CrashPlacementError> {
    if request.size == 0 {
        return Err(CrashPlacementError::ZeroSize);
    }
    // free_ranges considers at most MAX_EXCLUSIONS: the region must not land on the rest.
    if exclusions.len() > MAX_EXCLUSIONS {
        return Err(CrashPlacementError::TooManyExclusions {
            count: exclusions.len(),
            limit: MAX_EXCLUSIONS,
        });
    }
    let ram_total: u64 = ram.iter().map(|bank| bank.size).sum();
    if request.size > ram_total {
        return Err(CrashPlacementError::LargerThanRam {
            size: request.size,
            ram: ram_total,
        });
    }
    let size = align_up(request.size, PAGE_SIZE).ok_or(CrashPlacementError::Overflow {
        base: request.base.unwrap_or(0),
        size: request.size,
    })?;
    if let Some(base) = request.base {
        if base % CRASH_ALIGN != 0 {
            return Err(CrashPlacementError::BaseUnaligned { base });
        }
        let range =
            PhysRange::new(base, size).ok_or(CrashPlacementError::Overflow { base, size })?;
        if !ram.iter().any(|bank| bank.contains_range(&range)) {
            return Err(CrashPlacementError::OutsideRam { range });
        }
        if let Some(with) = exclusions.iter().find(|e| e.range.overlaps(&range)) {
            return Err(CrashPlacementError::Overlaps { range, with: *with });
        }
        return Ok(range);
    }
    let free = free_ranges(ram, exclusions);
    highest_fit(&free, size, LOW_MEMORY_LIMIT)
        .or_else(|| highest_fit(&free, size, u64::MAX))
        .ok_or(CrashPlacementError::NoRoom { size })
}

/// The highest 2 MiB-aligned `size` bytes inside one free range, ending at or below `limit`.
fn highest_fit(free: &[PhysRange], size: u64, limit: u64) -> Option<PhysRange> {
    free.iter()
        .rev()
        .filter_map(|range| {
            let top = range.end().min(limit);
            let base = align_down(top.checked_sub(size)?, CRASH_ALIGN);
            (base >= range.base).then_some(PhysRange { base, size })
        })
        .next()
}

/// RAM minus the exclusions, shrunk inward to whole pages, sorted by base. Ranges beyond
/// [`MAX_FREE_RANGES`] are dropped: fine for choosing where something goes, never for
/// what a guest is given (see [`plan_layout`], which refuses instead).
/// More than [`MAX_EXCLUSIONS`] exclusions cannot be considered: then nothing is free.
pub fn free_ranges(
    ram: &[PhysRange],
    exclusions: &[Exclusion],
) -> ArrayVec<PhysRange, MAX_FREE_RANGES> {
    collect_free_ranges(ram, exclusions).0
}

/// [`free_ranges`], and whether they are all there (`false`: cut short at
/// [`MAX_FREE_RANGES`]).
fn collect_free_ranges(
    ram: &[PhysRange],
    exclusions: &[Exclusion],
) -> (ArrayVec<PhysRange, MAX_FREE_RANGES>, bool) {
    if exclusions.len() > MAX_EXCLUSIONS {
        return (ArrayVec::new(), true);
    }
    let mut sorted: ArrayVec<PhysRange, MAX_EXCLUSIONS> =
        exclusions.iter().map(|e| e.range).collect();
    sorted.sort_unstable_by_key(|r| r.base);
    let mut free = ArrayVec::new();
    let mut complete = true;
    let mut banks: ArrayVec<PhysRange, MAX_FREE_RANGES> =
        ram.iter().copied().take(MAX_FREE_RANGES).collect();
    complete &= banks.len() == ram.len();
    banks.sort_unstable_by_key(|r| r.base);
    for bank in &banks {
        let mut cursor = bank.base;
        for excluded in sorted.iter().filter(|e| e.overlaps(bank)) {
            complete &= push_page_aligned(&mut free, cursor, excluded.base.min(bank.end()));
            cursor = cursor.max(excluded.end());
        }
        complete &= push_page_aligned(&mut free, cursor, bank.end());
    }
    (free, complete)
}

/// Adds `[start, end)` shrunk to whole pages; `false` if it did not fit.
fn push_page_aligned(
    free: &mut ArrayVec<PhysRange, MAX_FREE_RANGES>,
    start: u64,
    end: u64,
) -> bool {
    let Some(start) = align_up(start, PAGE_SIZE) else {
        return true;
    };
    let end = align_down(end, PAGE_SIZE);
    end <= start
        || free
            .try_push(PhysRange {
                base: start,
                size: end - start,
            })
            .is_ok()
}

/// What the pool must be able to give, besides the tables a guest's stage 2 can need.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolNeeds {
    /// The EL2 map holds RAM with 4K pages (`mapping=pages`, the benchmarks' baseline)
    /// rather than blocks.
    pub el2_in_pages: bool,
    /// The EL2 selftests run: their heap and EL2-map tests take more heap.
    pub selftests: bool,
}

const TABLE_BYTES: u64 = 4096;
/// The heap's share of the pool, grown in 2 MiB blocks: the boot-time heap check (3 MiB,
/// a 4 MiB buddy block, freed and reused), the guest's DTB while it is built and its
/// `Vm` (well under 1 MiB for QEMU's board), and slack.
pub const HEAP_BYTES: u64 = 6 << 20;
/// What the EL2 selftests add to the heap (a 6 MiB buffer, an 8 MiB buddy block; a
/// 2 MiB growth in 4K pages; the split tests' pages).
pub const SELFTEST_HEAP_BYTES: u64 = 12 << 20;
/// Tables of the EL2 map with blocks beyond the per-range ones: the roots, the image's
/// W^X and stack-guard pages, the devices, the heap window's and the crash map's tables,
/// and the selftests' splits.
const EL2_BLOCK_MAP_TABLES: u64 = 48;

/// Bytes of tables mapping `bytes` of address space with 4K pages, made of `ranges`
/// separate pieces, at most: per piece, one table at each level for every span it
/// touches (level 3: 2 MiB, level 2: 1 GiB, level 1: 512 GiB, level 0: 256 TiB, each
/// piece touching one more than it fills), plus up to 16 concatenated stage-2 roots.
pub fn tables_for_4k_mapping(bytes: u64, ranges: u64) -> u64 {
    const SPANS: [u64; 4] = [2 << 20, 1 << 30, 512 << 30, 256 << 40];
    const ROOTS: u64 = 16;
    let tables: u64 = SPANS
        .iter()
        .map(|&span| bytes.div_ceil(span) + ranges)
        .sum();
    (tables + ROOTS) * TABLE_BYTES
}

/// The hypervisor's own pool (page tables and heap), in whole 2 MiB blocks: sized from
/// what can be asked of it rather than a share of RAM. Its largest part is the worst case
/// of one guest's stage 2, all of RAM mapped with 4K pages (every MEM_PROTECT split as
/// far as it goes), about RAM/512, so a guest's stage 2 can never find the pool empty;
/// then the EL2 map (a few tables with blocks, RAM/512 again with `mapping=pages`), the
/// heap, and `ranges` (RAM banks and excluded ranges) for the pieces' edges. A 2 GiB
/// machine's pool is 12 MiB.
pub fn pool_size(ram_bytes: u64, ranges: u64, needs: PoolNeeds) -> u64 {
    let shares = PoolShares::new(ram_bytes, ranges, needs);
    (shares.stage2 + shares.el2 + shares.heap).next_multiple_of(CRASH_ALIGN)
}

/// What [`pool_size`] sets aside for each user, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolShares {
    /// One guest's stage 2 at its worst: all of RAM at 4K.
    pub stage2: u64,
    /// The EL2 map (and the crash map, the heap window's tables, the selftests' splits).
    pub el2: u64,
    pub heap: u64,
}

impl PoolShares {
    pub fn new(ram_bytes: u64, ranges: u64, needs: PoolNeeds) -> Self {
        let el2 = if needs.el2_in_pages {
            tables_for_4k_mapping(ram_bytes, ranges)
        } else {
            (EL2_BLOCK_MAP_TABLES + 4 * ranges + ram_bytes.div_ceil(512 << 30)) * TABLE_BYTES
        };
        Self {
            stage2: tables_for_4k_mapping(ram_bytes, ranges),
            el2,
            heap: HEAP_BYTES
                + if needs.selftests {
                    SELFTEST_HEAP_BYTES
                } else {
                    0
                },
        }
    }
}

/// Who gets which RAM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The hypervisor's pool, 2 MiB aligned.
    pub pool: PhysRange,
    /// The crash region, if one was asked for and could be placed.
    pub crash: Option<PhysRange>,
    /// Why a requested crash region was refused.
    pub crash_error: Option<CrashPlacementError>,
    /// Guest RAM (identity mapped): RAM minus the image, the DTB, the pool and the crash
    /// region. Modules and firmware reservations stay inside: the guest boots from the
    /// modules and its device tree carries the reservations.
    pub guest_ram: ArrayVec<PhysRange, MAX_GUEST_RAM_RANGES>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// No free 2 MiB-aligned range of the pool's size.
    NoRoomForPool { size: u64 },
    /// More exclusions than the layout can hold beside the pool and the crash region.
    TooManyExclusions { count: usize, limit: usize },
    /// The guest's RAM would be more disjoint ranges than every path that handles guest
    /// RAM can hold ([`MAX_GUEST_RAM_RANGES`]): refused rather than half given.
    TooManyGuestRamRanges { limit: usize },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRoomForPool { size } => {
                write!(
                    f,
                    "no free 2 MiB-aligned range of {size:#x} bytes for the hypervisor's memory pool"
                )
            }
            Self::TooManyExclusions { count, limit } => write!(
                f,
                "{count} excluded ranges, more than the {limit} the memory layout can consider"
            ),
            Self::TooManyGuestRamRanges { limit } => write!(
                f,
                "the guest's RAM would be more than {limit} disjoint ranges (too many memory banks or reservations)"
            ),
        }
    }
}

/// Decides the layout. `exclusions` are the image, the DTB, the modules and the firmware
/// reservations; the crash region is placed first (as Linux reserves it early), then the
/// pool at the highest free place.
///
/// # Errors
/// [`LayoutError::NoRoomForPool`] when the pool does not fit;
/// [`LayoutError::TooManyExclusions`] for more than `MAX_EXCLUSIONS - 2` exclusions
/// (ignoring some could put the pool or the crash region over them, or leave them in
/// guest RAM). A crash request that does not fit is not an error (see
/// [`Layout::crash_error`]).
pub fn plan_layout(
    ram: &[PhysRange],
    exclusions: &[Exclusion],
    crash_request: Option<CrashRequest>,
    needs: PoolNeeds,
) -> Result<Layout, LayoutError> {
    // Room for the pool and the crash region in every list below.
    let limit = MAX_EXCLUSIONS - 2;
    if exclusions.len() > limit {
        return Err(LayoutError::TooManyExclusions {
            count: exclusions.len(),
            limit,
        });
    }
    let mut taken: ArrayVec<Exclusion, MAX_EXCLUSIONS> = exclusions.iter().copied().collect();
    let (crash, crash_error) =
        match crash_request.map(|request| place_crash_region(request, ram, &taken)) {
            None => (None, None),
            Some(Ok(region)) => (Some(region), None),
            Some(Err(error)) => (None, Some(error)),
        };
    if let Some(region) = crash {
        let _ = taken.try_push(Exclusion {
            range: region,
            kind: ExclusionKind::CrashRegion,
        });
    }
    // Every bank and every excluded range (the crash region and the pool among them)
    // can cut guest RAM into one more piece.
    let ranges = (ram.len() + taken.len() + 1) as u64;
    let size = pool_size(ram.iter().map(|bank| bank.size).sum(), ranges, needs);
    let free = free_ranges(ram, &taken);
    let pool = highest_fit(&free, size, u64::MAX).ok_or(LayoutError::NoRoomForPool { size })?;

    let mut hypervisor_owned: ArrayVec<Exclusion, MAX_EXCLUSIONS> = exclusions
        .iter()
        .filter(|e| matches!(e.kind, ExclusionKind::Image | ExclusionKind::DeviceTree))
        .copied()
        .collect();
    let _ = hypervisor_owned.try_push(Exclusion {
        range: pool,
        kind: ExclusionKind::Image,
    });
    if let Some(region) = crash {
        let _ = hypervisor_owned.try_push(Exclusion {
            range: region,
            kind: ExclusionKind::CrashRegion,
        });
    }
    let (guest_ram, complete) = collect_free_ranges(ram, &hypervisor_owned);
    if !complete {
        return Err(LayoutError::TooManyGuestRamRanges {
            limit: MAX_GUEST_RAM_RANGES,
        });
    }
    Ok(Layout {
        pool,
        crash,
        crash_error,
        guest_ram,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn range(base: u64, size: u64) -> PhysRange {
        PhysRange::new(base, size).expect("test range")
    }

    fn qemu_exclusions() -> [Exclusion; 3] {
        [
            Exclusion {
                range: range(0x4020_0000, 2 * MIB),
                kind: ExclusionKind::Image,
            },
            Exclusion {
                range: range(0x4800_0000, MIB),
                kind: ExclusionKind::DeviceTree,
            },
            Exclusion {
                range: range(0x5000_0000, 34 * MIB),
                kind: ExclusionKind::Module,
            },
        ]
    }

    #[test]
    fn free_ranges_cut_every_exclusion_out() {
        let ram = [range(0x4000_0000, 2 * GIB)];
        let free = free_ranges(&ram, &qemu_exclusions());
        assert_eq!(
            free.as_slice(),
            &[
                range(0x4000_0000, 2 * MIB),
                range(0x4040_0000, 0x4800_0000 - 0x4040_0000),
                range(0x4810_0000, 0x5000_0000 - 0x4810_0000),
                range(0x5220_0000, 0xc000_0000 - 0x5220_0000),
            ]
        );
    }

    #[test]
    fn crash_region_without_base_goes_high_below_4g() {
        let ram = [range(0x4000_0000, 8 * GIB)];
        let placed = place_crash_region(
            CrashRequest {
                size: 64 * MIB,
                base: None,
            },
            &ram,
            &qemu_exclusions(),
        );
        assert_eq!(placed, Ok(range(LOW_MEMORY_LIMIT - 64 * MIB, 64 * MIB)));
    }

    #[test]
    fn crash_region_goes_above_4g_when_low_memory_is_full() {
        let ram = [range(0x4000_0000, 8 * GIB)];
        let low_full = [Exclusion {
            range: range(0x4000_0000, 3 * GIB),
            kind: ExclusionKind::Reserved,
        }];
        let placed = place_crash_region(
            CrashRequest {
                size: 64 * MIB,
                base: None,
            },
            &ram,
            &low_full,
        );
        assert_eq!(
            placed,
            Ok(range(0x4000_0000 + 8 * GIB - 64 * MIB, 64 * MIB))
        );
    }

    #[test]
    fn crash_region_honours_a_valid_base_and_rounds_size_to_pages() {
        let ram = [range(0x4000_0000, 2 * GIB)];
        let placed = place_crash_region(
            CrashRequest {
                size: 10 * MIB + 1,
                base: Some(0x6000_0000),
            },
            &ram,
            &qemu_exclusions(),
        );
        assert_eq!(placed, Ok(range(0x6000_0000, 10 * MIB + PAGE_SIZE)));
    }

    #[test]
    fn bad_crash_requests_are_named() {
        let ram = [range(0x4000_0000, 2 * GIB)];
        let ex = qemu_exclusions();
        let place = |size, base| place_crash_region(CrashRequest { size, base }, &ram, &ex);
        assert_eq!(place(0, None), Err(CrashPlacementError::ZeroSize));
        assert!(matches!(
            place(3 * GIB, None),
            Err(CrashPlacementError::LargerThanRam { .. })
        ));
        assert_eq!(
            place(MIB, Some(0x6000_1000)),
            Err(CrashPlacementError::BaseUnaligned { base: 0x6000_1000 })
        );
        assert!(matches!(
            place(MIB, Some(0x2000_0000)),
            Err(CrashPlacementError::OutsideRam { .. })
        ));
        assert!(matches!(
            place(64 * MIB, Some(0xbe00_0000)),
            Err(CrashPlacementError::OutsideRam { .. })
        ));
        assert!(matches!(
            place(64 * MIB, Some(0x4e00_0000)),
            Err(CrashPlacementError::Overlaps {
                with: Exclusion {
                    kind: ExclusionKind::Module,
                    ..
                },
                ..
            })
        ));
        assert!(matches!(
            place(4 * MIB, Some(!(CRASH_ALIGN - 1))),
            Err(CrashPlacementError::Overflow { .. })
        ));
        let message = place(64 * MIB, Some(0x4800_0000))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(message.contains("overlaps the device tree"), "{message}");
    }

    #[test]
    fn layout_gives_the_guest_everything_but_the_hypervisor_pool_dtb_and_crash_region() {
        let ram = [range(0x4000_0000, 2 * GIB)];
        let layout = plan_layout(
            &ram,
            &qemu_exclusions(),
            Some(CrashRequest {
                size: 64 * MIB,
                base: None,
            }),
            PoolNeeds::default(),
        )
        .expect("layout");
        assert_eq!(
            layout.pool,
            range(0xc000_0000 - 64 * MIB - 12 * MIB, 12 * MIB)
        );
        assert_eq!(layout.crash, Some(range(0xc000_0000 - 64 * MIB, 64 * MIB)));
        assert_eq!(layout.crash_error, None);
        // The module stays inside guest RAM; image, DTB, crash region and pool do not.
        assert_eq!(
            layout.guest_ram.as_slice(),
            &[
                range(0x4000_0000, 2 * MIB),
                range(0x4040_0000, 0x4800_0000 - 0x4040_0000),
                range(0x4810_0000, 0xc000_0000 - 76 * MIB - 0x4810_0000),
            ]
        );
    }

    #[test]
    fn a_refused_crash_request_leaves_the_layout_without_one() {
        let ram = [range(0x4000_0000, GIB)];
        let layout = plan_layout(
            &ram,
            &qemu_exclusions(),
            Some(CrashRequest {
                size: 0,
                base: None,
            }),
            PoolNeeds::default(),
        )
        .expect("layout");
        assert_eq!(layout.crash, None);
        assert_eq!(layout.crash_error, Some(CrashPlacementError::ZeroSize));
    }

    #[test]
    fn pool_size_scales_with_ram_within_bounds() {
        let normal = PoolNeeds::default();
        // A 2 GiB machine (one bank, image, DTB, pool): its guest gets all but 16 MiB.
        assert_eq!(pool_size(2 * GIB, 4, normal), 12 * MIB);
        assert_eq!(pool_size(GIB, 4, normal), 10 * MIB);
        // RAM/512 of stage-2 tables dominate on large machines: 2 GiB for 1 TiB.
        let tib = pool_size(1 << 40, 4, normal);
        assert!((2048 * MIB..2070 * MIB).contains(&tib), "{tib:#x}");
        // The benchmarks' mapping=pages needs the EL2 map at 4K too.
        let pages = PoolNeeds {
            el2_in_pages: true,
            ..normal
        };
        assert_eq!(pool_size(2 * GIB, 4, pages), 16 * MIB);
    }

    /// The tables mapping `pieces` with 4K pages, counted exactly: one per distinct
    /// 2 MiB, 1 GiB and 512 GiB region any piece touches, plus 16 roots.
    fn exact_4k_tables(pieces: &[PhysRange]) -> u64 {
        let mut tables = 16;
        for span in [2u64 << 20, 1 << 30, 512 << 30] {
            let mut regions: Vec<u64> = pieces
                .iter()
                .flat_map(|r| (r.base / span)..=((r.end() - 1) / span))
                .collect();
            regions.sort_unstable();
            regions.dedup();
            tables += regions.len() as u64;
        }
        tables * TABLE_BYTES
    }

    proptest! {
        /// The pool's stage-2 share covers the guest's whole RAM at 4K, counted exactly,
        /// for any bank layout, exclusions and crash region: a guest's MEM_PROTECTs can
        /// never find the pool empty, whatever the machine's size.
        #[test]
        fn the_pool_holds_the_guests_worst_case_stage2(
            banks in proptest::collection::vec((0u64..64, 1u64..4096), 1..6),
            holes in proptest::collection::vec((0u64..4096, 1u64..64), 0..8),
            crash in proptest::option::of(1u64..512),
        ) {
            // Banks of whole MiB, 1 GiB apart at least, starting at 1 GiB.
            let ram: Vec<PhysRange> = banks
                .iter()
                .enumerate()
                .map(|(i, &(gap, mib))| {
                    range((1 + i as u64 * 5 + gap % 4) * GIB, mib * MIB)
                })
                .collect();
            let exclusions: Vec<Exclusion> = holes
                .iter()
                .map(|&(at, mib)| Exclusion {
                    range: range(GIB + at * MIB, mib * MIB),
                    kind: ExclusionKind::Module,
                })
                .collect();
            let request = crash.map(|mib| CrashRequest { size: mib * MIB, base: None });
            let needs = PoolNeeds::default();
            let Ok(layout) = plan_layout(&ram, &exclusions, request, needs) else {
                return Ok(());
            };
            let ranges = (ram.len() + exclusions.len() + usize::from(layout.crash.is_some()) + 1) as u64;
            let shares = PoolShares::new(ram.iter().map(|r| r.size).sum(), ranges, needs);
            prop_assert!(layout.pool.size >= shares.stage2 + shares.el2 + shares.heap);
            let stage2_share = shares.stage2;
            prop_assert!(
                exact_4k_tables(&layout.guest_ram) <= stage2_share,
                "guest RAM at 4K needs {:#x}, the pool's share is {:#x}",
                exact_4k_tables(&layout.guest_ram),
                stage2_share
            );
        }
    }

    /// The goal: a 2 GiB machine laid out as QEMU's (image, DTB) gives its guest all but
    /// at most 16 MiB (with RAM/32 it was 66 MiB).
    #[test]
    fn a_2g_guest_gets_all_but_16m() {
        let ram = [range(0x4000_0000, 2 * GIB)];
        let layout =
            plan_layout(&ram, &qemu_exclusions()[..2], None, PoolNeeds::default()).unwrap();
        let guest: u64 = layout.guest_ram.iter().map(|r| r.size).sum();
        assert!(
            guest >= 2 * GIB - 16 * MIB,
            "guest gets {} MiB",
            guest >> 20
        );
    }

    #[test]
    fn a_machine_too_small_for_the_pool_is_an_error() {
        let ram = [range(0x4000_0000, 6 * MIB)];
        assert_eq!(
            plan_layout(&ram, &[], None, PoolNeeds::default()),
            Err(LayoutError::NoRoomForPool { size: 8 * MIB })
        );
    }

    /// Guest RAM cut into more pieces than the guest's paths can hold is refused: it used
    /// to come back with the pieces beyond the limit silently dropped (and the hypervisor
    /// kept only the first 16 of those for the guest's hypercalls and faults).
    #[test]
    fn guest_ram_in_too_many_pieces_is_refused_not_half_given() {
        // Four 512 MiB banks, exclusions inside them (never at a bank's start): each bank
        // gives one piece more than it holds exclusions.
        let ram: Vec<PhysRange> = (0..4).map(|i| range((2 + i) * GIB, GIB / 2)).collect();
        let excluded_in_banks = |count: usize| -> Vec<Exclusion> {
            (0..count as u64)
                .map(|i| Exclusion {
                    range: range((2 + i % 4) * GIB + (1 + i / 4) * 8 * MIB, MIB),
                    kind: ExclusionKind::DeviceTree,
                })
                .collect()
        };
        let fits = excluded_in_banks(MAX_GUEST_RAM_RANGES - 8);
        let layout = plan_layout(&ram, &fits, None, PoolNeeds::default()).expect("below the limit");
        assert!(layout.guest_ram.len() >= MAX_GUEST_RAM_RANGES - 4);
        let too_many = excluded_in_banks(MAX_EXCLUSIONS - 2);
        assert_eq!(
            plan_layout(&ram, &too_many, None, PoolNeeds::default()),
            Err(LayoutError::TooManyGuestRamRanges {
                limit: MAX_GUEST_RAM_RANGES
            })
        );
    }

    /// Found by tests/fuzz (bootargs_crashkernel): with MAX_EXCLUSIONS image/DTB
    /// exclusions the pool no longer fit the list of hypervisor-owned ranges and was
    /// silently left in guest RAM; beyond MAX_EXCLUSIONS - 2 the last exclusions were
    /// ignored when placing the pool and the crash region.
    #[test]
    fn too_many_exclusions_are_refused_not_ignored() {
        let ram = [range(0x4000_0000, 2 * GIB)];
        let image = Exclusion {
            range: range(0x4020_0000, 2 * MIB),
            kind: ExclusionKind::Image,
        };
        let full = [image; MAX_EXCLUSIONS];
        assert_eq!(
            plan_layout(&ram, &full, None, PoolNeeds::default()),
            Err(LayoutError::TooManyExclusions {
                count: MAX_EXCLUSIONS,
                limit: MAX_EXCLUSIONS - 2
            })
        );
        let most = [image; MAX_EXCLUSIONS - 2];
        let layout = plan_layout(
            &ram,
            &most,
            Some(CrashRequest {
                size: 64 * MIB,
                base: None,
            }),
            PoolNeeds::default(),
        )
        .expect("layout");
        let crash = layout.crash.expect("crash region");
        for guest in &layout.guest_ram {
            assert!(!guest.overlaps(&layout.pool) && !guest.overlaps(&crash));
            assert!(!guest.overlaps(&image.range));
        }

        let request = CrashRequest {
            size: 64 * MIB,
            base: None,
        };
        let error = place_crash_region(request, &ram, &[image; MAX_EXCLUSIONS + 1]).unwrap_err();
        assert_eq!(
            error,
            CrashPlacementError::TooManyExclusions {
                count: MAX_EXCLUSIONS + 1,
                limit: MAX_EXCLUSIONS
            }
        );
        assert!(
            error
                .to_string()
                .starts_with("crashkernel: 65 excluded ranges")
        );
        assert!(free_ranges(&ram, &[image; MAX_EXCLUSIONS + 1]).is_empty());
    }

    proptest! {
        #[test]
        fn free_ranges_are_inside_ram_outside_exclusions_sorted_and_page_aligned(
            banks in proptest::collection::vec((0u64..64, 1u64..64), 1..4),
            holes in proptest::collection::vec((0u64..(1 << 24), 1u64..(1 << 24)), 0..8),
        ) {
            let ram: Vec<PhysRange> = banks.iter().enumerate()
                .map(|(i, (off, len))| range((i as u64) * (1 << 32) + off * MIB, len * MIB)).collect();
            let exclusions: Vec<Exclusion> = holes.iter()
                .map(|(off, len)| Exclusion { range: range(0x1000 * off, *len), kind: ExclusionKind::Reserved }).collect();
            let free = free_ranges(&ram, &exclusions);
            for window in free.windows(2) {
                prop_assert!(window[0].end() <= window[1].base);
            }
            for r in &free {
                prop_assert_eq!(r.base % PAGE_SIZE, 0);
                prop_assert_eq!(r.size % PAGE_SIZE, 0);
                prop_assert!(ram.iter().any(|bank| bank.contains_range(r)));
                prop_assert!(exclusions.iter().all(|e| !e.range.overlaps(r)));
            }
        }

        #[test]
        fn a_placed_crash_region_is_free_aligned_and_in_ram(
            size_mib in 1u64..512,
            holes in proptest::collection::vec((0u64..2048, 1u64..256), 0..6),
        ) {
            let ram = [range(0x4000_0000, 2 * GIB)];
            let exclusions: Vec<Exclusion> = holes.iter()
                .map(|(off, len)| Exclusion { range: range(0x4000_0000 + off * MIB, len * MIB), kind: ExclusionKind::Module }).collect();
            if let Ok(region) = place_crash_region(CrashRequest { size: size_mib * MIB, base: None }, &ram, &exclusions) {
                prop_assert_eq!(region.base % CRASH_ALIGN, 0);
                prop_assert!(ram[0].contains_range(&region));
                prop_assert!(exclusions.iter().all(|e| !e.range.overlaps(&region)));
            }
        }
    }
}
