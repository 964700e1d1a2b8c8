//! Console input at EL2, and the UART's interrupt: routed to the boot CPU, it says that
//! something was typed (read and routed by [`InputFocus`] to a guest's virtual console
//! or to the hypervisor's own keys) or that the transmit FIFO drained (queued guest
//! output continues, `console::backlog`).

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use arrayvec::ArrayVec;
use platform::info::Console;

use super::focus::{Focus, InputFocus, Routed};
use crate::arch::aarch64::gic::distributor;

/// No interrupt: input is off.
const NONE: u32 = u32::MAX;
static INTID: AtomicU32 = AtomicU32::new(NONE);
static FOCUS: spin::Mutex<InputFocus> = spin::Mutex::new(InputFocus::new(0));
/// Characters a guest's receive FIFO had no room for.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Where input goes: the guest sink takes a guest's characters and returns how many it
/// accepted; the hypervisor sink takes keys typed while it has focus.
pub struct InputSinks {
    pub guest: fn(u16, &[u8]) -> usize,
    pub hypervisor: fn(u8),
    /// Whether guest N still runs (a switch passes over those that ended).
    pub guest_alive: fn(u16) -> bool,
}

static SINKS: spin::Once<InputSinks> = spin::Once::new();

/// Turns input on: the UART's receive interrupts, its SPI routed to this (the boot) CPU.
/// Without an interrupt in the DT input stays off, with a message.
pub fn init(console: &Console<'_>, guests: u16, sinks: InputSinks) {
    SINKS.call_once(|| sinks);
    *FOCUS.lock() = InputFocus::new(guests);
    let Some(intid) = console.intid.filter(|&intid| distributor::is_spi(intid)) else {
        log::warn!(
            "console: {} has no SPI in the device tree; console input is off",
            console.path
        );
        return;
    };
    let _ = super::output::with_uart(|uart| uart.enable_receive_interrupts());
    let routed = distributor::route(intid, crate::cpu::this_mpidr())
        .and_then(|()| distributor::set_enabled(intid, true));
    match routed {
        Ok(()) => {
            INTID.store(intid, Ordering::Release);
            log::info!(
                "console: input goes to guest 1; Ctrl-a three times switches between the guests and the hypervisor"
            );
        }
        Err(error) => log::warn!("console: input is off: {error}"),
    }
}

/// Whether `intid` is the console's.
pub fn is_input_interrupt(intid: u32) -> bool {
    intid == INTID.load(Ordering::Acquire)
}

/// The UART's interrupt: its transmit FIFO drained (send more queued guest output) or
/// something was typed (hand it on).
pub fn service_interrupt() {
    super::output::send_guest_backlog();
    receive();
}

/// Reads what was typed and hands it on.
fn receive() {
    let mut typed = ArrayVec::<u8, 64>::new();
    let _ = super::output::with_uart(|uart| {
        while !typed.is_full() {
            match uart.read_byte() {
                Some(byte) => typed.push(byte),
                None => break,
            }
        }
    });
    let Some(sinks) = SINKS.get() else {
        return;
    };
    let mut routed = ArrayVec::<Routed, 192>::new();
    {
        let mut focus = FOCUS.lock();
        for &byte in &typed {
            for outcome in focus.take_among(byte, &sinks.guest_alive) {
                let _ = routed.try_push(outcome);
            }
        }
    }
    deliver(&routed, sinks);
}

fn deliver(routed: &[Routed], sinks: &InputSinks) {
    let mut batch = ArrayVec::<u8, 192>::new();
    let mut batch_guest = None;
    let flush = |guest: Option<u16>, batch: &mut ArrayVec<u8, 192>| {
        if let Some(guest) = guest {
            let accepted = (sinks.guest)(guest, batch);
            DROPPED.fetch_add(
                (batch.len() - accepted.min(batch.len())) as u64,
                Ordering::Relaxed,
            );
        }
        batch.clear();
    };
    for outcome in routed {
        match *outcome {
            Routed::Byte(Focus::Guest(n), byte) => {
                if batch_guest != Some(n) {
                    flush(batch_guest, &mut batch);
                    batch_guest = Some(n);
                }
                let _ = batch.try_push(byte);
            }
            Routed::Byte(Focus::Hypervisor, byte) => (sinks.hypervisor)(byte),
            Routed::Switched(focus) => {
                flush(batch_guest.take(), &mut batch);
                match focus {
                    Focus::Guest(n) => log::info!("console: input goes to guest {n}"),
                    Focus::Hypervisor => {
                        log::info!("console: input goes to the hypervisor (h for help)")
                    }
                }
            }
        }
    }
    flush(batch_guest, &mut batch);
}

/// Typed characters a guest had no room for.
pub fn dropped_input() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Sends the console's interrupt to the CPU with `mpidr` from now on (the CPU it went to
/// is powering off). A no-op when input is off.
pub fn route_input_to(mpidr: u64) {
    let intid = INTID.load(Ordering::Acquire);
    if intid == NONE {
        return;
    }
    if let Err(error) = distributor::route(intid, mpidr) {
        log::warn!("console: input cannot move to CPU {mpidr:#x}: {error}");
    }
}
