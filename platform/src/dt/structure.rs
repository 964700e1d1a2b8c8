//! A bounds-checked walk over the structure block that accepts only blobs the `fdt`
//! crate (0.1.5) can walk without panicking or losing nodes.
//!
//! `fdt` indexes slices with offsets and lengths taken from the blob, `expect`s NUL
//! terminators and UTF-8, asserts token order, and mis-walks `FDT_NOP` tokens. A mutation
//! fuzz of a QEMU DTB made about 40% of mutants panic inside it. So before `fdt` sees a
//! blob, this walk checks every token, name, property header, value length and name
//! offset, the order of properties before children, and the nesting depth.

use super::DtError;
use super::bytes::be_u32;
use super::header::Header;
use crate::dt::error::StructureProblem;

pub(super) const FDT_BEGIN_NODE: u32 = 1;
pub(super) const FDT_END_NODE: u32 = 2;
pub(super) const FDT_PROP: u32 = 3;
pub(super) const FDT_NOP: u32 = 4;
pub(super) const FDT_END: u32 = 9;

/// Deepest nesting accepted, counting the root as 1 (Xen's DEVICE_TREE_MAX_DEPTH).
/// Real trees are 4 or 5 deep; the limit bounds recursion here and in `fdt`.
pub const MAX_DEPTH: usize = 16;

/// Checks the structure block of `blob` as described by `header` (already validated
/// against `blob`'s length).
///
/// # Errors
/// [`DtError::Structure`] with the offset (from the block's start) and the problem.
pub(super) fn validate(blob: &[u8], header: &Header) -> Result<(), DtError> {
    let block = block(
        blob,
        header.struct_offset,
        header.struct_size,
        "struct block",
    )?;
    let strings = block_or_empty(blob, header.strings_offset, header.strings_size);
    Walk {
        block,
        strings,
        offset: 0,
    }
    .run()
}

fn block<'b>(
    blob: &'b [u8],
    offset: u32,
    size: u32,
    what: &'static str,
) -> Result<&'b [u8], DtError> {
    let start = offset as usize;
    start
        .checked_add(size as usize)
        .and_then(|end| blob.get(start..end))
        .ok_or(DtError::Truncated {
            what,
            offset: offset.into(),
            size: size.into(),
            available: blob.len() as u64,
        })
}

fn block_or_empty(blob: &[u8], offset: u32, size: u32) -> &[u8] {
    block(blob, offset, size, "").unwrap_or_default()
}

struct Walk<'b> {
    block: &'b [u8],
    strings: &'b [u8],
    /// Offset of the next token in `block`.
    offset: usize,
}

impl<'b> Walk<'b> {
    fn fail(&self, at: usize, problem: StructureProblem) -> DtError {
        DtError::Structure {
            offset: at,
            problem,
        }
    }

    fn token(&self) -> Result<u32, DtError> {
        be_u32(self.block, self.offset)
            .ok_or_else(|| self.fail(self.offset, StructureProblem::UnexpectedEnd))
    }

    fn run(mut self) -> Result<(), DtError> {
        if self.token()? != FDT_BEGIN_NODE {
            return Err(self.fail(0, StructureProblem::NoRootNode));
        }
        let mut depth = 0usize;
        // Properties are allowed until the current node's first child (or its end).
        let mut properties_allowed = false;
        loop {
            let at = self.offset;
            match self.token()? {
                FDT_BEGIN_NODE => {
                    if depth == MAX_DEPTH {
                        return Err(self.fail(at, StructureProblem::TooDeep { limit: MAX_DEPTH }));
                    }
                    let name = self.node_name()?;
                    if depth == 0 && !name.is_empty() {
                        return Err(self.fail(at, StructureProblem::RootHasName));
                    }
                    depth += 1;
                    properties_allowed = true;
                }
                FDT_END_NODE => {
                    depth = depth
                        .checked_sub(1)
                        .ok_or_else(|| self.fail(at, StructureProblem::UnbalancedEndNode))?;
                    self.offset += 4;
                    properties_allowed = false;
                    if depth == 0 {
                        // The root is closed: only FDT_END may follow (no second root).
                        return match self.token()? {
                            FDT_END => Ok(()),
                            _ => Err(self.fail(self.offset, StructureProblem::AfterRoot)),
                        };
                    }
                }
                FDT_PROP => {
                    if !properties_allowed {
                        return Err(self.fail(at, StructureProblem::PropertyAfterChild));
                    }
                    self.property()?;
                }
                FDT_NOP => return Err(self.fail(at, StructureProblem::NopToken)),
                FDT_END => return Err(self.fail(at, StructureProblem::UnexpectedEnd)),
                other => return Err(self.fail(at, StructureProblem::UnknownToken(other))),
            }
        }
    }

    /// Reads the name after a BEGIN_NODE token and moves past its padding.
    fn node_name(&mut self) -> Result<&'b str, DtError> {
        let at = self.offset;
        let start = at + 4;
        let block = self.block;
        let rest = block.get(start..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| self.fail(at, StructureProblem::UnterminatedName))?;
        let name = rest
            .get(..len)
            .and_then(|bytes| core::str::from_utf8(bytes).ok())
            .ok_or_else(|| self.fail(at, StructureProblem::NameNotUtf8))?;
        self.offset = align4(start + len + 1);
        Ok(name)
    }

    /// Checks one property (header, value bounds, name) and moves past it.
    fn property(&mut self) -> Result<(), DtError> {
        let at = self.offset;
        let (Some(len), Some(name_offset)) =
            (be_u32(self.block, at + 4), be_u32(self.block, at + 8))
        else {
            return Err(self.fail(at, StructureProblem::UnexpectedEnd));
        };
        let value_end = (at + 12).checked_add(len as usize);
        // The padded end too: `fdt` skips the padding, and the next token must follow it.
        match value_end.map(align4) {
            Some(end) if end <= self.block.len() => self.offset = end,
            _ => return Err(self.fail(at, StructureProblem::ValueOutOfBounds { len })),
        }
        let rest = self.strings.get(name_offset as usize..).unwrap_or_default();
        let name = rest
            .iter()
            .position(|&b| b == 0)
            .and_then(|len| rest.get(..len))
            .ok_or_else(|| {
                self.fail(at, StructureProblem::NameOffsetOutOfBounds { name_offset })
            })?;
        if core::str::from_utf8(name).is_err() {
            return Err(self.fail(at, StructureProblem::NameNotUtf8));
        }
        Ok(())
    }
}

fn align4(offset: usize) -> usize {
    offset.saturating_add(3) & !3
}
