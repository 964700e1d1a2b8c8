//! The last bytes of console output, kept in a fixed ring so a crash record can carry
//! the log lines that led up to a panic.

/// A ring of the most recent `N` bytes written.
pub struct LogRing<const N: usize> {
    bytes: [u8; N],
    /// Total bytes ever written; the next write goes to `written % N`.
    written: u64,
}

impl<const N: usize> LogRing<N> {
    pub const fn new() -> Self {
        Self {
            bytes: [0; N],
            written: 0,
        }
    }

    pub fn write(&mut self, data: &[u8]) {
        // Only the last N bytes of a long write can survive; the rest still counts as
        // written, so the ring knows it has wrapped.
        let skipped = data.len().saturating_sub(N);
        self.written += skipped as u64;
        let data = &data[skipped..];
        for &byte in data {
            self.bytes[(self.written % N as u64) as usize] = byte;
            self.written += 1;
        }
    }

    /// The kept bytes, oldest first, as two slices (the ring may wrap).
    pub fn contents(&self) -> (&[u8], &[u8]) {
        if self.written <= N as u64 {
            (&self.bytes[..self.written as usize], &[])
        } else {
            let split = (self.written % N as u64) as usize;
            (&self.bytes[split..], &self.bytes[..split])
        }
    }

    /// The kept bytes from the first complete line on (a wrapped ring starts mid-line).
    pub fn whole_lines(&self) -> (&[u8], &[u8]) {
        let (first, second) = self.contents();
        if self.written <= N as u64 {
            return (first, second);
        }
        if let Some(newline) = first.iter().position(|&b| b == b'\n') {
            (&first[newline + 1..], second)
        } else if let Some(newline) = second.iter().position(|&b| b == b'\n') {
            (&[], &second[newline + 1..])
        } else {
            (first, second)
        }
    }
}

impl<const N: usize> Default for LogRing<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined<const N: usize>(ring: &LogRing<N>) -> Vec<u8> {
        let (a, b) = ring.contents();
        [a, b].concat()
    }

    #[test]
    fn keeps_everything_until_full_then_the_newest_bytes() {
        let mut ring = LogRing::<8>::new();
        ring.write(b"abc");
        assert_eq!(joined(&ring), b"abc");
        ring.write(b"defghij");
        assert_eq!(joined(&ring), b"cdefghij");
        ring.write(b"0123456789");
        assert_eq!(joined(&ring), b"23456789");
    }

    #[test]
    fn whole_lines_drop_the_partial_first_line() {
        let mut ring = LogRing::<12>::new();
        ring.write(b"first line\nsecond\nthird\n");
        let (a, b) = ring.whole_lines();
        assert_eq!([a, b].concat(), b"third\n");
    }

    proptest::proptest! {
        #[test]
        fn contents_are_the_suffix_of_everything_written(
            writes in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..40), 0..20)
        ) {
            let mut ring = LogRing::<32>::new();
            let mut all = Vec::new();
            for w in &writes {
                ring.write(w);
                all.extend_from_slice(w);
            }
            let keep = all.len().min(32);
            proptest::prop_assert_eq!(joined(&ring), all[all.len() - keep..].to_vec());
        }
    }
}
