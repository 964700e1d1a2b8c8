//! Numbers as Linux reads them on the command line: `simple_strtoull(s, &end, 0)`
//! (`0x` hex, a leading `0` octal, else decimal) and `memparse` (an optional K, M, G, T,
//! P or E suffix, any case, each a factor of 1024).

use super::ValueProblem;

/// Reads an unsigned number at the start of `text`; returns it and the text after it.
///
/// # Errors
/// [`ValueProblem::Empty`], [`ValueProblem::BadNumber`] (no digits),
/// [`ValueProblem::Overflow`].
pub(super) fn number(text: &str) -> Result<(u64, &str), ValueProblem> {
    if text.is_empty() {
        return Err(ValueProblem::Empty);
    }
    let (radix, digits) = match text.as_bytes() {
        [b'0', b'x' | b'X', next, ..] if next.is_ascii_hexdigit() => (16, text.get(2..)),
        [b'0', b'x' | b'X', ..] => return Err(ValueProblem::BadNumber),
        [b'0', ..] => (8, Some(text)),
        _ => (10, Some(text)),
    };
    let digits = digits.unwrap_or_default();
    let len = digits
        .bytes()
        .take_while(|b| char::from(*b).is_digit(radix))
        .count();
    if len == 0 {
        return Err(ValueProblem::BadNumber);
    }
    let (number, rest) = digits
        .split_at_checked(len)
        .ok_or(ValueProblem::BadNumber)?;
    let value = u64::from_str_radix(number, radix).map_err(|_| ValueProblem::Overflow)?;
    Ok((value, rest))
}

/// [`number`] followed by an optional size suffix.
///
/// # Errors
/// As [`number`]; [`ValueProblem::BadSuffix`] for a letter that is no suffix;
/// [`ValueProblem::Overflow`] when the suffix overflows 64 bits.
pub(super) fn size(text: &str) -> Result<(u64, &str), ValueProblem> {
    let (value, rest) = number(text)?;
    let mut chars = rest.chars();
    let first = chars.next();
    let shift = match first.map(|c| c.to_ascii_uppercase()) {
        Some('K') => 10,
        Some('M') => 20,
        Some('G') => 30,
        Some('T') => 40,
        Some('P') => 50,
        Some('E') => 60,
        _ => match first {
            Some(suffix) if suffix.is_alphabetic() => {
                return Err(ValueProblem::BadSuffix { suffix });
            }
            _ => return Ok((value, rest)),
        },
    };
    let scaled = value
        .checked_mul(1 << shift)
        .ok_or(ValueProblem::Overflow)?;
    Ok((scaled, chars.as_str()))
}

/// Writes `value` with the largest suffix that divides it (`64M`, `1G`), so that
/// [`size`] reads it back exactly.
pub(super) fn write_size(f: &mut core::fmt::Formatter<'_>, value: u64) -> core::fmt::Result {
    const SUFFIXES: [(u32, char); 6] = [
        (60, 'E'),
        (50, 'P'),
        (40, 'T'),
        (30, 'G'),
        (20, 'M'),
        (10, 'K'),
    ];
    if value != 0 {
        for (shift, suffix) in SUFFIXES {
            if value.trailing_zeros() >= shift {
                return write!(f, "{}{suffix}", value >> shift);
            }
        }
    }
    write!(f, "{value}")
}
