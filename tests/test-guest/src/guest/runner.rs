//! Running the tests, printing their lines (report.rs has the format), and every way
//! the run ends: the summary line, then PSCI SYSTEM_OFF.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicUsize, Ordering};

use super::console::{self, say};
use super::cpu;
use crate::abi::PSCI_SYSTEM_OFF;
use crate::dtinfo::Conduit;
use crate::report::{self, Failure, Tally, TestResult};

static PASSED: AtomicU32 = AtomicU32::new(0);
static FAILED: AtomicU32 = AtomicU32::new(0);
static SKIPPED: AtomicU32 = AtomicU32::new(0);
/// The running test's name, as (pointer, length); 0 when none runs.
static CURRENT_NAME: AtomicUsize = AtomicUsize::new(0);
static CURRENT_LEN: AtomicUsize = AtomicUsize::new(0);
static CONDUIT_SMC: AtomicU8 = AtomicU8::new(0);
static ENDING: AtomicBool = AtomicBool::new(false);

pub fn set_conduit(conduit: Conduit) {
    CONDUIT_SMC.store(u8::from(conduit == Conduit::Smc), Ordering::Relaxed);
}

pub fn conduit() -> Conduit {
    if CONDUIT_SMC.load(Ordering::Relaxed) != 0 {
        Conduit::Smc
    } else {
        Conduit::Hvc
    }
}

/// A PSCI call over the DT's conduit.
pub fn psci(function: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    cpu::smccc(conduit(), function, a1, a2, a3)[0] as i64
}

fn tally() -> Tally {
    Tally {
        passed: PASSED.load(Ordering::Relaxed),
        failed: FAILED.load(Ordering::Relaxed),
        skipped: SKIPPED.load(Ordering::Relaxed),
    }
}

fn current_name() -> Option<&'static str> {
    let ptr = CURRENT_NAME.load(Ordering::Relaxed);
    let len = CURRENT_LEN.load(Ordering::Relaxed);
    if ptr == 0 {
        return None;
    }
    // SAFETY: set from a `&'static str` by `run`, pointer and length together, before
    // the test runs (the same CPU reads them, or the secondary long after).
    let bytes = unsafe { core::slice::from_raw_parts(ptr as *const u8, len) };
    core::str::from_utf8(bytes).ok()
}

/// A line writer onto the console (one `print` per formatted piece).
struct Out;

impl Write for Out {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        console::print(format_args!("{s}"));
        Ok(())
    }
}

/// Runs one test and prints its result line.
pub fn run<E>(name: &'static str, env: &E, test: fn(&E) -> TestResult) {
    CURRENT_LEN.store(name.len(), Ordering::Relaxed);
    CURRENT_NAME.store(name.as_ptr() as usize, Ordering::Relaxed);
    let result = test(env);
    CURRENT_NAME.store(0, Ordering::Relaxed);
    record(name, &result);
}

fn record(name: &str, result: &TestResult) {
    let counter = match result {
        Ok(_) => &PASSED,
        Err(Failure::Failed(_)) => &FAILED,
        Err(Failure::Skipped(_)) => &SKIPPED,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let _ = report::write_result(&mut Out, name, result);
}

/// Prints the summary line and powers off.
pub fn finish() -> ! {
    if ENDING.swap(true, Ordering::Relaxed) {
        cpu::halt();
    }
    let _ = report::write_summary(&mut Out, &tally());
    power_off()
}

/// Ends the run after something that should never happen (an unexpected exception, a
/// panic): prints `what`, fails the running test with `reason` (or counts a failure when none runs),
/// prints the summary and powers off. A second CPU arriving here just stops.
pub fn fatal(reason: &str, what: fmt::Arguments<'_>) -> ! {
    if ENDING.swap(true, Ordering::Relaxed) {
        cpu::halt();
    }
    say!("{}{}", report::PREFIX, what);
    match current_name() {
        Some(name) => record(name, &Err(crate::failed!("{reason} (see the line above)"))),
        None => {
            FAILED.fetch_add(1, Ordering::Relaxed);
        }
    }
    let _ = report::write_summary(&mut Out, &tally());
    power_off()
}

/// PSCI SYSTEM_OFF over the DT's conduit; stops this CPU if that returns.
pub fn power_off() -> ! {
    console::flush();
    let _ = psci(PSCI_SYSTEM_OFF, 0, 0, 0);
    cpu::halt()
}
