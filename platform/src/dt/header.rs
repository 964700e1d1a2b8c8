//! The 40-byte FDT header and the memory reservation block it points to.
//!
//! Everything here is checked arithmetic on untrusted numbers: the header decides how
//! many bytes the boot code turns into a slice, so it must be right before anything else
//! reads the blob.

use super::DtError;
use super::bytes::{be_u32, be_u64};

pub(super) const FDT_MAGIC: u32 = 0xd00d_feed;
/// Bytes of a version 17 header (ten big-endian u32 fields).
pub const HEADER_SIZE: usize = 40;
/// A sanity bound on `totalsize`. Linux arm64 booting.rst asks loaders for at most
/// 2 MiB, but QEMU's `-dtb` loader re-packs a user's blob into a buffer of twice its file
/// size plus slack (a 1 MiB `dumpdtb` file arrives with totalsize just over 2 MiB), so a
/// hypervisor that only reads the blob accepts more. The blocks are bounds-checked anyway.
pub const MAX_TOTAL_SIZE: u32 = 16 << 20;
/// One memory reservation entry: two big-endian u64 values.
const RESERVATION_ENTRY_SIZE: usize = 16;

/// The header fields, decoded and checked against each other (but not against the
/// length of any buffer: that is [`Header::check_fits`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct Header {
    pub total_size: u32,
    pub struct_offset: u32,
    pub struct_size: u32,
    pub strings_offset: u32,
    pub strings_size: u32,
    pub reservations_offset: u32,
    pub version: u32,
    pub last_compatible: u32,
}

impl Header {
    /// Decodes and validates the header at the start of `bytes`.
    pub fn read(bytes: &[u8]) -> Result<Self, DtError> {
        let field = |index: usize| be_u32(bytes, index * 4);
        let (Some(magic), Some(last)) = (field(0), field(9)) else {
            return Err(DtError::Truncated {
                what: "FDT header",
                offset: 0,
                size: HEADER_SIZE as u64,
                available: bytes.len() as u64,
            });
        };
        if magic != FDT_MAGIC {
            return Err(DtError::BadMagic { found: magic });
        }
        let get = |index| field(index).unwrap_or_default();
        let header = Self {
            total_size: get(1),
            struct_offset: get(2),
            strings_offset: get(3),
            reservations_offset: get(4),
            version: get(5),
            last_compatible: get(6),
            strings_size: get(8),
            struct_size: last,
        };
        header.validate()?;
        Ok(header)
    }

    fn validate(&self) -> Result<(), DtError> {
        if self.version < 16 || self.last_compatible > 17 {
            return Err(self.unsupported_version());
        }
        if self.total_size < HEADER_SIZE as u32 {
            return Err(DtError::BadHeader {
                field: "totalsize",
                value: self.total_size,
                problem: "is smaller than the header",
            });
        }
        if self.total_size > MAX_TOTAL_SIZE {
            return Err(DtError::TooLarge {
                totalsize: self.total_size,
                limit: MAX_TOTAL_SIZE,
            });
        }
        // The blocks must lie after the header and inside totalsize. Version 16 has no
        // struct size; its field reads as 0 and `parse` refuses it (the fdt crate needs it).
        self.check_block(
            "struct block",
            "off_dt_struct",
            self.struct_offset,
            self.struct_size,
            4,
        )?;
        self.check_block(
            "strings block",
            "off_dt_strings",
            self.strings_offset,
            self.strings_size,
            1,
        )?;
        // The reservation block has no size field: it ends at its (0, 0) entry, which
        // `reservations` looks for; here it must at least hold that entry.
        self.check_block(
            "memory reservation block",
            "off_mem_rsvmap",
            self.reservations_offset,
            RESERVATION_ENTRY_SIZE as u32,
            8,
        )
    }

    fn check_block(
        &self,
        what: &'static str,
        offset_field: &'static str,
        offset: u32,
        size: u32,
        alignment: u32,
    ) -> Result<(), DtError> {
        if offset < HEADER_SIZE as u32 {
            return Err(DtError::BadHeader {
                field: offset_field,
                value: offset,
                problem: "points into the header",
            });
        }
        if !offset.is_multiple_of(alignment) {
            return Err(DtError::BadHeader {
                field: offset_field,
                value: offset,
                problem: "is misaligned",
            });
        }
        if u64::from(offset) + u64::from(size) > u64::from(self.total_size) {
            return Err(DtError::Truncated {
                what,
                offset: offset.into(),
                size: size.into(),
                available: self.total_size.into(),
            });
        }
        Ok(())
    }

    pub fn unsupported_version(&self) -> DtError {
        DtError::UnsupportedVersion {
            version: self.version,
            last_compatible: self.last_compatible,
        }
    }

    /// Checks that `available` bytes hold the whole blob.
    pub fn check_fits(&self, available: usize) -> Result<(), DtError> {
        if (self.total_size as usize) > available {
            return Err(DtError::Truncated {
                what: "the blob (totalsize)",
                offset: 0,
                size: self.total_size.into(),
                available: available as u64,
            });
        }
        Ok(())
    }
}

/// The entries of the memory reservation block, up to its (0, 0) terminator, as
/// `(address, size)`. `blob` must be the whole blob the header was read from.
pub(super) fn reservations(
    blob: &[u8],
    header: &Header,
) -> impl Iterator<Item = Result<(u64, u64), DtError>> {
    let start = header.reservations_offset as usize;
    let mut offset = start;
    let mut done = false;
    core::iter::from_fn(move || {
        if done {
            return None;
        }
        let entry = be_u64(blob, offset).zip(be_u64(blob, offset.saturating_add(8)));
        let Some((address, size)) = entry else {
            done = true;
            return Some(Err(DtError::Truncated {
                what: "memory reservation block (no terminating entry)",
                offset: start as u64,
                size: (offset - start + RESERVATION_ENTRY_SIZE) as u64,
                available: blob.len().saturating_sub(start) as u64,
            }));
        };
        offset += RESERVATION_ENTRY_SIZE;
        if address == 0 && size == 0 {
            done = true;
            return None;
        }
        Some(Ok((address, size)))
    })
}
