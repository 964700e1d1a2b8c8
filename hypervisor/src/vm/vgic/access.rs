//! Which accesses a GIC register accepts, and the arithmetic of narrow and 64-bit ones.
//!
//! IHI 0069 chapter 12 (Programmers' model), on memory-mapped register access: every
//! register takes 32-bit accesses; GICD_IPRIORITYR, GICD_ITARGETSR, GICD_CPENDSGIR,
//! GICD_SPENDSGIR and GICR_IPRIORITYR also take byte accesses; 64-bit registers
//! (GICD_IROUTER, GICR_TYPER, the LPI registers) take 64-bit accesses and 32-bit
//! accesses to either half. Anything else is refused here, so the caller can inject an external abort; reserved offsets
//! read as zero and ignore writes at any naturally aligned width.

use crate::vm::mmio::AccessSize;

/// Why an access to a vGIC frame is not emulated (the caller injects an abort). A refused
/// access changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterError {
    /// The register does not support this access width (a byte access to GICD_CTLR, a
    /// 64-bit access to a 32-bit register, any 16-bit access to a register).
    Size,
    /// Not naturally aligned.
    Unaligned,
    /// At or beyond the end of the frame.
    OutsideFrame,
    /// A redistributor frame of a vCPU the guest does not have.
    NoSuchVcpu,
}

/// The access widths a register takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Widths {
    /// 32-bit only.
    Word,
    /// 8-bit or 32-bit.
    ByteOrWord,
    /// A 64-bit register: 64-bit, or 32-bit to either half.
    DoubleOrWord,
}

impl Widths {
    fn allows(self, size: AccessSize) -> bool {
        match self {
            Self::Word => size == AccessSize::Word,
            Self::ByteOrWord => matches!(size, AccessSize::Byte | AccessSize::Word),
            Self::DoubleOrWord => matches!(size, AccessSize::Word | AccessSize::Double),
        }
    }
}

/// A run of registers of one kind in a frame: `[start, end)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Region<R> {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) register: R,
    pub(crate) widths: Widths,
}

impl<R> Region<R> {
    /// Offsets `[start, end)` of a frame hold `register`, accessed at `widths`.
    pub(crate) const fn new(start: u64, end: u64, register: R, widths: Widths) -> Self {
        Self {
            start,
            end,
            register,
            widths,
        }
    }
}

/// A decoded access: the region it falls in, and its offset within the region.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Located<R> {
    pub(crate) register: R,
    pub(crate) within: u64,
}

/// Checks `offset`/`size` against the frame and `table`; `reserved` stands for an offset
/// no region covers, which takes any naturally aligned width.
///
/// # Errors
/// [`RegisterError`] for an access outside the frame, unaligned, or of a width the
/// register does not take.
pub(crate) fn locate<R: Copy>(
    table: &[Region<R>],
    reserved: R,
    frame_size: u64,
    offset: u64,
    size: AccessSize,
) -> Result<Located<R>, RegisterError> {
    if offset >= frame_size {
        return Err(RegisterError::OutsideFrame);
    }
    if !offset.is_multiple_of(size.bytes()) {
        return Err(RegisterError::Unaligned);
    }
    let region = table
        .iter()
        .find(|region| (region.start..region.end).contains(&offset));
    let Some(region) = region else {
        return Ok(Located {
            register: reserved,
            within: 0,
        });
    };
    if !region.widths.allows(size) {
        return Err(RegisterError::Size);
    }
    Ok(Located {
        register: region.register,
        within: offset - region.start,
    })
}

/// The low `size` bytes of `value`.
pub(crate) fn truncate(value: u64, size: AccessSize) -> u64 {
    match size {
        AccessSize::Double => value,
        _ => value & ((1u64 << (8 * size.bytes())) - 1),
    }
}

/// A read of 64-bit register `register` at `within` (0, or 4 for its upper half).
pub(crate) fn read_part(register: u64, within: u64, size: AccessSize) -> u64 {
    let shift = 8 * (within & 7);
    truncate(register >> shift, size)
}

/// 64-bit register `old` after a write of `value` at `within` with `size`.
pub(crate) fn write_part(old: u64, within: u64, size: AccessSize, value: u64) -> u64 {
    let shift = 8 * (within & 7);
    let mask = truncate(u64::MAX, size) << shift;
    (old & !mask) | ((truncate(value, size) << shift) & mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use AccessSize::{Byte, Double, Half, Word};

    const TABLE: [Region<u8>; 3] = [
        Region {
            start: 0x0,
            end: 0x4,
            register: 1,
            widths: Widths::Word,
        },
        Region {
            start: 0x400,
            end: 0x800,
            register: 2,
            widths: Widths::ByteOrWord,
        },
        Region {
            start: 0x6000,
            end: 0x8000,
            register: 3,
            widths: Widths::DoubleOrWord,
        },
    ];

    fn at(offset: u64, size: AccessSize) -> Result<(u8, u64), RegisterError> {
        locate(&TABLE, 0, 0x10000, offset, size).map(|l| (l.register, l.within))
    }

    #[test]
    fn widths_are_checked_per_register() {
        assert_eq!(at(0, Word), Ok((1, 0)));
        assert_eq!(at(0, Byte), Err(RegisterError::Size));
        assert_eq!(at(0, Half), Err(RegisterError::Size));
        assert_eq!(at(0, Double), Err(RegisterError::Size));
        assert_eq!(at(0x403, Byte), Ok((2, 3)));
        assert_eq!(at(0x402, Half), Err(RegisterError::Size));
        assert_eq!(at(0x6008, Double), Ok((3, 8)));
        assert_eq!(at(0x600c, Word), Ok((3, 0xc)));
        assert_eq!(at(0x6000, Byte), Err(RegisterError::Size));
    }

    #[test]
    fn reserved_offsets_take_any_aligned_width() {
        assert_eq!(at(0x10, Half), Ok((0, 0)));
        assert_eq!(at(0x18, Double), Ok((0, 0)));
        assert_eq!(at(0x11, Byte), Ok((0, 0)));
    }

    #[test]
    fn unaligned_and_outside_accesses_are_refused() {
        assert_eq!(at(0x6004, Double), Err(RegisterError::Unaligned));
        assert_eq!(at(0x2, Word), Err(RegisterError::Unaligned));
        assert_eq!(at(0x10000, Byte), Err(RegisterError::OutsideFrame));
        assert_eq!(at(u64::MAX, Byte), Err(RegisterError::OutsideFrame));
    }

    #[test]
    fn sixty_four_bit_registers_read_and_write_by_halves() {
        let register = 0x1122_3344_5566_7788;
        assert_eq!(read_part(register, 0, Double), register);
        assert_eq!(read_part(register, 0, Word), 0x5566_7788);
        assert_eq!(read_part(register, 4, Word), 0x1122_3344);
        assert_eq!(
            write_part(register, 4, Word, 0xffff_aaaa_bbbb),
            0xaaaa_bbbb_5566_7788
        );
        assert_eq!(
            write_part(register, 0, Word, 0xcccc_dddd),
            0x1122_3344_cccc_dddd
        );
        assert_eq!(write_part(register, 0, Double, 7), 7);
    }
}
