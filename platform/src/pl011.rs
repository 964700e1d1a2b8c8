//! Minimal PL011 UART transmitter (ARM DDI 0183): enough for the hypervisor's console.
//!
//! The firmware or QEMU leaves the UART configured (baud rate, 8n1); like Linux's
//! earlycon we only make sure the transmitter is enabled and then write bytes.

use core::ptr::NonNull;

const UARTDR: usize = 0x000;
const UARTFR: usize = 0x018;
const UARTCR: usize = 0x030;

/// UARTFR.TXFF: transmit FIFO full.
const FR_TXFF: u32 = 1 << 5;
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
