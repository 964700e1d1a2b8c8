//! Where the kernel, the initrd and the DTB go in guest RAM (booting.rst rules).
//!
//! Guest RAM is identity mapped (IPA = PA). The modules are already somewhere in memory
//! (QEMU's guest-loader put them there, possibly inside guest RAM). We keep each piece
//! where it is when that is legal and move it otherwise:
//!
//! - **kernel**: runs at a 2 MiB-aligned base + `text_offset`, with `image_size` bytes
//!   free from there. It boots in place when its module already sits at such an address
//!   inside guest RAM and its footprint collides with nothing; otherwise it is copied to
//!   the lowest address that fits. A kernel whose header asks to be near the base of DRAM
//!   (placement flag 0, kernels before 4.6) always goes to the lowest fitting address.
//! - **initrd**: stays in place when it lies inside guest RAM; otherwise it is copied to
//!   the lowest page that fits. Either way it must share a 1 GiB-aligned window of at most
//!   32 GiB with the kernel image.
//! - **DTB**: gets a whole 2 MiB-aligned, 2 MiB slot (like QEMU, and the most booting.rst
//!   allows), so its exact size need not be known yet: the guest DTB is built after
//!   placement because it names the initrd's final address.
//!
//! No destination overlaps another piece's source or final place, so the copies are
//! independent: they only need memmove semantics for a piece that moves onto part of
//! its own old bytes. [`Placement::copies`] is still listed in an order checked to be
//! safe (no copy writes over the source of a later one).
//!
//! How the hypervisor uses it: perform `copies` in order (memmove), write the guest DTB
//! at `dtb.base`, clean the written ranges to PoC, then enter at `entry` with
//! x0 = `dtb.base` and x1 = x2 = x3 = 0.

use alloc::vec::Vec;
use core::fmt;

use platform::info::PhysRange;

use crate::image::{ImageHeader, KERNEL_BASE_ALIGN, PhysicalPlacement};
use crate::modules::{GuestModuleRole, RangeDisplay};

/// The DTB slot: booting.rst caps the DTB at 2 MiB, and a 2 MiB-aligned slot keeps it out
/// of any 2 MiB block the kernel might map with other attributes.
pub const DTB_SLOT_SIZE: u64 = 2 << 20;
/// Alignment of a copied initrd (a page; booting.rst asks for none).
pub const INITRD_ALIGN: u64 = 4 << 10;
/// The initrd and the kernel must share one window of this size...
pub const INITRD_WINDOW_SIZE: u64 = 32 << 30;
/// ...aligned to this.
pub const INITRD_WINDOW_ALIGN: u64 = 1 << 30;

/// What to place.
#[derive(Clone, Copy, Debug)]
pub struct PlacementRequest<'r> {
    /// Guest RAM, in any order; ranges must not overlap (adjacent ones are merged).
    pub guest_ram: &'r [PhysRange],
    /// Ranges inside guest RAM that no placed piece may use: the reserved memory the
    /// guest's DT keeps (/memreserve/, /reserved-memory). An initrd that already lies
    /// there may stay.
    pub reserved: &'r [PhysRange],
    /// Where the kernel module is now; its size is the number of bytes to copy.
    pub kernel: PhysRange,
    /// The kernel's checked header.
    pub image: ImageHeader,
    /// Where the initrd module is now, if there is one.
    pub initrd: Option<PhysRange>,
    /// Whether `kernel` and `initrd` are addresses in the guest's RAM space (a single
    /// guest with IPA = PA, whose modules may already sit where they can boot), or
    /// elsewhere (a dom0less guest's RAM is IPA-addressed and backed by memory the
    /// modules are not in): then every piece is copied and the sources are nothing to
    /// avoid in guest RAM.
    pub sources: ModuleSources,
}

/// Where the modules' current addresses live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleSources {
    /// In the guest's RAM space: a module may boot where it is.
    InGuestSpace,
    /// Outside it: every module is copied.
    Elsewhere,
}

impl PlacementRequest<'_> {
    /// The module ranges no destination may overlap (the sources, when they lie in the
    /// guest's space).
    fn sources_in_guest_space(&self) -> impl Iterator<Item = PhysRange> + '_ {
        let in_space = self.sources == ModuleSources::InGuestSpace;
        core::iter::once(self.kernel)
            .chain(self.initrd)
            .filter(move |_| in_space)
    }
}

/// One copy the hypervisor performs before entering the guest, with memmove semantics
/// (`src` and `dst` of the same copy may overlap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleCopy {
    pub module: GuestModuleRole,
    pub src: u64,
    pub dst: u64,
    pub len: u64,
}

/// Where everything goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The kernel's 2 MiB-aligned base (`entry - text_offset`).
    pub kernel_base: u64,
    /// The start of the kernel image, where the guest's first instruction is.
    pub entry: u64,
    /// `[entry, entry + image_size)`: the memory the kernel claims (image plus BSS).
    pub kernel_footprint: PhysRange,
    /// The initrd's final place, for `linux,initrd-start`/`-end`.
    pub initrd: Option<PhysRange>,
    /// The DTB's slot: write the DTB at `dtb.base` (the guest's x0); it may use up to
    /// `dtb.size` bytes.
    pub dtb: PhysRange,
    /// Copies to perform, in this order, before writing the DTB.
    pub copies: Vec<ModuleCopy>,
}

/// Why the guest does not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlacementError {
    /// The request lists no guest RAM.
    NoGuestRam,
    /// Two guest RAM ranges overlap.
    GuestRamOverlap { first: PhysRange, second: PhysRange },
    /// The kernel module has more bytes than the header's `image_size` claims.
    KernelLargerThanImageSize { module_size: u64, image_size: u64 },
    /// No 2 MiB-aligned base in guest RAM leaves `image_size` bytes free at
    /// `text_offset` (clear of the initrd, its source and reserved memory).
    KernelDoesNotFit { image_size: u64, text_offset: u64 },
    /// The initrd must move (outside guest RAM, or too far from the kernel) and no free
    /// place within a 1 GiB-aligned 32 GiB window covering the kernel fits it.
    InitrdDoesNotFit {
        initrd_size: u64,
        kernel_footprint: PhysRange,
    },
    /// No free 2 MiB-aligned 2 MiB slot is left for the DTB.
    DtbDoesNotFit,
    /// The copies cannot be ordered without one overwriting another's source. The
    /// placement rules make this impossible; it is checked anyway.
    CopyOrderCycle,
}

impl fmt::Display for PlacementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoGuestRam => f.write_str("no guest RAM to place the guest in"),
            Self::GuestRamOverlap { first, second } => write!(
                f,
                "guest RAM ranges {} and {} overlap",
                RangeDisplay(*first),
                RangeDisplay(*second)
            ),
            Self::KernelLargerThanImageSize {
                module_size,
                image_size,
            } => write!(
                f,
                "kernel module is {module_size:#x} bytes but its header's image_size is only \
                 {image_size:#x}"
            ),
            Self::KernelDoesNotFit {
                image_size,
                text_offset,
            } => write!(
                f,
                "kernel does not fit: no 2 MiB-aligned base in guest RAM has {image_size:#x} \
                 free bytes at offset {text_offset:#x} clear of the initrd and reserved memory"
            ),
            Self::InitrdDoesNotFit {
                initrd_size,
                kernel_footprint,
            } => write!(
                f,
                "initrd ({initrd_size:#x} bytes) does not fit in free guest RAM within a \
                 1 GiB-aligned 32 GiB window that also covers the kernel at {}",
                RangeDisplay(*kernel_footprint)
            ),
            Self::DtbDoesNotFit => f.write_str(
                "no free 2 MiB-aligned 2 MiB slot in guest RAM is left for the device tree",
            ),
            Self::CopyOrderCycle => f.write_str(
                "internal error: the module copies overwrite each other's sources in any order",
            ),
        }
    }
}

/// Decides where the kernel, initrd and DTB go (see the module docs for the rules).
///
/// # Errors
///
/// [`PlacementError::NoGuestRam`] and [`PlacementError::GuestRamOverlap`] for a bad RAM
/// list, [`PlacementError::KernelLargerThanImageSize`] when the module and header
/// disagree, [`PlacementError::KernelDoesNotFit`], [`PlacementError::InitrdDoesNotFit`]
/// and [`PlacementError::DtbDoesNotFit`] when guest RAM has no room, and
/// [`PlacementError::CopyOrderCycle`] (never expected).
pub fn place_guest(request: &PlacementRequest<'_>) -> Result<Placement, PlacementError> {
    let image = &request.image;
    if request.kernel.size > image.image_size {
        return Err(PlacementError::KernelLargerThanImageSize {
            module_size: request.kernel.size,
            image_size: image.image_size,
        });
    }
    let ram = merged_ram(request.guest_ram)?;
    let space = FreeSpace {
        ram: &ram,
        reserved: request.reserved,
    };
    let initrd_in_place = request
        .initrd
        .filter(|_| request.sources == ModuleSources::InGuestSpace)
        .filter(|initrd| ram.iter().any(|region| region.contains_range(initrd)));
    let kernel_footprint = place_kernel_footprint(request, &space, initrd_in_place)?;
    let kernel_entry = kernel_footprint.base;

    let mut copies = Vec::new();
    if request.sources == ModuleSources::Elsewhere || kernel_entry != request.kernel.base {
        copies.push(ModuleCopy {
            module: GuestModuleRole::Kernel,
            src: request.kernel.base,
            dst: kernel_entry,
            len: request.kernel.size,
        });
    }
    let initrd = match request.initrd {
        None => None,
        Some(current)
            if initrd_in_place == Some(current) && initrd_may_stay(&current, &kernel_footprint) =>
        {
            Some(current)
        }
        Some(current) => {
            let dst = relocated_initrd_base(request, &ram, current.size, &kernel_footprint)?;
            copies.push(ModuleCopy {
                module: GuestModuleRole::Ramdisk,
                src: current.base,
                dst,
                len: current.size,
            });
            PhysRange::new(dst, current.size)
        }
    };

    let dtb = place_dtb(request, &space, &kernel_footprint, initrd)?;
    Ok(Placement {
        kernel_base: kernel_entry - image.text_offset,
        entry: kernel_entry,
        kernel_footprint,
        initrd,
        dtb,
        // Copies from elsewhere never write over one another's sources.
        copies: match request.sources {
            ModuleSources::InGuestSpace => order_copies(copies)?,
            ModuleSources::Elsewhere => copies,
        },
    })
}

/// The kernel's footprint, `[entry, entry + image_size)`. The kernel is first placed
/// keeping the initrd where it is (in guest RAM); if the window rule then leaves the
/// kernel nowhere to go, it is placed as if the initrd were free to move, and
/// [`place_guest`] moves the initrd next to it.
fn place_kernel_footprint(
    request: &PlacementRequest<'_>,
    space: &FreeSpace<'_>,
    initrd_in_place: Option<PhysRange>,
) -> Result<PhysRange, PlacementError> {
    let image = &request.image;
    let does_not_fit = PlacementError::KernelDoesNotFit {
        image_size: image.image_size,
        text_offset: image.text_offset,
    };
    let entry = match place_kernel(request, space, initrd_in_place) {
        Some(entry) => Some(entry),
        None if initrd_in_place.is_some() => place_kernel(request, space, None),
        None => None,
    }
    .ok_or(does_not_fit)?;
    // Cannot fail: place_kernel only returns entries whose footprint end fits in u64.
    PhysRange::new(entry, image.image_size).ok_or(does_not_fit)
}

/// Whether an initrd already inside guest RAM may stay where it is: the kernel's
/// final footprint must not cover it, and both must share a 1 GiB-aligned 32 GiB
/// window (booting.rst).
fn initrd_may_stay(initrd: &PhysRange, kernel_footprint: &PhysRange) -> bool {
    !initrd.overlaps(kernel_footprint) && shares_window(kernel_footprint, initrd)
}

/// Where a moved initrd of `size` bytes goes: the lowest free page in any window it can
/// share with the kernel, clear of reserved memory, the kernel's final footprint and the
/// kernel's source (so that neither copy writes over what the other still reads).
fn relocated_initrd_base(
    request: &PlacementRequest<'_>,
    ram: &[PhysRange],
    size: u64,
    kernel_footprint: &PhysRange,
) -> Result<u64, PlacementError> {
    let mut avoid = Vec::from([*kernel_footprint]);
    avoid.extend(request.sources_in_guest_space());
    avoid.extend_from_slice(request.reserved);
    let space = FreeSpace {
        ram,
        reserved: &avoid,
    };
    windows_covering(kernel_footprint)
        .filter_map(|window| space.lowest_fit(window, size, INITRD_ALIGN, 0, &[]))
        .min()
        .ok_or(PlacementError::InitrdDoesNotFit {
            initrd_size: size,
            kernel_footprint: *kernel_footprint,
        })
}

/// The DTB's 2 MiB slot: the lowest free 2 MiB-aligned one clear of every piece's final
/// place and every source, so the DTB can be written before or after the copies.
fn place_dtb(
    request: &PlacementRequest<'_>,
    space: &FreeSpace<'_>,
    kernel_footprint: &PhysRange,
    initrd: Option<PhysRange>,
) -> Result<PhysRange, PlacementError> {
    let mut taken = Vec::from([*kernel_footprint]);
    taken.extend(request.sources_in_guest_space());
    taken.extend(initrd);
    let dtb_base = space
        .lowest_fit(EVERYTHING, DTB_SLOT_SIZE, DTB_SLOT_SIZE, 0, &taken)
        .ok_or(PlacementError::DtbDoesNotFit)?;
    PhysRange::new(dtb_base, DTB_SLOT_SIZE).ok_or(PlacementError::DtbDoesNotFit)
}

/// The whole physical address space (as `within` for unconstrained searches).
const EVERYTHING: PhysRange = PhysRange {
    base: 0,
    size: u64::MAX,
};

/// Where the kernel image starts, or `None` when it fits nowhere. With `initrd` staying
/// in place, the kernel must also share a window with it.
fn place_kernel(
    request: &PlacementRequest<'_>,
    space: &FreeSpace<'_>,
    initrd_in_place: Option<PhysRange>,
) -> Option<u64> {
    let image = &request.image;
    // The initrd's bytes (source, and final place when it stays) are never a kernel
    // destination.
    let avoid: Vec<PhysRange> = request
        .sources_in_guest_space()
        .filter(|source| Some(*source) == request.initrd)
        .collect();
    let fits_with_initrd =
        |entry: u64| match (initrd_in_place, PhysRange::new(entry, image.image_size)) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(initrd), Some(footprint)) => shares_window(&footprint, &initrd),
        };

    let windows: Vec<PhysRange> = match initrd_in_place {
        Some(initrd) => windows_covering(&initrd).collect(),
        None => Vec::from([EVERYTHING]),
    };
    let lowest = windows
        .iter()
        .filter_map(|window| {
            space.lowest_fit(
                *window,
                image.image_size,
                KERNEL_BASE_ALIGN,
                image.text_offset,
                &avoid,
            )
        })
        .filter(|&entry| fits_with_initrd(entry))
        .min();

    let current = request.kernel.base;
    let in_place_ok = request.sources == ModuleSources::InGuestSpace
        && current
            .checked_sub(image.text_offset)
            .is_some_and(|base| base.is_multiple_of(KERNEL_BASE_ALIGN))
        && space.is_free(current, image.image_size, &avoid)
        && fits_with_initrd(current);
    match image.placement {
        PhysicalPlacement::Anywhere if in_place_ok => Some(current),
        // Lowest possible is what a near-DRAM-base kernel wants (in place only if that
        // is where it already is).
        _ => lowest,
    }
}

/// Guest RAM sorted, checked for overlaps, adjacent ranges merged.
fn merged_ram(ranges: &[PhysRange]) -> Result<Vec<PhysRange>, PlacementError> {
    let mut sorted = ranges.to_vec();
    sorted.sort_unstable();
    let mut merged: Vec<PhysRange> = Vec::with_capacity(sorted.len());
    for range in sorted {
        match merged.last_mut() {
            Some(last) if last.overlaps(&range) => {
                return Err(PlacementError::GuestRamOverlap {
                    first: *last,
                    second: range,
                });
            }
            // Adjacent: extend (`PhysRange` ends never overflow, so neither does this).
            Some(last) if last.end() == range.base => last.size += range.size,
            _ => merged.push(range),
        }
    }
    if merged.is_empty() {
        return Err(PlacementError::NoGuestRam);
    }
    Ok(merged)
}

/// Whether one 1 GiB-aligned window of at most 32 GiB covers both ranges.
fn shares_window(a: &PhysRange, b: &PhysRange) -> bool {
    let low = align_down(a.base.min(b.base), INITRD_WINDOW_ALIGN);
    a.end().max(b.end()) - low <= INITRD_WINDOW_SIZE
}

/// Every 1 GiB-aligned 32 GiB window that covers `range`, lowest first (none when the
/// range is longer than a window).
fn windows_covering(range: &PhysRange) -> impl Iterator<Item = PhysRange> {
    let first = align_up(
        range.end().saturating_sub(INITRD_WINDOW_SIZE),
        INITRD_WINDOW_ALIGN,
    );
    let last = align_down(range.base, INITRD_WINDOW_ALIGN);
    let count = match first {
        Some(first) if first <= last => (last - first) / INITRD_WINDOW_ALIGN + 1,
        _ => 0,
    };
    (0..count).filter_map(move |index| {
        let base = first? + index * INITRD_WINDOW_ALIGN;
        // A window at the top of the address space is cut short rather than wrapped.
        PhysRange::new(base, INITRD_WINDOW_SIZE.min(u64::MAX - base))
    })
}

/// Guest RAM minus ranges nothing may be placed on.
struct FreeSpace<'s> {
    ram: &'s [PhysRange],
    reserved: &'s [PhysRange],
}

impl FreeSpace<'_> {
    fn obstacles<'a>(&'a self, extra: &'a [PhysRange]) -> impl Iterator<Item = &'a PhysRange> {
        self.reserved.iter().chain(extra)
    }

    /// Whether `[start, start + size)` lies in one RAM range and hits no obstacle.
    fn is_free(&self, start: u64, size: u64, extra: &[PhysRange]) -> bool {
        let Some(candidate) = PhysRange::new(start, size) else {
            return false;
        };
        self.ram
            .iter()
            .any(|region| region.contains_range(&candidate))
            && !self.obstacles(extra).any(|ob| ob.overlaps(&candidate))
    }

    /// The lowest `start` with `start % align == offset` such that
    /// `[start, start + size)` lies inside `within` and inside one RAM range, and
    /// overlaps no obstacle. `align` is a power of two and `offset < align`.
    fn lowest_fit(
        &self,
        within: PhysRange,
        size: u64,
        align: u64,
        offset: u64,
        extra: &[PhysRange],
    ) -> Option<u64> {
        self.ram.iter().find_map(|region| {
            let low = region.base.max(within.base);
            let high = region.end().min(within.end());
            let mut start = align_up_with_offset(low, align, offset)?;
            loop {
                let end = start.checked_add(size)?;
                if end > high || size == 0 {
                    return None;
                }
                let candidate = PhysRange { base: start, size };
                // Jump past the furthest-reaching obstacle in the way; each jump passes
                // at least one obstacle, so the loop ends.
                match self
                    .obstacles(extra)
                    .filter(|ob| ob.overlaps(&candidate))
                    .map(PhysRange::end)
                    .max()
                {
                    Some(past) => start = align_up_with_offset(past, align, offset)?,
                    None => return Some(start),
                }
            }
        })
    }
}

fn align_down(value: u64, align: u64) -> u64 {
    value & !(align - 1)
}

fn align_up(value: u64, align: u64) -> Option<u64> {
    Some(value.checked_add(align - 1)? & !(align - 1))
}

/// The smallest `x >= value` with `x % align == offset`.
fn align_up_with_offset(value: u64, align: u64, offset: u64) -> Option<u64> {
    align_up(value.saturating_sub(offset), align)?.checked_add(offset)
}

/// Orders the copies so that none writes over the source of a copy after it.
fn order_copies(mut pending: Vec<ModuleCopy>) -> Result<Vec<ModuleCopy>, PlacementError> {
    let mut ordered = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        // A copy may go next when its destination spares every other pending source.
        let next = pending
            .iter()
            .enumerate()
            .position(|(index, copy)| {
                pending
                    .iter()
                    .enumerate()
                    .all(|(other, later)| other == index || !copy_clobbers(copy, later))
            })
            .ok_or(PlacementError::CopyOrderCycle)?;
        ordered.push(pending.remove(next));
    }
    Ok(ordered)
}

/// Whether performing `first` overwrites bytes `later` still has to read.
fn copy_clobbers(first: &ModuleCopy, later: &ModuleCopy) -> bool {
    match (
        PhysRange::new(first.dst, first.len),
        PhysRange::new(later.src, later.len),
    ) {
        (Some(dst), Some(src)) => dst.overlaps(&src),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::PageSize;
    use alloc::string::ToString;
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn range(base: u64, size: u64) -> PhysRange {
        PhysRange::new(base, size).unwrap()
    }

    /// The Debian 6.12 kernel's header (text_offset 0, image_size 0x2230000, anywhere).
    fn debian_image() -> ImageHeader {
        ImageHeader {
            text_offset: 0,
            image_size: 0x223_0000,
            flags: 0xa,
            page_size: PageSize::Size4K,
            placement: PhysicalPlacement::Anywhere,
            file_size: 34_834_368,
        }
    }

    fn debian_kernel_at(base: u64) -> PhysRange {
        range(base, 34_834_368)
    }

    /// QEMU virt -m 2G with the hypervisor in the first 32 MiB.
    const QEMU_GUEST_RAM: [PhysRange; 1] = [PhysRange {
        base: 0x4200_0000,
        size: 0x7e00_0000,
    }];

    fn request<'r>(
        ram: &'r [PhysRange],
        kernel: PhysRange,
        initrd: Option<PhysRange>,
    ) -> PlacementRequest<'r> {
        PlacementRequest {
            guest_ram: ram,
            reserved: &[],
            kernel,
            image: debian_image(),
            initrd,
            sources: ModuleSources::InGuestSpace,
        }
    }

    /// Checks every placement rule and that the copies are safe in order.
    fn assert_valid(request: &PlacementRequest<'_>, placement: &Placement) {
        let ram = merged_ram(request.guest_ram).unwrap();
        let in_ram = |r: &PhysRange| ram.iter().any(|region| region.contains_range(r));
        let image = &request.image;

        assert!(placement.kernel_base.is_multiple_of(KERNEL_BASE_ALIGN));
        assert_eq!(placement.entry, placement.kernel_base + image.text_offset);
        assert_eq!(
            placement.kernel_footprint,
            range(placement.entry, image.image_size)
        );
        assert!(in_ram(&placement.kernel_footprint));
        assert!(placement.dtb.base.is_multiple_of(DTB_SLOT_SIZE));
        assert_eq!(placement.dtb.size, DTB_SLOT_SIZE);
        assert!(in_ram(&placement.dtb));
        assert!(!placement.dtb.overlaps(&placement.kernel_footprint));
        for reserved in request.reserved {
            assert!(!reserved.overlaps(&placement.kernel_footprint));
            assert!(!reserved.overlaps(&placement.dtb));
        }
        if let Some(initrd) = placement.initrd {
            assert!(in_ram(&initrd));
            assert_eq!(initrd.size, request.initrd.unwrap().size);
            assert!(!initrd.overlaps(&placement.kernel_footprint));
            assert!(!initrd.overlaps(&placement.dtb));
            assert!(shares_window(&initrd, &placement.kernel_footprint));
        } else {
            assert!(request.initrd.is_none());
        }

        // Copies: one per moved module (every module when the sources are elsewhere),
        // and in the guest's space none clobbers a later source or an earlier result.
        let elsewhere = request.sources == ModuleSources::Elsewhere;
        let kernel_moved = elsewhere || placement.entry != request.kernel.base;
        let initrd_moved =
            request.initrd.is_some() && (elsewhere || placement.initrd != request.initrd);
        assert_eq!(
            placement.copies.len(),
            usize::from(kernel_moved) + usize::from(initrd_moved)
        );
        for (index, copy) in placement.copies.iter().enumerate() {
            let dst = range(copy.dst, copy.len);
            for later in &placement.copies[index + 1..] {
                if !elsewhere {
                    assert!(!dst.overlaps(&range(later.src, later.len)));
                }
                assert!(!range(later.dst, later.len).overlaps(&dst));
            }
            match copy.module {
                GuestModuleRole::Kernel => {
                    assert_eq!((copy.src, copy.dst), (request.kernel.base, placement.entry));
                    assert_eq!(copy.len, request.kernel.size);
                }
                GuestModuleRole::Ramdisk => {
                    assert_eq!(Some(range(copy.dst, copy.len)), placement.initrd);
                    assert_eq!(Some(range(copy.src, copy.len)), request.initrd);
                }
            }
        }
        if elsewhere {
            return;
        }
        // The DTB slot is clear of every source too.
        assert!(!placement.dtb.overlaps(&request.kernel));
        if let Some(initrd) = request.initrd {
            assert!(!placement.dtb.overlaps(&initrd));
        }
    }

    fn place_ok(request: &PlacementRequest<'_>) -> Placement {
        let placement = place_guest(request).unwrap();
        assert_valid(request, &placement);
        placement
    }

    #[test]
    fn qemu_layout_boots_in_place_without_copies() {
        let initrd = range(0x5800_0000, 16 * MIB);
        let req = request(&QEMU_GUEST_RAM, debian_kernel_at(0x5000_0000), Some(initrd));
        let placement = place_ok(&req);
        assert_eq!(placement.entry, 0x5000_0000);
        assert_eq!(placement.kernel_base, 0x5000_0000);
        assert_eq!(placement.initrd, Some(initrd));
        assert_eq!(placement.dtb, range(0x4200_0000, DTB_SLOT_SIZE));
        assert!(placement.copies.is_empty());
    }

    #[test]
    fn misaligned_kernel_is_copied_to_the_lowest_fit() {
        let req = request(&QEMU_GUEST_RAM, debian_kernel_at(0x5000_1000), None);
        let placement = place_ok(&req);
        assert_eq!(placement.entry, 0x4200_0000);
        assert_eq!(
            placement.copies,
            [ModuleCopy {
                module: GuestModuleRole::Kernel,
                src: 0x5000_1000,
                dst: 0x4200_0000,
                len: 34_834_368,
            }]
        );
        // The DTB goes in the first 2 MiB slot after the kernel footprint (0x2230000
        // rounded up to 2 MiB) and clear of the old kernel bytes.
        assert_eq!(placement.dtb.base, 0x4200_0000 + 0x240_0000);
    }

    #[test]
    fn text_offset_is_honoured() {
        let mut req = request(&QEMU_GUEST_RAM, range(0x5008_0000, 0x10_0000), None);
        req.image.text_offset = 0x8_0000;
        let placement = place_ok(&req);
        // 0x50080000 - 0x80000 is 2 MiB aligned: in place.
        assert_eq!(placement.entry, 0x5008_0000);
        assert_eq!(placement.kernel_base, 0x5000_0000);
        assert!(placement.copies.is_empty());

        req.kernel = range(0x5000_0000, 0x10_0000);
        let placement = place_ok(&req);
        assert_eq!(placement.entry, 0x4208_0000);
        assert_eq!(placement.kernel_base, 0x4200_0000);
    }

    #[test]
    fn near_dram_base_kernel_moves_down() {
        let mut req = request(&QEMU_GUEST_RAM, debian_kernel_at(0x5000_0000), None);
        req.image.placement = PhysicalPlacement::NearDramBase;
        let placement = place_ok(&req);
        assert_eq!(placement.entry, 0x4200_0000);
        assert_eq!(placement.copies.len(), 1);

        // Already at the lowest place: stays.
        req.kernel = debian_kernel_at(0x4200_0000);
        let placement = place_ok(&req);
        assert!(placement.copies.is_empty());
    }

    #[test]
    fn kernel_outside_guest_ram_is_copied_in() {
        // E.g. loaded into what is now the hypervisor's memory.
        let req = request(&QEMU_GUEST_RAM, debian_kernel_at(0x4000_0000), None);
        let placement = place_ok(&req);
        assert_eq!(placement.entry, 0x4200_0000);
        assert_eq!(placement.copies[0].src, 0x4000_0000);
    }

    #[test]
    fn kernel_moving_onto_its_own_bytes_is_one_memmove() {
        let req = request(&QEMU_GUEST_RAM, debian_kernel_at(0x4210_0000), None);
        let placement = place_ok(&req);
        let copy = placement.copies[0];
        assert_eq!((copy.src, copy.dst), (0x4210_0000, 0x4200_0000));
        assert!(range(copy.src, copy.len).overlaps(&range(copy.dst, copy.len)));

        // memmove semantics give the right bytes (scaled-down memory model).
        let mut memory: Vec<u8> = (0..=255u8).cycle().take(0x400).collect();
        let expected = memory[0x100..0x300].to_vec();
        memory.copy_within(0x100..0x300, 0);
        assert_eq!(&memory[..0x200], &expected[..]);
    }

    #[test]
    fn kernel_footprint_may_not_cover_the_initrd() {
        // In place the footprint (0x2230000) would run into the initrd at +32 MiB.
        let initrd = range(0x5200_0000, MIB);
        let req = request(&QEMU_GUEST_RAM, debian_kernel_at(0x5000_0000), Some(initrd));
        let placement = place_ok(&req);
        assert_eq!(placement.initrd, Some(initrd));
        assert_eq!(placement.entry, 0x4200_0000);
    }

    #[test]
    fn kernel_crossing_the_end_of_ram_is_moved() {
        let req = request(&QEMU_GUEST_RAM, debian_kernel_at(0xbfe0_0000), None);
        let placement = place_ok(&req);
        assert_eq!(placement.entry, 0x4200_0000);
    }

    #[test]
    fn reserved_ranges_are_avoided() {
        let reserved = [range(0x4200_0000, 0x10_0000), range(0x5000_0000, MIB)];
        let mut req = request(&QEMU_GUEST_RAM, debian_kernel_at(0x5000_0000), None);
        req.reserved = &reserved;
        let placement = place_ok(&req);
        // In place would cover the reserved MiB at 0x50000000; the lowest free 2 MiB
        // base is past the first reservation.
        assert_eq!(placement.entry, 0x4220_0000);
        assert_eq!(placement.dtb.base, 0x4220_0000 + 0x240_0000);
    }

    #[test]
    fn initrd_outside_guest_ram_is_copied() {
        let initrd = range(0x4100_0000, 16 * MIB); // hypervisor memory
        let req = request(&QEMU_GUEST_RAM, debian_kernel_at(0x5000_0000), Some(initrd));
        let placement = place_ok(&req);
        assert_eq!(placement.entry, 0x5000_0000);
        let moved = placement.initrd.unwrap();
        assert_eq!(moved, range(0x4200_0000, 16 * MIB));
        assert_eq!(
            placement.copies,
            [ModuleCopy {
                module: GuestModuleRole::Ramdisk,
                src: 0x4100_0000,
                dst: 0x4200_0000,
                len: 16 * MIB,
            }]
        );
    }

    #[test]
    fn initrd_straddling_the_ram_start_is_copied() {
        let initrd = range(0x41f0_0000, 2 * MIB);
        let req = request(&QEMU_GUEST_RAM, debian_kernel_at(0x5000_0000), Some(initrd));
        let placement = place_ok(&req);
        assert_ne!(placement.initrd, Some(initrd));
    }

    #[test]
    fn both_modules_copied_in_a_safe_order() {
        let ram = [range(0x8000_0000, GIB)];
        let kernel = debian_kernel_at(0x4000_0000);
        let initrd = range(0x4800_0000, 64 * MIB);
        let placement = place_ok(&request(&ram, kernel, Some(initrd)));
        assert_eq!(placement.copies.len(), 2);
        assert_eq!(placement.entry, 0x8000_0000);
        assert_eq!(placement.initrd.unwrap().base, 0x8223_0000);
    }

    #[test]
    fn adjacent_ram_banks_are_one_region() {
        let ram = [range(0x4100_0000, 16 * MIB), range(0x4000_0000, 16 * MIB)];
        let mut req = request(&ram, range(0x9000_0000, 0x1000), None);
        req.image.image_size = 20 * MIB;
        let placement = place_ok(&req);
        assert_eq!(placement.entry, 0x4000_0000);
    }

    #[test]
    fn kernel_moves_to_share_a_window_with_an_in_place_initrd() {
        // 64 GiB of RAM; kernel at the bottom, initrd 40 GiB up: the initrd is kept
        // first, so the kernel moves into the lowest window that covers it.
        let ram = [range(GIB, 64 * GIB)];
        let initrd = range(41 * GIB, 16 * MIB);
        let placement = place_ok(&request(&ram, debian_kernel_at(GIB), Some(initrd)));
        assert_eq!(placement.initrd, Some(initrd));
        assert_eq!(placement.entry, 10 * GIB);
    }

    #[test]
    fn initrd_moves_into_the_kernels_window_when_the_kernel_cannot_move() {
        // The initrd's bank is too small for the kernel, so the initrd moves instead.
        let ram = [range(GIB, 64 * MIB), range(40 * GIB, 32 * MIB)];
        let initrd = range(40 * GIB, 16 * MIB);
        let placement = place_ok(&request(&ram, debian_kernel_at(GIB), Some(initrd)));
        assert_eq!(placement.entry, GIB);
        assert_eq!(placement.initrd, Some(range(GIB + 0x223_0000, 16 * MIB)));
        assert_eq!(placement.dtb.base, 0x4340_0000);
    }

    #[test]
    fn kernel_too_far_from_an_in_place_initrd_moves_near_it() {
        let ram = [range(GIB, 64 * GIB)];
        let initrd = range(2 * GIB, 16 * MIB);
        let kernel = debian_kernel_at(61 * GIB);
        let placement = place_ok(&request(&ram, kernel, Some(initrd)));
        assert_eq!(placement.initrd, Some(initrd));
        assert_eq!(placement.entry, GIB);
    }

    #[test]
    fn error_no_guest_ram() {
        let err = place_guest(&request(&[], debian_kernel_at(0x5000_0000), None)).unwrap_err();
        assert_eq!(err, PlacementError::NoGuestRam);
        assert!(err.to_string().contains("no guest RAM"));
    }

    #[test]
    fn error_guest_ram_overlap() {
        let ram = [range(0x4000_0000, GIB), range(0x7000_0000, GIB)];
        let err = place_guest(&request(&ram, debian_kernel_at(0x5000_0000), None)).unwrap_err();
        assert_eq!(
            err,
            PlacementError::GuestRamOverlap {
                first: ram[0],
                second: ram[1]
            }
        );
        assert!(err.to_string().contains("[0x40000000, 0x80000000)"));
    }

    #[test]
    fn error_kernel_larger_than_image_size() {
        let mut req = request(&QEMU_GUEST_RAM, range(0x5000_0000, 0x300_0000), None);
        req.image.image_size = 0x200_0000;
        let err = place_guest(&req).unwrap_err();
        assert_eq!(
            err,
            PlacementError::KernelLargerThanImageSize {
                module_size: 0x300_0000,
                image_size: 0x200_0000
            }
        );
        assert!(err.to_string().contains("0x3000000"));
    }

    #[test]
    fn error_kernel_does_not_fit() {
        let ram = [range(0x4000_0000, 32 * MIB)];
        let err = place_guest(&request(&ram, debian_kernel_at(0x5000_0000), None)).unwrap_err();
        assert_eq!(
            err,
            PlacementError::KernelDoesNotFit {
                image_size: 0x223_0000,
                text_offset: 0
            }
        );
        assert!(err.to_string().contains("0x2230000"));
    }

    #[test]
    fn error_initrd_does_not_fit() {
        // Room for the kernel and a DTB, not for a 64 MiB initrd that must be copied in.
        let ram = [range(0x4000_0000, 64 * MIB)];
        let initrd = range(0x9000_0000, 64 * MIB);
        let err =
            place_guest(&request(&ram, debian_kernel_at(0x4000_0000), Some(initrd))).unwrap_err();
        assert_eq!(
            err,
            PlacementError::InitrdDoesNotFit {
                initrd_size: 64 * MIB,
                kernel_footprint: range(0x4000_0000, 0x223_0000)
            }
        );
        assert!(err.to_string().contains("0x4000000 bytes"));
    }

    #[test]
    fn error_dtb_does_not_fit() {
        // The kernel footprint rounds up to 36 MiB and the RAM has exactly that.
        let ram = [range(0x4000_0000, 0x224_0000)];
        let err = place_guest(&request(&ram, debian_kernel_at(0x4000_0000), None)).unwrap_err();
        assert_eq!(err, PlacementError::DtbDoesNotFit);
        assert!(err.to_string().contains("device tree"));
    }

    #[test]
    fn copy_order_puts_the_copy_that_frees_space_first() {
        let a = ModuleCopy {
            module: GuestModuleRole::Kernel,
            src: 0x1000,
            dst: 0x3000,
            len: 0x1000,
        };
        // b reads 0x3000 which a overwrites: b must run first.
        let b = ModuleCopy {
            module: GuestModuleRole::Ramdisk,
            src: 0x3000,
            dst: 0x5000,
            len: 0x1000,
        };
        assert_eq!(order_copies(Vec::from([a, b])).unwrap(), [b, a]);
        let err = order_copies(Vec::from([
            a,
            ModuleCopy {
                src: 0x3000,
                dst: 0x1000,
                ..b
            },
        ]))
        .unwrap_err();
        assert_eq!(err, PlacementError::CopyOrderCycle);
        assert!(err.to_string().contains("internal error"));
    }

    #[test]
    fn windows_cover_the_range() {
        let kernel = range(40 * GIB + 5 * MIB, 36 * MIB);
        let windows: Vec<_> = windows_covering(&kernel).collect();
        assert_eq!(windows.first().unwrap().base, 9 * GIB);
        assert_eq!(windows.last().unwrap().base, 40 * GIB);
        assert!(windows.iter().all(|w| w.contains_range(&kernel)));
        assert_eq!(windows_covering(&range(0, 33 * GIB)).count(), 0);
    }

    fn arb_range(max_base: u64, max_size: u64) -> impl Strategy<Value = PhysRange> {
        (0..max_base, 1..max_size).prop_map(|(base, size)| range(base, size))
    }

    proptest! {
        #[test]
        fn random_requests_never_panic_and_results_obey_the_rules(
            ram in proptest::collection::vec(arb_range(8 * GIB, 2 * GIB), 0..4),
            reserved in proptest::collection::vec(arb_range(8 * GIB, 64 * MIB), 0..3),
            kernel in arb_range(8 * GIB, 64 * MIB),
            extra in 0u64..64 * MIB,
            text_pages in 0u64..512,
            anywhere in any::<bool>(),
            initrd in proptest::option::of(arb_range(8 * GIB, 256 * MIB)),
            elsewhere in any::<bool>(),
        ) {
            let image = ImageHeader {
                text_offset: text_pages * 4096,
                image_size: kernel.size + extra,
                flags: 0,
                page_size: PageSize::Size4K,
                placement: if anywhere {
                    PhysicalPlacement::Anywhere
                } else {
                    PhysicalPlacement::NearDramBase
                },
                file_size: kernel.size,
            };
            let sources = if elsewhere { ModuleSources::Elsewhere } else { ModuleSources::InGuestSpace };
            let req = PlacementRequest { guest_ram: &ram, reserved: &reserved, kernel, image, initrd, sources };
            match place_guest(&req) {
                Ok(placement) => assert_valid(&req, &placement),
                Err(err) => prop_assert!(!err.to_string().is_empty()),
            }
        }

        #[test]
        fn extreme_addresses_never_panic(
            ram_base in any::<u64>(), ram_size in 1u64.., kernel_base in any::<u64>(),
            kernel_size in 1u64.., image_size in any::<u64>(), initrd_base in any::<u64>(),
        ) {
            let Some(ram) = PhysRange::new(ram_base, ram_size) else { return Ok(()) };
            let Some(kernel) = PhysRange::new(kernel_base, kernel_size) else { return Ok(()) };
            let image = ImageHeader { image_size, ..debian_image() };
            let ram = [ram];
            let req = PlacementRequest {
                guest_ram: &ram,
                reserved: &[],
                kernel,
                image,
                initrd: PhysRange::new(initrd_base, 0x1000),
                sources: ModuleSources::InGuestSpace,
            };
            if let Ok(placement) = place_guest(&req) {
                assert_valid(&req, &placement);
            }
        }
    }
}
