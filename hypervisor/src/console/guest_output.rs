//! A guest's console output as it reaches the physical console, marked as the guest's.
//!
//! The convention (Xen prefixes `(d1) `): every line a guest prints is written as one
//! line that starts with its tag, `(g1) ` for the first guest. Every machine-readable
//! line of the hypervisor (`hyp-facts:`, `hyp-exit:`, `ptdump:`, ... see `hyp_abi::console`)
//! starts at the beginning of a line with its own prefix, and a guest line always starts
//! with `(g`, so no guest can print a line that scripts take for the hypervisor's. What
//! would let a guest get around the tag is neutralised: a carriage return (back to column
//! 0, over the tag) is dropped, and every byte that is not printable ASCII or a tab (the
//! escape sequences that move the cursor or erase, C1 controls, DEL) is shown as `\xNN`.
//! A guest's line is buffered until its newline, so it is written whole, never
//! interleaved with the hypervisor's lines; a line longer than the buffer is written in
//! pieces, each with the tag.
//!
//! Portable: the EL2 console hands the bytes the guest's (virtual) UART transmits to
//! [`GuestLines::push`] and writes what comes out.

use arrayvec::ArrayVec;

/// The longest line written at once (escapes included), the tag excluded.
pub const LINE_BYTES: usize = 240;

/// One guest's output, cut into tagged lines.
pub struct GuestLines {
    /// `(gN) `.
    tag: ArrayVec<u8, 12>,
    line: ArrayVec<u8, LINE_BYTES>,
    /// Lines written in pieces because they were longer than [`LINE_BYTES`].
    cut_lines: u64,
}

impl GuestLines {
    /// The output of guest number `guest` (1 for the first).
    pub fn new(guest: u16) -> Self {
        let mut tag = ArrayVec::new();
        let _ = tag.try_extend_from_slice(b"(g");
        let mut digits = ArrayVec::<u8, 5>::new();
        let mut n = guest;
        loop {
            let _ = digits.try_push(b'0' + (n % 10) as u8);
            n /= 10;
            if n == 0 {
                break;
            }
        }
        tag.extend(digits.iter().rev().copied());
        let _ = tag.try_extend_from_slice(b") ");
        Self {
            tag,
            line: ArrayVec::new(),
            cut_lines: 0,
        }
    }

    /// Takes one byte the guest transmitted; `emit` is called with each complete tagged
    /// line, newline included.
    pub fn push(&mut self, byte: u8, emit: &mut impl FnMut(&[u8])) {
        match byte {
            b'\n' => self.end_line(emit),
            // Back to column 0 would let the rest overwrite the tag on a terminal.
            b'\r' => {}
            b'\t' | 0x20..=0x7e => self.append(&[byte], emit),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let escaped = [
                    b'\\',
                    b'x',
                    HEX[usize::from(byte >> 4)],
                    HEX[usize::from(byte & 0xf)],
                ];
                self.append(&escaped, emit);
            }
        }
    }

    /// Writes a partial line (the guest stopped mid-line: it powered off, or the console
    /// switches away) as a line of its own.
    pub fn flush(&mut self, emit: &mut impl FnMut(&[u8])) {
        if !self.line.is_empty() {
            self.end_line(emit);
        }
    }

    /// Whether a line was started and not finished.
    pub fn has_partial_line(&self) -> bool {
        !self.line.is_empty()
    }

    /// Lines written in pieces so far.
    pub fn cut_lines(&self) -> u64 {
        self.cut_lines
    }

    fn append(&mut self, bytes: &[u8], emit: &mut impl FnMut(&[u8])) {
        if self.line.remaining_capacity() < bytes.len() {
            self.cut_lines += 1;
            self.end_line(emit);
        }
        let _ = self.line.try_extend_from_slice(bytes);
    }

    fn end_line(&mut self, emit: &mut impl FnMut(&[u8])) {
        let mut out = ArrayVec::<u8, { LINE_BYTES + 13 }>::new();
        let _ = out.try_extend_from_slice(&self.tag);
        let _ = out.try_extend_from_slice(&self.line);
        let _ = out.try_push(b'\n');
        emit(&out);
        self.line.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(guest: u16, input: &[u8]) -> Vec<String> {
        let mut out = GuestLines::new(guest);
        let mut lines = Vec::new();
        let mut emit = |l: &[u8]| lines.push(String::from_utf8(l.to_vec()).unwrap());
        for &b in input {
            out.push(b, &mut emit);
        }
        out.flush(&mut emit);
        lines
    }

    #[test]
    fn each_line_is_tagged_and_crlf_becomes_one_newline() {
        assert_eq!(
            lines_of(1, b"Booting Linux\r\nready\n"),
            ["(g1) Booting Linux\n", "(g1) ready\n"]
        );
        assert_eq!(lines_of(12, b"x"), ["(g12) x\n"]);
    }

    #[test]
    fn a_guest_cannot_print_the_hypervisors_marker_or_hide_its_tag() {
        let lines = lines_of(
            1,
            b"hyp-exit: success\n\rhyp-exit: success\n\x1b[2K\rhyp-facts: x=1\n",
        );
        assert_eq!(
            lines,
            [
                "(g1) hyp-exit: success\n",
                "(g1) hyp-exit: success\n",
                "(g1) \\x1b[2Khyp-facts: x=1\n"
            ]
        );
        for line in &lines {
            assert!(
                hyp_abi::console::Line::parse(line.trim_end()).is_none(),
                "{line}"
            );
        }
    }

    #[test]
    fn a_long_line_is_written_in_tagged_pieces() {
        let long = vec![b'a'; LINE_BYTES * 2 + 5];
        let lines = lines_of(3, &long);
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| l.starts_with("(g3) ")));
        assert_eq!(lines.iter().map(|l| l.len() - 6).sum::<usize>(), long.len());
    }

    proptest::proptest! {
        /// Whatever the guest sends: every line starts with its tag, holds only printable
        /// ASCII and tabs, fits the bound, and the text is the input with CRs dropped and
        /// other controls escaped, in order.
        #[test]
        fn any_output_is_tagged_printable_and_complete(input: Vec<u8>) {
            let lines = lines_of(7, &input);
            let mut text = String::new();
            for line in &lines {
                let body = line.strip_prefix("(g7) ").expect("tagged");
                let body = body.strip_suffix('\n').expect("one line");
                proptest::prop_assert!(body.len() <= LINE_BYTES);
                proptest::prop_assert!(body.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)));
                text.push_str(body);
            }
            let mut model = String::new();
            for &b in &input {
                match b {
                    b'\n' | b'\r' => {}
                    b'\t' | 0x20..=0x7e => model.push(char::from(b)),
                    _ => model.push_str(&format!("\\x{b:02x}")),
                }
            }
            proptest::prop_assert_eq!(text, model);
        }
    }
}
