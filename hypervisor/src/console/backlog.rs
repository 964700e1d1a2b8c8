//! Guest console lines waiting for the physical UART. A guest never waits for the UART:
//! its tagged lines are queued here whole, and sent as the UART's transmit FIFO has room
//! (more when the UART's transmit interrupt says the FIFO drained). When the queue is
//! full a new line is dropped whole and counted, so a flooding guest loses its own
//! output and nothing else. The hypervisor's own lines do not queue behind a guest's
//! backlog: they wait only for the line being sent to finish ([`Backlog::finish_line`]),
//! so they are never cut into a guest's line and never wait for more than one line.
//! Portable: the UART is reached through a closure.

/// Bytes of guest lines that can wait (a few seconds of output at 115200 baud).
pub const BACKLOG_BYTES: usize = 16 * 1024;

/// The queue: a ring of bytes holding whole lines.
pub struct Backlog<const N: usize> {
    bytes: [u8; N],
    /// Index of the oldest byte.
    head: usize,
    len: usize,
    /// A line is partly sent: its rest must go before anything else is written.
    mid_line: bool,
    dropped_lines: u64,
    dropped_bytes: u64,
}

impl<const N: usize> Backlog<N> {
    pub const fn new() -> Self {
        Self {
            bytes: [0; N],
            head: 0,
            len: 0,
            mid_line: false,
            dropped_lines: 0,
            dropped_bytes: 0,
        }
    }

    /// Queues one whole line (newline included); `false` if it was dropped because it
    /// does not fit.
    pub fn push_line(&mut self, line: &[u8]) -> bool {
        if line.len() > N - self.len {
            self.dropped_lines += 1;
            self.dropped_bytes += line.len() as u64;
            return false;
        }
        for &byte in line {
            let tail = (self.head + self.len) % N;
            self.bytes[tail] = byte;
            self.len += 1;
        }
        true
    }

    /// Sends queued bytes while `send` accepts them (`send` returns `false` when the
    /// transmit FIFO is full). Returns whether anything is still queued.
    pub fn send(&mut self, mut send: impl FnMut(u8) -> bool) -> bool {
        while self.len > 0 {
            let byte = self.bytes[self.head];
            if !send(byte) {
                return true;
            }
            self.pop();
            self.mid_line = byte != b'\n';
        }
        false
    }

    /// Sends the rest of a partly sent line with `send_blocking` (which waits for FIFO
    /// room), so another writer can start at the beginning of a line.
    pub fn finish_line(&mut self, mut send_blocking: impl FnMut(u8)) {
        while self.mid_line && self.len > 0 {
            let byte = self.bytes[self.head];
            send_blocking(byte);
            self.pop();
            self.mid_line = byte != b'\n';
        }
        self.mid_line = false;
    }

    fn pop(&mut self) {
        self.head = (self.head + 1) % N;
        self.len -= 1;
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Lines dropped because the backlog was full, and their bytes.
    pub fn dropped(&self) -> (u64, u64) {
        (self.dropped_lines, self.dropped_bytes)
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
    use alloc::vec::Vec;

    #[test]
    fn lines_go_out_in_order_as_room_allows() {
        let mut backlog = Backlog::<64>::new();
        assert!(backlog.push_line(b"(g1) one\n"));
        assert!(backlog.push_line(b"(g1) two\n"));
        let mut wire = Vec::new();
        // A FIFO with room for 4 bytes at a time.
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
        // The hypervisor wants to write: the line in flight is finished first.
        backlog.finish_line(|b| wire.push(b));
        assert_eq!(wire, b"(g1) one\n");
        assert!(!backlog.send(|b| {
            wire.push(b);
            true
        }));
        assert_eq!(wire, b"(g1) one\n(g1) two\n");
        assert!(backlog.is_empty());
    }

    #[test]
    fn a_full_backlog_drops_whole_lines_and_counts_them() {
        let mut backlog = Backlog::<16>::new();
        assert!(backlog.push_line(b"(g1) 12345678\n"));
        assert!(!backlog.push_line(b"(g1) x\n"));
        assert_eq!(backlog.dropped(), (1, 7));
        let mut wire = Vec::new();
        backlog.send(|b| {
            wire.push(b);
            true
        });
        assert_eq!(wire, b"(g1) 12345678\n");
        assert!(backlog.push_line(b"(g1) x\n"), "room again once sent");
    }

    #[test]
    fn finishing_with_nothing_in_flight_sends_nothing() {
        let mut backlog = Backlog::<32>::new();
        backlog.push_line(b"(g1) a\n");
        backlog.finish_line(|_| panic!("no line is in flight"));
        let mut sent = 0;
        backlog.send(|_| {
            sent += 1;
            true
        });
        assert_eq!(sent, 7);
    }

    proptest::proptest! {
        /// Whatever the FIFO room and the line lengths, the wire carries exactly the
        /// accepted lines, whole and in order.
        #[test]
        fn the_wire_carries_exactly_the_accepted_lines(
            lines in proptest::collection::vec(proptest::collection::vec(b'a'..=b'z', 0..40), 0..40),
            rooms in proptest::collection::vec(0usize..20, 1..40),
        ) {
            let mut backlog = Backlog::<128>::new();
            let mut accepted = Vec::new();
            let mut wire = Vec::new();
            for (i, body) in lines.iter().enumerate() {
                let mut line = body.clone();
                line.push(b'\n');
                if backlog.push_line(&line) {
                    accepted.extend_from_slice(&line);
                }
                let mut room = rooms[i % rooms.len()];
                backlog.send(|b| {
                    if room == 0 { return false; }
                    room -= 1;
                    wire.push(b);
                    true
                });
            }
            backlog.send(|b| { wire.push(b); true });
            proptest::prop_assert_eq!(wire, accepted);
        }
    }
}
