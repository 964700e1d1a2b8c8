//! Removing `FDT_NOP` tokens from a blob the hypervisor owns.
//!
//! NOPs are legal (libfdt writes them when it deletes a property or node in place, and
//! QEMU's `-dtb` loader does exactly that), but the `fdt` crate mis-walks them. The blob
//! is handed to the hypervisor, so it is compacted in place before parsing: each NOP is
//! dropped, later tokens move down, and `size_dt_struct` shrinks. Nothing else moves
//! (the strings block is separate), so every property keeps its meaning.

use super::DtError;
use super::bytes::be_u32;
use super::header::Header;
use super::structure::{FDT_BEGIN_NODE, FDT_END, FDT_END_NODE, FDT_NOP, FDT_PROP};
use crate::dt::error::StructureProblem;

/// Offset of `size_dt_struct` in the header.
const SIZE_DT_STRUCT_OFFSET: usize = 36;

/// Compacts the NOP tokens out of `blob`'s structure block and returns how many were
/// removed. A blob without NOPs is left untouched.
///
/// # Errors
/// The header's errors ([`super::blob_size`]), or [`DtError::Structure`] for a token
/// stream that cannot be walked; the blob is unchanged then.
pub fn remove_nops(blob: &mut [u8]) -> Result<usize, DtError> {
    let header = Header::read(blob)?;
    header.check_fits(blob.len())?;
    let start = header.struct_offset as usize;
    let size = header.struct_size as usize;
    let malformed = |offset: usize| DtError::Structure {
        offset,
        problem: StructureProblem::TokenOutOfBounds,
    };
    // First pass: find the token boundaries, so a malformed stream changes nothing.
    let end = start.checked_add(size).ok_or(malformed(0))?;
    let block = blob.get(start..end).ok_or(malformed(0))?;
    let mut nops = 0usize;
    let mut offset = 0usize;
    loop {
        let token = be_u32(block, offset).ok_or(malformed(offset))?;
        let length = token_length(block, offset, token).ok_or(match token {
            FDT_BEGIN_NODE | FDT_END_NODE | FDT_PROP | FDT_NOP | FDT_END => malformed(offset),
            _ => DtError::Structure {
                offset,
                problem: StructureProblem::UnknownToken(token),
            },
        })?;
        if token == FDT_NOP {
            nops += 1;
        }
        offset += length;
        if token == FDT_END {
            break;
        }
    }
    if nops == 0 {
        return Ok(0);
    }
    // Second pass: move every non-NOP token down over the NOPs before it.
    let block = blob.get_mut(start..end).ok_or(malformed(0))?;
    let (mut read, mut write) = (0usize, 0usize);
    loop {
        let token = be_u32(block, read).ok_or(malformed(read))?;
        let length = token_length(block, read, token).ok_or(malformed(read))?;
        if token != FDT_NOP {
            block.copy_within(read..read + length, write);
            write += length;
        }
        read += length;
        if token == FDT_END {
            break;
        }
    }
    if let Some(tail) = block.get_mut(write..) {
        tail.fill(0);
    }
    let new_size = u32::try_from(write).map_err(|_| malformed(write))?;
    blob.get_mut(SIZE_DT_STRUCT_OFFSET..SIZE_DT_STRUCT_OFFSET + 4)
        .ok_or(malformed(0))?
        .copy_from_slice(&new_size.to_be_bytes());
    Ok(nops)
}

/// Bytes taken by the token at `offset`, padding included; `None` if it runs off the
/// block or is unknown.
fn token_length(block: &[u8], offset: usize, token: u32) -> Option<usize> {
    let length = match token {
        FDT_BEGIN_NODE => {
            let name = block.get(offset + 4..)?;
            let terminator = name.iter().position(|&b| b == 0)?;
            4 + (terminator + 1).next_multiple_of(4)
        }
        FDT_PROP => {
            let value_length = be_u32(block, offset + 4)? as usize;
            12 + value_length.next_multiple_of(4)
        }
        FDT_END_NODE | FDT_NOP | FDT_END => 4,
        _ => return None,
    };
    (offset.checked_add(length)? <= block.len()).then_some(length)
}
