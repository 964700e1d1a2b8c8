//! Minimal PL011 UART driver (ARM DDI 0183): enough for the hypervisor's console.
//!
//! The firmware or QEMU leaves the UART configured (baud rate, 8n1); like Linux's
//! earlycon we only make sure the transmitter is enabled and then write bytes. Input is
//! read when the receive interrupts (RX and receive timeout) say a character waits.

use core::ptr::NonNull;

const UARTDR: usize = 0x000;
const UARTFR: usize = 0x018;
const UARTCR: usize = 0x030;
const UARTIMSC: usize = 0x038;
const UARTICR: usize = 0x044;

/// UARTFR.TXFF: transmit FIFO full.
const FR_TXFF: u32 = 1 << 5;
/// UARTFR.RXFE: receive FIFO empty.
const FR_RXFE: u32 = 1 << 4;
/// UARTIMSC: TX interrupt (the transmit FIFO drained to its trigger level).
const INT_TX: u32 = 1 << 5;
/// UARTIMSC/UARTICR: RX (FIFO at its trigger) and RT (receive timeout) interrupts.
const INT_RX_AND_TIMEOUT: u32 = (1 << 4) | (1 << 6);
/// UARTCR.RXE.
const CR_RXE: u32 = 1 << 9;
/// UARTDR bits 11:8: framing, parity, break and overrun errors of the character.
const DR_ERRORS: u32 = 0xf00;
/// UARTFR.BUSY: still transmitting.
const FR_BUSY: u32 = 1 << 3;
/// UARTCR.UARTEN and UARTCR.TXE.
const CR_UARTEN: u32 = 1 << 0;
const CR_TXE: u32 = 1 << 8;

pub struct Pl011 {
    base: NonNull<u32>,
}

// SAFETY: the driver holds only an MMIO address; callers serialise access (a lock around
// the console), and the device registers themselves have no thread affinity.
unsafe impl Send for Pl011 {}

impl Pl011 {
    /// # Safety
    /// `base` must be the address (as currently mapped: physical while the MMU is off) of
    /// a PL011's 4 KiB register frame, accessible as device memory, and nothing else may
    /// drive the transmitter concurrently.
    pub const unsafe fn new(base: NonNull<u32>) -> Self {
        Self { base }
    }

    fn read(&self, offset: usize) -> u32 {
        // SAFETY: `offset` is one of the register offsets above, inside the 4 KiB frame
        // that `new`'s contract guarantees is mapped; MMIO needs a volatile access.
        unsafe { self.base.byte_add(offset).read_volatile() }
    }

    fn write(&mut self, offset: usize, value: u32) {
        // SAFETY: as in `read`.
        unsafe { self.base.byte_add(offset).write_volatile(value) }
    }

    /// Enables the UART and its transmitter if the firmware left them off.
    pub fn enable_transmitter(&mut self) {
        let cr = self.read(UARTCR);
        if cr & (CR_UARTEN | CR_TXE) != (CR_UARTEN | CR_TXE) {
            self.write(UARTCR, cr | CR_UARTEN | CR_TXE);
        }
    }

    /// Enables the receiver and its interrupts (RX at the FIFO trigger, and the receive
    /// timeout for characters below it), so typed input raises the UART's interrupt.
    pub fn enable_receive_interrupts(&mut self) {
        let cr = self.read(UARTCR);
        self.write(UARTCR, cr | CR_RXE);
        let imsc = self.read(UARTIMSC);
        self.write(UARTIMSC, imsc | INT_RX_AND_TIMEOUT);
    }

    /// The next received character, if one waits; characters received with an error
    /// (framing, parity, break, overrun) are skipped. Clears the receive interrupts once
    /// the FIFO is empty.
    pub fn read_byte(&mut self) -> Option<u8> {
        loop {
            if self.read(UARTFR) & FR_RXFE != 0 {
                self.write(UARTICR, INT_RX_AND_TIMEOUT);
                return None;
            }
            let data = self.read(UARTDR);
            if data & DR_ERRORS == 0 {
                return Some(data as u8);
            }
        }
    }

    /// Writes `byte` as is (no newline translation), waiting for FIFO room.
    pub fn write_raw_byte(&mut self, byte: u8) {
        while !self.try_write_raw(byte) {
            core::hint::spin_loop();
        }
    }

    /// Writes `byte` as is if the transmit FIFO has room; `false` if it is full.
    pub fn try_write_raw(&mut self, byte: u8) -> bool {
        if self.read(UARTFR) & FR_TXFF != 0 {
            return false;
        }
        self.write(UARTDR, u32::from(byte));
        true
    }

    /// Unmasks or masks the transmit interrupt, raised while the transmit FIFO is at or
    /// below its trigger level: on while queued output waits for room.
    pub fn set_transmit_interrupt(&mut self, enabled: bool) {
        let imsc = self.read(UARTIMSC);
        let wanted = if enabled {
            imsc | INT_TX
        } else {
            imsc & !INT_TX
        };
        if wanted != imsc {
            self.write(UARTIMSC, wanted);
        }
    }

    pub fn write_byte(&mut self, byte: u8) {
        while self.read(UARTFR) & FR_TXFF != 0 {
            core::hint::spin_loop();
        }
        self.write(UARTDR, u32::from(byte));
    }

    /// Writes `bytes`, turning `\n` into `\r\n` for terminals.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if byte == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(byte);
        }
    }

    /// Waits until the last byte has left the shift register (before powering off).
    pub fn flush(&self) {
        while self.read(UARTFR) & FR_BUSY != 0 {
            core::hint::spin_loop();
        }
    }
}

impl core::fmt::Write for Pl011 {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}
