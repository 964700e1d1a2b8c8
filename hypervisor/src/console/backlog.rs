//! Guest console output waiting for the physical UART, and where the wire is: inside a
//! guest's line or at the start of one.
//!
//! A guest never waits for the UART: its pieces (`guest_output`: a whole line, or the
//! start of one) are queued here, and sent as the UART's transmit FIFO has room (more
//! when the UART's transmit interrupt says the FIFO drained). When the queue is full a
//! new piece is dropped whole and counted, so a flooding guest loses its own output and
//! nothing else.
//!
//! The tag and the line breaks are added as a piece goes on the wire, because only then
//! is it known what the wire holds: a piece that starts a line gets its guest's tag; a
//! piece that continues the line its guest left open gets none; a piece of another guest
//! first ends the open line. The hypervisor's own lines do not queue behind a guest's
//! backlog: [`Backlog::to_line_start`] finishes the piece being sent and ends an open
//! guest line, so a hypervisor line always starts at the beginning of a line and waits for
//! at most one piece. Every line on the wire therefore starts with a guest's tag or is the
//! hypervisor's, whatever the guests send and however the pieces interleave (the property
//! test below). Portable: the UART is reached through closures.

use arrayvec::ArrayVec;

use super::guest_output::{TAG_BYTES, guest_tag};

/// Bytes of queued pieces (a few seconds of output at 115200 baud).
pub const BACKLOG_BYTES: usize = 16 * 1024;

/// Queued piece header: guest number (2 bytes), complete flag, content length.
const HEADER_BYTES: usize = 4;

/// What the wire's last byte left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wire {
    /// At the start of a line.
    LineStart,
    /// Inside this guest's line.
    InLine(u16),
}

/// The piece being sent: what goes before its content, how much content is left, and
/// whether a line break follows.
struct Sending {
    guest: u16,
    complete: bool,
    prefix: ArrayVec<u8, { TAG_BYTES + 2 }>,
    prefix_sent: usize,
    content_left: usize,
    suffix_sent: usize,
}

const LINE_BREAK: &[u8] = b"\r\n";

/// The queue: a ring of pieces, each a header and its content.
pub struct Backlog<const N: usize> {
    bytes: [u8; N],
    head: usize,
    len: usize,
    sending: Option<Sending>,
    wire: Wire,
    dropped_pieces: u64,
    dropped_bytes: u64,
}

impl<const N: usize> Backlog<N> {
    pub const fn new() -> Self {
        Self {
            bytes: [0; N],
            head: 0,
            len: 0,
            sending: None,
            wire: Wire::LineStart,
            dropped_pieces: 0,
            dropped_bytes: 0,
        }
    }

    /// Queues a piece of guest `guest`'s output (`complete`: its line ends after it);
    /// `false` if it was dropped because it does not fit. `content` holds no line break
    /// (`guest_output` guarantees it); one longer than 255 bytes is cut there.
    pub fn push_piece(&mut self, guest: u16, content: &[u8], complete: bool) -> bool {
        let content = content.get(..content.len().min(255)).unwrap_or_default();
        if HEADER_BYTES + content.len() > N - self.len {
            self.dropped_pieces += 1;
            self.dropped_bytes += content.len() as u64;
            return false;
        }
        let [low, high] = guest.to_le_bytes();
        for &byte in [low, high, u8::from(complete), content.len() as u8]
            .iter()
            .chain(content)
        {
            let tail = (self.head + self.len) % N;
            self.bytes[tail] = byte;
            self.len += 1;
        }
        true
    }

    /// Sends while `send` accepts bytes (`false`: the transmit FIFO is full). Returns
    /// whether anything is still queued.
    pub fn send(&mut self, mut send: impl FnMut(u8) -> bool) -> bool {
        loop {
            if self.sending.is_none() && !self.start_next() {
                return false;
            }
            if !self.send_current(&mut send) {
                return true;
            }
        }
    }

    /// Brings the wire to the start of a line for the hypervisor: the piece being sent is
    /// finished with `send_blocking` (which waits for FIFO room), and a guest line left
    /// open is ended. The next piece of that guest starts a new, tagged line.
    pub fn to_line_start(&mut self, mut send_blocking: impl FnMut(u8)) {
        if self.sending.is_some() {
            self.send_current(&mut |byte| {
                send_blocking(byte);
                true
            });
        }
        if self.wire != Wire::LineStart {
            LINE_BREAK.iter().for_each(|&byte| send_blocking(byte));
            self.wire = Wire::LineStart;
        }
    }

    /// Takes the next queued piece's header and decides what goes before it.
    fn start_next(&mut self) -> bool {
        if self.len < HEADER_BYTES {
            return false;
        }
        let header: [u8; HEADER_BYTES] = core::array::from_fn(|_| self.pop());
        let guest = u16::from_le_bytes([header[0], header[1]]);
        let mut prefix = ArrayVec::new();
        match self.wire {
            Wire::InLine(owner) if owner == guest => {}
            Wire::InLine(_) => {
                let _ = prefix.try_extend_from_slice(LINE_BREAK);
                let _ = prefix.try_extend_from_slice(&guest_tag(guest));
            }
            Wire::LineStart => {
                let _ = prefix.try_extend_from_slice(&guest_tag(guest));
            }
        }
        self.sending = Some(Sending {
            guest,
            complete: header[2] != 0,
            prefix,
            prefix_sent: 0,
            content_left: usize::from(header[3]).min(self.len),
            suffix_sent: 0,
        });
        true
    }

    /// Sends the rest of the current piece while `send` accepts; `true` once it is all
    /// sent (the wire then says where it stands).
    fn send_current(&mut self, send: &mut impl FnMut(u8) -> bool) -> bool {
        let Some(mut piece) = self.sending.take() else {
            return true;
        };
        let done = self.send_piece(&mut piece, send);
        if done {
            self.wire = if piece.complete {
                Wire::LineStart
            } else {
                Wire::InLine(piece.guest)
            };
        } else {
            self.sending = Some(piece);
        }
        done
    }

    fn send_piece(&mut self, piece: &mut Sending, send: &mut impl FnMut(u8) -> bool) -> bool {
        while let Some(&byte) = piece.prefix.get(piece.prefix_sent) {
            if !send(byte) {
                return false;
            }
            piece.prefix_sent += 1;
        }
        while piece.content_left > 0 {
            if !send(self.bytes[self.head]) {
                return false;
            }
            self.pop();
            piece.content_left -= 1;
        }
        if piece.complete {
            while let Some(&byte) = LINE_BREAK.get(piece.suffix_sent) {
                if !send(byte) {
                    return false;
                }
                piece.suffix_sent += 1;
            }
        }
        true
    }

    fn pop(&mut self) -> u8 {
        let byte = self.bytes[self.head];
        self.head = (self.head + 1) % N;
        self.len = self.len.saturating_sub(1);
        byte
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0 && self.sending.is_none()
    }

    /// Pieces dropped because the backlog was full, and their bytes.
    pub fn dropped(&self) -> (u64, u64) {
        (self.dropped_pieces, self.dropped_bytes)
    }
}

impl<const N: usize> Default for Backlog<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec::Vec;

    fn drain<const N: usize>(backlog: &mut Backlog<N>, wire: &mut Vec<u8>) {
        backlog.send(|b| {
            wire.push(b);
            true
        });
    }

    #[test]
    fn a_line_in_pieces_is_one_tagged_line() {
        let mut backlog = Backlog::<256>::new();
        let mut wire = Vec::new();
        backlog.push_piece(1, b"/ # ", false);
        drain(&mut backlog, &mut wire);
        assert_eq!(wire, b"(g1) / # ", "a prompt shows at once");
        backlog.push_piece(1, b"ls", true);
        drain(&mut backlog, &mut wire);
        assert_eq!(wire, b"(g1) / # ls\r\n");
    }

    #[test]
    fn the_hypervisor_and_other_guests_end_an_open_line_first() {
        let mut backlog = Backlog::<256>::new();
        let mut wire = Vec::new();
        backlog.push_piece(1, b"guest", false);
        drain(&mut backlog, &mut wire);
        backlog.to_line_start(|b| wire.push(b));
        wire.extend_from_slice(b"hyp-exit: success\r\n");
        backlog.push_piece(1, b"-isolation", true);
        backlog.push_piece(2, b"other", false);
        backlog.push_piece(1, b"back", true);
        drain(&mut backlog, &mut wire);
        assert_eq!(
            String::from_utf8(wire).unwrap(),
            "(g1) guest\r\nhyp-exit: success\r\n(g1) -isolation\r\n(g2) other\r\n(g1) back\r\n"
        );
    }

    #[test]
    fn pieces_go_out_as_room_allows_and_the_hypervisor_waits_for_one_piece_only() {
        let mut backlog = Backlog::<64>::new();
        backlog.push_piece(1, b"one", true);
        backlog.push_piece(1, b"two", true);
        let mut wire = Vec::new();
        let mut room = 4;
        let more = backlog.send(|b| {
            if room == 0 {
                return false;
            }
            room -= 1;
            wire.push(b);
            true
        });
        assert!(more);
        assert_eq!(wire, b"(g1)");
        backlog.to_line_start(|b| wire.push(b));
        assert_eq!(
            wire, b"(g1) one\r\n",
            "only the piece in flight is finished"
        );
        drain(&mut backlog, &mut wire);
        assert_eq!(wire, b"(g1) one\r\n(g1) two\r\n");
        assert!(backlog.is_empty());
    }

    #[test]
    fn a_full_backlog_drops_whole_pieces_and_counts_them() {
        let mut backlog = Backlog::<16>::new();
        assert!(backlog.push_piece(1, b"12345678", true));
        assert!(!backlog.push_piece(1, b"x", true));
        assert_eq!(backlog.dropped(), (1, 1));
        let mut wire = Vec::new();
        drain(&mut backlog, &mut wire);
        assert_eq!(wire, b"(g1) 12345678\r\n");
        assert!(backlog.push_piece(1, b"x", true), "room again once sent");
    }

    #[derive(Clone, Debug)]
    enum Step {
        Piece {
            guest: u16,
            text: Vec<u8>,
            complete: bool,
        },
        Hypervisor,
        Send {
            room: usize,
        },
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            (
                1u16..4,
                proptest::collection::vec(b'a'..=b'z', 0..20),
                any::<bool>()
            )
                .prop_map(|(guest, text, complete)| Step::Piece {
                    guest,
                    text,
                    complete
                }),
            Just(Step::Hypervisor),
            (0usize..24).prop_map(|room| Step::Send { room }),
        ]
    }

    proptest::proptest! {
        /// Whatever the guests send, the hypervisor interjects and the FIFO takes: every
        /// line on the wire starts with a guest's tag or is the hypervisor's, and each
        /// guest's accepted text arrives whole and in order.
        #[test]
        fn every_line_is_tagged_or_the_hypervisors(
            steps in proptest::collection::vec(step(), 0..80),
        ) {
            let mut backlog = Backlog::<96>::new();
            let mut wire = Vec::new();
            let mut sent_text: [Vec<u8>; 4] = Default::default();
            for step in steps {
                match step {
                    Step::Piece { guest, text, complete } => {
                        if backlog.push_piece(guest, &text, complete) {
                            sent_text[usize::from(guest)].extend_from_slice(&text);
                        }
                    }
                    Step::Hypervisor => {
                        backlog.to_line_start(|b| wire.push(b));
                        wire.extend_from_slice(b"HYP\r\n");
                    }
                    Step::Send { mut room } => {
                        backlog.send(|b| {
                            if room == 0 { return false; }
                            room -= 1;
                            wire.push(b);
                            true
                        });
                    }
                }
            }
            drain(&mut backlog, &mut wire);
            let text = String::from_utf8(wire).unwrap();
            let mut received: [String; 4] = Default::default();
            for line in text.split("\r\n") {
                if line.is_empty() || line == "HYP" {
                    continue;
                }
                let (guest, body) = line
                    .strip_prefix("(g")
                    .and_then(|rest| rest.split_once(") "))
                    .unwrap_or_else(|| panic!("an untagged line: {line:?}"));
                let guest: usize = guest.parse().unwrap();
                proptest::prop_assert!(!body.contains("(g"), "two tags in one line: {line:?}");
                received[guest].push_str(body);
            }
            for guest in 1..4 {
                proptest::prop_assert_eq!(received[guest].as_bytes(), &sent_text[guest][..]);
            }
        }
    }
}
