//! The PL011 UART the DT's `/chosen/stdout-path` names: transmit only, as the firmware
//! (or the hypervisor) left it configured.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const UARTDR: u64 = 0x000;
const UARTFR: u64 = 0x018;
const FR_TXFF: u32 = 1 << 5;
const FR_BUSY: u32 = 1 << 3;
/// Spins on a full FIFO before a character is dropped (a wedged UART must not hang us).
const MAX_SPINS: u32 = 1_000_000;

static BASE: AtomicU64 = AtomicU64::new(0);
/// Serialises lines once a second CPU runs (exclusives need the MMU on, so the lock is
/// only taken after [`enable_lock`]).
static LOCK: AtomicBool = AtomicBool::new(false);
static LOCKING: AtomicBool = AtomicBool::new(false);

pub fn init(base: Option<u64>) {
    BASE.store(base.unwrap_or(0), Ordering::Relaxed);
}

/// From now on lines are printed under a lock (the MMU is on: memory is Normal).
pub fn enable_lock() {
    LOCKING.store(true, Ordering::Relaxed);
}

fn putc(base: u64, byte: u8) {
    // SAFETY: `base` is the PL011 the DT names, mapped as Device memory (or the MMU is
    // off); reading FR and writing DR have no other effect than sending the byte.
    unsafe {
        let fr = (base + UARTFR) as *const u32;
        let mut spins = 0;
        while fr.read_volatile() & FR_TXFF != 0 && spins < MAX_SPINS {
            spins += 1;
            core::hint::spin_loop();
        }
        ((base + UARTDR) as *mut u32).write_volatile(u32::from(byte));
    }
}

struct Uart(u64);

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                putc(self.0, b'\r');
            }
            putc(self.0, b);
        }
        Ok(())
    }
}

/// Prints `args`; whole calls do not interleave with other CPUs' once the lock is on.
pub fn print(args: fmt::Arguments<'_>) {
    let base = BASE.load(Ordering::Relaxed);
    if base == 0 {
        return;
    }
    let locking = LOCKING.load(Ordering::Relaxed);
    let mut locked = false;
    if locking {
        // Bounded: a CPU that died holding the lock (a fatal report) must not silence
        // the others for good.
        for _ in 0..50_000_000u32 {
            if LOCK
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                locked = true;
                break;
            }
            core::hint::spin_loop();
        }
    }
    let _ = Uart(base).write_fmt(args);
    if locked {
        LOCK.store(false, Ordering::Release);
    }
}

/// Waits until the UART has sent everything (before powering off).
pub fn flush() {
    let base = BASE.load(Ordering::Relaxed);
    if base == 0 {
        return;
    }
    // SAFETY: as in `putc`.
    unsafe {
        let fr = (base + UARTFR) as *const u32;
        let mut spins = 0;
        while fr.read_volatile() & FR_BUSY != 0 && spins < MAX_SPINS {
            spins += 1;
            core::hint::spin_loop();
        }
    }
}

/// Prints one line (a newline is added).
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::guest::console::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use say;
