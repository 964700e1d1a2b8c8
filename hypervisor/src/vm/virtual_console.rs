//! One guest's virtual console: its emulated PL011 ([`Vpl011`]) joined to the tagging of
//! its output ([`GuestLines`]). A register access goes to the UART; whatever the UART
//! transmitted is then cut into `(gN) ` lines for the physical console; the UART's
//! interrupt line is reported for the vGIC. Portable: the EL2 caller supplies where
//! lines go.

use crate::console::guest_output::GuestLines;
use crate::vm::mmio::AccessSize;
use crate::vm::vpl011::{AccessError, Vpl011};

/// A guest's console.
pub struct VirtualConsole {
    uart: Vpl011,
    lines: GuestLines,
}

impl VirtualConsole {
    /// The console of guest `guest` (1 for the first, as its `(g1) ` tag).
    pub fn new(guest: u16) -> Self {
        Self {
            uart: Vpl011::new(),
            lines: GuestLines::new(guest),
        }
    }

    /// A guest load from the UART frame.
    pub fn read(&mut self, offset: u64, size: AccessSize) -> Result<u32, AccessError> {
        self.uart.read(offset, size)
    }

    /// A guest store to the UART frame; each complete line it finishes goes to `emit`.
    pub fn write(
        &mut self,
        offset: u64,
        size: AccessSize,
        value: u32,
        emit: &mut impl FnMut(&[u8]),
    ) -> Result<(), AccessError> {
        self.uart.write(offset, size, value)?;
        self.drain(emit);
        Ok(())
    }

    /// Moves what the UART transmitted into lines.
    fn drain(&mut self, emit: &mut impl FnMut(&[u8])) {
        let lines = &mut self.lines;
        self.uart.drain_output(|byte| {
            lines.push(byte, emit);
            true
        });
    }

    /// Writes out a line the guest left unfinished (it powered off, or input focus
    /// moves to it and its prompt must show).
    pub fn flush(&mut self, emit: &mut impl FnMut(&[u8])) {
        self.drain(emit);
        self.lines.flush(emit);
    }

    /// Whether the guest left a line unfinished (a prompt waiting for input).
    pub fn has_partial_line(&self) -> bool {
        self.lines.has_partial_line()
    }

    /// Console input for the guest: `false` if its receive FIFO had no room.
    pub fn push_input(&mut self, byte: u8) -> bool {
        if self.uart.rx_space() == 0 {
            return false;
        }
        self.uart.push_rx(byte)
    }

    /// No more input for now (the PL011's receive timeout: tells the guest about
    /// characters below its FIFO trigger).
    pub fn input_idle(&mut self) {
        self.uart.rx_idle();
    }

    /// The UART's interrupt line (UARTMIS != 0), for the guest's SPI.
    pub fn irq_level(&self) -> bool {
        self.uart.irq_level()
    }

    /// Bytes the guest wrote while its transmit FIFO was full (ignoring TXFF).
    pub fn dropped_bytes(&self) -> u64 {
        self.uart.dropped_bytes()
    }

    /// Lines written in pieces because they were too long.
    pub fn cut_lines(&self) -> u64 {
        self.lines.cut_lines()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    const UARTDR: u64 = 0x000;
    const UARTCR: u64 = 0x030;
    const UARTIMSC: u64 = 0x038;
    const UARTFR: u64 = 0x018;
    const UARTEN_TXE_RXE: u32 = 1 | (1 << 8) | (1 << 9);

    fn enabled(guest: u16) -> VirtualConsole {
        let mut console = VirtualConsole::new(guest);
        let mut nothing = |_: &[u8]| panic!("no output expected");
        console
            .write(UARTCR, AccessSize::Word, UARTEN_TXE_RXE, &mut nothing)
            .unwrap();
        console
    }

    fn print(console: &mut VirtualConsole, text: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for &byte in text {
            console
                .write(
                    UARTDR,
                    AccessSize::Byte,
                    u32::from(byte),
                    &mut |line: &[u8]| out.push(line.to_vec()),
                )
                .unwrap();
        }
        out
    }

    #[test]
    fn guest_lines_come_out_tagged_and_whole() {
        let mut console = enabled(1);
        let lines = print(&mut console, b"hello\r\nhyp-exit: success\n# ");
        assert_eq!(
            lines,
            [
                b"(g1) hello\n".to_vec(),
                b"(g1) hyp-exit: success\n".to_vec()
            ]
        );
        let mut rest = Vec::new();
        console.flush(&mut |line: &[u8]| rest.push(line.to_vec()));
        assert_eq!(rest, [b"(g1) # \n".to_vec()]);
    }

    #[test]
    fn input_reaches_the_guest_and_raises_its_interrupt() {
        let mut console = enabled(2);
        let mut nothing = |_: &[u8]| {};
        const RXIM: u32 = 1 << 4;
        const RTIM: u32 = 1 << 6;
        console
            .write(UARTIMSC, AccessSize::Word, RXIM | RTIM, &mut nothing)
            .unwrap();
        assert!(console.push_input(b'x'));
        // One character is below the RX trigger of the FIFOs a guest starts with: only
        // the receive timeout, which `input_idle` stands for, tells the guest.
        assert!(!console.irq_level());
        console.input_idle();
        assert!(console.irq_level());
        let flags = console.read(UARTFR, AccessSize::Word).unwrap();
        assert_eq!(flags & (1 << 4), 0, "RXFE clear");
        assert_eq!(
            console.read(UARTDR, AccessSize::Word).unwrap() & 0xff,
            u32::from(b'x')
        );
    }
}
