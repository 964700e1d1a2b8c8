//! Opening a DTB with `dtoolkit`, which validates the whole structure up front (so later
//! walks cannot panic), after checking the header fields it needs to slice the blob.

use alloc::string::{String, ToString};

use dtoolkit::fdt::Fdt;

pub(crate) const FDT_MAGIC: u32 = 0xd00d_feed;
pub(crate) const FDT_HEADER_SIZE: usize = 40;

/// Why a blob could not be opened; each caller wraps it in its own error type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum OpenError {
    TooShort { len: usize },
    BadMagic { found: u32 },
    Truncated { totalsize: u32, len: usize },
    Malformed { detail: String },
}

/// Validates the blob and returns it sliced to its `totalsize`.
pub(crate) fn open(bytes: &[u8]) -> Result<Fdt<'_>, OpenError> {
    let header_word = |offset: usize| {
        bytes
            .get(offset..)
            .and_then(|rest| rest.first_chunk::<4>())
            .map(|word| u32::from_be_bytes(*word))
    };
    let (Some(magic), Some(totalsize)) = (header_word(0), header_word(4)) else {
        return Err(OpenError::TooShort { len: bytes.len() });
    };
    if bytes.len() < FDT_HEADER_SIZE {
        return Err(OpenError::TooShort { len: bytes.len() });
    }
    if magic != FDT_MAGIC {
        return Err(OpenError::BadMagic { found: magic });
    }
    let blob = usize::try_from(totalsize)
        .ok()
        .and_then(|size| bytes.get(..size))
        .ok_or(OpenError::Truncated {
            totalsize,
            len: bytes.len(),
        })?;
    Fdt::new(blob).map_err(|error| OpenError::Malformed {
        detail: error.to_string(),
    })
}
