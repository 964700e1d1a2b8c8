//! The property test: random guest register writes, SGIs, line changes and hardware
//! fires, with a simulated CPU interface per vCPU (acknowledge the highest-priority
//! pending list register, deactivate) and fold/flush on every run, checked against a
//! reference model of the architecture's interrupt states (IHI 0069 §4.1) and a simulated
//! physical GIC for the hardware-linked interrupts.
//!
//! Checked after every step:
//! - every acknowledgment is of an interrupt the model says is pending, enabled, in an
//!   enabled group, routed to that vCPU and not active, and of the highest priority among
//!   those (pending is a state: each pend is acknowledged once, repeated pends before
//!   the acknowledgment collapse);
//! - no list register holds a disabled, unrouted or non-pending interrupt as pending, or
//!   an inactive one as active; no vINTID is in two list registers of a vCPU, no SPI in
//!   two vCPUs'; HW, EOI, priority and group fields are right; HW entries are never
//!   pending and active;
//! - a vCPU whose `has_queued` becomes true is kicked by the call that made it so.
//!
//! At the end, lines drop, devices stop and every vCPU runs until nothing changes: no
//! interrupt the model says is deliverable is left undelivered (level interrupts kept
//! coming while their line was high), no hardware pend is lost, and the registers read
//! back the model's state.

mod ending;
mod guest;
mod harness;
mod ops;
mod reference;
mod writes;

use proptest::prelude::*;

use harness::Harness;
use ops::{Op, scenario};

proptest! {
    // No regression files: the tree is shared; a failure prints its minimal case.
    #![proptest_config(ProptestConfig {
        cases: 384,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// See the module documentation.
    #[test]
    fn matches_the_reference_model((vcpus, lrs, bits, ops) in scenario()) {
        let mut harness = Harness::new(vcpus, lrs, bits);
        harness.apply(Op::Groups { group0: true, group1: true })?;
        for op in ops {
            harness.apply(op)?;
        }
        harness.quiesce()?;
        harness.check_final()?;
    }
}
