//! Fixed-capacity containers: the guest has no allocator.

use core::fmt;

/// A vector of at most `N` copyable items. `push` reports a full list instead of
/// panicking.
#[derive(Clone, Copy)]
pub struct List<T: Copy + Default, const N: usize> {
    items: [T; N],
    len: usize,
}

impl<T: Copy + Default, const N: usize> Default for List<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy + Default, const N: usize> List<T, N> {
    pub fn new() -> Self {
        Self {
            items: [T::default(); N],
            len: 0,
        }
    }

    /// Appends `item`; `false` (and nothing stored) when the list is full.
    pub fn push(&mut self, item: T) -> bool {
        match self.items.get_mut(self.len) {
            Some(slot) => {
                *slot = item;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[T] {
        self.items.get(..self.len).unwrap_or(&[])
    }

    pub fn get(&self, index: usize) -> Option<T> {
        self.as_slice().get(index).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        self.as_slice().iter().copied()
    }

    /// Sorts in place by `key` (insertion sort: the lists are short).
    pub fn sort_by_key<K: Ord>(&mut self, key: impl Fn(&T) -> K) {
        let len = self.len.min(N);
        for i in 1..len {
            let mut j = i;
            while j > 0 && key(&self.items[j - 1]) > key(&self.items[j]) {
                self.items.swap(j - 1, j);
                j -= 1;
            }
        }
    }

    /// Replaces the item at `index`; `false` if there is none.
    pub fn set(&mut self, index: usize, item: T) -> bool {
        match self.items.get_mut(index) {
            Some(slot) if index < self.len => {
                *slot = item;
                true
            }
            _ => false,
        }
    }

    /// Removes the item at `index`, shifting the rest down.
    pub fn remove(&mut self, index: usize) -> Option<T> {
        if index >= self.len {
            return None;
        }
        let item = self.items[index];
        for i in index..self.len - 1 {
            self.items[i] = self.items[i + 1];
        }
        self.len -= 1;
        self.items[self.len] = T::default();
        Some(item)
    }
}

impl<T: Copy + Default + fmt::Debug, const N: usize> fmt::Debug for List<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A string of at most `N` bytes; writing past the end truncates (at a character
/// boundary) and marks the text with a trailing `...`.
#[derive(Clone, Copy)]
pub struct Text<const N: usize = 240> {
    buf: [u8; N],
    len: usize,
    truncated: bool,
}

impl<const N: usize> Default for Text<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Text<N> {
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
            truncated: false,
        }
    }

    pub fn as_str(&self) -> &str {
        let bytes = self.buf.get(..self.len).unwrap_or(&[]);
        core::str::from_utf8(bytes).unwrap_or("<invalid utf-8>")
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_truncated(&self) -> bool {
        self.truncated
    }
}

impl<const N: usize> fmt::Write for Text<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.truncated {
            return Ok(());
        }
        let room = N.saturating_sub(self.len);
        let mut take = s.len().min(room);
        if take < s.len() {
            // Keep three bytes for the "..." marker, then back off to a char boundary.
            take = room.saturating_sub(3);
            while take > 0 && !s.is_char_boundary(take) {
                take -= 1;
            }
            self.truncated = true;
        }
        if let (Some(dst), Some(src)) = (
            self.buf.get_mut(self.len..self.len + take),
            s.as_bytes().get(..take),
        ) {
            dst.copy_from_slice(src);
            self.len += take;
        }
        if self.truncated {
            for _ in 0..3 {
                if let Some(b) = self.buf.get_mut(self.len) {
                    *b = b'.';
                    self.len += 1;
                }
            }
        }
        Ok(())
    }
}

impl<const N: usize> PartialEq for Text<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl<const N: usize> Eq for Text<N> {}

impl<const N: usize> fmt::Display for Text<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for Text<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Formats into a [`Text`] of the default capacity.
#[macro_export]
macro_rules! text {
    ($($arg:tt)*) => {{
        let mut t = $crate::fixed::Text::<240>::new();
        let _ = core::fmt::Write::write_fmt(&mut t, format_args!($($arg)*));
        t
    }};
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn list_push_until_full() {
        let mut l: List<u32, 2> = List::new();
        assert!(l.push(1));
        assert!(l.push(2));
        assert!(!l.push(3));
        assert_eq!(l.iter().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(l.get(2), None);
    }

    #[test]
    fn list_sort_and_remove() {
        let mut l: List<u32, 8> = List::new();
        for x in [5, 1, 4, 2, 3] {
            l.push(x);
        }
        l.sort_by_key(|&x| x);
        assert_eq!(l.iter().collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        assert_eq!(l.remove(1), Some(2));
        assert_eq!(l.iter().collect::<Vec<_>>(), [1, 3, 4, 5]);
        assert_eq!(l.remove(9), None);
    }

    #[test]
    fn text_truncates_with_marker() {
        let mut t: Text<10> = Text::new();
        write!(t, "0123456789abc").unwrap();
        assert_eq!(t.as_str(), "0123456...");
        assert!(t.is_truncated());
        write!(t, "more").unwrap();
        assert_eq!(t.as_str(), "0123456...");
    }

    #[test]
    fn text_truncates_at_char_boundary() {
        let mut t: Text<8> = Text::new();
        write!(t, "ab€€€").unwrap();
        assert_eq!(t.as_str(), "ab€...");
    }

    #[test]
    fn text_macro() {
        let t = text!("x={:#x}", 255);
        assert_eq!(t.as_str(), "x=0xff");
    }
}
