//! A guest's console output as it reaches the physical console, marked as the guest's.
//!
//! The convention (Xen prefixes `(d1) `): every line a guest prints is written as one
//! line that starts with its tag, `(g1) ` for the first guest ([`guest_tag`]). Every
//! machine-readable line of the hypervisor (`hyp-facts:`, `hyp-exit:`, `ptdump:`, ... see
//! `hyp_abi::console`) starts at the beginning of a line with its own prefix, and a guest
//! line always starts with `(g`, so no guest can print a line that scripts take for the
//! hypervisor's. What would let a guest get around the tag is neutralised here: a
//! carriage return (back to column 0, over the tag) is dropped, and every byte that is
//! not printable ASCII or a tab (the escape sequences that move the cursor or erase, C1
//! controls, DEL) is shown as `\xNN`. So a piece never holds a line break.
//!
//! [`GuestLines`] cuts the guest's bytes into pieces: a whole line (complete), a line too
//! long for the buffer (complete, written in pieces), or the start of a line the guest
//! has not finished ([`GuestLines::flush`], for a prompt). The tag and the line breaks
//! are added where the pieces meet the wire (`console::backlog`), which alone knows
//! whether the wire is still inside this guest's line: a continued line gets no second
//! tag, and a line something else interrupted is ended first and continued under a new
//! tag.
//!
//! Portable: the EL2 console hands the bytes the guest's (virtual) UART transmits to
//! [`GuestLines::push`] and queues what comes out.

use arrayvec::ArrayVec;

/// The longest piece written at once (escapes included), the tag excluded.
pub const LINE_BYTES: usize = 240;

/// The longest tag: `(g65535) `.
pub const TAG_BYTES: usize = 9;

/// `(gN) ` for guest `guest`.
pub fn guest_tag(guest: u16) -> ArrayVec<u8, TAG_BYTES> {
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
    tag
}

/// One guest's output, cut into pieces of lines.
pub struct GuestLines {
    line: ArrayVec<u8, LINE_BYTES>,
    /// Lines written in pieces because they were longer than [`LINE_BYTES`].
    cut_lines: u64,
}

impl GuestLines {
    pub const fn new() -> Self {
        Self {
            line: ArrayVec::new_const(),
            cut_lines: 0,
        }
    }

    /// Takes one byte the guest transmitted; `emit(content, complete)` is called with
    /// each piece: `complete` when the line ends there.
    pub fn push(&mut self, byte: u8, emit: &mut impl FnMut(&[u8], bool)) {
        match byte {
            b'\n' => self.end_piece(true, emit),
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

    /// Writes out the start of a line the guest has not finished (a prompt; or it powers
    /// off) as an incomplete piece: the line goes on with what comes next.
    pub fn flush(&mut self, emit: &mut impl FnMut(&[u8], bool)) {
        if !self.line.is_empty() {
            self.end_piece(false, emit);
        }
    }

    /// Whether a line was started and not written out.
    pub fn has_partial_line(&self) -> bool {
        !self.line.is_empty()
    }

    /// Lines written in pieces so far.
    pub fn cut_lines(&self) -> u64 {
        self.cut_lines
    }

    fn append(&mut self, bytes: &[u8], emit: &mut impl FnMut(&[u8], bool)) {
        if self.line.remaining_capacity() < bytes.len() {
            self.cut_lines += 1;
            self.end_piece(true, emit);
        }
        let _ = self.line.try_extend_from_slice(bytes);
    }

    fn end_piece(&mut self, complete: bool, emit: &mut impl FnMut(&[u8], bool)) {
        emit(&self.line, complete);
        self.line.clear();
    }
}

impl Default for GuestLines {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines as a wire with only this guest on it shows them (the backlog's job,
    /// done simply here): each piece that starts a line gets the tag.
    fn lines_of(guest: u16, input: &[u8]) -> Vec<String> {
        let mut out = GuestLines::new();
        let tag = String::from_utf8(guest_tag(guest).to_vec()).unwrap();
        let mut lines = Vec::new();
        let mut emit = |l: &[u8], _complete: bool| {
            lines.push(format!("{tag}{}\n", String::from_utf8(l.to_vec()).unwrap()))
        };
        for &b in input {
            out.push(b, &mut emit);
        }
        out.flush(&mut emit);
        lines
    }

    #[test]
    fn pieces_say_whether_the_line_ends() {
        let mut out = GuestLines::new();
        let mut pieces = Vec::new();
        let mut emit = |l: &[u8], complete: bool| pieces.push((l.to_vec(), complete));
        for &b in b"/ # " {
            out.push(b, &mut emit);
        }
        assert!(out.has_partial_line());
        out.flush(&mut emit);
        for &b in b"ls\n" {
            out.push(b, &mut emit);
        }
        assert_eq!(pieces, [(b"/ # ".to_vec(), false), (b"ls".to_vec(), true)]);
        assert_eq!(guest_tag(65535).as_slice(), b"(g65535) ");
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
