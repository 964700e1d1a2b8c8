//! Lets a vCPU that faults on a stage-2 entry which is transiently invalid (the break
//! step of break-before-make) tell that apart from a real fault: the writer announces
//! the IPA range it is changing, and the fault handler waits for the change to finish and
//! retries the access instead of injecting an abort.
//!
//! One writer at a time (the stage-2 lock serialises changes); any number of readers.
//! Ordering: `open` publishes the range with Release before the first entry is broken;
//! `close` ends it with Release after the last entry is made and the TLBIs completed. A
//! reader that observes the range with Acquire after taking the fault therefore sees a
//! change that may explain it.

use core::sync::atomic::{AtomicU64, Ordering};

pub struct ChangeWindow {
    start: AtomicU64,
    end: AtomicU64,
    /// Odd while a change is in progress (a sequence count, as in a seqlock).
    sequence: AtomicU64,
}

/// What the fault handler should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultVerdict {
    /// The range was (or is being) changed since the fault: return to the guest and let
    /// it retry the access.
    Retry,
    /// No change explains the fault.
    Genuine,
}

impl ChangeWindow {
    pub const fn new() -> Self {
        Self {
            start: AtomicU64::new(0),
            end: AtomicU64::new(0),
            sequence: AtomicU64::new(0),
        }
    }

    /// Announces a change of `[start, end)`.
    pub fn open(&self, start: u64, end: u64) {
        self.start.store(start, Ordering::Relaxed);
        self.end.store(end, Ordering::Relaxed);
        // Odd: in progress. Release orders the range stores before it.
        self.sequence.fetch_add(1, Ordering::Release);
    }

    /// The change is complete (entries made, TLB maintenance done).
    pub fn close(&self) {
        self.sequence.fetch_add(1, Ordering::Release);
    }

    /// The current sequence value; take it when the fault is taken.
    pub fn sequence(&self) -> u64 {
        self.sequence.load(Ordering::Acquire)
    }

    /// Spins while a change covering `ipa` is in progress. A vCPU that faulted there then
    /// retries its access against the finished tables.
    pub fn wait_while_covering(&self, ipa: u64) {
        loop {
            let odd = self.sequence.load(Ordering::Acquire) % 2 == 1;
            let covers =
                ipa >= self.start.load(Ordering::Relaxed) && ipa < self.end.load(Ordering::Relaxed);
            if !(odd && covers) {
                return;
            }
            core::hint::spin_loop();
        }
    }

    /// Decides about a fault at `ipa` taken when the sequence was `seen`: waits (spinning)
    /// while a change covering `ipa` is in progress, then says whether to retry.
    pub fn judge(&self, ipa: u64, seen: u64) -> FaultVerdict {
        loop {
            let now = self.sequence.load(Ordering::Acquire);
            let covers =
                ipa >= self.start.load(Ordering::Relaxed) && ipa < self.end.load(Ordering::Relaxed);
            if now % 2 == 1 && covers {
                core::hint::spin_loop();
                continue;
            }
            // A change that began or ended since the fault was taken may have caused it:
            // retry (a retry that faults again, with nothing in flight, is then judged
            // genuine). A change still in flight elsewhere cannot have: the window covers
            // every entry the writer touches.
            return if now != seen {
                FaultVerdict::Retry
            } else {
                FaultVerdict::Genuine
            };
        }
    }
}

impl Default for ChangeWindow {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn a_fault_with_no_change_in_flight_is_genuine() {
        let window = ChangeWindow::new();
        let seen = window.sequence();
        assert_eq!(window.judge(0x4000_0000, seen), FaultVerdict::Genuine);
    }

    #[test]
    fn a_fault_during_a_change_is_retried_after_it_closes() {
        let window = Arc::new(ChangeWindow::new());
        window.open(0x4000_0000, 0x4020_0000);
        let seen = window.sequence();
        let closed = Arc::new(AtomicBool::new(false));
        let writer = {
            let (window, closed) = (Arc::clone(&window), Arc::clone(&closed));
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(20));
                closed.store(true, Ordering::SeqCst);
                window.close();
            })
        };
        assert_eq!(window.judge(0x4010_0000, seen), FaultVerdict::Retry);
        assert!(
            closed.load(Ordering::SeqCst),
            "judge returned before the change closed"
        );
        writer.join().expect("writer thread");
    }

    #[test]
    fn a_fault_before_a_change_that_completed_since_is_retried() {
        let window = ChangeWindow::new();
        let seen = window.sequence();
        window.open(0x4000_0000, 0x4020_0000);
        window.close();
        assert_eq!(window.judge(0x4010_0000, seen), FaultVerdict::Retry);
        // The retry faults again with nothing in flight: genuine.
        assert_eq!(
            window.judge(0x4010_0000, window.sequence()),
            FaultVerdict::Genuine
        );
    }

    #[test]
    fn a_change_elsewhere_does_not_make_a_fault_wait() {
        let window = ChangeWindow::new();
        window.open(0x8000_0000, 0x8020_0000);
        let seen = window.sequence();
        // Not covered and nothing changed since the fault: the change cannot explain it.
        assert_eq!(window.judge(0x4000_0000, seen), FaultVerdict::Genuine);
    }
}
