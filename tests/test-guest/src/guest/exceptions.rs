//! What the EL1 vectors (vectors.S) do with an exception.
//!
//! Each CPU has a slot saying what it expects:
//! - nothing (the default): any exception is fatal — a report, a failed test, the
//!   summary, power-off;
//! - one abort ([`expect_fault`]): the first synchronous data or instruction abort (or
//!   UNDEFINED instruction) is recorded (ESR_EL1, FAR_EL1, ELR_EL1) and execution resumes either after the faulting
//!   instruction (ELR += 4, for a load or store) or at the link register (for a fetch
//!   fault on the first instruction of a function called with BLR: the call "returns");
//! - counting ([`count_data_aborts`], the secondary CPU's passes): every data abort is
//!   counted, the first one recorded, the instruction skipped.

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering, compiler_fence};

use super::cpu::{self, read_sysreg};
use super::{MAX_SLOTS, runner};
use crate::esr::{self, Fault};

/// The register frame vectors.S saves (layout shared with the assembly).
#[repr(C)]
pub struct Frame {
    pub x: [u64; 31],
    pub elr: u64,
    pub spsr: u64,
    _pad: u64,
}

const _: () = assert!(core::mem::size_of::<Frame>() == 0x110);

const IDLE: u8 = 0;
const EXPECT_SKIP: u8 = 1;
const EXPECT_RETURN: u8 = 2;
const COUNT: u8 = 3;

/// Vector index of a synchronous exception from the current EL on SP_ELx.
const SYNC_CURRENT_SPX: u64 = 4;

struct Slot {
    mode: AtomicU8,
    faults: AtomicU64,
    esr: AtomicU64,
    far: AtomicU64,
    elr: AtomicU64,
}

impl Slot {
    const fn new() -> Self {
        Self {
            mode: AtomicU8::new(IDLE),
            faults: AtomicU64::new(0),
            esr: AtomicU64::new(0),
            far: AtomicU64::new(0),
            elr: AtomicU64::new(0),
        }
    }

    fn record(&self, fault: &Fault) {
        self.esr.store(fault.esr, Ordering::Relaxed);
        self.far.store(fault.far, Ordering::Relaxed);
        self.elr.store(fault.elr, Ordering::Relaxed);
    }

    fn first(&self) -> Option<Fault> {
        (self.faults.load(Ordering::Relaxed) > 0).then(|| Fault {
            esr: self.esr.load(Ordering::Relaxed),
            far: self.far.load(Ordering::Relaxed),
            elr: self.elr.load(Ordering::Relaxed),
        })
    }
}

static SLOTS: [Slot; MAX_SLOTS] = [const { Slot::new() }; MAX_SLOTS];

/// How to go on after an expected abort.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Resume after the faulting instruction (a load or store).
    SkipInstruction,
    /// Resume at x30, as if the function whose first instruction faulted returned.
    ReturnToCaller,
}

/// Runs `f` allowing one synchronous abort, and returns what `f` returned and the abort,
/// if one came.
pub fn expect_fault<R>(recovery: Recovery, f: impl FnOnce() -> R) -> (R, Option<Fault>) {
    let slot = &SLOTS[cpu::slot()];
    slot.faults.store(0, Ordering::Relaxed);
    slot.mode.store(
        match recovery {
            Recovery::SkipInstruction => EXPECT_SKIP,
            Recovery::ReturnToCaller => EXPECT_RETURN,
        },
        Ordering::Relaxed,
    );
    compiler_fence(Ordering::SeqCst);
    let result = f();
    compiler_fence(Ordering::SeqCst);
    slot.mode.store(IDLE, Ordering::Relaxed);
    (result, slot.first())
}

/// From now on this CPU counts data aborts instead of dying of them.
pub fn count_data_aborts() {
    let slot = &SLOTS[cpu::slot()];
    slot.faults.store(0, Ordering::Relaxed);
    compiler_fence(Ordering::SeqCst);
    slot.mode.store(COUNT, Ordering::Relaxed);
    compiler_fence(Ordering::SeqCst);
}

/// Stops counting; the number of data aborts and the first one.
pub fn stop_counting() -> (u64, Option<Fault>) {
    let slot = &SLOTS[cpu::slot()];
    compiler_fence(Ordering::SeqCst);
    slot.mode.store(IDLE, Ordering::Relaxed);
    compiler_fence(Ordering::SeqCst);
    (slot.faults.load(Ordering::Relaxed), slot.first())
}

/// Called by vectors.S for every exception taken to EL1.
#[unsafe(no_mangle)]
extern "C" fn el1_exception(frame: &mut Frame, vector: u64) {
    let fault = Fault {
        esr: read_sysreg!("esr_el1"),
        far: read_sysreg!("far_el1"),
        elr: frame.elr,
    };
    let slot_index = cpu::slot();
    let slot = &SLOTS[slot_index];
    // An UNDEFINED instruction (EC 0) is expected like an abort: the tests of trapped
    // system registers want one.
    let expectable = esr::is_abort(fault.esr) || esr::ec(fault.esr) == 0;
    if vector == SYNC_CURRENT_SPX && expectable {
        match slot.mode.load(Ordering::Relaxed) {
            mode @ (EXPECT_SKIP | EXPECT_RETURN) => {
                slot.record(&fault);
                slot.faults.store(1, Ordering::Relaxed);
                slot.mode.store(IDLE, Ordering::Relaxed);
                frame.elr = if mode == EXPECT_SKIP {
                    frame.elr.wrapping_add(4)
                } else {
                    frame.x[30]
                };
                return;
            }
            COUNT if esr::is_data_abort(fault.esr) => {
                if slot.faults.load(Ordering::Relaxed) == 0 {
                    slot.record(&fault);
                }
                slot.faults.fetch_add(1, Ordering::Relaxed);
                frame.elr = frame.elr.wrapping_add(4);
                return;
            }
            _ => {}
        }
    }
    runner::fatal(
        "unexpected exception",
        format_args!(
            "unexpected exception on cpu slot {slot_index} ({}, {}): {}, SPSR_EL1 {:#x}, SP {:#x}",
            vector_name(vector).0,
            vector_name(vector).1,
            fault,
            frame.spsr,
            frame as *const Frame as u64 + 0x110
        ),
    );
}

fn vector_name(vector: u64) -> (&'static str, &'static str) {
    let kind = match vector % 4 {
        0 => "synchronous",
        1 => "IRQ",
        2 => "FIQ",
        _ => "SError",
    };
    let origin = match vector / 4 {
        0 => "current EL, SP_EL0",
        1 => "current EL, SP_EL1",
        2 => "lower EL, AArch64",
        _ => "lower EL, AArch32",
    };
    (kind, origin)
}
