//! Big-endian reads that return `None` instead of panicking when the bytes run out.

/// The big-endian u32 at `offset`, if four bytes are there.
pub(super) fn be_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let end = offset.checked_add(4)?;
    let word: [u8; 4] = bytes.get(offset..end)?.try_into().ok()?;
    Some(u32::from_be_bytes(word))
}

/// The big-endian u64 at `offset`, if eight bytes are there.
pub(super) fn be_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    let end = offset.checked_add(8)?;
    let word: [u8; 8] = bytes.get(offset..end)?.try_into().ok()?;
    Some(u64::from_be_bytes(word))
}

/// A number of 1 or 2 big-endian cells; `None` for any other length.
pub(super) fn cells_value(cells: &[u8]) -> Option<u64> {
    match cells.len() {
        4 => be_u32(cells, 0).map(u64::from),
        8 => be_u64(cells, 0),
        _ => None,
    }
}

/// The string in a property value: up to the first NUL (or the whole value without one).
/// `None` if that is not UTF-8.
pub(super) fn value_str(value: &[u8]) -> Option<&str> {
    let text = value.split(|&b| b == 0).next().unwrap_or_default();
    core::str::from_utf8(text).ok()
}

/// The NUL-separated strings of a string-list property (e.g. `compatible`), as bytes.
pub(super) fn string_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .strip_suffix(&[0])
        .unwrap_or(value)
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
}
