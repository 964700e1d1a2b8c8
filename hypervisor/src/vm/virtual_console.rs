//! One guest's virtual console: its emulated PL011 ([`Vpl011`]) joined to the cutting of
//! its output into line pieces ([`GuestLines`], tagged `(gN) ` on the wire). A register
//! access goes to the UART; whatever the UART transmitted is then cut into pieces for the
//! physical console; the UART's interrupt line is reported for the vGIC. Portable: the
//! EL2 caller supplies where pieces go (`emit(content, complete)`).

use crate::console::guest_output::GuestLines;
use crate::vm::mmio::AccessSize;
use crate::vm::vpl011::{AccessError, Vpl011};

/// A guest's console.
pub struct VirtualConsole {
    uart: Vpl011,
    lines: GuestLines,
    guest: u16,
}

impl VirtualConsole {
    /// The console of guest `guest` (1 for the first, as its `(g1) ` tag).
    pub fn new(guest: u16) -> Self {
        Self {
            uart: Vpl011::new(),
            lines: GuestLines::new(),
            guest,
        }
    }

    /// A guest load from the UART frame.
    pub fn read(&mut self, offset: u64, size: AccessSize) -> Result<u32, AccessError> {
        self.uart.read(offset, size)
    }

    /// The guest's number (its tag).
    pub fn guest(&self) -> u16 {
        self.guest
    }

    /// A guest store to the UART frame; each line it finishes goes to `emit` as a
    /// complete piece.
    pub fn write(
        &mut self,
        offset: u64,
        size: AccessSize,
        value: u32,
        emit: &mut impl FnMut(&[u8], bool),
    ) -> Result<(), AccessError> {
        self.uart.write(offset, size, value)?;
        self.drain(emit);
        Ok(())
    }

    /// Moves what the UART transmitted into lines.
    fn drain(&mut self, emit: &mut impl FnMut(&[u8], bool)) {
        let lines = &mut self.lines;
        self.uart.drain_output(|byte| {
            lines.push(byte, emit);
            true
        });
    }

    /// Writes out the start of a line the guest left unfinished (a prompt, or it powered
    /// off) as an incomplete piece.
    pub fn flush(&mut self, emit: &mut impl FnMut(&[u8], bool)) {
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
        let mut nothing = |_: &[u8], _: bool| panic!("no output expected");
        console
            .write(UARTCR, AccessSize::Word, UARTEN_TXE_RXE, &mut nothing)
            .unwrap();
        console
    }

    fn print(console: &mut VirtualConsole, text: &[u8]) -> Vec<(Vec<u8>, bool)> {
        let mut out = Vec::new();
        for &byte in text {
            console
                .write(
                    UARTDR,
                    AccessSize::Byte,
                    u32::from(byte),
                    &mut |piece: &[u8], complete| out.push((piece.to_vec(), complete)),
                )
                .unwrap();
        }
        out
    }

    #[test]
    fn guest_lines_come_out_whole_and_a_prompt_on_flush() {
        let mut console = enabled(1);
        let pieces = print(&mut console, b"hello\r\nhyp-exit: success\n# ");
        assert_eq!(
            pieces,
            [
                (b"hello".to_vec(), true),
                (b"hyp-exit: success".to_vec(), true)
            ]
        );
        assert!(console.has_partial_line());
        let mut rest = Vec::new();
        console.flush(&mut |piece: &[u8], complete| rest.push((piece.to_vec(), complete)));
        assert_eq!(rest, [(b"# ".to_vec(), false)]);
        assert_eq!(console.guest(), 1);
    }

    #[test]
    fn input_reaches_the_guest_and_raises_its_interrupt() {
        let mut console = enabled(2);
        let mut nothing = |_: &[u8], _: bool| {};
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
