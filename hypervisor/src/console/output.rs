//! The console: the PL011 the device tree names, behind a lock, and the `log` backend
//! that stamps each line with the time since boot (CNTPCT_EL0 / CNTFRQ_EL0).

use core::fmt::{self, Write};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::console::backlog::{BACKLOG_BYTES, Backlog};
use crate::console::guest_output::guest_tag;
use crate::console::log_ring::LogRing;
use platform::info::Console;
use platform::pl011::Pl011;
use spin::Mutex;

use crate::arch::sysreg;

// Lock order: UART, then GUEST_BACKLOG, then LOG_RING.
static UART: Mutex<Option<Pl011>> = Mutex::new(None);
/// Guest lines waiting for the UART.
static GUEST_BACKLOG: Mutex<Backlog<BACKLOG_BYTES>> = Mutex::new(Backlog::new());
/// The newest console output, for the crash record.
pub static LOG_RING: Mutex<LogRing<LOG_RING_BYTES>> = Mutex::new(LogRing::new());
pub const LOG_RING_BYTES: usize = 8192;
static BOOT_COUNTER: AtomicU64 = AtomicU64::new(0);
static LOGGER: ConsoleLogger = ConsoleLogger;

/// Records the counter value taken at entry; log timestamps count from it.
pub fn set_boot_counter(ticks: u64) {
    BOOT_COUNTER.store(ticks, Ordering::Relaxed);
}

/// Microseconds since entry.
pub fn micros_since_boot() -> u64 {
    let elapsed = sysreg::counter().wrapping_sub(BOOT_COUNTER.load(Ordering::Relaxed));
    let frequency = sysreg::counter_frequency().max(1);
    ((u128::from(elapsed) * 1_000_000) / u128::from(frequency)) as u64
}

/// Takes the console the device tree names. Until this runs, output is dropped.
pub fn init(console: &Console<'_>) {
    let Some(base) = NonNull::new(console.regs.base as *mut u32) else {
        return;
    };
    // SAFETY: the DT names this PL011 as the console; while the MMU is off its physical
    // address is directly accessible as device memory, and from here on only this lock
    // drives it.
    let mut uart = unsafe { Pl011::new(base) };
    uart.enable_transmitter();
    *UART.lock() = Some(uart);
}

/// Runs `f` on the console UART, if there is one.
pub(super) fn with_uart<R>(f: impl FnOnce(&mut Pl011) -> R) -> Option<R> {
    UART.lock().as_mut().map(f)
}

/// Queues a piece of guest `guest`'s output (`console::guest_output`; `complete`: its
/// line ends there) and sends what the transmit FIFO takes now; never waits for the UART
/// (`console::backlog` adds the tag and line breaks as it goes on the wire).
pub fn write_guest_piece(guest: u16, content: &[u8], complete: bool) {
    GUEST_BACKLOG.lock().push_piece(guest, content, complete);
    {
        let mut ring = LOG_RING.lock();
        ring.write(&guest_tag(guest));
        ring.write(content);
        ring.write(b"\n");
    }
    send_guest_backlog();
}

/// Sends queued guest output while the UART's transmit FIFO has room; keeps the transmit
/// interrupt on while some is left (its handler calls this again).
pub fn send_guest_backlog() {
    let mut uart = UART.lock();
    let Some(uart) = uart.as_mut() else {
        return;
    };
    let more = GUEST_BACKLOG.lock().send(|byte| uart.try_write_raw(byte));
    uart.set_transmit_interrupt(more);
}

/// Guest pieces dropped because the backlog was full, and their bytes.
pub fn dropped_guest_output() -> (u64, u64) {
    GUEST_BACKLOG.lock().dropped()
}

/// Installs the `log` backend with the given level.
pub fn init_logging(level: log::LevelFilter) {
    // A second call fails harmlessly; the first logger stays.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// The UART and the log ring, written together.
struct Sinks<'a> {
    uart: Option<&'a mut Pl011>,
    ring: &'a mut LogRing<LOG_RING_BYTES>,
}

impl Write for Sinks<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(uart) = self.uart.as_deref_mut() {
            uart.write_bytes(s.as_bytes());
        }
        self.ring.write(s.as_bytes());
        Ok(())
    }
}

/// Writes text as is (no timestamp), for marker and `hyp-facts:` lines. The guest piece
/// being sent is finished and an open guest line ended first, so this starts at the
/// beginning of a line.
pub fn write_raw(args: fmt::Arguments<'_>) {
    let mut uart = UART.lock();
    if let Some(uart) = uart.as_mut() {
        GUEST_BACKLOG
            .lock()
            .to_line_start(|byte| uart.write_raw_byte(byte));
    }
    let mut ring = LOG_RING.lock();
    let _ = Sinks {
        uart: uart.as_mut(),
        ring: &mut ring,
    }
    .write_fmt(args);
}

/// Waits until everything written has left the UART.
pub fn flush() {
    if let Some(uart) = UART.lock().as_mut() {
        let mut backlog = GUEST_BACKLOG.lock();
        backlog.send(|byte| {
            uart.write_raw_byte(byte);
            true
        });
        backlog.to_line_start(|byte| uart.write_raw_byte(byte));
        uart.set_transmit_interrupt(false);
        uart.flush();
    }
}

/// How long the crash path waits for another CPU to finish the line it is printing: a
/// line at 115200 baud is a few milliseconds, so 20 ms.
const CRASH_LOCK_WAIT_US: u64 = 20_000;

/// Waits until `lock` is free or [`CRASH_LOCK_WAIT_US`] passed. `true` if it is free.
fn wait_for_unlock<T>(lock: &Mutex<T>) -> bool {
    crate::arch::sysreg::wait_until(|| !lock.is_locked(), CRASH_LOCK_WAIT_US)
}

/// For the crash path, once it has claimed the crash (other CPUs stop at their next
/// EL2 entry): a console lock still held after a bounded wait is this CPU's own,
/// interrupted by the panic, or a CPU's that will never release it. Breaking it then
/// risks an interleaved line at worst; the console locks guard no table.
pub fn break_locks_for_crash() {
    if !wait_for_unlock(&UART) {
        // SAFETY: see above; this CPU never returns to the interrupted writer.
        unsafe { UART.force_unlock() };
    }
    if !wait_for_unlock(&GUEST_BACKLOG) {
        // SAFETY: as above; a torn backlog garbles guest output only.
        unsafe { GUEST_BACKLOG.force_unlock() };
    }
    if !wait_for_unlock(&LOG_RING) {
        // SAFETY: as above; a torn ring only garbles the last line of the record.
        unsafe { LOG_RING.force_unlock() };
    }
}

/// The log ring for the crash record (after [`break_locks_for_crash`]).
pub fn lock_ring_for_crash() -> spin::MutexGuard<'static, LogRing<LOG_RING_BYTES>> {
    break_locks_for_crash();
    LOG_RING.lock()
}

struct ConsoleLogger;

impl log::Log for ConsoleLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let micros = micros_since_boot();
        write_raw(format_args!(
            "[{:5}.{:06}] {:<5} {}\n",
            micros / 1_000_000,
            micros % 1_000_000,
            record.level(),
            record.args()
        ));
    }

    fn flush(&self) {
        flush();
    }
}
