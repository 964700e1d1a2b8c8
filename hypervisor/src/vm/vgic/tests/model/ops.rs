//! The operations the property test draws: guest register writes, SGIs, emulated lines,
//! device interrupts, vCPU runs and the guest's deactivations.

use std::vec::Vec;

use proptest::prelude::*;

use super::super::*;
use super::reference::{INTIDS, SPIS};

pub(super) const PRIORITIES: [u8; 8] = [0x00, 0x08, 0x10, 0x40, 0x80, 0x81, 0xa0, 0xff];

#[derive(Clone, Copy, Debug)]
pub(super) enum Route {
    Vcpu(usize),
    Any,
    Nowhere,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Op {
    Enable {
        vcpu: usize,
        intid: u32,
        on: bool,
    },
    Pend {
        vcpu: usize,
        intid: u32,
        on: bool,
    },
    Activate {
        vcpu: usize,
        intid: u32,
        on: bool,
    },
    Priority {
        vcpu: usize,
        intid: u32,
        priority: u8,
    },
    Group {
        vcpu: usize,
        intid: u32,
        group1: bool,
    },
    Trigger {
        vcpu: usize,
        intid: u32,
        edge: bool,
    },
    Route {
        intid: u32,
        route: Route,
    },
    Groups {
        group0: bool,
        group1: bool,
    },
    Sgi {
        from: usize,
        intid: u32,
        targets: u16,
        broadcast: bool,
        kind: SgiRegister,
    },
    Line {
        intid: u32,
        high: bool,
    },
    Device {
        vcpu: usize,
        intid: u32,
    },
    Run {
        vcpu: usize,
    },
    Deactivate {
        vcpu: usize,
        nth: usize,
    },
}

/// One operation on a guest with `vcpus` vCPUs.
pub(super) fn op(vcpus: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        14 => register_op(vcpus),
        9 => event_op(vcpus),
        11 => vcpu_op(vcpus),
    ]
}

/// A guest register write to one of [`INTIDS`] (or a routing or group enable).
fn register_op(vcpus: usize) -> impl Strategy<Value = Op> {
    let target = || (0..vcpus, proptest::sample::select(INTIDS.to_vec()));
    let priority = proptest::sample::select(PRIORITIES.to_vec());
    let spi = proptest::sample::select(SPIS.to_vec());
    let route = prop_oneof![
        (0..vcpus).prop_map(Route::Vcpu),
        Just(Route::Any),
        Just(Route::Nowhere)
    ];
    let enables = (proptest::bool::weighted(0.7), proptest::bool::weighted(0.9));
    prop_oneof![
        // Enabling is likelier than disabling, so that things get delivered.
        5 => (target(), any::<bool>()).prop_map(|((vcpu, intid), on)| {
            Op::Enable { vcpu, intid, on: on || intid % 2 == 0 }
        }),
        3 => (target(), any::<bool>()).prop_map(|((vcpu, intid), on)| Op::Pend { vcpu, intid, on }),
        1 => (target(), any::<bool>()).prop_map(|((vcpu, intid), on)| {
            Op::Activate { vcpu, intid, on }
        }),
        2 => (target(), priority).prop_map(|((vcpu, intid), priority)| {
            Op::Priority { vcpu, intid, priority }
        }),
        1 => (target(), proptest::bool::weighted(0.8)).prop_map(|((vcpu, intid), group1)| {
            Op::Group { vcpu, intid, group1 }
        }),
        1 => (target(), any::<bool>()).prop_map(|((vcpu, intid), edge)| {
            Op::Trigger { vcpu, intid, edge }
        }),
        1 => (spi, route).prop_map(|(intid, route)| Op::Route { intid, route }),
        1 => enables.prop_map(|(group0, group1)| Op::Groups { group0, group1 }),
    ]
}

/// Something arriving from outside: an SGI, an emulated line, a device interrupt.
fn event_op(vcpus: usize) -> impl Strategy<Value = Op> {
    let kind = prop_oneof![
        4 => Just(SgiRegister::Group1),
        1 => Just(SgiRegister::AlternateGroup1),
        1 => Just(SgiRegister::Group0)
    ];
    // Target bits at or above `vcpus` name no vCPU.
    let sgi = (
        0..vcpus,
        1u32..4,
        0u16..16,
        proptest::bool::weighted(0.2),
        kind,
    );
    let line = proptest::sample::select(std::vec![UART_SPI, SPARE_SPI]);
    let hardware = proptest::sample::select(std::vec![TIMER_PPI, DEVICE_SPI, OTHER_DEVICE_SPI]);
    prop_oneof![
        3 => sgi.prop_map(|(from, intid, targets, broadcast, kind)| {
            Op::Sgi { from, intid, targets, broadcast, kind }
        }),
        2 => (line, any::<bool>()).prop_map(|(intid, high)| Op::Line { intid, high }),
        2 => (0..vcpus, hardware).prop_map(|(vcpu, intid)| Op::Device { vcpu, intid }),
    ]
}

/// A vCPU exits and enters (taking one interrupt), or its guest deactivates one.
fn vcpu_op(vcpus: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        7 => (0..vcpus).prop_map(|vcpu| Op::Run { vcpu }),
        4 => (0..vcpus, 0usize..4).prop_map(|(vcpu, nth)| Op::Deactivate { vcpu, nth }),
    ]
}

pub(super) fn scenario() -> impl Strategy<Value = (usize, usize, u8, Vec<Op>)> {
    (1usize..=3, 1usize..=4, 5u8..=8).prop_flat_map(|(vcpus, lrs, bits)| {
        (
            Just(vcpus),
            Just(lrs),
            Just(bits),
            proptest::collection::vec(op(vcpus), 1..200),
        )
    })
}
