//! A guest's emulated PL011 UART (issue 16, "A virtual console"): the register state
//! machine behind the stage-2 hole at the console's address. Portable; the trap handler
//! decodes the access ([`crate::vm::mmio`]), calls [`Vpl011::read`] or [`Vpl011::write`]
//! with the offset into the 4 KiB frame, drains [`Vpl011::drain_output`] into the
//! console, and sets the guest's SPI to [`Vpl011::irq_level`]. Console input for the
//! guest with focus goes in through [`Vpl011::push_rx`] and [`Vpl011::rx_idle`].
//!
//! The model is the Arm PrimeCell UART (PL011) r1p5 of its Technical Reference Manual
//! (ARM DDI 0183G), reduced to what Linux's `amba-pl011` driver and its earlycon use:
//!
//! | offset | register | here |
//! |---|---|---|
//! | 0x000 | UARTDR | a write queues a byte for transmission; a read pops the receive FIFO: data in bits 7:0, its FE/PE/BE/OE error flags in bits 11:8 |
//! | 0x004 | UARTRSR/UARTECR | the error flags of the character last read, and OE as soon as an overrun happens; any write (ECR) clears them |
//! | 0x018 | UARTFR | TXFE, RXFF, TXFF, RXFE, BUSY from the FIFOs; the modem inputs CTS/DSR/DCD/RI read 0, as QEMU's PL011 reports them |
//! | 0x020..0x02c | UARTILPR, UARTIBRD, UARTFBRD, UARTLCR_H | stored and read back (there is no wire: baud rate, word length, parity and stop bits change nothing); LCR_H.FEN selects 32-entry FIFOs or 1-entry holding registers |
//! | 0x030 | UARTCR | UARTEN with TXE/RXE gate the transmitter and receiver; everything else is stored |
//! | 0x034 | UARTIFLS | the FIFO trigger levels of the TX and RX interrupts |
//! | 0x038..0x044 | UARTIMSC, UARTRIS, UARTMIS, UARTICR | mask, raw and masked status, write-1-to-clear |
//! | 0x048 | UARTDMACR | no DMA: reads 0, writes ignored |
//! | 0xfe0..0xffc | UARTPeriphID0-3, UARTPCellID0-3 | 0x00341011 (a PL011 r1p5, so Linux uses 32-entry FIFOs) and 0xb105f00d, which Linux's AMBA bus matches |
//!
//! Other offsets in the frame are reserved: they read as zero and ignore writes.
//!
//! **Transmit.** The transmitter is infinitely fast: while the UART and its transmitter
//! are enabled, a byte written to UARTDR goes straight through the TX FIFO into a bounded
//! output buffer ([`OUTPUT_CAPACITY`] bytes) that the hypervisor drains. Only when the
//! hypervisor stops draining does the output buffer fill, then the TX FIFO: a polling
//! guest sees UARTFR.TXFF and waits, an interrupt-driven one waits for the TX
//! interrupt. A byte written while the TX FIFO is full (a guest ignoring TXFF) is dropped
//! and counted ([`Vpl011::dropped_bytes`]), so a flooding guest never holds the
//! hypervisor up: nothing here blocks, and nothing grows.
//!
//! **Receive.** [`Vpl011::push_rx`] delivers one byte from the hypervisor's console; the
//! receive FIFO holds 32 entries (1 without FEN). A byte arriving at a full FIFO is lost,
//! and the loss is reported as the TRM's overrun: UARTRSR.OE, OERIS, and the OE flag on
//! the newest character in the FIFO (the one after which data is missing).
//! [`Vpl011::rx_space`] lets the hypervisor hold input back instead.
//!
//! **Interrupts** (TRM "Interrupts"). The TX and RX interrupts follow the TRM's
//! transitions through the trigger level, not the level itself, as Linux expects
//! (`pl011_enable_interrupts`, `pl011_start_tx_pio`):
//! - TXRIS is set when a byte leaves the TX FIFO and the FIFO falls to or below its
//!   trigger (UARTIFLS.TXIFLSEL; with FIFOs off, when the holding register empties); it
//!   is cleared by a write that fills the FIFO above the trigger, or by UARTICR. So a
//!   guest whose bytes leave at once sees TXRIS only with FIFOs off; with FIFOs on it is
//!   set once the hypervisor drains a backed-up FIFO to the trigger.
//! - RXRIS is set when a received character brings the RX FIFO up to its trigger
//!   (UARTIFLS.RXIFLSEL; with FIFOs off, any character); it is cleared by reads that take
//!   the FIFO below the trigger, or by UARTICR.
//! - RTRIS, the receive timeout ("not empty, and nothing received for 32 bit periods"),
//!   is set by [`Vpl011::rx_idle`], which the hypervisor calls when it has no more input
//!   for the guest for now; reads that empty the FIFO, or UARTICR, clear it.
//! - OERIS and BERIS are set by an overrun and by [`Vpl011::push_break`]; only UARTICR
//!   clears them. FERIS, PERIS and the modem-status interrupts never occur.
//!
//! The PL011's combined interrupt, [`Vpl011::irq_level`], is (UARTRIS & UARTIMSC) != 0;
//! the caller makes the guest's SPI follow it after every call that changes state.
//!
//! **Not modelled**: DMA, IrDA SIR, loopback (UARTCR.LBE), hardware flow control and the
//! modem lines, sending a break (UARTLCR_H.BRK), framing and parity errors, and the data
//! width of UARTLCR_H.WLEN (bytes are passed as they are).
//!
//! **Accesses.** Naturally aligned 8-, 16- and 32-bit loads and stores inside the frame
//! are emulated; a narrow access reads or writes its byte lanes of the 32-bit register
//! (Linux uses 16-bit accesses, its earlycon 8-bit stores to UARTDR unless `mmio32`).
//! Anything else is refused with an [`AccessError`] and changes nothing, so the caller
//! can inject an abort.

use crate::vm::mmio::AccessSize;

/// The size of the PL011's register frame.
pub const FRAME_SIZE: u64 = 0x1000;

/// Entries in each FIFO with UARTLCR_H.FEN set: 32 from r1p5 on (16 before).
pub const FIFO_DEPTH: usize = 32;

/// Bytes the output buffer holds between the transmitter and the hypervisor's console.
pub const OUTPUT_CAPACITY: usize = 256;

// Register offsets (TRM "Summary of registers").
const UARTDR: u64 = 0x000;
const UARTRSR_ECR: u64 = 0x004;
const UARTFR: u64 = 0x018;
const UARTILPR: u64 = 0x020;
const UARTIBRD: u64 = 0x024;
const UARTFBRD: u64 = 0x028;
const UARTLCR_H: u64 = 0x02c;
const UARTCR: u64 = 0x030;
const UARTIFLS: u64 = 0x034;
const UARTIMSC: u64 = 0x038;
const UARTRIS: u64 = 0x03c;
const UARTMIS: u64 = 0x040;
const UARTICR: u64 = 0x044;
const UARTDMACR: u64 = 0x048;
const UARTPERIPHID0: u64 = 0xfe0;
const UARTPCELLID3: u64 = 0xffc;

/// UARTPeriphID0-3 and UARTPCellID0-3, one byte per register: part number 0x011,
/// designer 0x41 (Arm), revision 3 (r1p5: 32-entry FIFOs), then the PrimeCell ID.
const ID_BYTES: [u8; 8] = [0x11, 0x10, 0x34, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

// UARTDR read (and receive FIFO entry) error flags; UARTRSR has them in bits 3:0.
const DR_OE: u16 = 1 << 11;
const DR_BE: u16 = 1 << 10;
const RSR_OE: u32 = 1 << 3;

// UARTFR.
const FR_BUSY: u32 = 1 << 3;
const FR_RXFE: u32 = 1 << 4;
const FR_TXFF: u32 = 1 << 5;
const FR_RXFF: u32 = 1 << 6;
const FR_TXFE: u32 = 1 << 7;

// UARTLCR_H: FEN enables the FIFOs; WLEN = 0b11 is 8 bits.
const LCR_H_FEN: u32 = 1 << 4;
const LCR_H_WLEN_8: u32 = 0b11 << 5;

// UARTCR; bits 6:3 are reserved.
const CR_UARTEN: u32 = 1 << 0;
const CR_TXE: u32 = 1 << 8;
const CR_RXE: u32 = 1 << 9;
const CR_IMPLEMENTED: u32 = 0xff87;

// Interrupt bits, the same in UARTIMSC, UARTRIS, UARTMIS and UARTICR.
const INT_RX: u32 = 1 << 4;
const INT_TX: u32 = 1 << 5;
const INT_RT: u32 = 1 << 6;
const INT_BE: u32 = 1 << 9;
const INT_OE: u32 = 1 << 10;
const INT_ALL: u32 = 0x7ff;

/// UARTIFLS reset value: both triggers at half full.
const IFLS_RESET: u32 = 0b010_010;

/// The FIFO levels UARTIFLS selects, for a 32-entry FIFO: 1/8, 1/4, 1/2, 3/4 and 7/8 full.
/// The reserved encodings 0b101..=0b111 behave as 1/2, the reset value.
const TRIGGER_LEVELS: [usize; 8] = [4, 8, 16, 24, 28, 16, 16, 16];

/// Why an access to the frame is not emulated (the caller injects an abort).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessError {
    /// A 64-bit access: the PL011's registers are 32 bits, on a 32-bit bus.
    Size,
    /// Not naturally aligned.
    Unaligned,
    /// At or beyond the end of the 4 KiB frame.
    OutsideFrame,
}

/// A fixed-capacity FIFO: `len` entries from `head`, wrapping.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ring<T, const N: usize> {
    slots: [T; N],
    head: usize,
    len: usize,
}

impl<T: Copy, const N: usize> Ring<T, N> {
    const fn new(fill: T) -> Self {
        Self {
            slots: [fill; N],
            head: 0,
            len: 0,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn front(&self) -> Option<T> {
        if self.len == 0 {
            None
        } else {
            self.slots.get(self.head).copied()
        }
    }

    /// Appends `value`; false (and nothing changes) when full.
    fn push_back(&mut self, value: T) -> bool {
        if self.len >= N {
            return false;
        }
        if let Some(slot) = self.slots.get_mut((self.head + self.len) % N) {
            *slot = value;
            self.len += 1;
        }
        true
    }

    fn pop_front(&mut self) -> Option<T> {
        let value = self.front()?;
        self.head = (self.head + 1) % N;
        self.len -= 1;
        Some(value)
    }

    fn back_mut(&mut self) -> Option<&mut T> {
        let last = self.len.checked_sub(1)?;
        self.slots.get_mut((self.head + last) % N)
    }

    fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    #[cfg(test)]
    fn iter(&self) -> impl Iterator<Item = T> + '_ {
        (0..self.len).filter_map(|i| self.slots.get((self.head + i) % N).copied())
    }
}

/// Where an access lands: the 32-bit register, and the byte lanes it covers.
struct Lanes {
    register: u64,
    /// The access's lowest bit within the register (0, 8, 16 or 24).
    shift: u32,
    /// The access's width as a mask of its low bits (0xff, 0xffff or 0xffff_ffff).
    mask: u32,
}

impl Lanes {
    fn of(offset: u64, size: AccessSize) -> Result<Self, AccessError> {
        let mask = match size {
            AccessSize::Byte => 0xff,
            AccessSize::Half => 0xffff,
            AccessSize::Word => 0xffff_ffff,
            AccessSize::Double => return Err(AccessError::Size),
        };
        if offset >= FRAME_SIZE {
            return Err(AccessError::OutsideFrame);
        }
        if !offset.is_multiple_of(size.bytes()) {
            return Err(AccessError::Unaligned);
        }
        Ok(Self {
            register: offset & !3,
            shift: 8 * (offset & 3) as u32,
            mask,
        })
    }

    /// Whether the access includes bits 7:0, UARTDR's data byte.
    fn has_low_byte(&self) -> bool {
        self.shift == 0
    }
}

/// One guest's emulated PL011. See the module documentation for what is modelled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vpl011 {
    /// Receive FIFO: data in bits 7:0, error flags in 11:8 (as UARTDR reads them).
    rx: Ring<u16, FIFO_DEPTH>,
    /// Transmit FIFO: bytes the transmitter has not moved to `output` yet.
    tx: Ring<u8, FIFO_DEPTH>,
    /// Transmitted bytes the hypervisor has not drained yet.
    output: Ring<u8, OUTPUT_CAPACITY>,
    rsr: u32,
    ilpr: u32,
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    imsc: u32,
    ris: u32,
    dropped: u64,
}

impl Default for Vpl011 {
    fn default() -> Self {
        Self::new()
    }
}

impl Vpl011 {
    /// The UART as a boot loader hands it to an operating system: enabled, transmitter
    /// and receiver on, FIFOs on, 8 data bits, and the divisors of 115200 baud from a
    /// 24 MHz UARTCLK (QEMU virt's `apb-pclk`).
    ///
    /// This is what a guest gets: Linux's earlycon writes without enabling the UART,
    /// and its console reads the line settings back when UARTCR.UARTEN is set (a zero
    /// UARTIBRD would make it divide by zero).
    pub const fn new() -> Self {
        let mut uart = Self::at_reset();
        uart.cr |= CR_UARTEN;
        uart.lcr_h = LCR_H_WLEN_8 | LCR_H_FEN;
        uart.ibrd = 13;
        uart.fbrd = 1;
        uart
    }

    /// The TRM's reset values: UARTCR = 0x0300 (TXE and RXE, but UARTEN clear, so
    /// nothing moves until the guest sets it), UARTIFLS = 0x12, everything else zero.
    pub const fn at_reset() -> Self {
        Self {
            rx: Ring::new(0),
            tx: Ring::new(0),
            output: Ring::new(0),
            rsr: 0,
            ilpr: 0,
            ibrd: 0,
            fbrd: 0,
            lcr_h: 0,
            cr: CR_TXE | CR_RXE,
            ifls: IFLS_RESET,
            imsc: 0,
            ris: 0,
            dropped: 0,
        }
    }

    /// A guest's load of `size` at `offset` in the frame: the value, zero-extended.
    /// Reading UARTDR pops the receive FIFO (when the load includes the data byte).
    ///
    /// # Errors
    /// [`AccessError`] for an access the PL011 does not accept; nothing changes.
    pub fn read(&mut self, offset: u64, size: AccessSize) -> Result<u32, AccessError> {
        let lanes = Lanes::of(offset, size)?;
        let word = match lanes.register {
            UARTDR if lanes.has_low_byte() => self.read_dr(),
            UARTRSR_ECR => self.rsr,
            UARTFR => self.flags(),
            UARTILPR => self.ilpr,
            UARTIBRD => self.ibrd,
            UARTFBRD => self.fbrd,
            UARTLCR_H => self.lcr_h,
            UARTCR => self.cr,
            UARTIFLS => self.ifls,
            UARTIMSC => self.imsc,
            UARTRIS => self.ris,
            UARTMIS => self.ris & self.imsc,
            UARTPERIPHID0..=UARTPCELLID3 => {
                let index = ((lanes.register - UARTPERIPHID0) / 4) as usize;
                ID_BYTES.get(index).copied().map_or(0, u32::from)
            }
            // No DMA: the driver finds TXDMAE/RXDMAE never stick.
            UARTDMACR => 0,
            // UARTDR's upper bytes alone (no pop), UARTICR (write-only) and the reserved
            // offsets.
            _ => 0,
        };
        Ok((word >> lanes.shift) & lanes.mask)
    }

    /// A guest's store of the low `size` bytes of `value` at `offset` in the frame.
    /// A narrow store changes only its byte lanes of the register; a store to UARTDR
    /// transmits only if it includes the data byte (bits 7:0).
    ///
    /// # Errors
    /// [`AccessError`] for an access the PL011 does not accept; nothing changes.
    pub fn write(&mut self, offset: u64, size: AccessSize, value: u32) -> Result<(), AccessError> {
        let lanes = Lanes::of(offset, size)?;
        let bits = (value & lanes.mask) << lanes.shift;
        let covered = lanes.mask << lanes.shift;
        let merge = |old: u32| (old & !covered) | bits;
        match lanes.register {
            UARTDR if lanes.has_low_byte() => self.write_dr(bits as u8),
            // UARTECR: any write clears the error flags.
            UARTRSR_ECR => self.rsr = 0,
            UARTILPR => self.ilpr = merge(self.ilpr) & 0xff,
            UARTIBRD => self.ibrd = merge(self.ibrd) & 0xffff,
            UARTFBRD => self.fbrd = merge(self.fbrd) & 0x3f,
            UARTLCR_H => self.write_lcr_h(merge(self.lcr_h) & 0xff),
            UARTCR => {
                self.cr = merge(self.cr) & CR_IMPLEMENTED;
                // Enabling the transmitter sends what waited in the TX FIFO.
                self.transmit();
            }
            UARTIFLS => self.ifls = merge(self.ifls) & 0x3f,
            UARTIMSC => self.imsc = merge(self.imsc) & INT_ALL,
            UARTICR => self.ris &= !(bits & INT_ALL),
            // No DMA.
            UARTDMACR => {}
            // UARTDR's upper bytes alone, the read-only UARTFR, UARTRIS, UARTMIS and ID
            // registers, and the reserved offsets.
            _ => {}
        }
        Ok(())
    }

    /// Delivers one byte of console input. True if the receive FIFO took it; false if
    /// the receiver is disabled (UARTCR.UARTEN or RXE clear: the byte was not received)
    /// or the FIFO was full (an overrun: the byte is lost, UARTRSR.OE and OERIS are set,
    /// and the newest character in the FIFO carries OE).
    pub fn push_rx(&mut self, byte: u8) -> bool {
        self.receive(u16::from(byte))
    }

    /// Delivers a break condition (Linux's magic SysRq on a serial console): a NUL
    /// character with the BE flag, as the TRM loads one into the FIFO, and BERIS. The
    /// result is [`Vpl011::push_rx`]'s; BERIS is set whenever the receiver is enabled.
    pub fn push_break(&mut self) -> bool {
        if !self.receiver_enabled() {
            return false;
        }
        self.ris |= INT_BE;
        self.receive(DR_BE)
    }

    /// How many bytes [`Vpl011::push_rx`] would take now without an overrun (zero when
    /// the receiver is disabled).
    pub fn rx_space(&self) -> usize {
        if self.receiver_enabled() {
            self.depth().saturating_sub(self.rx.len())
        } else {
            0
        }
    }

    /// The receive line has gone quiet: the hypervisor has no more input for the guest
    /// for now. Stands for the PL011's receive timeout, raising RTRIS if characters wait
    /// in the receive FIFO (below the RX trigger, RXRIS alone would never tell the
    /// guest about them).
    pub fn rx_idle(&mut self) {
        if !self.rx.is_empty() {
            self.ris |= INT_RT;
        }
    }

    /// Offers the transmitted bytes, oldest first, to `sink` until it returns false
    /// (that byte stays for next time) or none are left. Returns how many it took. The
    /// room it frees lets the TX FIFO move on, which may raise the TX interrupt.
    pub fn drain_output(&mut self, mut sink: impl FnMut(u8) -> bool) -> usize {
        let mut taken = 0;
        while let Some(byte) = self.output.front() {
            if !sink(byte) {
                break;
            }
            self.output.pop_front();
            taken += 1;
            self.transmit();
        }
        taken
    }

    /// Copies transmitted bytes into `buf`, oldest first, as many as fit; returns how
    /// many. [`Vpl011::drain_output`] into a slice.
    pub fn take_output(&mut self, buf: &mut [u8]) -> usize {
        let mut filled = 0;
        self.drain_output(|byte| match buf.get_mut(filled) {
            Some(slot) => {
                *slot = byte;
                filled += 1;
                true
            }
            None => false,
        });
        filled
    }

    /// Transmitted bytes waiting for the hypervisor.
    pub fn pending_output(&self) -> usize {
        self.output.len()
    }

    /// Bytes the guest wrote that were thrown away: written to UARTDR while the TX FIFO
    /// was full, or still in the TX FIFO when the guest cleared UARTLCR_H.FEN.
    pub fn dropped_bytes(&self) -> u64 {
        self.dropped
    }

    /// The PL011's combined interrupt output, UARTINTR: (UARTRIS & UARTIMSC) != 0. The
    /// guest's SPI is level-sensitive and follows it.
    pub fn irq_level(&self) -> bool {
        self.ris & self.imsc != 0
    }

    /// The FIFOs' depth: 32 with UARTLCR_H.FEN, else 1-entry holding registers.
    fn depth(&self) -> usize {
        if self.lcr_h & LCR_H_FEN != 0 {
            FIFO_DEPTH
        } else {
            1
        }
    }

    /// TXRIS is set when the TX FIFO falls to this level (UARTIFLS.TXIFLSEL), 0 (empty)
    /// without FIFOs.
    fn tx_trigger(&self) -> usize {
        if self.lcr_h & LCR_H_FEN != 0 {
            TRIGGER_LEVELS[(self.ifls & 0b111) as usize]
        } else {
            0
        }
    }

    /// RXRIS is set when the RX FIFO rises to this level (UARTIFLS.RXIFLSEL), 1 (full)
    /// without FIFOs.
    fn rx_trigger(&self) -> usize {
        if self.lcr_h & LCR_H_FEN != 0 {
            TRIGGER_LEVELS[((self.ifls >> 3) & 0b111) as usize]
        } else {
            1
        }
    }

    fn transmitter_enabled(&self) -> bool {
        self.cr & (CR_UARTEN | CR_TXE) == CR_UARTEN | CR_TXE
    }

    fn receiver_enabled(&self) -> bool {
        self.cr & (CR_UARTEN | CR_RXE) == CR_UARTEN | CR_RXE
    }

    /// UARTFR. BUSY is "the TX FIFO is not empty", regardless of UARTEN (TRM); what the
    /// transmitter has moved to the output buffer has left the UART.
    fn flags(&self) -> u32 {
        let depth = self.depth();
        let mut flags = 0;
        if self.tx.is_empty() {
            flags |= FR_TXFE;
        } else {
            flags |= FR_BUSY;
        }
        if self.tx.len() >= depth {
            flags |= FR_TXFF;
        }
        if self.rx.is_empty() {
            flags |= FR_RXFE;
        }
        if self.rx.len() >= depth {
            flags |= FR_RXFF;
        }
        flags
    }

    /// UARTDR read: the oldest received character with its error flags, which UARTRSR
    /// then reports (OE stays until UARTECR is written). An empty FIFO reads as 0.
    fn read_dr(&mut self) -> u32 {
        let Some(entry) = self.rx.pop_front() else {
            return 0;
        };
        self.rsr = (self.rsr & RSR_OE) | ((u32::from(entry) >> 8) & 0xf);
        let level = self.rx.len();
        if level < self.rx_trigger() {
            self.ris &= !INT_RX;
        }
        if level == 0 {
            self.ris &= !INT_RT;
        }
        u32::from(entry)
    }

    /// UARTDR write: into the TX FIFO if it has room (else dropped and counted), then
    /// on to the output buffer as far as the transmitter can.
    fn write_dr(&mut self, byte: u8) {
        if self.tx.len() >= self.depth() || !self.tx.push_back(byte) {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        if self.tx.len() > self.tx_trigger() {
            self.ris &= !INT_TX;
        }
        self.transmit();
    }

    /// The transmitter: moves bytes from the TX FIFO to the output buffer while it is
    /// enabled and the buffer has room, setting TXRIS as the FIFO falls to its trigger.
    fn transmit(&mut self) {
        if !self.transmitter_enabled() {
            return;
        }
        let trigger = self.tx_trigger();
        while self.output.len() < OUTPUT_CAPACITY {
            let level = self.tx.len();
            let Some(byte) = self.tx.pop_front() else {
                break;
            };
            self.output.push_back(byte);
            if level == trigger + 1 {
                self.ris |= INT_TX;
            }
        }
    }

    /// UARTLCR_H write. Clearing FEN flushes the transmit FIFO, as the TRM's
    /// reprogramming sequence says; the receive FIFO is flushed too, since a 1-entry
    /// holding register cannot keep 32 characters.
    fn write_lcr_h(&mut self, value: u32) {
        let fifos_were_on = self.lcr_h & LCR_H_FEN != 0;
        self.lcr_h = value;
        if fifos_were_on && value & LCR_H_FEN == 0 {
            self.dropped = self.dropped.saturating_add(self.tx.len() as u64);
            self.tx.clear();
            self.rx.clear();
            self.ris &= !(INT_RX | INT_RT);
        }
    }

    /// A character (with error flags in bits 11:8) arriving at the receiver.
    fn receive(&mut self, entry: u16) -> bool {
        if !self.receiver_enabled() {
            return false;
        }
        if self.rx.len() >= self.depth() || !self.rx.push_back(entry) {
            self.rsr |= RSR_OE;
            self.ris |= INT_OE;
            if let Some(newest) = self.rx.back_mut() {
                *newest |= DR_OE;
            }
            return false;
        }
        if self.rx.len() == self.rx_trigger() {
            self.ris |= INT_RX;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AccessSize::{Byte, Double, Half, Word};
    use std::collections::VecDeque;

    // Interrupt bits not named above.
    const INT_FE: u32 = 1 << 7;
    const INT_PE: u32 = 1 << 8;

    fn read(uart: &mut Vpl011, offset: u64) -> u32 {
        uart.read(offset, Word).unwrap()
    }

    fn write(uart: &mut Vpl011, offset: u64, value: u32) {
        uart.write(offset, Word, value).unwrap();
    }

    fn output(uart: &mut Vpl011) -> Vec<u8> {
        let mut bytes = Vec::new();
        uart.drain_output(|byte| {
            bytes.push(byte);
            true
        });
        bytes
    }

    fn rx_contents(uart: &Vpl011) -> Vec<u16> {
        uart.rx.iter().collect()
    }

    fn tx_contents(uart: &Vpl011) -> Vec<u8> {
        uart.tx.iter().collect()
    }

    /// Empties the output buffer, then writes bytes 0..=255 until it is full again, so
    /// that what the guest writes next backs up in the TX FIFO.
    fn fill_output(uart: &mut Vpl011) {
        output(uart);
        for i in 0..OUTPUT_CAPACITY {
            write(uart, UARTDR, i as u32);
        }
        assert_eq!(uart.pending_output(), OUTPUT_CAPACITY);
        assert!(uart.tx.is_empty());
    }

    #[test]
    fn reset_values_are_the_trms() {
        let mut uart = Vpl011::at_reset();
        assert_eq!(read(&mut uart, UARTFR), FR_TXFE | FR_RXFE);
        assert_eq!(read(&mut uart, UARTCR), 0x0300);
        assert_eq!(read(&mut uart, UARTIFLS), 0x12);
        for offset in [
            UARTDR,
            UARTRSR_ECR,
            UARTILPR,
            UARTIBRD,
            UARTFBRD,
            UARTLCR_H,
            UARTIMSC,
            UARTRIS,
            UARTMIS,
            UARTICR,
            UARTDMACR,
        ] {
            assert_eq!(read(&mut uart, offset), 0, "offset {offset:#x}");
        }
        assert!(!uart.irq_level());
    }

    #[test]
    fn a_guest_gets_an_enabled_uart_with_fifos_at_115200_8n1() {
        let mut uart = Vpl011::new();
        assert_eq!(read(&mut uart, UARTCR), 0x0301);
        assert_eq!(read(&mut uart, UARTLCR_H), 0x70);
        assert_eq!(read(&mut uart, UARTIBRD), 13);
        assert_eq!(read(&mut uart, UARTFBRD), 1);
        // Linux's pl011_console_get_options: uartclk * 4 / (64 * ibrd + fbrd).
        assert_eq!(24_000_000 * 4 / (64 * 13 + 1), 115_246);
        assert_eq!(Vpl011::default(), uart);
    }

    #[test]
    fn identification_registers_are_a_pl011_r1p5() {
        let mut uart = Vpl011::new();
        // Linux's amba_read_periphid: the low byte of each of the eight registers.
        let (mut pid, mut cid) = (0u32, 0u32);
        for i in 0..4 {
            pid |= (read(&mut uart, 0xfe0 + 4 * i) & 0xff) << (8 * i);
            cid |= (read(&mut uart, 0xff0 + 4 * i) & 0xff) << (8 * i);
        }
        assert_eq!(cid, 0xb105_f00d);
        assert_eq!(pid, 0x0034_1011);
        // The amba-pl011 ID table entry: id 0x00041011, mask 0x000fffff.
        assert_eq!(pid & 0x000f_ffff, 0x0004_1011);
        // amba_rev() >= 3: Linux's get_fifosize_arm() says 32.
        assert_eq!((pid >> 20) & 0xf, 3);
        // Read-only.
        write(&mut uart, 0xfe8, 0);
        assert_eq!(read(&mut uart, 0xfe8), 0x34);
        // The reserved ID expansion space below them reads as zero.
        assert_eq!(read(&mut uart, 0xfdc), 0);
    }

    #[test]
    fn stored_registers_keep_only_their_implemented_bits() {
        let mut uart = Vpl011::new();
        for (offset, implemented) in [
            (UARTILPR, 0xff),
            (UARTIBRD, 0xffff),
            (UARTFBRD, 0x3f),
            (UARTCR, 0xff87),
            (UARTIFLS, 0x3f),
            (UARTIMSC, 0x7ff),
            (UARTLCR_H, 0xff),
        ] {
            write(&mut uart, offset, u32::MAX);
            assert_eq!(read(&mut uart, offset), implemented, "offset {offset:#x}");
            write(&mut uart, offset, 0);
            assert_eq!(read(&mut uart, offset), 0, "offset {offset:#x}");
        }
    }

    #[test]
    fn read_only_write_only_and_reserved_registers() {
        let mut uart = Vpl011::new();
        uart.push_rx(b'x');
        uart.rx_idle();
        let before = uart.clone();
        // UARTFR, UARTRIS and UARTMIS ignore writes; reserved offsets too.
        for offset in [UARTFR, UARTRIS, UARTMIS, 0x008, 0x01c, 0x04c, 0x080, 0xffc] {
            write(&mut uart, offset, u32::MAX);
        }
        assert_eq!(uart, before);
        // UARTDMACR: no DMA. UARTICR is write-only.
        write(&mut uart, UARTDMACR, 0b111);
        assert_eq!(read(&mut uart, UARTDMACR), 0);
        assert_eq!(read(&mut uart, UARTICR), 0);
        for offset in [0x008, 0x010, 0x01c, 0x04c, 0x100, 0xfd0] {
            assert_eq!(read(&mut uart, offset), 0, "offset {offset:#x}");
        }
        assert_eq!(uart, before);
    }

    #[test]
    fn accesses_the_pl011_does_not_take_are_refused_and_change_nothing() {
        let mut uart = Vpl011::new();
        uart.push_rx(b'a');
        let before = uart.clone();
        assert_eq!(uart.read(UARTDR, Double), Err(AccessError::Size));
        assert_eq!(uart.write(UARTDR, Double, 0x41), Err(AccessError::Size));
        assert_eq!(uart.read(0x001, Half), Err(AccessError::Unaligned));
        assert_eq!(uart.write(0x002, Word, 0x41), Err(AccessError::Unaligned));
        assert_eq!(uart.read(0x1000, Byte), Err(AccessError::OutsideFrame));
        assert_eq!(
            uart.write(u64::MAX, Byte, 0),
            Err(AccessError::OutsideFrame)
        );
        assert_eq!(uart, before);
        assert_eq!(uart.pending_output(), 0);
        assert_eq!(rx_contents(&uart), [u16::from(b'a')]);
    }

    #[test]
    fn narrow_accesses_use_their_byte_lanes() {
        let mut uart = Vpl011::new();
        assert_eq!(uart.read(UARTCR, Half), Ok(0x0301));
        assert_eq!(uart.read(UARTCR + 1, Byte), Ok(0x03));
        assert_eq!(uart.read(UARTCR + 2, Half), Ok(0));
        // A byte store to bits 15:8 of UARTCR: RXE off, UARTEN kept.
        uart.write(UARTCR + 1, Byte, 0x01).unwrap();
        assert_eq!(read(&mut uart, UARTCR), 0x0101);
        // UARTIMSC bits 10:8 (OEIM, BEIM, PEIM) through their own byte.
        uart.write(UARTIMSC + 1, Byte, 0xff).unwrap();
        assert_eq!(read(&mut uart, UARTIMSC), 0x700);
        // UARTICR through the upper byte clears OEIS only.
        uart.ris = INT_OE | INT_RX;
        uart.write(UARTICR + 1, Byte, 0x04).unwrap();
        assert_eq!(read(&mut uart, UARTRIS), INT_RX);
        // UARTFR as Linux reads it without mmio32: a 16-bit load.
        assert_eq!(uart.read(UARTFR, Half), Ok(FR_TXFE | FR_RXFE));
    }

    #[test]
    fn data_register_lanes() {
        let mut uart = Vpl011::new();
        // earlycon=pl011,<addr> stores bytes; the driver stores half-words.
        uart.write(UARTDR, Byte, u32::from(b'h')).unwrap();
        uart.write(UARTDR, Half, 0xff00 | u32::from(b'i')).unwrap();
        // A store to UARTDR's upper bytes alone transmits nothing.
        uart.write(UARTDR + 1, Byte, u32::from(b'!')).unwrap();
        uart.write(UARTDR + 2, Half, u32::from(b'!')).unwrap();
        assert_eq!(output(&mut uart), b"hi");

        uart.push_rx(b'x');
        uart.push_rx(b'y');
        // A load of the upper bytes alone reads zero and leaves the FIFO alone.
        assert_eq!(uart.read(UARTDR + 1, Byte), Ok(0));
        assert_eq!(uart.read(UARTDR + 2, Half), Ok(0));
        assert_eq!(uart.read(UARTDR, Byte), Ok(u32::from(b'x')));
        assert_eq!(uart.read(UARTDR, Half), Ok(u32::from(b'y')));
        // Empty: reads as zero, RXFE set.
        assert_eq!(read(&mut uart, UARTDR), 0);
        assert_eq!(read(&mut uart, UARTFR) & FR_RXFE, FR_RXFE);
    }

    /// Linux's earlycon `pl011_putc`: wait while TXFF, store, wait while BUSY.
    fn earlycon_putc(uart: &mut Vpl011, byte: u8, size: AccessSize, sink: &mut Vec<u8>) {
        // Each poll is a trap; the hypervisor drains one byte per trap here (a slow sink).
        let mut trap = |uart: &mut Vpl011| {
            let mut room = 1;
            uart.drain_output(|b| {
                if room == 0 {
                    return false;
                }
                room -= 1;
                sink.push(b);
                true
            });
        };
        let mut polls = 0;
        while read(uart, UARTFR) & FR_TXFF != 0 {
            trap(uart);
            polls += 1;
            assert!(polls < 10_000, "TXFF never cleared");
        }
        uart.write(UARTDR, size, u32::from(byte)).unwrap();
        trap(uart);
        while read(uart, UARTFR) & FR_BUSY != 0 {
            trap(uart);
            polls += 1;
            assert!(polls < 10_000, "BUSY never cleared");
        }
    }

    #[test]
    fn linux_earlycon_writes_through_txff_and_busy() {
        let message: Vec<u8> = b"Booting Linux on physical CPU 0x0000000000 [0x000f0510]\n"
            .iter()
            .copied()
            .cycle()
            .take(1000)
            .collect();
        for size in [Byte, Word] {
            let mut uart = Vpl011::new();
            let mut sink = Vec::new();
            for &byte in &message {
                earlycon_putc(&mut uart, byte, size, &mut sink);
            }
            sink.extend(output(&mut uart));
            assert_eq!(sink, message);
            assert_eq!(uart.dropped_bytes(), 0);
        }
        // Without FIFOs (1-entry holding register) and a stalled sink as well.
        let mut uart = Vpl011::new();
        write(&mut uart, UARTLCR_H, LCR_H_WLEN_8);
        fill_output(&mut uart);
        write(&mut uart, UARTDR, u32::from(b'A'));
        assert_eq!(read(&mut uart, UARTFR), FR_TXFF | FR_BUSY | FR_RXFE);
        let mut sink = Vec::new();
        earlycon_putc(&mut uart, b'B', Byte, &mut sink);
        sink.extend(output(&mut uart));
        assert_eq!(sink.len(), OUTPUT_CAPACITY + 2);
        assert_eq!(&sink[OUTPUT_CAPACITY..], b"AB");
        assert_eq!(uart.dropped_bytes(), 0);
    }

    #[test]
    fn a_disabled_transmitter_keeps_bytes_in_the_fifo() {
        let mut uart = Vpl011::at_reset();
        write(&mut uart, UARTDR, u32::from(b'a'));
        // FIFOs off at reset: the holding register is full, BUSY regardless of UARTEN.
        assert_eq!(read(&mut uart, UARTFR), FR_TXFF | FR_BUSY | FR_RXFE);
        assert_eq!(uart.pending_output(), 0);
        // Enabling the UART sends it.
        write(&mut uart, UARTCR, CR_UARTEN | CR_TXE | CR_RXE);
        assert_eq!(read(&mut uart, UARTFR), FR_TXFE | FR_RXFE);
        assert_eq!(output(&mut uart), b"a");
        // TXE clear holds bytes back too.
        write(&mut uart, UARTLCR_H, LCR_H_FEN);
        write(&mut uart, UARTCR, CR_UARTEN | CR_RXE);
        for &byte in b"held" {
            write(&mut uart, UARTDR, u32::from(byte));
        }
        assert_eq!(tx_contents(&uart), b"held");
        write(&mut uart, UARTCR, CR_UARTEN | CR_TXE | CR_RXE);
        assert_eq!(output(&mut uart), b"held");
    }

    #[test]
    fn a_flooding_guest_fills_the_fifo_then_loses_bytes_counted() {
        let mut uart = Vpl011::new();
        fill_output(&mut uart);
        assert_eq!(read(&mut uart, UARTFR), FR_TXFE | FR_RXFE);
        for i in 0..FIFO_DEPTH {
            assert_eq!(read(&mut uart, UARTFR) & FR_TXFF, 0);
            write(&mut uart, UARTDR, 0x80 | i as u32);
        }
        assert_eq!(read(&mut uart, UARTFR), FR_TXFF | FR_BUSY | FR_RXFE);
        for _ in 0..1000 {
            write(&mut uart, UARTDR, u32::from(b'X'));
        }
        assert_eq!(uart.dropped_bytes(), 1000);
        // What was accepted comes out in order, nothing else.
        let mut buf = [0u8; 100];
        assert_eq!(uart.take_output(&mut buf), 100);
        assert!(buf.iter().enumerate().all(|(i, &b)| b == i as u8));
        let rest = output(&mut uart);
        assert_eq!(rest.len(), OUTPUT_CAPACITY - 100 + FIFO_DEPTH);
        assert!(
            rest[OUTPUT_CAPACITY - 100..]
                .iter()
                .enumerate()
                .all(|(i, &b)| b == 0x80 | i as u8)
        );
        assert_eq!(read(&mut uart, UARTFR), FR_TXFE | FR_RXFE);
    }

    #[test]
    fn a_sink_that_refuses_keeps_the_byte() {
        let mut uart = Vpl011::new();
        for &byte in b"abc" {
            write(&mut uart, UARTDR, u32::from(byte));
        }
        let mut first = Vec::new();
        assert_eq!(
            uart.drain_output(|b| {
                first.push(b);
                first.len() < 2
            }),
            1
        );
        assert_eq!(first, b"ab");
        assert_eq!(uart.pending_output(), 2);
        let mut empty = [0u8; 0];
        assert_eq!(uart.take_output(&mut empty), 0);
        assert_eq!(output(&mut uart), b"bc");
    }

    #[test]
    fn the_tx_interrupt_fires_as_the_fifo_falls_through_its_trigger() {
        let mut uart = Vpl011::new();
        write(&mut uart, UARTIMSC, INT_TX);
        // FIFOs on, trigger 1/2 (16): bytes that leave at once never cross it.
        write(&mut uart, UARTDR, u32::from(b'a'));
        assert_eq!(read(&mut uart, UARTRIS), 0);
        fill_output(&mut uart);
        for _ in 0..FIFO_DEPTH {
            write(&mut uart, UARTDR, 0);
        }
        assert!(!uart.irq_level());
        // The hypervisor drains: the FIFO falls 32 -> 17, no interrupt; -> 16, TXRIS.
        let mut buf = [0u8; 16];
        assert_eq!(uart.take_output(&mut buf[..15]), 15);
        assert_eq!(uart.tx.len(), 17);
        assert!(!uart.irq_level());
        assert_eq!(uart.take_output(&mut buf[..1]), 1);
        assert_eq!(uart.tx.len(), 16);
        assert_eq!(read(&mut uart, UARTRIS), INT_TX);
        assert_eq!(read(&mut uart, UARTMIS), INT_TX);
        assert!(uart.irq_level());
        // Filling above the trigger clears it; so does UARTICR.
        write(&mut uart, UARTDR, 0);
        assert_eq!(read(&mut uart, UARTRIS), 0);
        uart.take_output(&mut buf[..1]);
        assert_eq!(read(&mut uart, UARTRIS), INT_TX);
        write(&mut uart, UARTICR, INT_TX);
        assert!(!uart.irq_level());
        // Masked: RIS shows it, MIS and the line do not.
        write(&mut uart, UARTDR, 0);
        uart.take_output(&mut buf[..1]);
        write(&mut uart, UARTIMSC, 0);
        assert_eq!(read(&mut uart, UARTRIS), INT_TX);
        assert_eq!(read(&mut uart, UARTMIS), 0);
        assert!(!uart.irq_level());
    }

    #[test]
    fn tx_trigger_levels_follow_ifls() {
        for (txiflsel, trigger) in [(0, 4), (1, 8), (2, 16), (3, 24), (4, 28), (5, 16), (7, 16)] {
            let mut uart = Vpl011::new();
            write(&mut uart, UARTIFLS, txiflsel);
            fill_output(&mut uart);
            for _ in 0..FIFO_DEPTH {
                write(&mut uart, UARTDR, 0);
            }
            let mut byte = [0u8; 1];
            while uart.tx.len() > trigger + 1 {
                uart.take_output(&mut byte);
                assert_eq!(uart.ris, 0, "TXIFLSEL {txiflsel}");
            }
            uart.take_output(&mut byte);
            assert_eq!(uart.ris, INT_TX, "TXIFLSEL {txiflsel}");
        }
    }

    #[test]
    fn without_fifos_the_tx_interrupt_follows_the_holding_register() {
        let mut uart = Vpl011::new();
        write(&mut uart, UARTLCR_H, LCR_H_WLEN_8);
        write(&mut uart, UARTIMSC, INT_TX);
        // TRM: enabled before any data is written, the interrupt is not set.
        assert!(!uart.irq_level());
        // A byte leaves the holding register: TXRIS.
        write(&mut uart, UARTDR, u32::from(b'a'));
        assert!(uart.irq_level());
        write(&mut uart, UARTICR, INT_TX);
        assert!(!uart.irq_level());
        // Held back by a full output buffer: the write clears it, the drain sets it.
        fill_output(&mut uart);
        write(&mut uart, UARTICR, INT_TX);
        write(&mut uart, UARTDR, u32::from(b'b'));
        assert!(!uart.irq_level());
        uart.take_output(&mut [0u8; 1]);
        assert!(uart.irq_level());
    }

    #[test]
    fn the_rx_interrupt_fires_at_its_trigger_and_clears_below_it() {
        let mut uart = Vpl011::new();
        write(&mut uart, UARTIMSC, INT_RX);
        for i in 0..15 {
            assert!(uart.push_rx(i));
        }
        assert!(!uart.irq_level());
        assert!(uart.push_rx(15));
        assert_eq!(read(&mut uart, UARTRIS), INT_RX);
        assert!(uart.irq_level());
        assert!(uart.push_rx(16));
        assert_eq!(read(&mut uart, UARTDR), 0);
        assert!(uart.irq_level(), "17 -> 16 is still at the trigger");
        assert_eq!(read(&mut uart, UARTDR), 1);
        assert!(!uart.irq_level(), "15 is below it");
        // The TRM's transition: above the trigger after UARTICR it stays clear.
        assert!(uart.push_rx(17));
        assert!(uart.irq_level());
        write(&mut uart, UARTICR, INT_RX);
        assert!(uart.push_rx(18));
        assert!(!uart.irq_level());
        // RXIFLSEL 1/8 (4).
        let mut uart = Vpl011::new();
        write(&mut uart, UARTIFLS, 0);
        for i in 0..3 {
            uart.push_rx(i);
        }
        assert_eq!(uart.ris, 0);
        uart.push_rx(3);
        assert_eq!(uart.ris, INT_RX);
        // Without FIFOs any character raises it and reading it clears it.
        let mut uart = Vpl011::new();
        write(&mut uart, UARTLCR_H, LCR_H_WLEN_8);
        uart.push_rx(b'k');
        assert_eq!(uart.ris, INT_RX);
        assert_eq!(read(&mut uart, UARTFR), FR_TXFE | FR_RXFF);
        assert_eq!(read(&mut uart, UARTDR), u32::from(b'k'));
        assert_eq!(uart.ris, 0);
    }

    #[test]
    fn the_receive_timeout_reports_characters_below_the_trigger() {
        let mut uart = Vpl011::new();
        write(&mut uart, UARTIMSC, INT_RX | INT_RT);
        uart.rx_idle();
        assert!(!uart.irq_level(), "nothing to time out on");
        uart.push_rx(b'l');
        uart.push_rx(b's');
        assert!(!uart.irq_level());
        uart.rx_idle();
        assert_eq!(read(&mut uart, UARTMIS), INT_RT);
        // Reading one is not enough; emptying the FIFO clears it.
        read(&mut uart, UARTDR);
        assert!(uart.irq_level());
        read(&mut uart, UARTDR);
        assert!(!uart.irq_level());
        // So does UARTICR.
        uart.push_rx(b'\r');
        uart.rx_idle();
        write(&mut uart, UARTICR, INT_RT);
        assert!(!uart.irq_level());
        assert_eq!(rx_contents(&uart), [u16::from(b'\r')]);
    }

    #[test]
    fn an_overrun_is_reported_on_the_character_before_the_loss() {
        let mut uart = Vpl011::new();
        write(&mut uart, UARTIMSC, INT_OE);
        assert_eq!(uart.rx_space(), FIFO_DEPTH);
        for i in 0..FIFO_DEPTH as u8 {
            assert!(uart.push_rx(i));
        }
        assert_eq!(uart.rx_space(), 0);
        assert_eq!(read(&mut uart, UARTFR) & FR_RXFF, FR_RXFF);
        assert!(!uart.irq_level());
        assert!(!uart.push_rx(0xee));
        assert!(!uart.push_rx(0xef));
        assert_eq!(read(&mut uart, UARTRSR_ECR), RSR_OE);
        assert_eq!(read(&mut uart, UARTRIS) & INT_OE, INT_OE);
        assert!(uart.irq_level());
        for i in 0..FIFO_DEPTH as u32 - 1 {
            assert_eq!(read(&mut uart, UARTDR), i);
        }
        assert_eq!(read(&mut uart, UARTDR), u32::from(DR_OE) | 31);
        // OE stays in UARTRSR until UARTECR; OEIS until UARTICR.
        uart.push_rx(b'a');
        read(&mut uart, UARTDR);
        assert_eq!(read(&mut uart, UARTRSR_ECR), RSR_OE);
        uart.write(UARTRSR_ECR, Byte, 0).unwrap();
        assert_eq!(read(&mut uart, UARTRSR_ECR), 0);
        assert!(uart.irq_level());
        write(&mut uart, UARTICR, INT_OE);
        assert!(!uart.irq_level());
        // One-character holding register.
        write(&mut uart, UARTLCR_H, LCR_H_WLEN_8);
        assert_eq!(uart.rx_space(), 1);
        assert!(uart.push_rx(b'1'));
        assert!(!uart.push_rx(b'2'));
        assert_eq!(read(&mut uart, UARTDR), u32::from(DR_OE) | u32::from(b'1'));
    }

    #[test]
    fn a_disabled_receiver_takes_nothing() {
        let mut uart = Vpl011::new();
        write(&mut uart, UARTCR, CR_UARTEN | CR_TXE);
        assert_eq!(uart.rx_space(), 0);
        assert!(!uart.push_rx(b'a'));
        assert!(!uart.push_break());
        write(&mut uart, UARTCR, CR_TXE | CR_RXE);
        assert!(!uart.push_rx(b'a'));
        assert_eq!(uart.rsr, 0);
        assert_eq!(uart.ris, 0);
        assert!(uart.rx.is_empty());
    }

    #[test]
    fn a_break_is_a_nul_with_be() {
        let mut uart = Vpl011::new();
        write(&mut uart, UARTIMSC, INT_BE);
        assert!(uart.push_break());
        assert!(uart.irq_level());
        assert_eq!(read(&mut uart, UARTDR), u32::from(DR_BE));
        assert_eq!(read(&mut uart, UARTRSR_ECR), 1 << 2);
        // The next clean character replaces FE/PE/BE in UARTRSR.
        uart.push_rx(b'b');
        read(&mut uart, UARTDR);
        assert_eq!(read(&mut uart, UARTRSR_ECR), 0);
        write(&mut uart, UARTICR, INT_BE);
        assert!(!uart.irq_level());
        // Framing and parity errors never happen.
        assert_eq!(uart.ris & (INT_FE | INT_PE), 0);
    }

    #[test]
    fn clearing_fen_flushes_both_fifos() {
        let mut uart = Vpl011::new();
        fill_output(&mut uart);
        for &byte in b"lost" {
            write(&mut uart, UARTDR, u32::from(byte));
        }
        uart.push_rx(b'x');
        uart.rx_idle();
        write(&mut uart, UARTLCR_H, LCR_H_WLEN_8);
        assert!(uart.tx.is_empty() && uart.rx.is_empty());
        assert_eq!(uart.dropped_bytes(), 4);
        assert_eq!(uart.ris & (INT_RX | INT_RT), 0);
        assert_eq!(uart.pending_output(), OUTPUT_CAPACITY, "already sent");
        // Setting it again (Linux rewrites LCR_H with FEN at every set_termios) keeps
        // what is there.
        uart.push_rx(b'y');
        write(&mut uart, UARTLCR_H, LCR_H_WLEN_8 | LCR_H_FEN);
        write(&mut uart, UARTLCR_H, LCR_H_WLEN_8 | LCR_H_FEN);
        assert_eq!(rx_contents(&uart), [u16::from(b'y')]);
    }

    /// Linux's amba-pl011 driver reduced to its register traffic (16-bit accesses, as
    /// without `mmio32`): probe, console setup, open, and the interrupt handler.
    struct LinuxDriver {
        /// The driver's copy of UARTIMSC (`uap->im`).
        im: u32,
        xmit: VecDeque<u8>,
        received: Vec<u8>,
        overruns: usize,
        interrupts: usize,
    }

    impl LinuxDriver {
        fn r(uart: &mut Vpl011, offset: u64) -> u32 {
            uart.read(offset, Half).unwrap()
        }

        fn w(uart: &mut Vpl011, offset: u64, value: u32) {
            uart.write(offset, Half, value).unwrap();
        }

        /// amba_read_periphid, then pl011_probe's pl011_register_port and the console's
        /// pl011_console_setup (hwinit, get_options, set_termios), then pl011_startup.
        fn probe_and_open(uart: &mut Vpl011) -> Self {
            let (mut pid, mut cid) = (0, 0);
            for i in 0..4 {
                pid |= (read(uart, 0xfe0 + 4 * i) & 0xff) << (8 * i);
                cid |= (read(uart, 0xff0 + 4 * i) & 0xff) << (8 * i);
            }
            assert_eq!((pid & 0x000f_ffff, cid), (0x0004_1011, 0xb105_f00d));
            Self::w(uart, UARTIMSC, 0);
            Self::w(uart, UARTICR, 0xffff);
            let mut driver = Self {
                im: 0,
                xmit: VecDeque::new(),
                received: Vec::new(),
                overruns: 0,
                interrupts: 0,
            };
            driver.hwinit(uart);
            // pl011_console_get_options: UARTEN is set, so it reads the line back.
            assert_ne!(Self::r(uart, UARTCR) & CR_UARTEN, 0);
            let (lcr_h, ibrd, fbrd) = (
                Self::r(uart, UARTLCR_H),
                Self::r(uart, UARTIBRD),
                Self::r(uart, UARTFBRD),
            );
            assert_eq!(lcr_h & 0x60, 0x60);
            assert_eq!(24_000_000 * 4 / (64 * ibrd + fbrd), 115_246);
            driver.set_termios(uart);
            // pl011_startup.
            driver.hwinit(uart);
            Self::w(uart, UARTIFLS, 0x12);
            let cr = Self::r(uart, UARTCR) & (3 << 10);
            Self::w(uart, UARTCR, cr | CR_UARTEN | CR_RXE | CR_TXE);
            Self::r(uart, UARTFR);
            // pl011_enable_interrupts.
            Self::w(uart, UARTICR, INT_RT | INT_RX);
            for _ in 0..2 * FIFO_DEPTH {
                if Self::r(uart, UARTFR) & FR_RXFE != 0 {
                    break;
                }
                Self::r(uart, UARTDR);
            }
            driver.im = INT_RT | INT_RX;
            Self::w(uart, UARTIMSC, driver.im);
            driver
        }

        fn hwinit(&mut self, uart: &mut Vpl011) {
            Self::w(uart, UARTICR, 0x780 | INT_RT | INT_RX);
            self.im = Self::r(uart, UARTIMSC);
            Self::w(uart, UARTIMSC, INT_RT | INT_RX);
        }

        fn set_termios(&mut self, uart: &mut Vpl011) {
            let old_cr = Self::r(uart, UARTCR);
            Self::w(uart, UARTCR, 0);
            Self::w(uart, UARTFBRD, 1);
            Self::w(uart, UARTIBRD, 13);
            Self::w(uart, UARTLCR_H, LCR_H_WLEN_8 | LCR_H_FEN);
            Self::w(uart, UARTCR, old_cr);
        }

        /// pl011_tx_chars: from the interrupt, half a FIFO without looking at TXFF;
        /// otherwise until TXFF.
        fn tx_chars(&mut self, uart: &mut Vpl011, from_irq: bool) -> bool {
            let mut count = FIFO_DEPTH / 2;
            if self.xmit.is_empty() {
                self.stop_tx(uart);
                return false;
            }
            while let Some(&byte) = self.xmit.front() {
                if from_irq {
                    if count == 0 {
                        break;
                    }
                    count -= 1;
                } else if Self::r(uart, UARTFR) & FR_TXFF != 0 {
                    break;
                }
                Self::w(uart, UARTDR, u32::from(byte));
                self.xmit.pop_front();
            }
            if self.xmit.is_empty() {
                self.stop_tx(uart);
                return false;
            }
            true
        }

        fn stop_tx(&mut self, uart: &mut Vpl011) {
            self.im &= !INT_TX;
            Self::w(uart, UARTIMSC, self.im);
        }

        /// pl011_start_tx_pio.
        fn start_tx(&mut self, uart: &mut Vpl011) {
            if self.tx_chars(uart, false) {
                self.im |= INT_TX;
                Self::w(uart, UARTIMSC, self.im);
            }
        }

        /// pl011_int.
        fn interrupt(&mut self, uart: &mut Vpl011) {
            self.interrupts += 1;
            let mut status = Self::r(uart, UARTRIS) & self.im;
            let mut passes = 256;
            while status != 0 {
                Self::w(uart, UARTICR, status & !(INT_TX | INT_RT | INT_RX));
                if status & (INT_RT | INT_RX) != 0 {
                    // pl011_fifo_to_tty.
                    for _ in 0..256 {
                        if Self::r(uart, UARTFR) & FR_RXFE != 0 {
                            break;
                        }
                        let data = Self::r(uart, UARTDR);
                        if data & u32::from(DR_OE) != 0 {
                            self.overruns += 1;
                        }
                        self.received.push(data as u8);
                    }
                }
                if status & INT_TX != 0 {
                    self.tx_chars(uart, true);
                }
                if passes == 0 {
                    break;
                }
                passes -= 1;
                status = Self::r(uart, UARTRIS) & self.im;
            }
        }
    }

    #[test]
    fn linux_probes_and_opens_then_transmits_by_interrupt() {
        let mut uart = Vpl011::new();
        let mut linux = LinuxDriver::probe_and_open(&mut uart);
        assert_eq!(read(&mut uart, UARTIMSC), INT_RT | INT_RX);
        assert_eq!(read(&mut uart, UARTIFLS), 0x12);
        assert!(!uart.irq_level());

        // A large write while the hypervisor's console takes 40 bytes per tick.
        let message: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        linux.xmit.extend(&message);
        linux.start_tx(&mut uart);
        assert!(!linux.xmit.is_empty(), "more than the buffers hold");
        assert_ne!(linux.im & INT_TX, 0);
        let mut console = Vec::new();
        for _ in 0..10_000 {
            let mut budget = 40;
            uart.drain_output(|byte| {
                if budget == 0 {
                    return false;
                }
                budget -= 1;
                console.push(byte);
                true
            });
            if uart.irq_level() {
                linux.interrupt(&mut uart);
            }
            if linux.xmit.is_empty() && uart.pending_output() == 0 && uart.tx.is_empty() {
                break;
            }
        }
        assert_eq!(console, message);
        assert_eq!(uart.dropped_bytes(), 0);
        assert!(linux.interrupts > 10);
        assert_eq!(linux.im & INT_TX, 0, "stop_tx once done");
        assert!(!uart.irq_level());

        // With the console keeping up, start_tx sends everything and never needs TXIM.
        linux.xmit.extend(b"login: ");
        linux.start_tx(&mut uart);
        assert_eq!(output(&mut uart), b"login: ");
        assert_eq!(linux.im & INT_TX, 0);
        assert!(!uart.irq_level());
    }

    #[test]
    fn linux_receives_by_interrupt_and_timeout() {
        let mut uart = Vpl011::new();
        let mut linux = LinuxDriver::probe_and_open(&mut uart);

        // Typing: one character at a time, the line idle after each.
        for &key in b"ls -l\r" {
            assert!(uart.push_rx(key));
            assert!(!uart.irq_level(), "below the trigger");
            uart.rx_idle();
            assert!(uart.irq_level());
            linux.interrupt(&mut uart);
            assert!(!uart.irq_level());
        }
        assert_eq!(linux.received, b"ls -l\r");

        // A paste of 500 bytes, offered 24 per tick while the FIFO has room.
        linux.received.clear();
        let paste: Vec<u8> = (0..500u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut input: VecDeque<u8> = paste.iter().copied().collect();
        for _ in 0..1000 {
            let mut offered = 0;
            while offered < 24 && uart.rx_space() > 0 {
                let Some(byte) = input.pop_front() else {
                    break;
                };
                assert!(uart.push_rx(byte));
                offered += 1;
            }
            if input.is_empty() {
                uart.rx_idle();
            }
            if uart.irq_level() {
                linux.interrupt(&mut uart);
            }
            if input.is_empty() && uart.rx.is_empty() {
                break;
            }
        }
        assert_eq!(linux.received, paste);
        assert_eq!(linux.overruns, 0);

        // Pushing 40 at once without looking loses 8, and Linux counts an overrun.
        linux.received.clear();
        let accepted = (0..40u8).filter(|&i| uart.push_rx(i)).count();
        assert_eq!(accepted, FIFO_DEPTH);
        assert!(uart.irq_level());
        linux.interrupt(&mut uart);
        assert_eq!(linux.received, (0..32u8).collect::<Vec<_>>());
        assert_eq!(linux.overruns, 1);
        // Linux leaves OEIM masked: OERIS stays raw, the line is low.
        assert_eq!(read(&mut uart, UARTRIS), INT_OE);
        assert!(!uart.irq_level());
    }

    /// The reference: the same UART written as plainly as possible over VecDeques, with
    /// trigger crossings judged over whole transfers rather than byte by byte.
    #[derive(Clone, Debug, Default)]
    struct Model {
        rx: VecDeque<u16>,
        tx: VecDeque<u8>,
        out: VecDeque<u8>,
        rsr: u32,
        ilpr: u32,
        ibrd: u32,
        fbrd: u32,
        lcr_h: u32,
        cr: u32,
        ifls: u32,
        imsc: u32,
        ris: u32,
        dropped: u64,
        /// Bytes the guest stored to UARTDR, and bytes the hypervisor took.
        written: u64,
        taken: u64,
    }

    impl Model {
        fn new() -> Self {
            Self {
                lcr_h: 0x70,
                cr: 0x301,
                ibrd: 13,
                fbrd: 1,
                ifls: 0x12,
                ..Self::default()
            }
        }

        fn fifos(&self) -> bool {
            self.lcr_h & 0x10 != 0
        }

        fn depth(&self) -> usize {
            if self.fifos() { 32 } else { 1 }
        }

        fn level(&self, sel: u32) -> usize {
            match sel & 7 {
                0 => 4,
                1 => 8,
                3 => 24,
                4 => 28,
                _ => 16,
            }
        }

        fn tx_trigger(&self) -> usize {
            if self.fifos() {
                self.level(self.ifls)
            } else {
                0
            }
        }

        fn rx_trigger(&self) -> usize {
            if self.fifos() {
                self.level(self.ifls >> 3)
            } else {
                1
            }
        }

        fn fr(&self) -> u32 {
            let d = self.depth();
            (u32::from(self.tx.is_empty()) << 7)
                | (u32::from(self.rx.len() >= d) << 6)
                | (u32::from(self.tx.len() >= d) << 5)
                | (u32::from(self.rx.is_empty()) << 4)
                | (u32::from(!self.tx.is_empty()) << 3)
        }

        fn send(&mut self) {
            if self.cr & 0x101 != 0x101 {
                return;
            }
            let before = self.tx.len();
            let n = before.min(OUTPUT_CAPACITY - self.out.len());
            let t = self.tx_trigger();
            if n > 0 && before > t && before - n <= t {
                self.ris |= 0x20;
            }
            let moved: Vec<u8> = self.tx.drain(..n).collect();
            self.out.extend(moved);
        }

        fn rx_ok(&self) -> bool {
            self.cr & 0x201 == 0x201
        }

        fn receive(&mut self, entry: u16) -> bool {
            if !self.rx_ok() {
                return false;
            }
            if self.rx.len() == self.depth() {
                self.rsr |= 8;
                self.ris |= 0x400;
                if let Some(last) = self.rx.back_mut() {
                    *last |= 0x800;
                }
                return false;
            }
            let before = self.rx.len();
            self.rx.push_back(entry);
            if before < self.rx_trigger() && self.rx.len() >= self.rx_trigger() {
                self.ris |= 0x10;
            }
            true
        }

        fn decode(offset: u64, size: AccessSize) -> Result<(u64, u32, u32), AccessError> {
            let bytes = match size {
                Byte => 1,
                Half => 2,
                Word => 4,
                Double => return Err(AccessError::Size),
            };
            if offset > 0xfff {
                return Err(AccessError::OutsideFrame);
            }
            if !offset.is_multiple_of(bytes) {
                return Err(AccessError::Unaligned);
            }
            let mask = (u64::MAX >> (64 - 8 * bytes)) as u32;
            Ok((offset - offset % 4, (offset % 4) as u32 * 8, mask))
        }

        fn read(&mut self, offset: u64, size: AccessSize) -> Result<u32, AccessError> {
            let (reg, shift, mask) = Self::decode(offset, size)?;
            let full = match reg {
                0x00 if shift == 0 => match self.rx.pop_front() {
                    None => 0,
                    Some(e) => {
                        self.rsr = (self.rsr & 8) | u32::from(e >> 8);
                        if self.rx.len() < self.rx_trigger() {
                            self.ris &= !0x10;
                        }
                        if self.rx.is_empty() {
                            self.ris &= !0x40;
                        }
                        u32::from(e)
                    }
                },
                0x04 => self.rsr,
                0x18 => self.fr(),
                0x20 => self.ilpr,
                0x24 => self.ibrd,
                0x28 => self.fbrd,
                0x2c => self.lcr_h,
                0x30 => self.cr,
                0x34 => self.ifls,
                0x38 => self.imsc,
                0x3c => self.ris,
                0x40 => self.ris & self.imsc,
                0xfe0 => 0x11,
                0xfe4 => 0x10,
                0xfe8 => 0x34,
                0xff0 => 0x0d,
                0xff4 => 0xf0,
                0xff8 => 0x05,
                0xffc => 0xb1,
                _ => 0,
            };
            Ok((full >> shift) & mask)
        }

        fn write(&mut self, offset: u64, size: AccessSize, value: u32) -> Result<(), AccessError> {
            let (reg, shift, mask) = Self::decode(offset, size)?;
            let v = (value & mask) << shift;
            let keep = !(mask << shift);
            match reg {
                0x00 if shift == 0 => {
                    self.written += 1;
                    if self.tx.len() == self.depth() {
                        self.dropped += 1;
                    } else {
                        self.tx.push_back(v as u8);
                        if self.tx.len() > self.tx_trigger() {
                            self.ris &= !0x20;
                        }
                        self.send();
                    }
                }
                0x04 => self.rsr = 0,
                0x20 => self.ilpr = ((self.ilpr & keep) | v) & 0xff,
                0x24 => self.ibrd = ((self.ibrd & keep) | v) & 0xffff,
                0x28 => self.fbrd = ((self.fbrd & keep) | v) & 0x3f,
                0x2c => {
                    let new = ((self.lcr_h & keep) | v) & 0xff;
                    if self.fifos() && new & 0x10 == 0 {
                        self.dropped += self.tx.len() as u64;
                        self.tx.clear();
                        self.rx.clear();
                        self.ris &= !0x50;
                    }
                    self.lcr_h = new;
                }
                0x30 => {
                    self.cr = ((self.cr & keep) | v) & 0xff87;
                    self.send();
                }
                0x34 => self.ifls = ((self.ifls & keep) | v) & 0x3f,
                0x38 => self.imsc = ((self.imsc & keep) | v) & 0x7ff,
                0x44 => self.ris &= !v,
                _ => {}
            }
            Ok(())
        }

        /// The sink takes `n` bytes, then refuses.
        fn drain(&mut self, n: usize) -> usize {
            let mut taken = 0;
            while taken < n && !self.out.is_empty() {
                self.out.pop_front();
                taken += 1;
                self.send();
            }
            self.taken += taken as u64;
            taken
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Read(u64, AccessSize),
        Write(u64, AccessSize, u32),
        /// The guest stores this many bytes to UARTDR.
        Burst(u16),
        PushRx(u8),
        PushBreak,
        Idle,
        /// The hypervisor's sink takes this many bytes.
        Drain(u16),
    }

    fn ops() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let size = prop_oneof![Just(Byte), Just(Half), Just(Word), Just(Double)];
        let register = prop_oneof![
            prop::sample::select(vec![
                0x00u64, 0x04, 0x18, 0x20, 0x24, 0x28, 0x2c, 0x30, 0x34, 0x38, 0x3c, 0x40, 0x44,
                0x48, 0xfe0, 0xfe8, 0xffc,
            ])
            .prop_flat_map(|r| r..r + 4),
            0u64..0x1000,
            any::<u64>(),
        ];
        // UARTCR values that keep the UART running, often.
        let value = prop_oneof![
            any::<u32>(),
            Just(0x301u32),
            Just(0x70u32),
            Just(0x60u32),
            0u32..0x40,
        ];
        prop_oneof![
            3 => (register.clone(), size.clone()).prop_map(|(o, s)| Op::Read(o, s)),
            4 => (register, size, value).prop_map(|(o, s, v)| Op::Write(o, s, v)),
            2 => (0u64..0x50, Just(Word)).prop_map(|(o, s)| Op::Read(o & !3, s)),
            1 => Just(Op::Write(0x30, Word, 0x301)),
            1 => (0u16..400).prop_map(Op::Burst),
            2 => any::<u8>().prop_map(Op::PushRx),
            1 => Just(Op::PushBreak),
            1 => Just(Op::Idle),
            2 => (0u16..400).prop_map(Op::Drain),
        ]
    }

    fn check(uart: &Vpl011, model: &Model) -> Result<(), proptest::test_runner::TestCaseError> {
        use proptest::prop_assert_eq;
        prop_assert_eq!(rx_contents(uart), Vec::from(model.rx.clone()));
        prop_assert_eq!(tx_contents(uart), Vec::from(model.tx.clone()));
        prop_assert_eq!(
            uart.output.iter().collect::<Vec<_>>(),
            Vec::from(model.out.clone())
        );
        prop_assert_eq!(uart.flags(), model.fr());
        prop_assert_eq!(uart.ris, model.ris);
        prop_assert_eq!(uart.irq_level(), model.ris & model.imsc != 0);
        prop_assert_eq!(uart.dropped_bytes(), model.dropped);
        prop_assert_eq!(
            [
                uart.rsr, uart.ilpr, uart.ibrd, uart.fbrd, uart.lcr_h, uart.cr, uart.ifls,
                uart.imsc
            ],
            [
                model.rsr,
                model.ilpr,
                model.ibrd,
                model.fbrd,
                model.lcr_h,
                model.cr,
                model.ifls,
                model.imsc
            ]
        );
        // Nothing outgrows its bounds, and every byte the guest stored is accounted for.
        proptest::prop_assert!(uart.rx.len() <= uart.depth() && uart.tx.len() <= uart.depth());
        proptest::prop_assert!(uart.output.len() <= OUTPUT_CAPACITY);
        prop_assert_eq!(
            model.written,
            model.taken + uart.output.len() as u64 + uart.tx.len() as u64 + uart.dropped
        );
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(512))]

        /// Random guest accesses (any offset, size and value) and hypervisor calls: after
        /// every step the FIFOs, flags, interrupt state and counters equal the model's,
        /// loads return the model's values, and a refused access changes nothing.
        #[test]
        fn matches_a_reference_uart(ops in proptest::collection::vec(ops(), 1..300)) {
            let mut uart = Vpl011::new();
            let mut model = Model::new();
            check(&uart, &model)?;
            for op in ops {
                match op {
                    Op::Read(offset, size) => {
                        let before = uart.clone();
                        let got = uart.read(offset, size);
                        proptest::prop_assert_eq!(got, model.read(offset, size));
                        if got.is_err() {
                            proptest::prop_assert_eq!(&uart, &before);
                        }
                    }
                    Op::Write(offset, size, value) => {
                        let before = uart.clone();
                        let got = uart.write(offset, size, value);
                        proptest::prop_assert_eq!(got, model.write(offset, size, value));
                        if got.is_err() {
                            proptest::prop_assert_eq!(&uart, &before);
                        }
                    }
                    Op::Burst(n) => {
                        for i in 0..n {
                            let byte = u32::from(i as u8);
                            uart.write(UARTDR, Word, byte).unwrap();
                            model.write(UARTDR, Word, byte).unwrap();
                        }
                    }
                    Op::PushRx(byte) => {
                        proptest::prop_assert_eq!(uart.rx_space(), if model.rx_ok() {
                            model.depth() - model.rx.len()
                        } else {
                            0
                        });
                        proptest::prop_assert_eq!(uart.push_rx(byte), model.receive(u16::from(byte)));
                    }
                    Op::PushBreak => {
                        if model.rx_ok() {
                            model.ris |= 0x200;
                        }
                        proptest::prop_assert_eq!(uart.push_break(), model.receive(0x400));
                    }
                    Op::Idle => {
                        uart.rx_idle();
                        if !model.rx.is_empty() {
                            model.ris |= 0x40;
                        }
                    }
                    Op::Drain(n) => {
                        let mut budget = usize::from(n);
                        let taken = uart.drain_output(|_| {
                            budget = budget.wrapping_sub(1);
                            budget != usize::MAX
                        });
                        proptest::prop_assert_eq!(taken, model.drain(usize::from(n)));
                    }
                }
                check(&uart, &model)?;
            }
        }
    }
}
