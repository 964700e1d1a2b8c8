//! Is a kernel module as long as its own headers say? The arm64 `Image` header gives
//! `image_size` (file plus BSS) and, on EFI-stub kernels (Debian's and most
//! distributions'), a PE/COFF header whose section table gives the extent of the file:
//! the end of the last section's raw data. A module shorter than that was truncated on
//! its way into memory.

use core::fmt;

use platform::info::PhysRange;

use crate::image::{ImageError, ImageHeader};
use crate::modules::RangeDisplay;

/// Why a kernel module is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelExtentError {
    /// The arm64 `Image` header itself is refused.
    Image(ImageError),
    /// The PE/COFF headers do not fit in the head given, or are inconsistent.
    BadPe { detail: &'static str },
    /// The section table says the file is `needed` bytes; the module is shorter.
    Truncated { module: PhysRange, needed: u64 },
}

impl fmt::Display for KernelExtentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Image(error) => write!(f, "{error}"),
            Self::BadPe { detail } => write!(f, "kernel module: bad PE/COFF header: {detail}"),
            Self::Truncated { module, needed } => write!(
                f,
                "kernel module {} is {:#x} bytes, its PE/COFF section table says {needed:#x}: \
                 truncated",
                RangeDisplay(*module),
                module.size
            ),
        }
    }
}

/// Checks the kernel module's header (`head`: its first bytes, 4 KiB is plenty) against
/// the module's length.
///
/// # Errors
///
/// [`KernelExtentError::Image`] for a refused `Image` header,
/// [`KernelExtentError::BadPe`] for unreadable PE/COFF headers,
/// [`KernelExtentError::Truncated`] for a module shorter than its sections.
pub fn check_kernel_extent(
    head: &[u8],
    module: PhysRange,
) -> Result<ImageHeader, KernelExtentError> {
    let header =
        ImageHeader::parse_with_file_size(head, module.size).map_err(KernelExtentError::Image)?;
    if let Some(needed) = pe_file_extent(head)?
        && needed > module.size
    {
        return Err(KernelExtentError::Truncated { module, needed });
    }
    Ok(header)
}

/// The end of the last section's raw data of a PE/COFF file (`None`: no `MZ` header, or
/// an `MZ` header pointing at no `PE\0\0` signature, as old non-EFI Images have).
///
/// # Errors
///
/// [`KernelExtentError::BadPe`] when the headers run past `head`.
pub fn pe_file_extent(head: &[u8]) -> Result<Option<u64>, KernelExtentError> {
    const BAD: KernelExtentError = KernelExtentError::BadPe {
        detail: "the section table runs past the bytes read",
    };
    let u16_at = |at: usize| {
        head.get(at..)
            .and_then(|s| s.first_chunk::<2>())
            .map(|b| u16::from_le_bytes(*b))
    };
    let u32_at = |at: usize| {
        head.get(at..)
            .and_then(|s| s.first_chunk::<4>())
            .map(|b| u32::from_le_bytes(*b))
    };
    if !head.starts_with(b"MZ") {
        return Ok(None);
    }
    let Some(pe) = u32_at(0x3c).map(|v| v as usize) else {
        return Ok(None);
    };
    if pe == 0 {
        return Ok(None);
    }
    match head.get(pe..).and_then(|s| s.get(..4)) {
        Some(b"PE\0\0") => {}
        Some(_) => return Ok(None),
        None => return Err(BAD),
    }
    let coff = pe.checked_add(4).ok_or(BAD)?;
    let sections = u16_at(coff + 2).ok_or(BAD)?;
    let optional = u16_at(coff + 16).ok_or(BAD)?;
    let table = coff + 20 + usize::from(optional);
    let mut extent = 0u64;
    for index in 0..usize::from(sections) {
        let entry = table + index * 40;
        let size = u32_at(entry + 16).ok_or(BAD)?;
        let pointer = u32_at(entry + 20).ok_or(BAD)?;
        extent = extent.max(u64::from(pointer) + u64::from(size));
    }
    Ok(Some(extent))
}
